"""`python -m runner.compare <multirun dir | run dirs...> [--out DIR] [--wandb]`: which change helps, at what cost."""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable

import yaml
from rich.markup import escape
from rich.table import Table

from runner.errors import ConfigError
from runner.logging import MODES, console, stdout_console  # MODES: most connected first

# piped output (no terminal) would otherwise wrap the wide table at 80 characters
out_console, err_console = stdout_console, console
# Raw fields of one row, in CSV order; the rich and markdown tables show formatted columns (table_columns).
# Besides these, a row has probe_<kind> for each probe kind (before probe_overall), probe_<scorer>_overall for a
# second scorer (ELECTRA's generator) and downstream/<task>/<key> for each downstream task (fields()).
FIELDS = ["run", "job", "model", "objective", "data", "overrides", "parameters", "train_flops", "tokens_seen",
          "steps", "val_metric", "val_loss", "unigram_entropy", "unigram_gap", "probe_scorer", "probe_overall",
          "probe_overall_lo", "probe_overall_hi", "downstream_task", "accuracy_mean", "accuracy_std", "f1_mean",
          "f1_std", "random_init_accuracy", "bow_accuracy", "tokens_per_s", "wall_time_s", "time_data_s",
          "time_training_s", "time_validation_probes_s", "time_finetuning_s", "time_export_s", "status", "error",
          "path"]
TIMES = ("data", "training", "validation_probes", "finetuning", "export")  # summary.json's time_s, as time_<k>_s
TASK_KEYS = ("accuracy_mean", "accuracy_std", "f1_mean", "f1_std")  # downstream/<task>/<key>, and each baseline's
LOSS_PLOT, DOWNSTREAM_PLOT, PROBE_PLOT = "val_loss_vs_flops.png", "downstream_vs_flops.png", "probes_vs_flops.png"
CHANCE = 0.5  # a minimal pair is two sentences: guessing passes half


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
    """The comparable validation loss: MLM loss (ELECTRA: the generator's; distillation: the student's), else the
    causal LM loss, else the permutation LM's (XLNet)."""
    return next((k for k in ("mlm_loss", "lm_loss", "plm_loss") if f"{prefix}{k}" in values), None)


def distinct_overrides(runs: list[Path]) -> dict[Path, str]:
    """Each run's command-line overrides minus those all runs share: what the sweep varied."""
    ovr = {r: [str(o) for o in read_yaml(r / ".hydra" / "overrides.yaml") or []] for r in runs}
    common = set.intersection(*(set(v) for v in ovr.values())) if len(runs) > 1 else set()
    return {r: " ".join(o for o in v if o not in common) for r, v in ovr.items()}


def probe_kinds(probes: dict) -> list[str]:
    """The corruption kinds of a summary's probes: probes.pairs, else the plain keys of probes.final."""
    if isinstance(probes.get("pairs"), dict) and probes["pairs"]:
        return [str(k) for k in probes["pairs"]]
    final = probes.get("final") or {}
    return [k for k in final if "/" not in k and k != "overall" and not k.endswith(("_lo", "_hi", "_norm"))]


def downstream_tasks(s: dict) -> dict[str, dict]:
    """Every downstream result of a summary by task, the primary one (summary["downstream"]) first; a summary
    written before downstream_tasks existed has only "downstream"."""
    tasks = {str(k): v for k, v in (s.get("downstream_tasks") or {}).items() if isinstance(v, dict)}
    ds = s.get("downstream")
    if isinstance(ds, dict) and ds:
        primary = str(ds.get("task") or "downstream")
        tasks = {primary: tasks.get(primary, ds), **tasks}
    return tasks


