"""Translator API and seq2seq-translate (piped, as a subprocess) on the small toy reverse model."""

from __future__ import annotations

import logging
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import IO, NamedTuple

import pytest
import torch

from seq2seq.config import DecodeConfig
from seq2seq.decoding import one_line
from seq2seq.errors import ConfigError, Seq2SeqError
from seq2seq.plot import format_attention, save_heatmap
from seq2seq.search import search
from seq2seq.translator import SourceTooLong, Translator
from seq2seq.vocab import BOS, PAD

TRANSLATE = "from seq2seq.cli import translate; translate()"
LONG = " ".join("abcdefghij"[i % 10] for i in range(3000))  # far beyond data.max_len = 30 subwords


def run_translate(checkpoint: Path, data: bytes, *overrides: str) -> subprocess.CompletedProcess[bytes]:
    cmd = [sys.executable, "-c", TRANSLATE, f"checkpoint={checkpoint}", "threads=2", *overrides]
    env = {**os.environ, "PYTHONUTF8": "1"}
    return subprocess.run(cmd, input=data, capture_output=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def translator(toy_run: Path) -> Translator:
    return Translator.from_checkpoint(toy_run / "best.pt", device="cpu")


@pytest.fixture(scope="module")
def sentences(toy_run: Path) -> list[str]:
    from seq2seq.checkpoint import checkpoint_config, load_checkpoint

    cfg = checkpoint_config(load_checkpoint(toy_run / "best.pt"))
    return (Path(cfg.data.dir) / "test.src").read_text(encoding="utf-8").splitlines()[:20]


# ---- the Python API ------------------------------------------------------------------------------


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
    with pytest.raises(ConfigError, match="unknown max_src_len_policy 'cut'; choose one of truncate, error"):
        Translator.from_checkpoint(toy_run / "best.pt", device="cpu", max_src_len_policy="cut")


def test_long_source_is_an_error_by_policy(toy_run: Path) -> None:
    strict = Translator.from_checkpoint(toy_run / "best.pt", device="cpu", max_src_len=4,
                                        max_src_len_policy="error")
    assert strict.translate(["a b"]) == ["b a"]
    with pytest.raises(SourceTooLong, match="line 2: the source has .* limit of 4") as err:
        strict.translate(["a", "a b c d e"])
    assert isinstance(err.value, Seq2SeqError)


def test_one_line_removes_every_line_break() -> None:
    text = one_line("a\nb\rc\x0bd\x0ce\x1cf\x85g\u2028h\u2029i")
    assert text.splitlines() == [text] and "\n" not in text


class _Mask(NamedTuple):
    mask: torch.Tensor  # (B, S) encoder output: only the mask; also serves as the (empty) decoder state

    def select(self, idx: torch.Tensor) -> _Mask:
        return _Mask(self.mask.index_select(0, idx))


class _PadLover:
    """Prefers PAD, then BOS, then EOS, whatever came before."""

    vocab_size = 6

    def encode(self, src: torch.Tensor, src_lens: torch.Tensor) -> _Mask:
        return _Mask(torch.arange(src.size(1)) < src_lens.unsqueeze(1))

    def init_state(self, enc: _Mask) -> _Mask:
        return enc

    def decode_step(self, prev: torch.Tensor, enc: _Mask,
                    state: _Mask) -> tuple[torch.Tensor, torch.Tensor, _Mask]:
        logits = torch.tensor([5.0, 0.0, 4.0, 3.0, 1.0, 1.0]).repeat(prev.size(0), 1)  # (N, V)
        attn = enc.mask.float() / enc.mask.sum(1, keepdim=True)  # (N, S)
        return logits.log_softmax(-1), attn, state


def test_search_never_emits_pad_or_bos() -> None:
    src, lens = torch.tensor([[4, 5, 4]]), torch.tensor([3])
    for decode in (DecodeConfig(beam_size=1), DecodeConfig(beam_size=2, nbest=2)):
        out = search(_PadLover(), src, lens, decode)  # type: ignore[arg-type]
        for tokens in out.tokens[0]:
            assert PAD not in tokens and BOS not in tokens
        assert out.tokens[0][0] == []  # EOS at once


# ---- attention as text and picture ---------------------------------------------------------------


def test_format_attention_table() -> None:
    attn = torch.tensor([[0.1, 0.9], [0.75, 0.25], [0.5, 0.5]])  # (T+1, S)
    table = format_attention(["▁x", "東京"], ["▁y", "z"], attn).splitlines()
    assert table[0].split() == ["▁x", "東京"]
    assert table[1].split() == ["▁y", "10", "90"]
    assert table[2].split() == ["z", "75", "25"]
    assert table[3].split() == ["</s>", "50", "50"]


def test_save_heatmap_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "a.png"
    save_heatmap(path, ["▁a", "$x$"], ["▁b"], torch.tensor([[0.3, 0.7], [0.5, 0.5]]), title="a $x$")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- seq2seq-translate through a pipe ------------------------------------------------------------


def test_piped_one_line_out_per_line_in(toy_run: Path, translator: Translator) -> None:
    lines = ["a b c", "", "größer 東京 😀 ñ", "a\tb\x00c \x1b[31m d", "x\ry", "\x0b\x0c\u2028 e", "   ",
             LONG, "k l m n o p"]
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    data += b"q \xff r\r\n" + b"s t"  # bad UTF-8, a CRLF ending, no final newline
    proc = run_translate(toy_run / "best.pt", data)
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode("utf-8").split("\n")
    assert out[-1] == "" and len(out) - 1 == len(lines) + 2  # one line per input line, every one ended
    expected = translator.translate([*lines, "q \ufffd r", "s t"])
    assert out[:-1] == expected
    assert out[1] == "" and out[6] == ""  # empty and blank inputs get empty lines
    assert "truncated" in proc.stderr.decode()


def test_piped_answers_each_line_before_the_next(toy_run: Path, tmp_path: Path,
                                                 translator: Translator) -> None:
    """A coprocess: each answer arrives while stdin stays open; attention goes to stderr and PNGs."""
    cmd = [sys.executable, "-c", TRANSLATE, f"checkpoint={toy_run / 'best.pt'}", "threads=2",
           "show_attention=true", f"attention_plots={tmp_path / 'plots'}"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUTF8": "1"})
    try:
        answers = []
        for line in ("a b c", "d e f g"):
            proc.stdin.write(line.encode() + b"\n")
            proc.stdin.flush()
            answers.append(_read_line(proc.stdout, timeout=120))
        proc.stdin.close()
        rest = proc.stdout.read()
        stderr = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 0, stderr
    finally:
        proc.kill()
    assert answers == [t + "\n" for t in translator.translate(["a b c", "d e f g"])]
    assert rest == b""  # nothing else on stdout
    pieces = translator.translations(["d e f g"])[0].src_pieces
    assert pieces in [row.split() for row in stderr.splitlines()]  # the attention table's header
    assert "</s>" in stderr
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["00001.png", "00002.png"]


def _read_line(stream: IO[bytes], timeout: float) -> str:
    data = b""
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([stream], [], [], timeout)
        assert ready, f"no answer within {timeout} s (got {data!r})"
        chunk = os.read(stream.fileno(), 1)
        assert chunk, f"stdout closed early (got {data!r})"
        data += chunk
    return data.decode("utf-8")


def test_piped_nbest_blocks(toy_run: Path, translator: Translator) -> None:
    lines = ["a b c d", "", "e f g h i"]
    proc = run_translate(toy_run / "best.pt", "".join(x + "\n" for x in lines).encode(), "decode.nbest=3")
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    assert out.endswith("\n\n")
    blocks: list[list[str]] = [[]]
    for row in out[:-1].split("\n"):  # a block per input, each ended by an empty line
        if row:
            blocks[-1].append(row)
        else:
            blocks.append([])
    assert len(blocks) - 1 == len(lines) and blocks[-1] == []
    best = translator.translate(lines)
    assert blocks[1] == []  # an empty input has no candidates
    for block, first in zip((blocks[0], blocks[2]), (best[0], best[2]), strict=True):
        rows = [row.split("\t") for row in block]
        assert 1 <= len(rows) <= 3 and all(len(r) == 2 for r in rows)
        scores, texts = [float(r[0]) for r in rows], [r[1] for r in rows]
        assert scores == sorted(scores, reverse=True) and len(set(texts)) == len(texts)
        assert texts[0] == first


def test_piped_long_source_error_policy_stops_with_status_2(toy_run: Path) -> None:
    proc = run_translate(toy_run / "best.pt", f"a b\n{LONG}\nc d\n".encode(), "max_src_len_policy=error")
    assert proc.returncode == 2
    assert proc.stdout.decode() == "b a\n"
    assert proc.stderr.decode().strip().splitlines()[-1].startswith("error: line 2: the source has")


def test_translate_without_checkpoint_says_what_to_pass() -> None:
    proc = subprocess.run([sys.executable, "-c", TRANSLATE], input=b"", capture_output=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == b""
    assert b"error: no checkpoint given: pass checkpoint=" in proc.stderr
