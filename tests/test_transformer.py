"""The Transformer (seq2seq/nn/transformer.py) and the hybrid: the key/value cache, teacher forcing against stepping,
padding, search, its attention's properties; and the new models (Transformer, hybrid, coverage) through every
command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_translate, toy_config
from torch.ao.nn.quantized import dynamic

from seq2seq.checkpoint import kept_checkpoints, save_checkpoint
from seq2seq.cli.schemas import TranslateConfig
from seq2seq.config import DecodeConfig, ModelConfig
from seq2seq.data.corpus import load_corpus
from seq2seq.errors import ConfigError
from seq2seq.inference.decoding import translate_ids
from seq2seq.inference.ensemble import Ensemble
from seq2seq.inference.forced import force_decode
from seq2seq.inference.search import beam_search, greedy_search, max_output_length
from seq2seq.inference.translator import Translator
from seq2seq.nn.model import Seq2Seq
from seq2seq.nn.transformer import TransformerAttention, TransformerDecoder, TransformerState, sinusoids
from seq2seq.training.average import average_checkpoints
from seq2seq.training.trainer import Trainer

SV, TV = 30, 40
TINY = dict(d_model=16, ffn_size=24, attention_heads=2, enc_layers=2, dec_layers=2, dropout=0.0)
KINDS = {
    "transformer-pre": dict(encoder="transformer", decoder="transformer", attention="multihead", **TINY),
    "transformer-post": dict(encoder="transformer", decoder="transformer", attention="multihead", norm="post", **TINY),
    "transformer-over-rnn": dict(decoder="transformer", attention="multihead", emb_size=12, enc_hidden=8, **TINY),
    "hybrid-bahdanau": dict(encoder="transformer", emb_size=12, dec_hidden=20, attention_size=10, **TINY),
    "hybrid-multihead": dict(encoder="transformer", attention="multihead", emb_size=12, dec_hidden=20,
                             attention_size=10, cell="lstm", **TINY),
    "hybrid-coverage": dict(encoder="transformer", coverage=True, emb_size=12, dec_hidden=20, attention_size=10,
                            **TINY),
}


def make(kind: str, seed: int = 0, vocab: tuple[int, int] = (SV, TV), **changes) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(ModelConfig(**{**KINDS[kind], **changes}), *vocab).eval()


def batch(seed: int = 1, tgt_len: int = 6):
    g = torch.Generator().manual_seed(seed)
    lens = torch.tensor([7, 4, 1])
    src = torch.randint(4, SV, (3, 7), generator=g)
    src[torch.arange(7).unsqueeze(0) >= lens.unsqueeze(1)] = 0
    tgt = torch.randint(4, TV, (3, tgt_len), generator=g)
    return src, lens, tgt


TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_teacher_forcing_equals_step_by_step(kind: str) -> None:
    model = make(kind)
    src, lens, tgt = batch()
    with torch.no_grad():
        logits, weights = model(src, lens, tgt)
        enc = model.encode(src, lens)
        state = model.init_state(enc)
        for t in range(tgt.size(1)):
            log_probs, w, state = model.decode_step(tgt[:, t], enc, state)
            torch.testing.assert_close(log_probs, logits[:, t].log_softmax(-1), **TOL)
            torch.testing.assert_close(w, weights[:, t], **TOL)


@pytest.mark.parametrize("kind", ["transformer-pre", "transformer-post"])
def test_the_key_value_cache_equals_recomputing_the_prefix(kind: str) -> None:
    """Step t with the cache of steps < t gives the logits of a fresh pass over the whole prefix, and the cache
    holds exactly the keys and values that pass computes."""
    model = make(kind)
    src, lens, tgt = batch()
    decoder = model.decoder
    assert isinstance(decoder, TransformerDecoder)
    with torch.no_grad():
        enc = model.encode(src, lens)
        state = model.init_state(enc)
        for t in range(tgt.size(1)):
            step_logits, _, state = decoder(tgt[:, t:t + 1], enc, state)  # (B, 1, V), the cache of 0..t-1
            full_logits, _, full = decoder(tgt[:, :t + 1], enc, model.init_state(enc))  # no cache
            torch.testing.assert_close(step_logits[:, 0], full_logits[:, -1], **TOL)
            assert state.keys.shape == full.keys.shape == (2, 3, 2, t + 1, 8)  # (L, B, N, t+1, d)
            torch.testing.assert_close(state.keys, full.keys, **TOL)
            torch.testing.assert_close(state.values, full.values, **TOL)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_sentence_alone_equals_inside_padded_batch(kind: str) -> None:
    model = make(kind)
    src, lens, tgt = batch()
    with torch.no_grad():
        enc = model.encode(src, lens)
        logits, weights = model(src, lens, tgt)
        for i in (1, 2):
            n = int(lens[i])
            enc1 = model.encode(src[i:i + 1, :n], lens[i:i + 1])
            logits1, weights1 = model(src[i:i + 1, :n], lens[i:i + 1], tgt[i:i + 1])
            torch.testing.assert_close(enc1.memory[0], enc.memory[i, :n], **TOL)
            torch.testing.assert_close(enc1.final[0], enc.final[i], **TOL)
            torch.testing.assert_close(logits1[0], logits[i], **TOL)
            torch.testing.assert_close(weights1[0], weights[i, :, :n], **TOL)
            assert torch.all(weights[i, :, n:] == 0)


@pytest.mark.parametrize("kind", ["transformer-pre", "transformer-post", "hybrid-coverage"])
def test_a_beam_of_one_is_greedy(kind: str) -> None:
    model = make(kind)
    src, lens, _ = batch()
    greedy = greedy_search(model, src, lens, DecodeConfig(beam_size=1, alpha=0.0))
    beam = beam_search(model, src, lens, DecodeConfig(beam_size=1, alpha=0.0))
    assert beam.tokens == greedy.tokens
    assert [s for [s] in beam.scores] == pytest.approx([s for [s] in greedy.scores], abs=1e-5)
    for a, b in zip(beam.attention, greedy.attention, strict=True):
        torch.testing.assert_close(a[0], b[0])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_batch_decodes_like_its_sentences_one_by_one(kind: str) -> None:
    """Beam search reorders the cache (TransformerState.select) and drops finished sentences with it."""
    model = make(kind)
    src, lens, _ = batch()
    decode = DecodeConfig(beam_size=3, nbest=2, max_len_b=4)
    together = beam_search(model, src, lens, decode)
    for i in range(3):
        n = int(lens[i])
        alone = beam_search(model, src[i:i + 1, :n], lens[i:i + 1], decode)
        assert alone.tokens[0] == together.tokens[i]
        assert alone.scores[0] == pytest.approx(together.scores[i], abs=1e-4)  # lists of floats


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_parameter_gets_a_gradient(kind: str) -> None:
    model = make(kind).train()
    src, lens, tgt = batch()
    logits, _ = model(src, lens, tgt)
    logits.log_softmax(-1).mean().backward()
    for name, p in model.named_parameters():
        if name.endswith("embed.weight"):
            continue  # rows of unused tokens stay zero
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_need_weights_false_gives_the_same_logits_through_the_fused_kernel() -> None:
    model = make("transformer-pre")
    src, lens, tgt = batch()
    with torch.no_grad():
        logits, weights = model(src, lens, tgt)
        fused, none = model(src, lens, tgt, need_weights=False)
        _, trained = model.train()(src, lens, tgt)  # training needs no weights unless it asks
    assert none is None and trained is None and weights is not None
    torch.testing.assert_close(fused, logits, **TOL)


def test_shared_embeddings_are_one_matrix_scaled_by_the_square_root_of_d_model() -> None:
    """Vaswani et al. (2017), sec. 3.4: source and target embeddings and the output layer share one matrix, and
    the embeddings are multiplied by sqrt(d_model)."""
    model = make("transformer-pre", vocab=(SV, SV), share_embeddings=True)
    assert model.encoder.embed.weight is model.decoder.embed.weight is model.decoder.vocab.weight
    ids = torch.tensor([[5, 6]])
    with torch.no_grad():
        expected = model.encoder.embed.weight[ids] * 16 ** 0.5 + sinusoids(torch.arange(2), 16)
        torch.testing.assert_close(model.encoder.embed(ids), expected)
    with pytest.raises(ConfigError, match="one vocabulary"):
        make("transformer-pre", share_embeddings=True)


def test_post_norm_normalises_after_the_residual_and_pre_norm_before() -> None:
    pre, post = make("transformer-pre"), make("transformer-post")
    assert pre.encoder.norm is not None and post.encoder.norm is None  # pre-norm ends with a LayerNorm
    src, lens, _ = batch()
    with torch.no_grad():
        memory = post.encode(src, lens).memory  # a LayerNorm (at identity) is the last thing on every position
    torch.testing.assert_close(memory.mean(-1), torch.zeros(3, 7), atol=1e-5, rtol=0)


def test_sinusoids_are_the_papers() -> None:
    """Sec. 3.5: PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d))."""
    table = sinusoids(torch.arange(50), 8)
    pos, i = 37, 2
    assert float(table[pos, 2 * i]) == pytest.approx(torch.sin(torch.tensor(pos / 10000 ** (2 * i / 8))).item())
    assert float(table[pos, 2 * i + 1]) == pytest.approx(torch.cos(torch.tensor(pos / 10000 ** (2 * i / 8))).item())


def test_head_weights_are_the_last_layers_heads_and_average_to_the_weights() -> None:
    model = make("transformer-pre")
    src, lens, tgt = batch()
    heads = model.head_weights(src, lens, tgt)  # (B, T, N, S)
    with torch.no_grad():
        _, weights = model(src, lens, tgt)
    assert heads.shape == (3, 6, 2, 7)
    torch.testing.assert_close(heads.mean(2), weights)
    assert not torch.allclose(heads[..., 0, :], heads[..., 1, :])


@pytest.mark.parametrize("kind", ["transformer-pre", "transformer-post", "hybrid-multihead", "hybrid-bahdanau"])
def test_every_layer_and_head_is_a_distribution_over_the_real_source(kind: str) -> None:
    """layer_weights: the decoder's cross-attention (B, N, T, S) and the encoder's self-attention (B, N, S, S) of
    every layer; each row sums to 1 over the real source positions, none on padding; the top layer's heads'
    mean is the map forward() reports."""
    model = make(kind)
    src, lens, tgt = batch()
    layout = model.attention_layout
    transformer = kind.startswith("transformer")
    heads = 2 if kind != "hybrid-bahdanau" else 1
    assert layout == (2 if transformer else 1, heads, 2, 2)
    cross, encoder = model.layer_weights(src, lens, tgt, range(layout.cross_layers), range(layout.self_layers))
    with torch.no_grad():
        _, weights = model(src, lens, tgt)
    real = torch.arange(7) < lens.unsqueeze(1)  # (B, S)
    for w in cross:
        assert w.shape == (3, heads, 6, 7)
        torch.testing.assert_close(w.sum(-1), torch.ones(3, heads, 6))
        assert torch.all(w.masked_select(~real[:, None, None, :]) == 0)
    for w in encoder:
        assert w.shape == (3, 2, 7, 7)
        torch.testing.assert_close(w.sum(-1), torch.ones(3, 2, 7))
        assert torch.all(w.masked_select(~real[:, None, None, :]) == 0)
    torch.testing.assert_close(cross[-1].mean(1), weights)
    if transformer:
        assert not torch.allclose(cross[0], cross[1])  # each layer its own
    assert not torch.allclose(encoder[0], encoder[1]) and not torch.allclose(encoder[0][:, 0], encoder[0][:, 1])


def test_transformer_state_select_reorders_every_layer() -> None:
    keys = torch.arange(2 * 3 * 4.0).view(2, 3, 1, 1, 4)
    picked = TransformerState(keys, -keys).select(torch.tensor([2, 0]))
    assert torch.equal(picked.keys, keys[:, [2, 0]]) and torch.equal(picked.values, -keys[:, [2, 0]])


# ---- the attention's own properties, as tests/test_attention.py checks the family's --------------------------

B, S, D, N = 3, 9, 16, 4
LENGTHS = torch.tensor([9, 5, 1])


def attention_setup(kv_size: int = D):
    torch.manual_seed(0)
    att = TransformerAttention(D, N, kv_size)
    memory = torch.randn(B, S, kv_size)
    x = torch.randn(B, 5, D)
    mask = (torch.arange(S).unsqueeze(0) < LENGTHS.unsqueeze(1))[:, None, None, :]  # (B, 1, 1, S)
    return att, x, memory, mask


@pytest.mark.parametrize("kv_size", [D, 12])
def test_attention_weights_are_a_distribution_over_real_positions(kv_size: int) -> None:
    att, x, memory, mask = attention_setup(kv_size)
    _, weights = att(x, *att.project_kv(memory), mask, need_weights=True)  # (B, N, T, S)
    assert weights.shape == (B, N, 5, S)
    assert torch.all(weights[~mask.expand_as(weights)] == 0.0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, N, 5))


def test_attention_fused_equals_explicit_and_ignores_padding() -> None:
    att, x, memory, mask = attention_setup()
    explicit, _ = att(x, *att.project_kv(memory), mask, need_weights=True)
    fused, none = att(x, *att.project_kv(memory), mask)
    assert none is None
    torch.testing.assert_close(fused, explicit, **TOL)
    noisy = memory.clone()
    noisy[~mask[:, 0, 0]] = torch.randn(int((~mask).sum()), D) * 100
    torch.testing.assert_close(att(x, *att.project_kv(noisy), mask)[0], fused, **TOL)


def test_attention_with_one_head_and_identity_projections_is_scaled_dot_product() -> None:
    att = TransformerAttention(D, 1, D)
    with torch.no_grad():
        for linear in (att.q, att.out):
            linear.weight.copy_(torch.eye(D))
            linear.bias.zero_()
        att.kv.weight.copy_(torch.cat([torch.eye(D), torch.eye(D)]))
        att.kv.bias.zero_()
    _, x, memory, mask = attention_setup()
    out, weights = att(x, *att.project_kv(memory), mask, need_weights=True)
    scores = (x @ memory.transpose(1, 2) / D ** 0.5).masked_fill(~mask[:, 0], float("-inf"))  # eq. (1)
    torch.testing.assert_close(weights[:, 0], scores.softmax(-1))
    torch.testing.assert_close(out, scores.softmax(-1) @ memory)


# ---- settings --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("changes", "message"), [
    (dict(attention_heads=3), r"model.attention_heads \(3\) must divide model.d_model \(16\)"),
    (dict(attention="luong_general"), "drop model/attention=luong_general, or set model.decoder=rnn"),
    (dict(norm="middle"), "unknown model.norm 'middle'; choose one of post, pre"),
    (dict(decoder="tranformer"), r"unknown decoder 'tranformer' \(model.decoder=...\); choose one of rnn, transformer"),
    (dict(coverage=True), "model.attention_window and model.coverage are for the RNN decoder"),
])
def test_bad_transformer_settings_say_what_to_do(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**{**KINDS["transformer-pre"], **changes})


def test_the_hybrids_memory_is_d_model_wide() -> None:
    with pytest.raises(ConfigError, match=r"model.dec_hidden \(512\) must equal the encoder memory size \(16 = "
                                          r"model.d_model\)"):
        ModelConfig(encoder="transformer", attention="luong_dot", d_model=16, attention_heads=2)
    assert ModelConfig(encoder="transformer", d_model=16, attention_heads=2).memory_size == 16


# ---- every command: a few toy steps of each new model, then evaluate, translate, score, average, ensemble, int8 --

RUNS = {
    "transformer": ("model=transformer", "model.d_model=32", "model.ffn_size=64", "model.enc_layers=2",
                    "model.dec_layers=2", "optim.schedule=noam", "optim.warmup_steps=2"),
    "hybrid": ("model.encoder=transformer", "model.d_model=32", "model.enc_layers=2", "model/attention=multihead"),
    "coverage": ("model.coverage=true", "optim.coverage_loss=1.0"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each new model trained 4 steps on the toy task, validated at steps 2 and 4 with both kept; one corpus and
    one SentencePiece model for all, so that they can form an ensemble."""
    tmp = tmp_path_factory.mktemp("new_models")
    out = {}
    for name, overrides in RUNS.items():
        cfg = toy_config(tmp, "train.max_steps=4", "train.valid_every_steps=2", "train.keep_checkpoints=2",
                         *overrides)
        out[name] = tmp / name
        out[name].mkdir()
        Trainer(cfg, load_corpus(cfg.data), out[name]).run()
    return out


