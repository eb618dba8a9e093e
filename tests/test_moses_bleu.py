"""seq2seq/report/moses.py and scripts/moses_bleu.py: lowercased, Moses-tokenized BLEU with sacreBLEU's tokenizer
off."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sacremoses")
from seq2seq.report.moses import moses_bleu, moses_lower  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "moses_bleu.py"


def test_lowercases_and_splits_like_moses() -> None:
    assert moses_lower(["Ein Mann, der's \"kann\"."], "de") == ['ein mann , der \' s " kann " .']


def test_case_and_punctuation_attachment_do_not_count() -> None:
    refs = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee, oder?"]
    tokenized = ["ein mann fährt fahrrad .", "zwei hunde spielen im schnee , oder ?"]
    assert moses_bleu(tokenized, refs, "de")[0] == pytest.approx(100)
    assert moses_bleu(["Ein Mann fährt.", "Zwei Hunde spielen."], refs, "de")[0] < 60


def test_command_line(tmp_path: Path) -> None:
    (tmp_path / "hyp").write_text("Ein Hund läuft.\n", encoding="utf-8")
    (tmp_path / "ref").write_text("ein hund läuft .\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "hyp"), str(tmp_path / "ref")],
                          capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.startswith("BLEU|") and "tok:none" in proc.stdout and "= 100.00" in proc.stdout
