"""CPU threads divided among the processes that share the cores, never fought over.

Two torch processes with torch's default threads on one machine each spin all their OpenMP threads on cores the other
needs: on 2 cores two runs started together took 3.3x the time of the same two in sequence. Every process bertlab
starts therefore (1) waits passively (OMP_WAIT_POLICY=PASSIVE, set by runner/__init__.py before torch loads,
unless the user set it) and (2) sets its intra-op threads to its share of the cores it may use: its CPU affinity,
capped by a cgroup CPU quota where there is one, divided among the processes started together for the same work
(torchrun's ranks on this host, a launcher's parallel sweep jobs), less one core per DataLoader worker (each
builds batches on one thread). An explicit trainer.threads, or the user's own OMP_NUM_THREADS, wins."""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

# set by `python -m runner` for the jobs of a multirun whose launcher runs several at once (runner/__main__.py)
PARALLEL_ENV = "BERTLAB_PARALLEL_JOBS"
# torch's own choice for this process when it loaded (its physical cores, or the user's OMP_NUM_THREADS): never
# exceeded, so a machine with hyperthreads keeps torch's count
TORCH_DEFAULT = torch.get_num_threads()


def cgroup_cores(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in cores (v2 cpu.max, v1 cpu.cfs_quota_us / cfs_period_us); None when
    unlimited or unreadable."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    """The cores this process may run on: its affinity, capped by the cgroup quota (rounded up) and by torch's own
    default (physical cores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cores()
    cores = min(cores, math.ceil(quota)) if quota else cores
    return max(1, min(cores, TORCH_DEFAULT))


@dataclass
class ThreadPlan:
    """The intra-op threads of this process and why (summary.json's `threads`)."""

    threads: int
    source: str  # trainer.threads | OMP_NUM_THREADS | shared
    cores: int  # usable cores
    sharers: int  # processes started together for this work (ranks on this host x parallel sweep jobs)
    workers: int  # DataLoader workers beside it
    wait_policy: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan(cores: int, explicit: int | None = None, env: Mapping[str, str] | None = None, parallel_jobs: int = 1,
         workers: int = 0) -> ThreadPlan:
    """The threads of one process on `cores` usable cores: `explicit` (trainer.threads) or the user's
    OMP_NUM_THREADS when set, else cores // (LOCAL_WORLD_SIZE x parallel_jobs) less `workers`, at least 1."""
    env = os.environ if env is None else env
    local = max(1, int(env.get("LOCAL_WORLD_SIZE") or 1))
    sharers = local * max(1, parallel_jobs)
    wait = env.get("OMP_WAIT_POLICY")
    if explicit:
        return ThreadPlan(int(explicit), "trainer.threads", cores, sharers, workers, wait)
    if (user := env.get("OMP_NUM_THREADS", "").strip()).isdigit() and int(user) > 0:
        return ThreadPlan(int(user), "OMP_NUM_THREADS", cores, sharers, workers, wait)
    return ThreadPlan(max(1, cores // sharers - workers), "shared", cores, sharers, workers, wait)


def parallel_jobs(launcher: Mapping[str, Any] | None, sweeper: Mapping[str, Any] | None = None) -> int:
    """How many jobs of a Hydra multirun run at once: 1 under the basic launcher (one after the other); a parallel
    launcher's n_jobs (joblib) or array_parallelism (submitit), capped by a sweeper's own n_jobs (Optuna's trials
    per batch)."""
    if not launcher or str(launcher.get("_target_", "")).endswith("BasicLauncher"):
        return 1
    n = launcher.get("n_jobs") or launcher.get("array_parallelism") or 1
    if sweeper and sweeper.get("n_jobs"):
        n = min(int(n), int(sweeper["n_jobs"]))
    return max(1, int(n))


def apply(threads: int | None, workers: int = 0) -> ThreadPlan:
    """Set this process's intra-op threads: `threads` (trainer.threads) when given, else its share of the machine
    (`plan`), beside `workers` DataLoader workers and the parallel jobs PARALLEL_ENV names."""
    jobs = os.environ.get(PARALLEL_ENV, "1")
    p = plan(usable_cores(), threads, parallel_jobs=int(jobs) if jobs.isdigit() else 1, workers=workers)
    if torch.get_num_threads() != p.threads:
        torch.set_num_threads(p.threads)
    return p
