"""Fuzzing the corpus reader with arbitrary unicode (hypothesis)."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seq2seq.data import filter_pairs, read_parallel
from seq2seq.errors import DataError

# any unicode line without line breaks of its own ("\n" ends a line; a trailing "\r" is a CRLF ending)
LINE = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=40)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(LINE, LINE), max_size=20), st.booleans())
def test_reader_returns_exactly_the_lines_written(pairs: list[tuple[str, str]], gz: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for lang, side in (("xx", 0), ("yy", 1)):
            data = "".join(p[side] + "\n" for p in pairs).encode("utf-8")
            if gz:
                (d / f"train.{lang}.gz").write_bytes(gzip.compress(data))
            else:
                (d / f"train.{lang}").write_bytes(data)
        src, tgt = read_parallel(d, "train", "xx", "yy")
    assert src == [p[0] for p in pairs] and tgt == [p[1] for p in pairs]


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_read_or_fail_with_a_data_error(blob: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "train.xx").write_bytes(blob)
        (d / "train.yy").write_bytes(blob)
        raw = blob.split(b"\n")[:-1] if blob.endswith(b"\n") else blob.split(b"\n")  # the file's lines
        raw = [] if blob == b"" else raw
        bad = next((n for n, line in enumerate(raw, 1) if not _is_utf8(line)), None)
        try:
            src, tgt = read_parallel(d, "train", "xx", "yy")
        except DataError as err:
            assert bad is not None and f"train.xx:{bad}: invalid UTF-8" in str(err)
        else:
            assert bad is None
            assert src == [line.decode("utf-8").rstrip("\r\n") for line in raw] and tgt == src


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(4, 99), max_size=8), st.lists(st.integers(4, 99), max_size=8)),
                min_size=1, max_size=20))
def test_filter_keeps_exactly_the_usable_pairs(pairs: list[tuple[list[int], list[int]]]) -> None:
    usable = [i for i, (s, t) in enumerate(pairs) if s and t and len(s) <= 5 and len(t) <= 5]
    try:
        kept = filter_pairs([p[0] for p in pairs], [p[1] for p in pairs], max_len=5, name="fuzz")
    except DataError:
        assert not usable
    else:
        assert [e.index for e in kept] == usable


# ---- the translator with arbitrary unicode ---------------------------------------------------------

ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)


@pytest.fixture(scope="module")
def translator(toy_run: Path):
    from seq2seq.translator import Translator

    return Translator.from_checkpoint(toy_run / "best.pt", device="cpu")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ANY_TEXT, min_size=1, max_size=6))
def test_translator_gives_one_line_per_input_for_any_unicode(translator, lines: list[str]) -> None:
    out = translator.translate(lines, beam_size=2)
    assert len(out) == len(lines)
    for source, target in zip(lines, out):
        assert "\n" not in target and "\r" not in target
        if not source.strip():
            assert target == ""


def test_translations_do_not_depend_on_input_order(translator) -> None:
    lines = ["a b c d", "t s r", "e f g h i j k", "b", "m n o p q r s t a b"]
    forward = translator.translate(lines, beam_size=3)
    backward = translator.translate(lines[::-1], beam_size=3)
    assert forward == backward[::-1]
