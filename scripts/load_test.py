"""Load test: seq2seq-serve under N concurrent clients against seq2seq-evaluate, one right after the other.

    python scripts/load_test.py --checkpoint runs/x/best.pt                  # its test split, 8 clients, beam 5
    python scripts/load_test.py --checkpoint runs/x/best.pt --clients 16 --per-request 4 --sentences 300

1. seq2seq-evaluate translates the sentences (``--threads`` torch threads) and logs its sentences/s: the
   offline figure, and the translation every answer must equal.
2. seq2seq-serve starts on 127.0.0.1 (a free port, the same threads); ``--clients`` threads send the same
   sentences, ``--per-request`` at a time, each waiting for its answer before sending the next.
3. Every answer is checked against the offline translation of its own input (nothing lost, nothing
   swapped); the script prints sentences/s, p50 / p95 request latency and the ratio to evaluate's figure,
   and exits with status 1 if an answer differs or is missing.
4. With ``--ceiling``, seq2seq-evaluate runs once more with batches of about as many sentences as the
   clients keep in flight (clients x per-request): an estimate of the most that load allows, whatever the
   server does (evaluate still sorts all the sentences by length, which a server cannot).

Bounded: at most ``--sentences`` sentences, ``--timeout`` seconds for the whole run. Loopback only: the
script starts its own server on 127.0.0.1 and talks to nothing else (seq2seq/serving/harness.py).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from seq2seq.serving.harness import HOST, Server, in_flight_batch_tokens, post

EVALUATE = "from seq2seq.cli.main import evaluate; evaluate()"


def test_sentences(checkpoint: str, src: str | None, count: int) -> list[str]:
    """The first ``count`` lines of ``src``, or of the checkpoint corpus's test split."""
    from seq2seq.checkpoint import checkpoint_config, load_checkpoint
    from seq2seq.data.corpus import split_lines
    from seq2seq.files import read_lines

    if src is not None:
        return read_lines(src)[:count]
    data = checkpoint_config(load_checkpoint(checkpoint), checkpoint).data
    return split_lines(data, data.test_split, count)[0]


def offline(args: argparse.Namespace, sentences: list[str], tmp: Path,
            *overrides: str) -> tuple[list[str], float]:
    """seq2seq-evaluate's translations of ``sentences`` and its sentences/s."""
    (tmp / "src").write_text("".join(s + "\n" for s in sentences), encoding="utf-8")
    cmd = [sys.executable, "-c", EVALUATE, f"checkpoint={args.checkpoint}", f"src={tmp / 'src'}",
           f"out={tmp / 'hyp'}", f"threads={args.threads}", f"decode.beam_size={args.beam}", "device=cpu",
           *overrides]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    found = re.search(r"translated \d+ sentences in [\d.]+ s: ([\d.]+) sentences/s", done.stderr)
    if done.returncode != 0 or not found:
        sys.exit(f"seq2seq-evaluate failed (status {done.returncode}):\n{done.stderr[-2000:]}")
    return (tmp / "hyp").read_text(encoding="utf-8").split("\n")[: len(sentences)], float(found.group(1))


def source_lengths(checkpoint: str, sentences: list[str]) -> list[int]:
    from seq2seq.checkpoint import load_checkpoint, tokenizer_from

    return [len(ids) for ids in tokenizer_from(load_checkpoint(checkpoint)).encode_src(sentences)]


