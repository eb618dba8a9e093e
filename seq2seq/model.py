"""Seq2Seq: the encoder, the decoder and the interface search and training use.

Shapes: B batch, S source length, T target length, V target vocabulary.
"""

from __future__ import annotations

from torch import Tensor, nn

from seq2seq.config import ModelConfig
from seq2seq.decoder import DecoderState, build_decoder
from seq2seq.encoder import Encoder, EncoderOutput


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
        """Uniform(-0.1, 0.1) weights as in Luong et al. / Bahdanau et al.'s GRU setups; zero biases."""
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

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
