"""Hydra multirun (``seq2seq-train -m ...``): job directories named after their overrides, and a summary.

Each job's directory is ``{hydra.sweep.dir}/{overrides}`` (``model-attention=luong_dot,train.max_steps=50``:
:func:`dirname` makes Hydra's ``override_dirname`` one path component; train.yaml leaves out the settings
that hold paths). When the sweep ends the entry
point prints a table, overrides -> best validation BLEU, read from each job's files, and writes it to
``{sweep dir}/summary.tsv``.

Why in the entry point and not a Hydra Callback (``hydra.callbacks`` in train.yaml): a callback is named
by a ``_target_`` import path in a config, and our configs name no code (docs/developing.md). The price: the jobs
report their sweep directory in this process, which holds for Hydra's basic launcher (the one that
ships); with a launcher plugin that runs jobs elsewhere the table is not printed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

SWEEP_DIRS: list[Path] = []  # the sweep directories the jobs of this process ran in, in order


def dirname(override_dirname: str) -> str:
    """Hydra's ``a=1,model/attention=x`` as one directory name (``/`` would nest directories)."""
    name = override_dirname.replace("/", "-").replace("\\", "-") or "defaults"
    if len(name) <= 200:
        return name
    return f"{name[:180]}-{hashlib.sha1(name.encode()).hexdigest()[:12]}"  # cut, but still one per job


def register_resolver() -> None:
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("seq2seq_dirname", dirname, replace=True)


def job_started(sweep_dir: str) -> None:
    path = Path(sweep_dir)
    if path not in SWEEP_DIRS:
        SWEEP_DIRS.append(path)


def best_bleu(run_dir: Path) -> float | None:
    """The best validation BLEU in ``run_dir/metrics.jsonl`` (None: no validation)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    scores = [json.loads(line)["bleu"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return max(scores, default=None)


def overrides(run_dir: Path) -> list[str]:
    """The job's own command-line overrides (its directory's name when Hydra recorded none)."""
    from seq2seq.training.metrics import run_overrides  # here: the entry points import this module before torch

    recorded = run_overrides(run_dir)
    return [run_dir.name] if recorded is None else recorded


def jobs(sweep_dir: Path) -> tuple[list[str], list[tuple[str, float | None, str]]]:
    """The overrides all jobs share, and per job (the overrides that vary, best validation BLEU, directory
    name), best first."""
    found = [(overrides(d), best_bleu(d), d.name) for d in sorted(sweep_dir.iterdir()) if (d / ".hydra").is_dir()]
    common = [o for o in found[0][0] if all(o in job[0] for job in found)] if len(found) > 1 else []
    rows = [(" ".join(o for o in job if o not in common) or "(none)", bleu, name) for job, bleu, name in found]
    return common, sorted(rows, key=lambda row: float("inf") if row[1] is None else -row[1])


def summary(rows: list[tuple[str, float | None, str]]) -> str:
    """The rows as a table for a terminal."""
    width = max([len("overrides")] + [len(o) for o, _, _ in rows])
    lines = [f"{'overrides':<{width}}  best BLEU  directory"]
    lines += [f"{o:<{width}}  {'-' if b is None else f'{b:9.2f}'}  {name}" for o, b, name in rows]
    return "\n".join(lines)


def report() -> list[str]:
    """Write ``summary.tsv`` for every sweep this process ran; returns the tables for the command to print."""
    tables = []
    for sweep_dir in SWEEP_DIRS:
        if not sweep_dir.is_dir():
            continue
        common, rows = jobs(sweep_dir)
        tsv = "".join(f"{o}\t{'' if b is None else f'{b:.2f}'}\t{name}\n" for o, b, name in rows)
        (sweep_dir / "summary.tsv").write_text("overrides\tbest_bleu\tdirectory\n" + tsv, encoding="utf-8")
        shared = f" (every job: {' '.join(common)})" if common else ""
        tables.append(f"\nsweep {sweep_dir}{shared}:\n{summary(rows)}")
    return tables
