"""The downstream protocol: fine-tune a pretrained encoder on a task over seeds and a small learning-rate grid, the
learning rate chosen on dev, beside what else tells how much the model knows and the references that place it.

Reported per task (docs/evaluation.md#downstream-fine-tuning has the controls that chose each part):
- the fine-tuned model (classifier.finetune_once: a linear-probe head, then the whole model, the best dev epoch) at
  the learning rate of eval.lrs with the best mean dev score: every metric's mean, std, median and spread over seeds,
  and the grid (each learning rate's dev and test means) in `grid`;
- `linear_probe`: the probe on frozen features alone (epoch 0 of the same runs);
- `score_feature` on an acceptability task: a one-feature classifier of the model's own normalised sentence score
  (score_feature.py), the lower bound fine-tuning should reach;
- baselines: the same protocol from random weights (`random_init`) and bag-of-words logistic regression, cached
  by task and encoder shape (baselines.py); `chance`: the best constant answer on the test set."""
from __future__ import annotations

import contextlib
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from runner.evaluation.downstream.bag_of_words import bow_logreg
from runner.evaluation.downstream.baselines import baseline_inputs, baseline_key, cached_baselines, encoder_shape
from runner.evaluation.downstream.classifier import FinetuneBar, finetune_once, random_like, steps_per_seed
from runner.evaluation.downstream.metrics import best_constant, main_metric, summarize
from runner.evaluation.downstream.tasks import Task

BASELINES = ("random_init", "bow_logreg")


def finetune_seeds(encoder_factory: Callable[[int], nn.Module], task: Task, *, seeds: Sequence[int],
                   show_progress: bool = True, label: str = "finetune", bar: FinetuneBar | None = None,
                   **kwargs: Any) -> dict[str, Any]:
    """finetune_once for each seed on a fresh encoder from encoder_factory(seed); summarized, with the linear
    probe's test metrics (when the head starts as one) summarized under "linear_probe"."""
    seeds = list(seeds)
    own = FinetuneBar(task.name) if bar is None and show_progress else None
    bar = bar or own
    if bar is not None:
        bar.plan(label, len(seeds) * steps_per_seed(task, kwargs["epochs"], kwargs["batch_size"]))
    runs = []
    with own or contextlib.nullcontext():
        for i, seed in enumerate(seeds, start=1):
            torch.manual_seed(seed)  # random_init factories draw their weights from it
            runs.append(finetune_once(encoder_factory(seed), task, seed=seed, bar=bar, arm=label, index=i,
                                      count=len(seeds), **kwargs))
            if bar is not None:
                bar.seed_done(label, i, len(seeds), runs[-1])
    out = summarize(runs)
    if all("probe" in r for r in runs):
        out["linear_probe"] = summarize([{"seed": r["seed"], **r["probe"]} for r in runs])
    return out


def lr_grid(encoder_factory: Callable[[int], nn.Module], task: Task, lrs: Sequence[float], *, label: str,
            **kwargs: Any) -> dict[str, Any]:
    """finetune_seeds at each learning rate; the one with the best mean dev score (the task's main metric) kept,
    its summary returned with "lr" and "grid" (every learning rate's mean dev score and test means). One learning
    rate, or select="last" (nothing to choose by on dev): the first."""
    results = []
    for lr in lrs:
        name = label if len(lrs) == 1 else f"{label} lr {lr:g}"
        results.append(finetune_seeds(encoder_factory, task, label=name, lr=lr, **kwargs))
    if kwargs.get("select", "dev") == "last":
        devs, pick = [None] * len(lrs), 0
    else:
        devs = [statistics.fmean(r["dev_score"] for r in res["per_seed"]) for res in results]
        pick = max(range(len(lrs)), key=lambda i: (devs[i], -i))
    grid = [{"lr": lr, "dev_mean": d, **{k: v for k, v in r.items() if k.endswith("_mean")}}
            for lr, d, r in zip(lrs, devs, results)]
    return {**results[pick], "lr": lrs[pick], "grid": grid}


