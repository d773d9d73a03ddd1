"""Sweeps: W&B group and job names, the value sweepers optimise, failing jobs, Optuna, submitit, bert_improvements.
The tests of this file that train or start a process: tests/integration/test_sweep.py."""
from __future__ import annotations

import pytest
import yaml
from omegaconf import OmegaConf

from runner.config.errors import ConfigError
from runner.store.names import SWEPT_ENV, job_names as identity
from runner.sweeps.jobs import metric_direction, metric_value, swept_keys
from tests.conftest import TINY, make_cfg, cli


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


def test_optuna_direction_that_contradicts_the_metric_is_a_one_line_error(tmp_path):
    r = cli("-m", "hydra/sweeper=optuna", "hydra.sweeper.direction=minimize", "hydra.sweeper.n_trials=1",
                *TINY, "trainer.max_steps=1", f"hydra.sweep.dir={tmp_path / 's'}")
    assert r.returncode != 0
    assert "hydra.sweeper.direction=minimize but sweep.metric=downstream.accuracy_mean should be maximized" in \
        r.stdout + r.stderr
    assert not any((tmp_path / "s").glob("*/summary.json"))  # nothing ran


def test_submitit_slurm_launcher_composes_with_the_runner_config():
    with_launcher = cli("hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu",
                            "hydra.launcher.timeout_min=240", "hydra.launcher.gpus_per_node=1", "--cfg", "hydra")
    assert with_launcher.returncode == 0, with_launcher.stderr
    launcher = yaml.safe_load(with_launcher.stdout)["hydra"]["launcher"]
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher["partition"], launcher["timeout_min"], launcher["gpus_per_node"]) == ("gpu", 240, 1)


def test_bert_improvements_sweeps_every_family_at_equal_flops():
    cfg = make_cfg("experiment=bert_improvements")
    budget = cfg.trainer.budget.flops
    assert budget and budget > 0
    with_hydra = cli("experiment=bert_improvements", "--cfg", "hydra")
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