def load(args: argparse.Namespace, port: int, sentences: list[str], deadline: float) -> tuple[dict, list, float]:
    """``args.clients`` threads send ``sentences``; answers by index, request latencies, wall seconds."""
    answers: dict[int, str] = {}
    latencies: list[float] = []
    errors: list[str] = []
    chunks = iter(range(0, len(sentences), args.per_request))
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=max(1.0, deadline - time.monotonic()))
        while time.monotonic() < deadline:
            with lock:
                start = next(chunks, None)
            if start is None:
                break
            part = sentences[start:start + args.per_request]
            sent = time.perf_counter()
            try:
                got = post(conn, part)
            except (OSError, RuntimeError, http.client.HTTPException) as err:
                errors.append(f"sentences {start}-{start + len(part) - 1}: {err}")
                conn.close()
                continue
            with lock:
                latencies.append(time.perf_counter() - sent)
                answers.update(zip(range(start, start + len(part)), got))
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    begin = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic() + 5))
    for message in errors[:5]:
        print(f"error: {message}", file=sys.stderr)
    return answers, latencies, time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--src", help="source sentences, one a line (default: the checkpoint's test split)")
    parser.add_argument("--sentences", type=int, default=1000, help="at most this many (default 1000)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-request", type=int, default=1, help="sentences per request (default 1)")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of evaluate and of the server")
    parser.add_argument("--wait-ms", type=float, default=5.0, help="the server's batch_wait_ms")
    parser.add_argument("--timeout", type=float, default=900, help="seconds for the whole run (default 900)")
    parser.add_argument("--ceiling", action="store_true",
                        help="also time seq2seq-evaluate on batches of about as many sentences as the clients keep "
                             "in flight (an estimate of the most that load allows)")
    args = parser.parse_args()
    if not 1 <= args.clients <= 256 or not 1 <= args.per_request <= 256:
        parser.error("--clients and --per-request must be between 1 and 256")
    deadline = time.monotonic() + args.timeout
    sentences = test_sentences(args.checkpoint, args.src, args.sentences)
    with tempfile.TemporaryDirectory() as tmp:
        expected, offline_rate = offline(args, sentences, Path(tmp))
    print(f"seq2seq-evaluate: {len(sentences)} sentences, beam {args.beam}, {args.threads} thread(s): "
          f"{offline_rate:.1f} sentences/s")
    try:
        server = Server(args.checkpoint, f"threads={args.threads}", f"decode.beam_size={args.beam}",
                        f"max_sentences={max(32, args.per_request)}", f"batch_wait_ms={args.wait_ms}",
                        start_timeout=max(1.0, deadline - time.monotonic()))
    except RuntimeError as err:
        sys.exit(str(err))
    try:
        post(http.client.HTTPConnection(HOST, server.port, timeout=60), sentences[:1])  # warm-up, untimed
        answers, latencies, seconds = load(args, server.port, sentences, deadline)
    finally:
        server.stop()
    wrong = [i for i, text in answers.items() if text != expected[i]]
    missing = len(sentences) - len(answers)
    rate = len(answers) / seconds
    p50, p95 = (statistics.quantiles(latencies, n=20)[i] * 1000 for i in (9, 18)) if len(latencies) > 1 else (0, 0)
    print(f"seq2seq-serve: {args.clients} clients, {args.per_request} sentence(s) per request: {len(answers)} "
          f"sentences in {seconds:.1f} s: {rate:.1f} sentences/s, latency p50 {p50:.0f} ms, p95 {p95:.0f} ms")
    print(f"serve / evaluate: {100 * rate / offline_rate:.0f}% (target: at least 80%)")
    if args.ceiling:
        in_flight = args.clients * args.per_request
        tokens = in_flight_batch_tokens(source_lengths(args.checkpoint, sentences), in_flight)
        args.timeout = max(1.0, deadline - time.monotonic())
        with tempfile.TemporaryDirectory() as tmp:
            _, ceiling = offline(args, sentences, Path(tmp), f"decode.batch_tokens={tokens}")
        print(f"seq2seq-evaluate on batches of about {in_flight} sentences (decode.batch_tokens={tokens}): "
              f"{ceiling:.1f} sentences/s, {100 * ceiling / offline_rate:.0f}% of its default: about the most "
              f"{in_flight} sentences in flight allow; serve reaches {100 * rate / ceiling:.0f}% of it")
    for i in wrong[:5]:
        print(f"differs, sentence {i}: {sentences[i]!r}\n  offline: {expected[i]!r}\n  served:  {answers[i]!r}")
    print(f"answers: {len(answers) - len(wrong)} equal to the offline translation, {len(wrong)} differ, "
          f"{missing} missing")
    sys.exit(1 if wrong or missing else 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUTF8", "1")
    main()
