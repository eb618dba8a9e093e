"""Errors a user can cause. The command line prints their message alone and exits non-zero."""


class Seq2SeqError(Exception):
    """Base class: the message says what went wrong and what to do about it."""


class ConfigError(Seq2SeqError):
    """A bad configuration value or combination."""


class DataError(Seq2SeqError):
    """A missing, misaligned or undecodable corpus file."""


class CheckpointError(Seq2SeqError):
    """A missing, truncated, foreign or incompatible checkpoint."""
