"""The run store: the one module that spells a run directory's layout, and a finished run opened from it (its
config brought up to today's schemas, its checkpoint, its summary, its exports). Resume, fine-tuning, the export,
distillation's teacher, the comparison and the watch open runs here.

    <run>/.hydra/config.yaml   the resolved config (Hydra writes it; a prerequisite run writes its own)
    <run>/.hydra/hydra.yaml    Hydra's node: a sweep job's overrides and choices
    <run>/.hydra/overrides.yaml  the job's command-line overrides
    <run>/.lock                the owner's lock (runner/engine/lock.py)
    <run>/checkpoints/         step-<N>.pt and last.pt (runner/store/checkpoint.py)
    <run>/metrics.jsonl        every logged record; metrics.csv and tensorboard/ when those backends log
    <run>/wandb_id.txt         the W&B run's id (a resume or a fine-tuning continues that run)
    <run>/summary.json         written at the run's end: a run that has one finished
    <run>/hf/, hf_generator/   transformers directories (runner/hf/export.py)
    <run>/snapshots/           the crossover's snapshots (runner/engine/snapshots.py)
    <run>/crossover.json       the crossover's result (runner/evaluation/crossover.py)
    <run>/__main__.log         Hydra's job log (a sweep job's error); Hydra names it <task>.log

An evaluation directory (`python -m runner.evaluate <transformers model dir> --out DIR`) holds only summary.json,
its "kind" "transformers <kind>" (is_evaluation); the comparison reads it beside runs.

A sweep directory holds its jobs' run directories (0_<overrides>, 1_..., in Hydra's job order), Hydra's
multirun.yaml and sweep.json (runner/sweeps/callback.py: how many jobs, and whether the sweep ended).
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from runner.config.errors import ConfigError
from runner.config.schema import with_defaults
from runner.data.cache import atomic_write_bytes
from runner.models.registry import model_config
from runner.store import checkpoint

CONFIG = Path(".hydra") / "config.yaml"
HYDRA = Path(".hydra") / "hydra.yaml"
OVERRIDES = Path(".hydra") / "overrides.yaml"
LOCK = ".lock"
CHECKPOINTS = checkpoint.DIR
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
TENSORBOARD = "tensorboard"
WANDB_ID = "wandb_id.txt"
HF = "hf"
SNAPSHOTS = "snapshots"
CROSSOVER = "crossover.json"
JOB_LOG = "__main__.log"
SWEEP_MARKER = "sweep.json"  # in a sweep directory: {"jobs", "swept", "started", "ended", "pid", "host"}
MULTIRUN = "multirun.yaml"  # in a sweep directory: Hydra's config of the sweep (the basic sweeper writes it)
# what makes a directory a used run directory: a new run is refused there (runner/engine/lock.py)
RUN_FILES = (CHECKPOINTS, METRICS, SUMMARY, HF, SNAPSHOTS)
# _target_ paths a run saved before the package was split into layers (issue 26), and where they live now
MOVED_TARGETS = {"runner.optim.": "runner.engine.optim."}


def is_run(path: Path) -> bool:
    """A run directory: Hydra writes .hydra/config.yaml before the job starts, so failed jobs have it too."""
    return (Path(path) / CONFIG).is_file()


def is_finished(path: Path) -> bool:
    """A run that reached its end (it wrote summary.json)."""
    return (Path(path) / SUMMARY).is_file()


def job_key(path: Path) -> tuple[int, str]:
    """Sort multirun jobs by Hydra's job number (0_, 1_, ... 10_), not as strings."""
    m = re.match(r"(\d+)", Path(path).name)
    return (int(m.group(1)) if m else sys.maxsize, Path(path).name)


def jobs_in(sweep_dir: Path) -> list[Path]:
    """The run directories one level below sweep_dir, in Hydra's job order."""
    return sorted((c for c in Path(sweep_dir).iterdir() if is_run(c)), key=job_key)


def is_evaluation(path: Path) -> bool:
    """A transformers model's evaluation dir (runner.evaluate --out): summary.json whose kind starts "transformers"."""
    s = read_summary(path) if (Path(path) / SUMMARY).is_file() else None
    return isinstance(s, dict) and str(s.get("kind") or "").startswith("transformers")


def find_runs(paths: list[Path], evaluations: bool = False) -> list[Path]:
    """Run dirs (and evaluation dirs when asked) given directly or one level below each path; none: a ConfigError."""
    wanted = (lambda c: is_run(c) or is_evaluation(c)) if evaluations else is_run
    what = f"a run dir holds {CONFIG.as_posix()}" + (", an evaluation dir runner.evaluate's summary.json"
                                                     if evaluations else "")
    runs: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise ConfigError(f"{p}: no such file or directory")
        found = [p] if wanted(p) else sorted(filter(wanted, p.iterdir()), key=job_key) if p.is_dir() else []
        if not found:
            raise ConfigError(f"{p}: no run directories in it ({what})")
        runs += found
    return list(dict.fromkeys(runs))


def run_files(path: Path) -> list[str]:
    """What a run left in this directory: its checkpoints/*.pt (sorted), then metrics.jsonl, summary.json, hf/ and
    snapshots/ where they exist; [] when none (not .hydra/ or Hydra's log alone: a run that failed validation may be
    started again in its directory)."""
    path = Path(path)
    found = [str(p.relative_to(path)) for p in checkpoint.saved_files(path)]
    return found + [n for n in RUN_FILES if n != CHECKPOINTS and (path / n).exists()]


def job_logs(path: Path) -> list[Path]:
    """Hydra's job logs in a run directory (<task name>.log, e.g. __main__.log), by name."""
    return sorted(Path(path).glob("*.log"))


def read_yaml(path: Path) -> Any:
    """A YAML file, or None when missing or unreadable (a half-written job must not stop a report)."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None


def saved_config(path: Path) -> Any:
    """The run's .hydra/config.yaml as plain YAML (as saved, not brought up to today's schemas: open_run does
    that), or None when missing or unreadable."""
    return read_yaml(Path(path) / CONFIG)


def saved_hydra(path: Path) -> Any:
    """The hydra node of the run's .hydra/hydra.yaml as plain YAML, or None when missing or unreadable."""
    node = read_yaml(Path(path) / HYDRA)
    return node.get("hydra") if isinstance(node, dict) else None


def saved_overrides(path: Path) -> list[str] | None:
    """The job's command-line overrides (.hydra/overrides.yaml); None while Hydra has not written them."""
    file = Path(path) / OVERRIDES
    if not file.is_file():
        return None
    return [str(o) for o in read_yaml(file) or []]


def read_metrics(path: Path) -> list[dict]:
    """The run's metrics.jsonl records; a torn line (a killed job) is skipped, a missing file is []."""
    file = Path(path) / METRICS
    records = []
    for line in file.read_text().splitlines() if file.is_file() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return records


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    """Write the run's summary.json atomically (a killed writer leaves the previous one)."""
    atomic_write_bytes(json.dumps(summary, indent=2).encode(), Path(path) / SUMMARY)


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
    saved_eval = plain.get("eval")
    if isinstance(saved_eval, dict) and "head" not in saved_eval:
        # written before the downstream protocol of docs/evaluation.md (eval.head, eval.lrs): its eval.lr and
        # eval.pooling were the old protocol's, which fine-tuned below random init; today's applies
        plain["eval"] = {k: v for k, v in saved_eval.items() if k not in ("lr", "pooling")}
    out = with_defaults(OmegaConf.create(plain))
    if "model" in plain:  # the family's schema, keys that moved to another family's dropped
        out.model = OmegaConf.structured(model_config(plain["model"]))
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
