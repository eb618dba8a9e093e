"""Dataclass schemas for every config group, with the cross-field checks in ``__post_init__``.

Hydra composes the YAML in ``configs/`` against these schemas (registered by seq2seq/cli/schemas.py),
so a misspelt key or a wrong type fails at start. :func:`to_dataclass` turns the composed config into
these dataclasses once; library code only ever sees them. Every default lives here and nowhere else: a
group option in ``configs/`` lists only what makes it differ from these (tests/test_config.py checks it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from seq2seq.errors import ConfigError
from seq2seq.registry import ATTENTIONS, TRANSFORMER_ATTENTION, check_part, output_size, size_problem, variant

CELLS = ("gru", "lstm")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # auto: seq2seq/device.py, resolve_precision
QUANTIZE = ("int8",)  # decoding-time weight formats besides fp32 (seq2seq/inference/quantize.py)
SRC_LEN_POLICIES = ("truncate", "error")  # what decoding does with a source over max_src_len
SCHEDULES = ("cosine", "plateau", "noam")
NORMS = ("pre", "post")  # where a Transformer layer normalises: before each sublayer, or after its residual sum
INIT_RESETS = ("optimizer", "none")
RESUME_OFF = ("none", "null", "false", "no", "0", "")  # resume= values that start a new run
RESUME_ON = ("true", "yes", "1")  # resume= values that mean the run directory's own last.pt
LAYER_CHOICES = ("last", "all")  # attention_layer= besides a layer number (seq2seq-evaluate, -translate)


def check_choice(name: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(sorted(options))}")


def check_positive(name: str, value: float | int | None, allow_zero: bool = False) -> None:
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def layer_choice(value: str | int) -> str | int:
    """``attention_layer=``: "last", "all" or a layer number counted from 1, the lowest layer."""
    text = str(value).strip().lower()
    if text in LAYER_CHOICES:
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ConfigError(f"attention_layer={value}: choose last (each stack's top layer, the default), all, or a layer "
                      "number counted from 1, the lowest")


@dataclass
class DataConfig:
    """A parallel corpus ``{dir}/{split}.{lang}`` (plain or .gz) and how it is tokenized."""

    name: str = "multi30k_en_de"
    dir: str = "data/multi30k"
    src_lang: str = "en"
    tgt_lang: str = "de"
    train_split: str = "train"
    valid_split: str = "val"
    test_split: str = "test_2016_flickr"
    generate: str | None = None  # toy task written into ``dir`` when missing: reverse | copy
    max_len: int = 100  # pairs longer than this (in subword tokens, either side) are dropped in training
    vocab_size: int = 8000
    joint_vocab: bool = True
    spm_type: str = "unigram"
    cache_dir: str = ".cache/seq2seq"  # SentencePiece models, subword sampling's lattices: keyed by data, settings
    # Subword regularization (Kudo 2018): every epoch re-segments the training pairs by sampling. For unigram
    # alpha smooths the sampling distribution (smaller = more varied); for bpe it is the merge-dropout rate
    # (Provilkov et al. 2020). nbest -1 samples from all segmentations. null = the one best segmentation.
    # 0.4 on Multi30k: val beam 5 39.19 against 38.42 without (docs/results.md, Tuning).
    sampling_alpha: float | None = 0.4
    sampling_nbest: int = -1  # see sampling_alpha

    def __post_init__(self) -> None:
        check_choice("data.spm_type", self.spm_type, ("unigram", "bpe"))
        if self.generate is not None:
            check_choice("data.generate", self.generate, ("reverse", "copy"))
        check_positive("data.max_len", self.max_len)
        if self.vocab_size < 8:
            raise ConfigError(f"data.vocab_size must be at least 8, got {self.vocab_size}")
        if self.src_lang == self.tgt_lang:
            raise ConfigError(f"data.src_lang and data.tgt_lang are both {self.src_lang!r}; set two languages")
        check_positive("data.sampling_alpha", self.sampling_alpha)
        if self.spm_type == "bpe" and self.sampling_alpha is not None and self.sampling_alpha >= 1:
            raise ConfigError(f"data.sampling_alpha is BPE's merge-dropout rate and must be below 1, got "
                              f"{self.sampling_alpha}")
        if self.sampling_nbest == 0 or self.sampling_nbest < -1:
            raise ConfigError(f"data.sampling_nbest must be -1 (all segmentations) or >= 1, got {self.sampling_nbest}")


@dataclass
class ModelConfig:
    """Sizes of the encoder-decoder; ``encoder`` and ``decoder`` pick its parts (seq2seq/registry.py), and for an
    RNN decoder ``attention`` also picks the decoder's wiring (paper)."""

    encoder: str = "rnn"  # rnn | transformer (Vaswani et al. 2017); its output is the memory the decoder attends to
    decoder: str = "rnn"  # rnn (the wiring of model.attention) | transformer (needs model/attention=multihead)
    cell: str = "gru"
    emb_size: int = 256  # the RNN parts' embeddings (a Transformer's are model.d_model wide)
    enc_hidden: int = 256  # per direction
    enc_layers: int = 1  # RNN or Transformer encoder layers
    bidirectional: bool = True
    dec_hidden: int = 512
    dec_layers: int = 1  # RNN or Transformer decoder layers
    dropout: float = 0.3
    attention: str = "bahdanau"
    attention_size: int = 512  # hidden size of additive scores (bahdanau, luong_concat), the heads' shared width
    attention_window: int | None = None  # D of Luong local-p attention; unset = global attention
    attention_heads: int = 4  # heads of multihead attention (they share attention_size) and of every Transformer one
    coverage: bool = False  # bahdanau: Tu et al. (2016)'s coverage vector enters the score (docs/attention.md)
    tie_embeddings: bool = False  # share the target embedding matrix with the output layer (docs/results.md, Tuning)
    share_embeddings: bool = False  # the source embedding too: one matrix for all three (needs data.joint_vocab)
    d_model: int = 256  # Transformer width: its embeddings, every sublayer's output, the memory it hands over
    ffn_size: int = 1024  # Transformer feed-forward inner size
    norm: str = "pre"  # Transformer layer norm: pre (before each sublayer) | post (after the residual, the paper's)

    @property
    def memory_size(self) -> int:
        if self.encoder == "transformer":
            return self.d_model
        return self.enc_hidden * (2 if self.bidirectional else 1)

    @property
    def src_emb_size(self) -> int:
        return self.d_model if self.encoder == "transformer" else self.emb_size

    @property
    def tgt_emb_size(self) -> int:
        return self.d_model if self.decoder == "transformer" else self.emb_size

    @property
    def output_size(self) -> int:
        """Width of the vector fed to the vocabulary projection (the registry's rule for the attention)."""
        if self.decoder == "transformer":
            return self.d_model
        return output_size(self.attention, self.emb_size, self.dec_hidden)

    def __post_init__(self) -> None:
        check_part("encoder", self.encoder)
        check_part("decoder", self.decoder)
        check_choice("model.cell", self.cell, CELLS)
        check_choice("model.norm", self.norm, NORMS)
        for name in ("emb_size", "enc_hidden", "enc_layers", "dec_hidden", "dec_layers", "attention_size",
                     "attention_heads", "d_model", "ffn_size"):
            check_positive(f"model.{name}", getattr(self, name))
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if "transformer" in (self.encoder, self.decoder) and self.d_model % self.attention_heads:
            raise ConfigError(f"model.attention_heads ({self.attention_heads}) must divide model.d_model "
                              f"({self.d_model}): each head gets d_model / heads dimensions; change one of them")
        spec = variant(self.attention)  # the registry (seq2seq/registry.py) decides which attentions exist
        if self.decoder == "transformer":
            self._check_transformer_decoder()
        else:
            self._check_rnn_attention(spec.wiring)
        self._check_embeddings()

    def _check_transformer_decoder(self) -> None:
        if self.attention != TRANSFORMER_ATTENTION:
            raise ConfigError(
                f"model.decoder=transformer attends with multi-head scaled dot-product attention "
                f"(model/attention={TRANSFORMER_ATTENTION}, model.attention_heads heads); {self.attention!r} is for "
                f"the RNN decoder: drop model/attention={self.attention}, or set model.decoder=rnn (with "
                "model.encoder=transformer: the hybrid)")
        if self.attention_window is not None or self.coverage:
            raise ConfigError("model.attention_window and model.coverage are for the RNN decoder; unset them with "
                              "model.decoder=transformer")

    def _check_rnn_attention(self, wiring: str) -> None:
        memory_from = "model.d_model" if self.encoder == "transformer" else "model.enc_hidden x directions"
        problem = size_problem(self.attention, self.dec_hidden, self.memory_size, self.attention_size,
                               self.attention_heads, memory_from)
        if problem:
            raise ConfigError(problem)
        if self.attention_window is not None:
            check_positive("model.attention_window", self.attention_window)
            if wiring != "luong":
                raise ConfigError(
                    f"model.attention_window turns a Luong score into local-p attention; "
                    f"{self.attention!r} has none: use a Luong-wired attention or unset the window"
                )
        if self.coverage and not variant(self.attention).coverage:
            takes = sorted(name for name in ATTENTIONS if variant(name).coverage)
            raise ConfigError(f"model.coverage enters an additive score; {self.attention!r} takes none: use "
                              f"model/attention={' or '.join(takes)}, or set model.coverage=false")

    def _check_embeddings(self) -> None:
        if self.tie_embeddings and self.output_size != self.tgt_emb_size:
            raise ConfigError(
                f"model.tie_embeddings needs the output vector ({self.output_size}, model.dec_hidden) to be as "
                f"wide as the embeddings ({self.tgt_emb_size}); set model.dec_hidden={self.tgt_emb_size} or untie"
            )
        if self.share_embeddings and len({self.src_emb_size, self.tgt_emb_size, self.output_size}) > 1:
            raise ConfigError(
                f"model.share_embeddings makes the source embedding ({self.src_emb_size}), the target embedding "
                f"({self.tgt_emb_size}) and the output layer's input ({self.output_size}) one matrix, so they must "
                "be as wide; make them equal (model.emb_size, model.d_model, model.dec_hidden) or set "
                "model.share_embeddings=false")


