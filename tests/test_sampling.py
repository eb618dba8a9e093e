"""Subword regularization (seq2seq/data/sampling.py): SentencePiece's lattice and distribution, with draws
that depend on (seed, sentence) alone, in every process."""

from __future__ import annotations

import collections
import io
import logging
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from seq2seq.data import sampling
from seq2seq.data.sampling import Sampler, _Vocabulary, edges, uniforms

WORDS = ["a", "man", "woman", "dog", "dogs", "is", "are", "running", "walking", "on", "the", "beach", "street",
         "blue", "shirt", "red", "hat", "two", "children", "play", "playing", "in", "water", "snow", "grass"]


def corpus(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)]


def train(model_type: str, vocab: int = 60) -> bytes:
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus(2000, 1)), model_writer=out, vocab_size=vocab,
                                   model_type=model_type, character_coverage=1.0, pad_id=0, unk_id=1, bos_id=2,
                                   eos_id=3, hard_vocab_limit=False, minloglevel=2, num_threads=1)
    return out.getvalue()


@pytest.fixture(scope="module")
def unigram() -> bytes:
    return train("unigram")


def viterbi(text: str, vocab: _Vocabulary) -> list[int]:
    ends = edges(text, vocab)
    best, back = [0.0] + [float("-inf")] * len(text), [(0, 0)] * (len(text) + 1)
    for end in range(1, len(text) + 1):
        for start, piece, score in ends[end]:
            if best[start] + score > best[end]:
                best[end], back[end] = best[start] + score, (start, piece)
    out, pos = [], len(text)
    while pos:
        pos, piece = back[pos][0], out.append(back[pos][1])
    return out[::-1]


def test_the_lattice_is_sentencepieces(unigram: bytes) -> None:
    """Its best path is SentencePiece's own segmentation, for every line (unknown characters too)."""
    proc = spm.SentencePieceProcessor(model_proto=unigram)
    vocab = _Vocabulary(proc)
    for line in [*corpus(), "a man with a ßpecial hat", "  two   spaces "]:
        assert viterbi(proc.normalize(line), vocab) == proc.encode(line), line


def test_samples_follow_sentencepieces_distribution(unigram: bytes) -> None:
    """The segmentations of one sentence, drawn 3,000 times, are spread as SentencePiece's own sampler spreads
    them (total variation distance below 0.05)."""
    line, alpha, n = "two children are playing in the snow", 0.4, 3000
    ours = Sampler(unigram, [line] * n, alpha, -1, bpe=False).sample(5)
    proc = spm.SentencePieceProcessor(model_proto=unigram)
    spm.set_random_generator_seed(5)
    theirs = proc.encode([line] * n, enable_sampling=True, alpha=alpha, nbest_size=-1, num_threads=1)
    a, b = collections.Counter(map(tuple, ours)), collections.Counter(map(tuple, theirs))
    assert len(a) > 5  # it does sample
    assert sum(abs(a[k] - b[k]) for k in a.keys() | b.keys()) / (2 * n) < 0.05


def test_draws_depend_on_seed_and_sentence_alone(unigram: bytes) -> None:
    lines = corpus()
    sampler = Sampler(unigram, lines, 0.4, -1, bpe=False)
    first = sampler.sample(11)
    assert sampler.sample(11) == first and sampler.sample(12) != first
    assert Sampler(unigram, lines[100:], 0.4, -1, bpe=False).sample(11) != first[100:]  # keyed by position
    assert uniforms(3, 7, 5, start=2) == uniforms(3, 7, 7)[2:]


def test_another_process_draws_the_same(unigram: bytes, tmp_path: Path) -> None:
    """The property SentencePiece's own sampler lacks: a second process (a resume, a torchrun rank)."""
    (tmp_path / "m.model").write_bytes(unigram)
    (tmp_path / "lines.txt").write_text("\n".join(corpus()) + "\n")
    code = ("import sys; from pathlib import Path; from seq2seq.data.sampling import Sampler; "
            "lines = Path(sys.argv[2]).read_text().splitlines(); "
            "print(Sampler(Path(sys.argv[1]).read_bytes(), lines, 0.4, -1, bpe=False).sample(11))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.model"), str(tmp_path / "lines.txt")],
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == str(Sampler(unigram, corpus(), 0.4, -1, bpe=False).sample(11))


