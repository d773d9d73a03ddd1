"""One owner per run directory, and no new run into a used one.

A run's main process holds an exclusive `fcntl.flock` on `<run_dir>/.lock` for as long as it trains there (torchrun
and submitit ranks > 0 share the directory without it). A second run into the directory fails before any work,
naming the owner. The lock is stale exactly when no live process holds the flock: the kernel drops it when its
holder dies (SIGKILL, the OOM killer), and NFS and Lustre drop a dead node's lock when its lease expires, so a
crashed run never blocks its resume. The owner record in the file (host, pid, start time, command, SLURM job) only
names the owner in the error, with one exception: a requeued SLURM job (the same SLURM_JOB_ID, a higher
SLURM_RESTART_COUNT) takes over a lock its earlier attempt still seems to hold (a failed node whose lease has not
expired yet), since the scheduler runs one attempt of a job at a time.

Filesystems without flock (ENOLCK, EOPNOTSUPP, ENOSYS: Lustre mounted without `-o flock`) fall back to the record:
an owner on this host whose pid is gone (or now belongs to another process) is stale, one still running holds the
directory; an owner on another host cannot be checked from here, so the run goes on with a warning.

A new run (no trainer.resume) into a directory that holds a run's files (checkpoints/*.pt, metrics.jsonl,
summary.json, hf/, snapshots/) is refused, and nothing there is touched. Both checks run in RunDirCallback's
on_run_start, before Hydra writes .hydra/ into the directory, and again in the job (multirun and submitit jobs,
the distillation teacher's directory), where a directory this process already holds is passed through."""
from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from runner.config.errors import ConfigError
from runner.engine.distributed import in_submitit_job
from runner.config.console import console
from runner.store import checkpoint
from runner.store.layout import LOCK, run_files

NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}
_held: dict[str, int] = {}  # run directory (resolved) -> the open lock file: held until released or the process ends


class RunDirInUse(ConfigError):
    """Another live process owns the run directory."""


