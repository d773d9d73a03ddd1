"""Where a run's numbers go: Weights & Biases, metrics.jsonl, summary.json, and the rich console."""
from __future__ import annotations

import json
import netrc
import os
import uuid
import warnings
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from runner import distributed
from runner.data.cache import atomic_write_bytes
from runner.errors import ConfigError

console = Console(stderr=True)  # progress, notes, warnings, errors and the end-of-run table
# results a command prints for a pipe (python -m runner.compare's table): wide when not a terminal, so rows stay whole
stdout_console = Console(width=None if os.isatty(1) or "COLUMNS" in os.environ else 200)
MODES = ("online", "offline", "disabled")


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


class RunLogger:
    """Sends metrics to W&B and appends them to metrics.jsonl in the run directory."""

    def __init__(self, cfg: Any, run_dir: Path, config: dict, name: str, tags: list[str], resume_step: int | None,
                 group: str | None = None):
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.mode = resolve_mode(cfg.mode)
        if resume_step is None:
            self.metrics_path.unlink(missing_ok=True)
        else:
            self._truncate_after(resume_step)  # the resumed run rewrites what followed its checkpoint
        self.run = None
        if self.mode != "disabled":
            self.run = self._init_wandb(cfg, config, name, group or cfg.group, tags, resume_step is not None)

    def _init_wandb(self, cfg: Any, config: dict, name: str, group: str | None, tags: list[str], resume: bool):
        import wandb

        id_file = self.run_dir / "wandb_id.txt"
        run_id = id_file.read_text().strip() if resume and id_file.exists() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id)
        for mode in dict.fromkeys((self.mode, "offline")):  # never let a network problem stop training
            try:
                settings = wandb.Settings(silent=True, init_timeout=30, console="off", x_disable_stats=True)
                run = wandb.init(project=cfg.project, entity=cfg.entity, name=name, group=group, tags=tags,
                                 config=config, dir=str(self.run_dir), id=run_id, resume="allow", mode=mode,
                                 settings=settings)
                self.mode = mode
                return run
            except Exception as e:  # noqa: BLE001 - any failure of the logging service
                warnings.warn(f"W&B {mode} init failed ({e}); continuing", stacklevel=2)
        self.mode = "disabled"
        return None

    def _truncate_after(self, step: int) -> None:
        if not self.metrics_path.exists():
            return
        keep = [line for line in self.metrics_path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        atomic_write_bytes(("\n".join(keep) + "\n" if keep else "").encode(), self.metrics_path)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """One record: to W&B and one JSON line."""
        with self.metrics_path.open("a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        self._wandb(lambda run: run.log(metrics, step=step))

    def finish(self, summary: dict[str, Any]) -> None:
        """Write summary.json atomically and close the W&B run with the summary attached."""
        atomic_write_bytes(json.dumps(summary, indent=2).encode(), self.run_dir / "summary.json")
        self._wandb(lambda run: (run.summary.update(dict(_flatten(summary).items())), run.finish()))

    def abort(self) -> None:
        """Close the W&B run after a failure, marking it failed."""
        self._wandb(lambda run: run.finish(exit_code=1))

    def _wandb(self, call: Any) -> None:
        """A W&B call; if the service fails (network, rate limits), warn once and go on with the local files."""
        if self.run is None:
            return
        try:
            call(self.run)
        except Exception as e:  # noqa: BLE001 - metrics.jsonl and summary.json hold everything regardless
            warnings.warn(f"W&B failed ({type(e).__name__}: {e}); logging continues to {self.metrics_path} only",
                          stacklevel=3)
            self.run, self.mode = None, "disabled"


class NullLogger:
    """The logger of ranks > 0 in a distributed run: rank 0 alone writes metrics, W&B and the summary."""

    mode = "disabled"

    def log(self, metrics: dict[str, Any], step: int) -> None:
        pass

    def finish(self, summary: dict[str, Any]) -> None:
        pass

    def abort(self) -> None:
        pass


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def progress() -> Progress:
    """The training progress bar: step of max, loss, tokens/s, elapsed and ETA."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.3f}"), TextColumn("{task.fields[tps]:,.0f} tok/s"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
                    disable=not distributed.is_main())  # a distributed run: rank 0's bar only
