"""XLNet (runner/models/xlnet.py) and objective=plm (runner/objectives/plm.py): parameter counts and logits equal to
transformers' XLNetLMHeadModel, two-stream attention term by term, the query stream blind to its own content,
partial-prediction targets, a short run that learns, and one-line config errors.
The tests of this file that train or start a process: tests/integration/test_xlnet.py."""
from __future__ import annotations

import math

import pytest
import torch

from runner.build import build
from runner.data.tokenizer import SpecialIds
from runner.config.errors import ConfigError
from runner.models.txl import sinusoid
from runner.models.xlnet import XLNet, XLNetConfig
from runner.objectives.plm import IGNORE, PermutationLM
from tests.conftest import make_cfg, cli


transformers = pytest.importorskip("transformers")


SMALL = dict(vocab_size=101, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, mem_len=8)


def random_plm_inputs(B: int, T: int, P: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 101, (B, T), generator=g)
    types = torch.randint(0, 2, (B, T), generator=g)
    perm = (torch.rand(B, T, T, generator=g) < 0.5).float()
    mapping = torch.zeros(B, P, T)
    for b in range(B):
        mapping[b, torch.arange(P), torch.randperm(T, generator=g)[:P]] = 1.0
    return ids, types, perm, mapping


@pytest.mark.parametrize("shape,count", [((768, 12, 12, 3072), 116_750_336), ((1024, 24, 16, 4096), 360_300_800)])
def test_parameter_counts_equal_transformers(shape, count):
    H, L, n, inner = shape
    with torch.device("meta"):
        ours = XLNet(XLNetConfig(vocab_size=32000, hidden_size=H, num_layers=L, num_heads=n, intermediate_size=inner))
        theirs = transformers.XLNetLMHeadModel(transformers.XLNetConfig(d_model=H, n_layer=L, n_head=n, d_inner=inner))
    assert sum(p.numel() for p in ours.parameters()) + 32000 == count  # + the LM head's bias (objective=plm)
    assert sum(p.numel() for p in theirs.parameters()) == count


def test_logits_equal_transformers_with_perm_mask_target_mapping_segments_and_memory():
    from runner.hf.adapters.xlnet import from_hf_state, hf_model, to_hf_state

    torch.manual_seed(0)
    model = XLNet(XLNetConfig(**SMALL)).eval()
    bias = torch.randn(101)
    hf = hf_model(model, bias)
    W = model.embeddings.word_embeddings.weight
    ids, types, perm, mapping = random_plm_inputs(2, 10, 3)
    ids2 = torch.randint(0, 101, (2, 10))
    worst = 0.0
    with torch.no_grad():
        for kw in ({}, {"token_type_ids": types}):
            ours = model(ids, kw.get("token_type_ids"), perm_mask=perm, target_mapping=mapping) @ W.T + bias
            ref = hf(ids, perm_mask=perm, target_mapping=mapping, **kw).logits
            assert ours.shape == ref.shape == (2, 3, 101)
            worst = max(worst, float((ours - ref).abs().max()))
            content = model(ids, kw.get("token_type_ids"), perm_mask=perm) @ W.T + bias  # no target_mapping
            worst = max(worst, float((content - hf(ids, perm_mask=perm, **kw).logits).abs().max()))
        # two segments: the second reads the first's memory (the first reuse_len=6 states of each layer)
        hf.transformer.mem_len, hf.transformer.reuse_len = 8, 6
        out1, mem = model.streams(ids, types, perm_mask=perm, target_mapping=mapping, reuse_len=6)
        r1 = hf(ids, token_type_ids=types, perm_mask=perm, target_mapping=mapping, use_mems=True)
        out2, _ = model.streams(ids2, types, perm_mask=perm, target_mapping=mapping, memory=mem, reuse_len=6)
        r2 = hf(ids2, token_type_ids=types, perm_mask=perm, target_mapping=mapping, mems=r1.mems, use_mems=True)
        assert mem[0].shape == (2, 6, 32)
        worst = max(worst, float((out2 @ W.T + bias - r2.logits).abs().max()))
        hf.transformer.bi_data = True  # the second half of the rows reads backward relative positions
        ours = model(ids, types, perm_mask=perm, target_mapping=mapping, bi_data=True) @ W.T + bias
        worst = max(worst, float((ours - hf(ids, token_type_ids=types, perm_mask=perm,
                                              target_mapping=mapping).logits).abs().max()))
        fresh = transformers.XLNetLMHeadModel(hf.config).eval()  # other weights: far from ours
        assert float((fresh(ids, perm_mask=perm, target_mapping=mapping).logits - ref).abs().max()) > 1e-2
    assert worst <= 1e-4
    enc, obj = from_hf_state(hf.state_dict())  # the renaming round-trips
    back = to_hf_state({**{f"encoder.{k}": v for k, v in enc.items()}, **{f"objective.{k}": v for k, v in obj.items()}})
    assert set(back) == set(hf.state_dict()) and all(torch.equal(back[k], v) for k, v in hf.state_dict().items())


