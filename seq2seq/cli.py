"""The three console scripts, thin: compose the Hydra config, turn it into dataclasses, call the library.

A :class:`~seq2seq.errors.Seq2SeqError` (anything a user can cause) prints ``error: <message>`` on
stderr and exits with status 2; nothing else is printed.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from seq2seq import cpu
from seq2seq.config import Config, EvaluateConfig, TranslateConfig, register_configs, to_dataclass
from seq2seq.errors import Seq2SeqError

log = logging.getLogger("seq2seq")
CONFIGS = "pkg://seq2seq.configs"


def _report_errors(fn: Callable[[DictConfig], None]) -> Callable[[DictConfig], None]:
    def wrapped(cfg: DictConfig) -> None:
        try:
            fn(cfg)
        except Seq2SeqError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)
        except KeyboardInterrupt as err:
            from seq2seq.launch import Terminated

            print("terminated" if isinstance(err, Terminated) else "interrupted", file=sys.stderr, flush=True)
            sys.exit(143 if isinstance(err, Terminated) else 130)

    return wrapped


def _check_command_line(schema: type, command: str, groups: tuple[str, ...]) -> None:
    """Unknown keys fail before Hydra sees them, naming the nearest valid key (seq2seq/keys.py)."""
    from seq2seq.keys import check_overrides

    try:
        check_overrides(sys.argv[1:], schema, groups, command)
    except Seq2SeqError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)


def _checked(dcfg: DictConfig, schema: type, command: str) -> Any:
    """The composed config as ``schema``'s dataclasses, after every key was found in the schema."""
    from seq2seq.keys import check_keys

    check_keys(dcfg, schema, command)
    return to_dataclass(dcfg, schema)


def _load_corpus_once(cfg: Config) -> Any:
    """Rank 0 first (it may generate the toy data and train SentencePiece), then the others from its files."""
    from seq2seq import distributed
    from seq2seq.data import load_corpus

    if not distributed.is_main():
        distributed.barrier()
    corpus = load_corpus(cfg.data)
    if distributed.is_main():
        distributed.barrier()
    return corpus


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="train")
@_report_errors
def _train(dcfg: DictConfig) -> None:
    from seq2seq import launch

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode.name == "MULTIRUN":
        from seq2seq import sweep

        sweep.job_started(hydra_cfg.sweep.dir)
    try:
        _train_in(dcfg, run_dir)
    except (Seq2SeqError, KeyboardInterrupt) as err:
        from seq2seq import distributed

        if not distributed.is_main():
            raise
        launch.log_error(str(err) or type(err).__name__)
        chosen = hydra_cfg.mode.name == "MULTIRUN" or any(o.startswith("hydra.run.dir=")
                                                         for o in hydra_cfg.overrides.hydra)
        if not launch.remove_failed_start(run_dir, empty_parents=0 if chosen else 2):  # runs/{data.name}/
            raise
        note = f"nothing was trained, so {run_dir} was removed"
        if isinstance(err, Seq2SeqError):
            raise type(err)(f"{err} ({note})") from None
        print(f"({note})", file=sys.stderr, flush=True)
        raise


