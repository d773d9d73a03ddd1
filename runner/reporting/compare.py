"""`python -m runner.compare <multirun dir | run dirs | evaluation dirs...> [--out DIR] [--wandb] [--html]`: which
change helps, at what cost, beside transformers models scored by runner.evaluate (outputs/evaluations/<model>);
`python -m runner.compare --watch <multirun dir>`: a sweep in progress, live (runner/reporting/watch.py)."""
from __future__ import annotations

import argparse
import csv
import os
import re
import sys
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from runner.config.errors import ConfigError
from runner.config.console import console, stdout_console
from runner.config.schema import MODES  # MODES: most connected first
from runner.evaluation.probes.published import MODELS, is_blimp, model_names, published_scores
from runner.store.layout import find_runs, is_run, read_summary, saved_config
from runner.store.names import saved_group
from runner.reporting.collect import (CHANCE, cells, column_notes, distinct_overrides, fields, loss_curve, probe_curve,
                                      run_row, shown_columns, suite_curves, suite_reports, table_columns)
from runner.reporting.logger import resolve_mode
from runner.reporting.html_report import write_html
from runner.reporting.watch import main_watch

# piped output (no terminal) would otherwise wrap the wide table at 80 characters
out_console, err_console = stdout_console, console
LOSS_PLOT, DOWNSTREAM_PLOT, PROBE_PLOT = "val_loss_vs_flops.png", "downstream_vs_flops.png", "probes_vs_flops.png"
SUITE_PLOT = "suites_vs_words.png"
PUBLISHED_COLORS = {"ngram": "#b07aa1", "lstm": "#9c755f", "txl": "#76b7b2", "gpt2": "#edc948"}
STATUS_COLORS = {"finished": "green", "evaluated": "cyan", "incomplete": "yellow"}  # any other: red

def _figure():
    """A figure on the Agg canvas, without pyplot's global state (safe in threads and notebooks)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig: Any, ax: Any, path: Path, **labels: str) -> Path:
    """Log-FLOPs axis (runs differ by orders of magnitude in compute; labels may name another x), legend, PNG."""
    ax.set(**{"xscale": "log", "xlabel": "training FLOPs", **labels})
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


def suite_paradigms(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Per suite name, the paradigms the rows' summary.json reports list, in order of appearance."""
    out: dict[str, list[str]] = {}
    for row in rows:
        for name, report in suite_reports(read_summary(Path(row["path"])) or {}).items():
            out[name] = list(dict.fromkeys([*out.get(name, []), *(report.get("paradigms") or {})]))
    return out


def plot_suites(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """suite/<suite>/overall against corpus words per run, beside BLiMP's published models and chance; None if none."""
    curves = {(i, name): [(x, y) for x, y in zip(*curve) if x > 0]  # step 0: no place on a log axis
              for i, row in enumerate(rows) for name, curve in suite_curves(row).items()}
    curves = {k: c for k, c in curves.items() if c}
    if not curves:
        return None
    fig, ax = _figure()
    names = list(dict.fromkeys(name for _, name in curves))
    tag = (lambda name: f" {name}") if len(names) > 1 else (lambda name: "")  # noqa: E731
    for (i, name), points in curves.items():
        row, scorer = rows[i], rows[i].get(f"suite_{name}_scorer")
        label = row["run"] + tag(name) + (f" ({scorer})" if scorer else "") + \
            ("" if row["status"] == "finished" else f" ({row['status']})")
        ax.plot(*zip(*points), marker="o", label=label)
    paradigms, model = suite_paradigms(rows), model_names()
    for name in names:
        if is_blimp(paradigms.get(name, [])):
            pub = published_scores(paradigms[name])
            for m in MODELS:
                ax.axhline(pub[m]["overall"], color=PUBLISHED_COLORS[m], linestyle="--", linewidth=1.2,
                           label=f"{model[m]}{tag(name)} {pub[m]['overall']:.3f} (published)")
        for row in rows:
            if row["status"] == "evaluated" and row.get(f"suite_{name}") is not None:
                ax.axhline(row[f"suite_{name}"], color="black", linestyle=":", linewidth=1.2,
                           label=f"{row['run']}{tag(name)} {row[f'suite_{name}']:.3f} (evaluated)")
    ax.axhline(CHANCE, color="gray", linestyle="--", linewidth=1, label=f"chance ({CHANCE:.1f})")
    return _save(fig, ax, path, xlabel="corpus words seen in training",
                 ylabel="accuracy, mean over paradigms (ties wrong)",
                 title="minimal-pair suites vs words seen (per-paradigm subsample)")


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
    columns = shown_columns(rows, stacked=True)
    legend = column_notes(columns)
    values = [cells(row, columns) for row in rows]
    table = Table(title="run comparison", show_header=True, caption="; ".join(legend) or None,
                  collapse_padding=True, show_lines=any("\n" in v for vals in values for v in vals))
    for i, (name, _, text) in enumerate(columns):
        width = max([5, *(len(line) for vals in values for line in vals[i].split("\n"))])
        table.add_column(name if text else wrap_header(name, width), justify="left" if text else "right",
                         no_wrap=not text, overflow="fold")
    for row, vals in zip(rows, values):
        color = STATUS_COLORS.get(row["status"], "red")
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
             plot_probes(rows, out / PROBE_PLOT), plot_suites(rows, out / SUITE_PLOT)]
    return [out / "comparison.csv", out / "comparison.md", *(p for p in plots if p)]


