"""Sweeps: W&B group and job names, the value sweepers optimise, failing jobs, Optuna, submitit, bert_improvements."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from runner.config.errors import ConfigError
from runner.store.names import SWEPT_ENV, job_names as identity
from runner.sweeps.jobs import metric_direction, metric_value, swept_keys
from tests.conftest import TINY, make_cfg, run_cli

FAMILIES = ["bert", "roberta", "albert", "electra", "txl", "modernbert", "xlnet"]


def hydra_node(mode: str = "MULTIRUN", overrides=("optimizer.lr=0.001", "seed=1"), experiment=None, num=3):
    return OmegaConf.create({"mode": mode, "runtime": {"choices": {"experiment": experiment}},
                             "overrides": {"task": list(overrides)},
                             "job": {"num": num, "override_dirname": ",".join(overrides)}})


def test_sweep_jobs_share_one_group_and_are_named_by_what_the_sweep_varies(monkeypatch, tmp_path):
    job = tmp_path / "2026-11-26_10-00-00" / "3_bert_mlm_nsp"
    monkeypatch.setenv(SWEPT_ENV, "optimizer.lr")
    assert identity(hydra_node(), job, None, None) == ("sweep-2026-11-26_10-00-00", "optimizer.lr=0.001")
    assert identity(hydra_node(experiment="bert_improvements"), job, None, None)[0] == \
        "bert_improvements-2026-11-26_10-00-00"
    assert identity(hydra_node(), job, "mine", "me") == ("mine", "me")  # logger.group / logger.name win
    monkeypatch.delenv(SWEPT_ENV)  # a launcher that did not pass the environment: all the job's overrides
    assert identity(hydra_node(), job, None, None)[1] == "optimizer.lr=0.001,seed=1"
    assert identity(hydra_node(mode="RUN"), job, None, None) == (None, None)  # single runs: train.run's defaults


def test_swept_keys_come_from_sweep_overrides_and_sweeper_params():
    cfg = OmegaConf.create({"hydra": {"overrides": {"task": ["optimizer.lr=1e-4,3e-4", "seed=1",
                                                             "trainer.batch_size=interval(8,32)"]},
                                      "sweeper": {"params": {"model": "bert,albert"}}}})
    assert swept_keys(cfg) == ["optimizer.lr", "trainer.batch_size", "model"]


def test_metric_direction_and_value_from_summary():
    assert metric_direction("downstream.accuracy_mean") == "maximize"
    assert metric_direction("downstream.f1_mean") == "maximize"
    assert metric_direction("final_val.mlm_loss") == "minimize"
    assert metric_direction("final_val.perplexity") == "minimize"
    with pytest.raises(ConfigError, match="hydra.sweeper.direction"):
        metric_direction("tokens_seen")
    summary = {"downstream": {"accuracy_mean": 0.5}, "final_val": {"mlm_loss": float("nan")}}
    assert metric_value(summary, "downstream.accuracy_mean") == 0.5
    assert metric_value(summary, "downstream.f1_mean") is None
    assert metric_value(summary, "final_val.mlm_loss") is None  # NaN is no value to optimise
    assert metric_value({}, "downstream.accuracy_mean") is None


def rows(sweep: Path) -> list[dict]:
    with (sweep / "comparison.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_a_crashing_job_never_stops_the_sweep_and_the_comparison_lists_it(tmp_path):
    sweep = tmp_path / "sweep"
    r = run_cli("-m", *TINY, "trainer.max_steps=2", "trainer.batch_size=0,8", "trainer.export_hf=false",
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
    r = run_cli("-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.seed=0",
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


def test_optuna_direction_that_contradicts_the_metric_is_a_one_line_error(tmp_path):
    r = run_cli("-m", "hydra/sweeper=optuna", "hydra.sweeper.direction=minimize", "hydra.sweeper.n_trials=1",
                *TINY, "trainer.max_steps=1", f"hydra.sweep.dir={tmp_path / 's'}")
    assert r.returncode != 0
    assert "hydra.sweeper.direction=minimize but sweep.metric=downstream.accuracy_mean should be maximized" in \
        r.stdout + r.stderr
    assert not any((tmp_path / "s").glob("*/summary.json"))  # nothing ran


def test_submitit_slurm_launcher_composes_with_the_runner_config():
    with_launcher = run_cli("hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu",
                            "hydra.launcher.timeout_min=240", "hydra.launcher.gpus_per_node=1", "--cfg", "hydra")
    assert with_launcher.returncode == 0, with_launcher.stderr
    launcher = yaml.safe_load(with_launcher.stdout)["hydra"]["launcher"]
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher["partition"], launcher["timeout_min"], launcher["gpus_per_node"]) == ("gpu", 240, 1)


@pytest.mark.slow
def test_submitit_local_launcher_runs_the_jobs_and_ends_with_the_comparison(tmp_path):
    sweep = tmp_path / "submitit"
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
    from that checkpoint (trainer.resume defaults to auto in submitit jobs). The run is 42 s of training (a minutes
    budget, whose clock is checkpointed), so it needs at least two attempts on any machine; submitit allows four.
    Every step is logged exactly once, so no attempt started over."""
    sweep = tmp_path / "requeue"
    r = run_cli("-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=1", *TINY,
                "trainer.budget.minutes=0.7", "trainer.checkpoint_every=100000", "trainer.eval_every=100000",
                "trainer.threads=1", "trainer.export_hf=false", f"hydra.sweep.dir={sweep}", timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    (job,) = [p.parent for p in sweep.glob("*/summary.json")]
    logs = "".join(p.read_text() for p in sweep.glob(".submitit/*/*_0_log.*"))  # .out: submitit, .err: ours
    requeues = len(set(re.findall(r"Requeued job \S+ \((\d+) remaining timeouts\)", logs)))
    assert requeues >= 1, logs[-3000:]
    assert logs.count("stopped: SIGUSR2") == requeues  # each attempt wrote its checkpoint before submitit
    steps = [json.loads(ln)["step"] for ln in (job / "metrics.jsonl").read_text().splitlines() if "train/loss" in ln]
    assert len(steps) > 10 and steps == list(range(10, 10 * len(steps) + 1, 10))
    summary = json.loads((job / "summary.json").read_text())
    assert summary["budget"]["complete"] and summary["budget"]["used"] >= 0.7 and summary["steps"] >= steps[-1]


def test_bert_improvements_sweeps_every_family_at_equal_flops():
    cfg = make_cfg("experiment=bert_improvements")
    budget = cfg.trainer.budget.flops
    assert budget and budget > 0
    with_hydra = run_cli("experiment=bert_improvements", "--cfg", "hydra")
    hydra = yaml.safe_load(with_hydra.stdout)["hydra"]
    assert hydra["mode"] == "MULTIRUN"
    assert hydra["sweeper"]["params"]["model"].split(",") == FAMILIES
    composed = {v: make_cfg("experiment=bert_improvements", f"model={v}") for v in FAMILIES}
    assert {v: (c.model.name, c.objective.name) for v, c in composed.items()} == {
        "bert": ("bert", "mlm_nsp"), "roberta": ("roberta", "mlm"), "albert": ("albert", "mlm_sop"),
        "electra": ("electra", "rtd"), "txl": ("txl", "clm"), "modernbert": ("modernbert", "mlm"),
        "xlnet": ("xlnet", "plm")}
    assert composed["bert"].objective.masking == "static" and composed["roberta"].objective.masking == "dynamic"
    r = composed["roberta"]
    assert (r.trainer.grad_accum, r.data.format, r.optimizer.lr) == (4, "full_sentences", 3e-3)  # RoBERTa's recipe:
    assert r.optimizer.lr > make_cfg("optimizer=adamw_roberta_cpu").optimizer.lr  # a higher peak lr with the 4x batch
    assert composed["albert"].model.share == "all"
    assert {c.trainer.budget.flops for c in composed.values()} == {budget}  # one compute budget for all
    from runner.evaluation.after_training import downstream_enabled  # eval.downstream auto: on, since the experiment is a multirun

    assert all(downstream_enabled(c, hydra["mode"] == "MULTIRUN") and c.data.name == "wiki" for c in composed.values())


@pytest.mark.slow
def test_bert_improvements_runs_as_one_group_at_equal_flops_and_ends_with_the_comparison(tmp_path):
    sweep = tmp_path / "flagship"
    r = run_cli("experiment=bert_improvements", "model=bert,electra", "trainer.budget.flops=3e9", *TINY,
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