@dataclass
class OptimConfig:
    """Adam with gradient clipping; the rate follows a cosine over the training budget, is halved on a
    validation-BLEU plateau, or warms up and decays as the inverse square root of the step (noam)."""

    lr: float = 2e-3
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    label_smoothing: float = 0.1
    # cosine: lr -> min_lr over the budget (train.max_*) | plateau: lr_decay on stalls | noam: Vaswani et al. (2017)
    # eq. (3), a linear rise to lr over warmup_steps, then lr * sqrt(warmup / step)
    schedule: str = "cosine"
    warmup_steps: int = 0  # update k <= N gets k/N of the rate: cosine (0 = no warm-up) and noam (needs N > 0)
    lr_decay: float = 0.5  # plateau only
    lr_patience: int = 1  # plateau only: validations without BLEU gain before the rate is multiplied by lr_decay
    min_lr: float = 1e-5
    coverage_loss: float = 0.0  # lambda of See et al. (2017)'s coverage loss, sum_i min(a_i, c_i) per step; 0 = off

    def __post_init__(self) -> None:
        check_choice("optim.schedule", self.schedule, SCHEDULES)
        check_positive("optim.warmup_steps", self.warmup_steps, allow_zero=True)
        if self.schedule == "noam" and not self.warmup_steps:
            raise ConfigError("optim.schedule=noam warms up by definition (Vaswani et al. 2017, eq. 3): set "
                              "optim.warmup_steps=N (optim=noam sets 4000, unless an experiment= recipe sets "
                              "another schedule after it)")
        if self.schedule == "plateau" and self.warmup_steps:
            raise ConfigError(f"optim.warmup_steps={self.warmup_steps} applies to optim.schedule=cosine and noam, "
                              "not plateau; set optim.warmup_steps=0 or another schedule (optim=noam sets 4000, and "
                              "an experiment= recipe may set schedule=plateau after it)")
        check_positive("optim.coverage_loss", self.coverage_loss, allow_zero=True)
        check_positive("optim.lr", self.lr)
        check_positive("optim.min_lr", self.min_lr, allow_zero=True)
        if self.min_lr > self.lr:
            raise ConfigError(f"optim.min_lr ({self.min_lr}) must not exceed optim.lr ({self.lr}); lower optim.min_lr")
        check_positive("optim.clip_norm", self.clip_norm, allow_zero=True)
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"optim.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 < self.lr_decay <= 1.0:
            raise ConfigError(f"optim.lr_decay must be in (0, 1], got {self.lr_decay}")


