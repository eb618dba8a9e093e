"""Translator: raw sentences in, translations out (encode, limit the length, decode, detokenize).

Used by seq2seq-evaluate and seq2seq-translate, and from Python::

    from seq2seq import Translator
    t = Translator.from_checkpoint("runs/x/best.pt")
    t.translate(["A man rides a bike."], beam_size=5)   # -> ["Ein Mann fährt Fahrrad."]

Shapes: S source length (subwords), T target length.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from seq2seq.checkpoint import load_model
from seq2seq.config import (
    SRC_LEN_POLICIES,
    Config,
    DecodeConfig,
    TranslatorConfig,
    check_choice,
    layer_choice,
)
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.device import resolve_device
from seq2seq.errors import ConfigError, DataError
from seq2seq.inference.decoding import Hypothesis, detokenize, translate_ids
from seq2seq.nn.model import Seq2Seq
from seq2seq.special import BOS

log = logging.getLogger(__name__)


class SourceTooLong(DataError):
    """A source sentence is longer than the model's limit and max_src_len_policy=error."""


@dataclass
class Translation:
    """The n-best translations of one source sentence, best first, distinct as text.

    An empty source (no subwords) has no hypotheses; ``text`` is then "".
    """

    source: str
    hypotheses: list[str] = field(default_factory=list)  # detokenized, one line each, stripped
    scores: list[float] = field(default_factory=list)  # search scores (length-penalised log-prob), descending
    src_pieces: list[str] = field(default_factory=list)  # the subwords the model saw (after truncation)
    tgt_pieces: list[list[str]] = field(default_factory=list)  # per hypothesis, EOS excluded
    attention: list[Tensor] = field(default_factory=list)  # per hypothesis (T+1, S): a row per token and EOS
    truncated: bool = False

    @property
    def text(self) -> str:
        return self.hypotheses[0] if self.hypotheses else ""


@dataclass
class LayerAttention:
    """Every head of the attention layers asked for, for one hypothesis, teacher-forced through the model; layers
    are numbered from 1, the lowest. The heads' mean of the decoder's top layer is the hypothesis's
    ``Translation.attention`` (the map search reported)."""

    cross: dict[int, Tensor]  # decoder layer -> (N, T+1, S): each head's cross-attention over the source
    self_attention: dict[int, Tensor]  # encoder layer -> (N, S, S): each head's self-attention; {} unless asked


