"""runner/engine/threads.py: each process's intra-op threads are its share of the cores it may use, for every way
bertlab starts processes beside each other, without timing anything (benchmarks/concurrent_runs.py measures)."""
from __future__ import annotations

import os

import pytest
import torch

from runner.engine import threads
from runner.engine.threads import cgroup_cores, parallel_jobs, plan


def test_one_process_takes_every_core():
    p = plan(8, env={})
    assert (p.threads, p.source, p.sharers) == (8, "shared", 1)


def test_torchrun_ranks_on_one_host_divide_the_cores():
    assert plan(8, env={"LOCAL_WORLD_SIZE": "4"}).threads == 2
    assert plan(2, env={"LOCAL_WORLD_SIZE": "4"}).threads == 1  # never 0


def test_parallel_sweep_jobs_divide_the_cores():
    assert plan(8, env={}, parallel_jobs=2).threads == 4
    assert plan(8, env={"LOCAL_WORLD_SIZE": "2"}, parallel_jobs=2).threads == 2  # ranks of parallel jobs


def test_dataloader_workers_take_a_core_each():
    assert plan(8, env={}, workers=2).threads == 6
    assert plan(2, env={}, workers=4).threads == 1


def test_the_user_wins():
    assert (plan(8, explicit=3, env={"OMP_NUM_THREADS": "5"}).threads, plan(8, 3, env={}).source) == \
        (3, "trainer.threads")
    p = plan(8, env={"OMP_NUM_THREADS": "5", "LOCAL_WORLD_SIZE": "4"})
    assert (p.threads, p.source) == (5, "OMP_NUM_THREADS")


@pytest.mark.parametrize("launcher, sweeper, jobs", [
    (None, None, 1),
    ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, {"n_jobs": 4}, 1),  # in sequence
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2}, None, 2),
    ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
      "array_parallelism": 8}, {"n_jobs": 3}, 3),  # Optuna's trials per batch cap the launcher's parallelism
])
def test_parallel_jobs_of_a_launcher(launcher, sweeper, jobs):
    assert parallel_jobs(launcher, sweeper) == jobs


def test_cgroup_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cores(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cores(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cgroup_cores(tmp_path) == 2.0


def test_apply_sets_torch_and_reads_the_parallel_jobs(tmp_path, monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(threads, "usable_cores", lambda: 4)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setenv(threads.PARALLEL_ENV, "2")
        p = threads.apply(None, registry=threads.Registry(tmp_path))
        assert (p.threads, torch.get_num_threads()) == (2, 2)
        assert threads.apply(3, registry=threads.Registry(tmp_path)).threads == torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_runs_beside_each_other_share_the_cores_through_the_registry(tmp_path, monkeypatch):
    """Independent runs on one machine find each other in the registry: a second run halves both, and when it ends
    the first takes the cores back at its next refresh."""
    registry = threads.Registry(tmp_path)
    registry.join()
    assert registry.live() == 1
    other = tmp_path / str(os.getppid())  # another live process (this test's parent) joined
    other.touch()
    (tmp_path / "999999999").touch()  # a process that was killed: not counted, and removed
    assert registry.live() == 2 and not (tmp_path / "999999999").exists()
    assert plan(8, env={}, live=registry.live()).threads == 4
    assert plan(2, env={}, live=3).threads == 1 and plan(8, env={"LOCAL_WORLD_SIZE": "4"}, live=2).threads == 2
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(threads, "usable_cores", lambda: 4)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv(threads.PARALLEL_ENV, raising=False)
        monkeypatch.setattr(threads, "REFRESH_SECONDS", 0.0)
        current = threads.apply(None, registry=registry)
        assert (current.threads, current.sharers, torch.get_num_threads()) == (2, 2, 2)
        other.unlink()  # the other run ended
        current = threads.refresh(current, registry)
        assert (current.threads, torch.get_num_threads()) == (4, 4)
        fixed = threads.apply(3, registry=registry)
        assert threads.refresh(fixed, registry) is fixed  # trainer.threads is never re-shared
    finally:
        torch.set_num_threads(before)
