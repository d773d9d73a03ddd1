"""The crossover's snapshots during training (crossover.enabled): the weights at the first step whose training FLOPs
reach each of a geometric series of thresholds, written to <run>/snapshots/flops-<N>.pt; runner/evaluation/crossover.py
scores them at the run's end."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from runner.data.cache import WriteFailed, atomic_save
from runner.store.checkpoint import resume_hint
from runner.store.layout import SNAPSHOTS

def snapshot_points(start: float, per_decade: int, end: float | None) -> list[float]:
    """start x 10^(k / per_decade) for k = 0, 1, ..., ending with end itself (the run's last step); a grid point
    within half a grid step of end gives way to it."""
    if end is None or end < start:
        return []
    out, k = [], 0
    while (x := start * 10 ** (k / per_decade)) < end / 10 ** (0.5 / per_decade):
        out.append(float(f"{x:.3g}"))
        k += 1
    return [*out, float(end)]


def snapshot_dir(run_dir: Path) -> Path:
    """Where a run keeps its snapshots."""
    return Path(run_dir) / SNAPSHOTS


class Snapshots:
    """Keeps the weights at the first step whose training FLOPs reach each threshold."""

    def __init__(self, run_dir: Path, thresholds: Sequence[float]):
        self.dir, self.pending = snapshot_dir(run_dir), sorted(thresholds)

    def skip_reached(self, flops: float) -> None:
        """A resumed run: thresholds already passed were saved before the stop."""
        self.pending = [x for x in self.pending if x > flops]

    def due(self, flops: float) -> list[float]:
        """The thresholds this many FLOPs reached that are not saved yet."""
        return [x for x in self.pending if flops >= x]

    def save(self, thresholds: list[float], module_state: dict[str, torch.Tensor], step: int, flops: float,
             tokens: int, write: bool = True) -> None:
        """One file for the step (the first threshold names it; the others are in its record), written when
        `write` (rank 0); every rank marks the thresholds done, so all of them stay in step."""
        if write:
            self.dir.mkdir(parents=True, exist_ok=True)
            try:
                atomic_save({"module": module_state, "step": step, "flops": flops, "tokens": tokens,
                             "thresholds": thresholds}, self.dir / f"flops-{thresholds[0]:.3g}.pt")
            except WriteFailed as e:  # a full disk: the run stops, resumable from its last checkpoint
                raise e.saying(resume_hint(self.dir.parent)) from e.error
        self.pending = [x for x in self.pending if x not in thresholds]


def saved_snapshots(run_dir: Path) -> list[Path]:
    """A run's snapshot files, in FLOPs order."""
    files = list(snapshot_dir(run_dir).glob("flops-*.pt"))
    return sorted(files, key=lambda p: float(p.stem.split("-", 1)[1]))
