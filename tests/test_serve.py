"""seq2seq-serve's API through FastAPI's TestClient, its batcher, and the command (as a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

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


def test_layers_of_an_rnn_model_are_its_one_attention(client: TestClient) -> None:
    """Bahdanau's attention: one layer of one head, the map search reported; no encoder self-attention."""
    _, body = post(client, {"text": ["a b c d", ""], "nbest": 2, "layers": True})
    t = body["translations"][0]
    assert len(t["cross_attention"]) == len(t["attention"]) == len(t["hypotheses"]) == 2  # layers implies attention
    for layers, weights in zip(t["cross_attention"], t["attention"], strict=True):
        assert len(layers) == 1 and len(layers[0]) == 1
        assert_close(layers[0][0], weights, 2e-4)
    assert "self_attention" not in t
    assert body["translations"][1]["cross_attention"] == []  # an empty source has no hypothesis


@pytest.fixture(scope="module")
def transformer(transformer_run: Path) -> Model:
    return load("main", str(transformer_run / "best.pt"), serve_config(transformer_run))


def assert_close(a: list[list[float]], b: list[list[float]], atol: float) -> None:
    torch.testing.assert_close(torch.tensor(a), torch.tensor(b), rtol=0, atol=atol)


def mean(maps: list[list[list[float]]]) -> list[list[float]]:
    """The heads' average of one layer's maps."""
    return [[sum(column) / len(maps) for column in zip(*rows, strict=True)] for rows in zip(*maps, strict=True)]


def test_layers_of_a_transformer_are_every_layer_and_head(transformer_run: Path, transformer: Model) -> None:
    with TestClient(create_app([transformer], serve_config(transformer_run))) as client:
        status, body = post(client, {"text": ["a b c d e"], "nbest": 2, "attention": True, "layers": True})
    assert status == 200
    t = body["translations"][0]
    s = len(t["src_pieces"])
    for layers, weights in zip(t["cross_attention"], t["attention"], strict=True):
        assert [len(heads) for heads in layers] == [4, 4]  # 2 decoder layers of 4 heads
        assert all(len(m) == len(weights) and all(len(row) == s and abs(sum(row) - 1) < 2e-3 for row in m)
                   for heads in layers for m in heads)
        assert_close(mean(layers[-1]), weights, 1e-3)  # the default map: the top layer's mean
        assert layers[-1][0] != layers[-1][1] and layers[0] != layers[1]
    assert [len(heads) for heads in t["self_attention"]] == [4, 4]  # 2 encoder layers of 4 heads, S x S each
    assert all(len(m) == s and all(len(row) == s and abs(sum(row) - 1) < 2e-3 for row in m)
               for heads in t["self_attention"] for m in heads)


