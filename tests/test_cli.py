"""The console scripts (seq2seq/cli/main.py), run as subprocesses as a user runs them: seq2seq-train,
seq2seq-evaluate, seq2seq-translate; signals, failed starts, typos, sweeps, outputs."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest
from conftest import LONG, TRANSLATE, run_translate

from seq2seq.checkpoint import checkpoint_config, load_checkpoint
from seq2seq.config import (
    Config,
)
from seq2seq.inference.translator import Translator
from seq2seq.serving.harness import Lines


def test_cli_trains_and_refuses_to_overwrite_a_run(tmp_path: Path) -> None:
    exe = str(Path(sys.executable).with_name("seq2seq-train"))
    args = [exe, "experiment=toy", "train.max_steps=3", f"data.dir={tmp_path / 'data'}",
            f"data.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"]
    out = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for name in ("best.pt", "last.pt", "spm.model", "metrics.jsonl", "train.log"):
        assert (tmp_path / "run" / name).is_file(), name
    assert out.stdout == ""  # logs go to stderr
    again = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "already holds a run" in again.stderr and "resume=true" in again.stderr


EVALUATE = "from seq2seq.cli.main import evaluate; evaluate()"


def run_evaluate(*overrides: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", EVALUATE, "threads=2", *overrides]
    env = {**os.environ, "PYTHONUTF8": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", timeout=600, env=env)


def sacrebleu_lines(ref: Path, hyp: Path, *args: str) -> list[str]:
    """sacreBLEU's own command line on the written files, in its text format."""
    cmd = [sys.executable, "-m", "sacrebleu", str(ref), "-i", str(hyp), "-w", "2", "-f", "text", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120)
    return [line.strip() for line in proc.stdout.splitlines()]


