"""Checkpoints: atomic writes, safe loading, clear errors for truncated, empty, foreign or malicious files."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from seq2seq.checkpoint import load_checkpoint, load_model, save_checkpoint
from seq2seq.errors import CheckpointError


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