def test_layers_over_max_attention_cells_are_refused_before_the_work(transformer_run: Path, transformer: Model,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    computed = []
    real = transformer.translator.layer_attention
    monkeypatch.setattr(transformer.translator, "layer_attention", lambda *a, **k: computed.append(a) or real(*a, **k))
    with TestClient(create_app([transformer], serve_config(transformer_run, max_attention_cells=500))) as client:
        assert post(client, {"text": ["a b c d e"], "attention": True})[0] == 200  # the mean maps alone fit
        status, body = post(client, {"text": ["a b c d e"], "layers": True})
        assert status == 422 and computed == []
        assert "max_attention_cells=500; send fewer sentences, a smaller nbest, layers: false, or attention: false" \
            in body["error"]


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
    """A translator stand-in whose translations() blocks until released (by the test, or after ``hold`` s);
    ``calls``: the sentences of each call."""

    def __init__(self, real: Translator, hold: float) -> None:
        self.real, self.decode, self.config, self.model = real, real.decode, real.config, real.model
        self.max_src_len, self.hold = real.max_src_len, hold
        self.started, self.release = threading.Event(), threading.Event()
        self.calls: list[list[str]] = []

    def with_decode(self, beam_size: int | None, alpha: float | None, nbest: int | None) -> DecodeConfig:
        return self.real.with_decode(beam_size, alpha, nbest)

    def translations(self, sentences: list[str], decode: DecodeConfig) -> list:
        self.calls.append(list(sentences))
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


# ---- the server bounds its work ------------------------------------------------------------------------------


def slow_app(toy_run: Path, model: Model, **settings: object) -> tuple[SlowTranslator, object]:
    """An app whose model blocks in translations() until released."""
    slow = SlowTranslator(model.translator, hold=30.0)
    app = create_app([Model("main", model.checkpoint, slow, None)], serve_config(toy_run, **settings))  # type: ignore[arg-type]
    return slow, app


def wait_until(condition: Callable[[], bool], what: str, tries: int = 400) -> None:
    """Poll ``condition`` (a bounded wait: the test fails instead of hanging when it never holds)."""
    for _ in range(tries):
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def in_thread(call: Callable[[], object]) -> tuple[threading.Thread, list]:
    """``call()`` started on a thread; its result lands in the returned list."""
    out: list = []
    thread = threading.Thread(target=lambda: out.append(call()), daemon=True)
    thread.start()
    return thread, out


class Live:
    """An app under a real uvicorn on a free loopback port, in this process: for what TestClient cannot do
    (a client that closes its connection mid-request, a body streamed in chunks)."""

    def __init__(self, app: object) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None,  # type: ignore[arg-type]
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Live:
        self.thread.start()
        wait_until(lambda: self.server.started, "uvicorn to start")
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(60)

    def get(self, path: str) -> dict:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as response:
            return json.load(response)

    def post(self, body: object) -> tuple[int, dict]:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("POST", "/translate", json.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()


def test_a_body_over_max_body_bytes_gets_413_before_it_is_parsed(toy_run: Path, model: Model) -> None:
    with TestClient(create_app([model], serve_config(toy_run, max_body_bytes=200))) as client:
        json_type = {"Content-Type": "application/json"}
        padded = '{"text": ["a b"]' + " " * 300 + "}"  # valid JSON, over the limit
        for body in (padded, '{"text": ["a b"' + "," * 300):  # a malformed one is not parsed either
            response = client.post("/translate", content=body, headers=json_type)
            assert response.status_code == 413 and "max_body_bytes=200" in response.json()["error"]
        chunks = (part.encode() for part in [padded[:150], padded[150:]])  # no Content-Length: counted
        response = client.post("/translate", content=chunks, headers=json_type)
        assert response.status_code == 413 and "max_body_bytes=200" in response.json()["error"]
        assert client.get("/info").json()["limits"]["max_body_bytes"] == 200
        assert post(client, {"text": ["a b"]})[0] == 200


def test_a_body_streamed_past_the_limit_is_cut_off(toy_run: Path, model: Model) -> None:
    import http.client

    with Live(create_app([model], serve_config(toy_run, max_body_bytes=1000))) as live:
        conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
        conn.putrequest("POST", "/translate")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        try:
            for _ in range(100):  # 100 KB, but the server stops reading after 1,000 bytes
                conn.send(b"400\r\n" + b" " * 1024 + b"\r\n")
        except OSError:  # the server has answered and closed the connection
            pass
        response = conn.getresponse()
        assert response.status == 413 and "max_body_bytes=1000" in json.loads(response.read())["error"]
        conn.close()
        assert live.post({"text": ["a b"]})[0] == 200


def test_the_default_body_limit_fits_the_largest_request_the_limits_allow() -> None:
    cfg = ServeConfig(checkpoint="x.pt")
    largest = json.dumps({"text": ["\U0001f600" * cfg.max_chars] * cfg.max_sentences, "beam_size": 10, "nbest": 10,
                          "alpha": 10.0, "attention": False, "model": "compare"})  # escaped: 12 bytes a character
    assert len(largest.encode()) <= cfg.body_limit < 2 * len(largest.encode())


@pytest.mark.parametrize("kind", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_body_that_is_not_declared_json_gets_415(client: TestClient, kind: str | None) -> None:
    # what a page on another site can send without asking (a "simple" request), and no Content-Type at all
    headers = {"Content-Type": kind} if kind else {}
    response = client.post("/translate", content='{"text": ["a b"]}', headers=headers)
    assert response.status_code == 415, response.text
    assert "Content-Type must be application/json" in response.json()["error"]


def test_json_with_a_charset_is_json(client: TestClient) -> None:
    response = client.post("/translate", content='{"text": ["a b"]}',
                           headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 200


HOSTS = [  # (where the server listens, allowed_hosts, Host header, accepted)
    ("127.0.0.1:8123", [], "127.0.0.1:8123", True),
    ("127.0.0.1:8123", [], "localhost:8123", True),
    ("127.0.0.1:8123", [], "[::1]:8123", True),
    ("127.0.0.1:8123", [], "LOCALHOST:8123", True),
    ("127.0.0.1:8123", [], "attacker.example:8123", False),  # DNS rebinding: the attacker's name
    ("127.0.0.1:8123", [], "localhost:9999", False),
    ("127.0.0.1:8123", [], "localhost", False),  # port 80
    ("127.0.0.1:8123", [], "0.0.0.0:8123", False),
    ("127.0.0.1:8123", ["mt.example.org"], "mt.example.org", True),
    ("127.0.0.1:8123", ["mt.example.org"], "mt.example.org:443", True),
    ("127.0.0.1:8123", ["mt.example.org:8443"], "mt.example.org:443", False),
    ("127.0.0.1:8123", ["mt.example.org"], "other.example.org", False),
    ("127.0.0.1:8123", ["*"], "anything.example", True),
    ("10.1.2.3:8000", [], "10.1.2.3:8000", True),  # host=0.0.0.0, reached on 10.1.2.3
    ("10.1.2.3:8000", [], "localhost:8000", False),
]


@pytest.mark.parametrize(("server", "allowed", "host", "accepted"), HOSTS, ids=[f"host{i}" for i in range(len(HOSTS))])
def test_the_host_header_must_name_the_server(toy_run: Path, model: Model, server: str, allowed: list[str],
                                              host: str, accepted: bool) -> None:
    bind = "0.0.0.0" if server.startswith("10.") else "127.0.0.1"
    app = create_app([model], serve_config(toy_run, host=bind, port=int(server.split(":")[1]), allowed_hosts=allowed))
    with TestClient(app, base_url=f"http://{server}") as client:
        for response in (client.get("/health", headers={"Host": host}),
                         client.post("/translate", content='{"text": ["a b"]}',
                                     headers={"Host": host, "Content-Type": "application/json"})):
            if accepted:
                assert response.status_code == 200, response.text
            else:
                assert response.status_code == 421
                assert f"host {host.lower()!r} is not this server's address" in response.json()["error"].lower()


def test_allowed_hosts_are_checked() -> None:
    with pytest.raises(ConfigError, match="allowed_hosts: 'https://x.org' is not a host name"):
        ServeConfig(checkpoint="x.pt", allowed_hosts=["https://x.org"])
    with pytest.raises(ConfigError, match="allowed_hosts: '\\*.x.org' is not a host name"):
        ServeConfig(checkpoint="x.pt", allowed_hosts=["*.x.org"])
    with pytest.raises(ConfigError, match="max_queue must be > 0"):
        ServeConfig(checkpoint="x.pt", max_queue=0)


@pytest.mark.timeout(120)
def test_a_full_queue_gets_503_with_retry_after(toy_run: Path, model: Model) -> None:
    slow, app = slow_app(toy_run, model, max_queue=1, batch_wait_ms=0)
    with TestClient(app) as client:
        first, first_answer = in_thread(lambda: post(client, {"text": ["a b"]})[0])
        try:
            assert slow.started.wait(30)  # the first is decoding
            second, second_answer = in_thread(lambda: post(client, {"text": ["c d"]})[0])
            wait_until(lambda: client.get("/health").json()["queued"] == 1, "the second request to queue")
            third, third_answer = in_thread(lambda: client.post("/translate", json={"text": ["e f"]}))
            third.join(30)
            assert third_answer, "a request past max_queue waited instead of being refused"
            response = third_answer[0]
            assert response.status_code == 503 and response.headers["Retry-After"] == "1"
            assert "max_queue=1" in response.json()["error"]
        finally:
            slow.release.set()
            first.join(30)
        second.join(30)
        assert first_answer == second_answer == [200]
        assert post(client, {"text": ["e f"]})[0] == 200  # and the queue has room again


@pytest.mark.timeout(120)
def test_a_request_past_its_time_gets_504_and_its_queued_work_is_dropped(toy_run: Path, model: Model) -> None:
    slow, app = slow_app(toy_run, model, request_timeout_s=1.0, batch_wait_ms=0)
    with TestClient(app) as client:
        first, first_answer = in_thread(lambda: post(client, {"text": ["a b"]}))
        try:
            assert slow.started.wait(30)
            second, second_answer = in_thread(lambda: post(client, {"text": ["c d"]}))
            second.join(30)
            first.join(30)
            assert [status for status, _ in first_answer + second_answer] == [504, 504]
            assert "request_timeout_s=1" in second_answer[0][1]["error"]
            assert client.get("/health").json()["queued"] == 0  # the second left the queue
        finally:
            slow.release.set()
    assert slow.calls == [["a b"]]  # the second was never decoded


@pytest.mark.timeout(120)
def test_a_client_that_goes_away_is_not_decoded(toy_run: Path, model: Model) -> None:
    import socket

    slow, app = slow_app(toy_run, model, batch_wait_ms=0)
    with Live(app) as live:
        first, first_answer = in_thread(lambda: live.post({"text": ["a b"]}))
        try:
            assert slow.started.wait(30)
            body = b'{"text": ["c d"]}'
            gone = socket.create_connection(("127.0.0.1", live.port), timeout=30)
            gone.sendall(b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (live.port, len(body), body))
            wait_until(lambda: live.get("/health")["queued"] == 1, "the request to queue")
            gone.close()  # the client goes away before its answer
            wait_until(lambda: live.get("/health")["queued"] == 0, "the abandoned request to leave the queue")
        finally:
            slow.release.set()
            first.join(30)
        assert first_answer[0][0] == 200
    assert slow.calls == [["a b"]]


@pytest.mark.timeout(120)
def test_attention_json_is_built_off_the_event_loop(toy_run: Path, model: Model,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from seq2seq.serving import app as app_module

    building, release = threading.Event(), threading.Event()
    real = app_module.answer

    def slow_answer(result: object, attention: bool) -> object:  # rounding a long attention table, say
        building.set()
        release.wait(30)
        return real(result, attention)

    monkeypatch.setattr(app_module, "answer", slow_answer)
    with TestClient(create_app([model], serve_config(toy_run))) as client:
        request, answered = in_thread(lambda: post(client, {"text": ["a b c"], "attention": True}))
        try:
            assert building.wait(30)
            health, health_answer = in_thread(lambda: client.get("/health").status_code)
            health.join(30)
            assert health_answer == [200], "/health was not answered while an answer's JSON was being built"
        finally:
            release.set()
            request.join(30)
        assert answered[0][0] == 200 and answered[0][1]["translations"][0]["attention"]


def test_attention_over_max_attention_cells_is_refused(toy_run: Path, model: Model) -> None:
    with TestClient(create_app([model], serve_config(toy_run, max_attention_cells=10))) as client:
        status, body = post(client, {"text": ["a b c d e"], "attention": True})
        assert status == 422
        assert "max_attention_cells=10; send fewer sentences, a smaller nbest, or attention: false" in body["error"]
        assert post(client, {"text": ["a b c d e"]})[0] == 200
        assert client.get("/info").json()["limits"]["max_attention_cells"] == 10
