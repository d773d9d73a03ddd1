"""`python -m runner.crossover <sweep dir | run dirs> [--out DIR]`: where pretraining starts to pay, over runs: the table
(markdown) and plots of every run's crossover.json (runner/evaluation/crossover.py); a multirun with
crossover.enabled writes them into its sweep directory."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

from runner.config.console import console
from runner.config.errors import ConfigError
from runner.evaluation.crossover import RESULT, crossovers


def load_results(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """crossover.json of each run given, or of each run one level below each directory given."""
    found = []
    for p in map(Path, paths):
        runs = sorted(p.glob(f"*/{RESULT}")) if p.is_dir() else []
        found += runs or ([p / RESULT] if (p / RESULT).is_file() else [])  # a sweep's runs, or one run
    if not found:
        raise ConfigError(f"no {RESULT} in {', '.join(map(str, paths))} (run with crossover.enabled=true, e.g. "
                          "python -m runner experiment=pretraining_pays)")
    results = [json.loads(f.read_text()) for f in found]
    for r in results:  # from the points, by this version's rule
        r["crossovers"] = crossovers(r)
    return results


def _flops(x: float | None, top: float | None) -> str:
    return f"{x:.1e}" if x is not None else (f"none <= {top:.1e}" if top else "none")


def table_markdown(results: list[dict[str, Any]]) -> str:
    """Crossover per family and task (margin at the largest snapshot), and where each probe leaves chance."""
    tasks = list(dict.fromkeys(t for r in results for t in r["tasks"]))
    kinds = list(dict.fromkeys(k for r in results for k in [*r["probe_kinds"], "overall"]))
    head = ["family", *[f"{t}: pays from" for t in tasks], *[f"{t}: margin at end" for t in tasks],
            *[f"probe {k}: above chance from" for k in kinds]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        c, last = r["crossovers"], r["points"][-1] if r["points"] else None
        cells = [r["variant"]]
        cells += [_flops(c["tasks"].get(t), c["max_flops"]) for t in tasks]
        for t in tasks:
            m = last["tasks"].get(t) if last else None
            cells.append(f"{m['margin']:+.3f} [{m['margin_lo']:+.3f}, {m['margin_hi']:+.3f}]" if m else "-")
        cells += [_flops(c["probes"].get(k), c["max_flops"]) for k in kinds]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def points_markdown(results: list[dict[str, Any]]) -> str:
    """Every snapshot: FLOPs, each task's pretrained / random-init accuracy and margin, each probe's accuracy."""
    tasks = list(dict.fromkeys(t for r in results for t in r["tasks"]))
    kinds = list(dict.fromkeys(k for r in results for k in [*r["probe_kinds"], "overall"]))
    # what else the protocol reports (results written since issue 28): the linear probe and the model's own score
    knows = [t for t in tasks if any((p["tasks"].get(t) or {}).get("linear_probe") is not None
                                     for r in results for p in r["points"])]
    head = ["family", "FLOPs", "step", *[f"{t} pre / rand / margin" for t in tasks],
            *[f"{t} probe / own score" for t in knows], *[f"probe {k}" for k in kinds]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def num(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"
    for r in results:
        for p in r["points"]:
            cells = [r["variant"], f"{p['flops']:.2e}", str(p["step"])]
            for t in tasks:
                m = p["tasks"].get(t)
                cells.append(f"{m['pretrained']:.3f} / {m['random_init']:.3f} / {m['margin']:+.3f} +/- "
                             f"{m['margin_std']:.3f}" if m else "-")
            for t in knows:
                m = p["tasks"].get(t) or {}
                cells.append(f"{num(m.get('linear_probe'))} / {num(m.get('score_feature'))}")
            pr = p.get("probes", {})
            cells += [f"{pr[k]:.3f} [{pr[f'{k}_lo']:.2f}, {pr[f'{k}_hi']:.2f}]" if k in pr else "-" for k in kinds]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict[str, Any]], out: Path) -> list[Path]:
    """margin_vs_flops.png (a panel per task) and probes_vs_flops.png (a panel per probe kind)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    tasks = list(dict.fromkeys(t for r in results for t in r["tasks"]))
    kinds = list(dict.fromkeys(k for r in results for k in [*r["probe_kinds"], "overall"]))
    for name, panels, draw in (("margin_vs_flops.png", tasks, "task"), ("probes_vs_flops.png", kinds, "probe")):
        if not panels:
            continue
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
        for ax, panel in zip(axes[0], panels):
            for r in results:
                pts = [p for p in r["points"] if (panel in p["tasks"] if draw == "task" else
                                                  panel in p.get("probes", {}))]
                if not pts:
                    continue
                x = [p["flops"] for p in pts]
                if draw == "task":
                    y = [p["tasks"][panel]["margin"] for p in pts]
                    err = [p["tasks"][panel]["margin_std"] for p in pts]
                    ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=r["variant"])
                    cross = r["crossovers"]["tasks"].get(panel)
                else:
                    y = [p["probes"][panel] for p in pts]
                    lo = [p["probes"].get(f"{panel}_lo", v) for p, v in zip(pts, y)]
                    hi = [p["probes"].get(f"{panel}_hi", v) for p, v in zip(pts, y)]
                    line = ax.plot(x, y, marker="o", label=r["variant"])[0]
                    ax.fill_between(x, lo, hi, alpha=0.15, color=line.get_color())
                    cross = r["crossovers"]["probes"].get(panel)
                if cross is not None:
                    ax.axvline(cross, linestyle=":", color=ax.lines[-1].get_color())
            ax.axhline(0.0 if draw == "task" else 0.5, color="grey", linewidth=1)
            ax.set_xscale("log")
            ax.set_xlabel("pretraining FLOPs")
            ax.set_ylabel("accuracy - random init (mean +/- std over seeds)" if draw == "task" else
                          "probe accuracy (95% interval; chance 0.5)")
            ax.set_title(panel)
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def report(paths: Sequence[Path], out: Path) -> list[Path]:
    """Write crossover.md, crossover.csv-like points and the two plots for the runs under paths into out."""
    results = load_results(paths)
    out.mkdir(parents=True, exist_ok=True)
    md = ("## Where pretraining starts to pay\n\nCrossover: the first snapshot from which the fine-tuning margin over "
          "random init (paired by seed, 95% t-interval) stays above zero; probes: the first from which the Wilson 95% "
          "interval stays above 0.5.\n\n" + table_markdown(results) + "\n### Every snapshot\n\n" + points_markdown(results))
    (out / "crossover.md").write_text(md)
    (out / "crossover_runs.json").write_text(json.dumps(results, indent=2))
    return [out / "crossover.md", out / "crossover_runs.json", *plot(results, out)]


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: python -m runner.crossover <sweep dir | run dirs> [--out DIR]."""
    ap = argparse.ArgumentParser(prog="python -m runner.crossover", description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", type=Path, help="a multirun directory or run directories")
    ap.add_argument("--out", type=Path, default=None, help="where to write (default: the first path)")
    args = ap.parse_args(argv)
    try:
        written = report(args.paths, args.out or args.paths[0])
    except ConfigError as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        return 2
    print(table_markdown(load_results(args.paths)))
    print("wrote " + ", ".join(map(str, written)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
