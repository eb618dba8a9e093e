"""The console scripts as a user runs them (subprocesses): signals, failed starts, typos, sweeps, outputs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seq2seq.checkpoint import load_checkpoint

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
    seen, deadline = [], time.monotonic() + 300
    for line in proc.stderr:
        seen.append(line)
        if "heartbeat: step" in line or time.monotonic() > deadline:
            break
    assert "heartbeat: step" in seen[-1], "".join(seen[-20:])
    proc.send_signal(15)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 143, rest
    stderr = "".join(seen) + rest
    assert "OMP_WAIT_POLICY=PASSIVE (seq2seq's default)" in stderr and "CPU: 1 torch thread" in stderr
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


def test_ctrl_c_at_the_prompt_clears_the_line(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from seq2seq import cli

    typed = iter([KeyboardInterrupt(), "a b", EOFError()])

    def fake_input(prompt: str = "") -> str:
        item = next(typed)
        if isinstance(item, BaseException):
            raise item
        return item

    answered = []
    monkeypatch.setattr("builtins.input", fake_input)
    monkeypatch.setattr(cli, "_answer", lambda translator, cfg, line, number: answered.append((line, number)))
    cli._interactive(None, None)
    assert answered == [("a b", 1)]  # the prompt came back after Ctrl-C; Ctrl-D quit
    assert "interrupted" not in capsys.readouterr().err
