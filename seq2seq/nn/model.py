"""Seq2Seq: the encoder, the decoder and the interface search and training use.

Shapes: B batch, S source length, T target length, V target vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seq2seq.config import ModelConfig
from seq2seq.nn.decoder import DecoderState, build_decoder
from seq2seq.nn.encoder import Encoder, EncoderOutput


class Seq2Seq(nn.Module):
    def __init__(self, cfg: ModelConfig, src_vocab: int, tgt_vocab: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab_size = tgt_vocab
        self.encoder = Encoder(cfg.cell, src_vocab, cfg.emb_size, cfg.enc_hidden, cfg.enc_layers,
                               cfg.bidirectional, cfg.dropout)
        self.decoder = build_decoder(cfg, tgt_vocab)
        self.reset_parameters()
        if cfg.tie_embeddings:  # Press & Wolf (2017): output layer shares the target embedding matrix
            self.decoder.vocab.weight = self.decoder.embed.weight

    def reset_parameters(self) -> None:
        """Uniform(-0.1, 0.1) weights and zero biases for every variant: Luong et al. (2015, sec. 4.1)'s
        initialisation. Bahdanau et al. (2015, app. A.2.2) used orthogonal recurrent matrices, N(0, 0.001^2)
        for W_a and U_a, zeros for v_a and N(0, 0.01^2) elsewhere; we keep one initialisation so that the
        variants differ only in their attention (docs/attention.md, "Where we depart from the papers")."""
        for name, p in self.named_parameters():
            if name.endswith("bias") or "bias_" in name:
                nn.init.zeros_(p)
            else:
                nn.init.uniform_(p, -0.1, 0.1)

    def encode(self, src: Tensor, src_lens: Tensor) -> EncoderOutput:
        """src (B, S), src_lens (B,) -> memory, attention keys (projected once per batch), mask, final."""
        memory, mask, final = self.encoder(src, src_lens)
        attention = self.decoder.attention
        keys = attention.project_keys(memory) if attention is not None else None
        return EncoderOutput(memory, keys, mask, final)

    def init_state(self, enc: EncoderOutput) -> DecoderState:
        return self.decoder.init_state(enc)

    def decode_step(self, prev: Tensor, enc: EncoderOutput, state: DecoderState) -> tuple[Tensor, Tensor, DecoderState]:
        """prev (N,) -> log-probs (N, V), attention (N, S), next state."""
        logits, weights, state = self.decoder(prev.unsqueeze(1), enc, state)  # (N, 1, V), (N, 1, S)
        return logits.squeeze(1).log_softmax(-1), weights.squeeze(1), state

    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher forcing: -> logits (B, T, V), attention (B, T, S)."""
        enc = self.encode(src, src_lens)
        logits, weights, _ = self.decoder(tgt_in, enc, self.init_state(enc))
        return logits, weights

    @torch.no_grad()
    def head_weights(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced attention of every head: (B, T, N, S), N = 1 unless the attention has several heads.

        What ``forward`` returns is their average; this asks the attention for each head at every step.
        """
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

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