def _train_in(dcfg: DictConfig, run_dir: Path) -> None:
    from seq2seq import distributed, launch
    from seq2seq.device import resolve_device
    from seq2seq.trainer import Trainer

    cfg: Config = _checked(dcfg, Config, "seq2seq-train")
    cpu.setup(cfg.threads)
    distributed.init(resolve_device(cfg.device))  # under torchrun: join the process group
    try:
        # rank 0's directory for all ranks (the default hydra.run.dir holds a time that may differ)
        run_dir = Path(distributed.broadcast_object(str(run_dir)))
        if not distributed.is_main():
            logging.getLogger().setLevel(logging.WARNING)  # rank 0 logs progress; the others only problems
        dir_given = any(o.startswith(("hydra.run.dir=", "hydra.sweep")) for o in HydraConfig.get().overrides.hydra)
        resume = launch.resume_path(cfg.resume, run_dir, dir_given or HydraConfig.get().mode.name == "MULTIRUN")
        launch.check_new_run(run_dir, resume, cfg.init_from)
        log.info("run directory: %s (%d process%s)", run_dir, distributed.world_size(),
                 "es" if distributed.world_size() > 1 else "")
        with logging_redirect_tqdm(), launch.sigterm_as_interrupt():
            corpus = _load_corpus_once(cfg)
            if distributed.is_main():
                corpus.tokenizer.save(run_dir)
            trainer = Trainer(cfg, corpus, run_dir)
            if resume is not None:
                trainer.resume(resume)
            elif cfg.init_from is not None:
                trainer.init_from(Path(cfg.init_from), cfg.init_reset)
            trainer.run()
    finally:
        distributed.cleanup()


TRAIN_GROUPS = ("data", "model", "model/attention", "optim", "decode", "experiment")


def train() -> None:
    """``seq2seq-train``: train a model; see configs/train.yaml."""
    cpu.openmp_defaults()  # before torch is imported
    register_configs()
    _check_command_line(Config, "seq2seq-train", TRAIN_GROUPS)
    from seq2seq import sweep

    try:
        _train()
    finally:
        sweep.report()  # after -m: overrides -> best validation BLEU of each job


# ---- seq2seq-evaluate and seq2seq-translate ---------------------------------------------------


def _job_config(dcfg: DictConfig, schema: type, command: str) -> Any:
    """The command line as ``schema``'s dataclass; a missing checkpoint= says what to pass."""
    from omegaconf import OmegaConf

    from seq2seq.errors import ConfigError

    if OmegaConf.is_missing(dcfg, "checkpoint"):
        raise ConfigError("no checkpoint given: pass checkpoint=PATH, the best.pt (or last.pt) of a "
                          "seq2seq-train run directory")
    cfg = _checked(dcfg, schema, command)
    cpu.setup(cfg.threads)
    return cfg


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="evaluate")
@_report_errors
def _evaluate(dcfg: DictConfig) -> None:
    from seq2seq.errors import DataError
    from seq2seq.evaluate import check_plot_dir, check_writable, read_inputs, resolve_inputs, score, write_lines
    from seq2seq.translator import Translator

    cfg: EvaluateConfig = _job_config(dcfg, EvaluateConfig, "seq2seq-evaluate")
    if cfg.decode.nbest > 1:
        log.info("decode.nbest=%d ignored: seq2seq-evaluate scores the best translation", cfg.decode.nbest)
    decode = dataclasses.replace(cfg.decode, nbest=1)
    translator = Translator.from_checkpoint(cfg.checkpoint, decode, cfg.device, cfg.max_src_len,
                                            cfg.max_src_len_policy)
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
        scores = score(hyps, refs)
        lines = [scores.bleu_text, scores.chrf_text]
        if cfg.lowercase:
            lines.append(score(hyps, refs, lowercase=True).bleu_text)
        # the scores go to stdout, unless the hypotheses went there (out=-)
        print("\n".join(lines), file=sys.stderr if inputs.out == "-" else sys.stdout, flush=True)
    if cfg.attention_plots and cfg.attention_plots_n:
        n = min(cfg.attention_plots_n, len(sources))
        for number, (source, result) in enumerate(zip(sources[:n], results[:n], strict=True), 1):
            _plot(cfg.attention_plots, number, source, result)
        log.info("attention plots of the first %d sentences in %s", n, cfg.attention_plots)


def evaluate() -> None:
    """``seq2seq-evaluate``: translate a split or a file pair and score it; see configs/evaluate.yaml."""
    cpu.openmp_defaults()  # before torch is imported
    register_configs()
    _check_command_line(EvaluateConfig, "seq2seq-evaluate", ("decode",))
    _evaluate()


