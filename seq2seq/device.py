"""Where a model runs: the one device resolver, for training (one process or torchrun's several) and decoding,
and the one precision resolver (``train.precision``)."""

from __future__ import annotations

import logging
import os
import platform

import torch

from seq2seq.errors import ConfigError

log = logging.getLogger(__name__)


def env_world_size() -> int:
    """The world size torchrun asks for (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Under torchrun every process needs a GPU of its own: ``cuda`` means cuda:LOCAL_RANK, and ``auto``
    falls back to the CPU when the machine has fewer GPUs than processes.
    """
    try:
        device = torch.device(name if name != "auto" else "cpu")
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    if name == "auto" and torch.cuda.is_available():
        per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # torchrun's processes on this machine
        if torch.cuda.device_count() >= per_machine:
            device = torch.device("cuda")
        else:
            log.warning("%d processes on this machine but %d GPU(s): device=auto trains on the CPU; start at most "
                        "%d processes per machine to use the GPUs", per_machine, torch.cuda.device_count(),
                        torch.cuda.device_count())
    if device.type == "cpu":
        return device
    if not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA GPU is available here; use device=cpu or device=auto")
    if env_world_size() <= 1:
        return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())
    if device.index is not None:
        raise ConfigError(f"device={name} under torchrun would put every process on one GPU; use device=cuda "
                          "(each process takes cuda:LOCAL_RANK)")
    if local_rank() >= torch.cuda.device_count():
        raise ConfigError(f"process LOCAL_RANK={local_rank()} needs cuda:{local_rank()} but this machine has "
                          f"{torch.cuda.device_count()} GPU(s); start at most that many processes per "
                          "machine (torchrun --nproc_per_node) or use device=cpu")
    return torch.device("cuda", local_rank())


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), as oneDNN, which runs torch's CPU
    matmuls, reports it. Without it bf16 is emulated, and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return False


def cpu_name() -> str:
    """``AMD EPYC, AVX2, 2 cores`` (``, native bf16`` where it has that): what decides this machine's speed, for
    the records that quote one (the model name alone hides whether the CPU has AVX512)."""
    model = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:  # not Linux
        pass
    model = model or platform.processor() or "unknown CPU"
    bf16 = ", native bf16" if native_bf16() else ""
    return f"{model}, {torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores{bf16}"


def resolve_precision(name: str, device: torch.device) -> tuple[str, str]:
    """What ``train.precision=name`` trains in on ``device``: (fp32 | bf16 | fp16, the reason, for the log).

    ``auto`` is bf16 on a CPU that computes it natively, where it trained the default model faster than float32
    on every such CPU measured (docs/results.md, "bfloat16", holds the ratios), and float32 elsewhere: emulated
    bf16 is slower than float32, and on GPUs it was not measured."""
    if name == "fp16" and device.type != "cuda":
        raise ConfigError(f"train.precision=fp16 needs a CUDA GPU (float16 training uses a gradient scaler "
                          f"there) but the device is {device}; on the CPU use train.precision=bf16 or fp32")
    if name == "bf16" and device.type == "cpu" and not native_bf16():
        log.warning("bfloat16 is emulated on this CPU: training will run far slower than in float32")
        return name, ("train.precision=bf16, but this CPU has no native bfloat16: it is emulated, and its matrix "
                      "products run at a few per cent of float32's speed; train.precision=auto or fp32 is faster")
    if name != "auto":
        return name, f"train.precision={name}"
    if device.type != "cpu":
        return "fp32", (f"train.precision=auto on {device}: float32 (bf16 was measured on CPUs only; "
                        "train.precision=bf16 tries it)")
    if native_bf16():
        return "bf16", ("train.precision=auto: this CPU computes bfloat16 natively (oneDNN reports AVX512-BF16 "
                        "or AMX); train.precision=fp32 for float32")
    return "fp32", ("train.precision=auto: this CPU has no native bfloat16, so it would be emulated and slower "
                    "than float32")
