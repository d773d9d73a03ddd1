"""`python -m runner.tensorboard <run or multirun dirs>`: TensorBoard event files for runs logged without
logger.backends=[tensorboard] (older runs, W&B-only runs), written from their metrics.jsonl and summary.json into
<run>/tensorboard, as the backend would have written them (each record at its step and wall-clock time)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runner.config.errors import ConfigError
from runner.reporting.backends import TensorBoardBackend, numeric
from runner.config.console import console as err_console
from runner.store import layout
from runner.store.layout import find_runs


def replay(run_dir: Path) -> Path | None:
    """Write <run_dir>/tensorboard from its metrics.jsonl; None when it already has event files (never doubled)."""
    out = run_dir / layout.TENSORBOARD
    if any(out.glob("events.out.tfevents.*")):
        return None
    backend = TensorBoardBackend(run_dir, layout.saved_config(run_dir) or {}, resume_step=None)
    for record in layout.read_metrics(run_dir):
        if "step" not in record:
            continue
        for k, v in numeric({k: v for k, v in record.items() if k not in ("step", "time")}).items():
            backend.writer.add_scalar(k, v, record["step"], walltime=record.get("time"))
    backend.finish(layout.read_summary(run_dir) or {})
    return out


def main(argv: list[str] | None = None) -> None:
    """CLI: replay every run found under the paths; exit 2 with one line when there is none."""

    parser = argparse.ArgumentParser(prog="python -m runner.tensorboard", description=__doc__)
    parser.add_argument("paths", nargs="+", type=Path, help="run dirs, or multirun dirs holding them")
    args = parser.parse_args(argv)
    try:
        runs = find_runs(args.paths)
    except ConfigError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    written = [p for p in map(replay, runs) if p is not None]
    err_console.print(f"wrote {len(written)} event directories ({len(runs) - len(written)} runs had theirs); view "
                      f"them with: tensorboard --logdir {' '.join(map(str, args.paths))}", highlight=False,
                      soft_wrap=True)


if __name__ == "__main__":
    main()
