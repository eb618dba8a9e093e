"""SentencePiece training and its cache (seq2seq/data/tokenizer.py); the log says how many pieces the corpus gave."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from conftest import toy_config

from seq2seq.data.corpus import load_corpus


def test_tokenizer_is_reused_for_the_same_data_and_settings(tmp_path: Path) -> None:
    cfg = toy_config(tmp_path)
    first = load_corpus(cfg.data).tokenizer
    models = list((tmp_path / "cache").iterdir())
    second = load_corpus(cfg.data).tokenizer
    assert list((tmp_path / "cache").iterdir()) == models and second.src_model == first.src_model
    load_corpus(toy_config(tmp_path, "data.vocab_size=30").data)
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_a_vocabulary_smaller_than_asked_is_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="seq2seq.data.tokenizer"):
        tokenizer = load_corpus(toy_config(tmp_path, "data.vocab_size=100").data).tokenizer
    assert tokenizer.src_vocab_size < 100
    assert f"vocabulary: {tokenizer.src_vocab_size} pieces, fewer than data.vocab_size=100" in caplog.text
