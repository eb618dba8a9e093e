"""Properties every registered attention must have, written once and run over the registry."""

from __future__ import annotations

import pytest
import torch

from seq2seq.errors import ConfigError
from seq2seq.nn.attention import build_attention
from seq2seq.registry import ATTENTIONS, variant

B, S, HQ, HM, A = 3, 9, 16, 16, 12
LENGTHS = torch.tensor([9, 5, 1])
SCORED = sorted(name for name, v in ATTENTIONS.items() if v.score_class is not None)
LUONG = [name for name in SCORED if ATTENTIONS[name].wiring == "luong"]  # local-p applies to these
VARIANTS = [(name, None) for name in SCORED] + [(name, 2) for name in LUONG]
IDS = [f"{n}-local{w}" if w else n for n, w in VARIANTS]


def setup(name: str, window: int | None, seed: int = 0):
    torch.manual_seed(seed)
    att = build_attention(name, HQ, HM, A, window, heads=3)  # heads: multihead only
    memory = torch.randn(B, S, HM)
    mask = torch.arange(S).unsqueeze(0) < LENGTHS.unsqueeze(1)  # (B, S)
    query = torch.randn(B, HQ)
    return att, query, memory, mask


def run(att, query, memory, mask):
    return att(query, att.project_keys(memory), memory, mask)


@pytest.mark.parametrize(("name", "window"), VARIANTS, ids=IDS)
def test_weights_are_a_distribution_over_real_positions(name: str, window: int | None) -> None:
    att, query, memory, mask = setup(name, window)
    _, weights = run(att, query, memory, mask)
    assert weights.shape == (B, S)
    assert torch.all(weights[~mask] == 0.0)  # padding gets exactly zero
    assert torch.all(weights >= 0)
    sums = weights.sum(-1)
    if window is None:
        torch.testing.assert_close(sums, torch.ones(B))
    else:  # Luong eq. (10) multiplies the softmax by a Gaussian <= 1, so local weights sum to at most 1
        assert torch.all(sums <= 1 + 1e-6) and torch.all(sums > 0)


@pytest.mark.parametrize(("name", "window"), VARIANTS, ids=IDS)
def test_padded_memory_does_not_change_the_context(name: str, window: int | None) -> None:
    att, query, memory, mask = setup(name, window)
    context, weights = run(att, query, memory, mask)
    noisy = memory.clone()
    noisy[~mask] = torch.randn(int((~mask).sum()), HM) * 100
    context2, weights2 = run(att, query, noisy, mask)
    torch.testing.assert_close(context, context2)
    torch.testing.assert_close(weights, weights2)


@pytest.mark.parametrize(("name", "window"), VARIANTS, ids=IDS)
def test_single_sentence_equals_inside_padded_batch(name: str, window: int | None) -> None:
    att, query, memory, mask = setup(name, window)
    context, weights = run(att, query, memory, mask)
    n = int(LENGTHS[1])
    alone_c, alone_w = run(att, query[1:2], memory[1:2, :n], mask[1:2, :n])
    torch.testing.assert_close(alone_c[0], context[1])
    torch.testing.assert_close(alone_w[0], weights[1, :n])


@pytest.mark.parametrize(("name", "window"), VARIANTS, ids=IDS)
def test_every_parameter_gets_a_gradient(name: str, window: int | None) -> None:
    att, query, memory, mask = setup(name, window)
    context, _ = run(att, query, memory.requires_grad_(), mask)
    context.sum().backward()
    for pname, p in att.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname
    assert memory.grad is not None


@pytest.mark.parametrize("name", LUONG)
def test_local_weights_vanish_far_from_the_predicted_position(name: str) -> None:
    torch.manual_seed(0)
    s, window = 40, 3
    att = build_attention(name, HQ, HM, A, window)
    memory, query = torch.randn(2, s, HM), torch.randn(2, HQ)
    mask = torch.ones(2, s, dtype=torch.bool)
    _, weights = att(query, att.project_keys(memory), memory, mask)
    p = s * torch.sigmoid(att.v_p(torch.tanh(att.w_p(query))))  # (2, 1) Luong eq. (9)
    distance = (torch.arange(s).unsqueeze(0) - p).abs()
    assert torch.all(weights[distance > window] == 0)
    assert torch.all(weights[distance <= 1] > 0)


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"unknown attention 'bahdanu' \(model/attention=...\); choose one of "
                                          "bahdanau, luong_concat"):
        variant("bahdanu")


def test_scaled_dot_is_the_dot_score_over_the_square_root_of_the_size() -> None:
    """Vaswani et al. (2017), eq. (1): the same weights as h_t . h_s at temperature sqrt(d)."""
    dot, scaled = build_attention("luong_dot", HM, HM, A), build_attention("scaled_dot", HM, HM, A)
    _, query, memory, mask = setup("luong_dot", None)
    _, expected = run(dot, query / HM**0.5, memory, mask)
    _, weights = run(scaled, query, memory, mask)
    torch.testing.assert_close(weights, expected)


