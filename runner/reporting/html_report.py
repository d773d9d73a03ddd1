"""comparison.html: one self-contained page (plotly.js inlined, data embedded) with the sortable comparison table,
every logged curve against step, tokens, words, FLOPs or wall-clock time, and the final probe, minimal-pair suite
and downstream results."""
from __future__ import annotations

import html
import json
import math
import re
from collections import defaultdict
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from runner.evaluation.probes.published import MODELS, is_blimp, model_names, published_scores
from runner.reporting.collect import (CHANCE, SUITE_OVERALL, cells, column_notes, downstream_tasks, flops_at,
                                      probe_kinds, shown_columns, suite_reports)
from runner.config.errors import ConfigError
from runner.store import layout

HTML_FILE = "comparison.html"
# the page's style and script, inlined into it: package data (pyproject.toml), kept as files to be edited as CSS and JS
CSS, SCRIPT = "report.css", "report.js"
# curve groups in the order a reader looks for them; any other prefix follows alphabetically
GROUP_ORDER = ("val", "probe", "suite", "train", "downstream", "context")
NOT_CURVES = {"step", "time"}  # x-axis values, not metrics
# of a suite's records, the headline and the phenomena are curves; not its ~70 paradigms, pair count and unknown share,
# nor suite_full/ (the full suites once, at the end: the suites' bar figures)
SUITE_CURVE = re.compile(r"^suite/[^/]+/(overall|[^/]+/phenomenon/.+)$")
# headline metrics first in their group: the validation loss compare picks (runs.pick_metric) and the probe score
FIRST = ("val/mlm_loss", "val/lm_loss", "val/plm_loss", "val/perplexity", "val/unigram_gap", "probe/overall",
         "train/loss", "train/lr")
AXES = {"step": "step", "tokens": "tokens seen", "words": "corpus words seen", "flops": "training FLOPs",
        "time": "wall-clock seconds"}  # since the run's first record
# Plotly's D3 palette first (the strongest contrast for the common case of under ten runs), then 24 more
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A", "#B68100", "#750D86",
           "#EB663B", "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D", "#6C7C32", "#778AAE", "#862A16",
           "#A777F1", "#620042", "#1616A7", "#DA60CA", "#6C4516", "#0D2A63", "#AF0038"]
# bar series (probe kinds, baselines) in muted colours of their own: the bold PALETTE colours mean runs
SERIES = ["#66c2a5", "#fc8d62", "#8da0cb", "#e78ac3", "#a6d854", "#ffd92f", "#e5c494", "#b3b3b3"]
OVERALL, OTHER_SCORER = "#4a6fa5", "#9fbbe0"
DOWNSTREAM = {"pretrained": "#4a6fa5", "linear probe": "#9ecae1", "own score": "#66c2a5", "random init": "#b3b3b3",
              "bag-of-words": "#fc8d62"}
PUBLISHED = {"ngram": "#d9d9d9", "lstm": "#bdbdbd", "txl": "#969696", "gpt2": "#737373"}  # BLiMP's models: greys
SI = {"k": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}  # runs._si's suffixes
NUMBER = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)([kMBT])?(?![A-Za-z])")


def _round(v: Any) -> float | None:
    """A float with 6 significant digits (plenty for a plot, half the JSON), None for NaN/inf (JSON has no NaN)."""
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(f"{v:.6g}") if isinstance(v, float) else v


def sort_value(cell: str) -> float | None:
    """The number a table cell starts with, SI suffix applied ('3.5k, 12.4 s' -> 3500.0); None for '-' or text."""
    m = NUMBER.match(cell)
    return float(m.group(1)) * SI.get(m.group(2) or "", 1.0) if m else None


def run_labels(rows: list[dict[str, Any]]) -> list[str]:
    """Each run's name for legends; a name two runs share (the same config run twice) gets its job dir added."""
    names = [str(r["run"]) for r in rows]
    labels = [n if names.count(n) == 1 else f"{n} ({r['job']})" for n, r in zip(names, rows)]
    return [lab if r["status"] == "finished" else f"{lab} ({r['status']})" for lab, r in zip(labels, rows)]


def row_summary(row: dict[str, Any]) -> dict:
    """The run's summary.json, {} when missing or torn: the row lacks per-kind probe intervals and chance."""
    s = layout.read_summary(Path(row["path"]))
    return s if isinstance(s, dict) else {}


