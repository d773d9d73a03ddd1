"""The one rich console every layer prints to (stderr: progress, notes, warnings, errors, the end-of-run table), the
console for results a command prints to stdout, and the training progress bar."""
from __future__ import annotations

import os
from typing import Any, Callable

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from runner.config.errors import ConfigError, TrainingError

console = Console(stderr=True)  # progress, notes, warnings, errors and the end-of-run table
# results a command prints for a pipe (python -m runner.compare's table): wide when not a terminal, so rows stay whole
stdout_console = Console(width=None if os.isatty(1) or "COLUMNS" in os.environ else 200)


def progress(disable: bool = False) -> Progress:
    """The training progress bar: step of max, loss, tokens/s, elapsed and ETA."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.3f}"), TextColumn("{task.fields[tps]:,.0f} tok/s"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
                    disable=disable)  # a distributed run: rank 0's bar only (the caller knows its rank)


def exit_code(command: Callable[[], Any]) -> int:
    """Run a command: 0 when it ends, 2 with its one-line error (a ConfigError or TrainingError) printed, no
    traceback."""
    try:
        command()
    except (ConfigError, TrainingError) as e:
        console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        return 2
    return 0