@dataclass
class TrainConfig:
    """The loop: limits, batching, validation, early stopping, checkpointing."""

    max_epochs: int = 30
    max_steps: int | None = None
    max_minutes: float | None = 60.0  # wall time (validation included); the default: a laptop hour
    batch_tokens: int = 3000  # padded tokens per batch (the longer side)
    batch_sentences: int | None = None  # if set, batches of this many sentences instead (JoeyNMT style)
    valid_every_steps: int | None = None  # besides the end of every epoch
    valid_batch_tokens: int = 8000
    patience: int = 5  # validations without BLEU gain before stopping
    save_every_steps: int | None = 500
    log_every_steps: int = 50  # a log line (loss, target tokens/s, lr) every this many steps
    heartbeat_seconds: float | None = 30.0  # when stderr is no terminal: a line (step, speed, ETA) this often
    max_bad_steps: int = 5  # non-finite losses in a row before training stops
    accumulate: int = 1  # batches per optimizer step (per process): effective batch = batch x world x accumulate
    # auto: bf16 on a CPU that computes it natively, fp32 elsewhere, the choice logged (bf16 measured faster and no
    # worse in the same hour: docs/results.md, "bfloat16") | fp32 | bf16 | fp16 (autocast; fp16 only on CUDA,
    # with a gradient scaler)
    precision: str = "auto"
    keep_checkpoints: int | None = None  # keep the newest N validation checkpoints as ckpt.step{N}.pt (weights only)
    average_at_end: bool = False  # when training ends, average the kept checkpoints into avg.pt

    def __post_init__(self) -> None:
        check_choice("train.precision", self.precision, PRECISIONS)
        check_positive("train.keep_checkpoints", self.keep_checkpoints)
        if self.average_at_end and not self.keep_checkpoints:
            raise ConfigError("train.average_at_end averages the kept checkpoints; set train.keep_checkpoints=N "
                              "(e.g. 5) too")
        for name in ("max_epochs", "batch_tokens", "valid_batch_tokens", "patience", "log_every_steps",
                     "accumulate"):
            check_positive(f"train.{name}", getattr(self, name))
        for name in ("max_steps", "max_minutes", "batch_sentences", "valid_every_steps", "save_every_steps",
                     "heartbeat_seconds"):
            check_positive(f"train.{name}", getattr(self, name))