def toy_lines(translator: Translator, n: int = 8) -> list[str]:
    data = translator.config.data
    return (Path(data.dir) / f"test.{data.src_lang}").read_text(encoding="utf-8").splitlines()[:n]


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_checkpoint_translates_scores_and_shows_its_heads(runs: dict[str, Path], name: str) -> None:
    translator = Translator.from_checkpoint(runs[name] / "best.pt", device="cpu")
    assert translator.config.model == compose_model(name)
    sources = toy_lines(translator)
    results = translator.translations(sources, DecodeConfig(beam_size=3, nbest=2, beta=0.2))
    assert len(results) == len(sources) and all(r.hypotheses for r in results)
    greedy = DecodeConfig(beam_size=1, alpha=0.0)
    src_ids, _ = translator.encode(sources)
    hyps = [h[0] for h in translate_ids(translator.model, src_ids, greedy)]
    scores = force_decode(translator.model, src_ids, [h.tokens for h in hyps], 6000)  # seq2seq-score's sums
    for ids, hyp, forced in zip(src_ids, hyps, scores, strict=True):
        if len(hyp.tokens) < int(max_output_length(torch.tensor([len(ids)]), greedy.max_len_a, greedy.max_len_b)):
            assert forced == pytest.approx(hyp.score, abs=1e-3)  # it ended in EOS: the same sum
        else:
            assert forced < hyp.score  # cut at the limit: the search's sum has no EOS, the forced one does
    heads = translator.head_attention(results[0])  # per_head=true
    assert heads.shape[0] == translator.config.model.attention_heads if name != "coverage" else heads.shape[0] == 1


