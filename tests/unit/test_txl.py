"""Transformer-XL: relative attention against a plain O(n^2) reference, memory semantics, cached evaluation
against the explicit long-context computation, adaptive softmax, and the original code's parameter counts.
The tests of this file that train or start a process: tests/integration/test_txl.py."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from runner.build import preset_config
from runner.data.tokenizer import SpecialIds
from runner.objectives.long_context import cached_nll, explicit_nll, sliding_nll
from runner.models.adaptive import AdaptiveSoftmax
from runner.models.config import EncoderConfig
from runner.models.txl import TXLConfig, TransformerXL, causal_mask, sinusoid
from runner.objectives.clm import CausalLM


SPECIALS = SpecialIds(pad=0, unk=1, cls=2, sep=2, mask=3, num_special=4)


def tiny(**kw) -> EncoderConfig:
    base = dict(name="t", family="txl", vocab_size=50, hidden_size=16, num_layers=2, num_heads=2,
                intermediate_size=32, hidden_dropout=0.0, attention_dropout=0.0, layer_norm_eps=1e-5, mem_len=8,
                tokenizer="word", activation="relu")
    return TXLConfig(**{**base, **kw})


def model_and_objective(**kw) -> tuple[TransformerXL, CausalLM]:
    torch.manual_seed(0)
    c = tiny(**kw)
    m, o = TransformerXL(c).double().eval(), CausalLM.create(c, SPECIALS, c.vocab_size).double().eval()
    return m, o


def reference_attention(att, x, mem, u, v, clamp_len=None, two_way=False):
    """Section 3.3's score computed term by term for every (i, j): no rel-shift, no einsum over blocks. two_way:
    every key, with negative distances for keys after the query (XLNet's bidirectional relative attention)."""
    B, T, H = x.shape
    n, d = att.heads, att.head_dim
    ctx = torch.cat([mem, x], 1) if mem is not None else x
    M, K = ctx.shape[1] - T, ctx.shape[1]
    w = att.qkv.weight
    q = (x @ w[:n * d].T).view(B, T, n, d)
    k = (ctx @ w[n * d:2 * n * d].T).view(B, K, n, d)
    val = (ctx @ w[2 * n * d:].T).view(B, K, n, d)
    out = torch.zeros(B, T, n, d, dtype=x.dtype)
    for b in range(B):
        for h in range(n):
            for i in range(T):
                scores = torch.full((K,), float("-inf"), dtype=x.dtype)
                for j in range(K if two_way else M + i + 1):  # causal: keys up to the query's own position M + i
                    dist = M + i - j
                    if clamp_len is not None:
                        dist = max(min(dist, clamp_len), -clamp_len)
                    r = att.r_net(sinusoid(torch.tensor([float(dist)]), H).to(x.dtype)).view(n, d)[h]
                    scores[j] = ((q[b, i, h] + u[h]) @ k[b, j, h] + (q[b, i, h] + v[h]) @ r) * att.scale
                out[b, i, h] = scores.softmax(0) @ val[b, :, h]
    y = att.out(out.reshape(B, T, n * d))
    return att.norm(x + y)


@pytest.mark.parametrize("two_way", [False, True])
@pytest.mark.parametrize("mem_len,clamp", [(0, None), (5, None), (5, 3)])
def test_relative_attention_matches_the_quadratic_reference(mem_len, clamp, two_way):
    m, _ = model_and_objective()
    att = m.layers[0].attention
    torch.manual_seed(1)
    x = torch.randn(2, 4, 16, dtype=torch.double)
    mem = torch.randn(2, mem_len, 16, dtype=torch.double) if mem_len else None
    K = mem_len + 4
    dist = torch.arange(K - 1, -4 if two_way else -1, -1.0)  # two-way: down to -(T-1)
    if clamp is not None:
        dist = dist.clamp(min=-clamp, max=clamp)
    mask = torch.zeros(4, K, dtype=torch.bool) if two_way else causal_mask(4, mem_len, x.device)
    ours = att(x, mem, sinusoid(dist, 16).double(), m.r_w_bias, m.r_r_bias, mask)
    ref = reference_attention(att, x, mem, m.r_w_bias, m.r_r_bias, clamp, two_way)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)


def test_bidirectional_model_sees_later_tokens_and_its_memory():
    torch.manual_seed(0)
    m = TransformerXL(tiny(bidirectional=True)).double().eval()
    causal = TransformerXL(tiny()).double().eval()
    causal.load_state_dict(m.state_dict())
    x = torch.randint(4, 50, (1, 6))
    y = x.clone()
    y[0, 5] = 4 if int(x[0, 5]) != 4 else 5  # only the last token differs
    for model, first_changes in ((m, True), (causal, False)):
        hx, _ = model(x)
        hy, _ = model(y)
        assert torch.allclose(hx[0, 0], hy[0, 0]) != first_changes
    _, mem = m(x)
    with_mem, _ = m(y, mem)
    assert not torch.allclose(with_mem, m(y)[0])