@dataclass
class DecodeConfig:
    """Search settings shared by validation, seq2seq-evaluate and seq2seq-translate."""

    beam_size: int = 5
    # GNMT length penalty; 0 disables it. Multi30k val (beam 5): 0.6 37.05, 1.0 37.25, 1.25 37.42, 1.5 37.32,
    # 2.0 37.37 (docs/results.md, Tuning)
    alpha: float = 1.25
    beta: float = 0.0  # GNMT coverage penalty beta * sum_j log(min(sum_i p_ij, 1)) (Wu et al. 2016, eq. 14); beam only
    max_len_a: float = 1.5  # output limit a * source_length + b
    max_len_b: int = 10
    nbest: int = 1
    batch_tokens: int = 6000

    def __post_init__(self) -> None:
        check_positive("decode.beam_size", self.beam_size)
        check_positive("decode.alpha", self.alpha, allow_zero=True)
        check_positive("decode.beta", self.beta, allow_zero=True)
        check_positive("decode.max_len_a", self.max_len_a, allow_zero=True)
        check_positive("decode.batch_tokens", self.batch_tokens)
        if not 1 <= self.nbest <= self.beam_size:
            raise ConfigError(f"decode.nbest must be between 1 and decode.beam_size ({self.beam_size}), "
                              f"got {self.nbest}")


