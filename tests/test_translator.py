"""The Translator API (seq2seq/inference/translator.py) on the small toy reverse model."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from conftest import LONG, run_translate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seq2seq.config import TranslatorConfig
from seq2seq.errors import ConfigError, Seq2SeqError
from seq2seq.inference.translator import SourceTooLong, Translator


@pytest.fixture(scope="module")
def sentences(toy_run: Path) -> list[str]:
    from seq2seq.checkpoint import checkpoint_config, load_checkpoint

    cfg = checkpoint_config(load_checkpoint(toy_run / "best.pt"))
    return (Path(cfg.data.dir) / "test.src").read_text(encoding="utf-8").splitlines()[:20]


def test_translate_learns_the_toy_task(translator: Translator) -> None:
    out = translator.translate(["a b c d", "", "q r s t"], beam_size=5)
    assert out[1] == ""
    assert out[0] == "d c b a" and out[2] == "t s r q"


def test_translate_rejects_a_bare_string(translator: Translator) -> None:
    with pytest.raises(TypeError, match=r"translate\(\) takes a list of sentences.*translate\(\[sentence\]\)\[0\]"):
        translator.translate("a b c")
    with pytest.raises(TypeError, match=r"translations\(\) takes a list"):
        translator.translations("a b c")


def test_bad_decode_override_is_a_config_error(translator: Translator) -> None:
    with pytest.raises(ConfigError, match="beam_size"):
        translator.translate(["a b"], beam_size=0)


def test_batch_size_independence(translator: Translator, sentences: list[str]) -> None:
    small = translator.translations(sentences, translator.with_decode(nbest=2))
    tiny_batches = translator.with_decode(nbest=2)
    tiny_batches.batch_tokens = 8  # one sentence per batch
    large = translator.translations(sentences, tiny_batches)
    assert [t.hypotheses for t in small] == [t.hypotheses for t in large]
    for a, b in zip(small, large, strict=True):
        assert a.scores == pytest.approx(b.scores, abs=1e-4)


def test_nbest_sorted_distinct_and_best_first(translator: Translator, sentences: list[str]) -> None:
    best = translator.translate(sentences[:10])
    nbest = translator.translations(sentences[:10], translator.with_decode(nbest=4))
    for one, t in zip(best, nbest, strict=True):
        assert 1 <= len(t.hypotheses) <= 4
        assert len(set(t.hypotheses)) == len(t.hypotheses)
        assert t.scores == sorted(t.scores, reverse=True)
        assert t.hypotheses[0] == one == t.text
        assert len(t.tgt_pieces) == len(t.attention) == len(t.hypotheses)


def test_attention_rows_match_target_pieces(translator: Translator) -> None:
    t = translator.translations(["a b c"])[0]
    attn = t.attention[0]  # (T+1, S): the last row is EOS's
    assert attn.shape == (len(t.tgt_pieces[0]) + 1, len(t.src_pieces))
    assert torch.allclose(attn.sum(1), torch.ones(attn.size(0)), atol=1e-5)


def test_long_source_is_truncated_with_a_warning(translator: Translator,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        t = translator.translations(["a b", LONG], first_line=7)
    assert [x.truncated for x in t] == [False, True]
    assert len(t[1].src_pieces) == translator.max_src_len == 30
    assert "line 8" in caplog.text and "truncated" in caplog.text


def test_unknown_long_source_policy_is_refused(toy_run: Path) -> None:
    with pytest.raises(ConfigError, match="unknown max_src_len_policy 'cut'; choose one of error, truncate"):
        Translator.from_config(TranslatorConfig(str(toy_run / "best.pt"), device="cpu", max_src_len_policy="cut"))


def test_long_source_is_an_error_by_policy(toy_run: Path) -> None:
    strict = Translator.from_config(TranslatorConfig(str(toy_run / "best.pt"), device="cpu", max_src_len=4,
                                                     max_src_len_policy="error"))
    assert strict.translate(["a b"]) == ["b a"]
    with pytest.raises(SourceTooLong, match="line 2: the source has .* limit of 4") as err:
        strict.translate(["a", "a b c d e"])
    assert isinstance(err.value, Seq2SeqError)


def test_every_head_of_multihead_attention_on_request(tmp_path: Path) -> None:
    """The heads' average is what search returned; each head is teacher-forced on request, and the CLI
    prints a table per head."""
    from conftest import train_toy

    _, run_dir = train_toy(tmp_path, "model/attention=multihead", "model.attention_heads=2", "train.max_steps=30",
                           "train.valid_every_steps=30")
    translator = Translator.from_checkpoint(run_dir / "best.pt", device="cpu")
    result = translator.translations(["a b c d e"], translator.with_decode(beam_size=3))[0]
    heads = translator.head_attention(result)  # (N, T+1, S)
    assert heads.shape == (2, *result.attention[0].shape)
    torch.testing.assert_close(heads.mean(0), result.attention[0], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(heads[0], heads[1])
    proc = run_translate(run_dir / "best.pt", b"a b c d e\n", "show_attention=true", "per_head=true")
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"head 1:" in proc.stderr and b"head 2:" in proc.stderr


ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ANY_TEXT, min_size=1, max_size=6))
def test_translator_gives_one_line_per_input_for_any_unicode(translator, lines: list[str]) -> None:
    out = translator.translate(lines, beam_size=2)
    assert len(out) == len(lines)
    pieces = translator.tokenizer.encode_src(lines)
    for source, ids, target in zip(lines, pieces, out, strict=True):
        assert "\n" not in target and "\r" not in target
        if not ids:  # nothing the model can read (e.g. only spaces): nothing to translate
            assert target == "", source


def test_translations_do_not_depend_on_input_order(translator) -> None:
    lines = ["a b c d", "t s r", "e f g h i j k", "b", "m n o p q r s t a b"]
    forward = translator.translate(lines, beam_size=3)
    backward = translator.translate(lines[::-1], beam_size=3)
    assert forward == backward[::-1]