def test_two_stream_attention_matches_a_term_by_term_reference():
    torch.manual_seed(1)
    c = XLNetConfig(vocab_size=50, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=16)
    attn = XLNet(c).eval().layers[0].attention
    B, T, M, P, n, d = 1, 4, 2, 2, 2, 4
    h, mem, g = torch.randn(B, T, 8), torch.randn(B, M, 8), torch.randn(B, P, 8)
    types = torch.tensor([[0, 0, 1, 1]])
    perm = torch.tensor([[[0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 1, 0], [1, 1, 1, 1]]], dtype=torch.bool)
    tpos = [1, 3]  # the query stream's positions
    mapping = torch.zeros(B, P, T)
    mapping[0, [0, 1], tpos] = 1.0
    K = M + T
    dist = torch.arange(K - 1, -T, -1.0)
    pos = sinusoid(dist, 8)[None]
    seg = types[:, :, None] != torch.cat([torch.zeros(B, M, dtype=torch.long), types], 1)[:, None, :]
    blocked_g = torch.cat([torch.zeros(B, T, M, dtype=torch.bool), perm], 2)
    blocked_h = blocked_g & ~torch.cat([torch.zeros(T, M, dtype=torch.bool), torch.eye(T, dtype=torch.bool)], 1)
    with torch.no_grad():
        out_h, out_g = attn(h, g, mem, pos, seg, blocked_h, blocked_g, mapping)
        ctx = torch.cat([mem, h], 1)[0]  # (K, H)
        Wq, Wk, Wv, Wo, Wr = (getattr(attn, x) for x in "qkvor")

        def reference(x_i: torch.Tensor, i: int, blocked_row: torch.Tensor) -> torch.Tensor:
            """One query at segment position i: scores by explicit sums over heads and keys."""
            out = torch.zeros(8)
            for head in range(n):
                q = x_i @ Wq[:, head]  # (d,)
                scores = torch.empty(K)
                for j in range(K):
                    r = sinusoid(torch.tensor([float(M + i - j)]), 8)[0] @ Wr[:, head]
                    s = attn.seg_embed[int(seg[0, i, j]), head]
                    scores[j] = ((q + attn.r_w_bias[head]) @ (ctx[j] @ Wk[:, head])
                                 + (q + attn.r_r_bias[head]) @ r + (q + attn.r_s_bias[head]) @ s) / math.sqrt(d)
                scores[blocked_row] = -float("inf")
                vec = sum(p * (ctx[j] @ Wv[:, head]) for j, p in enumerate(scores.softmax(0)))
                out += Wo[:, head] @ vec
            return attn.norm(x_i + out)

        for i in range(T):
            assert torch.allclose(out_h[0, i], reference(h[0, i], i, blocked_h[0, i]), atol=1e-5)
        for m, i in enumerate(tpos):
            assert torch.allclose(out_g[0, m], reference(g[0, m], i, blocked_g[0, i]), atol=1e-5)


def test_the_query_stream_never_sees_its_own_content():
    torch.manual_seed(2)
    model = XLNet(XLNetConfig(**{**SMALL, "num_layers": 3})).eval()
    T, i = 8, 5
    ids = torch.arange(10, 10 + T)[None]  # distinct ids: a word-table row's gradient is one position's
    perm = torch.zeros(1, T, T)
    perm[0, :, i] = 1.0  # i is last in the order: no query sees it (the content stream still sees itself)
    mapping = torch.zeros(1, 1, T)
    mapping[0, 0, i] = 1.0
    out = model(ids, perm_mask=perm, target_mapping=mapping)
    (out * torch.randn(out.shape)).sum().backward()  # not a plain sum: a LayerNorm's output sums to a constant
    grad = model.embeddings.word_embeddings.weight.grad
    assert float(grad[10 + i].abs().max()) == 0.0
    assert all(float(grad[10 + j].abs().max()) > 0 for j in range(T) if j != i)