def resume_choice(value: str | None) -> str | None:
    """What ``resume=value`` asks for: None (a new run), "true" (the run directory's last.pt) or a path."""
    if value is None or value.lower() in RESUME_OFF:
        return None
    return "true" if value.lower() in RESUME_ON else value


@dataclass
class TranslatorConfig:
    """The settings that load a trained model for decoding; every command that decodes (seq2seq-evaluate,
    -translate, -score, -serve) extends them, and :meth:`Translator.from_config` takes them in one call."""

    checkpoint: str = "???"  # best.pt or last.pt; tokenizer, model config and weights come from it
    max_src_len: int | None = None  # source subword limit; unset = the checkpoint's data.max_len
    max_src_len_policy: str = "truncate"  # longer sources: truncate (with a warning) | error
    device: str = "auto"  # auto (cuda when available) | cpu | cuda | cuda:1 ...
    threads: int | None = None  # torch intra-op threads; unset = torch's default
    ensemble: list[str] = field(default_factory=list)  # more checkpoints decoding together with checkpoint=
    quantize: str | None = None  # int8: dynamic int8 weights for CPU decoding

    def __post_init__(self) -> None:
        check_choice("max_src_len_policy", self.max_src_len_policy, SRC_LEN_POLICIES)
        if self.quantize is not None:
            check_choice("quantize", self.quantize, QUANTIZE)
        check_positive("max_src_len", self.max_src_len)
        check_positive("threads", self.threads)


@dataclass
class Config:
    """The root of ``configs/train.yaml``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    seed: int = 1234
    threads: int | None = None  # torch intra-op threads; unset = torch's default
    resume: str | None = None  # path to last.pt, or "true" for the run directory's own last.pt
    device: str = "auto"  # auto (CUDA when available) | cpu | cuda; under torchrun cuda = cuda:LOCAL_RANK
    init_from: str | None = None  # a checkpoint whose weights start this new run (same model and vocabulary)
    init_reset: str = "optimizer"  # with init_from: optimizer = fresh Adam | none = keep its Adam moments

    def __post_init__(self) -> None:
        check_choice("init_reset", self.init_reset, INIT_RESETS)
        if self.model.share_embeddings and not self.data.joint_vocab:
            raise ConfigError("model.share_embeddings needs one vocabulary for both languages; set "
                              "data.joint_vocab=true or model.share_embeddings=false")
        if self.optim.coverage_loss and self.model.attention == "none":
            raise ConfigError("optim.coverage_loss penalises attention that returns to covered source words; "
                              "model/attention=none has none: set optim.coverage_loss=0 or choose an attention")
        if self.init_from is not None and resume_choice(self.resume) is not None:
            raise ConfigError(f"init_from={self.init_from} starts a new run and resume={self.resume} continues "
                              "one; set only one of them (a run started with init_from resumes with resume=true "
                              "alone)")


def to_dataclass(cfg: Any, schema: type = Config) -> Any:
    """Validate plain data or an OmegaConf config against ``schema`` and build its dataclasses.

    Unknown keys and wrong types fail with OmegaConf's message (which names the key); cross-field
    checks run in each ``__post_init__``. Checkpoint configs go through here too.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise ConfigError(f"bad config: {str(err).splitlines()[0]}") from None


def to_dict(cfg: Any) -> dict:
    """Plain data for checkpoints and logs."""
    return asdict(cfg)
