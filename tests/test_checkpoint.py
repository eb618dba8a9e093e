"""The checkpoint layout (seq2seq/checkpoint.py): atomic writes, safe loads, resuming a run exactly."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import multi30k_subset, needs_multi30k, toy_config, train_toy

from seq2seq.checkpoint import load_checkpoint, load_model, save_checkpoint, tokenizer_from
from seq2seq.data.corpus import load_corpus
from seq2seq.errors import CheckpointError, ConfigError
from seq2seq.training.run_checkpoints import check_resumable
from seq2seq.training.step import OptimizerStep
from seq2seq.training.trainer import Trainer


def test_roundtrip(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "a.pt", {"model": {"w": torch.ones(2)}, "blob": b"\x00\x01"})
    payload = load_checkpoint(tmp_path / "a.pt")
    assert torch.equal(payload["model"]["w"], torch.ones(2)) and payload["blob"] == b"\x00\x01"
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]  # no temporary file left behind


def test_failed_write_leaves_the_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.zeros(3)}})
    before = path.read_bytes()

    def disk_full(obj, f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="No space left on device.*previous checkpoint is untouched"):
        save_checkpoint(path, {"model": {"w": torch.ones(3)}})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_missing_empty_truncated_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pt is empty"):
        load_checkpoint(tmp_path / "empty.pt")
    save_checkpoint(tmp_path / "good.pt", {"model": {"w": torch.randn(1000)}})
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt: it is truncated or not a PyTorch file"):
        load_checkpoint(tmp_path / "cut.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match=r"text.pt: it is truncated or not a PyTorch file \(no zip") as err:
        load_checkpoint(tmp_path / "text.pt")
    assert "(101)" not in str(err.value) and "(104)" not in str(err.value)  # torch's KeyError: an unexplained number
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a seq2seq checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['EXPLOIT_MARKER']}",))


def test_code_in_a_checkpoint_is_refused_without_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EXPLOIT_MARKER", str(marker))
    path = tmp_path / "evil.pt"
    torch.save({"format": "seq2seq-checkpoint", "version": 1, "x": Exploit()}, path)
    with pytest.raises(CheckpointError, match="refusing to load .*evil.pt"):
        load_checkpoint(path)
    assert not marker.exists()
    with open(tmp_path / "evil.pkl", "wb") as f:  # a bare pickle, not a zip archive
        pickle.dump(Exploit(), f)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pkl")
    assert not marker.exists()


def test_checkpoint_config_is_validated(tmp_path: Path, toy_run: Path) -> None:
    payload = load_checkpoint(toy_run / "best.pt")
    payload["config"]["model"]["attention"] = "magic"
    save_checkpoint(tmp_path / "bad.pt", {k: v for k, v in payload.items() if k not in ("format", "version")})
    with pytest.raises(CheckpointError, match="config inside is invalid.*magic"):
        load_model(tmp_path / "bad.pt")


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
    original = OptimizerStep.__call__

    def interrupt_at_17(self, batches, progress):
        if progress.step == 17:
            raise KeyboardInterrupt
        return original(self, batches, progress)

    monkeypatch.setattr(OptimizerStep, "__call__", interrupt_at_17)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    monkeypatch.setattr(OptimizerStep, "__call__", original)
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
from seq2seq.training.run_checkpoints import RunCheckpoints
from seq2seq.cli.main import train

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


def run_killed_and_resumed(tmp_path: Path, command: list[str]) -> tuple[dict, dict]:
    """Run ``command`` (seq2seq-train's arguments, without hydra.run.dir) to the end in ``ref``; run it again in
    ``killed``, SIGKILLed right after it saved last.pt at step KILL_AT, then resumed in a new process. Returns
    the two runs' last.pt."""
    subprocess.run([*command, f"hydra.run.dir={tmp_path / 'ref'}"], check=True, capture_output=True, timeout=600)
    marker = tmp_path / "saved"
    log = (tmp_path / "victim.log").open("wb")  # a file, not a pipe nobody reads: the victim never blocks on it
    victim = subprocess.Popen([sys.executable, "-c", VICTIM, str(marker), str(KILL_AT), *command[1:],
                               f"hydra.run.dir={tmp_path / 'killed'}"], stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 300
    while not marker.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    log.close()
    assert marker.exists(), f"the run never reached step {KILL_AT}: {(tmp_path / 'victim.log').read_text()[-2000:]}"
    last = tmp_path / "killed" / "last.pt"
    assert load_checkpoint(last)["progress"]["step"] == KILL_AT

    out = subprocess.run([*command, f"hydra.run.dir={tmp_path / 'killed'}", "resume=true"], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "ref" / "metrics.jsonl").read_text() == (tmp_path / "killed" / "metrics.jsonl").read_text()
    return load_checkpoint(tmp_path / "ref" / "last.pt"), load_checkpoint(last)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    ref, got = run_killed_and_resumed(tmp_path, cli(tmp_path, "unused")[:-1])
    assert got["progress"]["step"] == 30
    assert_same_weights(ref["model"], got["model"])


@needs_multi30k
def test_the_default_recipe_with_subword_sampling_resumes_bitwise_in_a_new_process(tmp_path: Path) -> None:
    """The default Multi30k recipe (subword sampling on), scaled down to a subset and a small model, killed in
    the middle of an epoch and resumed in a new process, ends bitwise equal to an uninterrupted run: the
    resumed process draws the same segmentations, so the rest of the epoch is the same batches."""
    data = multi30k_subset(tmp_path / "m30k", 1500, 100)
    command = [str(Path(sys.executable).with_name("seq2seq-train")), "model=small", "data.vocab_size=600",
               f"data.dir={data}", f"data.cache_dir={tmp_path / 'cache'}", "train.max_minutes=null", *STEPS,
               "train.save_every_steps=3", "decode=greedy", "threads=1"]
    ref, got = run_killed_and_resumed(tmp_path, command)
    assert ref["config"]["data"]["sampling_alpha"] == 0.4  # the default's sampling, on
    assert got["progress"]["epoch"] > 1 and got["progress"]["step"] == 30  # past an epoch's resegmentation
    assert_same_weights(ref["model"], got["model"])


def test_resume_refuses_another_language_pair_or_model(tmp_path: Path, toy_run: Path) -> None:
    payload = load_checkpoint(toy_run / "last.pt")
    tokenizer = tokenizer_from(payload)
    for override, error, message in (
            ("data.tgt_lang=xx", CheckpointError, "does not fit this run: it translates src-tgt, not src-xx"),
            ("model.dec_hidden=64", CheckpointError, r"its model settings differ \(model.dec_hidden=128 -> 64"),
            ("seed=1", ConfigError, r"finished run and train\.\w+=\d+ .* is already reached.*init_from=")):
        with pytest.raises(error, match=message):
            check_resumable(payload, toy_config(tmp_path, override), toy_run / "last.pt", tokenizer)


def test_a_checkpoint_from_before_a_new_model_key_can_be_resumed(tmp_path: Path, toy_run: Path) -> None:
    """A key the schema gained since (here model.attention_heads) takes its default, not a refusal."""
    payload = load_checkpoint(toy_run / "last.pt")
    del payload["config"]["model"]["attention_heads"]
    payload["progress"]["finished"] = False
    check_resumable(payload, toy_config(tmp_path), toy_run / "last.pt", tokenizer_from(payload))


def test_a_finished_run_continues_with_a_larger_budget(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """train longer: resume=true with a larger train.max_steps continues the finished run, and says so."""
    first, run_dir = train_toy(tmp_path, "train.max_steps=6")
    assert first.progress.finished and first.progress.stopped == "train.max_steps"
    payload = load_checkpoint(run_dir / "last.pt")
    with pytest.raises(ConfigError, match=r"train\.max_steps=6 \(step 6\) is already reached"):
        check_resumable(payload, toy_config(tmp_path, "train.max_steps=6"), run_dir / "last.pt",
                        tokenizer_from(payload))

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
    ("model.dec_hidden=64", r"does not fit this run: its model settings differ \(model.dec_hidden=128 -> 64"),
    ("data.spm_type=bpe", r"does not fit this run: its source vocabulary \(SentencePiece model\) differs "
                          r"\(.*pieces.*\)"),
])
def test_init_from_refuses_another_model_or_vocabulary(tmp_path: Path, toy_run: Path, override: str,
                                                       message: str) -> None:
    cfg = toy_config(tmp_path, override)
    trainer = Trainer(cfg, load_corpus(cfg.data), tmp_path)
    with pytest.raises(CheckpointError, match=message):
        trainer.init_from(toy_run / "best.pt", "optimizer")


def test_init_from_and_resume_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set only one of them"):
        toy_config(tmp_path, "init_from=x.pt", "resume=true")


class Interrupt:
    """torch.save that, once, writes part of ``target``'s checkpoint and is then interrupted (Ctrl-C), or
    interrupts just after writing it whole (``after=True``); other files are saved as usual."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, target: str, after: bool, at_step: int) -> None:
        self.target, self.after, self.at_step, self.fired = target, after, at_step, False
        self.save = torch.save
        monkeypatch.setattr(torch, "save", self)

    def __call__(self, obj: dict, f) -> None:  # noqa: ANN001 (torch.save's own signature)
        due = (not self.fired and f".{self.target}." in getattr(f, "name", "")
               and obj.get("progress", {}).get("step") == self.at_step)
        if due and not self.after:
            self.fired = True
            f.write(b"PK\x03\x04 half a checkpoint")
            raise KeyboardInterrupt
        self.save(obj, f)
        if due:
            self.fired = True
            raise KeyboardInterrupt


def run_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, after: bool, step: int) -> Path:
    """The toy run of STEPS (validations at 10, 20, 30), interrupted at its save of ``target`` at ``step``,
    then resumed in a new Trainer to the end; returns its run directory."""
    cfg = toy_config(tmp_path, *STEPS)
    run_dir = tmp_path / "run"
    run_dir.mkdir(parents=True)
    interrupt = Interrupt(monkeypatch, target, after, step)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, load_corpus(cfg.data), run_dir).run()
    assert interrupt.fired
    monkeypatch.setattr(torch, "save", interrupt.save)
    assert not list(run_dir.glob(".*.tmp")), "an interrupted write left its temporary file"
    assert load_checkpoint(run_dir / "last.pt")["progress"]["step"] == step  # the interrupt saved it
    resumed = Trainer(cfg, load_corpus(cfg.data), run_dir)
    resumed.resume(run_dir / "last.pt")
    resumed.run()
    return run_dir


@pytest.mark.parametrize(("target", "after", "step"), [("best.pt", False, 30), ("best.pt", True, 30),
                                                       ("last.pt", False, 20)],
                         ids=["during-best", "between-best-and-last", "during-last"])
def test_an_interrupt_at_any_save_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str,
                                                after: bool, step: int) -> None:
    """best.pt always holds the best validation's model (the last one, at step 30, is a new best), and the
    resumed run ends as an uninterrupted one."""
    reference, ref_dir = train_toy(tmp_path / "ref", *STEPS)
    run_dir = run_interrupted(tmp_path / "cut", monkeypatch, target, after, step)
    ref_best, best = load_checkpoint(ref_dir / "best.pt"), load_checkpoint(run_dir / "best.pt")
    assert best["progress"]["step"] == ref_best["progress"]["step"] == 30
    assert_same_weights(ref_best["model"], best["model"])
    assert_same_weights(reference.model.state_dict(), load_checkpoint(run_dir / "last.pt")["model"])
    assert (run_dir / "metrics.jsonl").read_text() == (ref_dir / "metrics.jsonl").read_text()


def test_vocabularies_compare_by_their_pieces_not_their_bytes() -> None:
    """A SentencePiece model records how it was trained (the trainer's thread count, say): the same vocabulary
    trained on another machine has other bytes, and must still fit a run resumed there."""
    import io

    import sentencepiece as spm

    from seq2seq.checkpoint import same_vocabulary

    lines = [" ".join("abcdefghij"[(i * k) % 10] for k in range(1, 8)) for i in range(300)]

    def train(threads: int, vocab: int = 20) -> bytes:
        out = io.BytesIO()
        spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=out, vocab_size=vocab,
                                       num_threads=threads, minloglevel=2, hard_vocab_limit=False)
        return out.getvalue()

    one, two = train(1), train(2)
    assert one != two and same_vocabulary(one, two)
    assert not same_vocabulary(one, train(1, vocab=16))
