"""The schemas of the commands that use a trained model: seq2seq-evaluate, -translate, -serve, -average and
-score. Like the training schemas (seq2seq/config.py) they hold every default of their settings and check
them in ``__post_init__``; Hydra composes configs/{evaluate,translate,serve,average,score}.yaml against them."""

from __future__ import annotations

from dataclasses import dataclass, field

from seq2seq.config import DecodeConfig, check_choice, check_positive
from seq2seq.errors import ConfigError

QUANTIZE = ("int8",)  # decoding-time weight formats besides fp32 (seq2seq/inference/quantize.py)


@dataclass
class EvaluateConfig:
    """The root of ``configs/evaluate.yaml`` (seq2seq-evaluate): translate a split or file pair, score it."""

    checkpoint: str = "???"  # best.pt or last.pt; tokenizer, model config and weights come from it
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    split: str | None = None  # split of the checkpoint's corpus; unset = its data.test_split (unless src=)
    data_dir: str | None = None  # where the split files are; unset = the checkpoint's data.dir
    src: str | None = None  # a source file (plain or .gz) instead of a split
    ref: str | None = None  # its reference translation; without one the file is only translated
    out: str | None = None  # hypotheses file, "-" = stdout; unset: {checkpoint dir}/hyp.{split}.{tgt} or "-"
    lowercase: bool = False  # also report case-insensitive BLEU
    attention_plots: str | None = None  # directory for heatmap PNGs of the first attention_plots_n sentences
    attention_plots_n: int = 10
    per_head: bool = False  # multihead attention: a heatmap per head besides the heads' average
    max_src_len: int | None = None  # source subword limit; unset = the checkpoint's data.max_len
    max_src_len_policy: str = "truncate"  # longer sources: truncate (with a warning) | error (the translator)
    device: str = "auto"  # auto (cuda when available) | cpu | cuda | cuda:1 ...
    threads: int | None = None  # torch intra-op threads; unset = torch's default
    ensemble: list[str] = field(default_factory=list)  # more checkpoints decoding together with checkpoint=
    quantize: str | None = None  # int8: dynamic int8 weights for CPU decoding (seq2seq/inference/quantize.py)

    def __post_init__(self) -> None:
        _check_decoding_model(self.quantize)
        check_positive("attention_plots_n", self.attention_plots_n, allow_zero=True)
        check_positive("max_src_len", self.max_src_len)
        check_positive("threads", self.threads)
        if self.src is not None and self.split is not None:
            raise ConfigError(f"src={self.src} and split={self.split} both name the input; set one of them")
        if self.ref is not None and self.src is None:
            raise ConfigError("ref= needs src= (the file it translates); to score a split of the corpus, "
                              "use split=")


@dataclass
class TranslateConfig:
    """The root of ``configs/translate.yaml`` (seq2seq-translate): interactive or piped translation."""

    checkpoint: str = "???"
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    show_attention: bool = False  # print each best translation's attention as a text table on stderr
    attention_plots: str | None = None  # directory for one heatmap PNG per input line
    per_head: bool = False  # multihead attention: a table / heatmap per head besides the heads' average
    max_src_len: int | None = None  # source subword limit; unset = the checkpoint's data.max_len
    max_src_len_policy: str = "truncate"  # longer sources: truncate (with a warning) | error (the translator)
    device: str = "auto"
    threads: int | None = None
    ensemble: list[str] = field(default_factory=list)  # more checkpoints decoding together with checkpoint=
    quantize: str | None = None  # int8: dynamic int8 weights for CPU decoding (seq2seq/inference/quantize.py)

    def __post_init__(self) -> None:
        _check_decoding_model(self.quantize)
        check_positive("max_src_len", self.max_src_len)
        check_positive("threads", self.threads)


def _check_decoding_model(quantize: str | None) -> None:
    if quantize is not None:
        check_choice("quantize", quantize, QUANTIZE)


@dataclass
class AverageConfig:
    """The root of ``configs/average.yaml`` (seq2seq-average): average checkpoints' weights into one."""

    run: str | None = None  # a run directory: average its kept checkpoints (train.keep_checkpoints)
    checkpoints: list[str] = field(default_factory=list)  # or these checkpoint files
    last: int | None = None  # only the newest N kept checkpoints of run=; unset = all of them
    out: str | None = None  # the averaged checkpoint; unset = {run}/avg.pt

    def __post_init__(self) -> None:
        check_positive("last", self.last)
        if (self.run is None) == (not self.checkpoints):
            raise ConfigError("name what to average, one of the two: a run directory (seq2seq-average RUN_DIR, "
                              "or run=RUN_DIR) or checkpoint files (checkpoints=[a.pt,b.pt])")
        if self.out is None and self.run is None:
            raise ConfigError("pass out=PATH for the averaged checkpoint")


@dataclass
class ScoreConfig:
    """The root of ``configs/score.yaml`` (seq2seq-score): the model's log-probability of given translations."""

    checkpoint: str = "???"
    src: str = "???"  # source sentences, one per line (plain or .gz)
    ref: str = "???"  # the translations to score, line n of ref translating line n of src
    batch_tokens: int = 6000  # padded tokens per batch
    max_src_len: int | None = None  # source subword limit; unset = the checkpoint's data.max_len
    max_src_len_policy: str = "truncate"  # longer sources: truncate (with a warning) | error, as in translation
    device: str = "auto"
    threads: int | None = None
    ensemble: list[str] = field(default_factory=list)  # score with the ensemble of checkpoint= and these
    quantize: str | None = None

    def __post_init__(self) -> None:
        _check_decoding_model(self.quantize)
        check_positive("batch_tokens", self.batch_tokens)
        check_positive("max_src_len", self.max_src_len)
        check_positive("threads", self.threads)


@dataclass
class ServeConfig:
    """The root of ``configs/serve.yaml`` (seq2seq-serve): the HTTP API and page, and a request's limits."""

    checkpoint: str = "???"
    compare: str | None = None  # a second checkpoint, shown side by side on the page
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # a request may change beam_size, nbest, alpha
    host: str = "127.0.0.1"  # 0.0.0.0 listens on every interface: put a reverse proxy in front (docs/serving.md)
    port: int = 8000
    max_sentences: int = 32  # per request
    max_chars: int = 1000  # per sentence
    max_beam: int = 10  # largest beam_size a request may ask for
    batch_wait_ms: float = 5.0  # how long the first waiting request waits for others to share its batch
    max_src_len: int | None = None  # source subword limit; unset = the checkpoint's data.max_len
    max_src_len_policy: str = "error"  # longer sources: error (a 422 answer) | truncate (the translator)
    ensemble: list[str] = field(default_factory=list)  # more checkpoints decoding together with checkpoint=
    quantize: str | None = None  # int8: dynamic int8 weights for CPU decoding, both models
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be between 0 and 65535 (0: any free port), got {self.port}")
        for name in ("max_sentences", "max_chars", "max_beam", "max_src_len", "threads"):
            check_positive(name, getattr(self, name))
        check_positive("batch_wait_ms", self.batch_wait_ms, allow_zero=True)
        _check_decoding_model(self.quantize)
        if self.decode.beam_size > self.max_beam:
            raise ConfigError(f"decode.beam_size={self.decode.beam_size} is above max_beam={self.max_beam}; "
                              "lower the one or raise the other")
