"""The console scripts, thin: compose the Hydra config, turn it into dataclasses, call the library.

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
from omegaconf import DictConfig, OmegaConf
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
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr, flush=True)
            sys.exit(130)

    return wrapped


def _resume_path(value: str | None, run_dir: Path) -> Path | None:
    if value is None or value.lower() in ("false", "no", "0", ""):
        return None
    if value.lower() in ("true", "yes", "1"):
        return run_dir / "last.pt"
    return Path(value)


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
    from seq2seq import distributed
    from seq2seq.device import resolve_device
    from seq2seq.errors import ConfigError
    from seq2seq.trainer import Trainer

    cfg: Config = to_dataclass(dcfg, Config)
    cpu.setup(cfg.threads)
    device = resolve_device(cfg.device)
    distributed.init(device)  # under torchrun: join the process group
    try:
        # rank 0's directory for all ranks (the default hydra.run.dir holds a time that may differ)
        run_dir = Path(distributed.broadcast_object(HydraConfig.get().runtime.output_dir))
        if not distributed.is_main():
            logging.getLogger().setLevel(logging.WARNING)  # rank 0 logs progress; the others only problems
        resume = _resume_path(cfg.resume, run_dir)
        if resume is None and (run_dir / "last.pt").exists():
            raise ConfigError(f"run directory {run_dir} already holds a run (last.pt); continue it with "
                              "resume=true or choose a new directory with hydra.run.dir=...")
        log.info("run directory: %s (%d process%s)", run_dir, distributed.world_size(),
                 "es" if distributed.world_size() > 1 else "")
        with logging_redirect_tqdm():
            corpus = _load_corpus_once(cfg)
            if distributed.is_main():
                corpus.tokenizer.save(run_dir)
            trainer = Trainer(cfg, corpus, run_dir, device)
            if resume is not None:
                trainer.resume(resume)
            trainer.run()
    finally:
        distributed.cleanup()


def train() -> None:
    """``seq2seq-train``: train a model; see configs/train.yaml."""
    register_configs()
    _train()


# ---- seq2seq-evaluate and seq2seq-translate ---------------------------------------------------


def _job_config(dcfg: DictConfig, schema: type) -> Any:
    """The command line as ``schema``'s dataclass; a missing checkpoint= says what to pass."""
    from seq2seq.errors import ConfigError

    if OmegaConf.is_missing(dcfg, "checkpoint"):
        raise ConfigError("no checkpoint given: pass checkpoint=PATH, the best.pt (or last.pt) of a "
                          "seq2seq-train run directory")
    cfg = to_dataclass(dcfg, schema)
    cpu.setup(cfg.threads)
    return cfg


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="evaluate")
@_report_errors
def _evaluate(dcfg: DictConfig) -> None:
    from seq2seq.errors import DataError
    from seq2seq.evaluate import read_inputs, resolve_inputs, score, write_lines
    from seq2seq.translator import Translator

    cfg: EvaluateConfig = _job_config(dcfg, EvaluateConfig)
    if cfg.decode.nbest > 1:
        log.info("decode.nbest=%d ignored: seq2seq-evaluate scores the best translation", cfg.decode.nbest)
    decode = dataclasses.replace(cfg.decode, nbest=1)
    translator = Translator.from_checkpoint(cfg.checkpoint, decode, cfg.device, cfg.max_src_len,
                                            cfg.max_src_len_policy, cfg.ensemble, cfg.quantize)
    inputs = resolve_inputs(cfg, translator.config.data)
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
            _plot(cfg.attention_plots, number, source, result, _heads(translator, result, cfg.per_head))
        log.info("attention plots of the first %d sentences in %s", n, cfg.attention_plots)


def evaluate() -> None:
    """``seq2seq-evaluate``: translate a split or a file pair and score it; see configs/evaluate.yaml."""
    register_configs()
    _evaluate()


def _heads(translator: Any, result: Any, per_head: bool) -> list[tuple[str, Any]]:
    """("head n", (T+1, S) map) for every head of the best translation when ``per_head`` is set and the model
    has several heads; else nothing (the heads' average is shown anyway)."""
    if not per_head or not result.attention or translator.config.model.attention == "none":
        return []
    if not translator.config.model.attention == "multihead":
        log.info("per_head=true: %s attention has one head, shown as it is", translator.config.model.attention)
        return []
    heads = translator.head_attention(result)  # (N, T+1, S)
    return [(f"head {n + 1}", h) for n, h in enumerate(heads)]


