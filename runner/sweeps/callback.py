"""The sweep's callback: Optuna's direction from sweep.metric before a multirun, and the comparison (and, for
experiment=pretraining_pays, the crossover report) over the sweep directory when it ends; sweep.json in the sweep
directory says how many jobs to expect and whether the sweep has ended (for `python -m runner.watch`). Its own
module: it imports the reports, which import runner.sweeps.jobs."""
from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

from runner.config.errors import ConfigError
from runner.sweeps.jobs import BASIC_SWEEPER, SWEPT_ENV, metric_direction, swept_keys
from runner.store.layout import CROSSOVER, SWEEP_MARKER
from runner.data.cache import atomic_write_bytes
from runner.config.console import console
from runner.reporting.compare import compare, out_console, rich_table
from runner.reporting.crossover_report import load_results, report, table_markdown
from runner.reporting.compare import warn


def _cli_keys(config: DictConfig) -> set[str]:
    """Keys the user set on the command line for Hydra itself (hydra.sweeper.direction=...)."""
    return {str(o).split("=", 1)[0].lstrip("+~") for o in config.hydra.overrides.hydra}


def expected_jobs(config: DictConfig) -> int | None:
    """How many jobs the sweep will launch: the basic sweeper's grid (its params and the command line's sweeps),
    Optuna's n_trials; None for other sweepers or overrides that cannot be expanded without Hydra's config loader
    (glob(...) over a config group)."""
    sweeper = config.hydra.sweeper
    target = str(sweeper.get("_target_", BASIC_SWEEPER))
    if "optuna" in target.lower():
        trials = sweeper.get("n_trials")
        return int(trials) if trials is not None else None
    if target != BASIC_SWEEPER:
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]  # as BasicSweeper.sweep joins them
    try:
        parsed = OverridesParser.create().parse_overrides(params + [str(o) for o in config.hydra.overrides.task])
        return len(BasicSweeper.split_arguments(parsed, None)[0])  # the grid, exactly as the sweeper builds it
    except Exception:  # noqa: BLE001 - Hydra raises several kinds here; the watch then follows the job dirs only
        return None


def write_marker(sweep_dir: Path, record: dict[str, Any]) -> None:
    """sweep.json written atomically; a failure is a warning, never a stopped sweep (it only feeds the watch)."""

    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)  # on_multirun_start runs before the sweeper makes it
        atomic_write_bytes(json.dumps(record, indent=2).encode(), sweep_dir / SWEEP_MARKER)
    except OSError as e:

        console.print(f"[yellow]warning:[/] could not write {sweep_dir / SWEEP_MARKER} ({e}); python -m runner.watch "
                      "will follow the job directories only", highlight=False, soft_wrap=True)


def _now() -> str:
    """The time now, UTC, as ISO 8601 (sweep.json)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class SweepCallback(Callback):
    """Sets the Optuna sweeper's direction from sweep.metric (and tolerates failed trials) before the sweep starts,
    and runs the comparison over the sweep directory when it ends; sweep.json marks both moments."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ[SWEPT_ENV] = ",".join(swept_keys(config))  # jobs are named by these overrides only
        self._optuna_direction(config)
        self.marker = {"jobs": expected_jobs(config), "swept": swept_keys(config), "started": _now(), "ended": None,
                       "pid": os.getpid(), "host": socket.gethostname()}
        write_marker(Path(str(config.hydra.sweep.dir)), self.marker)

    def _optuna_direction(self, config: DictConfig) -> None:
        sweeper = config.hydra.sweeper
        if "optuna" not in str(sweeper.get("_target_", "")).lower():
            return

        given = _cli_keys(config)
        explicit = "hydra.sweeper.direction" in given
        try:  # Hydra turns a callback's exceptions into warnings: stop the sweep ourselves
            wanted = metric_direction(config.sweep.metric)
            if explicit and str(sweeper.direction).lower() != wanted:
                raise ConfigError(f"hydra.sweeper.direction={sweeper.direction} but sweep.metric="
                                  f"{config.sweep.metric} should be {wanted}d; drop the override or change "
                                  "sweep.metric")
        except ConfigError as e:
            if not (explicit and "cannot tell" in str(e)):  # a metric we cannot read, with a direction given: fine
                console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
                raise SystemExit(2) from e
        with read_write(config), open_dict(config):
            if not explicit:
                sweeper.direction = wanted
                console.print(f"optuna: {wanted} sweep.metric={config.sweep.metric}", highlight=False)
            if "hydra.sweeper.max_failure_rate" not in given:
                sweeper.max_failure_rate = 1.0  # a crashing trial is recorded as failed; the study goes on

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        marker = getattr(self, "marker", None) or {"jobs": None, "started": None, "pid": os.getpid(),
                                                   "host": socket.gethostname()}
        write_marker(sweep_dir, {**marker, "ended": _now()})  # first: the comparison below may exit 1
        if not config.sweep.compare:
            return

        try:
            rows = compare([sweep_dir], wandb=config.logger.mode != "disabled")
        except ConfigError as e:  # e.g. a submitit launcher that has not started any job here

            warn(f"no comparison: {e}")
            return
        out_console.print(rich_table(rows))
        if any(sweep_dir.glob(f"*/{CROSSOVER}")):  # experiment=pretraining_pays: where pretraining pays, per family

            written = report([sweep_dir], sweep_dir)
            out_console.print(table_markdown(load_results([sweep_dir])), highlight=False)
            out_console.print("crossover: " + ", ".join(map(str, written)), highlight=False, soft_wrap=True)
        failed = [r for r in rows if r["status"] != "finished"]
        if failed:

            console.print(f"[bold red]{len(failed)} of {len(rows)} sweep jobs did not finish:[/] " +
                          ", ".join(f"{r['job']} ({r['error']})" for r in failed), highlight=False, soft_wrap=True)
            raise SystemExit(1)
