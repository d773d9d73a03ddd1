"""The later improvements on BERT (model.position, ffn, norm, norm_position, bias, embedding_norm, local_window,
global_every, qkv, type_vocab_size=0) against references written here from their definitions, not from
runner/models: RoPE as complex multiplication, ALiBi's slopes as the paper's reference code computes them, and a
whole encoder recomputed with dense (T, T) masks and explicit matmuls from the module's own weights."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from runner.models.flops import encoder_flops
from runner.models.config import EncoderConfig
from runner.models.encoder import Encoder, Layer, make_norm
from runner.models.positions import alibi_bias, alibi_slopes, rope_frequencies, rope_tables, rotate, window_mask

F64 = torch.float64


def tiny(**kw) -> EncoderConfig:
    """A few-hundred-parameter encoder without dropout (eval-equivalent in train mode too)."""
    base = dict(vocab_size=50, hidden_size=16, num_heads=2, intermediate_size=24, num_layers=2,
                max_position_embeddings=32, hidden_dropout=0.0, attention_dropout=0.0, layer_norm_eps=1e-6)
    return EncoderConfig(**{**base, **kw})


def randomized(enc: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter redrawn (norm scales and biases away from 1 and 0, so a missing term shows), in float64."""
    g = torch.Generator().manual_seed(seed)
    enc = enc.double().eval()
    with torch.no_grad():
        for p in enc.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=F64) * 0.3 + (1.0 if p.ndim == 1 else 0.0) * 0.5)
    return enc


# ----------------------------------------------------------------------------------------------------------------
# References, each from its definition
# ----------------------------------------------------------------------------------------------------------------

def ref_gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def ref_silu(x):
    return x / (1.0 + torch.exp(-x))


REF_ACT = {"gelu": ref_gelu, "silu": ref_silu, "relu": lambda x: torch.where(x > 0, x, torch.zeros_like(x)),
           "gelu_new": lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))}


def ref_linear(x, m: nn.Linear):
    y = x @ m.weight.T
    return y if m.bias is None else y + m.bias


def ref_norm(c: EncoderConfig, m: nn.Module, x):
    """RMSNorm: x / sqrt(mean(x^2) + eps) * w. LayerNorm: (x - mean) / sqrt(var + eps) * w (+ b)."""
    if c.norm == "rmsnorm":
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + c.layer_norm_eps) * m.weight
    mu = x.mean(-1, keepdim=True)
    var = (x - mu).pow(2).mean(-1, keepdim=True)
    y = (x - mu) / torch.sqrt(var + c.layer_norm_eps) * m.weight
    return y if m.bias is None else y + m.bias


def ref_rope(x, theta: float, positions=None):
    """x (..., T, d): the pair (x_j, x_{j + d/2}) as the complex x_j + i x_{j+d/2}, times e^{i pos theta^(-2j/d)}."""
    T, d = x.shape[-2], x.shape[-1]
    half = d // 2
    pos = torch.arange(T, dtype=F64) if positions is None else torch.as_tensor(positions, dtype=F64)
    freq = torch.tensor([theta ** (-2.0 * j / d) for j in range(half)], dtype=F64)
    angle = pos[:, None] * freq[None, :]  # (T, d/2)
    z = torch.complex(x[..., :half].to(F64), x[..., half:].to(F64)) * torch.polar(torch.ones_like(angle), angle)
    return torch.cat([z.real, z.imag], dim=-1)


def get_slopes(n):
    """ALiBi's slopes, as ofirpress/attention_with_linear_biases (fairseq/models/transformer.py) writes them."""
    def get_slopes_power_of_2(n):
        start = (2 ** (-2 ** -(math.log2(n) - 3)))
        ratio = start
        return [start * ratio ** i for i in range(n)]

    if math.log2(n).is_integer():
        return get_slopes_power_of_2(n)
    closest_power_of_2 = 2 ** math.floor(math.log2(n))
    return get_slopes_power_of_2(closest_power_of_2) + get_slopes(2 * closest_power_of_2)[0::2][:n - closest_power_of_2]