@pytest.mark.parametrize("name", ["transformer", "hybrid"])
def test_a_checkpoint_shows_every_layer_and_head(runs: dict[str, Path], name: str) -> None:
    """Translator.layer_attention: per layer and head, rows summing to 1; the top layer's heads' mean is the map
    search reported (what every command shows by default); self-attention is the encoder's, S x S."""
    translator = Translator.from_checkpoint(runs[name] / "best.pt", device="cpu")
    result = translator.translations(["a b c d e"], DecodeConfig(beam_size=5, nbest=5))[0]
    n = len(result.hypotheses) - 1  # the last of the n-best
    layers = translator.layer_attention(result, n, "all", self_attention=True)
    decoder_layers = 2 if name == "transformer" else 1
    assert sorted(layers.cross) == list(range(1, decoder_layers + 1)) and sorted(layers.self_attention) == [1, 2]
    rows, s = result.attention[n].shape
    for heads in layers.cross.values():
        assert heads.shape == (4, rows, s)
        torch.testing.assert_close(heads.sum(-1), torch.ones(4, rows))
    for heads in layers.self_attention.values():
        assert heads.shape == (4, s, s) and s == len(result.src_pieces)
        torch.testing.assert_close(heads.sum(-1), torch.ones(4, s))
    torch.testing.assert_close(layers.cross[decoder_layers].mean(0), result.attention[n], rtol=1e-4, atol=1e-5)
    top = translator.layer_attention(result, n)  # attention_layer=last
    assert list(top.cross) == [decoder_layers] and top.self_attention == {}
    torch.testing.assert_close(top.cross[decoder_layers], layers.cross[decoder_layers])
    assert translator.attention_cells(result, "all", True) == sum(4 * decoder_layers * a.size(0) * s
                                                                  for a in result.attention) + 2 * 4 * s * s