def run_row(run_dir: Path, overrides: str = "") -> dict[str, Any]:
    """One table row from a run dir: summary.json when finished, else its config and the error from its log.
    Keys starting with "_" (the probe kinds and downstream tasks the row has) are for the tables, not the CSV."""
    cfg = read_yaml(run_dir / ".hydra" / "config.yaml") or {}
    row: dict[str, Any] = dict.fromkeys(FIELDS)
    row.update(run=run_dir.name, job=run_dir.name, path=str(run_dir), overrides=overrides,
               model=(cfg.get("model") or {}).get("name"), objective=(cfg.get("objective") or {}).get("name"),
               data=(cfg.get("data") or {}).get("name"), _kinds=[], _tasks=[])
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
                                  "tokens_per_s", "wall_time_s", "unigram_entropy") if k in s})
    row.update({k: ds.get(k) for k in ("accuracy_mean", "accuracy_std", "f1_mean", "f1_std")})
    base = ds.get("baselines") or {}  # what the same fine-tuning gives without pretraining, and bag-of-words
    row.update(random_init_accuracy=(base.get("random_init") or {}).get("accuracy_mean"),
               bow_accuracy=(base.get("bow_logreg") or {}).get("accuracy_mean"))
    row.update(run=s.get("name") or run_dir.name, parameters=(s.get("parameters") or {}).get("total"),
               val_metric=metric, val_loss=final.get(metric) if metric else None, downstream_task=ds.get("task"),
               unigram_gap=final.get("unigram_gap"), status="finished")
    times = s.get("time_s") if isinstance(s.get("time_s"), dict) else {}
    row.update({f"time_{k}_s": times.get(k) for k in TIMES})
    probes = s.get("probes") if isinstance(s.get("probes"), dict) else {}
    if probes.get("final"):  # accuracy on minimal pairs by the objective's first scorer; a second one prefixed
        p, scorers = probes["final"], [str(x) for x in probes.get("scorers") or []]
        row["_kinds"] = probe_kinds(probes)
        row.update({f"probe_{k}": p.get(k) for k in row["_kinds"]})
        row.update(probe_scorer=scorers[0] if scorers else None, probe_overall=p.get("overall"),
                   probe_overall_lo=p.get("overall_lo"), probe_overall_hi=p.get("overall_hi"))
        row.update({f"probe_{other}_overall": p.get(f"{other}/overall") for other in scorers[1:]})
    for task, result in downstream_tasks(s).items():  # downstream/<task>/..., as W&B logs a task besides the first
        row["_tasks"].append(task)
        row.update({f"downstream/{task}/{k}": result.get(k) for k in TASK_KEYS})
        for name, b in (result.get("baselines") or {}).items():
            row[f"downstream/{task}/{name}_accuracy_mean"] = (b or {}).get("accuracy_mean")
    return row


def fields(rows: list[dict[str, Any]]) -> list[str]:
    """The CSV (and W&B table) columns of these rows: FIELDS with each row's probe kinds, second scorers and
    downstream tasks in their places."""
    extra = list(dict.fromkeys(k for r in rows for k in r if k not in FIELDS and not k.startswith("_")))
    kinds = [f"probe_{k}" for k in dict.fromkeys(k for r in rows for k in r.get("_kinds", []))]
    other = [k for k in extra if k.startswith("probe_") and k not in kinds]
    tasks = [k for k in extra if k.startswith("downstream/")]
    rest = [k for k in extra if k not in kinds + other + tasks]
    at = FIELDS.index
    return (FIELDS[:at("probe_overall")] + kinds + FIELDS[at("probe_overall"):at("downstream_task")] + other +
            FIELDS[at("downstream_task"):at("tokens_per_s")] + tasks + FIELDS[at("tokens_per_s"):] + rest)


def flops_at(row: dict[str, Any], records: list[dict], steps: list[int]) -> list[float]:
    """Training FLOPs at these steps: train/flops of the metrics.jsonl line at that step, else interpolated between
    the nearest logged steps (step 0: 0 FLOPs; the run's last step: summary.json's train_flops); past the last
    logged step, its FLOPs."""
    import numpy as np

    anchors = {0: 0.0, **{r["step"]: r["train/flops"] for r in records if "train/flops" in r and "step" in r}}
    if row["steps"] is not None and row["train_flops"] is not None:  # the final eval may follow the last log
        anchors[row["steps"]] = row["train_flops"]
    known = sorted(anchors)
    return [float(f) for f in np.interp(steps, known, [anchors[s] for s in known])]  # clamps past the end: ffill


def loss_curve(row: dict[str, Any]) -> tuple[str | None, list[float], list[float]]:
    """(metric, FLOPs, val loss) per evaluation; FLOPs at an eval step interpolated from train/flops by step."""
    records = read_jsonl(Path(row["path"]) / "metrics.jsonl")
    metric = row["val_metric"] or next((m for r in records if (m := pick_metric(r, "val/"))), None)
    points = [(r["step"], r[f"val/{metric}"]) for r in records if metric and f"val/{metric}" in r]
    return metric, flops_at(row, records, [s for s, _ in points]), [float(v) for _, v in points]