def _plot(directory: str, number: int, source: str, result: Any) -> None:
    """``{directory}/{number:05d}.png``: the heatmap of the best translation of line ``number``."""
    from seq2seq.plot import save_heatmap

    if result.attention:
        save_heatmap(Path(directory) / f"{number:05d}.png", result.src_pieces, result.tgt_pieces[0],
                     result.attention[0], title=source)


def _answer(translator: Any, cfg: TranslateConfig, line: str, number: int) -> None:
    """Translate one input line and write its answer: one line, or with nbest > 1 a block of
    ``score<TAB>translation`` lines ended by an empty line. Attention goes to stderr."""
    result = translator.translations([line], first_line=number)[0]
    if cfg.decode.nbest == 1:
        sys.stdout.write(result.text + "\n")
    else:
        block = zip(result.scores, result.hypotheses, strict=True)
        sys.stdout.write("".join(f"{s:.4f}\t{h}\n" for s, h in block) + "\n")
    sys.stdout.flush()
    if cfg.show_attention and result.attention:
        from seq2seq.plot import format_attention

        table = format_attention(result.src_pieces, result.tgt_pieces[0], result.attention[0])
        sys.stderr.write(table + "\n")
        sys.stderr.flush()
    if cfg.attention_plots:
        _plot(cfg.attention_plots, number, line, result)


def _reconfigure_streams() -> None:
    """Bad UTF-8 in becomes U+FFFD and unencodable output '?', never a crash; only \\n ends an input line
    (a lone \\r is part of the sentence)."""
    if isinstance(sys.stdin, io.TextIOWrapper):
        sys.stdin.reconfigure(errors="replace", newline="\n")
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="replace")


def _piped(translator: Any, cfg: TranslateConfig) -> None:
    """Exactly one answer per input line, written as soon as the line is read."""
    for number, line in enumerate(sys.stdin, 1):
        _answer(translator, cfg, line.removesuffix("\n").removesuffix("\r"), number)


def _interactive(translator: Any, cfg: TranslateConfig) -> None:
    """A prompt with line editing and history (readline); Ctrl-D quits, Ctrl-C clears the line (as a shell)."""
    from seq2seq.translator import SourceTooLong

    try:
        import readline  # noqa: F401  (importing it gives input() line editing)
    except ImportError:
        pass
    prompt = "> " if sys.stdout.isatty() else ""
    print("Type a sentence and press Enter; Ctrl-D quits.", file=sys.stderr, flush=True)
    number = 0
    while True:
        try:
            line = input(prompt)
        except EOFError:
            print(file=sys.stderr)
            return
        except KeyboardInterrupt:
            print(file=sys.stderr, flush=True)  # the typed text is dropped and a fresh prompt comes back
            continue
        number += 1
        try:
            _answer(translator, cfg, line, number)
        except SourceTooLong as err:
            print(f"error: {err}", file=sys.stderr, flush=True)


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="translate")
@_report_errors
def _translate(dcfg: DictConfig) -> None:
    from seq2seq.evaluate import check_plot_dir
    from seq2seq.translator import Translator

    cfg: TranslateConfig = _job_config(dcfg, TranslateConfig, "seq2seq-translate")
    if cfg.attention_plots:
        check_plot_dir(cfg.attention_plots)
    translator = Translator.from_checkpoint(cfg.checkpoint, cfg.decode, cfg.device, cfg.max_src_len,
                                            cfg.max_src_len_policy)
    _reconfigure_streams()
    if sys.stdin.isatty():
        _interactive(translator, cfg)
    else:
        _piped(translator, cfg)


def translate() -> None:
    """``seq2seq-translate``: interactive or piped translation; see configs/translate.yaml."""
    cpu.openmp_defaults()  # before torch is imported
    register_configs()
    _check_command_line(TranslateConfig, "seq2seq-translate", ("decode",))
    _translate()
