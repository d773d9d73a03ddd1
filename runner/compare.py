"""`python -m runner.compare <multirun dir | run dirs...> [--out DIR] [--wandb]`: which change helps, at what cost."""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from runner.errors import ConfigError
from runner.logging import MODES  # most connected first

# piped output (no terminal) would otherwise wrap a 14-column table at 80 characters
out_console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200)
err_console = Console(stderr=True)
# Raw fields of one row, in CSV order; the rich and markdown tables show formatted COLUMNS.
FIELDS = ["run", "job", "model", "objective", "data", "overrides", "parameters", "train_flops", "tokens_seen",
          "steps", "val_metric", "val_loss", "downstream_task", "accuracy_mean", "accuracy_std", "f1_mean", "f1_std",
          "random_init_accuracy", "bow_accuracy", "tokens_per_s", "wall_time_s", "status", "error", "path"]
COLUMNS = ["run", "model", "objective", "overrides", "params", "train FLOPs", "tokens", "val loss",
           "downstream acc", "macro-F1", "random init / BoW", "tokens/s", "wall s", "status", "error"]
LOSS_PLOT, DOWNSTREAM_PLOT = "val_loss_vs_flops.png", "downstream_vs_flops.png"


def is_run(path: Path) -> bool:
    """A Hydra job directory: Hydra writes .hydra/config.yaml before the job starts, so failed jobs have it too."""
    return (path / ".hydra" / "config.yaml").is_file()


def job_key(path: Path) -> tuple[int, str]:
    """Sort multirun jobs by Hydra's job number (0_, 1_, ... 10_), not as strings."""
    m = re.match(r"(\d+)", path.name)
    return (int(m.group(1)) if m else sys.maxsize, path.name)


def find_runs(paths: list[Path]) -> list[Path]:
    """Run dirs given directly or one level below each path; a path with none is a ConfigError naming it."""
    runs: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise ConfigError(f"{p}: no such file or directory")
        found = [p] if is_run(p) else sorted((c for c in p.iterdir() if is_run(c)), key=job_key) if p.is_dir() else []
        if not found:
            raise ConfigError(f"{p}: no run directories in it (a run dir holds .hydra/config.yaml)")
        runs += found
    return list(dict.fromkeys(runs))


def read_yaml(path: Path) -> Any:
    """A YAML file, or None when missing or unreadable (a half-written job must not stop the report)."""
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def read_jsonl(path: Path) -> list[dict]:
    """metrics.jsonl records; a torn last line (a killed job) is skipped."""
    records = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return records


def log_error(run_dir: Path) -> str:
    """The job's last `error: ...` line (our CLI), else the exception line of its last traceback, from its logs."""
    logs = sorted(run_dir.glob("*.log"))  # Hydra's <task name>.log, e.g. __main__.log
    lines = [ln.rstrip() for log in logs for ln in log.read_text(errors="replace").splitlines()]
    errors = [m.group(1) for ln in lines if (m := re.search(r"\berror:\s*(.+)", ln))]
    if errors:
        return errors[-1]
    tb = [i for i, ln in enumerate(lines) if ln.startswith("Traceback")]
    if tb:  # the exception line is the last unindented line after the traceback header
        tail = [ln for ln in lines[tb[-1] + 1:] if ln and not ln[0].isspace()]
        return tail[-1] if tail else lines[tb[-1]]
    # `python -m runner` prints its `error:` line to the terminal, so an empty log is the common case
    return "no summary.json and no error in the job's log (see the sweep's terminal output)"


def pick_metric(values: dict, prefix: str = "") -> str | None:
    """The comparable validation loss: MLM loss (ELECTRA: the generator's), else the causal LM loss."""
    return next((k for k in ("mlm_loss", "lm_loss") if f"{prefix}{k}" in values), None)


def distinct_overrides(runs: list[Path]) -> dict[Path, str]:
    """Each run's command-line overrides minus those all runs share: what the sweep varied."""
    ovr = {r: [str(o) for o in read_yaml(r / ".hydra" / "overrides.yaml") or []] for r in runs}
    common = set.intersection(*(set(v) for v in ovr.values())) if len(runs) > 1 else set()
    return {r: " ".join(o for o in v if o not in common) for r, v in ovr.items()}


