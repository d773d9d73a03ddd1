"""Downstream metrics, and each task's own (GLUE's, as its paper and leaderboard report them): accuracy and
macro-F1 for every classification task; Matthews correlation for CoLA; F1 of the positive class for MRPC and QQP;
Pearson and Spearman correlation for STS-B (a regression). Summaries over seeds give mean, sample std, median and
spread (max - min) of every metric."""
from __future__ import annotations

import math
import statistics
from typing import Any, Sequence


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Share of correct predictions."""
    return sum(int(a == b) for a, b in zip(y_true, y_pred)) / max(len(y_true), 1)


def _counts(y_true: Sequence[int], y_pred: Sequence[int], c: int) -> tuple[int, int, int]:
    tp = sum(1 for a, b in zip(y_true, y_pred) if a == c and b == c)
    fp = sum(1 for a, b in zip(y_true, y_pred) if a != c and b == c)
    fn = sum(1 for a, b in zip(y_true, y_pred) if a == c and b != c)
    return tp, fp, fn


def f1_of(y_true: Sequence[int], y_pred: Sequence[int], label: int) -> float:
    """F1 of one label (0 when it has no true or predicted positives)."""
    tp, fp, fn = _counts(y_true, y_pred, label)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Unweighted mean of per-label F1 over the labels in y_true or y_pred (scikit-learn's average="macro"); a
    label with no true or predicted positives scores 0."""
    labels = sorted(set(y_true) | set(y_pred))
    return sum(f1_of(y_true, y_pred, c) for c in labels) / len(labels) if labels else 0.0


def matthews(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Matthews correlation of binary labels (scikit-learn's matthews_corrcoef; 0 when a marginal is constant)."""
    tp, fp, fn = _counts(y_true, y_pred, 1)
    tn = len(y_true) - tp - fp - fn
    den = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / den if den else 0.0


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation (0 when either side is constant)."""
    n = len(x)
    if n < 2:
        return 0.0
    mx, my = math.fsum(x) / n, math.fsum(y) / n
    sxy = math.fsum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx, syy = math.fsum((a - mx) ** 2 for a in x), math.fsum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else 0.0


def ranks(x: Sequence[float]) -> list[float]:
    """Ranks from 1, ties given their average rank (scipy.stats.rankdata's default)."""
    order = sorted(range(len(x)), key=lambda i: x[i])
    out = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation: Pearson's of the ranks."""
    return pearson(ranks(x), ranks(y))


def main_metric(task: Any) -> str:
    """The metric a task selects epochs and learning rates by: Spearman for a regression, Matthews correlation
    where the task reports it (CoLA), else accuracy."""
    if getattr(task, "regression", False):
        return "spearman"
    return "mcc" if "mcc" in getattr(task, "metrics", ()) else "accuracy"


def score_run(task: Any, y_true: Sequence[Any], y_pred: Sequence[Any]) -> dict[str, float]:
    """Every metric of the task for one prediction: regression {pearson, spearman}; classification {accuracy, f1
    (macro)} and the task's own (task.metrics: mcc, binary_f1)."""
    if getattr(task, "regression", False):
        return {"pearson": pearson(y_pred, y_true), "spearman": spearman(y_pred, y_true)}
    out = {"accuracy": accuracy(y_true, y_pred), "f1": macro_f1(y_true, y_pred)}
    own = getattr(task, "metrics", ())
    if "mcc" in own:
        out["mcc"] = matthews(y_true, y_pred)
    if "binary_f1" in own:
        out["binary_f1"] = f1_of(y_true, y_pred, 1)
    return out


def summarize(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Over runs, for every metric the runs share (accuracy, f1, mcc, ...; each run's extra test sets as
    `<set>/<metric>`): mean, sample std (ddof=1; 0.0 for a single run), median and spread (max - min)."""
    out: dict[str, Any] = {}
    keys = [k for k, v in per_seed[0].items() if isinstance(v, float) and k not in ("dev_accuracy", "dev_score")
            and all(isinstance(r.get(k), float) for r in per_seed)] if per_seed else []
    for k in keys:
        v = [r[k] for r in per_seed]
        out.update({f"{k}_mean": statistics.fmean(v), f"{k}_std": statistics.stdev(v) if len(v) > 1 else 0.0,
                    f"{k}_median": statistics.median(v), f"{k}_spread": max(v) - min(v)})
    out["per_seed"] = per_seed
    return out


def best_constant(task: Any, subset: str = "test") -> dict[str, Any]:
    """Chance on a subset: the best constant answer's accuracy there (its label), the training majority's accuracy
    there, and 1 / labels. A test split that is not balanced puts the two constants apart; the reader needs the
    first (no model that says one thing everywhere can do better)."""
    y = [ex.label for ex in getattr(task, subset)]
    y_train = [ex.label for ex in task.train]
    if not y or getattr(task, "regression", False):
        return {}
    best = max(set(y), key=y.count)
    major = max(set(y_train), key=y_train.count)
    return {"best_constant_label": task.labels[best], "best_constant_accuracy": y.count(best) / len(y),
            "majority_label": task.labels[major], "majority_accuracy": y.count(major) / len(y),
            "uniform_accuracy": 1 / len(task.labels)}


def beside(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What a result reports beside the fine-tuned model, by name: linear_probe, score_feature, then each baseline
    (the arms every table and metric line lists after it)."""
    own = {k: result[k] for k in ("linear_probe", "score_feature") if isinstance(result.get(k), dict)}
    return {**own, **(result.get("baselines") or {})}
