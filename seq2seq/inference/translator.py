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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from seq2seq.checkpoint import load_model
from seq2seq.config import SRC_LEN_POLICIES, Config, DecodeConfig, TranslatorConfig, check_choice
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.device import resolve_device
from seq2seq.errors import DataError
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


class Translator:
    """A trained model with its tokenizer and decode settings."""

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
        results = translate_ids(self.model, ids, decode, progress)
        return [self._translation(*args) for args in zip(sentences, truncated, ids, results, strict=True)]

    def head_attention(self, translation: Translation, n: int = 0) -> Tensor:
        """The attention of every head for hypothesis ``n`` of ``translation``: (N, T+1, S), one (T+1, S) map per
        head (N = 1 unless the model's attention has several heads; ``translation.attention[n]`` is their
        average). The hypothesis is teacher-forced through the model to ask each head."""
        src = self.encode([translation.source], 1)[0][0]
        tgt = self.tokenizer.tgt_ids(translation.tgt_pieces[n])
        device = next(self.model.parameters()).device
        src_t = torch.tensor([src], device=device)
        tgt_in = torch.tensor([[BOS, *tgt]], device=device)
        self.model.eval()
        heads = self.model.head_weights(src_t, torch.tensor([len(src)]), tgt_in)[0]  # (T+1, N, S)
        rows = translation.attention[n].size(0)  # T when the hypothesis was cut at the length limit
        return heads[:rows].transpose(0, 1).cpu()  # (N, T+1, S)

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