def is_number(v: Any) -> bool:
    """A finite int or float that is not a bool (metrics.jsonl also holds flags and strings)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_curve(key: str) -> bool:
    """Whether a logged key gets a curve: no x-axis value, of the suites only their headline and phenomena."""
    if key.startswith(("suite/", "suite_full/")):
        return bool(SUITE_CURVE.match(key))
    return key not in NOT_CURVES


def curve_keys(records: list[dict]) -> tuple[list[str], set[str]]:
    """(curves, bounds): every numeric key logged with a step (is_curve), and the _lo/_hi keys whose base key is also
    logged (drawn as the base curve's interval, not as curves of their own)."""
    keys = list(dict.fromkeys(k for r in records if "step" in r for k, v in r.items()
                              if is_curve(k) and is_number(v)))
    bounds = {k for k in keys if k.endswith(("_lo", "_hi")) and k[:-3] in keys}
    return [k for k in keys if k not in bounds], bounds


def interp_at(anchors: dict[int, float], steps: list[int]) -> list[float | None]:
    """Values at these steps, linear between the nearest anchors and held past either end; with one anchor (step
    0: nothing trained yet) only that step is known."""
    import numpy as np

    if len(anchors) < 2:
        return [_round(anchors[s]) if s in anchors else None for s in steps]
    known = sorted(anchors)
    return [_round(float(v)) for v in np.interp(steps, known, [anchors[s] for s in known])]


def run_axes(row: dict[str, Any], records: list[dict], steps: list[int]) -> dict[str, dict[str, float | None]]:
    """For each x-axis but step, {step: x} at these steps (None where unknown): tokens from train/tokens (the run's
    last step: summary's tokens_seen), corpus words likewise from train/words and words_seen, FLOPs by
    runs.flops_at, seconds since the first record's time. Step 0 is 0 tokens and FLOPs even for a job killed before
    logging either; words and time are absent unless logged."""
    logged = [r for r in records if "step" in r]
    axes: dict[str, list[float | None]] = {}
    for axis, key, total in (("tokens", "train/tokens", "tokens_seen"), ("words", "train/words", "words_seen")):
        counts = {r["step"]: r[key] for r in logged if is_number(r.get(key))}
        if row["steps"] is not None and row.get(total) is not None:
            counts[row["steps"]] = row[total]
        if counts or axis == "tokens":
            axes[axis] = interp_at({0: 0, **counts}, steps)
    if any(is_number(r.get("train/flops")) for r in logged) or row["train_flops"] is not None:
        finite = [r for r in logged if is_number(r.get("train/flops", 0))]  # one NaN would poison the interpolation
        axes["flops"] = [_round(f) for f in flops_at(row, finite, steps)]
    else:  # flops_at would hold step 0's 0 FLOPs for every step
        axes["flops"] = interp_at({0: 0}, steps)
    times = {r["step"]: r["time"] for r in logged if is_number(r.get("time"))}
    if times:
        start = min(r["time"] for r in records if is_number(r.get("time")))
        axes["time"] = interp_at({s: t - start for s, t in times.items()}, steps)
    return {name: {str(s): x for s, x in zip(steps, xs)} for name, xs in axes.items()}


def run_curves(row: dict[str, Any]) -> dict[str, Any]:
    """A run's curves from its metrics.jsonl: {metric: {steps, y, lo, hi}} (the last value logged at a step wins: a
    resumed run logs the steps after its checkpoint again) and its x-axes."""
    records = layout.read_metrics(Path(row["path"]))
    keys, bounds = curve_keys(records)
    points: dict[str, dict[int, dict]] = defaultdict(dict)
    for r in records:
        for k in keys:
            if "step" in r and is_number(r.get(k)):
                points[k][r["step"]] = {"y": r[k], "lo": r.get(f"{k}_lo"), "hi": r.get(f"{k}_hi")}
    curves = {}
    for k in keys:
        steps = sorted(points[k])
        curve = {"steps": steps, "y": [_round(points[k][s]["y"]) for s in steps]}
        if f"{k}_lo" in bounds and f"{k}_hi" in bounds:
            curve.update(lo=[_round(points[k][s]["lo"]) for s in steps], hi=[_round(points[k][s]["hi"]) for s in steps])
        curves[k] = curve
    all_steps = sorted({s for c in curves.values() for s in c["steps"]})
    return {"curves": curves, "axes": run_axes(row, records, all_steps)}


def metric_order(metrics: list[str], runs_with: dict[str, int]) -> list[str]:
    """Metrics by group (GROUP_ORDER, then other prefixes alphabetically); within a group the headline metrics
    (FIRST), then those more runs logged (comparable across runs), losses first, then by name."""
    def key(m: str) -> tuple:
        group = m.split("/")[0]
        rank = GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER)
        first = FIRST.index(m) if m in FIRST else 0 if SUITE_OVERALL.match(m) else len(FIRST)
        return rank, group, first, -runs_with.get(m, 0), "loss" not in m, m
    return sorted(metrics, key=key)


