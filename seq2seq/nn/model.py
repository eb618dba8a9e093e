"""Seq2Seq: the encoder, the decoder and the interface search and training use.

The encoder and the decoder are the ones ``model.encoder`` and ``model.decoder`` name (seq2seq/registry.py):
an RNN or a Transformer each, in any pairing; every pairing has the same interface.

Shapes: B batch, S source length, T target length, V target vocabulary, N heads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from seq2seq.config import ModelConfig
from seq2seq.errors import ConfigError
from seq2seq.nn.decoder import Decoder, DecoderState, build_decoder
from seq2seq.nn.encoder import Encoder, EncoderOutput
from seq2seq.nn.transformer import TransformerDecoder, TransformerEncoder, TransformerState
from seq2seq.registry import ATTENTIONS

State = DecoderState | TransformerState  # the decoder state: one object with select(indices)


class AttentionLayout(NamedTuple):
    """The layers and heads of attention a model has to show: the decoder's cross-attention over the source
    and the encoder's self-attention."""

    cross_layers: int  # a Transformer decoder's layers; an RNN decoder's one attention (0 without attention)
    cross_heads: int  # heads of each cross-attention layer (1 unless its attention has several)
    self_layers: int  # a Transformer encoder's layers; 0 for an RNN encoder
    self_heads: int  # heads of each self-attention layer


def build_encoder(cfg: ModelConfig, vocab_size: int) -> Encoder | TransformerEncoder:
    """The encoder ``model.encoder`` names."""
    if cfg.encoder == "transformer":
        return TransformerEncoder(cfg, vocab_size)
    return Encoder(cfg.cell, vocab_size, cfg.emb_size, cfg.enc_hidden, cfg.enc_layers, cfg.bidirectional,
                   cfg.dropout)


