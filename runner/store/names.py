"""A run's W&B group and name, decided here and nowhere else: logger.group / logger.name when set; in a multirun the
sweep (`<experiment or "sweep">-<sweep dir name>`) and the job's swept overrides; otherwise `<model>-<objective>` and
`<model>-<objective>-<data>-<date_time>`. python -m runner names a job before it runs, the run's loggers use the
result, and python -m runner.compare groups finished runs the same way."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runner.store.layout import HYDRA

SWEPT_ENV = "BERTLAB_SWEPT_KEYS"  # set by SweepCallback for the jobs (in-process, or inherited by launcher workers)


def is_multirun(hc: Any) -> bool:
    """Whether this Hydra job is one job of a multirun."""
    return str(hc.mode) in ("MULTIRUN", "RunMode.MULTIRUN")


def job_names(hc: Any, run_dir: Path, group: str | None, name: str | None) -> tuple[str | None, str | None]:
    """(W&B group, run name) of a multirun job: logger.group/name when set, else the sweep (the job directory's
    parent) and the job's overrides. `hc` is the job's hydra node (HydraConfig.get(), or .hydra/hydra.yaml's)."""
    if hc is None or not is_multirun(hc):
        return group, name
    sweep = Path(run_dir).resolve().parent.name
    experiment = (hc.runtime.choices or {}).get("experiment")
    group = group or f"{experiment if experiment not in (None, 'null') else 'sweep'}-{sweep}"
    swept = set(filter(None, os.environ.get(SWEPT_ENV, "").split(",")))
    varied = [o for o in map(str, hc.overrides.task) if o.split("=", 1)[0].lstrip("+~") in swept]
    return group, name or ",".join(varied) or str(hc.job.override_dirname or f"job{hc.job.num}")


def run_names(cfg: Any, run_dir: Path) -> tuple[str, str]:
    """(W&B group, run name) of a run whose config has been through job_names: its logger.group and logger.name, or
    <model>-<objective> and <model>-<objective>-<data>-<the run directory's date and time>."""
    m, o, d = cfg.model.name, cfg.objective.name, cfg.data.name
    return cfg.logger.group or f"{m}-{o}", cfg.logger.name or f"{m}-{o}-{d}-{Path(run_dir).name[:19]}"


def saved_group(run_dir: Path, logger: dict, model: str, objective: str) -> str:
    """The W&B group a finished run was logged in, from its saved config's logger node and its hydra.yaml."""
    return job_names(hydra_node(run_dir), run_dir, logger.get("group"), None)[0] or f"{model}-{objective}"


def hydra_node(run_dir: Path) -> DictConfig | None:
    """A finished job's hydra node from .hydra/hydra.yaml (None when unreadable)."""
    try:
        return OmegaConf.load(Path(run_dir) / HYDRA).hydra
    except Exception:  # noqa: BLE001 - interpolations or a torn file: the caller falls back
        return None