def curve_traces(metric: str, runs: list[dict[str, Any]]) -> list[dict]:
    """One line per run that logged the metric (markers when few points) and its interval as a band behind it. x is
    left to the page: meta.steps with the run's axis lookups gives x on whichever axis the reader picks."""
    traces = []
    for i, run in enumerate(runs):
        c = run["curves"].get(metric)
        if not c:
            continue
        band = [j for j in range(len(c["steps"])) if "lo" in c and None not in (c["lo"][j], c["hi"][j])]
        if len(band) > 1:  # a band needs two points; a lone interval shows in the hover text
            steps = [c["steps"][j] for j in band]
            traces.append({"type": "scatter", "mode": "lines", "y": [c["hi"][j] for j in band] +
                           [c["lo"][j] for j in reversed(band)], "fill": "toself", "fillcolor": run["color"],
                           "opacity": 0.15, "line": {"width": 0}, "hoverinfo": "skip", "showlegend": False,
                           "name": run["label"], "meta": {"run": i, "steps": steps + steps[::-1]}})
        interval = "lo" in c
        hover = "<b>%{fullData.name}</b><br>step %{customdata[0]}<br>x %{x:.4~g}<br>" + metric + " %{y:.4~g}"
        traces.append({"type": "scatter", "mode": "lines+markers" if len(c["steps"]) <= 30 else "lines",
                       "y": c["y"], "name": run["label"], "line": {"color": run["color"], "width": 1.8},
                       "marker": {"size": 5}, "meta": {"run": i, "steps": c["steps"]},
                       "customdata": [[s, c["lo"][j], c["hi"][j]] if interval else [s]
                                      for j, s in enumerate(c["steps"])],
                       "hovertemplate": hover + (" [%{customdata[1]:.3f}, %{customdata[2]:.3f}]" if interval else "")
                       + "<extra></extra>"})
    return traces


def curve_figures(runs: list[dict[str, Any]]) -> list[dict]:
    """One small figure per metric any run logged, in metric_order."""
    runs_with: dict[str, int] = defaultdict(int)
    for run in runs:
        for m in run["curves"]:
            runs_with[m] += 1
    metrics = metric_order(list(runs_with), runs_with)
    return [{"metric": m, "group": m.split("/")[0] if "/" in m else "other", "data": curve_traces(m, runs),
             "layout": {"title": {"text": m, "font": {"size": 13}, "x": 0.01, "xanchor": "left"}, "height": 270,
                        "showlegend": False, "margin": {"l": 55, "r": 12, "t": 34, "b": 40}, "hovermode": "closest",
                        "xaxis": {"title": {"text": "", "font": {"size": 11}}, "automargin": True},
                        "yaxis": {"automargin": True}}} for m in metrics]


def _errors(values: list, lo: list, hi: list) -> dict:
    """Asymmetric error bars from an interval's bounds (0 where a bound is missing)."""
    up = [None if v is None or h is None else _round(h - v) for v, h in zip(values, hi)]
    down = [None if v is None or b is None else _round(v - b) for v, b in zip(values, lo)]
    return {"type": "data", "symmetric": False, "array": up, "arrayminus": down, "visible": True, "thickness": 1.2}


CHANCE_LINE = {"dash": "dash", "color": "#666", "width": 1.2}


def chance_line(y: float, label: str) -> tuple[dict, dict]:
    """(layout shape, legend entry): a dashed line across the plot, named in the legend (a label on the plot would
    sit under the bars)."""
    return ({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": y, "y1": y, "line": CHANCE_LINE},
            {"type": "scatter", "mode": "lines", "x": [None], "y": [None], "name": label, "line": CHANCE_LINE,
             "hoverinfo": "skip"})


def bar_figure(fig_id: str, title: str, data: list[dict], lines: list[tuple[dict, dict]]) -> dict:
    """Grouped bars (x categories: run names, or a suite's phenomena), legend on top, chance lines."""
    layout = {"title": {"text": title, "font": {"size": 14}, "x": 0.01, "xanchor": "left"}, "barmode": "group",
              "height": 380, "margin": {"l": 55, "r": 12, "t": 70, "b": 40},
              "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom"}, "xaxis": {"automargin": True},
              "yaxis": {"title": {"text": "accuracy"}, "rangemode": "tozero"}, "shapes": [s for s, _ in lines]}
    return {"id": fig_id, "data": data + [t for _, t in lines], "layout": layout}


