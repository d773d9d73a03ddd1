"""One owner per run directory (runner/engine/lock.py), no new run into a used one, and resumes that list what changed
(runner/config/changes.py): concurrent runs, a SIGKILLed run's stale lock, a refused new run that changes nothing,
a resume with a changed learning rate, identity keys that refuse, the lock taken by rank 0 only.
The tests of this file that train or start a process: tests/integration/test_rundir.py."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from runner.engine import lock as rundir
from runner.engine.state import resume_diff as compare
from runner.config.errors import ConfigError
from tests.conftest import TINY, make_cfg


def resolved(*overrides: str) -> dict:
    return OmegaConf.to_container(make_cfg(*TINY, *overrides), resolve=True)


def test_identity_keys_refuse_and_other_keys_are_listed_or_ignored():
    base = resolved()
    changed = compare(base, resolved("data.seq_len=32", "seed=1", "model.hidden_size=64", "objective.mask_prob=0.2",
                                     "optimizer.lr=0.1", "data.num_proc=2", "data.cache_dir=/elsewhere",
                                     "model.report_presets=[bert]", "trainer.max_steps=9", "trainer.resume=true",
                                     "trainer.stop_after=3", "trainer.threads=1", "logger.mode=offline"), 1, 1, 7)
    assert [c["key"] for c in changed.refused] == ["data.seq_len", "model.hidden_size", "objective.mask_prob", "seed"]
    assert [c["key"] for c in changed.listed] == ["data.cache_dir", "data.num_proc", "model.report_presets",
                                                  "optimizer.lr", "trainer.max_steps"]
    assert changed.listed[3] == {"key": "optimizer.lr", "before": base["optimizer"]["lr"], "after": 0.1, "step": 7}


def test_the_batch_refuses_only_when_the_global_batch_changes():
    base = resolved()  # batch 8, one process
    same = compare(base, resolved("trainer.batch_size=4", "trainer.grad_accum=2"), 1, 1, 5)
    assert not same.refused and [c["key"] for c in same.listed] == ["trainer.batch_size", "trainer.grad_accum"]
    other_world = compare(resolved("trainer.batch_size=4"), base, 2, 1, 5)  # a 2-rank run resumed in one process
    assert not other_world.refused and [c["key"] for c in other_world.listed] == ["trainer.batch_size", "world_size"]
    assert [c["key"] for c in compare(base, resolved("trainer.batch_size=4"), 1, 1, 5).refused] == \
        ["trainer.batch_size"]


def test_run_files_are_checkpoints_metrics_summary_exports_and_snapshots_not_hydras_files(tmp_path):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (tmp_path / "__main__.log").write_text("error: data.seq_len=2 is too short\n")
    assert rundir.run_files(tmp_path) == []  # a run that failed validation may start again here
    rundir.claim(tmp_path, resume=False)
    rundir.release(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "step-00000004.pt").write_bytes(b"")
    (tmp_path / "hf").mkdir()
    assert rundir.run_files(tmp_path) == ["checkpoints/step-00000004.pt", "hf"]
    with pytest.raises(ConfigError, match="already holds a run"):
        rundir.claim(tmp_path, resume=False)
    rundir.claim(tmp_path, resume=True)
    rundir.release(tmp_path)


def test_only_rank_0_takes_the_lock(tmp_path, monkeypatch):
    for env, takes in [({"RANK": "1", "LOCAL_RANK": "1"}, False), ({"RANK": "2", "LOCAL_RANK": "0"}, False),
                       ({"RANK": "0", "LOCAL_RANK": "0"}, True)]:
        run_dir = tmp_path / "_".join(env.values())
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        rundir.claim(run_dir, resume=False)
        assert (run_dir / ".lock").exists() == takes
        rundir.release(run_dir)


def test_changed_betas_and_weight_decay_replace_the_checkpoints_values_group_by_group():
    """restore() puts the new optimizer.betas and weight_decay over the loaded state (a no-decay group keeps 0)."""
    import torch
    from hydra.utils import instantiate

    from runner.engine.state import _apply, _hyperparameters

    def built(*overrides):
        return instantiate(make_cfg(*TINY, *overrides).optimizer)(module=torch.nn.Linear(2, 2), max_steps=10)

    old_opt, old_sched = built("optimizer.weight_decay=0.1", "optimizer.betas=[0.9,0.98]")
    opt, sched = built("optimizer.weight_decay=0.01", "optimizer.betas=[0.8,0.9]")
    fresh = _hyperparameters(opt, sched)
    opt.load_state_dict(old_opt.state_dict())
    sched.load_state_dict(old_sched.state_dict())
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    _apply(opt, sched, fresh, {"weight_decay", "betas"})
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    assert all(tuple(g["betas"]) == (0.8, 0.9) for g in opt.param_groups)


def test_a_used_directory_without_a_checkpoint_points_to_resume_auto(tmp_path):
    """A run killed before its first checkpoint left metrics.jsonl only: trainer.resume=true has nothing to load, so
    the refusal names auto (which starts that run over there) and a fresh directory."""
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(ConfigError, match="no checkpoint to continue from: start it over there with "
                                          "trainer.resume=auto") as e:
        rundir.claim(tmp_path, resume=False)
    assert "hydra.run.dir=<new dir>" in str(e.value) and (tmp_path / "metrics.jsonl").read_text() == '{"step": 1}\n'
