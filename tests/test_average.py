"""Checkpoint averaging: the mean of the weights, kept checkpoints, refusals, seq2seq-average."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import toy_config, train_toy

from seq2seq.checkpoint import kept_checkpoints, load_checkpoint, load_model, save_checkpoint, tokenizer_from
from seq2seq.errors import CheckpointError, ConfigError
from seq2seq.inference.translator import Translator
from seq2seq.training.average import average_checkpoints, write_average
from seq2seq.training.run_checkpoints import check_resumable

AVERAGE = "from seq2seq.cli.main import average; average()"


def shifted(payload: dict, by: float) -> dict:
    """``payload`` with every float weight moved by ``by``."""
    return payload | {"model": {k: v + by if v.is_floating_point() else v for k, v in payload["model"].items()}}


def test_average_of_identical_checkpoints_equals_the_checkpoint(toy_run: Path, tmp_path: Path) -> None:
    best = toy_run / "best.pt"
    avg = write_average([best, best, best], tmp_path / "avg.pt")
    original = load_checkpoint(best)["model"]
    assert avg["model"].keys() == original.keys()
    for key, value in original.items():
        assert avg["model"][key].dtype == value.dtype
        assert torch.equal(avg["model"][key], value), key
    sentences = ["a b c d", "x y z"]
    assert (Translator.from_checkpoint(tmp_path / "avg.pt", device="cpu").translate(sentences)
            == Translator.from_checkpoint(best, device="cpu").translate(sentences))


def test_average_is_the_mean_of_the_weights(toy_run: Path, tmp_path: Path) -> None:
    payload = load_checkpoint(toy_run / "best.pt")
    save_checkpoint(tmp_path / "up.pt", shifted(payload, 1.0))
    save_checkpoint(tmp_path / "up3.pt", shifted(payload, 3.0))
    avg = average_checkpoints([tmp_path / "up.pt", tmp_path / "up3.pt"])
    for key, value in payload["model"].items():
        torch.testing.assert_close(avg["model"][key], value + 2.0)
    assert avg["averaged_from"] == [str(tmp_path / "up.pt"), str(tmp_path / "up3.pt")]
    assert "optimizer" not in avg  # weights only: it decodes, it does not resume


def test_checkpoints_of_other_models_or_vocabularies_are_refused(toy_run: Path, tmp_path: Path) -> None:
    payload = load_checkpoint(toy_run / "best.pt")
    other_model = payload | {"config": payload["config"] | {"model": payload["config"]["model"] | {"dropout": 0.2}}}
    save_checkpoint(tmp_path / "dropout.pt", other_model)
    with pytest.raises(CheckpointError, match=r"dropout\.pt does not fit .*best\.pt: its model settings differ "
                                              r"\(model\.dropout=0\.2 -> 0\.\d"):
        average_checkpoints([toy_run / "best.pt", tmp_path / "dropout.pt"])
    other_vocab = payload | {"tokenizer": {"src": payload["tokenizer"]["src"] + b"x", "tgt": None}}
    save_checkpoint(tmp_path / "vocab.pt", other_vocab)
    with pytest.raises(CheckpointError, match=r"vocab\.pt does not fit .*: its source vocabulary"):
        average_checkpoints([toy_run / "best.pt", tmp_path / "vocab.pt"])
    save_checkpoint(tmp_path / "pair.pt", payload | {"pair": ["xx", "yy"]})
    with pytest.raises(CheckpointError, match=r"pair\.pt does not fit .*: it translates xx-yy"):
        average_checkpoints([toy_run / "best.pt", tmp_path / "pair.pt"])


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short toy run that validates at steps 2, 4, 6, keeps 2 checkpoints and averages them at the end."""
    _, run_dir = train_toy(tmp_path_factory.mktemp("kept"), "train.max_steps=6", "train.valid_every_steps=2",
                           "train.keep_checkpoints=2", "train.average_at_end=true")
    return run_dir


def test_keep_checkpoints_keeps_the_newest_and_averages_them(kept_run: Path) -> None:
    kept = kept_checkpoints(kept_run)
    assert [p.name for p in kept] == ["ckpt.step4.pt", "ckpt.step6.pt"]
    assert load_checkpoint(kept[0])["progress"]["step"] == 4
    assert "optimizer" not in load_checkpoint(kept[0])
    avg = load_checkpoint(kept_run / "avg.pt")
    expected = average_checkpoints(kept)
    for key, value in expected["model"].items():
        assert torch.equal(avg["model"][key], value)
    load_model(kept_run / "avg.pt")  # a normal checkpoint for decoding


def test_a_weights_only_checkpoint_is_not_resumed(kept_run: Path, tmp_path: Path) -> None:
    cfg = toy_config(tmp_path)
    with pytest.raises(ConfigError, match="holds weights only .* resume from the run's last.pt"):
        payload = load_checkpoint(kept_run / "avg.pt")
        check_resumable(payload, cfg, kept_run / "avg.pt", tokenizer_from(payload))


def test_average_at_end_needs_kept_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set train.keep_checkpoints"):
        toy_config(tmp_path, "train.average_at_end=true")


def test_cli_averages_a_run_directory(kept_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "avg1.pt"
    env = {**os.environ, "PYTHONUTF8": "1"}
    proc = subprocess.run([sys.executable, "-c", AVERAGE, str(kept_run), "last=1", f"out={out}"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    newest = load_checkpoint(kept_run / "ckpt.step6.pt")["model"]
    assert all(torch.equal(load_checkpoint(out)["model"][k], v) for k, v in newest.items())
    empty = tmp_path / "empty_run"
    empty.mkdir()
    proc = subprocess.run([sys.executable, "-c", AVERAGE, str(empty)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 2
    assert "has no kept checkpoints (ckpt.step*.pt); train with train.keep_checkpoints=N" in proc.stderr


def test_weights_that_do_not_match_are_refused_by_name(toy_run: Path, tmp_path: Path) -> None:
    """A missing, extra or reshaped weight names the key (it used to divide by the wrong count, broadcast, or
    raise a bare KeyError)."""
    payload = load_checkpoint(toy_run / "best.pt")
    name = next(iter(payload["model"]))
    missing = payload | {"model": {k: v for k, v in payload["model"].items() if k != name}}
    extra = payload | {"model": payload["model"] | {"extra.weight": torch.zeros(3)}}
    first = payload["model"][name]
    reshaped = payload | {"model": payload["model"] | {name: first.reshape(-1)[:1].clone()}}
    for file, member, message in (("missing.pt", missing, rf"missing\.pt has no weight '{name}'"),
                                  ("extra.pt", extra, r"has no weight 'extra\.weight' that .*extra\.pt has"),
                                  ("reshaped.pt", reshaped, rf"weight '{name}' is \(1,\) there")):
        save_checkpoint(tmp_path / file, member)
        with pytest.raises(CheckpointError, match=message):
            average_checkpoints([toy_run / "best.pt", tmp_path / file])


def test_an_average_says_what_it_is(kept_run: Path) -> None:
    avg = load_checkpoint(kept_run / "avg.pt")
    assert avg["averaged_from"] and avg["progress"]["best_bleu"] is None  # not its last member's BLEU
