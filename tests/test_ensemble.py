"""Ensembles: a step model averaging its members' log-probabilities; members that do not fit are refused."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch

from seq2seq.checkpoint import load_checkpoint, load_model, save_checkpoint
from seq2seq.cli.schemas import compose
from seq2seq.config import DecodeConfig, to_dict
from seq2seq.data.tokenizer import Tokenizer, build_tokenizer
from seq2seq.errors import CheckpointError
from seq2seq.inference.decoding import translate_ids
from seq2seq.inference.ensemble import Ensemble
from seq2seq.inference.translator import Translator
from seq2seq.nn.model import Seq2Seq

BEAM = DecodeConfig(beam_size=4, nbest=4)
GREEDY = DecodeConfig(beam_size=1, alpha=0.0)


@pytest.fixture(scope="module")
def model_and_sources(toy_run: Path) -> tuple[Seq2Seq, list[list[int]]]:
    model, tokenizer, cfg = load_model(toy_run / "best.pt")
    lines = (Path(cfg.data.dir) / "test.src").read_text(encoding="utf-8").splitlines()[:40]
    return model, tokenizer.encode_src(lines)


def hypotheses(model: torch.nn.Module, sources: list[list[int]], decode: DecodeConfig) -> list[list[tuple]]:
    return [[(tuple(h.tokens), h.score) for h in hyps] for hyps in translate_ids(model, sources, decode)]


@pytest.mark.parametrize("decode", [GREEDY, BEAM], ids=["greedy", "beam"])
def test_an_ensemble_of_one_model_is_that_model(model_and_sources, decode: DecodeConfig) -> None:
    model, sources = model_and_sources
    alone = translate_ids(model, sources, decode)
    ensemble = translate_ids(Ensemble([model]), sources, decode)
    for a, e in zip(alone, ensemble, strict=True):
        assert [h.tokens for h in a] == [h.tokens for h in e]
        assert [h.score for h in a] == [h.score for h in e]
        assert all(torch.equal(x.attention, y.attention) for x, y in zip(a, e, strict=True))


@pytest.mark.parametrize("decode", [GREEDY, BEAM], ids=["greedy", "beam"])
def test_an_ensemble_of_two_copies_translates_like_the_model(model_and_sources, decode: DecodeConfig) -> None:
    model, sources = model_and_sources
    alone = translate_ids(model, sources, decode)
    pair = translate_ids(Ensemble([model, copy.deepcopy(model)]), sources, decode)
    for a, p in zip(alone, pair, strict=True):
        assert [h.tokens for h in a] == [h.tokens for h in p]
        assert [h.score for h in a] == pytest.approx([h.score for h in p], abs=1e-4)


def other_model(toy_run: Path, attention: str) -> Seq2Seq:
    """An untrained toy model with another attention (and so another decoder wiring)."""
    cfg = compose(["experiment=toy", f"model/attention={attention}"])
    _, tokenizer, _ = load_model(toy_run / "best.pt")
    torch.manual_seed(0)
    return Seq2Seq(cfg.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size).eval()


def test_members_of_different_architectures_average_their_log_probs(model_and_sources, toy_run: Path) -> None:
    model, sources = model_and_sources
    luong = other_model(toy_run, "luong_general")
    ensemble = Ensemble([model, luong])
    src = torch.tensor([sources[0], sources[1][: len(sources[0])]])  # (2, S), no padding
    lens = torch.tensor([src.size(1)] * 2)
    prev = torch.tensor([2, 2])  # BOS
    with torch.inference_mode():
        log_probs, attention, _ = ensemble.decode_step(prev, ensemble.encode(src, lens),
                                                       ensemble.init_state(ensemble.encode(src, lens)))
        steps = [m.decode_step(prev, m.encode(src, lens), m.init_state(m.encode(src, lens))) for m in (model, luong)]
    expected = torch.stack([steps[0][0], steps[1][0]]).mean(0).log_softmax(-1)
    torch.testing.assert_close(log_probs, expected)
    assert not torch.allclose(log_probs, steps[0][0], atol=1e-3)  # the second member does count
    assert torch.equal(attention, steps[0][1])  # the first member's attention
    assert log_probs.exp().sum(-1) == pytest.approx([1.0, 1.0], abs=1e-5)
    results = translate_ids(ensemble, sources[:5], BEAM)  # search runs over mixed members
    assert all(len(hyps) == BEAM.nbest for hyps in results)


def save_member(path: Path, toy_run: Path, tokenizer: Tokenizer | None = None, **data: str) -> Path:
    """A checkpoint of an untrained toy model with ``tokenizer`` (default the toy run's) and data settings."""
    payload = load_checkpoint(toy_run / "best.pt")
    cfg = dataclasses.replace(compose(["experiment=toy"]), data=dataclasses.replace(
        compose(["experiment=toy"]).data, **data))
    tok = tokenizer or Tokenizer(bytes(payload["tokenizer"]["src"]))
    model = Seq2Seq(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size)
    save_checkpoint(path, {"config": to_dict(cfg), "model": model.state_dict(), "progress": payload["progress"],
                           "tokenizer": tok.stored(),
                           "pair": [cfg.data.src_lang, cfg.data.tgt_lang]})
    return path


def test_members_with_other_segmentation_vocabulary_or_pair_are_refused(toy_run: Path, tmp_path: Path) -> None:
    best = toy_run / "best.pt"
    fine = save_member(tmp_path / "fine.pt", toy_run)
    Translator.from_checkpoint(best, device="cpu", ensemble=[fine])  # same tokenizer, other weights: accepted
    lines = ["a b c d e", "f g h i j", "k l m n o p q r s t u v w x y z"] * 20
    data = compose(["experiment=toy", f"data.cache_dir={tmp_path / 'cache'}", "data.spm_type=bpe"]).data
    bpe = build_tokenizer(data, lines, lines)
    save_member(tmp_path / "bpe.pt", toy_run, bpe)
    with pytest.raises(CheckpointError, match=r"bpe\.pt does not fit .*best\.pt: its source vocabulary "
                                              r"\(SentencePiece model\) differs"):
        Translator.from_checkpoint(best, device="cpu", ensemble=[fine, tmp_path / "bpe.pt"])
    toy = Tokenizer(bytes(load_checkpoint(best)["tokenizer"]["src"]))
    save_member(tmp_path / "tgt.pt", toy_run, Tokenizer(toy.src_model, bpe.src_model))
    with pytest.raises(CheckpointError, match=r"tgt\.pt does not fit .*: its target vocabulary"):
        Translator.from_checkpoint(best, device="cpu", ensemble=[tmp_path / "tgt.pt"])
    save_member(tmp_path / "pair.pt", toy_run, tgt_lang="xx")
    with pytest.raises(CheckpointError, match=r"pair\.pt does not fit .*best\.pt: it translates src-xx, not src-tgt"):
        Translator.from_checkpoint(best, device="cpu", ensemble=[tmp_path / "pair.pt"])


def test_per_head_maps_of_an_ensemble_are_its_first_members(tmp_path: Path) -> None:
    """per_head=true with ensemble=[...] shows the first member's heads (it used to fail with an AttributeError,
    after the whole split was translated)."""
    from conftest import train_toy

    _, run_dir = train_toy(tmp_path, "model/attention=multihead", "model.attention_heads=2", "train.max_steps=3")
    alone = Translator.from_checkpoint(run_dir / "best.pt", device="cpu")
    both = Translator.from_checkpoint(run_dir / "best.pt", device="cpu", ensemble=[run_dir / "last.pt"])
    result = both.translations(["a b c"])[0]
    heads = both.head_attention(result)
    assert heads.shape[0] == 2 and heads.shape[-1] == len(result.src_pieces)
    torch.testing.assert_close(heads, alone.head_attention(result))