def _plot(directory: str, number: int, source: str, result: Any, heads: list[tuple[str, Any]]) -> None:
    """``{directory}/{number:05d}.png``: the heatmap of the best translation of line ``number`` (the heads'
    average), and ``{number:05d}.head{n}.png`` for each of ``heads``."""
    from seq2seq.plot import save_heatmap

    if result.attention:
        save_heatmap(Path(directory) / f"{number:05d}.png", result.src_pieces, result.tgt_pieces[0],
                     result.attention[0], title=source)
    for name, attention in heads:
        save_heatmap(Path(directory) / f"{number:05d}.{name.replace(' ', '')}.png", result.src_pieces,
                     result.tgt_pieces[0], attention, title=f"{name}: {source}")


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
    heads = _heads(translator, result, cfg.per_head) if cfg.show_attention or cfg.attention_plots else []
    if cfg.show_attention and result.attention:
        from seq2seq.plot import format_attention

        for name, attention in [("", result.attention[0]), *heads]:
            table = format_attention(result.src_pieces, result.tgt_pieces[0], attention)
            sys.stderr.write((f"{name}:\n" if name else "") + table + "\n")
        sys.stderr.flush()
    if cfg.attention_plots:
        _plot(cfg.attention_plots, number, line, result, heads)


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
    """A prompt with line editing and history (readline); Ctrl-D quits."""
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
        number += 1
        try:
            _answer(translator, cfg, line, number)
        except SourceTooLong as err:
            print(f"error: {err}", file=sys.stderr, flush=True)


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="translate")
@_report_errors
def _translate(dcfg: DictConfig) -> None:
    from seq2seq.translator import Translator

    cfg: TranslateConfig = _job_config(dcfg, TranslateConfig)
    translator = Translator.from_checkpoint(cfg.checkpoint, cfg.decode, cfg.device, cfg.max_src_len,
                                            cfg.max_src_len_policy, cfg.ensemble, cfg.quantize)
    _reconfigure_streams()
    if sys.stdin.isatty():
        _interactive(translator, cfg)
    else:
        _piped(translator, cfg)


def translate() -> None:
    """``seq2seq-translate``: interactive or piped translation; see configs/translate.yaml."""
    register_configs()
    _translate()


# ---- seq2seq-serve ---------------------------------------------------------------------------------


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="serve")
@_report_errors
def _serve(dcfg: DictConfig) -> None:
    import signal

    from seq2seq.config import ServeConfig
    from seq2seq.errors import ConfigError

    cfg: ServeConfig = _job_config(dcfg, ServeConfig)
    try:
        from seq2seq.serve import serve as run_server
    except ImportError as err:
        raise ConfigError(f"seq2seq-serve needs FastAPI and uvicorn ({err.name} is missing): "
                          "pip install 'seq2seq[serve]'") from None
    # uvicorn stops gracefully on SIGTERM, then raises it again: end with status 0 instead of being killed
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    run_server(cfg)


def serve() -> None:
    """``seq2seq-serve``: the JSON API and the attention page; see configs/serve.yaml."""
    register_configs()
    _serve()


# ---- seq2seq-average and seq2seq-score ----------------------------------------------------------


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="average")
@_report_errors
def _average(dcfg: DictConfig) -> None:
    from seq2seq.average import resolve_checkpoints, write_average
    from seq2seq.config import AverageConfig

    cfg: AverageConfig = to_dataclass(dcfg, AverageConfig)
    paths = resolve_checkpoints(cfg)
    out = Path(cfg.out) if cfg.out is not None else Path(str(cfg.run)) / "avg.pt"
    write_average(paths, out)
    print(out, flush=True)


def _positional_run(argv: list[str]) -> None:
    """``seq2seq-average RUN_DIR ...``: a first argument without ``=`` is the run directory (Hydra itself
    takes only key=value)."""
    if len(argv) > 1 and "=" not in argv[1] and not argv[1].startswith("-"):
        argv[1] = f"run={argv[1]}"


def average() -> None:
    """``seq2seq-average``: average checkpoints' weights into one checkpoint; see configs/average.yaml."""
    register_configs()
    _positional_run(sys.argv)
    _average()


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="score")
@_report_errors
def _score(dcfg: DictConfig) -> None:
    from seq2seq.config import ScoreConfig
    from seq2seq.data import read_lines
    from seq2seq.errors import ConfigError, DataError
    from seq2seq.score import score_pairs
    from seq2seq.translator import Translator

    for key in ("src", "ref"):
        if OmegaConf.is_missing(dcfg, key):
            raise ConfigError(f"no {key}= given: seq2seq-score needs src=SOURCES ref=TRANSLATIONS, one per line")
    cfg: ScoreConfig = _job_config(dcfg, ScoreConfig)
    sources, targets = read_lines(Path(cfg.src)), read_lines(Path(cfg.ref))
    if len(sources) != len(targets):
        raise DataError(f"misaligned files: {cfg.src} has {len(sources)} lines but {cfg.ref} has {len(targets)}; "
                        "line n of ref= must translate line n of src=")
    translator = Translator.from_checkpoint(cfg.checkpoint, None, cfg.device, cfg.max_src_len,
                                            cfg.max_src_len_policy, cfg.ensemble, cfg.quantize)
    scores = score_pairs(translator, sources, targets, cfg.batch_tokens)
    sys.stdout.writelines(f"{s.logprob:.6f}\t{s.per_token:.6f}\n" for s in scores)
    sys.stdout.flush()


def score() -> None:
    """``seq2seq-score``: the model's log-probability of each src/ref pair; see configs/score.yaml."""
    register_configs()
    _score()
