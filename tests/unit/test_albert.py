"""ALBERT (Lan et al. 2020): factorized embeddings and cross-layer sharing against transformers' AlbertFor*,
sentence-order prediction, LAMB, and the composed `model=albert` recipe end to end.
The tests of this file that train or start a process: tests/integration/test_albert.py."""
from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest
import torch

from runner.build import Pretrainer, build, encoder_config, parameter_counts
from runner.data.tokenizer import SpecialIds
from runner.config.errors import ConfigError
from runner.models.config import EncoderConfig
from runner.models.encoder import Encoder
from runner.hf.mapping import build_hf_model, hf_config, hf_model_class, load_hf_weights, to_hf_state_dict
from runner.objectives.mlm import MaskedLM
from runner.objectives.mlm_nsp import MaskedLMWithNSP
from runner.objectives.mlm_sop import MaskedLMWithSOP
from runner.engine.optim import Lamb, build_adamw, build_lamb
from runner.build import validate
from tests.conftest import TINY, make_cfg, cli
from tests.unit.test_models import assert_logits_match, assert_weights_round_trip


SP = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, num_special=5)


# transformers' AlbertForMaskedLM counts from ../shared/reference/papers.md (tied decoder counted once)
REFERENCE = {"albert_base": 11_221_680, "albert_large": 16_795_824, "albert_xlarge": 54_821_040,
             "albert_xxlarge": 206_368_944}


SMALL_ALBERT = [*TINY, "model=albert", "model.embedding_size=16", "trainer.export_hf=false"]


def pretrainer(config: EncoderConfig, sop: bool) -> Pretrainer:
    """Encoder + objective heads, as a run builds them."""
    config = dataclasses.replace(config, pad_token_id=SP.pad)
    return Pretrainer(Encoder(config), (MaskedLMWithSOP if sop else MaskedLM).create(config, SP, config.vocab_size, span="token"))


def tiny(share: str = "all", **kw) -> EncoderConfig:
    """A small ALBERT whose embedding width (16) differs from its hidden size (48)."""
    base = dict(name="albert_tiny", family="albert", vocab_size=120, embedding_size=16, hidden_size=48,
                num_layers=3, num_heads=4, intermediate_size=96, max_position_embeddings=66, activation="gelu_new",
                hidden_dropout=0.0, attention_dropout=0.0, share=share, tokenizer="unigram")
    return EncoderConfig(**{**base, **kw})


def inputs():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 120, (3, 20), generator=g)
    mask = torch.ones_like(ids)
    ids[1, 14:], mask[1, 14:] = SP.pad, 0  # padding must be handled identically
    types = torch.zeros_like(ids)
    types[:, 10:] = 1
    return ids, types, mask


@pytest.mark.parametrize("model", sorted(REFERENCE))
@pytest.mark.parametrize("sop", [False, True])
def test_preset_counts_equal_transformers_albert(model, sop):
    config = encoder_config(make_cfg(f"model={model}"))
    assert (config.family, config.share, config.embedding_size, config.activation) == ("albert", "all", 128,
                                                                                        "gelu_new")
    with torch.device("meta"):
        ours = pretrainer(config, sop)
        theirs = hf_model_class("albert", sop)(hf_config(ours.encoder.config, sop, {}))
    expected = sum(p.numel() for p in theirs.parameters())
    assert parameter_counts(ours)["total"] == expected
    if not sop:
        assert expected == REFERENCE[model]
    else:  # AlbertForPreTraining adds the pooler (H x H + H) and sop_classifier (2H + 2)
        h = config.hidden_size
        assert expected == REFERENCE[model] + h * h + h + 2 * h + 2
    assert set(to_hf_state_dict(ours, "albert")) <= set(theirs.state_dict())


def test_partial_sharing_counts_the_shared_block_once():
    h, f, layers = 48, 96, 3
    attention, ffn = 4 * (h * h + h), h * f + f + f * h + h
    counts = {s: parameter_counts(pretrainer(tiny(s), False))["encoder_layers"] for s in ("none", "attention", "ffn",
                                                                                         "all")}
    norms = 2 * 2 * h
    assert counts["none"] == layers * (attention + ffn + norms)
    assert counts["attention"] == attention + layers * (ffn + norms)
    assert counts["ffn"] == ffn + layers * (attention + norms)
    assert counts["all"] == attention + ffn + norms


@pytest.mark.parametrize("share,sop", [("all", False), ("all", True), ("none", True)])
def test_logits_equal_transformers_on_identical_weights(share, sop):
    torch.manual_seed(0)
    ours = pretrainer(tiny(share), sop).eval()
    theirs = build_hf_model(ours, ours.encoder.config, sop)
    assert theirs.config.num_hidden_groups == (1 if share == "all" else 3)
    assert_logits_match(ours, theirs, *inputs(), "sop_logits" if sop else None)


