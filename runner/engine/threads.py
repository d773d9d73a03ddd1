"""CPU threads divided among the processes that share the cores, never fought over.

Two torch processes with torch's default threads on one machine each spin all their OpenMP threads on cores the other
needs: on 2 cores two runs started together took 3.3x the time of the same two in sequence. Every process bertlab
starts therefore sets its intra-op threads to its share of the cores it may use (its CPU affinity, capped by a cgroup
CPU quota where there is one, and by torch's own default), divided among the bertlab processes computing on this
machine at the time and the processes started together for the same work (torchrun's ranks on this host, a
launcher's parallel sweep jobs), less one core per DataLoader worker (each builds batches on one thread). The
processes computing are found in a registry (`Registry`: one file per live process), which a training run reads again
every few seconds, so a run started beside it shrinks both and one that ends gives its cores back. An explicit
trainer.threads, or the user's own OMP_NUM_THREADS, wins. (Passive OpenMP waiting, the other fix, made a run alone
1.37x slower here: benchmarks/concurrent_runs.py.)"""
from __future__ import annotations

import atexit
import math
import os
import tempfile
import time
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
    sharers: int  # processes sharing them: ranks on this host x parallel sweep jobs, or the registry's live ones
    workers: int  # DataLoader workers beside it

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan(cores: int, explicit: int | None = None, env: Mapping[str, str] | None = None, parallel_jobs: int = 1,
         workers: int = 0, live: int = 1) -> ThreadPlan:
    """The threads of one process on `cores` usable cores: `explicit` (trainer.threads) or the user's
    OMP_NUM_THREADS when set, else cores // sharers less `workers`, at least 1; sharers: LOCAL_WORLD_SIZE x
    parallel_jobs, or the `live` bertlab processes computing on the machine when they are more."""
    env = os.environ if env is None else env
    local = max(1, int(env.get("LOCAL_WORLD_SIZE") or 1))
    sharers = max(local * max(1, parallel_jobs), live)
    if explicit:
        return ThreadPlan(int(explicit), "trainer.threads", cores, sharers, workers)
    if (user := env.get("OMP_NUM_THREADS", "").strip()).isdigit() and int(user) > 0:
        return ThreadPlan(int(user), "OMP_NUM_THREADS", cores, sharers, workers)
    return ThreadPlan(max(1, cores // sharers - workers), "shared", cores, sharers, workers)


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


class Registry:
    """The bertlab processes computing on this machine: one file per process, named by its pid, in a directory shared
    by the user's processes (BERTLAB_PROCESSES, default <tmp>/bertlab-<uid>-processes). A process adds itself when it
    takes its threads and removes itself at exit; a file whose process is gone (killed) is not counted, and removed."""

    def __init__(self, root: Path | None = None):
        default = Path(tempfile.gettempdir()) / f"bertlab-{os.getuid()}-processes"
        self.root = Path(root or os.environ.get("BERTLAB_PROCESSES") or default)

    def join(self) -> None:
        """Count this process from now until it exits."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            mine = self.root / str(os.getpid())
            mine.touch()
            atexit.register(lambda: mine.unlink(missing_ok=True))
        except OSError:  # a read-only or full temporary directory: this process alone is not counted
            pass

    def live(self) -> int:
        """The live processes in the registry (at least this one)."""
        count = 0
        try:
            entries = list(self.root.iterdir())
        except OSError:
            return 1
        for f in entries:
            if not f.name.isdigit():
                continue
            try:
                os.kill(int(f.name), 0)
                count += 1
            except ProcessLookupError:
                f.unlink(missing_ok=True)
            except PermissionError:  # alive, another user's
                count += 1
        return max(1, count)


REGISTRY = Registry()
REFRESH_SECONDS = 3.0  # how often a training run reads the registry again
_last_refresh = [0.0]


def apply(threads: int | None, workers: int = 0, registry: Registry | None = None) -> ThreadPlan:
    """Set this process's intra-op threads: `threads` (trainer.threads) when given, else its share of the machine
    (`plan`) among the registry's live processes (this one joins it), beside `workers` DataLoader workers and the
    parallel jobs PARALLEL_ENV names."""
    registry = registry or REGISTRY
    registry.join()
    return _set(plan(usable_cores(), threads, parallel_jobs=_launched_jobs(), workers=workers, live=registry.live()))


def _launched_jobs() -> int:
    """The parallel jobs PARALLEL_ENV names (1 when unset)."""
    jobs = os.environ.get(PARALLEL_ENV, "1")
    return int(jobs) if jobs.isdigit() else 1


def _set(p: ThreadPlan) -> ThreadPlan:
    """Give torch the plan's threads (when they differ from its count)."""
    if torch.get_num_threads() != p.threads:
        torch.set_num_threads(p.threads)
    return p


def refresh(current: ThreadPlan, registry: Registry | None = None) -> ThreadPlan:
    """Every REFRESH_SECONDS, the share again as processes start and end beside this one (a training step calls it);
    the plan in force otherwise. A user's or trainer.threads' count stays."""
    now = time.monotonic()
    if current.source != "shared" or now - _last_refresh[0] < REFRESH_SECONDS:
        return current
    _last_refresh[0] = now
    registry = registry or REGISTRY
    return _set(plan(current.cores, None, {}, _launched_jobs(), current.workers, registry.live()))
