"""Where pretraining starts to pay: snapshots of one run at a geometric series of training FLOPs, each probed and
fine-tuned on every task against the same fine-tuning from random weights.

A run with crossover.enabled keeps its weights at crossover.start_flops x 10^(k / crossover.per_decade) FLOPs
(snapshots/flops-<N>.pt, and its end); at its end each snapshot is scored on the probes and fine-tuned on each of
crossover.tasks over eval.seeds seeds (eval.* settings; the random-init and bag-of-words baselines come from the
baseline cache: computed once per task and encoder shape). The margin over random init is paired by seed (the
same seed fine-tunes both); the first snapshot from which its 95% t-interval stays above zero marks the crossover,
and the first from which a probe's Wilson interval stays above 0.5 marks where it leaves chance. `python -m runner.crossover <sweep dir | run dirs> [--out DIR]` writes
the table and plots of every run (a multirun with crossover.enabled writes them into its sweep directory)."""
from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig

from runner import checkpoint
from runner.data.cache import atomic_save, atomic_write_bytes
from runner.errors import ConfigError

RESULT = "crossover.json"
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}  # t(0.975, df)


# ---- snapshots during training ----------------------------------------------------------------------------------

def snapshot_points(start: float, per_decade: int, end: float | None) -> list[float]:
    """start x 10^(k / per_decade) for k = 0, 1, ..., ending with end itself (the run's last step); a grid point
    within half a grid step of end gives way to it."""
    if end is None or end < start:
        return []
    out, k = [], 0
    while (x := start * 10 ** (k / per_decade)) < end / 10 ** (0.5 / per_decade):
        out.append(float(f"{x:.3g}"))
        k += 1
    return [*out, float(end)]


def snapshot_dir(run_dir: Path) -> Path:
    """Where a run keeps its snapshots."""
    return Path(run_dir) / "snapshots"


class Snapshots:
    """Keeps the weights at the first step whose training FLOPs reach each threshold."""

    def __init__(self, run_dir: Path, thresholds: Sequence[float]):
        self.dir, self.pending = snapshot_dir(run_dir), sorted(thresholds)

    def skip_reached(self, flops: float) -> None:
        """A resumed run: thresholds already passed were saved before the stop."""
        self.pending = [x for x in self.pending if x > flops]

    def due(self, flops: float) -> list[float]:
        """The thresholds this many FLOPs reached that are not saved yet."""
        return [x for x in self.pending if flops >= x]

    def save(self, thresholds: list[float], module_state: dict[str, torch.Tensor], step: int, flops: float,
             tokens: int, write: bool = True) -> None:
        """One file for the step (the first threshold names it; the others are in its record), written when
        `write` (rank 0); every rank marks the thresholds done, so all of them stay in step."""
        if write:
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_save({"module": module_state, "step": step, "flops": flops, "tokens": tokens,
                         "thresholds": thresholds}, self.dir / f"flops-{thresholds[0]:.3g}.pt")
        self.pending = [x for x in self.pending if x not in thresholds]


def saved_snapshots(run_dir: Path) -> list[Path]:
    """A run's snapshot files, in FLOPs order."""
    files = list(snapshot_dir(run_dir).glob("flops-*.pt"))
    return sorted(files, key=lambda p: float(p.stem.split("-", 1)[1]))


# ---- evaluating the snapshots -----------------------------------------------------------------------------------

def crossover_tasks_of(cfg: DictConfig, built: Any) -> dict[str, Any]:
    """The crossover's tasks loaded from the run's data before training ({} when crossover.enabled is off); a
    task without labels in this data is left out with a note."""
    from omegaconf import OmegaConf

    from runner.evaluation import NoLabels, load_downstream_task
    from runner.logging import console

    x = cfg.get("crossover")
    if x is None or not x.enabled:
        return {}
    out = {}
    for name in x.tasks:
        try:
            out[name] = load_downstream_task(OmegaConf.merge(cfg, {"eval": {"task": str(name)}}), built)
        except NoLabels as err:
            console.print(f"[yellow]crossover: left out {name}: {err}", highlight=False, soft_wrap=True)
    return out


def t_interval(values: Sequence[float]) -> tuple[float, float, float, float]:
    """(mean, sample std, lo, hi) of a 95% t-interval of the mean (one value: an unbounded interval)."""
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, 0.0, -math.inf, math.inf
    sd = statistics.stdev(values)
    half = T975.get(len(values) - 1, 1.96) * sd / math.sqrt(len(values))
    return m, sd, m - half, m + half


def margin(result: dict[str, Any]) -> dict[str, Any]:
    """Pretrained minus random-init test accuracy, paired by seed, with its 95% t-interval."""
    pre = {r["seed"]: r["accuracy"] for r in result["per_seed"]}
    rand = {r["seed"]: r["accuracy"] for r in result["baselines"]["random_init"]["per_seed"]}
    diffs = [pre[s] - rand[s] for s in pre if s in rand]
    m, sd, lo, hi = t_interval(diffs)
    bow = result["baselines"].get("bow_logreg", {}).get("accuracy_mean")
    return {"pretrained": result["accuracy_mean"], "pretrained_std": result["accuracy_std"],
            "random_init": result["baselines"]["random_init"]["accuracy_mean"],
            "random_init_std": result["baselines"]["random_init"]["accuracy_std"], "bow_logreg": bow,
            "margin": m, "margin_std": sd, "margin_lo": lo, "margin_hi": hi, "per_seed_margin": diffs,
            "baselines_source": result.get("baselines_source")}


