"""The settings of ``seq2seq-serve`` (the root of ``configs/serve.yaml``): what to load, where to listen, the
limits on what one request may ask for, and the bounds on the server's work."""

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
    # a larger request body gets 413 before it is parsed; null: room for max_sentences sentences of max_chars
    # characters, each written as JSON's longest escape (12 bytes), plus 4 KiB
    max_body_bytes: int | None = None
    max_queue: int = 64  # requests waiting for each model; more get 503 with Retry-After
    request_timeout_s: float = 60.0  # a request not answered in time gets 504 (a body not received: 408)
    max_attention_cells: int = 250_000  # attention weights one answer may hold; "attention": true over it: 422
    # Host headers accepted besides the server's own address (and localhost on loopback), as host or host:port:
    # the names a reverse proxy passes on; "*" accepts any (no protection against DNS rebinding)
    allowed_hosts: list[str] = field(default_factory=list)
    # (quantize and threads apply to both models; ensemble= to the main one only)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be between 0 and 65535 (0: any free port), got {self.port}")
        super().__post_init__()
        for name in ("max_sentences", "max_chars", "max_beam", "max_body_bytes", "max_queue", "request_timeout_s",
                     "max_attention_cells"):
            check_positive(name, getattr(self, name))
        for host in self.allowed_hosts:
            try:
                if host != "*":
                    split_host(host)
            except ValueError:
                raise ConfigError(f"allowed_hosts: {host!r} is not a host name; give names like example.org or "
                                  "example.org:8443, or \"*\" alone to accept any Host") from None
        check_positive("batch_wait_ms", self.batch_wait_ms, allow_zero=True)
        if self.decode.beam_size > self.max_beam:
            raise ConfigError(f"decode.beam_size={self.decode.beam_size} is above max_beam={self.max_beam}; "
                              "lower the one or raise the other")

    @property
    def body_limit(self) -> int:
        """The largest request body accepted, in bytes (``max_body_bytes``, or the size it defaults to)."""
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        return self.max_sentences * (self.max_chars * JSON_ESCAPE_BYTES + 4) + 4096


JSON_ESCAPE_BYTES = 12  # the longest a character can be in JSON: one outside the BMP written as \ud83d\ude00


def split_host(host: str) -> tuple[str, int | None]:
    """``host[:port]`` (``[v6]:port`` for IPv6) as (lowercased name, port or None)."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif host.count(":") == 1:
        name, port = host.split(":")
    else:
        name, port = host, None
    if not name or (port is not None and not port.isdigit()) or any(c in name for c in "/@*, "):
        raise ValueError(host)
    return name, int(port) if port is not None else None
