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
