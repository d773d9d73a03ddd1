"""Checkpoints written atomically: a crash mid-write never replaces the last good checkpoint."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from runner.data.cache import atomic_save
from runner.errors import TrainingError


def checkpoint_path(run_dir: Path) -> Path:
    """Where a run keeps its latest checkpoint."""
    return Path(run_dir) / "checkpoints" / "last.pt"


def save(run_dir: Path, state: dict[str, Any]) -> Path:
    """Write state to checkpoints/last.pt through a temporary file and an atomic rename."""
    path = checkpoint_path(run_dir)
    atomic_save(state, path)
    return path


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
    """Read checkpoints/last.pt of a run, or say exactly what is missing."""
    path = checkpoint_path(run_dir)
    if not path.is_file():
        raise TrainingError(f"trainer.resume=true but {path} does not exist; pass the run's directory with "
                            "hydra.run.dir=<outputs/runs/...> or drop trainer.resume")
    return torch.load(path, map_location="cpu", weights_only=False)
