"""SentencePiece training and its cache (seq2seq/tokenizer.py)."""

from __future__ import annotations

from pathlib import Path

from conftest import toy_config


def test_tokenizer_is_reused_for_the_same_data_and_settings(tmp_path: Path) -> None:
    from seq2seq.data import load_corpus

    cfg = toy_config(tmp_path)
    first = load_corpus(cfg.data).tokenizer
    models = list((tmp_path / "cache").iterdir())
    second = load_corpus(cfg.data).tokenizer
    assert list((tmp_path / "cache").iterdir()) == models and second.src_model == first.src_model
    load_corpus(toy_config(tmp_path, "data.vocab_size=30").data)
    assert len(list((tmp_path / "cache").iterdir())) == 2