def test_cached_evaluation_equals_the_explicit_long_context_computation():
    m, o = model_and_objective()
    rows = torch.randint(4, 50, (3, 41))
    for tgt_len, mem_len in [(8, 8), (8, 5), (5, 12), (10, 0)]:
        cached = cached_nll(m, o, rows, tgt_len, mem_len)
        explicit = explicit_nll(m, o, rows, tgt_len, mem_len)
        assert (cached.sum() - explicit.sum()).abs() <= 1e-5
        torch.testing.assert_close(cached, explicit, rtol=0, atol=1e-9)
    # a memory at least as long as the row: exactly the full causal context, one forward over everything
    full, _ = m(rows[:, :-1], None, mem_len=0)
    torch.testing.assert_close(cached_nll(m, o, rows, 8, 64), o.token_nll(m, full, rows[:, 1:]), rtol=0, atol=1e-9)


def test_memory_changes_predictions_and_carries_no_gradient():
    m, o = model_and_objective()
    m.train()
    x1, x2 = torch.randint(4, 50, (2, 6)), torch.randint(4, 50, (2, 6))
    _, mem = m(x1)
    assert len(mem) == 2 and mem[0].shape == (2, 6, 16) and not mem[0].requires_grad
    with_mem, mem2 = m(x2, mem)
    alone, _ = m(x2)
    assert not torch.allclose(with_mem, alone)
    assert mem2[0].shape == (2, 8, 16)  # the last mem_len = 8 of 6 + 6 positions
    torch.testing.assert_close(mem2[0][:, :2], mem[0][:, 4:])


def test_sliding_window_equals_cached_when_the_window_covers_the_whole_memory():
    m, o = model_and_objective()
    rows = torch.randint(4, 50, (2, 25))
    targets = torch.tensor([[0, 23], [1, 23], [1, 10]])
    # a window of 24 from position 0 sees everything before each target, as a memory longer than the row does
    slide = sliding_nll(m, o, rows, 11, targets[2:])
    full = cached_nll(m, o, rows, 24, 100)
    assert slide.shape == (1,)
    explicit = explicit_nll(m, o, rows[:, :12], 12, 0)
    torch.testing.assert_close(slide[0], explicit[1, 10], rtol=0, atol=1e-9)
    torch.testing.assert_close(sliding_nll(m, o, rows, 24, targets[:2]), full[:, 23], rtol=0, atol=1e-9)


def test_same_length_gives_every_query_the_same_number_of_keys():
    mask = causal_mask(4, 6, torch.device("cpu"), same_length_mem=6)
    assert (~mask).sum(1).tolist() == [6, 6, 6, 6]
    assert (~causal_mask(4, 6, torch.device("cpu"))).sum(1).tolist() == [7, 8, 9, 10]


@pytest.mark.parametrize("div_val", [1, 2])
def test_adaptive_softmax_is_a_distribution_and_nll_matches_it(div_val):
    c = tiny(vocab_size=40, cutoffs=[10, 25], div_val=div_val, embedding_size=16)
    torch.manual_seed(0)
    m, head = TransformerXL(c).double(), AdaptiveSoftmax(c).double()
    h = torch.randn(7, 16, dtype=torch.double)
    logp = head.log_probs(h, m.embeddings)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(7, dtype=torch.double))
    target = torch.tensor([0, 9, 10, 24, 25, 39, 3])
    torch.testing.assert_close(head.nll(h, target, m.embeddings), -logp.gather(1, target[:, None]).squeeze(1))
    if div_val == 2:  # cluster i is 16 // 2**i wide, projected to H; the softmax reuses tables and tail projections
        assert [t.embedding_dim for t in m.embeddings.tables] == [16, 8, 4]
        assert sum(p.numel() for p in nn.ModuleList([m, head]).parameters()) == \
            sum(p.numel() for p in m.parameters()) + 40 + 2 * 16 + 2 + 16 * 16


@pytest.mark.parametrize("kw", [dict(cutoffs=[10, 25], div_val=2, embedding_size=16),
                                dict(cutoffs=[10, 25], div_val=1, embedding_size=8), dict(cutoffs=[], div_val=1)])
def test_adaptive_softmax_flops_equal_torch_flop_counter_on_full_log_probs(kw):
    """The budget's softmax count (runner/models/flops.py) is what torch counts for the full distribution: every cluster
    for every token (training's nll scores a tail only for its targets, so the count is an upper bound there)."""
    from torch.utils.flop_counter import FlopCounterMode

    from runner.models.flops import adaptive_softmax_flops

    c = tiny(vocab_size=40, **kw)
    m, head = TransformerXL(c), AdaptiveSoftmax(c)
    h = torch.randn(7, 16)
    with FlopCounterMode(display=False) as counter:
        head.log_probs(h, m.embeddings)
    assert counter.get_total_flops() == 7 * adaptive_softmax_flops(c)


@pytest.mark.parametrize("preset,count", [("txl_wt103_base", 151_107_538), ("txl_wt103_large", 285_170_506),
                                          ("txl_enwik8_base", 41_055_436), ("txl_enwik8_large", 277_231_820)])
def test_parameter_counts_equal_the_original_code(preset, count):
    config = preset_config(preset)
    with torch.device("meta"):
        model = nn.ModuleList([TransformerXL(config), AdaptiveSoftmax(config)])
    assert sum(p.numel() for p in model.parameters()) == count
