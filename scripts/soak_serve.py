"""Soak test: seq2seq-serve under concurrent clients that mix good requests with every kind of bad one.

    python scripts/soak_serve.py                                   # a toy model trained first; 10 minutes
    python scripts/soak_serve.py --checkpoint runs/x/best.pt --minutes 30

1. Without ``--checkpoint``, a toy model is trained (experiment=toy, a few hundred steps, in a temporary
   directory). The script's own ``Translator`` on the checkpoint translates the good sentences offline, with
   each decode setting the good requests use: the answers every good request must get.
2. seq2seq-serve starts on 127.0.0.1 (a free port, one torch thread, its default limits).
3. ``--clients`` threads send requests for ``--minutes``: good ones (1 to 4 sentences; the server's default
   search, greedy, or beam 4 with 3-best; some with attention) and, as often, bad ones: malformed JSON, a wrong
   content type, none, bodies over max_body_bytes (declared, and streamed without a length), too many
   sentences, too many characters, too many subwords, a bad beam, nbest above the beam, an unknown field, a
   wrong Host, and connections abandoned mid-body or before the answer. Each bad one must get its status.
   Meanwhile a probe asks for /health every 0.2 s, and a sampler reads the server's resident memory.
4. It prints what it saw and exits with status 1 when a good answer differs from the offline translation, a
   bad request gets another status, /health fails, the server's resident memory grows past its size after
   warm-up plus ``--max-growth-mib``, its log holds a traceback, or it does not stop cleanly on SIGTERM.

Bounded: each client sends at most ``--max-requests`` requests, each with a socket timeout, and stops at the
deadline; the script stops the server itself. Loopback only: it talks to nothing but the server it started.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import http.client
import json
import os
import random
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HOST = "127.0.0.1"
SERVE = "from seq2seq.cli.main import serve; serve()"
TRAIN = "from seq2seq.cli.main import train; train()"
VARIANTS = {"default": {}, "greedy": {"beam_size": 1, "alpha": 0.0}, "3-best": {"beam_size": 4, "nbest": 3}}
TIMEOUT_S = 120  # a socket's timeout: far above any answer, a hang fails instead of blocking
PAUSE_S = 0.02  # after each bad request: a client refused at once does not spin


class Server:
    """seq2seq-serve on a free loopback port, its log drained (a full pipe would block it)."""

    def __init__(self, checkpoint: str) -> None:
        cmd = [sys.executable, "-c", SERVE, f"checkpoint={checkpoint}", f"host={HOST}", "port=0", "threads=1",
               "device=cpu"]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUTF8": "1"})
        self.log: list[str] = []
        for line in self.proc.stderr:  # type: ignore[union-attr]
            self.log.append(line)
            if f"running on http://{HOST}:" in line:
                self.port = int(line.split(f"{HOST}:")[1].split()[0])
                break
        else:
            sys.exit(f"seq2seq-serve did not start:\n{''.join(self.log)[-2000:]}")
        self._drain = threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True)
        self._drain.start()

    def resident_mib(self) -> float:
        """VmRSS of the server process, in MiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS in /proc/PID/status")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -9
        finally:
            self._drain.join(10)