def finetune(encoder_factory: Callable[[], nn.Module], task: Task, *, seeds: Sequence[int] = (0, 1, 2),
             epochs: int = 3, lr: float | Sequence[float] = 1e-4, batch_size: int = 32, seq_len: int = 128,
             device: str | torch.device = "cpu", pooling: str = "auto", warmup_fraction: float = 0.1,
             weight_decay: float = 0.01, dropout: float = 0.1, packing: bool = False, head: str = "probe",
             select: str = "dev", pooler: nn.Module | None = None, baselines: Sequence[str] = BASELINES,
             random_factory: Callable[[], nn.Module] | None = None, show_progress: bool = True,
             baseline_cache: str | Path | None = None, shape: Any = None,
             scorer: Callable[[Task], dict[str, Any] | None] | None = None) -> dict[str, Any]:
    """The protocol on one task: a fresh copy of the pretrained encoder per seed (encoder_factory(), e.g.
    `lambda: copy.deepcopy(built.module.encoder)`) at each learning rate of `lr` (one or a grid), then the
    baselines: random_init (random_factory() or random_like(encoder_factory()), the same protocol, seeds and grid)
    and bow_logreg; and, when `scorer` is given and the task is an acceptability task, scorer(task): the
    one-feature classifier of the model's own score (score_feature.score_feature). pooler: the run's pretrained
    pooler (NSP / SOP) for cls pooling; the random-init arm gets a fresh one.

    baseline_cache: a directory (baselines.cache_dir()) where the baselines are stored by a key of the task, the
    encoder's shape (`shape`: its config dataclass, else encoder_factory()'s), the settings, seeds and device type,
    and reused: the result says "baselines_source": "cached" (or "computed") and "baselines_key"."""
    device = torch.device(device)
    seeds, lrs = list(seeds), [float(x) for x in ([lr] if isinstance(lr, (int, float)) else lr)]
    for b in baselines:
        if b not in BASELINES:
            raise ValueError(f"unknown baseline {b!r}: {' or '.join(BASELINES)}")
    for name in ("train", "dev", "test"):
        if not getattr(task, name):
            raise ValueError(f"task {task.name}: the {name} subset is empty ({task.sizes()})")
    common = dict(seeds=seeds, epochs=epochs, batch_size=batch_size, seq_len=seq_len, device=device,
                  pooling=pooling, warmup_fraction=warmup_fraction, weight_decay=weight_decay, dropout=dropout,
                  packing=packing, head=head, select=select, show_progress=show_progress)
    settings = {**{k: v for k, v in common.items() if k not in ("show_progress", "device", "packing")}, "lrs": lrs,
                "device": str(device), **({"packing": True} if packing else {})}  # recorded, and keyed in the cache
    t0 = time.perf_counter()
    key_shape = encoder_shape(shape if shape is not None else encoder_factory()) \
        if baseline_cache is not None and baselines else None
    key = inputs = None
    if key_shape is not None:
        inputs = baseline_inputs(task, key_shape, settings, seeds, device, baselines)
        key = baseline_key(inputs)
    bar = FinetuneBar(task.name) if show_progress else None
    if bar is not None:  # the random-init arm counts unless its numbers are in the cache
        per_arm = len(seeds) * steps_per_seed(task, epochs, batch_size)
        for lr_ in lrs:
            bar.plan(f"pretrained lr {lr_:g}" if len(lrs) > 1 else "pretrained", per_arm)
            if "random_init" in baselines and not (key and (Path(baseline_cache) / f"{key}.json").is_file()):
                bar.plan(f"random init lr {lr_:g}" if len(lrs) > 1 else "random init", per_arm)
    with bar or contextlib.nullcontext():
        feature = scorer(task) if scorer is not None and task.acceptability else None
        result: dict[str, Any] = {"task": task.name, **lr_grid(lambda s: encoder_factory(), task, lrs,
                                                                label="pretrained", bar=bar, pooler=pooler,
                                                                **common)}
        if feature is not None:
            result["score_feature"] = feature

        def compute_baselines() -> dict[str, Any]:
            out: dict[str, Any] = {}
            if "random_init" in baselines:
                make = (lambda s: random_factory()) if random_factory is not None else \
                    (lambda s: random_like(encoder_factory()))
                out["random_init"] = lr_grid(make, task, lrs, label="random init", bar=bar, **common)
            if "bow_logreg" in baselines and (bow := bow_logreg(task)) is not None:
                out["bow_logreg"] = bow
            return out
        if key is not None:
            result["baselines"], result["baselines_source"] = cached_baselines(baseline_cache, key, inputs,
                                                                               compute_baselines)
            result["baselines_key"] = key
        else:
            result["baselines"] = compute_baselines()
            if baselines:
                result["baselines_source"], result["baselines_key"] = "computed", None
    result.update(metric=main_metric(task), chance=best_constant(task), sizes=task.sizes(),
                  labels=list(task.labels), settings=settings, notes=dict(task.notes),
                  wall_s=round(time.perf_counter() - t0, 2))
    return result
