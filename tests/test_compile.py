"""trainer.compile=true: the masked objectives' forward and loss trace as one graph, with no break (the padding
check and the masked-position gather used to split it). Objectives that still break are listed in
docs/performance.md (ELECTRA's seeded sampling, Transformer-XL's memory bookkeeping)."""
from __future__ import annotations

import pytest
import torch
import torch._dynamo as dynamo

from runner.build import build
from runner.feeds import build_feed
from runner.parallel import capture_data_dependent_ops
from tests.conftest import TINY, make_cfg


@pytest.mark.parametrize("overrides", [
    ["model=bert", "objective=mlm"],
    ["model=bert", "objective=mlm_nsp"],  # static masks, the pair head
    ["model=albert", "objective=mlm_sop"],  # shared layers, n-gram spans
    ["model=roberta"],  # dynamic masks, padding-aware positions
    ["model=modernbert"],  # rotary positions, GeGLU, pre-norm, sliding windows
    ["model=bert", "objective=mlm", "model.position=alibi", "model.local_window=16", "model.global_every=2"],
], ids=["bert-mlm", "bert-mlm_nsp", "albert-mlm_sop", "roberta-mlm", "modernbert-mlm", "bert-alibi-window"])
def test_the_training_forward_and_loss_trace_as_one_graph(overrides):
    cfg = make_cfg(*TINY, *overrides, "trainer.max_steps=0")
    built = build(cfg)
    batch = build_feed(built, cfg).get(0)
    batch["attention_mask"][-1, -3:] = 0  # a padded row, so the mask path is the one traced
    norms = {k: float(v) for k, v in built.objective.normalizers(batch).items()}
    capture_data_dependent_ops()
    dynamo.reset()
    explained = dynamo.explain(lambda b: built.module(b, norms)[0])(batch)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


def test_a_batch_without_padding_gives_the_same_loss_compiled_and_eager():
    """Compiled, the encoder always applies the attention mask (no data-dependent branch); a full batch's mask lets
    every key through, so the loss is the eager one, which skips the mask."""
    cfg = make_cfg(*TINY, "model=bert", "objective=mlm", "model.hidden_dropout=0", "model.attention_dropout=0",
                   "trainer.max_steps=0")
    built = build(cfg)
    batch = build_feed(built, cfg).get(0)
    batch = {k: v[:, :8] for k, v in batch.items()}  # the first 8 positions of every row: no padding
    batch["attention_mask"] = torch.ones_like(batch["attention_mask"])
    norms = {k: float(v) for k, v in built.objective.normalizers(batch).items()}
    eager = built.module(batch, norms)[0]
    capture_data_dependent_ops()
    dynamo.reset()
    compiled = torch.compile(built.module, backend="eager")(batch, norms)[0]
    assert torch.allclose(compiled, eager, rtol=1e-6, atol=1e-6)
