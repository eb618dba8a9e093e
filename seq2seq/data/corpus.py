"""Parallel corpora: reading (plain or .gz), length filtering, bucketed token batches, :class:`Batch`.

Shapes: B batch, S source length, T target length (BOS/EOS included where noted).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from seq2seq.config import DataConfig
from seq2seq.errors import DataError
from seq2seq.files import read_aligned
from seq2seq.special import BOS, EOS, PAD

if TYPE_CHECKING:  # sentencepiece is imported only where a corpus is loaded
    from seq2seq.data.tokenizer import Tokenizer

log = logging.getLogger(__name__)
MULTI30K_SPLITS = ("train", "val", "test_2016_flickr", "test_2017_flickr", "test_2017_mscoco", "test_2018_flickr")


def corpus_path(directory: str | Path, split: str, lang: str) -> Path:
    """``{dir}/{split}.{lang}`` or its ``.gz``; a missing file says where to put it."""
    plain = Path(directory) / f"{split}.{lang}"
    for path in (plain, plain.with_name(plain.name + ".gz")):
        if path.is_file():
            return path
    hint = ""
    if Path(directory).name == "multi30k" and split in MULTI30K_SPLITS:  # a missing download, not a typo
        hint = (" For Multi30k run `python scripts/download_multi30k.py` (needs internet) or link an existing "
                f"copy: `ln -s /path/to/multi30k {directory}`.")
    raise DataError(f"missing corpus file {plain} (or {plain.name}.gz): put one sentence per line there.{hint}")


def read_parallel(directory: str | Path, split: str, src_lang: str, tgt_lang: str) -> tuple[list[str], list[str]]:
    """The two sides of one split; their line counts must match."""
    return read_aligned(corpus_path(directory, split, src_lang), corpus_path(directory, split, tgt_lang), "corpus")


def split_lines(data: DataConfig, split: str, count: int | None = None,
                directory: str | Path | None = None) -> tuple[list[str], list[str]]:
    """The first ``count`` sentence pairs (all: None) of ``split`` of the corpus ``data`` names (a checkpoint's
    ``config.data``), from ``directory`` (default ``data.dir``): the source side and the target side."""
    src, tgt = read_parallel(directory or data.dir, split, data.src_lang, data.tgt_lang)
    return src[:count], tgt[:count]


class Example(NamedTuple):
    src: list[int]  # subword ids, no BOS / EOS
    tgt: list[int]
    index: int  # line number (0-based) in the split


def filter_pairs(src: Sequence[list[int]], tgt: Sequence[list[int]], max_len: int, name: str,
                 report: bool = True) -> list[Example]:
    """Drop pairs with an empty side or a side longer than ``max_len`` tokens, logging how many (at debug level
    unless ``report``: the epochs' re-segmentations would repeat the count every epoch)."""
    kept, empty, long = [], 0, 0
    for i, (s, t) in enumerate(zip(src, tgt)):
        if not s or not t:
            empty += 1
        elif len(s) > max_len or len(t) > max_len:
            long += 1
        else:
            kept.append(Example(s, t, i))
    if empty or long:
        log.log(logging.INFO if report else logging.DEBUG, "%s: dropped %d empty and %d over-long (> %d tokens) "
                "pairs of %d", name, empty, long, max_len, len(src))
    if not kept:
        raise DataError(f"{name}: no usable sentence pairs left after dropping {empty} empty and {long} pairs longer "
                        f"than {max_len} tokens; check the files or raise data.max_len")
    return kept


class Batch(NamedTuple):
    src: Tensor  # (B, S) source ids, PAD-padded
    src_lens: Tensor  # (B,)
    tgt_in: Tensor  # (B, T) BOS y_1 .. y_n, PAD-padded
    tgt_out: Tensor  # (B, T) y_1 .. y_n EOS, PAD-padded
    indices: Tensor  # (B,) line numbers in the split

    @property
    def n_tgt_tokens(self) -> int:
        return int((self.tgt_out != PAD).sum())


def pad(seqs: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """(N, L) PAD-padded tensor and (N,) lengths."""
    lens = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), int(lens.max())), PAD, dtype=torch.long)
    for row, seq in enumerate(seqs):
        out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out, lens


def collate(examples: Sequence[Example]) -> Batch:
    src, src_lens = pad([e.src for e in examples])
    tgt_in, _ = pad([[BOS, *e.tgt] for e in examples])
    tgt_out, _ = pad([[*e.tgt, EOS] for e in examples])
    return Batch(src, src_lens, tgt_in, tgt_out, torch.tensor([e.index for e in examples]))