@dataclass
class Owner:
    """Who holds a run directory: shown in the error; decides only where flock cannot (see the module doc)."""

    host: str = "?"
    pid: int = 0
    since: str = "?"
    command: str = ""
    slurm_job: str | None = None
    restart: str | None = None
    started: int | None = None  # the pid's start time in clock ticks since boot: tells a reused pid apart

    @classmethod
    def me(cls) -> "Owner":
        """This process."""
        return cls(host=socket.gethostname(), pid=os.getpid(),
                   since=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                   command=_command(), slurm_job=os.environ.get("SLURM_JOB_ID"),
                   restart=os.environ.get("SLURM_RESTART_COUNT", "0"), started=_start_ticks(os.getpid()))

    def __str__(self) -> str:
        return f"host {self.host} pid {self.pid} since {self.since} ({self.command})"

    def superseded(self) -> bool:
        """Whether the owner is an earlier attempt of this requeued SLURM job (which the scheduler has ended)."""
        me = os.environ.get("SLURM_JOB_ID")
        return me is not None and me == self.slurm_job and os.environ.get("SLURM_RESTART_COUNT", "0") != self.restart

    def gone(self) -> bool:
        """Whether the owner ran on this host and no longer runs (its pid is free or another process's)."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # another user's process has the pid now, or still
            pass
        now = _start_ticks(self.pid)
        return self.started is not None and now is not None and now != self.started


def _command(limit: int = 120) -> str:
    """This process's command line as typed (python -m runner ...), shortened to limit characters."""
    argv = list(getattr(sys, "orig_argv", None) or ["python", *sys.argv])
    line = " ".join([Path(argv[0]).name, *argv[1:]])
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _start_ticks(pid: int) -> int | None:
    """A process's start time (field 22 of /proc/<pid>/stat), or None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def is_lock_rank() -> bool:
    """Whether this process takes the lock: the main one (torchrun and submitit ranks > 0 share rank 0's)."""
    return all(int(os.environ.get(k, "0") or 0) == 0 for k in ("RANK", "LOCAL_RANK"))


def resuming(cfg: Any, run_dir: Path | None = None) -> bool:
    """Whether the run continues what its directory holds: trainer.resume=true; or auto (a submitit job's default:
    its directory holds a checkpoint only when the job was requeued) when run_dir has a checkpoint, else it starts.
    Without run_dir: whether it may continue (the lock lets such a run into a used directory)."""
    value = cfg.trainer.resume
    if value is True or str(value).lower() == "true":
        return True
    auto = str(value).lower() == "auto" or in_submitit_job()
    return auto and (run_dir is None or checkpoint.exists(run_dir))


def _read_owner(fd: int) -> Owner | None:
    """The record in an open lock file; None when it is empty (released, or its owner has not written it yet)."""
    for _ in range(20):  # the holder writes its record just after taking the lock
        raw = os.pread(fd, 4096, 0)
        if raw.strip():
            try:
                return Owner(**json.loads(raw))
            except (ValueError, TypeError):
                pass  # half written
        time.sleep(0.05)
    return None


def _warn(message: str) -> None:

    console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def _in_use(run_dir: Path, owner: Owner | None) -> RunDirInUse:
    who = owner or "another process (no owner record yet)"
    return RunDirInUse(f"run directory {run_dir} is in use by {who}; wait for that run to end, or start this one in "
                       "another directory: hydra.run.dir=<new dir>")


def _lock(fd: int, run_dir: Path, wait: bool) -> None:
    """flock the open lock file, or raise RunDirInUse; a requeued SLURM job takes over from its earlier attempt."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        owner = _read_owner(fd)
    if owner is not None and owner.superseded():
        _warn(f"{run_dir} is still locked by {owner}, an earlier attempt of SLURM job {owner.slurm_job}; taking it "
              "over (the lock lapses when that node's lease expires)")
        return
    if not wait:
        raise _in_use(run_dir, owner)

    console.print(f"waiting for {owner or 'another process'} to finish in {run_dir}", highlight=False, soft_wrap=True)
    fcntl.flock(fd, fcntl.LOCK_EX)


def _check_record(fd: int, run_dir: Path) -> None:
    """Without flock: the owner record decides (see the module doc)."""
    owner = _read_owner(fd)
    if owner is None or owner.gone() or owner.superseded():
        return
    if owner.host == socket.gethostname():
        raise _in_use(run_dir, owner)
    _warn(f"{run_dir} was last taken by {owner}; this filesystem has no flock, so whether it still runs cannot be "
          "checked from here: going on")


def claim(run_dir: Path, resume: bool, wait: bool = False) -> None:
    """Own run_dir for this process (nothing for ranks > 0, or a directory it already owns): RunDirInUse when a
    live process owns it (wait=True: wait for it), ConfigError when a new run would start in a used directory."""
    run_dir = Path(run_dir).absolute()
    key = str(run_dir.resolve())
    if not is_lock_rank() or key in _held:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    # never deleted: a process waiting on a removed file's inode would lock it while a third locks a new one
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            _lock(fd, run_dir, wait)
        except OSError as e:
            if e.errno not in NO_FLOCK:
                raise
            _check_record(fd, run_dir)
        if not resume and (found := run_files(run_dir)):
            shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
            # without a checkpoint there is nothing to continue: auto starts that run over in its directory
            way = ("continue it with trainer.resume=true (or auto)" if any(f.endswith(".pt") for f in found) else
                   "it has no checkpoint to continue from: start it over there with trainer.resume=auto")
            raise ConfigError(f"{run_dir} already holds a run ({shown}); {way}, or start a new run in a fresh "
                              "directory: hydra.run.dir=<new dir>. Nothing in it was changed")
    except BaseException:
        os.close(fd)  # the record was not written: the lock file is as it was
        raise
    record = json.dumps(asdict(Owner.me())).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, record, 0)
    os.fsync(fd)  # other hosts (NFS) see the owner as soon as the lock is taken
    _held[key] = fd


def release(run_dir: Path) -> None:
    """Give run_dir up (its record emptied, the lock dropped); nothing when this process does not own it."""
    fd = _held.pop(str(Path(run_dir).absolute().resolve()), None)
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)  # without flock, an empty record is a free directory
    os.close(fd)


@contextlib.contextmanager
def owned(run_dir: Path, resume: bool, wait: bool = False) -> Iterator[None]:
    """claim() run_dir for the block; released after it (each job of a multirun in one process gives its up)."""
    claim(run_dir, resume, wait)
    try:
        yield
    finally:
        release(run_dir)


def _forget_in_child() -> None:
    """A forked child (DataLoader and tokenizer workers) closes its copies of the lock files: closing leaves the
    parent's flock in place, and a worker outliving a killed parent must not keep the directory locked."""
    for fd in _held.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def hydra_run_dir(config: DictConfig) -> Path:
    """The directory Hydra's run_job will use: hydra.run.dir resolved as it resolves it (the `now` resolver is
    cached on this config, so the time is the same)."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.instance()
    before = hc.cfg
    hc.set_config(config)  # ${hydra:...} in hydra.run.dir reads it; run_job sets the same config next
    try:
        return Path(os.path.abspath(str(OmegaConf.select(config, "hydra.run.dir"))))
    finally:
        hc.cfg = before


class RunDirCallback(Callback):
    """Owns a single run's directory before Hydra writes .hydra/ into it (runs before run_job), so a refused run
    changes nothing there."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.get("export"):  # exporting writes into the exported run, not the run directory
            return
        try:  # Hydra turns a callback's exceptions into warnings: stop the run ourselves
            claim(hydra_run_dir(config), resuming(config))
        except ConfigError as e:

            console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise SystemExit(2) from e