def ref_allowed(c: EncoderConfig, layer: int, real):
    """(B, T, T) bool: key j is real and (global layer, or |i - j| <= local_window // 2). A padding query (whose output
    is never compared) may also see itself, so that its row is never empty."""
    B, T = real.shape
    i = torch.arange(T)
    near = torch.ones(T, T, dtype=torch.bool)
    if c.local_window is not None and layer % c.global_every != 0:
        near = (i[:, None] - i[None, :]).abs() <= c.local_window // 2
    allowed = near[None] & real[:, None, :]
    return allowed | (torch.eye(T, dtype=torch.bool)[None] & ~real[:, :, None])


def ref_attention(c: EncoderConfig, att: nn.Module, x, allowed, theta: float):
    """softmax(Q K^T / sqrt(d) + alibi + mask) V, then the output projection, from the module's weights."""
    B, T, H = x.shape
    h, d = c.num_heads, H // c.num_heads
    if c.qkv == "fused":
        ws = att.qkv.weight.split(H, dim=0)
        bs = att.qkv.bias.split(H) if att.qkv.bias is not None else (None,) * 3
        q, k, v = ((x @ w.T) + (0 if b is None else b) for w, b in zip(ws, bs))
    else:
        q, k, v = ref_linear(x, att.query), ref_linear(x, att.key), ref_linear(x, att.value)
    q, k, v = (t.reshape(B, T, h, d).permute(0, 2, 1, 3) for t in (q, k, v))  # (B, h, T, d)
    if c.position == "rope":
        q, k = ref_rope(q, theta), ref_rope(k, theta)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)  # (B, h, T, T)
    if c.position == "alibi":
        i = torch.arange(T, dtype=F64)
        slopes = torch.tensor(get_slopes(h), dtype=F64)
        scores = scores - slopes[:, None, None] * (i[:, None] - i[None, :]).abs()
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    y = torch.softmax(scores, dim=-1) @ v  # (B, h, T, d)
    return ref_linear(y.permute(0, 2, 1, 3).reshape(B, T, H), att.out)


def ref_ffn(c: EncoderConfig, layer: Layer, x):
    """mlp: act(x W1 + b1) W2 + b2; GLU: act(x W_a) * (x W_b) W_o, W_a and W_b the two halves of the 2I projection."""
    inter = layer.intermediate
    if c.ffn == "mlp":
        return ref_linear(REF_ACT[c.activation](ref_linear(x, inter)), layer.output)
    I = c.intermediate_size
    w_a, w_b = inter.weight[:I], inter.weight[I:]
    b_a, b_b = (inter.bias[:I], inter.bias[I:]) if inter.bias is not None else (0, 0)
    act = ref_silu if c.ffn == "swiglu" else REF_ACT[c.activation]
    return ref_linear(act(x @ w_a.T + b_a) * (x @ w_b.T + b_b), layer.output)


def ref_encoder(enc: Encoder, ids, types, mask):
    """The whole encoder, layer by layer, with dense masks (BERT family: positions 0 .. T-1)."""
    c = enc.config
    B, T = ids.shape
    emb = enc.embeddings
    x = emb.word_embeddings.weight[ids]
    if c.position == "learned":
        x = x + emb.position_embeddings.weight[:T][None]
    if c.type_vocab_size > 0:
        x = x + emb.token_type_embeddings.weight[types if types is not None else torch.zeros_like(ids)]
    else:
        assert emb.token_type_embeddings is None
    if c.embedding_norm:
        x = ref_norm(c, emb.norm, x)
    real = mask.bool() if mask is not None else torch.ones(B, T, dtype=torch.bool)
    for i in range(c.num_layers):
        layer = enc.layers[i]
        is_global = c.local_window is None or i % c.global_every == 0
        theta = c.rope_theta if is_global or c.local_rope_theta is None else c.local_rope_theta
        allowed = ref_allowed(c, i, real)
        if c.norm_position == "pre":
            h = x if (i == 0 and c.embedding_norm) else ref_norm(c, layer.attn_norm, x)
            x = x + ref_attention(c, layer.attention, h, allowed, theta)
            x = x + ref_ffn(c, layer, ref_norm(c, layer.ffn_norm, x))
        else:
            x = ref_norm(c, layer.attn_norm, x + ref_attention(c, layer.attention, x, allowed, theta))
            x = ref_norm(c, layer.ffn_norm, x + ref_ffn(c, layer, x))
    return ref_norm(c, enc.final_norm, x) if c.norm_position == "pre" else x


