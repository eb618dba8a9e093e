"""The console scripts, thin: compose the Hydra config, turn it into dataclasses, call the library.

A :class:`~seq2seq.errors.Seq2SeqError` (anything a user can cause) prints ``error: <message>`` on
stderr and exits with status 2; nothing else is printed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from seq2seq import cpu
from seq2seq.cli import prompt
from seq2seq.cli.schemas import AverageConfig, EvaluateConfig, ScoreConfig, TranslateConfig, register_configs
from seq2seq.config import Config, to_dataclass
from seq2seq.errors import Seq2SeqError
from seq2seq.serving.settings import ServeConfig

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
    chosen = hydra_cfg.mode.name == "MULTIRUN" or any(o.startswith("hydra.run.dir=")
                                                     for o in hydra_cfg.overrides.hydra)
    with launch.failed_start_removed(run_dir, empty_parents=0 if chosen else 2):  # else runs/{data.name}/ too
        _train_in(dcfg, run_dir)


def _train_in(dcfg: DictConfig, run_dir: Path) -> None:
    from seq2seq.cli import launch

    cfg: Config = _checked(dcfg, Config, "seq2seq-train")
    cpu.setup(cfg.threads)
    hydra_cfg = HydraConfig.get()
    dir_given = any(o.startswith(("hydra.run.dir=", "hydra.sweep")) for o in hydra_cfg.overrides.hydra)
    launch.start_training(cfg, run_dir, dir_given or hydra_cfg.mode.name == "MULTIRUN")


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
    from seq2seq.cli.evaluate import run

    run(_job_config(dcfg, EvaluateConfig, "seq2seq-evaluate"))


def evaluate() -> None:
    """``seq2seq-evaluate``: translate a split or a file pair and score it; see configs/evaluate.yaml."""
    _start(EvaluateConfig, "seq2seq-evaluate")
    _evaluate()


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="translate")
@_report_errors
def _translate(dcfg: DictConfig) -> None:
    from seq2seq.cli.evaluate import check_plot_dir
    from seq2seq.inference.translator import Translator

    cfg: TranslateConfig = _job_config(dcfg, TranslateConfig, "seq2seq-translate")
    if cfg.attention_plots:
        check_plot_dir(cfg.attention_plots)
    translator = Translator.from_config(cfg, cfg.decode)
    translator.attention_layers(cfg.attention_layer, cfg.self_attention)  # layers the model lacks: an error now
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
    from seq2seq.training.average import resolve_checkpoints, write_average

    cfg: AverageConfig = _checked(dcfg, AverageConfig, "seq2seq-average")
    cpu.setup(None)
    out = Path(cfg.out) if cfg.out is not None else Path(str(cfg.run)) / "avg.pt"
    write_average(resolve_checkpoints(cfg.checkpoints, cfg.run, cfg.last), out)
    print(out, flush=True)


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
    from seq2seq.files import read_aligned
    from seq2seq.inference.forced import score_pairs
    from seq2seq.inference.translator import Translator

    for key in ("src", "ref"):
        if OmegaConf.is_missing(dcfg, key):
            raise ConfigError(f"no {key}= given: seq2seq-score needs src=SOURCES ref=TRANSLATIONS, one per line")
    cfg: ScoreConfig = _job_config(dcfg, ScoreConfig, "seq2seq-score")
    sources, targets = read_aligned(cfg.src, cfg.ref, "files (src= and ref=)")
    scores = score_pairs(Translator.from_config(cfg), sources, targets, cfg.batch_tokens)
    sys.stdout.writelines(f"{s.logprob:.6f}\t{s.per_token:.6f}\n" for s in scores)
    sys.stdout.flush()


def score() -> None:
    """``seq2seq-score``: the model's log-probability of each src/ref pair; see configs/score.yaml."""
    _start(ScoreConfig, "seq2seq-score", ())
    _score()
