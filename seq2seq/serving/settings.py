"""The settings of ``seq2seq-serve`` (the root of ``configs/serve.yaml``): what to load, where to listen, and
the limits on what one request may ask for."""

from __future__ import annotations

from dataclasses import dataclass, field

from seq2seq.config import DecodeConfig, TranslatorConfig, check_positive
from seq2seq.errors import ConfigError


@dataclass
class ServeConfig(TranslatorConfig):
    """The root of ``configs/serve.yaml`` (seq2seq-serve): the HTTP API and page, and a request's limits."""

    compare: str | None = None  # a second checkpoint, shown side by side on the page
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # a request may change beam_size, nbest, alpha
    host: str = "127.0.0.1"  # 0.0.0.0 listens on every interface: put a reverse proxy in front (docs/serving.md)
    port: int = 8000
    max_sentences: int = 32  # per request
    max_chars: int = 1000  # per sentence
    max_beam: int = 10  # largest beam_size a request may ask for
    batch_wait_ms: float = 5.0  # how long the first waiting request waits for others to share its batch
    max_src_len_policy: str = "error"  # longer sources: error (a 422 answer) | truncate
    # (quantize and threads apply to both models; ensemble= to the main one only)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be between 0 and 65535 (0: any free port), got {self.port}")
        super().__post_init__()
        for name in ("max_sentences", "max_chars", "max_beam"):
            check_positive(name, getattr(self, name))
        check_positive("batch_wait_ms", self.batch_wait_ms, allow_zero=True)
        if self.decode.beam_size > self.max_beam:
            raise ConfigError(f"decode.beam_size={self.decode.beam_size} is above max_beam={self.max_beam}; "
                              "lower the one or raise the other")
