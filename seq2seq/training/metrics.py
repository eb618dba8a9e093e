"""What a run records: metrics.jsonl and timing.jsonl (always), TensorBoard scalars (when installed); and
reading back the command-line overrides Hydra records beside them (``.hydra/overrides.yaml``).

Only the main process (rank 0) writes; on the other ranks every method does nothing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from seq2seq.files import atomic_write
from seq2seq.training import distributed

log = logging.getLogger(__name__)


def run_overrides(run_dir: Path) -> list[str] | None:
    """The run's own command-line overrides, as Hydra recorded them in ``.hydra/overrides.yaml`` (the last
    start's, for a resumed run); None when the run directory has no such file."""
    from omegaconf import OmegaConf

    path = run_dir / ".hydra" / "overrides.yaml"
    return [str(o) for o in OmegaConf.load(path)] if path.is_file() else None


def _summary_writer(directory: Path) -> Any:
    """A TensorBoard SummaryWriter, or None when the ``tensorboard`` package is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(directory))


class RunLog:
    """Validation records and timings as JSON lines in ``run_dir``; scalars also in ``run_dir/tb``."""

    def __init__(self, run_dir: Path, enabled: bool | None = None) -> None:
        """``enabled``: whether to write at all; by default only in the main process (rank 0)."""
        self.run_dir = run_dir
        self.enabled = distributed.is_main() if enabled is None else enabled
        self._tb: Any = None
        self._tb_tried = False

    @property
    def tensorboard(self) -> Any:
        """Created on first use, so a Trainer that never logs leaves no tb/ directory."""
        if self.enabled and not self._tb_tried:
            self._tb_tried = True
            self._tb = _summary_writer(self.run_dir / "tb")
            if self._tb is not None:
                log.info("TensorBoard scalars in %s", self.run_dir / "tb")
        return self._tb

    def rewrite(self, history: list[dict[str, Any]]) -> None:
        """metrics.jsonl holds exactly ``history`` (after a resume)."""
        if self.enabled:
            lines = "".join(json.dumps(r) + "\n" for r in history)
            atomic_write(self.run_dir / "metrics.jsonl", lines.encode("utf-8"))

    def validation(self, record: dict[str, Any], progress: Any, elapsed_s: float) -> None:
        """``record`` to metrics.jsonl; the wall-clock side (``elapsed_s``, ``progress``'s training seconds and
        tokens) to timing.jsonl."""
        if not self.enabled:
            return
        p = progress
        timing = {"step": record["step"], "epoch": record["epoch"], "elapsed_s": round(elapsed_s, 1),
                  "train_s": round(p.train_s, 1), "tokens_per_s": round(p.tokens / max(p.train_s, 1e-9), 1),
                  "bleu": record["bleu"]}
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        with open(self.run_dir / "timing.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(timing) + "\n")
        self._scalars("valid", record["step"], {k: record[k] for k in ("loss", "ppl", "bleu", "chrf")})

    def train(self, step: int, epoch: int, loss: float | None, lr: float, tokens_per_s: float) -> None:
        """The periodic training line (train.log_every_steps) in the log, and its scalars."""
        log.info("step %d epoch %d: loss %s, %.0f target tokens/s, lr %.2g", step, epoch,
                 "skipped" if loss is None else f"{loss:.4f}", tokens_per_s, lr)
        values = {"lr": lr, "tokens_per_s": tokens_per_s}
        if loss is not None:
            values["loss"] = loss
        self._scalars("train", step, values)

    def _scalars(self, prefix: str, step: int, values: dict[str, float]) -> None:
        writer = self.tensorboard
        if writer is not None:
            for name, value in values.items():
                writer.add_scalar(f"{prefix}/{name}", value, step)
            writer.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
