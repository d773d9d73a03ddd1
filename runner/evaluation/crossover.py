"""Where pretraining starts to pay: snapshots of one run at a geometric series of training FLOPs, each probed and
fine-tuned on every task against the same fine-tuning from random weights.

A run with crossover.enabled keeps its weights at crossover.start_flops x 10^(k / crossover.per_decade) FLOPs
(snapshots/flops-<N>.pt, and its end); at its end each snapshot is scored on the probes and fine-tuned on each of
crossover.tasks over eval.seeds seeds (eval.* settings; the random-init and bag-of-words baselines come from the
baseline cache: computed once per task and encoder shape). The margin over random init is paired by seed (the
same seed fine-tunes both); the first snapshot from which its 95% t-interval stays above zero marks the crossover,
and the first from which a probe's Wilson interval stays above 0.5 marks where it leaves chance.
The snapshots are taken by runner/engine/snapshots.py; python -m runner.crossover (runner/reporting/crossover_report.py)
writes the table and plots over runs."""
from __future__ import annotations

import copy
import json
import math
import statistics
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig

from runner.data.cache import atomic_write_bytes
from runner.engine.snapshots import saved_snapshots
from runner.store import checkpoint
from runner.store.layout import CROSSOVER, saved_hydra
from runner.evaluation.after_training import NoLabels, load_downstream_task
from runner.config.console import console
from runner.evaluation.after_training import protocol_settings
from runner.evaluation.downstream.protocol import finetune

RESULT = CROSSOVER
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}  # t(0.975, df)


def crossover_tasks_of(cfg: DictConfig, built: Any) -> dict[str, Any]:
    """The crossover's tasks loaded from the run's data before training ({} when crossover.enabled is off); a
    task without labels in this data is left out with a note."""
    from omegaconf import OmegaConf

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
            "baselines_source": result.get("baselines_source"), "lr": result.get("lr"),
            "random_init_lr": result["baselines"]["random_init"].get("lr"),
            "linear_probe": (result.get("linear_probe") or {}).get("accuracy_mean"),
            "score_feature": (result.get("score_feature") or {}).get("accuracy_mean"),
            "chance": (result.get("chance") or {}).get("best_constant_accuracy")}


def evaluate_snapshots(cfg: DictConfig, built: Any, run_dir: Path, probes: Any, device: torch.device,
                       tasks: dict[str, Any]) -> dict[str, Any]:
    """Probe and fine-tune every snapshot of the run; writes and returns crossover.json's content."""

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
                result = finetune(lambda: copy.deepcopy(encoder), task, device=device,
                                  **{**protocol_settings(cfg, built), "baselines": ("random_init", "bow_logreg")})
                point["tasks"][name] = margin(result)
            points.append(point)
    finally:
        module.load_state_dict(now)
    label = _model_choice(run_dir) or cfg.model.name
    out = {"model": cfg.model.name, "objective": cfg.objective.name, "variant": label,
           "tasks": list(tasks), "probe_kinds": list(probes.kinds) if probes is not None else [],
           "scorers": list(probes.scorers) if probes is not None else [], "points": points,
           "settings": {"seeds": e.seeds, "epochs": e.epochs, "lrs": list(e.lrs) if e.get("lr") is None else [e.lr],
                        "head": e.get("head"), "pooling": e.pooling, "seq_len": e.seq_len}}
    out["crossovers"] = crossovers(out)
    atomic_write_bytes(json.dumps(out, indent=2).encode(), Path(run_dir) / RESULT)
    return out


def _model_choice(run_dir: Path) -> str | None:
    """The run's model choice (experiment multiruns sweep model=...), from Hydra's record of the job: the row's label
    (the result's "variant" key, kept for results written before conf/variant/ became the presets' recipes)."""
    try:
        return saved_hydra(run_dir)["runtime"]["choices"].get("model")
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
