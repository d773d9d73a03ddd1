"""Every modern encoder option (one override each on model=bert) composes with every objective of the BERT family
(mlm, mlm_nsp, mlm_sop, rtd), builds with trainer.max_steps=0 and takes one forward/backward with a finite loss;
a few all-options-at-once combinations train two steps end to end; ELECTRA's generator shares what tables exist.
The tests of this file that train or start a process: tests/integration/test_modern_compose.py."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from runner.build import build
from runner.config.errors import ConfigError
from runner.run import run
from runner.engine.loop import Trainer
from tests.conftest import TINY, make_cfg


BASE = [*TINY, "model=bert", "model.num_layers=2"]  # two layers: with global_every=2 layer 1 is a local one


OBJECTIVES = ["mlm", "mlm_nsp", "mlm_sop", "rtd"]


PAIR_OBJECTIVES = ("mlm_nsp", "mlm_sop")  # a segment-pair head: needs two segment embeddings


OPTIONS = {
    "rope": ["model.position=rope"],
    "alibi": ["model.position=alibi"],
    "geglu": ["model.ffn=geglu"],
    "swiglu": ["model.ffn=swiglu"],
    "pre_norm": ["model.norm_position=pre"],
    "rmsnorm": ["model.norm=rmsnorm"],
    "no_bias": ["model.bias=false"],
    "window": ["model.local_window=16", "model.global_every=2"],
    "fused_qkv": ["model.qkv=fused"],
    "no_types": ["model.type_vocab_size=0"],
    "no_embedding_norm": ["model.embedding_norm=false"],
}


def has_option(enc: nn.Module, option: str) -> bool:
    """Whether the built encoder has the structure the option asks for (the override reached the modules)."""
    c, emb, layer = enc.config, enc.embeddings, enc.layers[0]
    return {
        "rope": c.position == "rope" and emb.position_embeddings is None,
        "alibi": c.position == "alibi" and emb.position_embeddings is None,
        "geglu": layer.intermediate.out_features == 2 * c.intermediate_size and c.ffn == "geglu",
        "swiglu": layer.intermediate.out_features == 2 * c.intermediate_size and c.ffn == "swiglu",
        "pre_norm": enc.final_norm is not None and layer.pre and (layer.attn_norm is None) == (c.embedding_size is None),
        "rmsnorm": isinstance(layer.ffn_norm, nn.RMSNorm) and isinstance(emb.norm, nn.RMSNorm),
        "no_bias": not [n for n, _ in enc.named_parameters() if n.endswith("bias")],
        "window": c.local_window == 16 and c.global_layer(0) and not c.global_layer(1),
        "fused_qkv": hasattr(layer.attention, "qkv") and not hasattr(layer.attention, "query"),
        "no_types": emb.token_type_embeddings is None,
        "no_embedding_norm": emb.norm is None,
    }[option]


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("option", list(OPTIONS))
def test_option_composes_with_objective(option, objective, tmp_path):
    cfg = make_cfg(*BASE, f"objective={objective}", *OPTIONS[option], "trainer.max_steps=0")
    if option == "no_types" and objective in PAIR_OBJECTIVES:
        with pytest.raises(ConfigError) as err:
            build(cfg)
        message = str(err.value)
        assert "\n" not in message and "model.type_vocab_size" in message and objective in message
        return
    built = build(cfg)
    enc = built.module.encoder
    assert has_option(enc, option)
    if objective == "rtd":  # the generator is built from the same config: the same option
        assert has_option(built.objective.generator, option)
    summary = run(cfg, built, tmp_path / "build")  # max_steps=0: build, count, write summary.json
    assert summary["steps"] == 0
    assert summary["parameters"]["total"] == sum(p.numel() for p in built.module.parameters())
    # one forward and backward on a real batch
    step = Trainer(cfg, built, tmp_path / "step").accumulate()
    assert math.isfinite(step["loss"]) and step["batch_tokens"] > 0
    grads = [p.grad for p in enc.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_rtd_generator_shares_only_the_tables_that_exist(tmp_path):
    """ELECTRA's generator shares the token table (and the embedding norm when there is one) with a rotary,
    segment-free discriminator: no position or segment table on either side, one word table trained by both."""
    for extra, shared_norm in (([], True), (["model.embedding_norm=false"], False)):
        cfg = make_cfg(*BASE, "objective=rtd", "model.position=rope", "model.type_vocab_size=0", *extra,
                       "trainer.max_steps=1")
        built = build(cfg)
        enc, gen = built.module.encoder.embeddings, built.objective.generator.embeddings
        assert gen.word_embeddings is enc.word_embeddings
        assert gen.position_embeddings is None and enc.position_embeddings is None
        assert gen.token_type_embeddings is None and enc.token_type_embeddings is None
        assert (gen.norm is enc.norm) if shared_norm else (gen.norm is None and enc.norm is None)
        assert gen.project is not None  # the shared E = H table projected to the generator's width
        params = list(built.module.parameters())
        assert len({id(p) for p in params}) == len(params)  # each shared tensor counted once
        step = Trainer(cfg, built, tmp_path / str(shared_norm)).accumulate()
        assert math.isfinite(step["loss"])
        assert torch.isfinite(enc.word_embeddings.weight.grad).all()
        assert enc.word_embeddings.weight.grad.abs().sum() > 0


def test_rope_generator_with_an_odd_head_width_is_a_config_error():
    cfg = make_cfg(*BASE, "objective=rtd", "model.hidden_size=36", "model.position=rope", "trainer.max_steps=1")
    with pytest.raises(ConfigError, match="rope"):
        build(cfg)


def test_modernbert_refuses_pair_objectives_naming_the_key():
    with pytest.raises(ConfigError, match="model.type_vocab_size") as e:
        build(make_cfg(*TINY, "model=modernbert", "objective=mlm_nsp", "trainer.max_steps=0"))
    assert "\n" not in str(e.value)