def probe_curve(row: dict[str, Any]) -> tuple[list[float], list[float], list[float], list[float]]:
    """(FLOPs, probe overall accuracy, Wilson lo, Wilson hi) per validation from metrics.jsonl's probe/overall*,
    FLOPs placed as loss_curve places them; a missing bound is NaN."""
    records = [r for r in read_jsonl(Path(row["path"]) / "metrics.jsonl") if "step" in r]
    points = [r for r in records if r.get("probe/overall") is not None]
    bound = lambda r, k: float(r[k]) if r.get(k) is not None else float("nan")  # noqa: E731
    return (flops_at(row, records, [r["step"] for r in points]), [float(r["probe/overall"]) for r in points],
            [bound(r, "probe/overall_lo") for r in points], [bound(r, "probe/overall_hi") for r in points])


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


def plot_probes(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Zero-shot probe accuracy (overall, the first scorer) against training FLOPs at each validation, one line per
    run with its 95% Wilson interval (a band; an error bar for a single point), and chance; None when no run logged
    probe/overall after step 0."""
    fig, ax = _figure()
    plotted = False
    for row in rows:
        x, y, lo, hi = probe_curve(row)
        keep = [i for i, a in enumerate(x) if a > 0]  # the step-0 probe has 0 FLOPs: no place on a log axis
        if not keep:
            continue
        plotted = True
        label = row["run"] + (f" ({row['probe_scorer']})" if row["probe_scorer"] else "") + \
            ("" if row["status"] == "finished" else f" ({row['status']})")
        xs, ys, los, his = ([v[i] for i in keep] for v in (x, y, lo, hi))
        (line,) = ax.plot(xs, ys, marker="o", label=label)
        if len(keep) > 1:
            ax.fill_between(xs, los, his, color=line.get_color(), alpha=0.15, linewidth=0)
        else:  # one validation after step 0: a band needs two points, so an error bar
            ax.errorbar(xs, ys, yerr=[[ys[0] - los[0]], [his[0] - ys[0]]], color=line.get_color(), capsize=4)
    if not plotted:
        return None
    ax.axhline(CHANCE, color="gray", linestyle="--", linewidth=1, label=f"chance ({CHANCE:.1f})")
    return _save(fig, ax, path, ylabel="probe accuracy, all pairs (95% Wilson interval)",
                 title="zero-shot minimal-pair probes vs training compute")


def _num(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _si(v: float | None) -> str:
    """15217 -> '15.2k', 1.1e8 -> '110M': counts at a glance."""
    if v is None:
        return "-"
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def _pm(mean: float | None, std: float | None) -> str:
    return "-" if mean is None else f"{mean:.3f} ± {std or 0:.3f}"


Column = tuple[str, Callable[[dict[str, Any]], str], bool]  # header, cell of a row, text (left, may fold)


def table_columns(rows: list[dict[str, Any]], stacked: bool = False) -> list[Column]:
    """The formatted columns of the rich and markdown tables. The context gap when any run has one; probe columns
    when any run has probes (one per corruption kind the runs have, then overall with its 95% interval, and the
    scorer: in the header when all runs share it); an accuracy and a baselines column per downstream task any run
    has. Tokens, macro-F1 and the time split are in the CSV only. stacked (the console): a task's two columns, the
    loss and its metric, tokens/s and wall time each as one column of two lines, to fit the terminal's width."""
    sep = "\n" if stacked else " "
    metrics = {r["val_metric"] for r in rows if r["val_loss"] is not None}
    one_metric = metrics.pop() if len(metrics) == 1 else None  # named in the header, not in every cell

    def loss(r: dict[str, Any]) -> str:
        if r["val_loss"] is None:
            return "-"
        return f"{r['val_loss']:.4f}" if one_metric else f"{r['val_loss']:.4f}{sep}({r['val_metric']})"

    def params(r: dict[str, Any]) -> str:
        return "-" if r["parameters"] is None else f"{r['parameters'] / 1e6:.2f}M"

    def cost(r: dict[str, Any]) -> str:
        if r["tokens_per_s"] is None and r["wall_time_s"] is None:
            return "-"
        return f"{_si(r['tokens_per_s'])}{sep if stacked else ', '}{_duration(r['wall_time_s'])}"

    def status(r: dict[str, Any]) -> str:
        return f"{r['status']}: {r['error']}" if r["error"] else str(r["status"])

    cols: list[Column] = [("run", lambda r: str(r["run"]), True), ("model", lambda r: str(r["model"] or "-"), True),
                          ("objective", lambda r: str(r["objective"] or "-"), True),
                          ("overrides", lambda r: r["overrides"] or "-", True), ("params", params, False),
                          ("train FLOPs", lambda r: _num(r["train_flops"], ".3g"), False),
                          (f"val {one_metric}" if one_metric else "val loss", loss, False)]
    if any(r.get("unigram_gap") is not None for r in rows):  # nats below the unigram entropy: > 0 uses context
        cols.append(("context gap", lambda r: _num(r.get("unigram_gap"), "+.3f"), False))
    if any(r.get("probe_overall") is not None for r in rows):
        for kind in dict.fromkeys(k for r in rows for k in r.get("_kinds", [])):
            cols.append((f"probe {kind}", lambda r, k=kind: _num(r.get(f"probe_{k}"), ".2f"), False))

        def overall(r: dict[str, Any]) -> str:
            if r.get("probe_overall") is None:
                return "-"
            lo, hi = r.get("probe_overall_lo"), r.get("probe_overall_hi")
            return f"{r['probe_overall']:.2f}" + ("" if lo is None or hi is None else f" [{lo:.2f}, {hi:.2f}]")

        scorers = {r.get("probe_scorer") for r in rows if r.get("probe_overall") is not None}
        if len(scorers) == 1 and None not in scorers:
            cols.append((f"probe overall ({scorers.pop()})", overall, False))
        else:
            cols += [("probe overall", overall, False), ("scorer", lambda r: r.get("probe_scorer") or "-", True)]
    for task in dict.fromkeys(t for r in rows for t in r.get("_tasks", [])):
        key = lambda r, k, t=task: r.get(f"downstream/{t}/{k}")  # noqa: E731

        def baselines(r: dict[str, Any], key=key) -> str:
            rand, bow = key(r, "random_init_accuracy_mean"), key(r, "bow_logreg_accuracy_mean")
            return "-" if rand is None and bow is None else f"{_num(rand, '.3f')} / {_num(bow, '.3f')}"

        def accuracy(r: dict[str, Any], key=key) -> str:
            return _pm(key(r, "accuracy_mean"), key(r, "accuracy_std"))

        if stacked:
            def both(r: dict[str, Any], a=accuracy, b=baselines) -> str:
                return "-" if a(r) == b(r) == "-" else f"{a(r)}\n{b(r)}"

            cols.append((f"{task}\nacc ± std\nrand / BoW", both, False))
        else:
            cols += [(f"{task} acc ± std", accuracy, False), (f"{task} rand / BoW", baselines, False)]
    return cols + [("tokens/s\nwall" if stacked else "tokens/s, wall", cost, False), ("status", status, True)]


def cells(row: dict[str, Any], columns: list[Column]) -> list[str]:
    """The formatted cells of one row, in the order of columns (table_columns)."""
    return [cell(row) for _, cell, _ in columns]


def wrap_header(name: str, width: int) -> str:
    """A header on lines of at most `width` characters where its words allow, words over 12 characters broken
    after an underscore: 'wiki_acceptability acc ± std' at 13 -> 'wiki_\\nacceptability\\nacc ± std'."""
    if "\n" in name:
        return "\n".join(wrap_header(line, width) for line in name.split("\n"))
    parts: list[tuple[str, str]] = []  # (piece, what joins it to the piece before on one line)
    for i, word in enumerate(name.split(" ")):
        pieces = re.findall(r"[^_]*_|[^_]+$", word) if len(word) > max(width, 12) else [word]
        parts += [(p, " " if i and j == 0 else "") for j, p in enumerate(pieces)]
    lines: list[str] = []
    for piece, glue in parts:
        if lines and len(lines[-1] + glue + piece) <= width:
            lines[-1] += glue + piece
        else:
            lines.append(piece)
    return "\n".join(lines)


def rich_table(rows: list[dict[str, Any]]) -> Table:
    """The console comparison table: numeric columns as wide as their values (headers wrapped to fit), text
    columns fold, a legend below."""
    # sweep jobs are named by their overrides: the column would repeat the run's name
    columns = [c for c in table_columns(rows, stacked=True)
               if c[0] != "overrides" or any(r["overrides"] != r["run"] for r in rows)]
    names = [c[0] for c in columns]
    legend = []
    if "context gap" in names:
        legend.append("context gap: unigram entropy minus LM loss, nats (> 0: the model uses context)")
    if any(n.startswith("probe overall") for n in names):
        legend.append(f"probes: accuracy on minimal pairs, chance {CHANCE:.2f}, overall [95% Wilson interval]")
    if any(n.endswith("rand / BoW") for n in names):
        legend.append("rand / BoW: the same fine-tuning from random init; bag-of-words logistic regression")
    values = [cells(row, columns) for row in rows]
    table = Table(title="run comparison", show_header=True, caption="; ".join(legend) or None,
                  collapse_padding=True, show_lines=any("\n" in v for vals in values for v in vals))
    for i, (name, _, text) in enumerate(columns):
        width = max([5, *(len(line) for vals in values for line in vals[i].split("\n"))])
        table.add_column(name if text else wrap_header(name, width), justify="left" if text else "right",
                         no_wrap=not text, overflow="fold")
    for row, vals in zip(rows, values):
        color = {"finished": "green", "incomplete": "yellow"}.get(row["status"], "red")
        # escape: errors and overrides hold brackets (`[a,b]`, tensor shapes, intervals) that rich would read as markup
        vals = [escape(v) for v in vals]
        status = escape(str(row["status"]))
        vals[-1] = f"[{color}]{status}[/]{vals[-1][len(status):]}"  # the status word coloured, its error not
        table.add_row(*vals)
    return table


def write_files(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """comparison.csv (raw values), comparison.md (the formatted table) and the plots; returns what was written."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "comparison.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields(rows), extrasaction="ignore")  # ignore: the "_" keys
        writer.writeheader()
        writer.writerows(rows)
    esc = lambda s: s.replace("|", "\\|").replace("\n", " ")  # noqa: E731 - a pipe would split a markdown cell
    columns = table_columns(rows)
    md = ["| " + " | ".join(esc(c[0]) for c in columns) + " |", "|" + "---|" * len(columns)]
    md += ["| " + " | ".join(esc(c) for c in cells(r, columns)) + " |" for r in rows]
    (out / "comparison.md").write_text("\n".join(md) + "\n")
    plots = [plot_loss(rows, out / LOSS_PLOT), plot_downstream(rows, out / DOWNSTREAM_PLOT),
             plot_probes(rows, out / PROBE_PLOT)]
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
        columns = fields(rows)
        table = wandb.Table(columns=columns, data=[[r.get(f) for f in columns] for r in rows],
                            allow_mixed_types=True)
        run.log({"comparison": table, **{p.stem: wandb.Image(str(p)) for p in plots if p.suffix == ".png"}})
        run.finish()
    except Exception as e:  # noqa: BLE001 - the report must not depend on the logging service
        warn(f"--wandb: {type(e).__name__}: {e}; the files are written")


def compare(paths: list[Path], out: Path | None = None, wandb: bool = False, html: bool = False) -> list[dict]:
    """Collect every run (failed ones included), write the table files and plots, optionally log them to W&B and
    write the self-contained comparison.html (html)."""
    runs = find_runs(paths)
    overrides = distinct_overrides(runs)
    rows = [run_row(r, overrides[r]) for r in runs]
    out = Path(out) if out else Path(os.path.commonpath([r.resolve().parent for r in runs]))  # next to the runs
    written = write_files(rows, out)
    if html:
        from runner.html_report import write_html  # plotly is needed only for the page

        written.append(write_html(rows, out, sources=paths))
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
    parser.add_argument("--html", action="store_true",
                        help="also write comparison.html: sortable table and interactive plots, opens offline")
    args = parser.parse_args(argv)
    try:
        rows = compare(args.paths, args.out, args.wandb, html=args.html)
    except ConfigError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    out_console.print(rich_table(rows))


if __name__ == "__main__":
    main()
