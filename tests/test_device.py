"""The one device resolver (seq2seq/device.py)."""

from __future__ import annotations

import pytest
import torch

from seq2seq.device import resolve_device
from seq2seq.errors import ConfigError


def test_auto_device_gives_every_process_its_own_gpu_or_uses_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == torch.device("cpu")  # 2 processes, 1 GPU: share the CPU
    with pytest.raises(ConfigError, match=r"LOCAL_RANK=1 needs cuda:1 but this machine has 1 GPU\(s\)"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda", 1)


def test_names_are_checked() -> None:
    for name in ("gpu", "mps", "cuda:x"):
        with pytest.raises(ConfigError, match=f"unknown device '{name}'; use auto, cpu, cuda or cuda:N"):
            resolve_device(name)
    assert resolve_device("cpu") == torch.device("cpu")


def test_cuda_without_a_gpu_says_to_use_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match=f"device={name} but no CUDA GPU is available here; use device=cpu"):
            resolve_device(name)


def test_one_gpu_named_under_torchrun_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="under torchrun would put every process on one GPU; use device=cuda"):
        resolve_device("cuda:0")
