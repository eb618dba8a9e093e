"""seq2seq-evaluate: translate a split of the checkpoint's corpus (or a src / ref file pair), write the
hypotheses, score them, and draw the attention of the first sentences."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from seq2seq.cli import prompt
from seq2seq.cli.schemas import EvaluateConfig
from seq2seq.config import DataConfig
from seq2seq.data.corpus import corpus_path
from seq2seq.errors import DataError
from seq2seq.files import read_aligned, read_lines
from seq2seq.inference.bleu import corpus_scores
from seq2seq.inference.translator import Translator

log = logging.getLogger(__name__)


def run(cfg: EvaluateConfig) -> None:
    """Translate ``cfg``'s input with its checkpoint, write the hypotheses, print the scores (when there is a
    reference) and save the attention plots asked for."""
    if cfg.decode.nbest > 1:
        log.info("decode.nbest=%d ignored: seq2seq-evaluate scores the best translation", cfg.decode.nbest)
    decode = dataclasses.replace(cfg.decode, nbest=1)
    translator = Translator.from_config(cfg, decode)
    translator.attention_layers(cfg.attention_layer, cfg.self_attention)  # layers the model lacks: an error now
    inputs = resolve_inputs(cfg, translator.config.data)
    if inputs.out != "-":
        check_writable(inputs.out, "out=")  # before the work, not after it
    if cfg.attention_plots and cfg.attention_plots_n:
        check_plot_dir(cfg.attention_plots)
    sources, refs = read_inputs(inputs)
    if not sources:
        raise DataError(f"{inputs.src} is empty; give a file with one sentence per line")
    log.info("translating %s (%s): %d sentences, beam %d, alpha %g", inputs.name, inputs.src, len(sources),
             decode.beam_size, decode.alpha)
    start = time.perf_counter()
    bar = tqdm(total=len(sources), desc="translating", unit="sent", dynamic_ncols=True, leave=False,
               disable=None, mininterval=1.0)  # no bar unless a terminal
    with logging_redirect_tqdm(), bar:
        results = translator.translations(sources, progress=bar.update)
    seconds = time.perf_counter() - start
    log.info("translated %d sentences in %.1f s: %.1f sentences/s", len(sources), seconds,
             len(sources) / max(seconds, 1e-9))
    hyps = [r.text for r in results]
    if inputs.out == "-":
        sys.stdout.writelines(h + "\n" for h in hyps)
        sys.stdout.flush()
    else:
        write_lines(inputs.out, hyps)
        log.info("hypotheses written to %s", inputs.out)
    if refs is not None:
        scores = corpus_scores(hyps, refs)
        lines = [scores.bleu_text, scores.chrf_text]
        if cfg.lowercase:
            lines.append(corpus_scores(hyps, refs, lowercase=True).bleu_text)
        # the scores go to stdout, unless the hypotheses went there (out=-)
        print("\n".join(lines), file=sys.stderr if inputs.out == "-" else sys.stdout, flush=True)
    if cfg.attention_plots and cfg.attention_plots_n:
        n = min(cfg.attention_plots_n, len(sources))
        for number, (source, result) in enumerate(zip(sources[:n], results[:n], strict=True), 1):
            prompt.save_plots(cfg.attention_plots, number, source, result,
                              prompt.attention_maps(translator, result, cfg))
        log.info("attention plots of the first %d sentences in %s", n, cfg.attention_plots)


# ---- seq2seq-evaluate's inputs and outputs ------------------------------------------------------


@dataclass
class EvalInputs:
    """What seq2seq-evaluate reads and writes."""

    name: str  # the split's name, or the source file's path
    src: Path
    ref: Path | None  # None: only translate
    out: str  # hypotheses file, or "-" for stdout


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
    if inputs.ref is None:
        return read_lines(inputs.src), None
    return read_aligned(inputs.src, inputs.ref, "files (source and reference)")


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
    """``attention_plots=`` must be a directory (created here when missing), not a file, and matplotlib must be
    there to draw into it: checked before the work, not after it."""
    from seq2seq.report.plot import require_matplotlib

    require_matplotlib()
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise DataError(f"attention_plots={directory} is a file; give a directory for the heatmap PNGs")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create attention_plots={directory}: {err.strerror}; choose another "
                        "directory") from None
