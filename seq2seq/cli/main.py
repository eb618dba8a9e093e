"""The console scripts, thin: compose the Hydra config, turn it into dataclasses, call the library.

A :class:`~seq2seq.errors.Seq2SeqError` (anything a user can cause) prints ``error: <message>`` on
stderr and exits with status 2; nothing else is printed.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from seq2seq import cpu
from seq2seq.cli import prompt
from seq2seq.cli.schemas import AverageConfig, EvaluateConfig, ScoreConfig, ServeConfig, TranslateConfig
from seq2seq.config import Config, register_configs, to_dataclass
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
            from seq2seq.cli.launch import Terminated

            print("terminated" if isinstance(err, Terminated) else "interrupted", file=sys.stderr, flush=True)
            sys.exit(143 if isinstance(err, Terminated) else 130)

    return wrapped


def _check_command_line(schema: type, command: str, groups: tuple[str, ...]) -> None:
    """Unknown keys fail before Hydra sees them, naming the nearest valid key (seq2seq/cli/keys.py)."""
    from seq2seq.cli.keys import check_overrides

    try:
        check_overrides(sys.argv[1:], schema, groups, command)
    except Seq2SeqError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)


def _checked(dcfg: DictConfig, schema: type, command: str) -> Any:
    """The composed config as ``schema``'s dataclasses, after every key was found in the schema."""
    from seq2seq.cli.keys import check_keys

    check_keys(dcfg, schema, command)
    return to_dataclass(dcfg, schema)


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="train")
@_report_errors
def _train(dcfg: DictConfig) -> None:
    from seq2seq.cli import launch

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode.name == "MULTIRUN":
        from seq2seq.cli import sweep

        sweep.job_started(hydra_cfg.sweep.dir)
    try:
        _train_in(dcfg, run_dir)
    except (Seq2SeqError, KeyboardInterrupt) as err:
        from seq2seq.training import distributed

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
    from seq2seq.cli import launch

    cfg: Config = _checked(dcfg, Config, "seq2seq-train")
    cpu.setup(cfg.threads)
    hydra_cfg = HydraConfig.get()
    dir_given = any(o.startswith(("hydra.run.dir=", "hydra.sweep")) for o in hydra_cfg.overrides.hydra)
    launch.train(cfg, run_dir, dir_given or hydra_cfg.mode.name == "MULTIRUN")


TRAIN_GROUPS = ("data", "model", "model/attention", "optim", "decode", "experiment")


def train() -> None:
    """``seq2seq-train``: train a model; see configs/train.yaml."""
    cpu.openmp_defaults()  # before torch is imported
    register_configs()
    _check_command_line(Config, "seq2seq-train", TRAIN_GROUPS)
    from seq2seq.cli import sweep

    try:
        _train()
    finally:
        for table in sweep.report():  # after -m: overrides -> best validation BLEU of each job
            print(table, flush=True)


# ---- seq2seq-evaluate and seq2seq-translate ---------------------------------------------------


def _job_config(dcfg: DictConfig, schema: type, command: str) -> Any:
    """The command line as ``schema``'s dataclass; a missing checkpoint= says what to pass."""
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
    from seq2seq.inference.evaluate import (
        check_plot_dir,
        check_writable,
        read_inputs,
        resolve_inputs,
        score,
        write_lines,
    )
    from seq2seq.inference.translator import Translator

    cfg: EvaluateConfig = _job_config(dcfg, EvaluateConfig, "seq2seq-evaluate")
    if cfg.decode.nbest > 1:
        log.info("decode.nbest=%d ignored: seq2seq-evaluate scores the best translation", cfg.decode.nbest)
    decode = dataclasses.replace(cfg.decode, nbest=1)
    translator = Translator.from_checkpoint(cfg.checkpoint, decode, cfg.device, cfg.max_src_len,
                                            cfg.max_src_len_policy, cfg.ensemble, cfg.quantize)
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
            prompt.save_plots(cfg.attention_plots, number, source, result,
                              prompt.attention_maps(translator, result, cfg.per_head))
        log.info("attention plots of the first %d sentences in %s", n, cfg.attention_plots)


