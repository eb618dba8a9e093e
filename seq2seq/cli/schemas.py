"""The schemas of the commands that use a trained model: seq2seq-evaluate, -translate, -average and -score
(seq2seq-serve's is the server's own, seq2seq/serving/settings.py). Like the training schemas
(seq2seq/config.py) they hold every default of their settings and check them in ``__post_init__``; Hydra
composes configs/{evaluate,translate,serve,average,score}.yaml against them (:func:`register_configs`). Only
the command line imports this module (an import-linter contract)."""

from __future__ import annotations

from dataclasses import dataclass, field

from seq2seq.cli import keyhelp
from seq2seq.cli.keys import check_keys
from seq2seq.config import Config, DecodeConfig, TranslatorConfig, check_positive, layer_choice, to_dataclass
from seq2seq.errors import ConfigError
from seq2seq.serving.settings import ServeConfig


@dataclass
class AttentionViewConfig(TranslatorConfig):
    """What the attention tables and heatmaps of seq2seq-evaluate and -translate show besides the default map
    (the top layer's heads' average): docs/translating.md, "Attention by layer and head"."""

    # a table / heatmap per head besides the heads' average (multihead attention, the Transformer's layers)
    per_head: bool = False
    # which layer's attention to show besides the default map: last | all | N (from 1, the lowest); for the
    # decoder's cross-attention and, with self_attention, the encoder's (an RNN decoder's attention is one layer)
    attention_layer: str = "last"
    # also the encoder's self-attention (a Transformer encoder: model=transformer or model.encoder=transformer)
    self_attention: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        layer_choice(self.attention_layer)


@dataclass
class EvaluateConfig(AttentionViewConfig):
    """The root of ``configs/evaluate.yaml`` (seq2seq-evaluate): translate a split or file pair, score it."""

    decode: DecodeConfig = field(default_factory=DecodeConfig)
    split: str | None = None  # split of the checkpoint's corpus; unset = its data.test_split (unless src=)
    data_dir: str | None = None  # where the split files are; unset = the checkpoint's data.dir
    src: str | None = None  # a source file (plain or .gz) instead of a split
    ref: str | None = None  # its reference translation; without one the file is only translated
    out: str | None = None  # hypotheses file, "-" = stdout; unset: {checkpoint dir}/hyp.{split}.{tgt} or "-"
    lowercase: bool = False  # also report case-insensitive BLEU
    attention_plots: str | None = None  # directory for heatmap PNGs of the first attention_plots_n sentences
    attention_plots_n: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("attention_plots_n", self.attention_plots_n, allow_zero=True)
        if self.src is not None and self.split is not None:
            raise ConfigError(f"src={self.src} and split={self.split} both name the input; set one of them")
        if self.ref is not None and self.src is None:
            raise ConfigError("ref= needs src= (the file it translates); to score a split of the corpus, "
                              "use split=")


@dataclass
class TranslateConfig(AttentionViewConfig):
    """The root of ``configs/translate.yaml`` (seq2seq-translate): interactive or piped translation."""

    decode: DecodeConfig = field(default_factory=DecodeConfig)
    show_attention: bool = False  # print each best translation's attention as a text table on stderr
    attention_plots: str | None = None  # directory for one heatmap PNG per input line


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
class ScoreConfig(TranslatorConfig):
    """The root of ``configs/score.yaml`` (seq2seq-score): the model's log-probability of given translations."""

    src: str = "???"  # source sentences, one per line (plain or .gz)
    ref: str = "???"  # the translations to score, line n of ref translating line n of src
    batch_tokens: int = 6000  # padded tokens per batch

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("batch_tokens", self.batch_tokens)


SCHEMAS: dict[str, type] = {"train": Config, "evaluate": EvaluateConfig, "translate": TranslateConfig,
                             "serve": ServeConfig, "average": AverageConfig, "score": ScoreConfig}


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (``train_schema`` is the first default of train.yaml)."""
    from hydra.core.config_store import ConfigStore

    from seq2seq.cli.sweep import register_resolver

    register_resolver()  # ${seq2seq_dirname:...} in train.yaml's hydra.sweep.subdir
    keyhelp.register_resolver(SCHEMAS)  # ${seq2seq_keys:NAME} in each config's --help
    cs = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        cs.store(name=f"{name}_schema", node=schema)


def compose(overrides: list[str] | None = None, config_name: str = "train") -> Config:
    """Compose ``configs/{config_name}.yaml`` with Hydra's Compose API (tests, scripts, notebooks)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    register_configs()
    with initialize_config_module(config_module="seq2seq.configs", version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides or []))
    check_keys(cfg, Config)
    return to_dataclass(cfg, Config)