def stream_batch(B: int = 4, T: int = 64, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 1000, (B, T), generator=g)
    ids[:, 20] = 3  # a separator in every row
    return {"input_ids": ids, "special_tokens_mask": ids < 5, "positions": torch.arange(B) * 1000,
            "slot": torch.tensor(0)}


@pytest.mark.parametrize("options", [{}, {"reuse_len": 32}, {"num_predict": 5}, {"perm_k": 4, "reuse_len": 16}])
def test_partial_prediction_targets_and_permutation_masks(options):
    cfg = XLNetConfig(**{**SMALL, "vocab_size": 1000})
    obj = PermutationLM.create(cfg, SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, num_special=5), 1000, **options)
    B, T = 4, 64
    batch = obj.prepare(stream_batch(B, T), torch.Generator().manual_seed(7))
    again = obj.prepare(stream_batch(B, T), torch.Generator().manual_seed(7))
    assert all(torch.equal(batch[k], again[k]) for k in ("perm_mask", "target_mapping", "plm_labels"))
    K, cap = options.get("perm_k", 6), options.get("num_predict")
    P = min(round(T / K), cap) if cap else round(T / K)
    perm, mapping, labels = batch["perm_mask"], batch["target_mapping"], batch["plm_labels"]
    assert mapping.shape == (B, P, T) and perm.shape == (B, T, T)
    counts = labels.ne(IGNORE).sum(1)
    assert bool((counts == P).all())  # about T / K: exactly the goal when enough tokens are free, never more
    for b in range(B):
        where = mapping[b].argmax(1)[: int(counts[b])]
        assert not bool(batch["special_tokens_mask"][b, where].any())  # separators are never targets
        assert torch.equal(labels[b, : int(counts[b])], batch["input_ids"][b, where])
        assert bool(perm[b, where, where].all())  # a target never sees itself
        others = torch.ones(T, dtype=torch.bool)
        others[where] = False
        context = others & ~batch["special_tokens_mask"][b]
        R = options.get("reuse_len") or 0  # context is seen by every query of its block and of later blocks
        assert not bool(perm[b][R:][:, context].any()) and not bool(perm[b][:R, :R][:, context[:R]].any())
        if R:
            assert bool(perm[b, :R, R:].all()) and not bool(perm[b, R:, :R].any())
    differ = obj.prepare(stream_batch(B, T), torch.Generator().manual_seed(8))
    assert not torch.equal(differ["perm_mask"], perm)


def test_config_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="objective=plm needs two-stream attention"):
        build(make_cfg("model=bert", "objective=plm", "logger.mode=disabled"))
    with pytest.raises(ConfigError, match=r"model.position='rope' is an option of the BERT-family encoder"):
        build(make_cfg("model=xlnet", "model.position=rope", "logger.mode=disabled"))
    res = cli("model=xlnet", "objective.perm_k=0", "logger.mode=disabled", run_dir=tmp_path / "bad")
    assert res.returncode != 0
    err = [x for x in res.stderr.strip().splitlines() if x.strip()]
    assert len(err) == 1 and "objective.perm_k=0 must be >= 1" in err[0], res.stderr


def test_the_probe_score_is_each_token_predicted_from_all_the_others():
    """sentence_scores (the probes' scorer): the sum over tokens of log p(token j | every other token), token j's
    content hidden from every position; checked token by token against one-row forwards."""
    cfg = make_cfg("model=xlnet", "model.num_layers=2", "model.hidden_size=32", "model.num_heads=2",
                   "model.intermediate_size=64", "model.vocab_size=1000", "data.max_docs=300", "data.seq_len=32",
                   "objective.reuse_len=16", "trainer.max_steps=0", "logger.mode=disabled")
    built = build(cfg)
    enc, obj = built.module.encoder, built.objective
    sentence = [20, 30, 40, 50, 60]
    score = obj.sentence_scores(enc, [sentence, [7]], built.data.specials)["pll"]
    enc.eval()
    expected = 0.0
    with torch.no_grad():
        for j, token in enumerate(sentence):
            perm = torch.zeros(1, 5, 5, dtype=torch.bool)
            perm[0, :, j] = True
            target = torch.zeros(1, 1, 5)
            target[0, 0, j] = 1
            g = enc.streams(torch.tensor([sentence]), perm_mask=perm, target_mapping=target, mem_len=0)[0]
            expected += float(torch.log_softmax(obj.logits(enc, g[:, 0]), -1)[0, token])
    assert float(score[0]) == pytest.approx(expected, rel=1e-5)
    assert score[1] < 0
