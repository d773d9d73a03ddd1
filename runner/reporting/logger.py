"""Where a run's numbers go: metrics.jsonl, summary.json, the backends of logger.backends (W&B, TensorBoard, CSV:
runner/reporting/backends.py), and the rich console."""
from __future__ import annotations

import json
import netrc
import os
import time
import warnings
from pathlib import Path
from typing import Any

from runner.data.cache import WriteFailed, appending, atomic_write_bytes
from runner.config.errors import ConfigError
from runner.config.schema import MODES
from runner.reporting import backends as lb
from runner.store import layout
from runner.store.checkpoint import resume_hint


def has_wandb_credentials() -> bool:
    """True when an API key is configured (environment or ~/.netrc), i.e. online logging can authenticate."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        rc = netrc.netrc(os.environ.get("NETRC"))
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    return rc.authenticators(host) is not None


def resolve_mode(mode: str) -> str:
    """The W&B mode actually used: online only with credentials, offline otherwise."""
    if mode not in MODES:
        raise ConfigError(f"logger.mode={mode!r} must be one of {', '.join(MODES)}")
    if mode == "online" and not has_wandb_credentials():
        return "offline"
    return mode


def run_tags(cfg: Any, resumed_with_changes: bool = False) -> list[str]:
    """A run's W&B tags: model, objective, data, family and masking, logger.tags, and resumed-with-changes when a
    resume changed its settings."""
    m, o, d = cfg.model.name, cfg.objective.name, cfg.data.name
    return list(dict.fromkeys([m, o, d, cfg.model.family, f"masking={cfg.objective.get('masking', 'none')}",
                               *cfg.logger.tags, *(["resumed-with-changes"] if resumed_with_changes else [])]))


class RunLogger:
    """Appends every record to metrics.jsonl in the run directory (with the wall-clock time) and sends it to each of
    logger.backends (runner/reporting/backends.py: wandb, tensorboard, csv). A backend that fails is dropped with one
    warning; the others, the local files and the run go on."""

    def __init__(self, cfg: Any, run_dir: Path, config: dict, name: str, tags: list[str], resume_step: int | None,
                 group: str | None = None):
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / layout.METRICS
        self.mode = resolve_mode(cfg.mode)
        if resume_step is None:
            self.metrics_path.unlink(missing_ok=True)
        else:
            self._truncate_after(resume_step)  # the resumed run rewrites what followed its checkpoint
        self.backends: list[Any] = []
        for kind in cfg.get("backends", ["wandb"]):
            if kind == "wandb" and self.mode == "disabled":
                continue
            backend = self._call(kind, lambda k=kind: self._open(k, cfg, config, name, group or cfg.group, tags,
                                                                  resume_step))
            if backend is not None:
                self.backends.append(backend)
        wandb = next((b for b in self.backends if b.name == "wandb"), None)
        self.mode = wandb.mode if wandb is not None else "disabled"

    def _open(self, kind: str, cfg: Any, config: dict, name: str, group: str | None, tags: list[str],
              resume_step: int | None) -> Any:

        if kind == "wandb":
            return lb.WandbBackend(cfg, self.run_dir, config, name, group, tags, resume_step is not None, self.mode)
        if kind == "tensorboard":
            return lb.TensorBoardBackend(self.run_dir, config, resume_step)
        if kind == "csv":
            return lb.CsvBackend(self.run_dir, resume_step)
        raise ConfigError(f"logger.backends: unknown backend {kind!r}; use {', '.join(lb.BACKENDS)}")

    @property
    def active(self) -> list[str]:
        """The backends still receiving records."""
        return [b.name for b in self.backends]

    def _truncate_after(self, step: int) -> None:
        if not self.metrics_path.exists():
            return
        keep = [line for line in self.metrics_path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        atomic_write_bytes(("\n".join(keep) + "\n" if keep else "").encode(), self.metrics_path)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """One record: one JSON line (with "time", unix seconds), and the same keys to every backend."""
        line = json.dumps({"step": step, **metrics, "time": round(time.time(), 3)}) + "\n"
        try:
            with appending(self.metrics_path, len(line)) as f:  # a full disk: no half line, the run stops
                f.write(line)
        except WriteFailed as e:
            raise e.saying(resume_hint(self.run_dir)) from e.error
        self._each(lambda b: b.log(metrics, step))

    def finish(self, summary: dict[str, Any]) -> None:
        """Write summary.json atomically and close every backend with the summary attached."""
        try:
            layout.write_summary(self.run_dir, summary)
        except WriteFailed as e:
            raise e.saying(resume_hint(self.run_dir)) from e.error
        self._each(lambda b: b.finish(summary))

    def abort(self) -> None:
        """Close the backends after a failure (W&B marks the run failed)."""
        self._each(lambda b: b.abort())

    def _each(self, call: Any) -> None:
        for b in list(self.backends):
            if self._call(b.name, lambda b=b: call(b)) is None:
                self.backends.remove(b)
                if b.name == "wandb":
                    self.mode = "disabled"

    def _call(self, kind: str, call: Any) -> Any:
        """call(); on failure (network, rate limits, disk, a missing package) warn once and return None:
        metrics.jsonl and summary.json hold everything regardless."""
        try:
            out = call()
            return True if out is None else out
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001 - a logging service must not stop training
            label = {"wandb": "W&B", "tensorboard": "TensorBoard", "csv": "CSV"}.get(kind, kind)
            others = "".join(f", {b.name}" for b in self.backends if b.name != kind)
            warnings.warn(f"{label} failed ({type(e).__name__}: {e}); logging continues to {self.metrics_path}"
                          f"{others}", stacklevel=3)
            return None


class NullLogger:
    """The logger of ranks > 0 in a distributed run: rank 0 alone writes metrics, W&B and the summary."""

    mode = "disabled"
    active: tuple[str, ...] = ()

    def log(self, metrics: dict[str, Any], step: int) -> None:
        pass

    def finish(self, summary: dict[str, Any]) -> None:
        pass

    def abort(self) -> None:
        pass


def resumed_logger(cfg: Any, run_dir: Path, summary: dict[str, Any]) -> Any:
    """A finished run's logger, resumed at its last step (its W&B run by wandb_id.txt), for work done on it later
    (python -m runner.finetune, python -m runner.evaluate); a NullLogger, with a warning, if that fails."""
    name = summary.get("name") or cfg.logger.name or Path(run_dir).name
    try:
        return RunLogger(cfg.logger, Path(run_dir), {}, name, run_tags(cfg), resume_step=int(summary.get("steps", 0)),
                         group=summary.get("wandb_group") or cfg.logger.group)
    except Exception as e:  # noqa: BLE001 - logging must not lose the result
        warnings.warn(f"W&B and metrics.jsonl not updated ({type(e).__name__}: {e}); writing summary.json only",
                      stacklevel=2)
        return NullLogger()
