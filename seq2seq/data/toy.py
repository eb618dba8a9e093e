"""Toy tasks generated from a seed, so tests and demos need no download.

``reverse``: the target is the source sequence of symbols in reverse order; ``copy``: the same order.
Each sentence is 3-12 symbols drawn from a 20-letter alphabet, separated by spaces.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from seq2seq.files import atomic_write

log = logging.getLogger(__name__)

ALPHABET = "abcdefghijklmnopqrst"
SIZES = {"train": 8000, "val": 200, "test": 200}


def toy_pair(rng: random.Random, task: str) -> tuple[str, str]:
    symbols = [rng.choice(ALPHABET) for _ in range(rng.randint(3, 12))]
    target = symbols[::-1] if task == "reverse" else symbols
    return " ".join(symbols), " ".join(target)


def generate(task: str, directory: str | Path, src_lang: str, tgt_lang: str, seed: int = 0,
             sizes: dict[str, int] | None = None) -> None:
    """Write ``{split}.{src_lang}`` / ``{split}.{tgt_lang}`` for every split that is missing."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for offset, (split, n) in enumerate((sizes or SIZES).items()):
        src_path, tgt_path = directory / f"{split}.{src_lang}", directory / f"{split}.{tgt_lang}"
        if src_path.exists() and tgt_path.exists():
            continue
        rng = random.Random(seed * 100 + offset)
        pairs = [toy_pair(rng, task) for _ in range(n)]
        for path, side in ((src_path, 0), (tgt_path, 1)):
            atomic_write(path, "".join(p[side] + "\n" for p in pairs).encode("utf-8"))
        log.info("wrote toy %s task %s split (%d pairs) to %s", task, split, n, directory)