def probe_figure(rows: list[dict[str, Any]], labels: list[str], summaries: list[dict]) -> dict | None:
    """Final zero-shot probe accuracy per run: a bar per corruption kind and overall (the first scorer) with its
    95% Wilson interval, a second scorer's overall, and chance; None when no run has probes."""
    runs = [(lab, (s.get("probes") or {})) for lab, s, r in zip(labels, summaries, rows)
            if r.get("probe_overall") is not None and isinstance(s.get("probes"), dict)]
    if not runs:
        return None
    kinds = list(dict.fromkeys(k for _, p in runs for k in probe_kinds(p))) + ["overall"]
    others = list(dict.fromkeys(str(x) for _, p in runs for x in (p.get("scorers") or [])[1:]))
    x = [lab for lab, _ in runs]
    data = []
    finals = [p.get("final") or {} for _, p in runs]
    for i, k in enumerate(kinds):
        y = [_round(f.get(k)) for f in finals]
        color = OVERALL if k == "overall" else SERIES[i % len(SERIES)]
        data.append({"type": "bar", "name": k, "x": x, "y": y, "marker": {"color": color},
                     "hovertemplate": f"{k} %{{y:.3f}}<extra>%{{x}}</extra>",
                     "error_y": _errors(y, [f.get(f"{k}_lo") for f in finals], [f.get(f"{k}_hi") for f in finals])})
    for other in others:
        y = [_round(f.get(f"{other}/overall")) for f in finals]
        data.append({"type": "bar", "name": f"overall ({other})", "x": x, "y": y, "marker": {"color": OTHER_SCORER},
                     "hovertemplate": f"overall ({other}) %{{y:.3f}}<extra>%{{x}}</extra>"})
    return bar_figure("probes", "zero-shot minimal-pair probes, final (95% Wilson interval)", data,
                      [chance_line(CHANCE, f"chance {CHANCE:.2f}")])


def downstream_figures(rows: list[dict[str, Any]], labels: list[str], summaries: list[dict]) -> list[dict]:
    """Per downstream task, accuracy mean ± std over seeds per run beside the linear probe, the model's own score
    (acceptability tasks), the same protocol from random init and bag-of-words, with the best constant answer as
    chance; and GLUE's columns and average per run."""
    by_task: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    glue: list[tuple[str, dict]] = []
    for lab, s in zip(labels, summaries):
        for task, result in downstream_tasks(s).items():
            if task == "glue" and isinstance(result.get("columns"), dict):
                glue.append((lab, result))
            elif result.get("accuracy_mean") is not None:
                by_task[task].append((lab, result))
    figures = []
    arms = (("pretrained", lambda r: r), ("linear probe", lambda r: r.get("linear_probe") or {}),
            ("own score", lambda r: r.get("score_feature") or {}),
            ("random init", lambda r: (r.get("baselines") or {}).get("random_init") or {}),
            ("bag-of-words", lambda r: (r.get("baselines") or {}).get("bow_logreg") or {}))
    for n, (task, results) in enumerate(by_task.items()):
        x = [lab for lab, _ in results]
        data = []
        for name, get in arms:
            y = [_round(get(r).get("accuracy_mean")) for _, r in results]
            if any(v is not None for v in y):
                std = [_round(get(r).get("accuracy_std")) for _, r in results]
                data.append({"type": "bar", "name": name, "x": x, "y": y, "marker": {"color": DOWNSTREAM[name]},
                             "hovertemplate":
                             f"{name} %{{y:.3f}}<extra>%{{x}}</extra>",
                             "error_y": {"type": "data", "array": std, "visible": True, "thickness": 1.2}})

        # the best constant answer on the test set; a summary written before it was recorded: the training majority's
        chances = [r["chance"] for _, r in results if isinstance(r.get("chance"), dict)]
        best = next((c["best_constant_accuracy"] for c in chances if is_number(c.get("best_constant_accuracy"))), None)
        major = next((c["majority_accuracy"] for c in chances if is_number(c.get("majority_accuracy"))), None)
        lines = [chance_line(best, f"best constant answer {best:.2f}")] if best is not None else \
            [chance_line(major, f"majority label {major:.2f}")] if major is not None else []
        figures.append(bar_figure(f"downstream-{n}", f"downstream: {task} (accuracy, mean ± std over seeds)", data,
                                  lines))
    if glue:
        columns = list(dict.fromkeys(c for _, r in glue for c in r["columns"])) + ["average"]
        data = []
        for lab, r in glue:
            y = [_round(r["columns"][c]["median"] * 100) if c in r["columns"] else None for c in columns[:-1]]
            spread = [_round(r["columns"][c]["spread"] * 100) if c in r["columns"] else None for c in columns[:-1]]
            avg = r.get("average")
            data.append({"type": "bar", "name": lab, "x": columns, "y": y + [_round(avg * 100) if avg else None],
                         "hovertemplate": f"{lab} %{{y:.1f}}<extra>%{{x}}</extra>",
                         "error_y": {"type": "data", "array": spread + [_round((r.get("average_spread") or 0) * 100)],
                                     "visible": True, "thickness": 1.2}})
        figures.append(bar_figure("glue", "GLUE dev (x100, median over seeds, bars: spread; average without WNLI)",
                                  data, []))
    return figures


