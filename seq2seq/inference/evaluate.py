"""sacreBLEU scoring, and the inputs and outputs of ``seq2seq-evaluate`` (a split of the checkpoint's corpus
or a src / ref file pair)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import sacrebleu

from seq2seq.cli.schemas import EvaluateConfig
from seq2seq.config import DataConfig
from seq2seq.data.corpus import corpus_path, read_lines
from seq2seq.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class Scores:
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    bleu_text: str = ""  # sacreBLEU's own report line, as ``sacrebleu -f text -w 2`` prints it
    chrf_text: str = ""


def score(hypotheses: Sequence[str], references: Sequence[str], lowercase: bool = False) -> Scores:
    """Corpus BLEU (13a, cased unless ``lowercase``) and chrF on detokenized text, with signatures."""
    bleu = sacrebleu.metrics.BLEU(lowercase=lowercase)
    chrf = sacrebleu.metrics.CHRF()
    b = bleu.corpus_score(list(hypotheses), [list(references)])
    c = chrf.corpus_score(list(hypotheses), [list(references)])
    b_sig, c_sig = str(bleu.get_signature()), str(chrf.get_signature())
    return Scores(b.score, c.score, b_sig, c_sig, b.format(width=2, signature=b_sig),
                  c.format(width=2, signature=c_sig))


# ---- seq2seq-evaluate's inputs and outputs ------------------------------------------------------


@dataclass
class EvalInputs:
    """What seq2seq-evaluate reads and writes."""

    name: str  # the split's name, or the source file's path
    src: Path
    ref: Path | None  # None: only translate
    out: str  # hypotheses file, or "-" for stdout


SPLIT_ALIASES = ("train", "valid", "test")  # stand for data.{train,valid,test}_split when no such file exists


def resolve_inputs(cfg: EvaluateConfig, data: DataConfig) -> EvalInputs:
    """Source, reference and output paths from the command line and the checkpoint's data config.

    Without ``src=``: split ``{data_dir}/{split}.{src_lang}`` with its ``.{tgt_lang}`` as reference (when
    there), hypotheses to ``{checkpoint dir}/hyp.{split}.{tgt_lang}``. With ``src=``: that file, ``ref=`` if
    given, hypotheses to stdout unless ``out=`` says otherwise.
    """
    if cfg.src is not None:
        src = Path(cfg.src)
        if not src.is_file():
            raise DataError(f"no source file {src}; pass src= the path of a file with one sentence per line")
        ref = None if cfg.ref is None else Path(cfg.ref)
        if ref is not None and not ref.is_file():
            raise DataError(f"no reference file {ref}; pass ref= an existing file, or leave ref out to only "
                            "translate")
        return EvalInputs(str(src), src, ref, cfg.out or "-")
    directory = Path(cfg.data_dir or data.dir)
    if not directory.is_dir() and cfg.data_dir is None and data.generate is not None:
        from seq2seq.data.toy import generate

        generate(data.generate, directory, data.src_lang, data.tgt_lang, seed=0)
    if not directory.is_dir():
        origin = "data_dir=" if cfg.data_dir else "the checkpoint's data.dir"
        raise DataError(f"data directory {directory} ({origin}) does not exist here; pass "
                        "data_dir=/path/to/corpus, or translate a file pair with src=FILE ref=FILE")
    split = _split_name(cfg.split or data.test_split, directory, data)
    try:
        src = corpus_path(directory, split, data.src_lang)
    except DataError as err:
        found = sorted({p.name.split(f".{data.src_lang}")[0] for p in directory.glob(f"*.{data.src_lang}*")})
        listing = ", ".join(found) or "none"
        raise DataError(f"{err} Splits in {directory}: {listing}; pick one with split=") from None
    try:
        ref: Path | None = corpus_path(directory, split, data.tgt_lang)
    except DataError:
        log.warning("no reference %s/%s.%s: only translating", directory, split, data.tgt_lang)
        ref = None
    out = cfg.out or str(Path(cfg.checkpoint).parent / f"hyp.{split}.{data.tgt_lang}")
    return EvalInputs(split, src, ref, out)


def _split_name(split: str, directory: Path, data: DataConfig) -> str:
    """``split`` itself, or for train / valid / test without such files the corpus's own split name."""
    aliases = {"train": data.train_split, "valid": data.valid_split, "test": data.test_split}
    plain = directory / f"{split}.{data.src_lang}"
    if split in aliases and not (plain.is_file() or plain.with_name(plain.name + ".gz").is_file()):
        return aliases[split]
    return split


def read_inputs(inputs: EvalInputs) -> tuple[list[str], list[str] | None]:
    """Source lines and reference lines (or None); their line counts must match."""
    src = read_lines(inputs.src)
    if inputs.ref is None:
        return src, None
    ref = read_lines(inputs.ref)
    if len(src) != len(ref):
        raise DataError(f"misaligned files: {inputs.src} has {len(src)} lines but {inputs.ref} has "
                        f"{len(ref)}; line n of the reference must translate line n of the source")
    return src, ref


def write_lines(path: str | Path, lines: Sequence[str]) -> None:
    """One line per hypothesis, UTF-8, into a file whose directory must exist."""
    try:
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(line + "\n" for line in lines)
    except OSError as err:
        raise DataError(f"cannot write hypotheses to {path}: {err.strerror}; choose another out=") from None


def check_writable(path: str | Path, setting: str) -> None:
    """Fail before the work when ``path`` cannot be written: its directory is missing, or it is a directory."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{setting}{path} is a directory; give a file name, e.g. {setting}{path / 'hyp.txt'}")
    if not path.parent.is_dir():
        raise DataError(f"cannot write {path}: the directory {path.parent} does not exist; create it or choose "
                        f"another {setting}")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise DataError(f"cannot write {path}: permission denied; choose another {setting}")


def check_plot_dir(directory: str | Path) -> None:
    """``attention_plots=`` must be a directory (created here when missing), not a file."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise DataError(f"attention_plots={directory} is a file; give a directory for the heatmap PNGs")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create attention_plots={directory}: {err.strerror}; choose another "
                        "directory") from None
