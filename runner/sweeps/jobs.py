"""Hydra multiruns: each job's W&B group and name, the value a sweeper optimises, and the sweep's end (the comparison).

A sweep is one W&B group (`<experiment or "sweep">-<sweep dir name>`) and each job is named by its overrides.
One crashing job never stops a sweep: under the basic sweeper the job's error is logged and the sweep goes on;
under Optuna the trial is marked failed (`hydra.sweeper.max_failure_rate` defaults to 1 here). When all jobs are
done, `runner.sweeps.callback.SweepCallback` runs `runner.reporting.compare` over the sweep directory and exits 1 if any job
failed.
"""
from __future__ import annotations

import math
import re
from typing import Any

from omegaconf import DictConfig

from runner.config.errors import ConfigError
from runner.store.names import SWEPT_ENV, is_multirun  # noqa: F401 - SWEPT_ENV: the callback sets it

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
MAXIMISE = re.compile(r"acc|f1|score|corr|mcc")  # metric names that grow with quality
MINIMISE = re.compile(r"loss|ppl|perplexity|bpc|error")


def swept_keys(config: DictConfig) -> list[str]:
    """The keys a multirun varies: command-line sweeps (a=1,2 / interval(...) / choice(...)) and sweeper params."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([str(o) for o in config.hydra.overrides.task])
    keys = [o.key_or_group for o in parsed if o.is_sweep_override()]
    return list(dict.fromkeys(keys + [str(k) for k in (config.hydra.sweeper.get("params") or {})]))


def metric_direction(metric: str) -> str:
    """minimize or maximize, from the metric's name (sweep.metric)."""
    leaf = metric.rsplit(".", 1)[-1].lower()
    if MINIMISE.search(leaf):
        return "minimize"
    if MAXIMISE.search(leaf):
        return "maximize"
    raise ConfigError(f"sweep.metric={metric!r}: cannot tell whether to minimise or maximise it; pass "
                      "hydra.sweeper.direction=minimize|maximize")


def metric_value(summary: dict, metric: str) -> float | None:
    """summary.json's value at a dotted path (sweep.metric, e.g. downstream.accuracy_mean or final_val.mlm_loss)."""
    node: Any = summary
    for part in metric.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    try:
        value = float(node)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def optimised_by_sweeper(hc: Any) -> bool:
    """Whether the job's return value steers the sweep (a sweeper other than the basic grid)."""
    return is_multirun(hc) and str(hc.sweeper.get("_target_", BASIC_SWEEPER)) != BASIC_SWEEPER
