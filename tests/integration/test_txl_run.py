"""Transformer-XL through the runner: objective=clm on contiguous streams, the memory across steps and checkpoints,
the three-way evaluation, presets, and one-line errors for combinations that cannot work.
This file holds the tests that train or start a process; the others: tests/unit/test_txl_run.py."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from runner.store import checkpoint
from runner.build import build
from runner.run import run
from runner.engine.loop import Trainer
from tests.conftest import make_cfg
from tests.unit.test_txl_run import TXL_TINY


def train(run_dir: Path, *overrides: str) -> dict:
    clm = [] if "objective=mlm" in overrides else ["objective.compare_tokens=16"]  # clm's comparison, kept small
    cfg = make_cfg(*TXL_TINY, *clm, *overrides)
    return run(cfg, build(cfg), run_dir)


@pytest.mark.slow
def test_short_run_learns_and_compares_evaluation_contexts(tmp_path):
    s = train(tmp_path, "trainer.max_steps=40", "optimizer.lr=5e-3", "trainer.eval_every=20")
    assert s["final_val"]["lm_loss"] < s["initial_val"]["lm_loss"] - 0.5
    assert s["train_flops"] > 0 and s["tokens_seen"] == 40 * 4 * 16
    ctx = s["context_comparison"]
    assert ctx["attention_length"] == 48 and ctx["tgt_len"] == 16 and ctx["mem_len"] == 32
    assert {"memory", "no_memory", "sliding_window", "speedup_vs_sliding", "ppl_gain_from_memory"} <= set(ctx)
    assert ctx["sliding_window"]["tokens_per_s"] > 0 and ctx["memory"]["perplexity"] > 1
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = set().union(*lines)
    assert {"context/speedup_vs_sliding", "context/ppl_gain_from_memory", "context/memory_perplexity",
            "context/sliding_window_perplexity", "val/lm_loss", "val/perplexity"} <= logged


@pytest.mark.slow
def test_resume_keeps_the_memory_bit_for_bit(tmp_path):
    common = ["trainer.max_steps=8", "trainer.checkpoint_every=100", "trainer.eval_every=4", "trainer.log_every=1",
              "objective.compare_tokens=0"]
    full = train(tmp_path / "full", *common)
    train(tmp_path / "split", *common, "trainer.stop_after=4")
    state = checkpoint.load(tmp_path / "split")
    memory = state["module"]["encoder._extra_state"]
    assert set(memory) == {0} and len(memory[0]["layers"]) == 1 and memory[0]["layers"][0].shape == (4, 16, 32)
    assert int(memory[0]["next_positions"][0]) == 4 * 16  # row 0 continues after its fourth segment of 16
    resumed = train(tmp_path / "split", *common, "trainer.resume=true")
    assert resumed["final_train_loss"] == full["final_train_loss"]
    assert resumed["final_val"] == full["final_val"]


@pytest.mark.slow
def test_masked_lm_on_a_bidirectional_txl_with_memory(tmp_path):
    """XLNet's backbone trained by masking: two-way relative attention over the segment and the memory of the
    previous one; masks are drawn per batch, and the memory carries across steps as for objective=clm."""
    s = train(tmp_path, "objective=mlm", "model.bidirectional=true", "model.cutoffs=[]", "trainer.max_steps=40",
              "optimizer.lr=5e-3", "trainer.eval_every=20", "data.seq_len=32", "model.mem_len=32")
    assert s["final_val"]["mlm_loss"] < s["initial_val"]["mlm_loss"] - 0.5
    assert "context_comparison" not in s  # the next-token comparison is objective=clm's
    cfg = make_cfg(*TXL_TINY, "objective=mlm", "model.bidirectional=true", "model.cutoffs=[]")
    trainer = Trainer(cfg, build(cfg), tmp_path / "again")
    b0, b1 = trainer.feed.get(0), trainer.feed.get(1)
    assert (b0["labels"] != -100).any() and not torch.equal(b0["input_ids"], trainer.feed.batches.get(0)["labels"])
    assert torch.equal(b1["positions"], b0["positions"] + 16)  # rows continue: the memory is real context
    trainer.accumulate()
    assert set(trainer.built.module.encoder.memory) == {0}


@pytest.mark.slow
def test_character_level_reports_bits_per_character(tmp_path):
    s = train(tmp_path, "model.tokenizer=char", "model.vocab_size=300", "model.cutoffs=[]", "model.div_val=1",
              "trainer.max_steps=4", "trainer.eval_every=4", "objective.compare_tokens=0")
    val = s["final_val"]
    assert val["bpc"] == pytest.approx(val["lm_loss"] / math.log(2))
    assert s["data_stats"]["vocab_size"] <= 300