class Translator:
    """A trained model with its tokenizer and decode settings. Its model runs one call at a time (a lock), so
    that a server's threads may share it."""

    def __init__(self, model: Seq2Seq, tokenizer: Tokenizer, config: Config,
                 decode: DecodeConfig | None = None, max_src_len: int | None = None,
                 max_src_len_policy: str = TranslatorConfig.max_src_len_policy) -> None:
        check_choice("max_src_len_policy", max_src_len_policy, SRC_LEN_POLICIES)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config  # the training config inside the checkpoint
        self.decode = decode or DecodeConfig()
        self.max_src_len = max_src_len or config.data.max_len
        self.max_src_len_policy = max_src_len_policy
        self._lock = threading.Lock()

    @classmethod
    def from_checkpoint(cls, path: str | Path, decode: DecodeConfig | None = None, device: str = "auto",
                        quantize: str | None = None, ensemble: Sequence[str | Path] = ()) -> Translator:
        """A checkpoint file ready to translate, with the other settings at their defaults (Python use);
        ``decode`` defaults to configs/decode/beam.yaml's settings."""
        return cls.from_config(TranslatorConfig(checkpoint=str(path), device=device, quantize=quantize,
                                                ensemble=[str(p) for p in ensemble]), decode)

    @classmethod
    def from_config(cls, settings: TranslatorConfig, decode: DecodeConfig | None = None) -> Translator:
        """Everything from ``settings.checkpoint``: the one way every command loads a model for decoding.

        ``settings.ensemble``: more checkpoints that decode together with it (seq2seq/inference/ensemble.py);
        ``settings.quantize="int8"``: int8 weights for the CPU (seq2seq/inference/quantize.py).
        """
        path, ensemble, quantize = settings.checkpoint, settings.ensemble, settings.quantize
        model, tokenizer, config = load_model(path)
        target = resolve_device(settings.device)
        log.info("loaded %s: %s→%s, %s attention, %d parameters, on %s", path, config.data.src_lang,
                 config.data.tgt_lang, config.model.attention, model.num_parameters(), target)
        if ensemble:
            from seq2seq.inference.ensemble import load_ensemble

            model = load_ensemble(path, model, tokenizer, config, ensemble)
        model.to(target)
        if quantize is not None:
            from seq2seq.inference.quantize import quantize as quantized

            model = quantized(model, quantize, target)
        return cls(model, tokenizer, config, decode, settings.max_src_len, settings.max_src_len_policy)

    def with_decode(self, beam_size: int | None = None, alpha: float | None = None,
                    nbest: int | None = None) -> DecodeConfig:
        """This translator's decode settings with the given ones replaced (checked like the config)."""
        changes = {"beam_size": beam_size, "alpha": alpha, "nbest": nbest}
        return dataclasses.replace(self.decode, **{k: v for k, v in changes.items() if v is not None})

    def translate(self, sentences: Sequence[str], beam_size: int | None = None,
                  alpha: float | None = None) -> list[str]:
        """The best translation of each sentence, in order ("" for an empty one)."""
        if isinstance(sentences, str):
            raise TypeError("translate() takes a list of sentences and returns a list; for one sentence use "
                            "translate([sentence])[0]")
        decode = self.with_decode(beam_size, alpha, nbest=1)
        return [t.text for t in self.translations(sentences, decode)]

    def translations(self, sentences: Sequence[str], decode: DecodeConfig | None = None,
                     progress: Callable[[int], object] | None = None,
                     first_line: int = 1) -> list[Translation]:
        """n-best translations (decode.nbest) of each sentence, with pieces, scores and attention.

        Sentences are batched by tokens and sorted by length (decode.batch_tokens); the output keeps
        the input order. ``progress(n)`` is told how many sentences are done after each batch;
        ``first_line`` numbers the sentences in warnings and errors.
        """
        if isinstance(sentences, str):
            raise TypeError("translations() takes a list of sentences; wrap a single one in [...]")
        sentences = list(sentences)
        decode = decode or self.decode
        ids, truncated = self.encode(sentences, first_line)
        with self._lock:
            results = translate_ids(self.model, ids, decode, progress)
        return [self._translation(*args) for args in zip(sentences, truncated, ids, results, strict=True)]

    def head_attention(self, translation: Translation, n: int = 0) -> Tensor:
        """The attention of every head for hypothesis ``n`` of ``translation``: (N, T+1, S), one (T+1, S) map per
        head (N = 1 unless the model's attention has several heads; ``translation.attention[n]`` is their
        average). The hypothesis is teacher-forced through the model to ask each head."""
        src, lens, tgt_in = self._forced_inputs(translation, n)
        with self._lock:
            self.model.eval()
            heads = self.model.head_weights(src, lens, tgt_in)[0]  # (T+1, N, S)
        rows = translation.attention[n].size(0)  # T when the hypothesis was cut at the length limit
        return heads[:rows].transpose(0, 1).cpu()  # (N, T+1, S)

    def layer_attention(self, translation: Translation, n: int = 0, layer: str | int = "last",
                        self_attention: bool = False) -> LayerAttention:
        """Every head of the layers ``layer`` picks (:meth:`attention_layers`) for hypothesis ``n`` of
        ``translation``: the decoder's cross-attention, and with ``self_attention`` the encoder's
        self-attention (Vaswani et al. 2017, sec. 3.2.2: each head's softmax(Q K^T / sqrt(d)))."""
        cross, encoder = self.attention_layers(layer, self_attention)
        src, lens, tgt_in = self._forced_inputs(translation, n)
        with self._lock:
            self.model.eval()
            weights, self_weights = self.model.layer_weights(src, lens, tgt_in, [i - 1 for i in cross],
                                                             [i - 1 for i in encoder])
        rows = translation.attention[n].size(0)  # T when the hypothesis was cut at the length limit
        return LayerAttention({i: w[0, :, :rows].cpu() for i, w in zip(cross, weights, strict=True)},
                              {i: w[0].cpu() for i, w in zip(encoder, self_weights, strict=True)})

    def attention_layers(self, layer: str | int = "last", self_attention: bool = False) -> tuple[list[int], list[int]]:
        """The layers (from 1, the lowest) that ``attention_layer=layer`` picks in the decoder's cross-attention
        and, with ``self_attention``, in the encoder's self-attention: "last" each stack's top layer, "all" every
        layer, a number that layer. A layer the model lacks is a ConfigError saying what to choose."""
        choice = layer_choice(layer)
        layout = self.model.attention_layout
        if self_attention and not layout.self_layers:
            raise ConfigError("self_attention=true shows a Transformer encoder's self-attention, but this "
                              "checkpoint's encoder is an RNN; leave self_attention unset, or use a checkpoint "
                              "trained with model=transformer or model.encoder=transformer")
        decoder = ("the Transformer decoder's cross-attention" if self.config.model.decoder == "transformer"
                   else "the RNN decoder's attention")
        return (_layers(choice, layout.cross_layers, decoder),
                _layers(choice, layout.self_layers, "the encoder's self-attention") if self_attention else [])

    def attention_cells(self, translation: Translation, layer: str | int = "all", self_attention: bool = False) -> int:
        """How many weights :meth:`layer_attention` returns for all hypotheses of ``translation``, the
        encoder's self-attention counted once: what a server bounds before doing the work."""
        cross, encoder = self.attention_layers(layer, self_attention)
        layout = self.model.attention_layout
        rows, s = sum(a.size(0) for a in translation.attention), len(translation.src_pieces)
        return len(cross) * layout.cross_heads * rows * s + len(encoder) * layout.self_heads * s * s

    def _forced_inputs(self, translation: Translation, n: int) -> tuple[Tensor, Tensor, Tensor]:
        """Hypothesis ``n`` of ``translation`` as a batch of one to teacher-force: src (1, S), its length (1,),
        the target input (1, T+1) that starts with BOS."""
        src = self.encode([translation.source], 1)[0][0]
        tgt = self.tokenizer.tgt_ids(translation.tgt_pieces[n])
        device = next(self.model.parameters()).device
        return (torch.tensor([src], device=device), torch.tensor([len(src)]),
                torch.tensor([[BOS, *tgt]], device=device))

    def encode(self, sentences: Sequence[str], first_line: int = 1) -> tuple[list[list[int]], list[bool]]:
        """Source ids as translation sees them: each sentence's subwords cut to max_src_len (or an error, by
        max_src_len_policy), and which were cut; ``first_line`` numbers the sentences in messages."""
        ids = self.tokenizer.encode_src(sentences)
        long = [i for i, seq in enumerate(ids) if len(seq) > self.max_src_len]
        if long and self.max_src_len_policy == "error":
            i = long[0]
            raise SourceTooLong(
                f"line {first_line + i}: the source has {len(ids[i])} subword tokens, more than the model's "
                f"limit of {self.max_src_len} (max_src_len, default the checkpoint's data.max_len); shorten "
                "or split it, raise max_src_len=, or set max_src_len_policy=truncate")
        if long:
            where = ", ".join(str(first_line + i) for i in long[:5]) + (", ..." if len(long) > 5 else "")
            log.warning("%d source(s) longer than %d subword tokens truncated (line %s); set "
                        "max_src_len_policy=error to refuse them instead", len(long), self.max_src_len, where)
        return [seq[: self.max_src_len] for seq in ids], [len(seq) > self.max_src_len for seq in ids]

    def _translation(self, source: str, truncated: bool, src_ids: list[int],
                     hypotheses: list[Hypothesis]) -> Translation:
        """The n-best list as text, dropping a hypothesis that reads like a better one."""
        out = Translation(source, src_pieces=self.tokenizer.src_pieces(src_ids), truncated=truncated)
        texts = detokenize(self.tokenizer, [h.tokens for h in hypotheses])
        for hyp, text in zip(hypotheses, texts, strict=True):
            if text in out.hypotheses:
                continue
            out.hypotheses.append(text)
            out.scores.append(hyp.score)
            out.tgt_pieces.append(self.tokenizer.tgt_pieces(hyp.tokens))
            out.attention.append(hyp.attention)
        return out


def _layers(choice: str | int, count: int, stack: str) -> list[int]:
    """The layers ``choice`` picks (from 1) in a stack of ``count`` layers called ``stack`` in messages."""
    if not count:
        return []
    if choice == "all":
        return list(range(1, count + 1))
    if choice == "last":
        return [count]
    assert isinstance(choice, int)
    if choice > count:
        numbers = "1" if count == 1 else f"a number from 1 to {count}"
        raise ConfigError(f"attention_layer={choice}: {stack} has {count} layer{'s' if count > 1 else ''}; choose "
                          f"{numbers}, last (the top layer) or all")
    return [choice]
