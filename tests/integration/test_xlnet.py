"""XLNet (runner/models/xlnet.py) and objective=plm (runner/objectives/plm.py): parameter counts and logits equal to
transformers' XLNetLMHeadModel, two-stream attention term by term, the query stream blind to its own content,
partial-prediction targets, a short run that learns, and one-line config errors.
This file holds the tests that train or start a process; the others: tests/unit/test_xlnet.py."""
from __future__ import annotations

import pytest
import torch

from runner.build import build
from runner.run import run
from tests.conftest import make_cfg


transformers = pytest.importorskip("transformers")


def test_short_run_lowers_the_plm_loss_and_exports_to_transformers(tmp_path):
    shape = ["model=xlnet", "model.num_layers=1", "model.hidden_size=32", "model.num_heads=2",
             "model.intermediate_size=64", "model.vocab_size=1000", "model.mem_len=16", "data.max_docs=300",
             "data.seq_len=32", "objective.reuse_len=16", "trainer.batch_size=8", "trainer.eval_batches=2",
             "probes.enabled=false", "logger.mode=disabled", "eval.downstream=false"]
    cfg = make_cfg(*shape, "trainer.max_steps=30", "trainer.eval_every=30", "optimizer.lr=5e-3")
    built = build(cfg)
    s = run(cfg, built, tmp_path)
    # hf/: transformers' XLNetLMHeadModel with our weights, and a new run starts from it (model.init_from)
    import transformers

    theirs = transformers.XLNetLMHeadModel.from_pretrained(tmp_path / "hf")
    assert s["exported_parameters"]["hf"] == theirs.num_parameters()
    again = build(make_cfg(*shape, "trainer.max_steps=0", f"model.init_from={tmp_path / 'hf'}"))
    for name, tensor in built.module.state_dict().items():
        if not name.endswith("_extra_state"):
            assert torch.equal(again.module.state_dict()[name], tensor), name
    first, last = s["initial_val"], s["final_val"]
    assert last["plm_loss"] < first["plm_loss"] - 0.5
    assert 0.1 < last["predicted_fraction"] < 0.25
    assert s["parameters"]["lm_head"] == 1000
    memory = built.module.encoder.memory[0]
    assert memory.layers[0].shape == (8, 16, 32)  # the memory: the last 16 of the reused 16-token prefixes