@pytest.mark.parametrize("family", ["bert", "albert"])
def test_either_pair_head_exports_into_the_familys_slot(family):
    """NSP and SOP heads have one shape: BERT + objective=mlm_sop and ALBERT + objective=mlm_nsp export too."""
    torch.manual_seed(0)
    config = tiny("all") if family == "albert" else dataclasses.replace(
        tiny("none"), family="bert", embedding_size=None, activation="gelu", tokenizer="wordpiece")
    objective = (MaskedLMWithNSP if family == "albert" else MaskedLMWithSOP).create(config, SP, config.vocab_size, span="token")
    ours = Pretrainer(Encoder(config), objective).eval()
    theirs = build_hf_model(ours, config, True)
    ids, types, mask = inputs()
    with torch.no_grad():
        pair = ours.objective.pair_head(ours.encoder(ids, types, mask))
        out = theirs(input_ids=ids, token_type_ids=types, attention_mask=mask)
    ref = out.sop_logits if family == "albert" else out.seq_relationship_logits
    assert (pair - ref).abs().max() <= 1e-4


def test_load_hf_weights_round_trip_and_share_mismatch(tmp_path):
    assert_weights_round_trip(tiny("all"), tmp_path)
    unshared = pretrainer(tiny("none"), True)
    with pytest.raises(ConfigError, match="model.share=none needs num_hidden_groups=3"):
        load_hf_weights(unshared, unshared.encoder.config, str(tmp_path))
    ablation = pretrainer(tiny("ffn"), True)
    with pytest.raises(ConfigError, match="model.share=ffn has no transformers counterpart"):
        build_hf_model(ablation, ablation.encoder.config, True)


@pytest.mark.parametrize("share", ["all", "attention", "ffn"])
def test_shared_tensor_gets_the_sum_of_every_layers_gradient(share):
    """A shared model equals an unshared one holding copies of the shared tensors; each shared tensor's gradient
    is the sum of the copies' gradients (every application contributes), every other gradient matches alone."""
    torch.manual_seed(0)
    tied = Encoder(tiny(share))
    untied = Encoder(tiny("none"))
    n = len(tied.layers)

    def tied_name(name: str) -> str:  # share=all: layers.i.* is the one layer's layers.0.*
        return re.sub(r"layers\.(\d+)\.", lambda m: f"layers.{int(m[1]) % n}.", name)

    untied.load_state_dict({k: tied.get_parameter(tied_name(k)) for k, _ in untied.named_parameters()})
    ids, types, mask = inputs()
    w = torch.randn(3, 20, 48, generator=torch.Generator().manual_seed(1))
    out_tied, out_untied = tied(ids, types, mask), untied(ids, types, mask)
    assert torch.allclose(out_tied, out_untied, atol=1e-5)
    (out_tied * w).sum().backward()
    (out_untied * w).sum().backward()
    expected: dict[int, torch.Tensor] = {}
    for k, p in untied.named_parameters():
        t = tied.get_parameter(tied_name(k))
        expected[id(t)] = expected.get(id(t), 0) + p.grad
    shared = 0
    for k, t in tied.named_parameters():
        copies = sum(tied.get_parameter(tied_name(u)) is t for u, _ in untied.named_parameters())
        shared += copies > 1
        assert t.grad is not None and t.grad.abs().sum() > 0, k
        assert torch.allclose(t.grad, expected[id(t)], atol=1e-5), k
    # share=all: the whole layer (16 tensors); attention: query/key/value/out (8); ffn: intermediate/output (4)
    assert shared == {"all": 16, "attention": 8, "ffn": 4}[share]


def test_share_all_keeps_one_tensor_per_name():
    enc = Encoder(tiny("all", num_layers=6))
    names = list(enc.state_dict())
    assert len(enc.layers) == 1 and not any(k.startswith("layers.1.") for k in names)
    assert len(names) == len(dict(enc.named_parameters()))  # no duplicate keys for the same tensor
    partial = Encoder(tiny("attention"))
    assert all(layer.attention is partial.layers[0].attention for layer in partial.layers)
    assert all(layer.intermediate is not partial.layers[0].intermediate for layer in partial.layers[1:])


def _norm(xs):
    return math.sqrt(sum(x * x for x in xs))


@pytest.mark.parametrize("bias_correction", [True, False])
def test_lamb_step_matches_hand_computation(bias_correction):
    lr, b1, b2, eps, wd = 0.01, 0.9, 0.999, 1e-6, 0.1
    w0, g = [0.5, -1.0, 2.0, 0.25], [0.1, 0.2, -0.3, 0.05]
    bias0, gb = [0.3, -0.2], [0.4, -0.1]
    w, bias, zero = (torch.tensor(w0, requires_grad=True), torch.tensor(bias0, requires_grad=True),
                     torch.zeros(4, requires_grad=True))
    w.grad, bias.grad, zero.grad = torch.tensor(g), torch.tensor(gb), torch.tensor(g)
    opt = Lamb([{"params": [w, zero], "weight_decay": wd, "adapt": True},
                {"params": [bias], "weight_decay": 0.0, "adapt": False}],
               lr=lr, betas=(b1, b2), eps=eps, bias_correction=bias_correction)
    opt.step()

    def adam(gs):  # first step: m = (1 - b1) g, v = (1 - b2) g^2, bias-corrected to g and g^2
        m, v = [(1 - b1) * x for x in gs], [(1 - b2) * x * x for x in gs]
        if bias_correction:
            m, v = [x / (1 - b1) for x in m], [x / (1 - b2) for x in v]
        return [mi / (math.sqrt(vi) + eps) for mi, vi in zip(m, v)]

    update = [a + wd * x for a, x in zip(adam(g), w0)]
    trust = _norm(w0) / _norm(update)
    assert w.tolist() == pytest.approx([x - lr * trust * u for x, u in zip(w0, update)], rel=1e-5)
    # ||w|| = 0: trust ratio 1, the plain decoupled-decay Adam step
    assert zero.tolist() == pytest.approx([-lr * a for a in adam(g)], rel=1e-5)
    # biases (and LayerNorm): no decay, no trust ratio
    assert bias.tolist() == pytest.approx([x - lr * a for x, a in zip(bias0, adam(gb))], rel=1e-5)


