"""Sweeps: W&B group and job names, the value sweepers optimise, failing jobs, Optuna, submitit, bert_improvements.
This file holds the tests that train or start a process; the others: tests/unit/test_sweep.py."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY, cli, run_cli

BUDGET = 0.55  # minutes of training in the requeued sweep job: more than the 30 s before submitit's timeout signal


def rows(sweep: Path) -> list[dict]:
    with (sweep / "comparison.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_a_crashing_job_never_stops_the_sweep_and_the_comparison_lists_it(tmp_path):
    sweep = tmp_path / "sweep"
    r = cli("-m", *TINY, "trainer.max_steps=2", "trainer.batch_size=0,8", "trainer.export_hf=false",
                f"hydra.sweep.dir={sweep}")
    assert r.returncode == 1, r.stdout + r.stderr  # the sweep ran to its end, then reports the failure
    assert "1 of 2 sweep jobs did not finish" in r.stderr  # the console is stderr; the table is stdout
    table = rows(sweep)
    assert [t["status"] for t in table] == ["failed", "finished"]
    assert "trainer.batch_size=0" in table[0]["error"]
    summary = json.loads((sweep / "1_bert_mlm_nsp" / "summary.json").read_text())
    assert summary["name"] == "trainer.batch_size=8"  # named by what the sweep varies
    assert summary["wandb_group"] == "sweep-sweep"  # one group: the sweep directory


@pytest.mark.slow
def test_optuna_sweeper_maximises_downstream_accuracy_over_two_trials(tmp_path):
    sweep = tmp_path / "optuna"
    r = cli("-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.seed=0",
                "optimizer.lr=interval(1e-4,1e-3)", *TINY, "model=roberta", "data.max_docs=1500",
                "trainer.max_steps=5", "eval.downstream=true", "eval.seeds=1", "eval.epochs=2", "eval.seq_len=64",
                "eval.baselines=false", "trainer.export_hf=false", f"hydra.sweep.dir={sweep}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "optuna: maximize sweep.metric=downstream.accuracy_mean" in r.stderr
    jobs = sorted(p for p in sweep.iterdir() if (p / "summary.json").is_file())
    assert len(jobs) == 2
    summaries = [json.loads((j / "summary.json").read_text()) for j in jobs]
    lrs = [yaml.safe_load((j / ".hydra" / "config.yaml").read_text())["optimizer"]["lr"] for j in jobs]
    assert len(set(lrs)) == 2 and all(1e-4 <= lr <= 1e-3 for lr in lrs)
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    accuracies = [s["downstream"]["accuracy_mean"] for s in summaries]
    assert result["best_value"] == pytest.approx(max(accuracies))
    assert result["best_params"]["optimizer.lr"] == pytest.approx(lrs[accuracies.index(max(accuracies))])
    assert len(rows(sweep)) == 2  # the sweep ended with the comparison


@pytest.mark.slow
def test_submitit_local_launcher_runs_the_jobs_and_ends_with_the_comparison(tmp_path):
    sweep = tmp_path / "submitit"
    # real processes here and below: submitit pickles python -m runner's task function (it runs as __main__) into
    # jobs that run in processes of their own, and signals them
    r = run_cli("-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", *TINY,
                "trainer.max_steps=2,3", "trainer.export_hf=false", f"hydra.sweep.dir={sweep}")
    assert r.returncode == 0, r.stdout + r.stderr
    table = rows(sweep)
    assert [(t["run"], t["status"], t["steps"]) for t in table] == \
        [("trainer.max_steps=2", "finished", "2"), ("trainer.max_steps=3", "finished", "3")]


@pytest.mark.slow
def test_submitit_tasks_per_node_run_one_job_on_several_ranks(tmp_path):
    """hydra.launcher.tasks_per_node=2: each task is a rank (submitit's environment exported for torch)."""
    sweep = tmp_path / "tasks"
    r = run_cli("-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                "hydra.launcher.tasks_per_node=2", *TINY, "trainer.max_steps=4", "trainer.threads=1",
                "trainer.export_hf=false", f"hydra.sweep.dir={sweep}")
    assert r.returncode == 0, r.stdout + r.stderr
    (summary,) = [json.loads(p.read_text()) for p in sweep.glob("*/summary.json")]
    assert (summary["world_size"], summary["effective_batch"], summary["steps"]) == (2, 16, 4)


@pytest.mark.slow
def test_submitit_timeout_signal_checkpoints_requeues_and_the_job_resumes(tmp_path):
    """submitit_local sends USR2 30 s after a job starts (its 1-minute limit less 30 s): the runner finishes the
    step, writes a checkpoint and hands the signal to submitit, which requeues the job; the requeued job resumes
    from that checkpoint (trainer.resume defaults to auto in submitit jobs). The run is BUDGET minutes (33 s) of
    training (a minutes budget, whose clock is checkpointed), more than the 30 s before the signal, so it needs at
    least two attempts on any machine; submitit allows four. Every step is logged exactly once, so no attempt
    started over."""
    sweep = tmp_path / "requeue"
    r = run_cli("-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=1", *TINY,
                f"trainer.budget.minutes={BUDGET}",
                "trainer.checkpoint_every=100000", "trainer.eval_every=100000", "trainer.threads=1",
                "trainer.export_hf=false", f"hydra.sweep.dir={sweep}", timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    (job,) = [p.parent for p in sweep.glob("*/summary.json")]
    logs = "".join(p.read_text() for p in sweep.glob(".submitit/*/*_0_log.*"))  # .out: submitit, .err: ours
    requeues = len(set(re.findall(r"Requeued job \S+ \((\d+) remaining timeouts\)", logs)))
    assert requeues >= 1, logs[-3000:]
    assert logs.count("stopped: SIGUSR2") == requeues  # each attempt wrote its checkpoint before submitit
    steps = [json.loads(ln)["step"] for ln in (job / "metrics.jsonl").read_text().splitlines() if "train/loss" in ln]
    assert len(steps) > 10 and steps == list(range(10, 10 * len(steps) + 1, 10))
    summary = json.loads((job / "summary.json").read_text())
    assert summary["budget"]["complete"] and summary["budget"]["used"] >= BUDGET and summary["steps"] >= steps[-1]


@pytest.mark.slow
def test_bert_improvements_runs_as_one_group_at_equal_flops_and_ends_with_the_comparison(tmp_path):
    sweep = tmp_path / "flagship"
    r = cli("experiment=bert_improvements", "model=bert,electra", "trainer.budget.flops=3e9", *TINY,
                "data.max_docs=1500", "eval.downstream=true", "eval.seeds=1", "eval.epochs=1", "eval.seq_len=64",
                "eval.baselines=false", "trainer.export_hf=false", f"hydra.sweep.dir={sweep}")
    assert r.returncode == 0, r.stdout + r.stderr
    summaries = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/summary.json"))]
    assert [s["name"] for s in summaries] == ["model=bert", "model=electra"]
    assert {s["wandb_group"] for s in summaries} == {"bert_improvements-flagship"}
    for s in summaries:  # each ends within a step of the shared budget (planned from step 0's cost; ELECTRA's
        per_step = s["train_flops"] / s["steps"]  # steps vary a little with the number of masked tokens)
        assert abs(s["train_flops"] - 3e9) < per_step and s["budget"]["complete"]
        assert s["downstream"]["task"] == "wiki_topic"
    table = rows(sweep)
    assert [(t["overrides"], t["status"]) for t in table] == [("model=bert", "finished"),
                                                                ("model=electra", "finished")]
    assert (sweep / "val_loss_vs_flops.png").is_file() and (sweep / "downstream_vs_flops.png").is_file()
