"""Process-wide CPU settings (seq2seq/cpu.py)."""

from __future__ import annotations

import subprocess
import sys


def test_keep_freed_memory_applies_on_glibc() -> None:
    import platform

    from seq2seq import cpu

    code = "from seq2seq import cpu; print(cpu.keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == str(platform.libc_ver()[0] == "glibc")
    assert cpu.keep_freed_memory() == (out == "True")  # idempotent: the settings only ever take these values
