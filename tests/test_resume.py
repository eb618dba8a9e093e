"""Exact resume: an interrupted run, resumed, ends with the same weights as an uninterrupted one.

Bitwise equality holds on the CPU because the batch order is rebuilt from (seed, epoch), the position
in the epoch, the optimizer, scheduler and RNG states are restored, and the thread count is the same.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import toy_config, train_toy

from seq2seq.checkpoint import check_resumable, load_checkpoint
from seq2seq.data import load_corpus
from seq2seq.errors import ConfigError
from seq2seq.step import Step
from seq2seq.trainer import Trainer

STEPS = ("train.max_steps=30", "train.valid_every_steps=10", "optim.lr=0.01")


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
DEVICES = [("device=cpu",), ("device=cpu", "optim.schedule=cosine"),  # cosine: the rate continues where it was
           ("device=cpu", "data.sampling_alpha=0.1"),  # subword sampling: the epoch's segmentation is rebuilt
           pytest.param(("device=cuda",), marks=CUDA),
           pytest.param(("device=cuda", "train.precision=fp16"), marks=CUDA)]  # fp16: the scaler's state too


@pytest.mark.parametrize("device", DEVICES, ids=lambda d: "-".join(o.split("=")[1] for o in d))
def test_ctrl_c_saves_and_resume_is_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          device: tuple[str, ...]) -> None:
    reference, ref_dir = train_toy(tmp_path / "ref", *STEPS, *device)

    cfg = toy_config(tmp_path / "cut", *STEPS, *device)
    run_dir = tmp_path / "cut" / "run"
    run_dir.mkdir(parents=True)
    trainer = Trainer(cfg, load_corpus(cfg.data), run_dir)
    original = Step.__call__

    def interrupt_at_17(self, batches, progress):
        if progress.step == 17:
            raise KeyboardInterrupt
        return original(self, batches, progress)

    monkeypatch.setattr(Step, "__call__", interrupt_at_17)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    monkeypatch.setattr(Step, "__call__", original)
    saved = load_checkpoint(run_dir / "last.pt")
    assert saved["progress"]["step"] == 17
    assert ("scaler" in saved) == ("train.precision=fp16" in device)
    assert ("cuda" in saved["rng"]) == ("device=cuda" in device)

    resumed = Trainer(cfg, load_corpus(cfg.data), run_dir)
    resumed.resume(run_dir / "last.pt")
    resumed.run()
    assert resumed.progress.step == 30
    assert_same_weights(reference.model.state_dict(), resumed.model.state_dict())
    assert (run_dir / "metrics.jsonl").read_text() == (ref_dir / "metrics.jsonl").read_text()


def cli(tmp: Path, run: str, *extra: str) -> list[str]:
    return [str(Path(sys.executable).with_name("seq2seq-train")), "experiment=toy", *STEPS, "threads=1",
            "train.save_every_steps=3", f"data.dir={tmp / 'data'}", f"data.cache_dir={tmp / 'cache'}",
            f"hydra.run.dir={tmp / run}", *extra]


# seq2seq-train, except that after writing last.pt at step KILL_AT it touches a marker file and waits to be killed
VICTIM = """
import sys, time
from pathlib import Path
from seq2seq.checkpoint import RunCheckpoints
from seq2seq.cli import train

marker, kill_at = Path(sys.argv.pop(1)), int(sys.argv.pop(1))
save = RunCheckpoints.save

def save_then_wait(self, name, progress):
    save(self, name, progress)
    if name == "last.pt" and progress.step == kill_at:
        marker.touch()
        time.sleep(600)

RunCheckpoints.save = save_then_wait
train()
"""
KILL_AT = 9  # a save (every 3 steps) in the middle of the first epoch of 30 steps


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    subprocess.run(cli(tmp_path, "ref"), check=True, capture_output=True, timeout=600)
    marker = tmp_path / "saved"
    victim = subprocess.Popen([sys.executable, "-c", VICTIM, str(marker), str(KILL_AT), *cli(tmp_path, "killed")[1:]],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not marker.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), f"the run never reached step {KILL_AT}: {victim.stderr.read().decode()[-2000:]}"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    last = tmp_path / "killed" / "last.pt"
    assert load_checkpoint(last)["progress"]["step"] == KILL_AT

    out = subprocess.run(cli(tmp_path, "killed", "resume=true"), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    ref, got = load_checkpoint(tmp_path / "ref" / "last.pt"), load_checkpoint(last)
    assert got["progress"]["step"] == 30
    assert_same_weights(ref["model"], got["model"])
    assert (tmp_path / "ref" / "metrics.jsonl").read_text() == (tmp_path / "killed" / "metrics.jsonl").read_text()


def test_resume_refuses_another_language_pair_or_model(tmp_path: Path, toy_run: Path) -> None:
    payload = load_checkpoint(toy_run / "last.pt")
    for override, message in (("data.tgt_lang=xx", "trained on src-tgt, not on the requested src-xx"),
                              ("model.dec_hidden=64", "different model config"),
                              ("seed=1", "finished run")):
        with pytest.raises(ConfigError, match=message):
            check_resumable(payload, toy_config(tmp_path, override), toy_run / "last.pt")