def test_build_lamb_groups_and_schedule_follow_adamw():
    module = pretrainer(tiny("all"), False)
    lamb, lamb_sched = build_lamb(module, max_steps=100, lr=1e-3, betas=[0.9, 0.999], eps=1e-6, weight_decay=0.01,
                                  warmup_fraction=0.1)
    adamw, adamw_sched = build_adamw(module, max_steps=100, lr=1e-3, betas=[0.9, 0.999], eps=1e-6,
                                     weight_decay=0.01, warmup_fraction=0.1)
    decay, no_decay = lamb.param_groups
    assert (decay["adapt"], decay["weight_decay"], no_decay["adapt"], no_decay["weight_decay"]) == (True, 0.01, False,
                                                                                                  0.0)
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert [len(g["params"]) for g in lamb.param_groups] == [len(g["params"]) for g in adamw.param_groups]
    lrs = []
    for _ in range(100):
        lrs.append((lamb_sched.get_last_lr()[0], adamw_sched.get_last_lr()[0]))
        lamb.step()  # no gradients: nothing moves, but the schedule is stepped in the usual order
        adamw.step()
        lamb_sched.step()
        adamw_sched.step()
    assert all(a == b for a, b in lrs) and lrs[9][0] == pytest.approx(1e-3)


def test_albert_preset_picks_its_paper_recipe():
    cfg = make_cfg("model=albert")
    validate(cfg)
    assert (cfg.objective.name, cfg.objective.span, cfg.objective.max_ngram, cfg.optimizer.name) == (
        "mlm_sop", "ngram", 3, "lamb_cpu")  # the CPU preset raises LAMB's lr for batch 32 x 400 steps
    assert cfg.optimizer._target_ == "runner.engine.optim.build_lamb" and cfg.optimizer.eps == pytest.approx(1e-6)
    for size in ("base", "large", "xlarge", "xxlarge"):  # the paper presets keep the paper's LAMB lr
        paper = make_cfg(f"model=albert_{size}").optimizer
        assert (paper.name, paper.lr, paper.warmup_fraction) == ("lamb", pytest.approx(0.00176), 0.025)
    assert make_cfg("model=albert", "objective=mlm", "optimizer=adamw").optimizer.name == "adamw"
    with pytest.raises(ConfigError, match="model.share='layers'"):
        validate(make_cfg("model=albert", "model.share=layers"))
    paper = make_cfg("experiment=albert_base_paper")
    validate(paper)
    assert (paper.model.name, paper.objective.name, paper.optimizer.name, paper.trainer.max_steps) == (
        "albert_base", "mlm_sop", "lamb", 125_000)
    assert paper.trainer.batch_size * paper.trainer.grad_accum == 4096 and paper.data.seq_len == 512


def test_sop_trains_on_sop_pairs_only():
    built = build(make_cfg(*SMALL_ALBERT, "trainer.max_steps=0"))
    assert built.data.format == "sop_pair"
    with pytest.raises(ConfigError) as e:
        build(make_cfg(*SMALL_ALBERT, "data.format=segment_pair", "trainer.max_steps=0"))
    assert "\n" not in str(e.value) and "data.format=sop_pair" in str(e.value)


def test_cli_sop_without_segment_embeddings_is_a_one_line_error(tmp_path):
    r = cli(*TINY, "model=roberta", "objective=mlm_sop", "trainer.max_steps=0", run_dir=tmp_path / "run")
    assert r.returncode == 2
    out = r.stderr + r.stdout
    assert "objective=mlm_sop needs model.type_vocab_size >= 2" in out and "Traceback" not in out


def test_cli_build_only_albert_large(tmp_path):
    r = cli("model=albert_large", "data.max_docs=300", "trainer.max_steps=0", "logger.mode=disabled",
                run_dir=tmp_path)
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "summary.json").read_text())
    h = 1024
    assert s["steps"] == 0 and s["parameters"]["total"] == REFERENCE["albert_large"] + h * h + h + 2 * h + 2
    assert s["parameters"]["total"] == sum(v for k, v in s["parameters"].items() if k != "total")
    counts = s["preset_parameters"]
    assert counts["albert_large"] / counts["bert_large"] == pytest.approx(16_795_824 / 335_174_458, abs=1e-4)
