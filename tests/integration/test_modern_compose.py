"""Every modern encoder option (one override each on model=bert) composes with every objective of the BERT family
(mlm, mlm_nsp, mlm_sop, rtd), builds with trainer.max_steps=0 and takes one forward/backward with a finite loss;
a few all-options-at-once combinations train two steps end to end; ELECTRA's generator shares what tables exist.
This file holds the tests that train or start a process; the others: tests/unit/test_modern_compose.py."""
from __future__ import annotations

import math

import pytest
import torch

from runner.build import build
from runner.run import run
from tests.conftest import TINY, make_cfg
from tests.unit.test_modern_compose import BASE


ALL_ROPE = ["model.position=rope", "model.rope_theta=160000", "model.local_rope_theta=10000", "model.ffn=swiglu",
            "model.norm_position=pre", "model.norm=rmsnorm", "model.bias=false", "model.local_window=16",
            "model.global_every=2", "model.qkv=fused", "model.type_vocab_size=0", "model.embedding_norm=false"]


ALL_ALIBI = ["model.position=alibi", "model.ffn=geglu", "model.norm_position=pre", "model.bias=false",
             "model.local_window=16", "model.global_every=2", "model.qkv=fused"]


@pytest.mark.parametrize("options,objective", [(ALL_ROPE, "mlm"), (ALL_ROPE, "rtd"), (ALL_ALIBI, "mlm_nsp"),
                                               (ALL_ALIBI, "rtd")], ids=["rope-mlm", "rope-rtd", "alibi-mlm_nsp",
                                                                         "alibi-rtd"])
def test_all_options_at_once_train_two_steps(options, objective, tmp_path):
    cfg = make_cfg(*BASE, f"objective={objective}", *options, "trainer.max_steps=2", "trainer.eval_every=100",
                   "trainer.log_every=1")
    built = build(cfg)
    before = {n: p.detach().clone() for n, p in built.module.named_parameters()}
    summary = run(cfg, built, tmp_path)  # export_hf on: a model no transformers class holds is skipped, not fatal
    assert summary["steps"] == 2 and math.isfinite(summary["final_train_loss"])
    assert all(math.isfinite(v) for v in summary["final_val"].values() if isinstance(v, float))
    after = dict(built.module.named_parameters())
    assert any(not torch.equal(before[n], after[n].detach().cpu()) for n in before)  # the optimizer stepped


@pytest.mark.parametrize("objective", ["mlm", "rtd"])
def test_modernbert_trains_any_objective_and_skips_exports_transformers_cannot_hold(objective, tmp_path, capsys):
    """model=modernbert with its own recipe (mlm) exports ModernBertForMaskedLM; with objective=rtd it trains a
    ModernBERT-shaped ELECTRA and skips the export (ELECTRA's classes have no rotary positions) with a note."""
    s = run(cfg := make_cfg(*TINY, "model=modernbert", f"objective={objective}", "trainer.max_steps=2",
                            "trainer.eval_every=100", "probes.pairs=10"), build(cfg), tmp_path)
    assert s["steps"] == 2 and math.isfinite(s["final_train_loss"])
    if objective == "mlm":
        assert cfg.objective.mask_prob == 0.3 and (tmp_path / "hf" / "config.json").is_file()
        assert s["exported_parameters"]["hf"] == s["parameters"]["total"]  # ModernBertForMaskedLM holds exactly ours
    else:
        assert s["hf_export"] is None and "skipped the hf/ export" in capsys.readouterr().err