def test_layers_a_model_lacks_are_config_errors(runs: dict[str, Path]) -> None:
    transformer = Translator.from_checkpoint(runs["transformer"] / "best.pt", device="cpu")
    assert transformer.attention_layers("2", True) == ([2], [2])
    with pytest.raises(ConfigError, match="attention_layer=3: the Transformer decoder's cross-attention has 2 "
                                          "layers; choose a number from 1 to 2, last"):
        transformer.attention_layers(3)
    for bad in ("first", "0", "-1"):
        with pytest.raises(ConfigError, match=f"attention_layer={bad}: choose last .*, all, or a layer number"):
            transformer.attention_layers(bad)
    with pytest.raises(ConfigError, match="attention_layer=top: choose last"):  # checked with the command line
        TranslateConfig(checkpoint="x.pt", attention_layer="top")
    hybrid = Translator.from_checkpoint(runs["hybrid"] / "best.pt", device="cpu")
    assert hybrid.attention_layers("all", True) == ([1], [1, 2])
    with pytest.raises(ConfigError, match="attention_layer=2: the RNN decoder's attention has 1 layer; choose 1,"):
        hybrid.attention_layers(2, True)
    rnn = Translator.from_checkpoint(runs["coverage"] / "best.pt", device="cpu")
    assert rnn.attention_layers("all") == ([1], [])
    with pytest.raises(ConfigError, match="self_attention=true .* this checkpoint's encoder is an RNN; leave "
                                          "self_attention unset"):
        rnn.attention_layers("last", self_attention=True)