def evaluate() -> None:
    """``seq2seq-evaluate``: translate a split or a file pair and score it; see configs/evaluate.yaml."""
    _start(EvaluateConfig, "seq2seq-evaluate")
    _evaluate()


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="translate")
@_report_errors
def _translate(dcfg: DictConfig) -> None:
    from seq2seq.inference.evaluate import check_plot_dir
    from seq2seq.inference.translator import Translator

    cfg: TranslateConfig = _job_config(dcfg, TranslateConfig, "seq2seq-translate")
    if cfg.attention_plots:
        check_plot_dir(cfg.attention_plots)
    translator = Translator.from_checkpoint(cfg.checkpoint, cfg.decode, cfg.device, cfg.max_src_len,
                                            cfg.max_src_len_policy, cfg.ensemble, cfg.quantize)
    prompt.reconfigure_streams()
    if sys.stdin.isatty():
        prompt.interactive(translator, cfg)
    else:
        prompt.piped(translator, cfg)


def translate() -> None:
    """``seq2seq-translate``: interactive or piped translation; see configs/translate.yaml."""
    _start(TranslateConfig, "seq2seq-translate")
    _translate()


# ---- seq2seq-serve, seq2seq-average, seq2seq-score ---------------------------------------------------


def _start(schema: type, command: str, groups: tuple[str, ...] = ("decode",)) -> None:
    """What every console script does first: OpenMP's default before torch loads, the schemas, typo checks."""
    cpu.openmp_defaults()
    register_configs()
    _check_command_line(schema, command, groups)


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="serve")
@_report_errors
def _serve(dcfg: DictConfig) -> None:
    from seq2seq.errors import ConfigError

    cfg: ServeConfig = _job_config(dcfg, ServeConfig, "seq2seq-serve")
    try:
        from seq2seq.serving.app import main
    except ImportError as err:
        raise ConfigError(f"seq2seq-serve needs FastAPI and uvicorn ({err.name} is missing): "
                          "pip install 'seq2seq[serve]'") from None
    main(cfg)


def serve() -> None:
    """``seq2seq-serve``: the JSON API and the attention page; see configs/serve.yaml."""
    _start(ServeConfig, "seq2seq-serve")
    _serve()


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="average")
@_report_errors
def _average(dcfg: DictConfig) -> None:
    from seq2seq.training.average import run

    cfg: AverageConfig = _checked(dcfg, AverageConfig, "seq2seq-average")
    cpu.setup(None)
    print(run(cfg), flush=True)


def average() -> None:
    """``seq2seq-average``: average checkpoints' weights into one checkpoint; see configs/average.yaml."""
    if len(sys.argv) > 1 and "=" not in sys.argv[1] and not sys.argv[1].startswith("-"):
        sys.argv[1] = f"run={sys.argv[1]}"  # seq2seq-average RUN_DIR: Hydra itself takes only key=value
    _start(AverageConfig, "seq2seq-average", ())
    _average()


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="score")
@_report_errors
def _score(dcfg: DictConfig) -> None:
    from seq2seq.errors import ConfigError
    from seq2seq.inference.forced import score_files

    for key in ("src", "ref"):
        if OmegaConf.is_missing(dcfg, key):
            raise ConfigError(f"no {key}= given: seq2seq-score needs src=SOURCES ref=TRANSLATIONS, one per line")
    scores = score_files(_job_config(dcfg, ScoreConfig, "seq2seq-score"))
    sys.stdout.writelines(f"{s.logprob:.6f}\t{s.per_token:.6f}\n" for s in scores)
    sys.stdout.flush()


def score() -> None:
    """``seq2seq-score``: the model's log-probability of each src/ref pair; see configs/score.yaml."""
    _start(ScoreConfig, "seq2seq-score", ())
    _score()