def test_one_head_with_identity_projections_is_scaled_dot_attention() -> None:
    att = build_attention("multihead", HM, HM, HM, heads=1)
    with torch.no_grad():
        att.w_q.weight.copy_(torch.eye(HM))
        att.w_kv.weight.copy_(torch.cat([torch.eye(HM), torch.eye(HM)]))
        att.w_o.weight.copy_(torch.eye(HM))
    _, query, memory, mask = setup("scaled_dot", None)
    expected = run(build_attention("scaled_dot", HM, HM, A), query, memory, mask)
    for got, want in zip(run(att, query, memory, mask), expected, strict=True):
        torch.testing.assert_close(got, want)


def test_every_head_is_a_distribution_and_the_weights_are_their_average() -> None:
    att, query, memory, mask = setup("multihead", None)
    heads = att.head_weights(query, att.project_keys(memory), mask)  # (B, N, S)
    assert heads.shape == (B, 3, S)
    torch.testing.assert_close(heads.sum(-1), torch.ones(B, 3))
    assert torch.all(heads[~mask.unsqueeze(1).expand_as(heads)] == 0)
    assert not torch.allclose(heads[:, 0], heads[:, 1])  # the heads attend differently
    torch.testing.assert_close(run(att, query, memory, mask)[1], heads.mean(1))


def test_multihead_keys_and_values_are_projected_once_per_batch() -> None:
    """project_keys holds K W^K and V W^V: the per-step work is the query's projection alone."""
    att, query, memory, mask = setup("multihead", None)
    keys = att.project_keys(memory)
    assert keys.shape == (B, S, 2 * A)
    calls = []
    att.w_kv.register_forward_hook(lambda *_: calls.append(1))
    att(query, keys, memory, mask)
    assert not calls


def test_heads_must_divide_the_attention_size() -> None:
    from seq2seq.config import ModelConfig

    with pytest.raises(ConfigError, match=r"model.attention_heads \(3\) must divide model.attention_size \(64\)"):
        ModelConfig(attention="multihead", attention_size=64, attention_heads=3)
    ModelConfig(attention="multihead", attention_size=64, attention_heads=8)


def test_the_registry_names_a_score_class_for_every_attention_but_none() -> None:
    from seq2seq.nn.attention import SCORES

    assert {v.score_class for v in ATTENTIONS.values()} - {None} == set(SCORES)
    assert ATTENTIONS["none"].score_class is None
    assert [n for n, v in ATTENTIONS.items() if (v.cost is None) != (v.score_class is None)] == []  # its FLOPs


def test_local_p_keeps_its_positions_in_float32_under_bfloat16() -> None:
    """p_t (Luong eq. 9) in bfloat16 would move in steps of 1/4 to 1/2 a position on a 100-subword source."""
    from seq2seq.nn.attention import build_attention

    torch.manual_seed(0)
    attention = build_attention("luong_general", 32, 32, 32, window=8)
    query, mask = torch.randn(16, 32), torch.ones(16, 100, dtype=torch.bool)
    exact_inside, exact = attention._local_window(query, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside, gaussian = attention._local_window(query, mask)
    assert torch.equal(inside, exact_inside)
    assert (gaussian.float() - exact).abs().max() < 0.01  # bfloat16 rounding of the result only


# ---- coverage (Tu et al. 2016): the additive score reads C_{i-1,j} ---------------------------------------------

COVERED = sorted(name for name in SCORED if ATTENTIONS[name].coverage)


def covered_run(name: str, coverage: torch.Tensor, seed: int = 0):
    att, query, memory, mask = setup(name, None, seed)
    covered = build_attention(name, HQ, HM, A, coverage=True)
    covered.load_state_dict(att.state_dict(), strict=False)  # the same weights, plus V_a of the coverage
    return covered, covered(query, covered.cover(covered.project_keys(memory), coverage), memory, mask), mask


@pytest.mark.parametrize("name", COVERED)
def test_covered_weights_are_a_distribution_over_real_positions(name: str) -> None:
    coverage = torch.rand(B, S) * 2
    _, (_, weights), mask = covered_run(name, coverage)
    assert torch.all(weights[~mask] == 0.0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B))


@pytest.mark.parametrize("name", COVERED)
def test_coverage_changes_the_weights(name: str) -> None:
    """e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j + V_a C_{i-1,j}): other coverage, other weights; zero coverage,
    the plain score's weights."""
    att, query, memory, mask = setup(name, None)
    _, plain = run(att, query, memory, mask)
    _, (_, uncovered), _ = covered_run(name, torch.zeros(B, S))
    torch.testing.assert_close(uncovered, plain)
    coverage = torch.zeros(B, S)
    coverage[:, 0] = 3.0  # the first word has had its attention
    _, (_, covered), _ = covered_run(name, coverage)
    assert not torch.allclose(covered[:2], plain[:2], atol=1e-3)  # the third sentence has one word: weight 1
    torch.testing.assert_close(covered[2], plain[2])


def test_coverage_is_refused_for_a_score_without_it() -> None:
    from seq2seq.config import ModelConfig

    with pytest.raises(ConfigError, match="model.coverage enters an additive score; 'luong_general' takes none: "
                                          "use model/attention=bahdanau"):
        ModelConfig(attention="luong_general", coverage=True)
