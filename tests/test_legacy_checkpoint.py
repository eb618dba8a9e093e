"""A checkpoint written before the package moved into subpackages still loads, evaluates and resumes.

tests/fixtures/toy_checkpoint_v1.pt is the last.pt of a 6-step toy run saved by the flat-layout code (commit
8205d7d): ``seq2seq-train experiment=toy train.max_steps=6 train.save_every_steps=3 model.emb_size=8
model.enc_hidden=8 model.dec_hidden=16 model.attention_size=8``. Checkpoints hold plain data only (no class
paths), so moving modules must not break them; this test keeps it so.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq.checkpoint import load_checkpoint, load_model
from seq2seq.data.toy import generate
from seq2seq.inference.translator import Translator

FIXTURE = Path(__file__).parent / "fixtures" / "toy_checkpoint_v1.pt"
MODEL = ("model.emb_size=8", "model.enc_hidden=8", "model.dec_hidden=16", "model.attention_size=8")


@pytest.fixture
def toy_data(tmp_path: Path) -> Path:
    generate("reverse", tmp_path / "toy", "src", "tgt", seed=0)  # the data the fixture was trained on
    return tmp_path / "toy"


def test_it_loads_and_translates() -> None:
    model, tokenizer, cfg = load_model(FIXTURE)
    assert cfg.model.emb_size == 8 and cfg.data.name == "toy_reverse"
    assert load_checkpoint(FIXTURE)["progress"]["step"] == 6
    out = Translator.from_checkpoint(FIXTURE, device="cpu").translate(["a b c"])
    assert isinstance(out[0], str)


def test_it_evaluates_from_the_command_line(toy_data: Path) -> None:
    cmd = [sys.executable, "-c", "from seq2seq.cli.main import evaluate; evaluate()", f"checkpoint={FIXTURE}",
           f"data_dir={toy_data}", "split=test", "out=-", "device=cpu", "threads=1", "decode=greedy"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = (toy_data / "test.src").read_text().splitlines()
    assert len(out.stdout.splitlines()) == len(lines) and "BLEU" in out.stderr  # hypotheses, then the scores


def test_it_resumes_with_a_larger_budget(toy_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(FIXTURE, run / "last.pt")
    cmd = [str(Path(sys.executable).with_name("seq2seq-train")), "experiment=toy", *MODEL, "train.max_steps=8",
           "threads=1", f"data.dir={toy_data}", f"data.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run}",
           "resume=true"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "continuing the finished run" in out.stderr
    assert load_checkpoint(run / "last.pt")["progress"]["step"] == 8


@pytest.mark.parametrize(("schedule", "stored", "read"), [("plateau", 4000, 0), ("cosine", 4000, 0),
                                                            ("noam", 4000, 4000), ("cosine", 200, 200)])
def test_the_old_default_warm_up_is_read_as_none_outside_noam(tmp_path: Path, schedule: str, stored: int,
                                                               read: int) -> None:
    """Checkpoints from before the cosine's warm-up stored optim.warmup_steps=4000, the default only noam read:
    a plateau one (experiment=toy's) must still load, and outside noam that 4000 reads as no warm-up."""
    import torch

    from seq2seq.checkpoint import checkpoint_config

    payload = load_checkpoint(FIXTURE)
    payload["config"]["optim"] |= {"schedule": schedule, "warmup_steps": stored}
    path = tmp_path / "old.pt"
    torch.save(payload, path)
    assert checkpoint_config(load_checkpoint(path), path).optim.warmup_steps == read
    assert load_model(path)[2].optim.warmup_steps == read  # what evaluate, translate and serve load