def test_translate_and_evaluate_draw_every_layer_and_head(runs: dict[str, Path], tmp_path: Path) -> None:
    plots = tmp_path / "translate"
    out = run_translate(runs["transformer"] / "best.pt", b"a b c\n", f"attention_plots={plots}", "attention_layer=all",
                        "per_head=true", "self_attention=true", "show_attention=true")
    assert out.returncode == 0, out.stderr.decode()
    heads = ("", ".head1", ".head2", ".head3", ".head4")
    expected = ["00001.png", *(f"00001.{stack}layer{i}{h}.png" for stack in ("", "self.") for i in (1, 2)
                               for h in heads)]
    assert sorted(p.name for p in plots.iterdir()) == sorted(expected)
    assert b"\nlayer 2 head 4:\n" in out.stderr and b"\nself-attention layer 1:\n" in out.stderr
    env = {**os.environ, "PYTHONUTF8": "1"}
    evaluate = [sys.executable, "-c", "from seq2seq.cli.main import evaluate; evaluate()", "threads=2",
                f"checkpoint={runs['transformer'] / 'best.pt'}", "split=test", "decode=greedy",
                f"out={tmp_path / 'hyp'}",
                f"attention_plots={tmp_path / 'evaluate'}", "attention_plots_n=2", "attention_layer=1",
                "self_attention=true"]
    done = subprocess.run(evaluate, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "evaluate").iterdir()) == sorted(
        f"0000{n}{suffix}.png" for n in (1, 2) for suffix in ("", ".layer1", ".self.layer1"))
    evaluate[4] = f"checkpoint={runs['coverage'] / 'best.pt'}"  # an RNN encoder: refused before translating
    evaluate[7] = f"out={tmp_path / 'rnn.hyp'}"
    done = subprocess.run(evaluate, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2 and "error: self_attention=true shows a Transformer encoder's" in done.stderr
    assert not (tmp_path / "rnn.hyp").exists()
    out = run_translate(runs["coverage"] / "best.pt", b"a b c\n", "self_attention=true")  # refused before any line
    assert (out.returncode, out.stdout) == (2, b"") and b"error: self_attention=true shows" in out.stderr


def compose_model(name: str) -> ModelConfig:
    from seq2seq.cli.schemas import compose

    return compose(["experiment=toy", *RUNS[name]]).model


@pytest.mark.parametrize("name", sorted(RUNS))
def test_kept_checkpoints_average_into_a_model_that_translates(runs: dict[str, Path], name: str,
                                                              tmp_path: Path) -> None:
    kept = kept_checkpoints(runs[name])
    assert len(kept) == 2
    save_checkpoint(tmp_path / "avg.pt", average_checkpoints(kept))
    translator = Translator.from_checkpoint(tmp_path / "avg.pt", device="cpu")
    assert len(translator.translate(toy_lines(translator))) == 8


@pytest.mark.parametrize("name", sorted(RUNS))
def test_int8_quantizes_every_linear_layer(runs: dict[str, Path], name: str) -> None:
    translator = Translator.from_checkpoint(runs[name] / "best.pt", device="cpu", quantize="int8")
    kinds = {type(m) for m in translator.model.modules()}
    assert dynamic.Linear in kinds and torch.nn.Linear not in kinds
    assert len(translator.translate(toy_lines(translator))) == 8


def test_the_new_models_and_an_rnn_decode_as_one_ensemble(runs: dict[str, Path]) -> None:
    members = [runs["hybrid"] / "best.pt", runs["coverage"] / "best.pt"]
    translator = Translator.from_checkpoint(runs["transformer"] / "best.pt", device="cpu", ensemble=members)
    assert isinstance(translator.model, Ensemble) and len(translator.model.members) == 3
    results = translator.translations(toy_lines(translator), DecodeConfig(beam_size=3))
    assert all(r.hypotheses for r in results)


def test_the_commands_take_the_new_checkpoints(runs: dict[str, Path], tmp_path: Path) -> None:
    out = run_translate(runs["transformer"] / "best.pt", b"a b c\nd e f\n", "show_attention=true", "per_head=true",
                        "decode.beta=0.2")
    assert out.returncode == 0, out.stderr.decode()
    assert len(out.stdout.decode().splitlines()) == 2 and b"head 2" in out.stderr
    env = {**os.environ, "PYTHONUTF8": "1"}
    evaluate = [sys.executable, "-c", "from seq2seq.cli.main import evaluate; evaluate()", "threads=2",
                f"checkpoint={runs['hybrid'] / 'best.pt'}", "split=test", "decode=greedy", f"out={tmp_path / 'hyp'}"]
    done = subprocess.run(evaluate, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert "BLEU" in done.stdout + done.stderr and len((tmp_path / "hyp").read_text().splitlines()) == 200
    (tmp_path / "src").write_text("a b c\n", encoding="utf-8")
    (tmp_path / "ref").write_text("c b a\n", encoding="utf-8")
    score = [sys.executable, "-c", "from seq2seq.cli.main import score; score()", "threads=2",
             f"checkpoint={runs['coverage'] / 'best.pt'}", f"src={tmp_path / 'src'}", f"ref={tmp_path / 'ref'}"]
    done = subprocess.run(score, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.split("\t")) == 2