def warn(message: str) -> None:
    """One yellow warning line on stderr."""
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def log_wandb(rows: list[dict[str, Any]], runs: list[Path], out: Path, plots: list[Path]) -> None:
    """A comparison run in the runs' W&B group holding the table and plots; any failure is only a warning."""
    try:
        import wandb

    except ImportError as e:
        warn(f"--wandb: {e}; the files are written")
        return
    trained = [(r, path) for r, path in zip(rows, runs) if is_run(path)]  # not the evaluation dirs: no config
    loggers = [(saved_config(path) or {}).get("logger") or {} for _, path in trained] or [{}]
    modes = {lg.get("mode", "online") for lg in loggers} | {"disabled"}
    mode = os.environ.get("WANDB_MODE") or next(m for m in MODES if m in modes)  # the most connected mode any run used
    # sweep jobs are grouped by sweep, other runs without logger.group by <model>-<objective> (runner.engine.loop.run)
    groups = {saved_group(path, lg, r["model"], r["objective"]) for lg, (r, path) in zip(loggers, trained)}
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
    runs = find_runs(paths, evaluations=True)
    overrides = distinct_overrides(runs)
    rows = [run_row(r, overrides[r]) for r in runs]
    out = Path(out) if out else Path(os.path.commonpath([r.resolve().parent for r in runs]))  # next to the runs
    written = write_files(rows, out)
    if html:

        written.append(write_html(rows, out, sources=paths))
    if wandb:
        log_wandb(rows, runs, out, written)
    err_console.print("wrote " + ", ".join(str(p) for p in written), highlight=False, soft_wrap=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    """CLI: print the comparison table; exit 2 with a one-line error on bad input."""
    parser = argparse.ArgumentParser(prog="python -m runner.compare", description=__doc__)
    parser.add_argument("paths", nargs="+", type=Path,
                        help="a Hydra multirun dir, run dirs, or runner.evaluate's dirs (outputs/evaluations/<model>)")
    parser.add_argument("--out", type=Path, help="where to write comparison.csv/.md and plots (default: next to runs)")
    parser.add_argument("--wandb", action="store_true", help="also log the table and plots to a W&B comparison run")
    parser.add_argument("--html", action="store_true",
                        help="also write comparison.html: sortable table and interactive plots, opens offline")
    parser.add_argument("--watch", action="store_true",
                        help="follow the sweep in the one multirun dir given, live, until it ends (runner.reporting.watch)")
    parser.add_argument("--interval", type=float, default=2.0, help="--watch: seconds between refreshes")
    args = parser.parse_args(argv)
    if args.watch:
        if len(args.paths) != 1:
            parser.error("--watch follows one multirun directory")

        main_watch(args.paths[0], args.interval)
    try:
        rows = compare(args.paths, args.out, args.wandb, html=args.html)
    except ConfigError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    out_console.print(rich_table(rows))


if __name__ == "__main__":
    main()
