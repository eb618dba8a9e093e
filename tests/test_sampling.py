"""Subword regularization (seq2seq/data/sampling.py): SentencePiece's lattice and distribution, with draws
that depend on (seed, sentence) alone, in every process."""

from __future__ import annotations

import collections
import io
import random
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece as spm

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
