"""seq2seq-serve's API through FastAPI's TestClient, its batcher, and the command (as a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve tests need FastAPI: pip install -e '.[dev]'")
from fastapi.testclient import TestClient  # noqa: E402

from seq2seq.config import DecodeConfig  # noqa: E402
from seq2seq.errors import ConfigError  # noqa: E402
from seq2seq.inference.translator import Translator  # noqa: E402
from seq2seq.serving.app import PAGE, Model, create_app, load  # noqa: E402
from seq2seq.serving.harness import SERVE, Server  # noqa: E402
from seq2seq.serving.settings import ServeConfig  # noqa: E402

TRANSLATE = "from seq2seq.cli.main import translate; translate()"


def serve_config(toy_run: Path, **limits: object) -> ServeConfig:
    return ServeConfig(checkpoint=str(toy_run / "best.pt"), device="cpu", **limits)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def model(toy_run: Path) -> Model:
    return load("main", str(toy_run / "best.pt"), serve_config(toy_run))


@pytest.fixture(scope="module")
def client(toy_run: Path, model: Model) -> TestClient:
    with TestClient(create_app([model], serve_config(toy_run))) as client:
        yield client


@pytest.fixture(scope="module")
def sentences(toy_run: Path, model: Model) -> list[str]:
    test = (Path(model.translator.config.data.dir) / "test.src").read_text(encoding="utf-8").splitlines()
    return [*test[:12], "", "  a \t b  ", "é ß ü"]


def run_translate(checkpoint: Path, lines: list[str], *overrides: str) -> bytes:
    cmd = [sys.executable, "-c", TRANSLATE, f"checkpoint={checkpoint}", "threads=2", "device=cpu", *overrides]
    data = "".join(line + "\n" for line in lines).encode()
    done = subprocess.run(cmd, input=data, capture_output=True, timeout=300, env={**os.environ, "PYTHONUTF8": "1"})
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def post(client: TestClient, body: object) -> tuple[int, dict]:
    response = client.post("/translate", content=json.dumps(body), headers={"Content-Type": "application/json"})
    return response.status_code, response.json()


# ---- answers ---------------------------------------------------------------------------------------------


def test_text_is_byte_for_byte_what_translate_prints(client: TestClient, toy_run: Path, sentences: list[str]) -> None:
    status, body = post(client, {"text": sentences})
    assert status == 200
    served = "".join(t["text"] + "\n" for t in body["translations"]).encode()
    assert served == run_translate(toy_run / "best.pt", sentences)


def test_nbest_is_translates_nbest_block(client: TestClient, toy_run: Path, sentences: list[str]) -> None:
    status, body = post(client, {"text": sentences, "nbest": 3, "beam_size": 4, "alpha": 0.6})
    assert status == 200
    blocks = "".join("".join(f"{s:.4f}\t{h}\n" for s, h in zip(t["scores"], t["hypotheses"])) + "\n"
                     for t in body["translations"])
    printed = run_translate(toy_run / "best.pt", sentences, "decode.nbest=3", "decode.beam_size=4", "decode.alpha=0.6")
    assert blocks.encode() == printed
    assert all(t["text"] == (t["hypotheses"] or [""])[0] for t in body["translations"])


def test_answers_keep_the_input_order(client: TestClient, model: Model, sentences: list[str]) -> None:
    reordered = sorted(sentences, key=len, reverse=True)
    _, body = post(client, {"text": reordered})
    assert [t["text"] for t in body["translations"]] == model.translator.translate(reordered)


def test_attention_has_a_row_per_target_piece_and_eos(client: TestClient) -> None:
    _, body = post(client, {"text": ["a b c d", "q r"], "nbest": 2, "attention": True})
    for t in body["translations"]:
        assert len(t["attention"]) == len(t["tgt_pieces"]) == len(t["hypotheses"]) == 2
        for pieces, weights in zip(t["tgt_pieces"], t["attention"]):
            assert len(weights) in (len(pieces), len(pieces) + 1)
            assert all(len(row) == len(t["src_pieces"]) and abs(sum(row) - 1) < 2e-3 for row in weights)
    _, plain = post(client, {"text": ["a b c d"]})
    assert set(plain["translations"][0]) == {"text", "hypotheses", "scores"}


def test_health_and_info(client: TestClient, toy_run: Path, model: Model) -> None:
    assert client.get("/health").json()["status"] == "ok"
    info = client.get("/info").json()
    bleu = max(json.loads(line)["bleu"] for line in (toy_run / "metrics.jsonl").read_text().splitlines())
    assert info["pair"] == "src-tgt" and info["attention"] == "bahdanau"
    assert info["parameters"] == model.translator.model.num_parameters()
    assert info["decode"]["beam_size"] == 5 and info["best_valid_bleu"] == pytest.approx(bleu)
    assert info["limits"]["max_sentences"] == 32 and info["compare"] is None
    assert "/translate" in client.get("/openapi.json").json()["paths"]


def test_the_page_is_served_and_fetches_nothing_from_outside(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "/static/page.js" in page.text
    for name in ("index.html", "page.css", "page.js"):
        assert client.get(f"/static/{name}").status_code == 200
        assert "http:" not in (PAGE / name).read_text() and "https:" not in (PAGE / name).read_text()


def test_compare_model_is_a_second_panel(toy_run: Path, model: Model) -> None:
    other = load("compare", str(toy_run / "last.pt"), serve_config(toy_run))
    with TestClient(create_app([model, other], serve_config(toy_run))) as client:
        assert client.get("/info").json()["compare"]["name"] == "compare"
        status, body = post(client, {"text": ["a b c"], "model": "compare"})
        assert status == 200 and body["translations"][0]["text"] == other.translator.translate(["a b c"])[0]


# ---- bad requests: a 4xx with a JSON error, and the server keeps serving ----------------------------------

BAD = [
    ('{"text": ["a b"', 400, "malformed JSON"),
    ("", 422, "no request body"),
    ('["a b"]', 422, "expected a JSON object"),
    ('{"text": "a b"}', 422, "text: Input should be a valid list"),
    ('{"text": [1, 2]}', 422, "text.0: Input should be a valid string"),
    ('{"text": []}', 422, "at least 1 item"),
    ('{"text": ["a"], "beam_size": "5"}', 422, "beam_size: Input should be a valid integer"),
    ('{"text": ["a"], "attention": "yes"}', 422, "attention: Input should be a valid boolean"),
    ('{"text": ["a"], "beam": 5}', 422, "beam: unknown field"),
    ('{"text": ["a"], "file": "/etc/passwd"}', 422, "file: unknown field"),
    ('{"text": ["a"], "beam_size": 11}', 422, "max_beam=10"),
    ('{"text": ["a"], "beam_size": 0}', 422, "beam_size: Input should be greater than or equal to 1"),
    ('{"text": ["a"], "beam_size": 2, "nbest": 3}', 422, "nbest=3 is above beam_size=2"),
    ('{"text": ["a"], "alpha": -1}', 422, "alpha: Input should be greater than or equal to 0"),
    ('{"text": ["a"], "model": "compare"}', 422, "no compare model"),
    ('{"text": ["a"], "model": "other.pt"}', 422, "model: Input should be 'main' or 'compare'"),
    ('{"text": ["' + "a " * 40 + '"]}', 422, "more than the model's limit of 30"),
    ('{"text": ["' + "a" * 1001 + '"]}', 422, "max_chars=1000"),
    ('{"text": ' + json.dumps(["a"] * 33) + "}", 422, "max_sentences=32"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_request_gets_a_json_error(client: TestClient, body: str, status: int, message: str) -> None:
    response = client.post("/translate", content=body, headers={"Content-Type": "application/json"})
    assert (response.status_code, response.headers["content-type"]) == (status, "application/json")
    assert message in response.json()["error"]
    assert post(client, {"text": ["a b c"]})[0] == 200  # and the server keeps serving


def test_limits_are_settable(toy_run: Path, model: Model) -> None:
    cfg = serve_config(toy_run, max_sentences=2, max_chars=5, max_beam=6, decode=DecodeConfig(beam_size=6))
    with TestClient(create_app([model], cfg)) as client:
        assert post(client, {"text": ["a", "b", "c"]})[0] == 422
        assert post(client, {"text": ["a b c d"]})[0] == 422
        assert post(client, {"text": ["a b", "c"], "beam_size": 6})[0] == 200
        assert "max_beam=6" in post(client, {"text": ["a"], "beam_size": 7})[1]["error"]


def test_serve_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="above max_beam=4"):
        ServeConfig(checkpoint="x.pt", max_beam=4)
    with pytest.raises(ConfigError, match="port must be between 0 and 65535"):
        ServeConfig(checkpoint="x.pt", port=70000)
    with pytest.raises(ConfigError, match="max_sentences must be > 0"):
        ServeConfig(checkpoint="x.pt", max_sentences=0)


# ---- responsiveness and the command ------------------------------------------------------------------------


class SlowTranslator:
    """A translator stand-in whose translations() blocks until released (by the test, or after ``hold`` s)."""

    def __init__(self, real: Translator, hold: float) -> None:
        self.real, self.decode, self.config, self.model = real, real.decode, real.config, real.model
        self.max_src_len, self.hold = real.max_src_len, hold
        self.started, self.release = threading.Event(), threading.Event()

    def with_decode(self, beam_size: int | None, alpha: float | None, nbest: int | None) -> DecodeConfig:
        return self.real.with_decode(beam_size, alpha, nbest)

    def translations(self, sentences: list[str], decode: DecodeConfig) -> list:
        self.started.set()
        self.release.wait(self.hold)
        return self.real.translations(sentences, decode)


def test_a_slow_request_does_not_block_health(toy_run: Path, model: Model) -> None:
    """/health answers while a translation is held in flight: the translation is released only after /health
    has answered, so /health cannot be waiting for it. A server that blocked would fail by the bounded wait
    below (the translation is held longer than that), not by a timing threshold."""
    wait = 60.0
    slow = SlowTranslator(model.translator, hold=3 * wait)
    app = create_app([Model("main", model.checkpoint, slow, None)], serve_config(toy_run))  # type: ignore[arg-type]
    with TestClient(app) as client:
        answers: list[int] = []
        health: list[int] = []
        request = threading.Thread(target=lambda: answers.append(post(client, {"text": ["a b"]})[0]), daemon=True)
        check = threading.Thread(target=lambda: health.append(client.get("/health").status_code), daemon=True)
        request.start()
        try:
            assert slow.started.wait(wait), "the translation never started"
            check.start()
            check.join(wait)
            assert health == [200], "/health did not answer while a translation was in flight"
            assert not answers and not slow.release.is_set()  # the slow one is still running
        finally:
            slow.release.set()
            request.join(wait)
        assert answers == [200]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_binds_loopback_and_stops_cleanly(toy_run: Path, sig: signal.Signals) -> None:
    import urllib.request

    server = Server(toy_run / "best.pt", "threads=1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=10) as response:
            assert json.load(response)["status"] == "ok"
    finally:
        status = server.stop(sig)
    log = server.log
    assert status == (0 if sig == signal.SIGTERM else 130), log
    assert "Traceback" not in log and "stopped" in log


def test_serve_without_checkpoint_says_what_to_pass() -> None:
    done = subprocess.run([sys.executable, "-c", SERVE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no checkpoint given: pass checkpoint=PATH" in done.stderr


def test_ensemble_and_int8_settings_are_checked_like_evaluate() -> None:
    from seq2seq.errors import ConfigError
    from seq2seq.serving.settings import ServeConfig

    assert ServeConfig(checkpoint="x.pt", quantize="int8", ensemble=["y.pt"]).quantize == "int8"
    with pytest.raises(ConfigError, match="unknown quantize 'int4'"):
        ServeConfig(checkpoint="x.pt", quantize="int4")
