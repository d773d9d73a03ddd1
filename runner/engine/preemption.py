"""SIGTERM and SIGUSR1 (SLURM's warning before preemption or the time limit, a scheduler's stop): the training
loop finishes its current step, writes a checkpoint and stops; `trainer.resume=true` continues the run.

Inside a submitit job (hydra/launcher=submitit_slurm|submitit_local) submitit's own preemption signal (USR2, or
$SUBMITIT_PREEMPT_SIGNAL) is caught the same way, and once the checkpoint is written it goes on to submitit's
handler, which requeues the job; the requeued job resumes from the checkpoint (trainer.resume=auto)."""
from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any

import torch

from runner.engine import distributed
from runner.config.errors import TrainingError

SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s is not None)


class Preempted(TrainingError):
    """The run stopped on a signal after writing a checkpoint; the process exits with 128 + the signal number."""

    def __init__(self, signum: int, step: int, run_dir: Any):
        self.signum = signum
        name = signal.Signals(signum).name
        super().__init__(f"{name} at step {step}: stopped after the step and wrote {run_dir}/checkpoints/last.pt; "
                         f"continue with trainer.resume=true hydra.run.dir={run_dir}")


def submitit_signal() -> int | None:
    """The signal submitit sends before a time limit or preemption (it requeues the job on it)."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2").upper().removeprefix("SIG"),
                   None)


class StopSignals:
    """Context manager: while inside, SIGTERM / SIGUSR1 only record that a stop was asked for (the main thread
    installs the handlers; elsewhere nothing changes). requested() agrees across distributed ranks."""

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
            extra = submitit_signal()
            if extra is not None and extra not in self._previous and callable(signal.getsignal(extra)):
                self._previous[extra] = signal.signal(extra, self._handle)  # submitit's checkpoint-and-requeue
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def handed_over_to(self) -> str | None:
        """The Python handler the received signal had before ours (submitit's), by name; None if there is none."""
        previous = self._previous.get(self.signum)
        return getattr(previous, "__qualname__", repr(previous)) if callable(previous) else None

    def hand_over(self) -> None:
        """After the checkpoint: pass the signal to the handler it would have reached without us when that is a
        Python function (submitit's: it requeues the job and exits). Returns when there is none, or it returns."""
        previous = self._previous.get(self.signum)
        if callable(previous):
            self.__exit__()
            previous(self.signum, None)

    def requested(self, device: torch.device) -> int:
        """The signal number asked for on any rank (0: none); every rank must call it at the same step."""
        if distributed.world_size() > 1:
            return int(distributed.all_max(self.signum, device))
        return self.signum