def train_toy(tmp: Path) -> str:
    """A toy model (experiment=toy, 300 steps) trained in ``tmp``: its best.pt."""
    cmd = [sys.executable, "-c", TRAIN, "experiment=toy", "device=cpu", "threads=1", "train.max_steps=300",
           f"data.dir={tmp / 'data'}", f"data.cache_dir={tmp / 'cache'}", f"hydra.run.dir={tmp / 'run'}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        sys.exit(f"training the toy model failed:\n{done.stderr[-2000:]}")
    return str(tmp / "run" / "best.pt")


def offline(checkpoint: str, count: int) -> tuple[list[str], dict, object]:
    """The good sentences (the test split's first ``count`` within the model's limit), their offline
    translations per variant (text and hypotheses), and the translator."""
    import torch

    from seq2seq.checkpoint import checkpoint_config, load_checkpoint
    from seq2seq.data.corpus import corpus_path
    from seq2seq.files import read_lines
    from seq2seq.inference.translator import Translator

    torch.set_num_threads(1)  # as the server's threads=1
    data = checkpoint_config(load_checkpoint(checkpoint), checkpoint).data
    translator = Translator.from_checkpoint(checkpoint, device="cpu")
    lines = [s for s in read_lines(corpus_path(data.dir, data.test_split, data.src_lang))[:count] if s.strip()]
    lengths = translator.tokenizer.encode_src(lines)
    pool = sorted({s for s, ids in zip(lines, lengths)  # within the server's default max_chars, 1000
                   if len(ids) <= translator.max_src_len and len(s) <= 1000})
    expected = {}
    for name, settings in VARIANTS.items():
        decode = translator.with_decode(settings.get("beam_size"), settings.get("alpha"), settings.get("nbest"))
        expected[name] = {t.source: (t.text, t.hypotheses) for t in translator.translations(pool, decode)}
    return pool, expected, translator


def too_many_subwords(translator: object, pool: list[str]) -> str | None:
    """A sentence of at most 1000 characters with more subwords than the model's limit (None if none fits)."""
    sentence = pool[0]
    while len(sentence) <= 1000:
        if len(translator.tokenizer.encode_src([sentence])[0]) > translator.max_src_len:  # type: ignore[attr-defined]
            return sentence
        sentence = f"{sentence} {pool[0]}"
    return None


def request_bytes(port: int, body: bytes, content_type: str | None = "application/json", host: str | None = None,
                  length: int | None = None) -> bytes:
    head = ["POST /translate HTTP/1.1", f"Host: {host or f'{HOST}:{port}'}"]
    head += [f"Content-Type: {content_type}"] if content_type else []
    head += [f"Content-Length: {len(body) if length is None else length}", "Connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def exchange(port: int, data: bytes) -> int | None:
    """Send ``data`` on a new connection and read the answer's status (None: closed without one)."""
    with socket.create_connection((HOST, port), timeout=TIMEOUT_S) as sock:
        try:
            sock.sendall(data)
        except OSError:  # refused and closed while we were still sending
            pass
        try:
            head = sock.recv(64)
        except OSError:
            return None
    return int(head.split()[1]) if head.startswith(b"HTTP/1.1 ") else None


def streamed(port: int, limit: int) -> int | None:
    """A body sent in chunks without Content-Length, up to 4 times ``limit`` bytes; stops sending once the
    server answers (it closes the connection, and data it never read can reset it before the answer is read:
    then None)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT_S)
    try:
        conn.putrequest("POST", "/translate")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        try:
            for _ in range(4 * limit // 16384 + 1):
                if select.select([conn.sock], [], [], 0)[0]:  # answered
                    break
                conn.send(b"4000\r\n" + b" " * 16384 + b"\r\n")
        except OSError:
            pass
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def declared(port: int, length: int) -> int | None:
    """Headers declaring a body of ``length`` bytes, and the answer read before sending any of it."""
    with socket.create_connection((HOST, port), timeout=TIMEOUT_S) as sock:
        sock.sendall(request_bytes(port, b"", length=length))
        head = sock.recv(64)
    return int(head.split()[1]) if head.startswith(b"HTTP/1.1 ") else None


def abandon(port: int, data: bytes, keep: int) -> None:
    """Send the first ``keep`` bytes of a request, then close the connection without reading an answer."""
    with socket.create_connection((HOST, port), timeout=TIMEOUT_S) as sock:
        sock.sendall(data[:keep])
        time.sleep(0.05)


def bad_requests(port: int, limits: dict, long_source: str | None) -> dict:
    """Every bad request: name -> (the status it must get, or a tuple of the outcomes allowed (None: the
    connection closed without an answer; () for an abandoned one: nothing to check); a function sending it)."""
    js = json.dumps
    body_limit = limits["max_body_bytes"]
    good = js({"text": ["a b c", "d e f g"], "beam_size": 5}).encode()
    whole = request_bytes(port, good)
    table = {
        "malformed JSON": (400, lambda: exchange(port, request_bytes(port, b'{"text": ["a b"'))),
        "text/plain": (415, lambda: exchange(port, request_bytes(port, good, "text/plain"))),
        "no content type": (415, lambda: exchange(port, request_bytes(port, good, None))),
        "oversized body (answered before it is sent)": (413, lambda: declared(port, body_limit + 1)),
        "oversized body, streamed": ((413, None), lambda: streamed(port, body_limit)),
        "too many sentences": (422, lambda: exchange(port, request_bytes(
            port, js({"text": ["a"] * (limits["max_sentences"] + 1)}).encode()))),
        "too many characters": (422, lambda: exchange(port, request_bytes(
            port, js({"text": ["a" * (limits["max_chars"] + 1)]}).encode()))),
        "beam_size 0": (422, lambda: exchange(port, request_bytes(port, js({"text": ["a"], "beam_size": 0}).encode()))),
        "beam_size over max_beam": (422, lambda: exchange(port, request_bytes(
            port, js({"text": ["a"], "beam_size": limits["max_beam"] + 1}).encode()))),
        "nbest above beam_size": (422, lambda: exchange(port, request_bytes(
            port, js({"text": ["a"], "beam_size": 2, "nbest": 3}).encode()))),
        "unknown field": (422, lambda: exchange(port, request_bytes(port, js({"text": ["a"], "file": "x"}).encode()))),
        "wrong Host": (421, lambda: exchange(port, request_bytes(port, good, host=f"attacker.example:{port}"))),
        "abandoned mid-body": ((), lambda: abandon(port, whole, len(whole) - len(good) // 2)),
        "abandoned before the answer": ((), lambda: abandon(port, whole, len(whole))),
    }
    if long_source is not None:
        table["too many subwords"] = (422, lambda: exchange(port, request_bytes(
            port, js({"text": [long_source]}).encode())))
    return table


class Tally:
    """What the clients saw, shared between their threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.good = self.sentences = 0
        self.wrong: list[str] = []
        self.bad: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.unexpected: list[str] = []


def good_request(conn: http.client.HTTPConnection, rng: random.Random, pool: list[str], expected: dict,
                 tally: Tally, variant: str | None = None, attention: bool | None = None) -> None:
    """1 to 4 sentences of ``pool``, with ``variant``'s decode settings (default: one at random); every answer
    is checked against ``expected``."""
    variant = variant or rng.choice(list(VARIANTS))
    attention = rng.random() < 0.3 if attention is None else attention
    sentences = rng.sample(pool, rng.randint(1, min(4, len(pool))))
    body = {"text": sentences, **VARIANTS[variant], "attention": attention}
    conn.request("POST", "/translate", json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    answer = json.loads(response.read())
    with tally.lock:
        if response.status != 200:
            tally.wrong.append(f"{variant} {sentences!r}: HTTP {response.status} {answer.get('error')}")
            return
        tally.good += 1
        tally.sentences += len(sentences)
        for source, got in zip(sentences, answer["translations"]):
            if (got["text"], got["hypotheses"]) != expected[variant][source]:
                tally.wrong.append(f"{variant} {source!r}: served {got['text']!r}, offline "
                                   f"{expected[variant][source][0]!r}")


def bad_request(name: str, bad: dict, tally: Tally) -> None:
    want, send = bad[name]
    try:
        got = send()
    except OSError as err:
        got = f"{err!r}"
    with tally.lock:
        tally.bad[name][got] += 1
        if want != () and got not in (want if isinstance(want, tuple) else (want,)):
            tally.unexpected.append(f"{name}: expected {want}, got {got}")


def client(seed: int, port: int, deadline: float, args: argparse.Namespace, pool: list[str], expected: dict,
           bad: dict, tally: Tally) -> None:
    rng = random.Random(seed)
    conn = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT_S)
    names = sorted(bad)
    for _ in range(args.max_requests):
        if time.monotonic() >= deadline:
            break
        if rng.random() < 0.5:
            try:
                good_request(conn, rng, pool, expected, tally)
            except (OSError, http.client.HTTPException) as err:
                with tally.lock:
                    tally.wrong.append(f"good request: {err!r}")
                conn.close()
            continue
        bad_request(rng.choice(names), bad, tally)
        time.sleep(PAUSE_S)
    conn.close()


def probe_health(port: int, stop: threading.Event, seconds: list[float], failures: list[str]) -> None:
    conn = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT_S)
    while not stop.wait(0.2):
        start = time.perf_counter()
        try:
            conn.request("GET", "/health")
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                failures.append(f"HTTP {response.status}")
        except (OSError, http.client.HTTPException) as err:
            failures.append(repr(err))
            conn.close()
            continue
        seconds.append(time.perf_counter() - start)
    conn.close()


def sample_memory(server: Server, stop: threading.Event, samples: list[float]) -> None:
    while not stop.wait(0.5):
        try:
            samples.append(server.resident_mib())
        except (OSError, RuntimeError):
            return


def get(port: int, path: str) -> dict:
    conn = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT_S)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def soak(args: argparse.Namespace, checkpoint: str) -> list[str]:
    """Run the soak; the reasons it failed (none: passed)."""
    pool, expected, translator = offline(checkpoint, args.sentences)
    if not pool:
        sys.exit("no test sentence within the model's limits")
    server = Server(checkpoint)
    failures: list[str] = []
    try:
        info = get(server.port, "/info")
        if info["decode"] != dataclasses.asdict(translator.decode):
            failures.append(f"the server's decode defaults {info['decode']} are not the offline translator's")
        warm_up, warm = Tally(), http.client.HTTPConnection(HOST, server.port, timeout=TIMEOUT_S)
        for variant in VARIANTS:  # each, with and without attention, before the memory is measured
            for attention in (False, True):
                good_request(warm, random.Random(0), pool, expected, warm_up, variant, attention)
        warm.close()
        failures += [f"warm-up: {line}" for line in warm_up.wrong]
        tally = Tally()
        start_mib = server.resident_mib()
        bad = bad_requests(server.port, info["limits"], too_many_subwords(translator, pool))
        for name in sorted(bad):  # each once, then at random
            bad_request(name, bad, tally)
        stop, health, health_failures, memory = threading.Event(), [], [], [start_mib]
        watchers = [threading.Thread(target=probe_health, args=(server.port, stop, health, health_failures)),
                    threading.Thread(target=sample_memory, args=(server, stop, memory))]
        for t in watchers:
            t.start()
        deadline = time.monotonic() + args.minutes * 60
        clients = [threading.Thread(target=client, args=(args.seed + i, server.port, deadline, args, pool, expected,
                                                         bad, tally)) for i in range(args.clients)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(args.minutes * 60 + 2 * TIMEOUT_S)
        queued = get(server.port, "/health")["queued"]
        stop.set()
        for t in watchers:
            t.join(TIMEOUT_S)
        end_mib = server.resident_mib()
    finally:
        status = server.stop()
    log = "".join(server.log)
    bad_count = sum(sum(c.values()) for c in tally.bad.values())
    print(f"good requests: {tally.good} answered ({tally.sentences} sentences), {len(tally.wrong)} wrong")
    for line in tally.wrong[:5]:
        print(f"  {line}")
    print(f"bad requests: {bad_count}, {len(tally.unexpected)} with an unexpected status")
    for name in sorted(tally.bad):
        seen = ", ".join(f"{'closed' if got is None else got} x{n}" for got, n in tally.bad[name].most_common())
        print(f"  {name}: {seen}")
    peak = max(memory)
    print(f"/health: {len(health)} probes, slowest {1000 * max(health, default=0):.0f} ms, median "
          f"{1000 * statistics.median(health or [0]):.1f} ms, {len(health_failures)} failed")
    print(f"server memory (resident): {start_mib:.0f} MiB after warm-up, peak {peak:.0f} MiB "
          f"(+{peak - start_mib:.0f}), {end_mib:.0f} MiB at the end; bound: {start_mib:.0f} + "
          f"{args.max_growth_mib} MiB")
    print(f"server: {queued} requests queued at the end, stopped with status {status}, "
          f"{log.count('Traceback')} tracebacks in its log")
    failures += [f"{len(tally.wrong)} good requests answered wrongly"] if tally.wrong else []
    failures += [f"{len(tally.unexpected)} bad requests got an unexpected status"] if tally.unexpected else []
    failures += [f"/health failed {len(health_failures)} times: {health_failures[:3]}"] if health_failures else []
    failures += [f"memory grew by {peak - start_mib:.0f} MiB"] if peak > start_mib + args.max_growth_mib else []
    failures += ["a traceback in the server's log"] if "Traceback" in log else []
    failures += [f"the server stopped with status {status}"] if status != 0 else []
    failures += [f"{queued} requests still queued"] if queued else []
    failures += ["no good request answered"] if not tally.good else []
    if "Traceback" in log:
        print(log[log.index("Traceback"):][:3000])
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="default: train a toy model first (a few minutes)")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the clients send (default 10)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--sentences", type=int, default=200, help="good sentences: the test split's first N")
    parser.add_argument("--max-requests", type=int, default=100_000, help="per client, at most (default 100000)")
    parser.add_argument("--max-growth-mib", type=int, default=200,
                        help="fail when the server's resident memory grows past its size after warm-up by more")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not 1 <= args.clients <= 64 or not 0 < args.minutes <= 24 * 60:
        parser.error("--clients must be between 1 and 64, --minutes between 0 and 1440")
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or train_toy(Path(tmp))
        print(f"soak: {args.clients} clients for {args.minutes:g} minutes against seq2seq-serve on {HOST}, "
              f"checkpoint {checkpoint if args.checkpoint else 'a toy model (experiment=toy, 300 steps)'}")
        failures = soak(args, checkpoint)
    print("soak: " + ("passed" if not failures else "FAILED: " + "; ".join(failures)))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUTF8", "1")
    main()
