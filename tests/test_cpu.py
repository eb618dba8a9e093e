"""Process-wide CPU settings (seq2seq/cpu.py): OpenMP's waiting is set before torch starts its threads, unless the
user chose; the start logs it; glibc keeps freed memory."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seq2seq import cpu


def test_waiting_by_the_load_unless_the_user_chose() -> None:
    env: dict[str, str] = {}
    assert cpu.openmp_defaults(env, load=1.2) == ["OMP_WAIT_POLICY"] and env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {}
    assert cpu.openmp_defaults(env, load=0.1) == ["GOMP_SPINCOUNT"] and env == {"GOMP_SPINCOUNT": "1000"}
    for users in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "300000"}):
        env = dict(users)
        assert cpu.openmp_defaults(env, load=3.0) == [] and env == users


def test_busy_fraction_reads_proc_stat_lines() -> None:
    before = "cpu  100 0 50 800 50 0 0 0 0 0"
    after = "cpu  250 0 100 1000 50 0 0 0 0 0"  # 200 busy and 200 idle jiffies since
    assert cpu.busy_fraction(before, after) == pytest.approx(0.5)
    assert cpu.busy_fraction(before, before) == 0.0


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux's /proc/stat")
def test_busy_cores_sees_a_busy_process_now() -> None:
    """The decision follows what the CPUs do now: a spinning process counts as about one busy core."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert cpu.busy_cores(0.5) >= 0.6
        env: dict[str, str] = {}
        assert cpu.openmp_defaults(env) == ["OMP_WAIT_POLICY"]
    finally:
        spinner.kill()
        spinner.wait()


def test_busy_cores_falls_back_to_the_load_average(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where /proc/stat cannot be read (macOS, Windows) the 1-minute load average stands in; with neither, 0."""
    monkeypatch.setattr(cpu.os, "getloadavg", lambda: (1.75, 0.5, 0.25), raising=False)
    assert cpu.busy_cores(0.01, stat=str(tmp_path / "missing")) == 1.75
    (tmp_path / "garbled").write_text("cpu  x y z\n", encoding="ascii")
    assert cpu.busy_cores(0.01, stat=str(tmp_path / "garbled")) == 1.75
    monkeypatch.delattr(cpu.os, "getloadavg", raising=False)
    assert cpu.busy_cores(0.01, stat=str(tmp_path / "missing")) == 0.0


def test_the_console_scripts_import_no_torch_before_setting_it() -> None:
    """libgomp reads OMP_WAIT_POLICY once, when torch loads it: setting it later does nothing."""
    code = ("import sys, seq2seq.cli.main, seq2seq.cpu, seq2seq.cli.keys, seq2seq.cli.sweep; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"


def test_setup_logs_threads_and_openmp(caplog: pytest.LogCaptureFixture) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        with caplog.at_level(logging.INFO, logger="seq2seq.cpu"):
            assert cpu.setup(1) == 1
    finally:
        torch.set_num_threads(before)
    assert "CPU: 1 torch thread (threads=1)" in caplog.text and "OMP_WAIT_POLICY" in caplog.text
    assert "load average" in caplog.text


def test_keep_freed_memory_applies_on_glibc() -> None:
    import platform

    from seq2seq import cpu

    code = "from seq2seq import cpu; print(cpu.keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == str(platform.libc_ver()[0] == "glibc")
    assert cpu.keep_freed_memory() == (out == "True")  # idempotent: the settings only ever take these values
