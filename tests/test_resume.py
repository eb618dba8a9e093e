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
                              ("model.dec_hidden=64", r"other model settings \(model.dec_hidden=128 -> 64"),
                              ("seed=1", r"finished run and train\.\w+=\d+ .* is already reached.*init_from=")):
        with pytest.raises(ConfigError, match=message):
            check_resumable(payload, toy_config(tmp_path, override), toy_run / "last.pt")


def test_a_finished_run_continues_with_a_larger_budget(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """train longer: resume=true with a larger train.max_steps continues the finished run, and says so."""
    first, run_dir = train_toy(tmp_path, "train.max_steps=6")
    assert first.progress.finished and first.progress.stopped == "train.max_steps"
    payload = load_checkpoint(run_dir / "last.pt")
    with pytest.raises(ConfigError, match=r"train\.max_steps=6 \(step 6\) is already reached"):
        check_resumable(payload, toy_config(tmp_path, "train.max_steps=6"), run_dir / "last.pt")

    cfg = toy_config(tmp_path, "train.max_steps=10")
    longer = Trainer(cfg, load_corpus(cfg.data), run_dir)
    with caplog.at_level("INFO"):
        longer.resume(run_dir / "last.pt")
    assert "continuing the finished run" in caplog.text and "train.max_steps=6 -> 10" in caplog.text
    longer.run()
    assert longer.progress.step == 10 and longer.progress.finished


def test_init_from_starts_a_new_run_from_the_weights(tmp_path: Path, toy_run: Path) -> None:
    cfg = toy_config(tmp_path, "train.max_steps=1", "init_from=" + str(toy_run / "best.pt"))
    corpus = load_corpus(cfg.data)
    parent = load_checkpoint(toy_run / "best.pt")
    for reset, kept in (("optimizer", False), ("none", True)):
        trainer = Trainer(cfg, corpus, tmp_path / reset)
        (tmp_path / reset).mkdir()
        trainer.init_from(toy_run / "best.pt", reset)
        assert_same_weights(parent["model"], trainer.model.state_dict())
        assert trainer.progress.step == 0 and trainer.progress.best_bleu < 0  # a new run
        state = trainer.parts.optimizer.state_dict()["state"]
        assert bool(state) == kept
        assert trainer.parts.lr == cfg.optim.lr  # the new run's rate, also with the kept moments


@pytest.mark.parametrize(("override", "message"), [
    ("model.dec_hidden=64", r"init_from needs a model with the checkpoint's model settings|model.dec_hidden=128 -> 64"),
    ("data.spm_type=bpe", r"another source vocabulary than this run \(.*pieces.*\); use the data\.\* settings"),
])
def test_init_from_refuses_another_model_or_vocabulary(tmp_path: Path, toy_run: Path, override: str,
                                                       message: str) -> None:
    cfg = toy_config(tmp_path, override)
    trainer = Trainer(cfg, load_corpus(cfg.data), tmp_path)
    with pytest.raises(ConfigError, match=message):
        trainer.init_from(toy_run / "best.pt", "optimizer")


def test_init_from_and_resume_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set only one of them"):
        toy_config(tmp_path, "init_from=x.pt", "resume=true")
