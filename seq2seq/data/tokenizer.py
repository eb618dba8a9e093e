"""SentencePiece training, caching and loading; encode / decode; the special ids.

A :class:`Tokenizer` holds one SentencePiece model for both sides (joint vocabulary, the default) or
one per side. Its models travel as bytes, so a checkpoint can carry them and nothing else on disk
is needed to translate.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import sentencepiece as spm

from seq2seq.config import DataConfig
from seq2seq.errors import ConfigError
from seq2seq.files import atomic_write
from seq2seq.special import BOS, EOS, PAD, UNK

log = logging.getLogger(__name__)


class Tokenizer:
    """Source and target SentencePiece processors (the same object when the vocabulary is joint)."""

    def __init__(self, src_model: bytes, tgt_model: bytes | None = None) -> None:
        self.src_model = src_model
        self._own_tgt_model = tgt_model  # None when the vocabulary is joint
        self.src = spm.SentencePieceProcessor(model_proto=src_model)
        self.tgt = self.src if tgt_model is None else spm.SentencePieceProcessor(model_proto=tgt_model)
        for proc in (self.src, self.tgt):
            if (proc.pad_id(), proc.unk_id(), proc.bos_id(), proc.eos_id()) != (PAD, UNK, BOS, EOS):
                raise ConfigError("SentencePiece model has unexpected special ids; it was not trained by seq2seq")

    @property
    def joint(self) -> bool:
        return self._own_tgt_model is None

    @property
    def target_model(self) -> bytes:
        """The SentencePiece model of the target side (the joint one when the vocabulary is joint)."""
        return self.src_model if self._own_tgt_model is None else self._own_tgt_model

    def stored(self) -> dict[str, bytes | None]:
        """The models as a checkpoint stores them: ``tgt`` is None when the vocabulary is joint."""
        return {"src": self.src_model, "tgt": self._own_tgt_model}

    @property
    def longest_piece(self) -> int:
        """The most characters one piece of either side covers."""
        return max(len(proc.id_to_piece(i)) for proc in (self.src, self.tgt) for i in range(proc.get_piece_size()))

    @property
    def src_vocab_size(self) -> int:
        return self.src.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt.get_piece_size()

    def encode_src(self, lines: Sequence[str]) -> list[list[int]]:
        return self.src.encode(list(lines), num_threads=0)

    def encode_tgt(self, lines: Sequence[str]) -> list[list[int]]:
        return self.tgt.encode(list(lines), num_threads=0)

    def decode_tgt(self, ids: Sequence[Sequence[int]]) -> list[str]:
        return [self.tgt.decode(list(seq)) for seq in ids]

    def src_pieces(self, ids: Sequence[int]) -> list[str]:
        return [self.src.id_to_piece(i) for i in ids]

    def tgt_pieces(self, ids: Sequence[int]) -> list[str]:
        return [self.tgt.id_to_piece(i) for i in ids]

    def tgt_ids(self, pieces: Sequence[str]) -> list[int]:
        return [self.tgt.piece_to_id(p) for p in pieces]

    def save(self, run_dir: Path) -> None:
        """Write ``spm.model`` (joint) or ``spm.src.model`` and ``spm.tgt.model`` into the run directory."""
        if self.joint:
            atomic_write(run_dir / "spm.model", self.src_model)
        else:
            atomic_write(run_dir / "spm.src.model", self.src_model)
            atomic_write(run_dir / "spm.tgt.model", self.target_model)


SPM_MAX_SENTENCE_BYTES = 4192  # SentencePiece's trainer skips longer lines (its max_sentence_length default;
# left unset, since every setting passed is written into the model's bytes)


def _train_one(lines: Sequence[str], cfg: DataConfig) -> bytes:
    skipped = sum(len(line.encode("utf-8")) > SPM_MAX_SENTENCE_BYTES for line in lines)
    if skipped:
        log.warning("%d training line(s) are longer than %d bytes: SentencePiece leaves them out of the "
                    "vocabulary's training (they are still translated and trained on)", skipped, SPM_MAX_SENTENCE_BYTES)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        vocab_size=cfg.vocab_size,
        model_type=cfg.spm_type,
        character_coverage=1.0,
        pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS,
        hard_vocab_limit=False,  # small toy corpora cannot fill a large vocabulary
        num_threads=max(1, os.cpu_count() or 1),
        minloglevel=2,
    )
    return model.getvalue()


def _fingerprint(cfg: DataConfig, src_lines: Sequence[str], tgt_lines: Sequence[str]) -> str:
    h = hashlib.sha256()
    settings = {"v": cfg.vocab_size, "t": cfg.spm_type, "j": cfg.joint_vocab, "spm": spm.__version__}
    h.update(json.dumps(settings, sort_keys=True).encode())
    for lines in (src_lines, tgt_lines):
        h.update(b"\x00side")
        for line in lines:
            h.update(line.encode("utf-8"))
            h.update(b"\n")
    return h.hexdigest()[:20]


def build_tokenizer(cfg: DataConfig, src_lines: Sequence[str], tgt_lines: Sequence[str]) -> Tokenizer:
    """Train SentencePiece on the training split, or reuse the cached model for the same data and settings."""
    cache = Path(cfg.cache_dir) / f"spm-{_fingerprint(cfg, src_lines, tgt_lines)}"
    names = ["joint.model"] if cfg.joint_vocab else ["src.model", "tgt.model"]
    if all((cache / n).is_file() for n in names):
        log.info("reusing SentencePiece model(s) from %s", cache)
        models = [(cache / n).read_bytes() for n in names]
    else:
        log.info("training SentencePiece %s, vocabulary up to %d, %s", cfg.spm_type, cfg.vocab_size,
                 "joint" if cfg.joint_vocab else "separate")
        if cfg.joint_vocab:
            models = [_train_one([*src_lines, *tgt_lines], cfg)]
        else:
            models = [_train_one(src_lines, cfg), _train_one(tgt_lines, cfg)]
        cache.mkdir(parents=True, exist_ok=True)
        for name, data in zip(names, models):
            atomic_write(cache / name, data)
    tokenizer = Tokenizer(models[0], models[1] if len(models) == 2 else None)
    sizes = {tokenizer.src_vocab_size} | {tokenizer.tgt_vocab_size}
    pieces = " and ".join(str(n) for n in sorted(sizes))
    if max(sizes) < cfg.vocab_size:  # hard_vocab_limit=False: a small corpus cannot fill the vocabulary
        log.info("vocabulary: %s pieces, fewer than data.vocab_size=%d: the training split has no more to make",
                 pieces, cfg.vocab_size)
    else:
        log.info("vocabulary: %s pieces", pieces)
    return tokenizer
