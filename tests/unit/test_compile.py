"""trainer.compile=true: the training forward and loss of every family trace as one graph, with no break: the
masked objectives (the padding check and the masked-position gather used to split it), ELECTRA (its samples use
per-token uniforms drawn in the data pipeline, not a Generator inside the step) and Transformer-XL (the adaptive
softmax runs every cluster without branching on its size, and a row that does not continue its memory is masked
rather than branched on)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo as dynamo

from runner.build import build
from runner.engine.feeds import build_feed
from runner.engine.parallel import capture_data_dependent_ops
from tests.conftest import TINY, make_cfg

# Transformer-XL small enough for the CPU (tests/integration/test_txl_run.py's TXL_TINY without its run keys)
TXL = ["model=txl", "model.cutoffs=[200,500]", "model.mem_len=16", "data.seq_len=16", "trainer.batch_size=4"]


@pytest.mark.parametrize("overrides", [
    ["model=bert", "objective=mlm"],
    ["model=bert", "objective=mlm_nsp"],  # static masks, the pair head
    ["model=albert", "objective=mlm_sop"],  # shared layers, n-gram spans
    ["model=roberta"],  # dynamic masks, padding-aware positions
    ["model=modernbert"],  # rotary positions, GeGLU, pre-norm, sliding windows
    ["model=bert", "objective=mlm", "model.position=alibi", "model.local_window=16", "model.global_every=2"],
    ["model=electra"],  # objective=rtd: generator, sampling, discriminator
    TXL,  # objective=clm, adaptive embeddings and softmax; the second step, with memory
    [*TXL, "objective=mlm", "model.bidirectional=true", "model.cutoffs=[]"],  # two-way, with memory
    [*TXL, "objective.reset=document"],  # document resets: the separator mask over segment and memory
], ids=["bert-mlm", "bert-mlm_nsp", "albert-mlm_sop", "roberta-mlm", "modernbert-mlm", "bert-alibi-window",
        "electra-rtd", "txl-clm", "txl-mlm-bidirectional", "txl-clm-document-reset"])
def test_the_training_forward_and_loss_trace_as_one_graph(overrides):
    cfg = make_cfg(*TINY, *overrides, "trainer.max_steps=0")
    built = build(cfg)
    feed = build_feed(built, cfg)
    txl = "model=txl" in overrides
    if txl:  # a first step stores the memory, so the traced step reads and updates it
        first = feed.get(0)
        built.module(first, {k: float(v) for k, v in built.objective.normalizers(first).items()})
        assert built.module.encoder.memory
    batch = feed.get(1 if txl else 0)
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


def test_electra_gives_the_same_loss_compiled_and_eager():
    """The generator's samples come from the batch's per-token uniforms, so the compiled step replaces the same
    tokens as the eager one."""
    cfg = make_cfg(*TINY, "model=electra", "model.hidden_dropout=0", "model.attention_dropout=0",
                   "trainer.max_steps=0")
    built = build(cfg)
    batch = build_feed(built, cfg).get(0)
    norms = {k: float(v) for k, v in built.objective.normalizers(batch).items()}
    eager, eager_stats = built.module(batch, norms)
    capture_data_dependent_ops()
    dynamo.reset()
    compiled, stats = torch.compile(built.module, backend="eager")(batch, norms)
    torch.testing.assert_close(compiled, eager, rtol=1e-6, atol=1e-6)
    assert int(stats["disc_replaced"]) == int(eager_stats["disc_replaced"]) > 0  # the same replacements


def test_transformer_xl_keeps_its_memory_compiled_as_eager():
    """Micro-batches (slots 0 and 1) continue their own memories step after step, compiled as eager; the losses
    and the memories stay equal."""
    cfg = make_cfg(*TINY, *TXL, "trainer.grad_accum=2", "model.hidden_dropout=0", "model.attention_dropout=0",
                   "trainer.max_steps=0")
    built = build(cfg)
    feed = build_feed(built, cfg)
    twin = copy.deepcopy(built.module)
    capture_data_dependent_ops()
    dynamo.reset()
    compiled = torch.compile(twin, backend="eager", dynamic=True)
    for i in range(6):
        b = feed.get(i)
        norms = {k: float(v) for k, v in built.objective.normalizers(b).items()}
        torch.testing.assert_close(compiled(b, norms)[0], built.module(b, norms)[0], rtol=1e-6, atol=1e-6)
    ours, theirs = twin.encoder.memory, built.module.encoder.memory
    assert set(ours) == set(theirs) == {0, 1}
    for slot in theirs:
        assert torch.equal(ours[slot].next_positions, theirs[slot].next_positions)
        torch.testing.assert_close(ours[slot].layers[0], theirs[slot].layers[0], rtol=1e-6, atol=1e-6)
