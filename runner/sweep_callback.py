"""The sweep's callback: Optuna's direction from sweep.metric before a multirun, and the comparison (and, for
experiment=pretraining_pays, the crossover report) over the sweep directory when it ends. Its own module: it
imports the reports, which import runner.sweep."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

from runner.errors import ConfigError
from runner.sweep import SWEPT_ENV, metric_direction, swept_keys


def _cli_keys(config: DictConfig) -> set[str]:
    """Keys the user set on the command line for Hydra itself (hydra.sweeper.direction=...)."""
    return {str(o).split("=", 1)[0].lstrip("+~") for o in config.hydra.overrides.hydra}


class SweepCallback(Callback):
    """Sets the Optuna sweeper's direction from sweep.metric (and tolerates failed trials) before the sweep starts,
    and runs the comparison over the sweep directory when it ends."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ[SWEPT_ENV] = ",".join(swept_keys(config))  # jobs are named by these overrides only
        sweeper = config.hydra.sweeper
        if "optuna" not in str(sweeper.get("_target_", "")).lower():
            return
        from runner.logging import console

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
        if not config.sweep.compare:
            return
        from runner.compare import compare, out_console, rich_table

        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            rows = compare([sweep_dir], wandb=config.logger.mode != "disabled")
        except ConfigError as e:  # e.g. a submitit launcher that has not started any job here
            from runner.compare import warn

            warn(f"no comparison: {e}")
            return
        out_console.print(rich_table(rows))
        if any(sweep_dir.glob("*/crossover.json")):  # experiment=pretraining_pays: where pretraining pays, per family
            from runner.crossover import report, table_markdown, load_results

            written = report([sweep_dir], sweep_dir)
            out_console.print(table_markdown(load_results([sweep_dir])), highlight=False)
            out_console.print("crossover: " + ", ".join(map(str, written)), highlight=False, soft_wrap=True)
        failed = [r for r in rows if r["status"] != "finished"]
        if failed:
            from runner.logging import console

            console.print(f"[bold red]{len(failed)} of {len(rows)} sweep jobs did not finish:[/] " +
                          ", ".join(f"{r['job']} ({r['error']})" for r in failed), highlight=False, soft_wrap=True)
            raise SystemExit(1)
