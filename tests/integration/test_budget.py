"""Training budgets: steps, tokens, FLOPs or minutes end the run, and the schedule spans the budget.
This file holds the tests that train or start a process; the others: tests/unit/test_budget.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.build import build
from runner.run import run
from runner.engine.loop import Trainer
from tests.conftest import TINY, make_cfg


pytestmark = pytest.mark.slow


def lrs(run_dir: Path) -> list[float]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["train/lr"] for r in rows if "train/lr" in r]


@pytest.mark.parametrize("model", ["roberta", "electra"])  # ELECTRA's FLOPs include its generator
def test_flops_budget_stops_at_the_first_step_that_reaches_it(tmp_path, model):
    base = [*TINY, f"model={model}", "trainer.log_every=1", "trainer.export_hf=false", "optimizer.warmup_fraction=0"]
    probe = Trainer(make_cfg(*base), build(make_cfg(*base)), tmp_path / "probe")
    per_step = probe.objective.train_flops(probe.encoder, probe.feed.batches.get(0))  # one micro-batch per step (grad_accum 1)
    budget = 5.5 * per_step
    cfg = make_cfg(*base, f"trainer.budget.flops={budget}", "trainer.max_steps=1000")
    s = run(cfg, build(cfg), tmp_path / "run")
    assert s["steps"] == 6 and s["max_steps"] == 6  # planned from the step's cost, not trainer.max_steps
    assert budget <= s["train_flops"] < budget + per_step * 1.01
    assert s["budget"] == {"kind": "flops", "amount": budget, "used": s["train_flops"], "complete": True}
    lr = lrs(tmp_path / "run")
    assert lr[0] > lr[-1] > 0 and len(lr) == 6  # linear decay over the 6 planned steps


def test_tokens_budget_counts_the_tokens_read(tmp_path):
    cfg = make_cfg(*TINY, "model=roberta", "trainer.budget.tokens=2000", "trainer.export_hf=false",
                   "trainer.log_every=1")
    s = run(cfg, build(cfg), tmp_path)
    seen = [json.loads(x)["train/tokens"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()
            if "train/loss" in x]
    assert seen[-1] == s["tokens_seen"] >= 2000 > seen[-2]  # padding not counted; stopped at the first step past


def test_minutes_budget_follows_the_clock(tmp_path):
    cfg = make_cfg(*TINY, "model=roberta", "trainer.budget.minutes=0.05", "trainer.log_every=1",
                   "trainer.eval_every=1000", "trainer.export_hf=false", "optimizer.warmup_fraction=0")
    s = run(cfg, build(cfg), tmp_path)
    assert s["budget"]["complete"] and s["train_time_s"] >= 3.0
    assert s["train_time_s"] < 3.0 + 2.0  # stops at the first step past the budget (steps take well under 2 s)
    lr = lrs(tmp_path)
    assert lr[-1] < 0.5 * lr[0]  # the schedule ran down with the time spent
