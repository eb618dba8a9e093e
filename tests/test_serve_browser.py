"""The page in a real headless browser (Chromium through Selenium): type, translate, read the heat-map.

Skips unless Chromium and its driver are installed (Debian: ``apt-get install -y chromium chromium-driver``;
``.ci/run`` installs them). The screenshot goes to ``$SEQ2SEQ_SCREENSHOT`` (docs/serve.png was
taken with the default Multi30k model: ``SEQ2SEQ_SERVE_CHECKPOINT=runs/x/best.pt
SEQ2SEQ_SERVE_SENTENCE='A man rides a bike.' SEQ2SEQ_SCREENSHOT=docs/serve.png pytest tests/test_serve_browser.py``),
else into the test's temporary directory.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

INSTALL = ("the browser test needs Chromium and its driver: apt-get install -y chromium chromium-driver "
           "(Debian/Ubuntu), and Selenium: pip install -e '.[dev]'")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason=INSTALL)
webdriver = pytest.importorskip("selenium.webdriver", reason=INSTALL)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from test_serve import Server  # noqa: E402

from seq2seq.inference.translator import Translator  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1100,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    yield driver
    driver.quit()


def test_page_translates_and_shows_the_heatmap(browser: webdriver.Chrome, request: pytest.FixtureRequest,
                                               tmp_path: Path) -> None:
    if "SEQ2SEQ_SERVE_CHECKPOINT" in os.environ:
        checkpoint, compare = Path(os.environ["SEQ2SEQ_SERVE_CHECKPOINT"]), os.environ.get("SEQ2SEQ_SERVE_COMPARE")
    else:  # the toy model, and its last.pt for the side-by-side view
        toy_run = request.getfixturevalue("toy_run")
        checkpoint, compare = toy_run / "best.pt", str(toy_run / "last.pt")
    sentence = os.environ.get("SEQ2SEQ_SERVE_SENTENCE", "a b c d e")
    server = Server(checkpoint, *([f"compare={compare}"] if compare else []))
    try:
        browser.get(f"http://127.0.0.1:{server.port}/")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda d: "main:" in d.find_element(By.ID, "model-info").text)
        box = browser.find_element(By.ID, "source")
        box.send_keys(sentence, Keys.ENTER)  # the keyboard submits the form
        panels = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".panel"))
        assert len(panels) == (2 if compare else 1)
        expected = Translator.from_checkpoint(checkpoint, device="cpu").translate([sentence])[0]
        assert panels[0].find_element(By.CSS_SELECTOR, ".translation").text == expected
        assert panels[0].find_element(By.CSS_SELECTOR, ".nbest button").text == expected

        table = panels[0].find_element(By.CSS_SELECTOR, ".heatmap")
        cols = table.find_elements(By.CSS_SELECTOR, "thead th")
        rows = table.find_elements(By.CSS_SELECTOR, "tbody th")
        cells = table.find_elements(By.CSS_SELECTOR, "td[data-weight]")
        assert len(cols) >= 1 and len(rows) >= 2 and len(cells) == len(rows) * len(cols)
        assert rows[-1].text == "</s>"
        first_row = [float(c.get_attribute("data-weight")) for c in cells[: len(cols)]]
        assert abs(sum(first_row) - 1) < 0.01
        if "SEQ2SEQ_SERVE_CHECKPOINT" not in os.environ:  # Bahdanau's: one layer of one head, no self-attention
            controls = [panels[0].find_element(By.CSS_SELECTOR, f".view .{name}") for name in ("kind", "layer", "head")]
            assert [len(Select(c).options) for c in controls] == [2, 1, 1] and not any(c.is_enabled() for c in controls)
            assert Select(controls[2]).first_selected_option.text == "its one head"

        webdriver.ActionChains(browser).move_to_element(cells[len(cols) + 1]).perform()  # hover row 1, col 1
        readout = panels[0].find_element(By.CSS_SELECTOR, ".readout").text
        assert f"target {rows[1].text}" in readout and cells[len(cols) + 1].get_attribute("data-weight")[:4] in readout
        assert "on" in cols[1].get_attribute("class") and "on" in rows[1].get_attribute("class")

        cells[0].click()
        browser.switch_to.active_element.send_keys(Keys.ARROW_DOWN, Keys.ARROW_RIGHT)  # keyboard: to row 1, col 1
        focused = browser.switch_to.active_element
        assert (focused.get_attribute("data-row"), focused.get_attribute("data-col")) == ("1", "1")

        browser.find_element(By.CSS_SELECTOR, "input[value=greedy]").click()
        browser.find_element(By.ID, "translate").click()
        wait.until(lambda d: "greedy" in d.find_element(By.ID, "status").text)
        browser.find_element(By.CSS_SELECTOR, "input[value=beam]").click()
        browser.find_element(By.ID, "translate").click()
        wait.until(lambda d: "beam" in d.find_element(By.ID, "status").text)

        browser.set_window_size(380, 800)  # a narrow window: the page itself does not scroll sideways
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        browser.set_window_size(1100, 1400)
        browser.execute_script("window.scrollTo(0, 0)")
        cells = browser.find_elements(By.CSS_SELECTOR, ".panel .heatmap td[data-weight]")
        webdriver.ActionChains(browser).move_to_element(cells[len(cols) + 1]).perform()  # a cell of row 1
        shot = Path(os.environ.get("SEQ2SEQ_SCREENSHOT", tmp_path / "serve.png"))
        shot.parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        server.stop()


def drawn(panel: object) -> tuple[list[str], list[list[float]]]:
    """The row labels and the weights of the heat-map a panel shows."""
    table = panel.find_element(By.CSS_SELECTOR, ".heatmap")
    labels = [th.text for th in table.find_elements(By.CSS_SELECTOR, "tbody th")]
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    return labels, [[float(cell.get_attribute("data-weight")) for cell in row.find_elements(By.CSS_SELECTOR, "td")]
                    for row in rows]


def mean(maps: list[list[list[float]]]) -> list[list[float]]:
    return [[sum(column) / len(maps) for column in zip(*rows, strict=True)] for rows in zip(*maps, strict=True)]


def close(a: list[list[float]], b: list[list[float]]) -> bool:
    return len(a) == len(b) and all(abs(x - y) < 1e-9 for ra, rb in zip(a, b, strict=True)
                                    for x, y in zip(ra, rb, strict=True))


def test_the_page_chooses_a_layer_and_a_head(browser: webdriver.Chrome, transformer_run: Path) -> None:
    """A Transformer: the mean over the top layer's heads by default (the map search reported); choosing a head,
    a layer or the encoder's self-attention draws that map."""
    import json
    import urllib.request

    sentence = "a b c d e"
    server = Server(transformer_run / "best.pt")
    try:
        body = json.dumps({"text": [sentence], "beam_size": 5, "nbest": 5, "layers": True}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{server.port}/translate", body,
                                         {"Content-Type": "application/json"})
        answer = json.load(urllib.request.urlopen(request, timeout=60))["translations"][0]  # what the page asks
        browser.get(f"http://127.0.0.1:{server.port}/")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda d: "main:" in d.find_element(By.ID, "model-info").text)
        browser.find_element(By.ID, "source").send_keys(sentence, Keys.ENTER)
        panel = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".panel"))[0]
        kind, layer, head = (Select(panel.find_element(By.CSS_SELECTOR, f".view .{name}"))
                             for name in ("kind", "layer", "head"))
        assert [o.text for o in layer.options] == ["1 of 2", "2 of 2 (top)"] and layer.first_selected_option.text \
            == "2 of 2 (top)"
        assert [o.text for o in head.options] == ["mean of 4 heads", "head 1", "head 2", "head 3", "head 4"]
        assert head.first_selected_option.text == "mean of 4 heads"
        cross = answer["cross_attention"][0]
        default = drawn(panel)[1]
        assert default == answer["attention"][0]  # the map search reported
        assert max(abs(x - y) for ra, rb in zip(default, mean(cross[1])) for x, y in zip(ra, rb)) < 1e-3

        head.select_by_visible_text("head 2")
        assert drawn(panel)[1] == cross[1][1] != default
        layer.select_by_visible_text("1 of 2")  # the head stays chosen
        assert head.first_selected_option.text == "head 2" and drawn(panel)[1] == cross[0][1]
        head.select_by_visible_text("mean of 4 heads")
        assert close(drawn(panel)[1], mean(cross[0]))

        kind.select_by_value("self")  # the top layer's mean again, of the encoder's self-attention
        assert layer.first_selected_option.text == "2 of 2 (top)" and head.first_selected_option.text == \
            "mean of 4 heads"
        labels, weights = drawn(panel)
        assert labels == answer["src_pieces"] and close(weights, mean(answer["self_attention"][1]))
        cell = panel.find_elements(By.CSS_SELECTOR, ".heatmap td[data-weight]")[1]
        webdriver.ActionChains(browser).move_to_element(cell).perform()
        assert panel.find_element(By.CSS_SELECTOR, ".readout").text.startswith(f"source {labels[0]} ← source")
        head.select_by_visible_text("head 3")
        assert drawn(panel)[1] == answer["self_attention"][1][2]
    finally:
        server.stop()


def test_the_page_shows_the_mean_map_when_every_layer_would_pass_the_limit(browser: webdriver.Chrome,
                                                                            transformer_run: Path) -> None:
    server = Server(transformer_run / "best.pt", "max_attention_cells=1500")  # the mean maps fit, all layers not
    try:
        browser.get(f"http://127.0.0.1:{server.port}/")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda d: "main:" in d.find_element(By.ID, "model-info").text)
        browser.find_element(By.ID, "source").send_keys("a b c d e", Keys.ENTER)
        panel = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".panel"))[0]
        assert "max_attention_cells: the mean map only" in browser.find_element(By.ID, "status").text
        controls = [panel.find_element(By.CSS_SELECTOR, f".view .{name}") for name in ("kind", "layer", "head")]
        assert [Select(c).first_selected_option.text for c in controls[1:]] == ["top", "mean of the heads"]
        assert not any(c.is_enabled() for c in controls)
        assert len(drawn(panel)[1]) >= 2
    finally:
        server.stop()