def evaluate_snapshots(cfg: DictConfig, built: Any, run_dir: Path, probes: Any, device: torch.device,
                       tasks: dict[str, Any]) -> dict[str, Any]:
    """Probe and fine-tune every snapshot of the run; writes and returns crossover.json's content."""
    from runner.downstream.baselines import cache_dir
    from runner.downstream.finetune import finetune
    from runner.logging import console

    e, module = cfg.eval, built.module
    encoder, objective = module.encoder, module.objective
    now = copy.deepcopy(module.state_dict())
    points = []
    files = saved_snapshots(run_dir)
    try:
        for i, path in enumerate(files):
            snap = checkpoint.read(path)  # weights_only: a snapshot someone else wrote runs no code here
            module.load_state_dict(snap["module"])
            point: dict[str, Any] = {"flops": snap["flops"], "step": snap["step"], "tokens": snap["tokens"],
                                     "tasks": {}}
            if probes is not None:
                point["probes"] = probes.evaluate(objective, encoder)
            for name, task in tasks.items():
                console.print(f"crossover: snapshot {i + 1}/{len(files)} ({snap['flops']:.2e} FLOPs), {name}",
                              highlight=False)
                result = finetune(lambda: copy.deepcopy(encoder), task, seeds=range(e.seeds), epochs=e.epochs,
                                  lr=e.lr, batch_size=e.batch_size, seq_len=e.seq_len, device=device,
                                  pooling=e.pooling, packing=e.get("packing") is not False,
                                  baseline_cache=cache_dir(cfg.data.get("cache_dir")),
                                  shape=encoder)
                point["tasks"][name] = margin(result)
            points.append(point)
    finally:
        module.load_state_dict(now)
    label = _model_choice(run_dir) or cfg.model.name
    out = {"model": cfg.model.name, "objective": cfg.objective.name, "variant": label,
           "tasks": list(tasks), "probe_kinds": list(probes.kinds) if probes is not None else [],
           "scorers": list(probes.scorers) if probes is not None else [], "points": points,
           "settings": {"seeds": e.seeds, "epochs": e.epochs, "lr": e.lr, "seq_len": e.seq_len}}
    out["crossovers"] = crossovers(out)
    atomic_write_bytes(json.dumps(out, indent=2).encode(), Path(run_dir) / RESULT)
    return out


def _model_choice(run_dir: Path) -> str | None:
    """The run's model choice (experiment multiruns sweep model=...), from Hydra's record of the job: the row's label
    (the result's "variant" key, kept for results written before conf/variant/ became the presets' recipes)."""
    try:
        import yaml
        node = yaml.safe_load((Path(run_dir) / ".hydra" / "hydra.yaml").read_text())["hydra"]
        return node["runtime"]["choices"].get("model")
    except Exception:  # noqa: BLE001 - no record: the model name names it
        return None


def first_lasting(flops: list[float], clear: list[bool]) -> float | None:
    """The FLOPs of the first snapshot from which every snapshot clears (a point that clears and then falls back
    is noise, not a crossover); None when the last one does not."""
    k = len(clear)
    while k > 0 and clear[k - 1]:
        k -= 1
    return flops[k] if k < len(clear) else None


def crossovers(result: dict[str, Any]) -> dict[str, Any]:
    """Per task, the first snapshot from which the margin's interval stays above zero; per probe kind, the first
    from which the Wilson interval stays above 0.5; None when none in the range."""
    pts = sorted(result["points"], key=lambda p: p["flops"])
    x = [p["flops"] for p in pts]
    out: dict[str, Any] = {"tasks": {}, "probes": {}, "max_flops": max(x, default=None)}
    for task in result["tasks"]:
        out["tasks"][task] = first_lasting(x, [p["tasks"][task]["margin_lo"] > 0 for p in pts])
    for kind in [*result["probe_kinds"], "overall"]:
        out["probes"][kind] = first_lasting(x, [p.get("probes", {}).get(f"{kind}_lo", 0) > 0.5 for p in pts])
    return out


# ---- the report over runs -----------------------------------------------------------------------------------------

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
    head = ["family", "FLOPs", "step", *[f"{t} pre / rand / margin" for t in tasks], *[f"probe {k}" for k in kinds]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        for p in r["points"]:
            cells = [r["variant"], f"{p['flops']:.2e}", str(p["step"])]
            for t in tasks:
                m = p["tasks"].get(t)
                cells.append(f"{m['pretrained']:.3f} / {m['random_init']:.3f} / {m['margin']:+.3f} +/- "
                             f"{m['margin_std']:.3f}" if m else "-")
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
    from runner.logging import console

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
    sys.exit(main())