def suite_figures(rows: list[dict[str, Any]], labels: list[str], summaries: list[dict]) -> list[dict]:
    """Per suite, each row's headline score per phenomenon, BLiMP's published models when it is BLiMP, and chance."""
    by_suite: dict[str, list[tuple[int, dict]]] = defaultdict(list)
    for i, s in enumerate(summaries):
        for name, report in suite_reports(s).items():
            if isinstance(report.get("overall"), dict) and report["overall"]:
                by_suite[name].append((i, report))
    figures = []
    for n, (name, reports) in enumerate(by_suite.items()):
        terms = list(dict.fromkeys(t for _, r in reports for t in r.get("phenomena") or {})) + ["overall"]
        data = []
        for i, r in reports:
            scorer = str((r.get("scorers") or list(r["overall"]))[0])
            scores = {**{t: v.get(scorer) for t, v in (r.get("phenomena") or {}).items() if isinstance(v, dict)},
                      "overall": r["overall"].get(scorer)}
            data.append({"type": "bar", "name": f"{labels[i]} ({scorer})", "x": terms,
                         "y": [_round(scores.get(t)) for t in terms],
                         "marker": {"color": PALETTE[i % len(PALETTE)]},
                         "hovertemplate": "%{fullData.name} %{y:.3f}<extra>%{x}</extra>"})
        paradigms = list(dict.fromkeys(p for _, r in reports for p in r.get("paradigms") or {}))
        if is_blimp(paradigms):
            pub, names = published_scores(paradigms), model_names()
            for m in MODELS:
                y = [_round(pub[m]["overall"] if t == "overall" else pub[m]["phenomena"].get(t)) for t in terms]
                data.append({"type": "bar", "name": f"{names[m]} (published)", "x": terms, "y": y,
                             "marker": {"color": PUBLISHED[m]},
                             "hovertemplate": "%{fullData.name} %{y:.3f}<extra>%{x}</extra>"})
        figures.append({**bar_figure(f"suite-{n}", f"{name}: accuracy per phenomenon (mean of the phenomenon's "
                                     "paradigms; ties count as wrong)", data,
                                     [chance_line(CHANCE, f"chance {CHANCE:.2f}")]), "wide": True})
    return figures