def test_l_best_sampling_draws_among_the_l_best(unigram: bytes) -> None:
    line = "two children are playing in the snow"
    proc = spm.SentencePieceProcessor(model_proto=unigram)
    best = {tuple(ids) for ids in proc.nbest_encode_as_ids(line, nbest_size=4)}
    drawn = {tuple(ids) for ids in Sampler(unigram, [line] * 300, 0.4, 4, bpe=False).sample(1)}
    assert drawn <= best and len(drawn) > 1


def test_bpe_dropout() -> None:
    """alpha 0 is plain BPE (SentencePiece's segmentation); above 0 merges are dropped, more with a larger alpha."""
    model = train("bpe")
    proc = spm.SentencePieceProcessor(model_proto=model)
    lines = corpus(100)
    assert Sampler(model, lines, 0.0, -1, bpe=True).sample(3) == proc.encode(lines)
    lengths = [sum(map(len, Sampler(model, lines, alpha, -1, bpe=True).sample(3))) for alpha in (0.0, 0.1, 0.5)]
    assert lengths[0] < lengths[1] < lengths[2]


# ---- the cache of the prepared lattices / n-best lists ------------------------------------------------------

SEEDS = (0, 1, 11, 2**40 + 3)


def no_preparation(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on a Sampler that prepares instead of loading its cache fails."""
    def fail(*args: object) -> None:
        raise AssertionError("prepared again instead of loading the cache")
    monkeypatch.setattr(sampling, "_lattices", fail)
    monkeypatch.setattr(sampling, "_nbests", fail)


@pytest.mark.parametrize("nbest", [-1, 4])
def test_a_sampler_from_the_cache_draws_what_a_fresh_one_draws(unigram: bytes, tmp_path: Path, nbest: int,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [*corpus(), "", "a man with a ßpecial hat 🙂", "  two   spaces "]
    fresh = Sampler(unigram, lines, 0.4, nbest, bpe=False)
    Sampler(unigram, lines, 0.4, nbest, bpe=False, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("sampling-*.npz"))) == 1
    no_preparation(monkeypatch)
    cached = Sampler(unigram, lines, 0.4, nbest, bpe=False, cache_dir=tmp_path)
    for seed in SEEDS:
        assert cached.sample(seed) == fresh.sample(seed)
    assert not list(tmp_path.glob(".*.tmp"))


def arrays_of(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {name: npz[name] for name in npz.files}


def rewritten(**change: np.ndarray) -> object:
    """A corruption: the cache file rewritten with some arrays changed (None: left out)."""
    def corrupt(path: Path) -> None:
        arrays = {**arrays_of(path), **change}
        np.savez(path, **{name: a for name, a in arrays.items() if a is not None})
    return corrupt


def altered(name: str, alter: object) -> object:
    """A corruption: one array rewritten as ``alter`` makes it from the cached one."""
    def corrupt(path: Path) -> None:
        arrays = arrays_of(path)
        arrays[name] = alter(arrays[name])
        np.savez(path, **arrays)
    return corrupt


def garbage(path: Path) -> None:
    path.write_bytes(random.Random(0).randbytes(path.stat().st_size))


def flipped_byte(path: Path) -> None:  # inside an array's data: only the zip's CRC tells
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))


def shuffled(a: np.ndarray) -> np.ndarray:
    return np.random.default_rng(0).permutation(a)


CORRUPTIONS = {
    "empty": lambda path: path.write_bytes(b""),
    "truncated": lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
    "garbage": garbage,
    "flipped byte": flipped_byte,
    "pickled objects": rewritten(ids=np.array([[1], [2, 3]], dtype=object)),
    "an array missing": rewritten(offsets=None),
    "an array too many": rewritten(extra=np.zeros(3)),
    "another entry's file": lambda path: path.write_bytes(path.with_name("other.npz").read_bytes()),
    "wrong dtype": altered("cumulative", lambda a: a.astype(np.float32)),
    "two-dimensional": altered("ids", lambda a: a.reshape(1, -1)),
    "a line missing": altered("bounds", lambda a: a[:-1]),
    "an empty line too many": altered("bounds", lambda a: np.append(a, a[-1])),
    "a weight too many": altered("cumulative", lambda a: np.append(a, a[-1])),
    "ids beyond the vocabulary": altered("ids", lambda a: a + 1000),
    "weights shuffled": altered("cumulative", shuffled),
    "a weight not a number": altered("cumulative", lambda a: np.where(np.arange(len(a)) == len(a) // 2, np.nan, a)),
    "offsets out of order": altered("offsets", lambda a: a[::-1].copy()),
}
LATTICE_ONLY = {"a piece starting past its end": altered("starts", lambda a: a + 200),
                "probabilities halved": altered("cumulative", lambda a: a / 2)}  # the same draws, but wrong


@pytest.mark.parametrize(("nbest", "damage"), [(nbest, name) for nbest in (-1, 4) for name in CORRUPTIONS]
                         + [(-1, name) for name in LATTICE_ONLY])
def test_a_damaged_cache_is_prepared_again_with_a_warning(unigram: bytes, tmp_path: Path, nbest: int, damage: str,
                                                          caplog: pytest.LogCaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    lines = corpus(60)
    fresh = Sampler(unigram, lines, 0.4, nbest, bpe=False)
    Sampler(unigram, lines, 0.5, nbest, bpe=False, cache_dir=tmp_path)  # another entry (other.npz)
    [other] = tmp_path.glob("sampling-*.npz")
    other.rename(tmp_path / "other.npz")
    Sampler(unigram, lines, 0.4, nbest, bpe=False, cache_dir=tmp_path)
    [path] = tmp_path.glob("sampling-*.npz")
    {**CORRUPTIONS, **LATTICE_ONLY}[damage](path)
    with caplog.at_level(logging.WARNING, logger="seq2seq.data.sampling"):
        again = Sampler(unigram, lines, 0.4, nbest, bpe=False, cache_dir=tmp_path)
    assert f"subword sampling cache {path} is unusable" in caplog.text
    assert [again.sample(seed) for seed in SEEDS] == [fresh.sample(seed) for seed in SEEDS]
    no_preparation(monkeypatch)  # and the file was written anew
    assert [Sampler(unigram, lines, 0.4, nbest, bpe=False, cache_dir=tmp_path).sample(seed) for seed in SEEDS] \
        == [fresh.sample(seed) for seed in SEEDS]


def test_other_settings_model_or_lines_get_their_own_entry(unigram: bytes, tmp_path: Path) -> None:
    """Each changes the fingerprint: its sampler is prepared for it (draws as a fresh one does), not loaded."""
    lines = corpus(60)
    other_model = train("unigram", vocab=40)
    assert other_model != unigram
    variants = [(unigram, lines, 0.4, -1), (unigram, lines, 0.5, -1), (unigram, lines, 0.4, 4),
                (unigram, lines, 0.4, 5), (unigram, lines, 0.5, 4), (other_model, lines, 0.4, -1),
                (unigram, lines[:-1], 0.4, -1), (unigram, [*lines[:-1], lines[-1] + " dog"], 0.4, -1),
                (unigram, [*lines[:2], lines[2] + lines[3], *lines[4:]], 0.4, -1)]
    for k, (model, text, alpha, nbest) in enumerate(variants, 1):
        cached = Sampler(model, text, alpha, nbest, bpe=False, cache_dir=tmp_path)
        assert len(list(tmp_path.glob("sampling-*.npz"))) == k
        assert cached.sample(3) == Sampler(model, text, alpha, nbest, bpe=False).sample(3)


def test_a_failed_cache_write_leaves_no_file_and_only_warns(unigram: bytes, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails half-way (a full disk) leaves neither the cache file nor a temporary one."""
    def half_then_full(f: io.BufferedWriter, **arrays: np.ndarray) -> None:
        f.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")
    lines = corpus(60)
    monkeypatch.setattr(sampling.np, "savez", half_then_full)
    with caplog.at_level(logging.WARNING, logger="seq2seq.data.sampling"):
        sampler = Sampler(unigram, lines, 0.4, -1, bpe=False, cache_dir=tmp_path)
    assert "No space left on device" in caplog.text and not list(tmp_path.iterdir())
    assert sampler.sample(3) == Sampler(unigram, lines, 0.4, -1, bpe=False).sample(3)