@pytest.fixture(scope="module")
def checkpoint(toy_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the toy model's best.pt alone in a directory (the default hypothesis file goes there)."""
    path = tmp_path_factory.mktemp("evaluate") / "best.pt"
    shutil.copy(toy_run / "best.pt", path)
    return path


@pytest.fixture(scope="module")
def model_config(checkpoint: Path) -> Config:
    return checkpoint_config(load_checkpoint(checkpoint))


@pytest.fixture(scope="module")
def split_run(checkpoint: Path,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    plots = tmp_path_factory.mktemp("plots")
    proc = run_evaluate(f"checkpoint={checkpoint}", "lowercase=true", f"attention_plots={plots}",
                        "attention_plots_n=3")
    return proc, plots


def test_split_scores_are_sacrebleus_own(split_run: tuple[subprocess.CompletedProcess[str], Path],
                                         checkpoint: Path, model_config: Config) -> None:
    proc, _ = split_run
    assert proc.returncode == 0, proc.stderr
    hyp = checkpoint.parent / "hyp.test.tgt"  # the default output: next to the checkpoint
    ref = Path(model_config.data.dir) / "test.tgt"
    n_hyp, n_ref = (len(p.read_text(encoding="utf-8").splitlines()) for p in (hyp, ref))
    assert n_hyp == n_ref == 200
    expected = sacrebleu_lines(ref, hyp, "-m", "bleu", "chrf")
    expected += sacrebleu_lines(ref, hyp, "-m", "bleu", "-lc")
    assert proc.stdout.splitlines() == expected
    assert "case:lc" in expected[2]
    assert float(expected[0].split(" = ")[1].split()[0]) > 50  # the toy model did learn to reverse
    assert "sentences/s" in proc.stderr


def test_split_hypotheses_equal_the_python_api(split_run: tuple[subprocess.CompletedProcess[str], Path],
                                              checkpoint: Path, model_config: Config) -> None:
    assert split_run[0].returncode == 0, split_run[0].stderr
    sources = (Path(model_config.data.dir) / "test.src").read_text(encoding="utf-8").splitlines()
    hyps = (checkpoint.parent / "hyp.test.tgt").read_text(encoding="utf-8").splitlines()
    assert Translator.from_checkpoint(checkpoint, device="cpu").translate(sources) == hyps


def test_split_attention_plots(split_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    proc, plots = split_run
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in plots.iterdir()) == ["00001.png", "00002.png", "00003.png"]


def test_file_pair_hypotheses_to_stdout_scores_to_stderr(checkpoint: Path, model_config: Config,
                                                         tmp_path: Path) -> None:
    src, ref = tmp_path / "my.src", tmp_path / "my.ref"
    data = Path(model_config.data.dir)
    sources = (data / "val.src").read_text(encoding="utf-8").splitlines()[:12]
    references = (data / "val.tgt").read_text(encoding="utf-8").splitlines()[:12]
    src.write_text("".join(s + "\n" for s in sources), encoding="utf-8")
    ref.write_text("".join(r + "\n" for r in references), encoding="utf-8")
    proc = run_evaluate(f"checkpoint={checkpoint}", f"src={src}", f"ref={ref}", "decode.beam_size=3",
                        "decode.batch_tokens=40")
    assert proc.returncode == 0, proc.stderr
    hyps = proc.stdout.splitlines()
    translator = Translator.from_checkpoint(checkpoint, device="cpu")
    assert hyps == translator.translate(sources, beam_size=3)  # other batches, the same output
    (tmp_path / "hyp").write_text(proc.stdout, encoding="utf-8")
    bleu, chrf = sacrebleu_lines(ref, tmp_path / "hyp", "-m", "bleu", "chrf")
    assert bleu in proc.stderr and chrf in proc.stderr


def test_source_alone_is_only_translated(checkpoint: Path, tmp_path: Path) -> None:
    src, out = tmp_path / "a.src", tmp_path / "out" / "a.hyp"
    src.write_text("a b c\n\nd e\n", encoding="utf-8")
    out.parent.mkdir()
    proc = run_evaluate(f"checkpoint={checkpoint}", f"src={src}", f"out={out}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and "BLEU" not in proc.stderr
    assert out.read_text(encoding="utf-8").split("\n")[1:] == ["", "e d", ""]


def test_misaligned_files_exit_2_with_a_message(checkpoint: Path, tmp_path: Path) -> None:
    src, ref = tmp_path / "a.src", tmp_path / "a.ref"
    src.write_text("a b\nc d\n", encoding="utf-8")
    ref.write_text("b a\n", encoding="utf-8")
    proc = run_evaluate(f"checkpoint={checkpoint}", f"src={src}", f"ref={ref}")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines()[-1] == (f"error: misaligned files (source and reference): {src} has 2 lines "
                                            f"but {ref} has 1; line n of the second must translate line n of the "
                                            "first")


def test_missing_checkpoint_exits_2_with_a_message(tmp_path: Path) -> None:
    proc = run_evaluate(f"checkpoint={tmp_path / 'none.pt'}")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines()[-1].startswith(f"error: no checkpoint at {tmp_path / 'none.pt'}; pass")


def test_piped_one_line_out_per_line_in(toy_run: Path, translator: Translator) -> None:
    lines = ["a b c", "", "größer 東京 😀 ñ", "a\tb\x00c \x1b[31m d", "x\ry", "\x0b\x0c\u2028 e", "   ",
             LONG, "k l m n o p"]
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    data += b"q \xff r\r\n" + b"s t"  # bad UTF-8, a CRLF ending, no final newline
    proc = run_translate(toy_run / "best.pt", data)
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode("utf-8").split("\n")
    assert out[-1] == "" and len(out) - 1 == len(lines) + 2  # one line per input line, every one ended
    expected = translator.translate([*lines, "q \ufffd r", "s t"])
    assert out[:-1] == expected
    assert out[1] == "" and out[6] == ""  # empty and blank inputs get empty lines
    assert "truncated" in proc.stderr.decode()


def test_piped_answers_each_line_before_the_next(toy_run: Path, tmp_path: Path,
                                                 translator: Translator) -> None:
    """A coprocess: each answer arrives while stdin stays open; attention goes to stderr and PNGs."""
    cmd = [sys.executable, "-c", TRANSLATE, f"checkpoint={toy_run / 'best.pt'}", "threads=2",
           "show_attention=true", f"attention_plots={tmp_path / 'plots'}"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUTF8": "1"})
    try:
        answers = []
        for line in ("a b c", "d e f g"):
            proc.stdin.write(line.encode() + b"\n")
            proc.stdin.flush()
            answers.append(_read_line(proc.stdout, timeout=120))
        proc.stdin.close()
        rest = proc.stdout.read()
        stderr = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 0, stderr
    finally:
        proc.kill()
    assert answers == [t + "\n" for t in translator.translate(["a b c", "d e f g"])]
    assert rest == b""  # nothing else on stdout
    pieces = translator.translations(["d e f g"])[0].src_pieces
    assert pieces in [row.split() for row in stderr.splitlines()]  # the attention table's header
    assert "</s>" in stderr
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["00001.png", "00002.png"]


def _read_line(stream: IO[bytes], timeout: float) -> str:
    data = b""
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([stream], [], [], timeout)
        assert ready, f"no answer within {timeout} s (got {data!r})"
        chunk = os.read(stream.fileno(), 1)
        assert chunk, f"stdout closed early (got {data!r})"
        data += chunk
    return data.decode("utf-8")


def test_piped_nbest_blocks(toy_run: Path, translator: Translator) -> None:
    lines = ["a b c d", "", "e f g h i"]
    proc = run_translate(toy_run / "best.pt", "".join(x + "\n" for x in lines).encode(), "decode.nbest=3")
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    assert out.endswith("\n\n")
    blocks: list[list[str]] = [[]]
    for row in out[:-1].split("\n"):  # a block per input, each ended by an empty line
        if row:
            blocks[-1].append(row)
        else:
            blocks.append([])
    assert len(blocks) - 1 == len(lines) and blocks[-1] == []
    best = translator.translate(lines)
    assert blocks[1] == []  # an empty input has no candidates
    for block, first in zip((blocks[0], blocks[2]), (best[0], best[2]), strict=True):
        rows = [row.split("\t") for row in block]
        assert 1 <= len(rows) <= 3 and all(len(r) == 2 for r in rows)
        scores, texts = [float(r[0]) for r in rows], [r[1] for r in rows]
        assert scores == sorted(scores, reverse=True) and len(set(texts)) == len(texts)
        assert texts[0] == first


def test_piped_long_source_error_policy_stops_with_status_2(toy_run: Path) -> None:
    proc = run_translate(toy_run / "best.pt", f"a b\n{LONG}\nc d\n".encode(), "max_src_len_policy=error")
    assert proc.returncode == 2
    assert proc.stdout.decode() == "b a\n"
    assert proc.stderr.decode().strip().splitlines()[-1].startswith("error: line 2: the source has")


def test_translate_without_checkpoint_says_what_to_pass() -> None:
    proc = subprocess.run([sys.executable, "-c", TRANSLATE], input=b"", capture_output=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == b""
    assert b"error: no checkpoint given: pass checkpoint=" in proc.stderr


# ---- as a user runs them: signals, failed starts, typos, sweeps, outputs --------------------------------

TOY = ("experiment=toy", "device=cpu", "threads=1")


def exe(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def train_args(tmp: Path, *extra: str) -> list[str]:
    return [exe("seq2seq-train"), *TOY, f"data.dir={tmp / 'data'}", f"data.cache_dir={tmp / 'cache'}", *extra]


def clean_env() -> dict[str, str]:
    """The environment without OpenMP settings, so the console script's own default shows."""
    return {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}


def test_sigterm_saves_last_pt_and_exits_143(tmp_path: Path) -> None:
    """Schedulers send SIGTERM before SIGKILL. Signalled once its heartbeat shows it is in the training loop."""
    run = tmp_path / "run"
    proc = subprocess.Popen(train_args(tmp_path, "train.max_steps=100000", "train.heartbeat_seconds=0.1",
                                       f"hydra.run.dir={run}"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        lines = Lines(proc.stderr)  # a deadline even while the process prints nothing
        found = lines.wait_for(lambda line: "heartbeat: step" in line, timeout=300)
        assert found, f"exited with status {proc.wait()}: {''.join(lines.seen[-20:])}"
        proc.send_signal(15)
        rest = lines.rest(timeout=120)
        assert proc.wait(timeout=120) == 143, rest
    finally:
        proc.kill()
    stderr = "".join(lines.seen)
    assert "(seq2seq's default)" in stderr and "CPU: 1 torch thread" in stderr  # passive or short spin, by load
    assert "terminated (SIGTERM): saved" in stderr and stderr.rstrip().endswith("terminated")
    progress = load_checkpoint(run / "last.pt")["progress"]
    assert progress["step"] >= 1 and not progress["finished"]
    assert "error: terminated (SIGTERM)" in (run / "train.log").read_text()  # the log says how it ended


def test_a_failed_start_leaves_no_directory(tmp_path: Path) -> None:
    for extra, message in ((["data=multi30k_en_de", f"data.dir={tmp_path / 'none'}"], "does not exist"),
                           (["resume=true"], "resume=true continues the run in hydra.run.dir")):
        out = subprocess.run(train_args(tmp_path, *extra)[:1] + list(TOY) + extra, cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 2 and message in out.stderr, out.stderr
        assert not (tmp_path / "runs").exists(), "a failed start left its directory"


@pytest.mark.parametrize(("command", "args"), [
    ("seq2seq-train", ["train.max_step=5"]),
    ("seq2seq-train", ["+train.max_step=5"]),
    ("seq2seq-evaluate", ["checkpoint=x.pt", "+decode.beam_sise=3"]),
    ("seq2seq-translate", ["checkpoint=x.pt", "decode.beam_sise=3"]),
])
def test_a_misspelt_key_fails_whichever_way_it_was_added(tmp_path: Path, command: str, args: list[str]) -> None:
    out = subprocess.run([exe(command), *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "unknown setting" in out.stderr and "did you mean" in out.stderr and not list(tmp_path.iterdir())


def test_multirun_names_jobs_by_overrides_and_prints_a_summary(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = train_args(tmp_path, "model/attention=bahdanau,luong_dot", "train.max_steps=2", f"hydra.sweep.dir={sweep}")
    out = subprocess.run([args[0], "-m", *args[1:]], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    names = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert len(names) == 2 and all("model-attention=" in n and "train.max_steps=2" in n for n in names)
    table = out.stdout[out.stdout.index("sweep "):].splitlines()
    assert table[1].startswith("overrides") and {t.split()[0] for t in table[2:4]} == {
        "model/attention=bahdanau", "model/attention=luong_dot"}
    assert (sweep / "summary.tsv").is_file()


def test_evaluate_checks_its_outputs_before_translating(toy_run: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    for setting, message in ((f"out={tmp_path / 'no' / 'such' / 'hyp'}", "does not exist"),
                             (f"attention_plots={tmp_path / 'file'}", "is a file")):
        out = subprocess.run([exe("seq2seq-evaluate"), f"checkpoint={toy_run / 'best.pt'}", setting, "threads=1"],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 2 and message in out.stderr, out.stderr
        assert "translating" not in out.stderr  # refused before the work
