"""Ensembles: several models decoding together, as one step model for search.

At every step each member scores the next token given the same prefix; the ensemble's log-probability
is the members' mean log-probability, renormalised over the vocabulary (a product of experts, Hinton
2002; Sockeye's ``log`` ensemble mode): log p(y) = mean_m log p_m(y) - log sum_y' exp(mean_m log p_m(y')).
:class:`Ensemble` satisfies search's ``StepModel`` protocol, so greedy and beam search, decoding and
scoring use it unchanged. Members may differ in architecture and attention; they must share the source
segmentation and the target vocabulary (the same SentencePiece model bytes) and the language pair. The
attention the ensemble reports is its first member's.

Shapes: B batch, S source length, N rows being decoded, V target vocabulary.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from seq2seq.checkpoint import Identity, check_compatible, load_model
from seq2seq.config import Config
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.nn.model import AttentionLayout, Seq2Seq

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Members:
    """One object per member (encoder outputs, or decoder states), reordered together."""

    items: tuple[Any, ...]

    def select(self, indices: Tensor) -> Members:
        """Rows ``indices`` of every member's object (beam search expands and reorders with this)."""
        return Members(tuple(item.select(indices) for item in self.items))

    @property
    def mask(self) -> Tensor:
        """(B, S) True at real source tokens; the same for every member (they share the segmentation)."""
        return self.items[0].mask


class Ensemble(nn.Module):
    """Members decoding in lockstep; a step model like :class:`seq2seq.nn.model.Seq2Seq`."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        sizes = {m.vocab_size for m in members}
        assert len(members) >= 1 and len(sizes) == 1, "members must share the target vocabulary"
        self.members = nn.ModuleList(members)
        self.vocab_size = sizes.pop()

    def encode(self, src: Tensor, src_lens: Tensor) -> Members:
        """src (B, S), src_lens (B,) -> every member's encoder output."""
        return Members(tuple(m.encode(src, src_lens) for m in self.members))

    def init_state(self, enc: Members) -> Members:
        return Members(tuple(m.init_state(e) for m, e in zip(self.members, enc.items, strict=True)))

    def decode_step(self, prev: Tensor, enc: Members, state: Members) -> tuple[Tensor, Tensor, Members]:
        """prev (N,) -> the renormalised mean log-probs (N, V), the first member's attention (N, S), states."""
        steps = [m.decode_step(prev, e, s) for m, e, s in zip(self.members, enc.items, state.items, strict=True)]
        states = Members(tuple(s for _, _, s in steps))
        if len(steps) == 1:
            return steps[0][0], steps[0][1], states
        mean = torch.stack([lp for lp, _, _ in steps]).mean(0)  # (N, V)
        return mean.log_softmax(-1), steps[0][1], states

    def head_weights(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        """The first member's heads: the attention an ensemble reports is its first member's."""
        return self.members[0].head_weights(src, src_lens, tgt_in)

    @property
    def attention_layout(self) -> AttentionLayout:
        """The first member's layers and heads (the attention an ensemble reports is its first member's)."""
        return self.members[0].attention_layout

    def layer_weights(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor, cross: Sequence[int],
                      encoder: Sequence[int] = ()) -> tuple[list[Tensor], list[Tensor]]:
        """The first member's attention, layer by layer and head by head."""
        return self.members[0].layer_weights(src, src_lens, tgt_in, cross, encoder)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def load_ensemble(first_path: str | Path, first: Seq2Seq, tokenizer: Tokenizer, config: Config,
                  others: Sequence[str | Path]) -> Ensemble:
    """``first`` (loaded from ``first_path``) and the checkpoints ``others`` as one ensemble."""
    members: list[nn.Module] = [first]
    for path in others:
        model, member_tokenizer, member_config = load_model(path)
        check_compatible(path, Identity.of_run(member_config, member_tokenizer), Identity.of_run(config, tokenizer),
                         str(first_path), "ensemble models of one language pair trained on the same SentencePiece "
                         "model(s): the same corpus with the same data.vocab_size, data.spm_type and data.joint_vocab",
                         same_model=False)
        members.append(model)
        log.info("ensemble member %s: %s attention, %d parameters", path, member_config.model.attention,
                 model.num_parameters())
    return Ensemble(members).eval()
