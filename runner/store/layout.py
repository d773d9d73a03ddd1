"""The run store: the one module that spells a run directory's layout, and a finished run opened from it (its
config brought up to today's schemas, its checkpoint, its summary, its exports). Resume, fine-tuning, the export,
distillation's teacher, the comparison and the watch open runs here.

    <run>/.hydra/config.yaml   the resolved config (Hydra writes it; a prerequisite run writes its own)
    <run>/.hydra/hydra.yaml    Hydra's node: a sweep job's overrides and choices
    <run>/.lock                the owner's lock (runner/engine/lock.py)
    <run>/checkpoints/         step-<N>.pt and last.pt (runner/store/checkpoint.py)
    <run>/metrics.jsonl        every logged record; metrics.csv and tensorboard/ when those backends log
    <run>/summary.json         written at the run's end: a run that has one finished
    <run>/hf/, hf_generator/   transformers directories (runner/hf/export.py)
    <run>/snapshots/           the crossover's snapshots (runner/engine/snapshots.py)
    <run>/__main__.log         Hydra's job log (a sweep job's error)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runner.config.errors import ConfigError
from runner.config.schema import with_defaults
from runner.models.registry import encoder_class, upgrade
from runner.store import checkpoint

CONFIG = Path(".hydra") / "config.yaml"
HYDRA = Path(".hydra") / "hydra.yaml"
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
HF = "hf"
SNAPSHOTS = "snapshots"
JOB_LOG = "__main__.log"
# what makes a directory a used run directory: a new run is refused there (runner/engine/lock.py)
RUN_FILES = ("checkpoints", METRICS, SUMMARY, HF, SNAPSHOTS)
# _target_ paths a run saved before the package was split into layers (issue 26), and where they live now
MOVED_TARGETS = {"runner.optim.": "runner.engine.optim."}


def is_run(path: Path) -> bool:
    """A directory the runner wrote (its resolved config)."""
    return (Path(path) / CONFIG).is_file()


def is_finished(path: Path) -> bool:
    """A run that reached its end (it wrote summary.json)."""
    return (Path(path) / SUMMARY).is_file()


def run_files(path: Path) -> list[str]:
    """What a run left in this directory (checkpoints, metrics, summary, exports, snapshots), sorted; [] when none."""
    path = Path(path)
    found = [n for n in RUN_FILES if n != "checkpoints" and (path / n).exists()]
    found += [str(p.relative_to(path)) for p in checkpoint.step_files(path)]
    if checkpoint.checkpoint_path(path).is_file() and not checkpoint.step_files(path):
        found.append(str(checkpoint.checkpoint_path(path).relative_to(path)))
    return sorted(found)


def write_config(path: Path, cfg: Any) -> None:
    """Save a resolved config where Hydra writes it, so the directory is a run directory."""
    (Path(path) / CONFIG).parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, Path(path) / CONFIG)


def _moved(node: Any) -> Any:
    """A saved config with the _target_ paths of modules that have moved since rewritten to today's."""
    if isinstance(node, dict):
        return {k: _moved(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_moved(v) for v in node]
    if isinstance(node, str):
        for old, new in MOVED_TARGETS.items():
            if node.startswith(old):
                return new + node[len(old):]
    return node


def current(cfg: Any) -> DictConfig:
    """A saved config (a run's config.yaml, a checkpoint's record) under today's schemas: every group's defaults for
    keys added since, the family's model schema (keys that moved to another family dropped), the objective's
    options, and moved _target_ paths rewritten."""
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    plain = _moved(plain)
    out = with_defaults(OmegaConf.create(plain))
    if "model" in plain:  # the family's schema
        family = encoder_class(plain["model"].get("family", "bert"))
        out.model = OmegaConf.merge(OmegaConf.structured(family.config_class), upgrade(plain["model"]))
    target = (plain.get("objective") or {}).get("_target_")
    if target:  # the objective's options, its class named by the config itself (no import of the objectives here)
        from hydra.utils import get_class

        options = getattr(get_class(target), "options_class", None)
        if options is not None:
            out.objective = OmegaConf.merge(OmegaConf.structured(options), plain["objective"])
    return out


def read_summary(path: Path) -> dict[str, Any] | None:
    """The run's summary.json, or None when it has none or it is not JSON."""
    try:
        return json.loads((Path(path) / SUMMARY).read_text())
    except (OSError, ValueError):
        return None


@dataclass
class FinishedRun:
    """A run directory opened for reading: its config under today's schemas, its checkpoint on demand."""

    path: Path
    config: DictConfig

    def state(self) -> dict[str, Any]:
        """The newest readable checkpoint (runner/store/checkpoint.py load)."""
        return checkpoint.load(self.path)

    def module_state(self) -> dict[str, Any]:
        """The trained module's tensors (encoder.* and objective.*)."""
        return self.state()["module"]

    @property
    def summary(self) -> dict[str, Any] | None:
        """summary.json, or None."""
        return read_summary(self.path)

    def export_dir(self, name: str = HF) -> Path:
        """A transformers directory the run writes (hf/, hf_generator/)."""
        return self.path / name


def open_run(path: Any, key: str | None = None, finished: bool = False) -> FinishedRun:
    """The run directory at `path` (named as `key=path` in the one-line errors: export, objective.teacher), with a
    checkpoint, and a summary.json when `finished`."""
    path = Path(str(path)).expanduser()
    name = f"{key}={str(path)!r}" if key else repr(str(path))
    if not is_run(path):
        raise ConfigError(f"{name} is not a run directory (no {path / CONFIG}); pass outputs/runs/<run> "
                          "or a sweep job's directory")
    if not checkpoint.exists(path):
        raise ConfigError(f"{name} has no checkpoint ({checkpoint.checkpoint_path(path)}): the run "
                          "trained no steps (trainer.max_steps=0) or its checkpoints were removed")
    if finished and not is_finished(path):
        raise ConfigError(f"{name} has no {SUMMARY}: the run did not finish; complete it with "
                          f"`python -m runner <its overrides> trainer.resume=true hydra.run.dir={path}` first")
    if finished and read_summary(path) is None:
        raise ConfigError(f"{path / SUMMARY} is not JSON; the run's end was not written whole")
    return FinishedRun(path, current(OmegaConf.load(path / CONFIG)))
