"""Where a run's metrics go besides metrics.jsonl (logger.backends): Weights & Biases, TensorBoard, CSV.

Each backend receives the same records (a step and flat numeric keys) and the same end-of-run summary. A backend
that fails (no network, a full disk, a missing package) is dropped with one warning by RunLogger; the others and the
run go on. Compute axes: every record carries train/flops and train/tokens, so W&B can put runs on a FLOPs axis
(define_metric) and the HTML report (runner.reporting.compare --html) can too."""
from __future__ import annotations

import csv
import io
import json
import uuid
import warnings
from pathlib import Path
from typing import Any

from runner.config.errors import require
from runner.data.cache import appending, atomic_write_bytes
from runner.store import layout

BACKENDS = ("wandb", "tensorboard", "csv")
AXES = ("train/flops", "train/tokens", "train/words")  # compute axes: W&B step metrics (words: when the data's
# words per token is known, the axis BabyLM plots on)
EVAL_PREFIXES = ("val", "probe", "suite", "suite_full", "downstream")  # against training FLOPs in W&B by default



def check_backends(logger: Any) -> None:
    """logger.backends: each one known and its package importable (a one-line ConfigError before any work)."""
    import importlib.util

    for b in logger.backends:
        require(b in BACKENDS, f"logger.backends: {b!r} is not a backend; use any of {', '.join(BACKENDS)}")
    for b, package in (("wandb", "wandb"), ("tensorboard", "tensorboard")):
        require(b not in logger.backends or importlib.util.find_spec(package) is not None,
                f"logger.backends has {b} but the {package} package is not installed: pip install {package}, or "
                f"drop it from logger.backends")

def flatten(d: dict[str, Any], prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a/b": 1} (sep="."): W&B summaries and configs, TensorBoard's hparams."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}{sep}", sep))
        else:
            out[f"{prefix}{k}"] = v
    return out


def numeric(metrics: dict[str, Any]) -> dict[str, float]:
    """The keys a scalar dashboard can plot: numbers (bools excluded)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class WandbBackend:
    """A W&B run: config logged flat (filter and group by any dotted key), train/flops and train/tokens as step
    metrics, and the validation, probe and downstream curves on the FLOPs axis by default (compare at equal
    compute); the summary flattened into run.summary."""

    name = "wandb"

    def __init__(self, cfg: Any, run_dir: Path, config: dict, name: str, group: str | None, tags: list[str],
                 resume: bool, mode: str):
        import wandb

        id_file = run_dir / layout.WANDB_ID
        run_id = id_file.read_text().strip() if resume and id_file.exists() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id)
        self.run, self.mode = None, "disabled"
        errors = []
        for m in dict.fromkeys((mode, "offline")):  # never let a network problem stop training
            try:
                settings = wandb.Settings(silent=True, init_timeout=30, console="off", x_disable_stats=True)
                self.run = wandb.init(project=cfg.project, entity=cfg.entity, name=name, group=group, tags=tags,
                                      config=flatten(config, sep="."), dir=str(run_dir), id=run_id,
                                      resume="allow", mode=m, settings=settings)
                self.mode = m
                break
            except Exception as e:  # noqa: BLE001 - any failure of the logging service
                errors.append(f"{m}: {e}")
                if m != "offline":
                    warnings.warn(f"W&B {m} init failed ({e}); trying offline", stacklevel=2)
        if self.run is None:
            raise RuntimeError("init failed (" + "; ".join(errors) + ")")
        for axis in AXES:
            self.run.define_metric(axis, summary="max")
        for prefix in EVAL_PREFIXES:
            self.run.define_metric(f"{prefix}/*", step_metric="train/flops")

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """One record at this step."""
        self.run.log(metrics, step=step)

    def finish(self, summary: dict[str, Any]) -> None:
        """Attach the summary and close the run."""
        self.run.summary.update(flatten(summary))
        self.run.finish()

    def abort(self) -> None:
        """Close the run marked failed."""
        self.run.finish(exit_code=1)


class TensorBoardBackend:
    """Event files in <run>/tensorboard (view with `tensorboard --logdir outputs`): every numeric key as a scalar
    against the step; the config as text and, at the end, as hparams with the final metrics (TensorBoard's HParams
    tab filters and compares runs by any config key). A resumed run discards the events after its checkpoint."""

    name = "tensorboard"

    def __init__(self, run_dir: Path, config: dict, resume_step: int | None):
        from torch.utils.tensorboard import SummaryWriter

        self.config = config
        self.writer = SummaryWriter(log_dir=str(run_dir / layout.TENSORBOARD),
                                    purge_step=None if resume_step is None else resume_step + 1)
        if config:
            self.writer.add_text("config", "```\n" + json.dumps(config, indent=2, default=str) + "\n```", 0)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Every number as a scalar at this step."""
        for k, v in numeric(metrics).items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()  # a watcher (tensorboard, a crash) sees the records as they come

    def finish(self, summary: dict[str, Any]) -> None:
        """The config and final metrics as one hparams session; flush and close."""
        from torch.utils.tensorboard.summary import hparams

        params = {k: v if isinstance(v, (int, float, str, bool)) else str(v)
                  for k, v in flatten(self.config, sep=".").items() if v is not None}
        final = {f"final/{k}": v for k, v in numeric(flatten({"val": summary.get("final_val") or {},
                                                              "probe": (summary.get("probes") or {}).get("final")
                                                              or {}})).items()}
        if params and final:
            for part in hparams(params, final):
                self.writer.file_writer.add_summary(part)
            for k, v in final.items():
                self.writer.add_scalar(k, v, int(summary.get("steps") or 0))
        self.writer.close()

    def abort(self) -> None:
        """Close the event file."""
        self.writer.close()


class CsvBackend:
    """<run>/metrics.csv: one row per record, one column per key (as PyTorch Lightning's CSVLogger writes it);
    a key first seen later rewrites the file with the wider header, atomically."""

    name = "csv"

    def __init__(self, run_dir: Path, resume_step: int | None):
        self.path = run_dir / layout.METRICS_CSV
        self.rows: list[dict[str, Any]] = []
        if resume_step is not None and self.path.exists():  # keep what preceded the checkpoint
            with self.path.open(newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if r.get("step") and int(r["step"]) <= resume_step]
        self.columns = list(dict.fromkeys(["step", *(k for r in self.rows for k in r)]))
        self._rewrite()

    def _rewrite(self) -> None:
        out = io.StringIO()
        w = csv.DictWriter(out, fieldnames=self.columns, lineterminator="\n")
        w.writeheader()
        w.writerows(self.rows)
        atomic_write_bytes(out.getvalue().encode(), self.path)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Append a row; widen the header first when the record has new keys."""
        row = {"step": step, **metrics}
        self.rows.append(row)
        if any(k not in self.columns for k in row):
            self.columns += [k for k in row if k not in self.columns]
            self._rewrite()
            return
        with appending(self.path, newline="") as f:  # a full disk: no half row
            csv.DictWriter(f, fieldnames=self.columns, lineterminator="\n").writerow(row)

    def finish(self, summary: dict[str, Any]) -> None:
        """Nothing to close: every row is on disk."""

    def abort(self) -> None:
        """Nothing to close."""