def make_batches(
    examples: Sequence[Example],
    batch_tokens: int,
    batch_sentences: int | None = None,
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """Group example positions into batches of similar length.

    Sorting by length (random tie-breaks when a generator is given) keeps padding small; the batch
    order is shuffled too. Without a generator the order is deterministic (for validation).
    A batch holds at most ``batch_tokens`` padded tokens on its longer side, or exactly
    ``batch_sentences`` sentences when that is set.
    """
    n = len(examples)
    tie = torch.randperm(n, generator=generator).tolist() if generator is not None else list(range(n))
    order = sorted(range(n), key=lambda i: (len(examples[i].tgt), len(examples[i].src), tie[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        width = max(len(examples[i].src), len(examples[i].tgt)) + 1  # + BOS or EOS
        if batch_sentences:
            full = len(current) >= batch_sentences
        else:
            full = max(longest, width) * (len(current) + 1) > batch_tokens
        if current and full:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, width)
    if current:
        batches.append(current)
    if generator is not None:
        batches = [batches[j] for j in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def padding_fraction(examples: Sequence[Example], batches: Sequence[Sequence[int]]) -> float:
    """Share of target positions that are padding over these batches."""
    real = padded = 0
    for b in batches:
        lens = [len(examples[i].tgt) + 1 for i in b]
        real += sum(lens)
        padded += max(lens) * len(lens)
    return 1.0 - real / max(1, padded)


class Corpus(NamedTuple):
    """Everything training reads from disk, tokenized."""

    tokenizer: Tokenizer
    train: list[Example]
    valid: list[Example]
    valid_lines: tuple[list[str], list[str]]  # raw source and reference lines of the validation split (all)
    train_lines: tuple[list[str], list[str]]  # raw source and target lines of the training split

    def resegmenter(self, cfg: DataConfig) -> Callable[[int], list[Example]] | None:
        """What :class:`~seq2seq.training.plan.BatchPlan` calls each epoch for subword regularization (None
        when it is off): the training pairs segmented anew, a function of the seed and the lines alone."""
        if cfg.sampling_alpha is None:
            return None
        from seq2seq.data.sampling import Sampler

        bpe = cfg.spm_type == "bpe"
        log.info("preparing subword sampling (alpha %s, %s)", cfg.sampling_alpha,
                 "BPE-dropout" if bpe else "all segmentations" if cfg.sampling_nbest == -1
                 else f"the {cfg.sampling_nbest} best segmentations")
        tok, (src_lines, tgt_lines) = self.tokenizer, self.train_lines
        src = Sampler(tok.src_model, src_lines, cfg.sampling_alpha, cfg.sampling_nbest, bpe, cfg.cache_dir)
        tgt = Sampler(tok.target_model, tgt_lines, cfg.sampling_alpha, cfg.sampling_nbest, bpe, cfg.cache_dir)

        def resegment(seed: int) -> list[Example]:
            return filter_pairs(src.sample(2 * seed), tgt.sample(2 * seed + 1), cfg.max_len,
                                f"{cfg.dir}/{cfg.train_split} (sampled)", report=False)

        return resegment


def drop_unfit(src: list[str], tgt: list[str], chars: int, name: str) -> tuple[list[str], list[str]]:
    """Blank the pairs with a side of more than ``chars`` characters, which no segmentation fits into
    data.max_len pieces, before they are tokenized (and, with subword sampling, laid out as lattices every
    epoch); their line numbers stay, and :func:`filter_pairs` drops them as empty."""
    unfit = [i for i, (s, t) in enumerate(zip(src, tgt, strict=True)) if len(s) > chars or len(t) > chars]
    if not unfit:
        return src, tgt
    log.info("%s: %d pairs longer than %d characters dropped before tokenizing (they cannot fit data.max_len "
             "pieces), e.g. line %d", name, len(unfit), chars, unfit[0] + 1)
    src, tgt = list(src), list(tgt)
    for i in unfit:
        src[i] = tgt[i] = ""
    return src, tgt


def load_corpus(cfg: DataConfig) -> Corpus:
    """Read train and validation splits, train or reuse SentencePiece, encode and filter."""
    from seq2seq.data.tokenizer import build_tokenizer

    if cfg.generate is not None:
        from seq2seq.data.toy import generate

        generate(cfg.generate, cfg.dir, cfg.src_lang, cfg.tgt_lang, seed=0)
    if not Path(cfg.dir).is_dir():
        raise DataError(f"data directory {cfg.dir} does not exist; set data.dir or put the corpus there"
                        + (" (python scripts/download_multi30k.py fetches Multi30k)" if "multi30k" in cfg.dir else ""))
    src_lines, tgt_lines = read_parallel(cfg.dir, cfg.train_split, cfg.src_lang, cfg.tgt_lang)
    val_src, val_tgt = read_parallel(cfg.dir, cfg.valid_split, cfg.src_lang, cfg.tgt_lang)
    tokenizer = build_tokenizer(cfg, src_lines, tgt_lines)
    src_lines, tgt_lines = drop_unfit(src_lines, tgt_lines, 2 * cfg.max_len * tokenizer.longest_piece,
                                      f"{cfg.dir}/{cfg.train_split}")
    train = filter_pairs(tokenizer.encode_src(src_lines), tokenizer.encode_tgt(tgt_lines), cfg.max_len,
                         f"{cfg.dir}/{cfg.train_split}")
    valid = filter_pairs(tokenizer.encode_src(val_src), tokenizer.encode_tgt(val_tgt), 10**9,
                         f"{cfg.dir}/{cfg.valid_split}")
    return Corpus(tokenizer, train, valid, (val_src, val_tgt), (src_lines, tgt_lines))
