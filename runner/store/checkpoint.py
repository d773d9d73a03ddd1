"""Checkpoints: written atomically (a temporary file, fsync, rename), the last `keep` kept as
checkpoints/step-<N>.pt with checkpoints/last.pt a hard link to the newest. A crash mid-write never replaces a good
checkpoint; an unreadable one (truncated, corrupt) is reported by name and the previous one is used instead.

Loading runs no code from the file: torch.load(weights_only=True), tensors and plain values only (what save() writes,
and what it refuses to write otherwise). A checkpoint naming any other function or class is refused in one line with
the conversion command, and no older one is tried in its place: a run directory holding such a file was written by
other code, and resuming it from an earlier step would hide that."""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

import torch

from runner.data.cache import UnsafePickle, WriteFailed, atomic_save, first_line, load_safely
from runner.config.errors import TrainingError
from runner.config.console import console

DIR = "checkpoints"  # in a run directory (runner/store/layout.py)
STEP_FILE = re.compile(r"step-(\d+)\.pt$")


def checkpoint_path(run_dir: Path) -> Path:
    """Where a run keeps its latest checkpoint."""
    return Path(run_dir) / DIR / "last.pt"


def exists(run_dir: Path) -> bool:
    """Whether the run directory holds a checkpoint (readable or not: load() says which)."""
    return checkpoint_path(run_dir).is_file() or bool(step_files(run_dir))


def saved_files(run_dir: Path) -> list[Path]:
    """Every checkpoints/*.pt of a run (step files, last.pt and any other), sorted by name."""
    return sorted((Path(run_dir) / DIR).glob("*.pt"))


def step_files(run_dir: Path) -> list[Path]:
    """checkpoints/step-<N>.pt of a run, newest first."""
    d = Path(run_dir) / DIR
    found = [(int(m.group(1)), p) for p in d.glob("step-*.pt") if (m := STEP_FILE.search(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def save(run_dir: Path, state: dict[str, Any], keep: int = 2) -> Path:
    """Write state as checkpoints/step-<step>.pt, point last.pt at it, and delete all but the newest `keep`.
    A failed write (a full disk) raises WriteFailed naming the file, what it needed and the free space, with how to
    resume (`resume_hint`); no partial file is left and the previous checkpoint stays as it was."""
    last = checkpoint_path(run_dir)
    path = last.with_name(f"step-{int(state.get('step', 0)):08d}.pt")
    try:
        atomic_save(state, path)
        _point_last_at(path, state)
    except WriteFailed as e:
        raise e.saying(resume_hint(run_dir)) from e.error
    except OSError as e:  # linking last.pt to it
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise WriteFailed(last, e, None, resume_hint(run_dir)) from e
    for old in step_files(run_dir)[max(keep, 1):]:
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
    return path


def resume_hint(run_dir: Path) -> str:
    """How a run stopped by a failed write carries on: from its last complete checkpoint, if it has one."""
    steps = step_files(run_dir)
    if not steps and not checkpoint_path(run_dir).is_file():
        return "the run has no checkpoint yet: free space and run it again"
    at = f" (step {int(STEP_FILE.search(steps[0].name).group(1))})" if steps else ""
    return (f"its last checkpoint{at} is intact: free space and resume with trainer.resume=true, or copy {run_dir} to "
            "a disk with room and resume it there")


def _point_last_at(path: Path, state: dict[str, Any]) -> None:
    """last.pt becomes the newest checkpoint in one rename: a hard link where the filesystem has them, else a copy."""
    last = checkpoint_path(path.parent.parent)
    tmp = path.with_name(f".last.pt.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(path, tmp)
    except OSError:  # no hard links here: write the state a second time
        atomic_save(state, last)
        return
    os.replace(tmp, last)


def read(path: Path) -> Any:
    """One checkpoint or snapshot file, loaded with weights_only=True; a file that names other globals is an
    UnsafePickle (a one-line TrainingError) saying how to convert it, when it is a checkpoint its user trusts."""
    return load_safely(path, fix=conversion_hint(path))


def conversion_hint(path: Path) -> str:
    """What to do with a refused checkpoint: convert it (a run's checkpoints and snapshots at once), if trusted."""
    path = Path(path)
    target = path.parent.parent if path.parent.name in ("checkpoints", "snapshots") else path
    return (f"if you wrote it (before bertlab loaded checkpoints safely) and trust it, convert it once with "
            f"`python -m runner.convert {target}`, otherwise delete it or start a new run directory")


def rng_state() -> dict[str, Any]:
    """Every random state a training step consumes (dropout draws from these)."""
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what rng_state() captured."""
    torch.set_rng_state(state["cpu"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load(run_dir: Path) -> dict[str, Any]:
    """The run's newest readable checkpoint: last.pt, else the step files newest first. An unreadable one is
    reported by name (on the console) and skipped; none at all, or none readable, is a TrainingError, and so is an
    unsafe one (UnsafePickle, see read()), which stops the search instead of being skipped."""

    last = checkpoint_path(run_dir)
    seen, bad = set(), []
    for path in [last, *step_files(run_dir)]:
        if not path.is_file() or (inode := path.stat().st_ino) in seen:
            continue  # last.pt and its step file are one file
        seen.add(inode)
        try:
            state = read(path)
        except UnsafePickle:
            raise  # not damage but foreign content: say so rather than quietly resume from an older step
        except Exception as e:  # noqa: BLE001 - truncated zip, bad pickle, ...: try the previous checkpoint
            bad.append(path.name)
            console.print(f"[yellow]warning:[/] checkpoint {path} is unreadable ({type(e).__name__}: "
                          f"{first_line(e)}); trying the previous one", highlight=False, soft_wrap=True)
            continue
        if not isinstance(state, dict):
            raise TrainingError(f"{path} is not a bertlab checkpoint (it holds a {type(state).__name__}, not a dict "
                                "of states); start a new run directory")
        return state
    if bad:
        raise TrainingError(f"no readable checkpoint in {last.parent} ({', '.join(bad)} are corrupt or truncated); "
                            "start a new run directory")
    raise TrainingError(f"trainer.resume=true but {last} does not exist; pass the run's directory with "
                        "hydra.run.dir=<outputs/runs/...> or drop trainer.resume")