def run_row(run_dir: Path, overrides: str = "") -> dict[str, Any]:
    """One table row from a run dir: summary.json when finished, else its config and the error from its log."""
    cfg = read_yaml(run_dir / ".hydra" / "config.yaml") or {}
    row: dict[str, Any] = dict.fromkeys(FIELDS)
    row.update(run=run_dir.name, job=run_dir.name, path=str(run_dir), overrides=overrides,
               model=(cfg.get("model") or {}).get("name"), objective=(cfg.get("objective") or {}).get("name"),
               data=(cfg.get("data") or {}).get("name"))
    try:
        s = json.loads((run_dir / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        has_ckpt = any((run_dir / "checkpoints").glob("*.pt"))
        row.update(status="incomplete" if has_ckpt else "failed", error=log_error(run_dir))
        return row
    final = s.get("final_val") or {}
    metric = pick_metric(final)
    ds = s.get("downstream") if isinstance(s.get("downstream"), dict) else {}
    row.update({k: s[k] for k in ("model", "objective", "data", "train_flops", "tokens_seen", "steps",
                                  "tokens_per_s", "wall_time_s") if k in s})
    row.update({k: ds.get(k) for k in ("accuracy_mean", "accuracy_std", "f1_mean", "f1_std")})
    base = ds.get("baselines") or {}  # what the same fine-tuning gives without pretraining, and bag-of-words
    row.update(random_init_accuracy=(base.get("random_init") or {}).get("accuracy_mean"),
               bow_accuracy=(base.get("bow_logreg") or {}).get("accuracy_mean"))
    row.update(run=s.get("name") or run_dir.name, parameters=(s.get("parameters") or {}).get("total"),
               val_metric=metric, val_loss=final.get(metric) if metric else None, downstream_task=ds.get("task"),
               status="finished")
    return row


def loss_curve(row: dict[str, Any]) -> tuple[str | None, list[float], list[float]]:
    """(metric, FLOPs, val loss) per evaluation; FLOPs at an eval step interpolated from train/flops by step."""
    import numpy as np

    records = read_jsonl(Path(row["path"]) / "metrics.jsonl")
    metric = row["val_metric"] or next((m for r in records if (m := pick_metric(r, "val/"))), None)
    points = [(r["step"], r[f"val/{metric}"]) for r in records if metric and f"val/{metric}" in r]
    anchors = {0: 0.0, **{r["step"]: r["train/flops"] for r in records if "train/flops" in r}}
    if row["steps"] is not None and row["train_flops"] is not None:  # the final eval may follow the last log
        anchors[row["steps"]] = row["train_flops"]
    steps = sorted(anchors)
    flops = np.interp([s for s, _ in points], steps, [anchors[s] for s in steps])  # clamps past the end: ffill
    return metric, [float(f) for f in flops], [float(v) for _, v in points]


def _figure():
    """A figure on the Agg canvas, without pyplot's global state (safe in threads and notebooks)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig: Any, ax: Any, path: Path, **labels: str) -> Path:
    """Log-FLOPs axis (runs differ by orders of magnitude in compute), legend, PNG."""
    ax.set(xscale="log", xlabel="training FLOPs", **labels)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=120)
    return path


def plot_loss(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Validation loss against training FLOPs, one line per run; None when no run logged a validation loss."""
    fig, ax = _figure()
    metrics = set()
    for row in rows:
        metric, x, y = loss_curve(row)
        keep = [(a, b) for a, b in zip(x, y) if a > 0]  # the step-0 eval has 0 FLOPs: no place on a log axis
        if keep:
            metrics.add(metric)
            label = row["run"] if row["status"] == "finished" else f"{row['run']} ({row['status']})"
            ax.plot(*zip(*keep), marker="o", label=label)
    return _save(fig, ax, path, ylabel=f"validation {' / '.join(sorted(metrics))}",
                 title="validation loss vs training compute") if metrics else None


def plot_downstream(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Downstream accuracy (mean +/- std over seeds) of each run against its training FLOPs, with its random-init
    baseline as a hollow marker; runs at (nearly) equal FLOPs, an equal-compute sweep, side by side instead.
    None when no run has it."""
    done = [r for r in rows if r["accuracy_mean"] is not None and r["train_flops"]]
    if not done:
        return None
    fig, ax = _figure()
    flops = [r["train_flops"] for r in done]
    equal = max(flops) <= 1.05 * min(flops)
    tasks = ", ".join(sorted({str(r["downstream_task"]) for r in done}))
    for i, r in enumerate(done):
        x = i if equal else r["train_flops"]
        bar = ax.errorbar(x, r["accuracy_mean"], yerr=r["accuracy_std"] or 0, fmt="o", capsize=4, label=r["run"])
        if r["random_init_accuracy"] is not None:
            ax.plot(x, r["random_init_accuracy"], marker="o", mfc="none", color=bar[0].get_color(), linestyle="")
    if any(r["random_init_accuracy"] is not None for r in done):
        ax.plot([], [], marker="o", mfc="none", color="gray", linestyle="", label="hollow: random init")
    if equal:
        ax.set_xticks(range(len(done)), [r["run"] for r in done], rotation=20, ha="right")
        ax.set(xlabel=f"runs at {min(flops):.3g} to {max(flops):.3g} training FLOPs (equal compute)",
               ylabel="accuracy (mean ± std)", title=f"downstream: {tasks}")
        ax.legend(fontsize="small")
        fig.savefig(path, dpi=120)
        return path
    return _save(fig, ax, path, ylabel="accuracy (mean ± std)", title=f"downstream: {tasks}")


def cells(row: dict[str, Any]) -> list[str]:
    """The formatted cells of one row, in COLUMNS order."""
    num = lambda k, fmt: "-" if row[k] is None else format(row[k], fmt)  # noqa: E731
    pm = lambda m, s: "-" if row[m] is None else f"{row[m]:.3f} ± {row[s] or 0:.3f}"  # noqa: E731
    params = "-" if row["parameters"] is None else f"{row['parameters'] / 1e6:.2f}M"
    loss = "-" if row["val_loss"] is None else f"{row['val_loss']:.4f} ({row['val_metric']})"
    return [str(row["run"]), str(row["model"] or "-"), str(row["objective"] or "-"), row["overrides"] or "-", params,
            num("train_flops", ".3g"), num("tokens_seen", ","), loss, pm("accuracy_mean", "accuracy_std"),
            pm("f1_mean", "f1_std"), f'{num("random_init_accuracy", ".3f")} / {num("bow_accuracy", ".3f")}',
            num("tokens_per_s", ",.0f"), num("wall_time_s", ".1f"), row["status"], row["error"] or ""]


def rich_table(rows: list[dict[str, Any]]) -> Table:
    """The console comparison table."""
    table = Table(title="run comparison", show_header=True)
    text = ("run", "model", "objective", "overrides", "status", "error")
    # sweep jobs are named by their overrides: the column would repeat the run's name
    shown = [c for c in COLUMNS if c != "overrides" or any(r["overrides"] != r["run"] for r in rows)]
    for c in shown:
        table.add_column(c, justify="left" if c in text else "right", no_wrap=c not in text, overflow="fold")
    for row in rows:
        status = {"finished": "green", "incomplete": "yellow"}.get(row["status"], "red")
        values = dict(zip(COLUMNS, cells(row)))
        # escape: errors and overrides hold brackets (`[a,b]`, tensor shapes) that rich would read as markup
        values["status"] = f"[{status}]{row['status']}[/]"
        table.add_row(*(values[c] if c == "status" else escape(values[c]) for c in shown))
    return table


def write_files(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """comparison.csv (raw values), comparison.md (the formatted table) and the plots; returns what was written."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "comparison.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    esc = lambda s: s.replace("|", "\\|").replace("\n", " ")  # noqa: E731 - a pipe would split a markdown cell
    md = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    md += ["| " + " | ".join(esc(c) for c in cells(r)) + " |" for r in rows]
    (out / "comparison.md").write_text("\n".join(md) + "\n")
    plots = [plot_loss(rows, out / LOSS_PLOT), plot_downstream(rows, out / DOWNSTREAM_PLOT)]
    return [out / "comparison.csv", out / "comparison.md", *(p for p in plots if p)]


def warn(message: str) -> None:
    """One yellow warning line on stderr."""
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def log_wandb(rows: list[dict[str, Any]], runs: list[Path], out: Path, plots: list[Path]) -> None:
    """A comparison run in the runs' W&B group holding the table and plots; any failure is only a warning."""
    try:
        import wandb

        from runner.logging import resolve_mode
        from runner.sweep import hydra_node, identity
    except ImportError as e:
        warn(f"--wandb: {e}; the files are written")
        return
    loggers = [(read_yaml(r / ".hydra" / "config.yaml") or {}).get("logger") or {} for r in runs]
    modes = {lg.get("mode", "online") for lg in loggers} | {"disabled"}
    mode = os.environ.get("WANDB_MODE") or next(m for m in MODES if m in modes)  # the most connected mode any run used
    # sweep jobs are grouped by sweep, other runs without logger.group by <model>-<objective> (runner.train.run)
    groups = {identity(hydra_node(path), path, lg.get("group"), None)[0] or f"{r['model']}-{r['objective']}"
              for lg, r, path in zip(loggers, rows, runs)}
    group = groups.pop() if len(groups) == 1 else None
    try:
        mode = resolve_mode(mode)
        if mode == "disabled":
            warn("--wandb: the runs have logger.mode=disabled; nothing logged")
            return
        settings = wandb.Settings(silent=True, init_timeout=30, console="off", x_disable_stats=True)
        run = wandb.init(project=loggers[0].get("project", "bertlab"), entity=loggers[0].get("entity"),
                         name=f"compare-{out.name}", group=group, job_type="comparison", dir=str(out), mode=mode,
                         tags=sorted(groups) if group is None else None, settings=settings,
                         config={"runs": [r["path"] for r in rows]})
        table = wandb.Table(columns=FIELDS, data=[[r[f] for f in FIELDS] for r in rows], allow_mixed_types=True)
        run.log({"comparison": table, **{p.stem: wandb.Image(str(p)) for p in plots if p.suffix == ".png"}})
        run.finish()
    except Exception as e:  # noqa: BLE001 - the report must not depend on the logging service
        warn(f"--wandb: {type(e).__name__}: {e}; the files are written")


def compare(paths: list[Path], out: Path | None = None, wandb: bool = False) -> list[dict]:
    """Collect every run (failed ones included), write the table files and plots, optionally log them to W&B."""
    runs = find_runs(paths)
    overrides = distinct_overrides(runs)
    rows = [run_row(r, overrides[r]) for r in runs]
    out = Path(out) if out else Path(os.path.commonpath([r.resolve().parent for r in runs]))  # next to the runs
    written = write_files(rows, out)
    if wandb:
        log_wandb(rows, runs, out, written)
    err_console.print("wrote " + ", ".join(str(p) for p in written), highlight=False, soft_wrap=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    """CLI: print the comparison table; exit 2 with a one-line error on bad input."""
    parser = argparse.ArgumentParser(prog="python -m runner.compare", description=__doc__)
    parser.add_argument("paths", nargs="+", type=Path, help="a Hydra multirun dir, or run dirs")
    parser.add_argument("--out", type=Path, help="where to write comparison.csv/.md and plots (default: next to runs)")
    parser.add_argument("--wandb", action="store_true", help="also log the table and plots to a W&B comparison run")
    args = parser.parse_args(argv)
    try:
        rows = compare(args.paths, args.out, args.wandb)
    except ConfigError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    out_console.print(rich_table(rows))


if __name__ == "__main__":
    main()
