"""Files, with one owner each for the ways they go wrong: atomic writes (a kill leaves the old file or the new
one, never a torn one), reading text (plain or gzip, UTF-8 checked) and reading two files that must align."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from seq2seq.errors import DataError


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object] | bytes) -> None:
    """Write ``path`` through a temporary file in the same directory: flushed and fsynced, renamed over
    ``path``, then the directory fsynced so the rename itself survives a power cut. ``write`` is the bytes,
    or a function that writes into the open binary file. The temporary file is removed whatever stops the
    write (an error, Ctrl-C); an ``OSError`` is raised as it came, for the caller to word."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: two runs may fill one cache at once
    try:
        with open(tmp, "wb") as f:
            if isinstance(write, bytes):
                f.write(write)
            else:
                write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_lines(path: str | Path) -> list[str]:
    """All lines of a UTF-8 text file (gzip if it ends in .gz), without line endings."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    lines = []
    try:
        with opener(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    lines.append(raw.decode("utf-8").rstrip("\r\n"))
                except UnicodeDecodeError as err:
                    raise DataError(f"{path}:{number}: invalid UTF-8 (byte {err.start}: {err.reason}); "
                                    "re-encode the file as UTF-8, e.g. with iconv") from None
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read {path}: {err}") from None
    return lines


def read_aligned(src: str | Path, tgt: str | Path, what: str) -> tuple[list[str], list[str]]:
    """The lines of two files where line n of ``tgt`` belongs to line n of ``src``; ``what`` names the pair
    in the message when their line counts differ (e.g. "corpus", "src= and ref=")."""
    src_lines, tgt_lines = read_lines(src), read_lines(tgt)
    if len(src_lines) != len(tgt_lines):
        raise DataError(f"misaligned {what}: {src} has {len(src_lines)} lines but {tgt} has {len(tgt_lines)}; "
                        "line n of the second must translate line n of the first")
    return src_lines, tgt_lines