def table_html(rows: list[dict[str, Any]]) -> str:
    """The markdown table's columns and cells (runs.table_columns) as an HTML table sortable by its headers:
    numeric cells carry their value in data-sort; a failed or incomplete run's row is marked by its status."""
    columns = shown_columns(rows)
    head = "".join(f'<th class="{"text" if text else "num"}" title="click to sort">{html.escape(name)}</th>'
                   for name, _, text in columns)
    body = []
    for row in rows:
        tds = []
        for (name, _, text), cell in zip(columns, cells(row, columns)):
            value = None if text else sort_value(cell)
            sort = "" if value is None else f' data-sort="{value!r}"'
            title = f' title="{html.escape(str(row["path"]))}"' if name == "run" else ""
            tds.append(f'<td class="{"text" if text else "num"}"{sort}{title}>{html.escape(cell)}</td>')
        body.append(f'<tr class="status-{html.escape(str(row["status"]))}">{"".join(tds)}</tr>')
    return (f'<table id="comparison" class="sortable"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def header_html(rows: list[dict[str, Any]], sources: list[Path]) -> str:
    """What was compared, when, and how many runs finished, failed or stopped early."""
    counts = {s: sum(r["status"] == s for r in rows) for s in dict.fromkeys(r["status"] for r in rows)}
    status = ", ".join(f'<span class="status-{html.escape(str(s))}">{n} {html.escape(str(s))}</span>'
                       for s, n in counts.items())
    paths = "".join(f"<li><code>{html.escape(str(p))}</code></li>" for p in sources)
    when = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (f"<h1>Run comparison</h1><p>{len(rows)} runs: {status}. Generated {html.escape(when)} by "
            f"<code>python -m runner.compare --html</code> from:</p><ul class=sources>{paths}</ul>")


def report_data(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything the page's script draws: runs (label, colour, axis lookups), curve and bar figures."""
    labels, summaries = run_labels(rows), [row_summary(r) for r in rows]
    runs = [{"label": lab, "color": PALETTE[i % len(PALETTE)], "status": r["status"], "path": r["path"],
             **run_curves(r)} for i, (lab, r) in enumerate(zip(labels, rows))]
    present = {a for run in runs for a, xs in run["axes"].items() if any(x for x in xs.values())}  # more than 0s
    axes = [{"key": k, "title": t} for k, t in AXES.items() if k == "step" or k in present]
    figures = curve_figures(runs)
    for run in runs:  # the traces hold what they draw; the rest of a run is its legend entry and axes
        run["plotted"] = bool(run.pop("curves"))
    bars = [f for f in [probe_figure(rows, labels, summaries), *suite_figures(rows, labels, summaries),
                        *downstream_figures(rows, labels, summaries)] if f]
    return {"runs": runs, "axes": axes, "default_axis": "flops" if "flops" in present else "step",
            "curves": figures, "bars": bars}


def embed_json(data: Any) -> str:
    """JSON safe inside a <script> element: every '<' escaped, so no '</script>' or '<!--' can end or confuse it."""
    return json.dumps(data, allow_nan=False, separators=(",", ":")).replace("<", "\\u003c")


def asset(name: str) -> str:
    """A file of the page's assets (runner/reporting/assets/: report.css, report.js), package data read in place."""
    return resources.files("runner.reporting").joinpath("assets").joinpath(name).read_text(encoding="utf-8")


def page(rows: list[dict[str, Any]], sources: list[Path]) -> str:
    """The whole HTML document: header, table, bar charts, curve controls and plots, plotly.js and the data."""
    from plotly.offline import get_plotlyjs

    notes = "".join(f'<p class="notes">{html.escape(n)}</p>' for n in column_notes(shown_columns(rows)))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>bertlab run comparison</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{asset(CSS)}</style>
<script>{get_plotlyjs()}</script></head>
<body>
<header>{header_html(rows, sources)}</header>
<h2>Comparison table <small class="notes">(click a header to sort)</small></h2>
<div class="wrap">{table_html(rows)}</div>{notes}
<h2>Probes, minimal-pair suites and downstream tasks</h2>
<div id="bars" class="bars"></div>
<h2>Curves</h2>
<div class="controls">
<label>x-axis <select id="xaxis"></select></label>
<label><input type="checkbox" id="logx"> log x</label>
<label><input type="checkbox" id="logy"> log y</label>
<label>metric <input type="search" id="filter" placeholder="filter, e.g. loss"></label>
<div id="legend" class="legend"></div>
</div>
<div id="curves"></div>
<script id="report-data" type="application/json">{embed_json(report_data(rows))}</script>
<script>{asset(SCRIPT)}</script>
</body></html>
"""


def write_html(rows: list[dict[str, Any]], out: Path, sources: list[Path] | None = None) -> Path:
    """Write out/comparison.html for these runs.run_row rows; sources: the paths compared (default: the runs')."""
    if not rows:
        raise ConfigError("--html: no runs to report")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: not a directory (--out must be a directory for comparison.html)")
    out.mkdir(parents=True, exist_ok=True)
    path = out / HTML_FILE
    path.write_text(page(rows, [Path(p) for p in (sources or [r["path"] for r in rows])]), encoding="utf-8")
    return path