class Seq2Seq(nn.Module):
    def __init__(self, cfg: ModelConfig, src_vocab: int, tgt_vocab: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab_size = tgt_vocab
        self.encoder = build_encoder(cfg, src_vocab)
        self.decoder: Decoder | TransformerDecoder = (
            TransformerDecoder(cfg, tgt_vocab) if cfg.decoder == "transformer" else build_decoder(cfg, tgt_vocab))
        self.reset_parameters()
        if cfg.tie_embeddings or cfg.share_embeddings:  # Press & Wolf (2017): the output layer shares the
            self.decoder.vocab.weight = self.decoder.embed.weight  # target embedding matrix
        if cfg.share_embeddings:  # Vaswani et al. (2017), sec. 3.4: and so does the source embedding
            if src_vocab != tgt_vocab:
                raise ConfigError(f"model.share_embeddings needs one vocabulary, but the source has {src_vocab} "
                                  f"pieces and the target {tgt_vocab}; set data.joint_vocab=true")
            self.encoder.embed.weight = self.decoder.embed.weight

    def reset_parameters(self) -> None:
        """The RNN parts: uniform(-0.1, 0.1) weights and zero biases for every variant, Luong et al. (2015, sec.
        4.1)'s initialisation. Bahdanau et al. (2015, app. A.2.2) used orthogonal recurrent matrices, N(0,
        0.001^2) for W_a and U_a, zeros for v_a and N(0, 0.01^2) elsewhere; we keep one initialisation so that the
        variants differ only in their attention (docs/attention.md, "Where we depart from the papers"). A
        Transformer part initialises itself (seq2seq/nn/transformer.py, ``init_weights``)."""
        for part in (self.encoder, self.decoder):
            if isinstance(part, TransformerEncoder | TransformerDecoder):
                part.reset_parameters()
                continue
            for name, p in part.named_parameters():
                if name.endswith("bias") or "bias_" in name:
                    nn.init.zeros_(p)
                else:
                    nn.init.uniform_(p, -0.1, 0.1)

    def encode(self, src: Tensor, src_lens: Tensor) -> EncoderOutput:
        """src (B, S), src_lens (B,) -> memory, attention keys (projected once per batch), mask, final."""
        memory, mask, final = self.encoder(src, src_lens)
        return EncoderOutput(memory, self.decoder.project_keys(memory), mask, final)

    def init_state(self, enc: EncoderOutput) -> State:
        return self.decoder.init_state(enc)

    def decode_step(self, prev: Tensor, enc: EncoderOutput, state: State) -> tuple[Tensor, Tensor, State]:
        """prev (N,) -> log-probs (N, V), attention (N, S), next state."""
        logits, weights, state = self.decoder(prev.unsqueeze(1), enc, state)  # (N, 1, V), (N, 1, S)
        return logits.squeeze(1).log_softmax(-1), weights.squeeze(1), state

    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor,
                need_weights: bool | None = None) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: -> logits (B, T, V), attention (B, T, S). A Transformer decoder leaves the weights out
        (None) when ``need_weights`` is false, and attends through the fused kernel instead; unset, they are
        needed in eval mode only (training asks for them when its loss reads them: ``optim.coverage_loss``)."""
        if need_weights is None:
            need_weights = not self.training
        enc = self.encode(src, src_lens)
        logits, weights, _ = self.decoder(tgt_in, enc, self.init_state(enc), need_weights)
        return logits, weights

    @torch.no_grad()
    def head_weights(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced attention of every head: (B, T, N, S), N = 1 unless the attention has several heads.

        What ``forward`` returns is their average; this asks the attention for each head at every step. For a
        Transformer decoder these are the heads of its last layer's cross-attention.
        """
        if isinstance(self.decoder, TransformerDecoder):
            return self.decoder.head_weights(tgt_in, self.encode(src, src_lens))
        attention = self.decoder.attention
        if attention is None:
            raise ValueError("a model without attention has no attention heads")
        steps: list[Tensor] = []

        def keep(module: nn.Module, args: tuple, output: object) -> None:
            query, keys, _, mask = args
            steps.append(module.head_weights(query, keys, mask))  # (B, N, S)

        hook = attention.register_forward_hook(keep)
        try:
            self(src, src_lens, tgt_in)
        finally:
            hook.remove()
        return torch.stack(steps, 1)  # (B, T, N, S)

    @property
    def attention_layout(self) -> AttentionLayout:
        """How many layers and heads of attention :meth:`layer_weights` can return."""
        heads = self.cfg.attention_heads
        if isinstance(self.decoder, TransformerDecoder):
            cross = (len(self.decoder.layers), heads)
        else:  # one attention, of several heads for multihead
            cross = (int(self.decoder.attention is not None), heads if ATTENTIONS[self.cfg.attention].heads else 1)
        encoder = len(self.encoder.layers) if isinstance(self.encoder, TransformerEncoder) else 0
        return AttentionLayout(*cross, encoder, heads if encoder else 0)

    @torch.no_grad()
    def layer_weights(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor, cross: Sequence[int],
                      encoder: Sequence[int] = ()) -> tuple[list[Tensor], list[Tensor]]:
        """Teacher-forced attention of every head in the layers asked for (indices from 0, ascending): the
        decoder's cross-attention of layers ``cross``, (B, N, T, S) each, and the encoder's self-attention of
        layers ``encoder``, (B, N, S, S) each: softmax(Q K^T / sqrt(d)) of each head (Vaswani et al. 2017, eq. 1,
        sec. 3.2.2). An RNN decoder's attention is its layer 0 (:meth:`head_weights`)."""
        self_weights: list[Tensor] = []
        if encoder:
            if not isinstance(self.encoder, TransformerEncoder):
                raise ValueError("an RNN encoder has no self-attention")
            self_weights = self.encoder.run(src, encoder)[2]
        if not cross:
            return [], self_weights
        if isinstance(self.decoder, TransformerDecoder):
            enc = self.encode(src, src_lens)
            return self.decoder.run(tgt_in, enc, self.init_state(enc), cross)[1], self_weights
        return [self.head_weights(src, src_lens, tgt_in).transpose(1, 2)], self_weights

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
