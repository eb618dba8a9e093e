"""Reading parallel files, filtering, batching, subword sampling (seq2seq/data/corpus.py); fuzzed with hypothesis."""

from __future__ import annotations

import gzip
import logging
import tempfile
from pathlib import Path

import pytest
import torch
from conftest import toy_config
from hypothesis import given, settings
from hypothesis import strategies as st

from seq2seq.data.corpus import Example, filter_pairs, make_batches, padding_fraction, read_parallel
from seq2seq.errors import DataError


def write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_plain_and_gz_read_the_same(tmp_path: Path) -> None:
    write(tmp_path / "train.en", ["a b", "c"])
    with gzip.open(tmp_path / "train.de.gz", "wt", encoding="utf-8") as f:
        f.write("x y\nz\n")
    assert read_parallel(tmp_path, "train", "en", "de") == (["a b", "c"], ["x y", "z"])


def test_misaligned_corpus_names_both_files_and_counts(tmp_path: Path) -> None:
    write(tmp_path / "train.en", ["a", "b", "c"])
    write(tmp_path / "train.de", ["x", "y"])
    with pytest.raises(DataError) as err:
        read_parallel(tmp_path, "train", "en", "de")
    msg = str(err.value)
    assert "train.en has 3 lines" in msg and "train.de has 2" in msg


def test_invalid_utf8_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path / "train.en", ["a", "b"])
    (tmp_path / "train.de").write_bytes(b"ok\nbad \xff\xfe byte\n")
    with pytest.raises(DataError, match=r"train\.de:2: invalid UTF-8"):
        read_parallel(tmp_path, "train", "en", "de")


def test_missing_file_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        read_parallel(tmp_path / "multi30k", "train", "en", "de")
    assert "multi30k/train.en" in str(err.value) and "download_multi30k.py" in str(err.value)


def test_empty_and_long_pairs_are_dropped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    src = [[5, 6], [], [5] * 11, [7]]
    tgt = [[8], [9], [9], []]
    with caplog.at_level(logging.INFO):
        kept = filter_pairs(src, tgt, max_len=10, name="toy")
    assert [e.index for e in kept] == [0]
    assert "dropped 2 empty and 1 over-long" in caplog.text


def test_resegmented_epochs_do_not_repeat_the_count(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        filter_pairs([[5], []], [[8], [9]], max_len=10, name="toy (sampled)", report=False)
    assert "dropped" not in caplog.text  # logged once when the corpus is read, not at every epoch


def test_download_advice_only_for_a_missing_multi30k_split(tmp_path: Path) -> None:
    for directory, split, advice in ((tmp_path / "mine", "train", False), (tmp_path / "multi30k", "nosuch", False),
                                     (tmp_path / "multi30k", "test_2016_flickr", True)):
        with pytest.raises(DataError) as err:
            read_parallel(directory, split, "en", "de")
        assert ("download_multi30k.py" in str(err.value)) == advice, (directory, split)


def test_no_usable_pairs_is_an_error() -> None:
    with pytest.raises(DataError, match="no usable sentence pairs"):
        filter_pairs([[]], [[1]], max_len=10, name="toy")


def examples(n: int = 500, seed: int = 0) -> list[Example]:
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, 40, (n, 2), generator=g).tolist()
    return [Example([4] * s, [5] * t, i) for i, (s, t) in enumerate(lens)]


def test_batches_cover_everything_once_within_budget() -> None:
    ex = examples()
    batches = make_batches(ex, batch_tokens=300, generator=torch.Generator().manual_seed(1))
    assert sorted(i for b in batches for i in b) == list(range(len(ex)))
    for b in batches:
        width = max(max(len(ex[i].src), len(ex[i].tgt)) + 1 for i in b)
        assert width * len(b) <= 300 or len(b) == 1
    assert padding_fraction(ex, batches) < 0.1


def test_batches_by_sentences() -> None:
    batches = make_batches(examples(100), batch_tokens=1, batch_sentences=16)
    assert [len(b) for b in batches] == [16] * 6 + [4]


def test_shuffling_is_seeded_and_differs_between_epochs() -> None:
    ex = examples()

    def plan(seed: int) -> list[list[int]]:
        return make_batches(ex, 300, generator=torch.Generator().manual_seed(seed))

    assert plan(3) == plan(3)
    assert plan(3) != plan(4)


def test_subword_sampling_resegments_every_epoch_reproducibly(tmp_path: Path) -> None:
    from seq2seq.data.corpus import load_corpus
    from seq2seq.training.plan import BatchPlan

    cfg = toy_config(tmp_path, "data.sampling_alpha=0.1")
    corpus = load_corpus(cfg.data)
    assert corpus.resegmenter(toy_config(tmp_path).data) is None  # off unless data.sampling_alpha is set
    plan = BatchPlan(corpus.train, 500, None, seed=7, resegment=corpus.resegmenter(cfg.data))
    epochs = {}
    for epoch in (1, 2, 1):
        batches = plan.epoch(epoch)
        assert sorted(i for b in batches for i in b) == list(range(len(plan.examples)))
        assert epochs.setdefault(epoch, plan.examples) == plan.examples  # the same again for the same epoch
    assert epochs[1] != epochs[2] and epochs[1] != corpus.train  # sampled, not the one best segmentation
    tok = corpus.tokenizer
    assert [e.index for e in epochs[1]] == [e.index for e in corpus.train]
    for side, proc in (("src", tok.src), ("tgt", tok.tgt)):  # only the segmentation changes, never the text
        best = [getattr(e, side) for e in corpus.train]
        sampled = [getattr(e, side) for e in epochs[1]]
        assert [proc.decode(s) for s in sampled] == [proc.decode(s) for s in best]
    assert sum(len(e.tgt) for e in epochs[1]) > sum(len(e.tgt) for e in corpus.train)


# any unicode line without line breaks of its own ("\n" ends a line; a trailing "\r" is a CRLF ending)
LINE = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=40)


@settings(max_examples=60, deadline=None, derandomize=True)
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


@settings(max_examples=60, deadline=None, derandomize=True)
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


@settings(max_examples=60, deadline=None, derandomize=True)
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


def test_a_corrupt_gzip_is_one_clear_error_naming_the_file(tmp_path: Path) -> None:
    """Not truncated but corrupt: zlib's error is not an OSError, and used to escape as a traceback."""
    import gzip

    from seq2seq.files import read_lines

    good = gzip.compress(("a line\n" * 1000).encode())
    bad = tmp_path / "train.en.gz"
    bad.write_bytes(good[:20] + bytes(b ^ 0x55 for b in good[20:60]) + good[60:])
    with pytest.raises(DataError, match=r"cannot read .*train\.en\.gz"):
        read_lines(bad)


def test_pairs_too_long_for_any_segmentation_are_dropped_before_tokenizing(tmp_path: Path,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    from seq2seq.data.corpus import drop_unfit

    with caplog.at_level("INFO"):
        src, tgt = drop_unfit(["short", "x" * 500, "ok"], ["kurz", "y", "x" * 501], 400, "corpus")
    assert src == ["short", "", ""] and tgt == ["kurz", "", ""]
    assert "2 pairs longer than 400 characters dropped before tokenizing" in caplog.text


def test_lines_sentencepiece_would_skip_are_named_in_the_log(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    from seq2seq.data.tokenizer import _train_one

    lines = ["a b c d e f g"] * 50 + ["long " * 1000]
    with caplog.at_level("WARNING"):
        _train_one(lines, toy_config(tmp_path).data)
    assert "1 training line(s) are longer than 4192 bytes" in caplog.text