# ----------------------------------------------------------------------------------------------------------------
# RoPE
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("d,theta", [(8, 10000.0), (16, 160000.0), (2, 10.0)])
def test_rope_rotation_is_complex_multiplication_of_pairs(d, theta):
    T = 40
    x = torch.randn(2, 3, T, d, dtype=F64, generator=torch.Generator().manual_seed(1))
    cos, sin = rope_tables(T, d, theta, torch.device("cpu"))
    assert cos.shape == sin.shape == (T, d)
    torch.testing.assert_close(rope_frequencies(d, theta).double(),
                               torch.tensor([theta ** (-2 * j / d) for j in range(d // 2)], dtype=F64),
                               rtol=1e-6, atol=0)
    out = rotate(x, cos, sin)
    assert out.dtype == F64
    torch.testing.assert_close(out, ref_rope(x, theta), rtol=1e-5, atol=1e-5)  # the tables are float32
    torch.testing.assert_close(out[..., 0, :], x[..., 0, :])  # position 0: no rotation
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1), rtol=1e-5, atol=1e-5)  # a rotation keeps norms


def test_rope_scores_depend_only_on_the_relative_offset():
    d, T = 16, 64
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(d, dtype=F64, generator=g), torch.randn(d, dtype=F64, generator=g)
    cos, sin = rope_tables(T, d, 10000.0, torch.device("cpu"))

    def score(m: int, n: int) -> float:
        rq = rotate(q.view(1, 1, 1, d), cos[m:m + 1], sin[m:m + 1])
        rk = rotate(k.view(1, 1, 1, d), cos[n:n + 1], sin[n:n + 1])
        return float((rq * rk).sum())

    for m, n in [(3, 10), (10, 3), (0, 0), (5, 31)]:
        base = score(m, n)
        for shift in (1, 7, 20, T - 1 - max(m, n)):
            assert score(m + shift, n + shift) == pytest.approx(base, rel=1e-5, abs=1e-5)
    assert score(3, 10) != pytest.approx(score(3, 11), rel=1e-3)  # but the offset itself matters


# ----------------------------------------------------------------------------------------------------------------
# ALiBi and sliding windows
# ----------------------------------------------------------------------------------------------------------------

def test_alibi_slopes_match_the_paper():
    assert alibi_slopes(8).tolist() == pytest.approx([1 / 2 ** k for k in range(1, 9)], rel=1e-6)
    assert alibi_slopes(16).tolist() == pytest.approx([2 ** (-k / 2) for k in range(1, 17)], rel=1e-6)
    for n in range(1, 33):  # non-powers of two (12, 24, ...) take every other slope of the next power's series
        assert alibi_slopes(n).tolist() == pytest.approx(get_slopes(n), rel=1e-6), n
    assert alibi_slopes(12).tolist() == pytest.approx(
        [2 ** -k for k in range(1, 9)] + [2 ** (-(2 * k + 1) / 2) for k in range(4)], rel=1e-6)


def test_alibi_bias_is_minus_slope_times_distance():
    heads, T = 6, 9
    bias = alibi_bias(heads, T, torch.device("cpu"))
    assert bias.shape == (heads, T, T)
    slopes = get_slopes(heads)
    for h in range(heads):
        for i in range(T):
            for j in range(T):
                assert float(bias[h, i, j]) == pytest.approx(-slopes[h] * abs(i - j), rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("window", [2, 3, 4, 16])
def test_window_mask_sees_window_half_on_either_side(window):
    T = 12
    m = window_mask(T, window, torch.device("cpu"))
    for i in range(T):
        for j in range(T):
            assert bool(m[i, j]) == (abs(i - j) <= window // 2)


# ----------------------------------------------------------------------------------------------------------------
# The whole encoder against the dense reference
# ----------------------------------------------------------------------------------------------------------------

CASES = {
    "bert": dict(),
    "rope_window_pad": dict(position="rope", rope_theta=160000.0, local_rope_theta=10000.0, local_window=4,
                            global_every=2, num_layers=3),
    "alibi_window_pad": dict(position="alibi", local_window=6, global_every=3, num_layers=4, num_heads=4),
    "alibi_3_heads": dict(position="alibi", num_heads=3, hidden_size=12),
    "learned_tiny_window": dict(local_window=2, global_every=2, num_layers=4),
    "modernbert_like": dict(position="rope", ffn="geglu", norm_position="pre", bias=False, local_window=4,
                            global_every=3, num_layers=4, qkv="fused", type_vocab_size=0, local_rope_theta=100.0),
    "neobert_like": dict(position="rope", ffn="swiglu", norm="rmsnorm", norm_position="pre", embedding_norm=False,
                         bias=False),
    "pre_layernorm_bias": dict(norm_position="pre", ffn="geglu", activation="gelu_new"),
    "post_rms_fused_relu": dict(norm="rmsnorm", qkv="fused", activation="relu", ffn="swiglu"),
    "no_types_no_embnorm_post": dict(type_vocab_size=0, embedding_norm=False, ffn="geglu"),
}


def batch(c: EncoderConfig, T: int = 11, seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, c.vocab_size, (3, T), generator=g)
    types = torch.randint(0, max(c.type_vocab_size, 1), (3, T), generator=g)
    mask = torch.ones(3, T, dtype=torch.long)
    mask[1, 7:] = 0  # right padding, longer than any window's half
    mask[2, 2:] = 0
    ids[mask == 0] = 0
    return ids, types, mask


@pytest.mark.parametrize("case", list(CASES))
def test_encoder_matches_the_dense_reference(case):
    c = tiny(**CASES[case])
    enc = randomized(Encoder(c))
    ids, types, mask = batch(c)
    tol = dict(rtol=2e-5, atol=2e-5) if c.position == "rope" else dict(rtol=1e-9, atol=1e-9)
    with torch.no_grad():
        for m in (mask, None):  # padded rows, and the unpadded batch (packed rows skip the mask)
            out = enc(ids, types, m)
            ref = ref_encoder(enc, ids, types, m)
            real = (m if m is not None else torch.ones_like(ids)).bool()
            torch.testing.assert_close(out[real], ref[real], **tol)
        # a real token's output does not depend on what sits in the padding
        ids2 = ids.clone()
        ids2[mask == 0] = 7
        torch.testing.assert_close(enc(ids2, types, mask)[mask.bool()], enc(ids, types, mask)[mask.bool()], **tol)
        assert torch.isfinite(enc(ids, types, mask)).all()  # padding rows too (never NaN into the loss)


def test_window_shorter_than_the_sequence_changes_local_layers_only():
    """A window shorter than the sequence changes the output; every layer global (global_every=1) or a window
    covering the sequence gives the full-attention encoder exactly."""
    c = tiny(num_layers=3)
    ids, types, mask = batch(c, T=12)
    full = randomized(Encoder(c))
    with torch.no_grad():
        want = full(ids, types, mask)
        for kw, same in [(dict(local_window=4, global_every=2), False), (dict(local_window=4, global_every=1), True),
                         (dict(local_window=24, global_every=2), True), (dict(local_window=22, global_every=2), True),
                         (dict(local_window=20, global_every=2), False)]:
            enc = Encoder(dataclasses.replace(c, **kw)).double().eval()
            enc.load_state_dict(full.state_dict())
            got = enc(ids, types, mask)
            real = mask.bool()
            if same:
                torch.testing.assert_close(got[real], want[real], rtol=1e-12, atol=1e-12)
            else:
                assert not torch.allclose(got[real], want[real]), kw


def test_local_layer_attends_within_its_window_only():
    """Attention of a local layer (layer 1 of global_every=2): perturbing a key outside the window leaves a query's
    attention output unchanged, inside it changes it."""
    c = tiny(num_layers=2, local_window=4, global_every=2)
    enc = randomized(Encoder(c))
    masks = enc.masks(None, 10, torch.device("cpu"))
    layer = enc.layers[1]
    x = torch.randn(1, 10, c.hidden_size, dtype=F64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        base = layer.attention(x, masks[False])
        far, near = x.clone(), x.clone()
        far[0, 8] += 1.0  # |0 - 8| > 2
        near[0, 2] += 1.0  # |0 - 2| <= 2
        assert torch.equal(layer.attention(far, masks[False])[0, 0], base[0, 0])
        assert not torch.allclose(layer.attention(near, masks[False])[0, 0], base[0, 0])
        assert not torch.allclose(layer.attention(far, masks[True])[0, 0], layer.attention(x, masks[True])[0, 0])


# ----------------------------------------------------------------------------------------------------------------
# Norms, biases, feed-forwards, one pre-norm block
# ----------------------------------------------------------------------------------------------------------------

def test_rmsnorm_is_its_definition():
    c = tiny(norm="rmsnorm", layer_norm_eps=1e-5)
    m = make_norm(c, 16).double()
    assert isinstance(m, nn.RMSNorm) and [n for n, _ in m.named_parameters()] == ["weight"]
    with torch.no_grad():
        m.weight.copy_(torch.linspace(0.5, 2.0, 16, dtype=F64))
    x = torch.randn(4, 5, 16, dtype=F64) * 3 + 1
    want = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * m.weight
    torch.testing.assert_close(m(x), want, rtol=1e-12, atol=1e-12)


def test_layernorm_without_bias_has_no_bias_parameter():
    m = make_norm(tiny(bias=False), 16)
    assert isinstance(m, nn.LayerNorm) and m.bias is None and [n for n, _ in m.named_parameters()] == ["weight"]
    assert make_norm(tiny(), 16).bias is not None


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("kw", [dict(), dict(ffn="swiglu", norm_position="pre"), dict(qkv="fused", ffn="geglu"),
                                dict(norm="rmsnorm", embedding_size=8)])
def test_bias_false_removes_every_bias(kw):
    with_bias, without = Encoder(tiny(**kw)), Encoder(tiny(bias=False, **kw))
    assert not [n for n, _ in without.named_parameters() if "bias" in n]
    assert all(m.bias is None for m in without.modules() if isinstance(m, (nn.Linear, nn.LayerNorm)))
    biases = sum(p.numel() for n, p in with_bias.named_parameters() if n.endswith("bias"))
    assert biases > 0 and n_params(with_bias) - n_params(without) == biases


def test_glu_ffn_by_hand():
    for ffn, act in (("geglu", ref_gelu), ("swiglu", ref_silu)):
        c = tiny(ffn=ffn)
        layer = randomized(Layer(c))
        I = c.intermediate_size
        assert layer.intermediate.weight.shape == (2 * I, c.hidden_size)
        assert layer.output.weight.shape == (c.hidden_size, I)
        x = torch.randn(2, 5, c.hidden_size, dtype=F64)
        W, b = layer.intermediate.weight, layer.intermediate.bias
        want = (act(x @ W[:I].T + b[:I]) * (x @ W[I:].T + b[I:])) @ layer.output.weight.T + layer.output.bias
        torch.testing.assert_close(layer.ffn(x), want, rtol=1e-12, atol=1e-12)
    # geglu takes model.activation; swiglu is silu whatever the activation
    c = tiny(ffn="geglu", activation="relu")
    layer = randomized(Layer(c))
    x = torch.randn(2, 5, c.hidden_size, dtype=F64)
    I = c.intermediate_size
    h = x @ layer.intermediate.weight.T + layer.intermediate.bias
    torch.testing.assert_close(layer.ffn(x), ref_linear(h[..., :I].clamp(min=0) * h[..., I:], layer.output))
    c = tiny(ffn="swiglu", activation="relu")
    layer = randomized(Layer(c))
    h = x @ layer.intermediate.weight.T + layer.intermediate.bias
    torch.testing.assert_close(layer.ffn(x), ref_linear(ref_silu(h[..., :I]) * h[..., I:], layer.output))


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_pre_norm_block_by_hand(norm):
    """x + Attn(N1(x)), then y + FFN(N2(y)); the first block after a normalised embedding skips N1."""
    c = tiny(norm_position="pre", norm=norm)
    layer = randomized(Layer(c))
    x = torch.randn(2, 6, c.hidden_size, dtype=F64)
    y = x + ref_attention(c, layer.attention, ref_norm(c, layer.attn_norm, x), torch.ones(2, 6, 6, dtype=torch.bool),
                          c.rope_theta)
    want = y + ref_ffn(c, layer, ref_norm(c, layer.ffn_norm, y))
    torch.testing.assert_close(layer(x, None), want, rtol=1e-12, atol=1e-12)
    first = Layer(c, first=True)
    assert first.attn_norm is None
    assert Layer(dataclasses.replace(c, embedding_norm=False), first=True).attn_norm is not None
    assert Layer(dataclasses.replace(c, share="all"), first=True).attn_norm is not None  # applied at every depth
    enc = Encoder(c)
    assert enc.final_norm is not None and enc.layers[0].attn_norm is None and enc.layers[1].attn_norm is not None
    assert Encoder(tiny()).final_norm is None


def test_fused_qkv_equals_separate_with_the_same_weights():
    for kw in (dict(), dict(bias=False, position="rope"), dict(position="alibi", norm_position="pre")):
        sep = randomized(Encoder(tiny(**kw)))
        fused = Encoder(tiny(qkv="fused", **kw)).double().eval()
        state = dict(sep.state_dict())
        for i in range(len(sep.layers)):
            p = f"layers.{i}.attention."
            for kind in ("weight", "bias"):
                parts = [state.pop(f"{p}{n}.{kind}", None) for n in ("query", "key", "value")]
                if parts[0] is not None:
                    state[f"{p}qkv.{kind}"] = torch.cat(parts, dim=0)
        fused.load_state_dict(state)  # strict: every fused weight filled, nothing left over
        ids, types, mask = batch(sep.config)
        with torch.no_grad():
            torch.testing.assert_close(fused(ids, types, mask), sep(ids, types, mask), rtol=1e-12, atol=1e-12)
        assert n_params(fused) == n_params(sep)


# ----------------------------------------------------------------------------------------------------------------
# Parameter counts and FLOPs against hand formulas
# ----------------------------------------------------------------------------------------------------------------

def hand_count(c: EncoderConfig) -> int:
    V, H, I, L, P = c.vocab_size, c.hidden_size, c.intermediate_size, c.num_layers, c.max_position_embeddings
    b = 1 if c.bias else 0
    norm = H * (1 + (b if c.norm == "layernorm" else 0))  # scale (+ shift)
    emb = V * H + (P * H if c.position == "learned" else 0) + c.type_vocab_size * H + (norm if c.embedding_norm else 0)
    attention = 4 * (H * H + b * H)
    gate = 2 if c.ffn in ("geglu", "swiglu") else 1
    ffn = gate * (H * I + b * I) + I * H + b * H
    norms = 2 * L * norm
    if c.norm_position == "pre" and c.embedding_norm:
        norms -= norm  # layer 0 reads the normalised embeddings
    final = norm if c.norm_position == "pre" else 0
    return emb + L * (attention + ffn) + norms + final


@pytest.mark.parametrize("kw", [
    dict(), dict(position="rope"), dict(position="alibi"), dict(ffn="geglu"), dict(ffn="swiglu", bias=False),
    dict(norm_position="pre"), dict(norm_position="pre", embedding_norm=False), dict(norm="rmsnorm"),
    dict(type_vocab_size=0), dict(qkv="fused", local_window=4, global_every=2),
    dict(position="rope", ffn="geglu", norm_position="pre", bias=False, type_vocab_size=0, qkv="fused"),
    dict(position="rope", ffn="swiglu", norm="rmsnorm", norm_position="pre", embedding_norm=False, bias=False),
])
def test_parameter_counts_match_hand_formulas(kw):
    c = tiny(**kw)
    assert n_params(Encoder(c)) == hand_count(c)


def test_parameter_differences_of_single_options():
    c = tiny()
    H, I, P, L = c.hidden_size, c.intermediate_size, c.max_position_embeddings, c.num_layers
    base = n_params(Encoder(c))
    diff = lambda **kw: base - n_params(Encoder(tiny(**kw)))  # noqa: E731
    assert diff(position="rope") == P * H == diff(position="alibi")
    assert diff(type_vocab_size=0) == 2 * H
    assert diff(ffn="swiglu") == diff(ffn="geglu") == -L * (H * I + I)
    assert diff(norm="rmsnorm") == (2 * L + 1) * H
    assert diff(embedding_norm=False) == 2 * H
    assert diff(norm_position="pre") == 0  # layer 0's attention norm moves to the end
    assert diff(qkv="fused") == 0 and diff(local_window=4) == 0


def hand_flops(c: EncoderConfig, tokens: int, T: int) -> int:
    H, I = c.hidden_size, c.intermediate_size
    ffn = 3 * H * I if c.ffn in ("geglu", "swiglu") else 2 * H * I
    per_token = 0
    for i in range(c.num_layers):
        local = c.local_window is not None and i % c.global_every != 0
        keys = min(T, 2 * (c.local_window // 2) + 1) if local else T  # |i - j| <= local_window // 2
        per_token += 2 * (4 * H * H + ffn) + 2 * 2 * keys * H  # projections and FFN; QK^T and AV
    return tokens * per_token


@pytest.mark.parametrize("kw,T", [
    (dict(), 128), (dict(ffn="geglu"), 128), (dict(ffn="swiglu", local_window=16, global_every=3), 128),
    (dict(local_window=16, global_every=3), 10), (dict(local_window=128, global_every=2), 64),
    (dict(local_window=8, global_every=1), 64),
])
def test_encoder_flops_match_hand_counts(kw, T):
    c = tiny(hidden_size=64, intermediate_size=256, num_heads=4, num_layers=6, max_position_embeddings=256, **kw)
    assert encoder_flops(c, 3 * T, T) == hand_flops(c, 3 * T, T)
    assert Encoder(c).forward_flops(3, T) == hand_flops(c, 3 * T, T)


def test_gated_and_windowed_flops_by_the_numbers():
    """H=64, I=256, 6 layers, T=128, window 16 every third layer global: layers 0 and 3 see 128 keys, the rest 17."""
    c = tiny(hidden_size=64, intermediate_size=256, num_heads=4, num_layers=6, ffn="swiglu", local_window=16,
             global_every=3)
    per_token = 6 * 2 * (4 * 64 * 64 + 3 * 64 * 256) + 4 * 64 * (2 * 128 + 4 * 17)
    assert encoder_flops(c, 128, 128) == 128 * per_token
    dense = dataclasses.replace(c, ffn="mlp", local_window=None)
    assert encoder_flops(c, 128, 128) - encoder_flops(dense, 128, 128) == \
        128 * (6 * 2 * 64 * 256 - 4 * 64 * 4 * (128 - 17))


def test_warmup_stable_decay_holds_the_peak_then_decays_by_one_minus_sqrt():
    """optimizer.decay=wsd (ModernBERT): linear warmup, the peak held, then 1 - sqrt over the last decay_fraction."""
    from runner.engine.optim import build_adamw

    opt, sched = build_adamw(torch.nn.Linear(2, 2), max_steps=100, lr=1.0, betas=[0.9, 0.999], eps=1e-8,
                             weight_decay=0.0, warmup_steps=10, min_lr_ratio=0.0, decay="wsd", decay_fraction=0.2)
    lrs = []
    for _ in range(101):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)  # warmup over 10 steps
    assert all(lr == pytest.approx(1.0) for lr in lrs[10:81])  # stable until the decay's 20 steps
    assert lrs[85] == pytest.approx(1 - math.sqrt(5 / 20)) and lrs[100] == pytest.approx(0.0)
