"""Force-decode scoring: a target's log-probability equals the search's score of the same output."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq.config import DecodeConfig
from seq2seq.inference.decoding import translate_ids
from seq2seq.inference.ensemble import Ensemble
from seq2seq.inference.forced import force_decode, score_pairs
from seq2seq.inference.translator import Translator

SCORE = "from seq2seq.cli.main import score; score()"
BEAM = DecodeConfig(beam_size=5, alpha=0.0, nbest=5)  # unpenalised: the score is the log-prob sum


@pytest.fixture(scope="module")
def translator(toy_run: Path) -> Translator:
    return Translator.from_checkpoint(toy_run / "best.pt", device="cpu")


@pytest.fixture(scope="module")
def sources(translator: Translator) -> list[str]:
    data = translator.config.data
    return (Path(data.dir) / f"test.{data.src_lang}").read_text(encoding="utf-8").splitlines()[:40]


@pytest.mark.parametrize("decode", [BEAM, DecodeConfig(beam_size=1, alpha=0.0)], ids=["beam", "greedy"])
@pytest.mark.parametrize("members", [1, 2], ids=["model", "ensemble"])
def test_score_equals_the_search_score_of_its_own_output(translator: Translator, sources: list[str],
                                                         decode: DecodeConfig, members: int) -> None:
    model = translator.model if members == 1 else Ensemble([translator.model, copy.deepcopy(translator.model)])
    src_ids, _ = translator.encode(sources)
    pairs = [(src, hyp) for src, hyps in zip(src_ids, translate_ids(model, src_ids, decode), strict=True)
             for hyp in hyps if hyp.attention.size(0) == len(hyp.tokens) + 1]  # ended in EOS
    assert len(pairs) >= 0.9 * len(sources) * decode.nbest  # nearly all hypotheses end in EOS
    scores = force_decode(model, [s for s, _ in pairs], [h.tokens for _, h in pairs], batch_tokens=300)
    assert scores == pytest.approx([h.score for _, h in pairs], abs=1e-4)


def test_a_correct_translation_scores_higher_than_a_wrong_one(translator: Translator, sources: list[str]) -> None:
    right = [" ".join(reversed(s.split())) for s in sources]  # the toy task reverses
    wrong = [" ".join(s.split()) for s in sources]
    good, bad = (score_pairs(translator, sources, t, batch_tokens=500) for t in (right, wrong))
    palindromes = sum(r == w for r, w in zip(right, wrong, strict=True))
    assert sum(g.logprob > b.logprob for g, b in zip(good, bad, strict=True)) >= len(sources) - palindromes
    assert all(s.per_token == pytest.approx(s.logprob / s.tokens) for s in good)
    assert [s.tokens for s in good] == [len(ids) + 1 for ids in translator.tokenizer.encode_tgt(right)]


def test_cli_prints_one_line_per_pair_in_order(toy_run: Path, translator: Translator, sources: list[str],
                                               tmp_path: Path) -> None:
    targets = translator.translate(sources[:10])
    sources = [*sources[:10], ""]  # an empty source scores -inf
    targets = [*targets, "a"]
    (tmp_path / "cand.src").write_text("\n".join(sources) + "\n", encoding="utf-8")
    (tmp_path / "cand.tgt").write_text("\n".join(targets) + "\n", encoding="utf-8")
    env = {**os.environ, "PYTHONUTF8": "1"}
    proc = subprocess.run([sys.executable, "-c", SCORE, f"checkpoint={toy_run / 'best.pt'}", "threads=2",
                           f"src={tmp_path / 'cand.src'}", f"ref={tmp_path / 'cand.tgt'}"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = [line.split("\t") for line in proc.stdout.splitlines()]
    expected = score_pairs(translator, sources, targets, batch_tokens=6000)
    assert [float(total) for total, _ in lines] == pytest.approx([s.logprob for s in expected], abs=1e-5)
    assert [float(per) for _, per in lines] == pytest.approx([s.per_token for s in expected], abs=1e-5)
    assert lines[-1] == ["-inf", "-inf"]
    (tmp_path / "short.tgt").write_text("a\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", SCORE, f"checkpoint={toy_run / 'best.pt'}",
                           f"src={tmp_path / 'cand.src'}", f"ref={tmp_path / 'short.tgt'}"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2
    assert "short.tgt has 1; line n of the second must translate line n of the first" in proc.stderr
