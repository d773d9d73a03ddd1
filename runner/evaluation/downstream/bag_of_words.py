"""The bag-of-words baseline: logistic regression on token counts, which sees which words an input has and not
their order (on wiki_acceptability, where both classes have the same words, it is at chance by construction)."""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from runner.evaluation.downstream.metrics import main_metric, score_run, summarize
from runner.evaluation.downstream.tasks import Example, Task


def bow_features(examples: Sequence[Example], vocab: int, num_special: int) -> torch.Tensor:
    """Sparse (N, vocab) log(1 + count) features of the non-special tokens, each row L2-normalised."""
    rows, cols = [], []
    for i, ex in enumerate(examples):
        for t in ex.ids:
            if num_special <= t < vocab:
                rows.append(i)
                cols.append(t)
    x = torch.sparse_coo_tensor(torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1),
                                torch.ones(len(rows)), (len(examples), vocab), check_invariants=True).coalesce()
    v = torch.log1p(x.values())
    norms = torch.zeros(len(examples)).index_add_(0, x.indices()[0], v * v).sqrt().clamp(min=1e-12)
    return torch.sparse_coo_tensor(x.indices(), v / norms[x.indices()[0]], x.shape,
                                   check_invariants=True).coalesce()


def _fit_logreg(x: torch.Tensor, y: torch.Tensor, k: int, c: float,
                iters: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression, L2 penalty 1/(2C)·||W||² on the summed log-loss (scikit-learn's objective),
    fitted by L-BFGS."""
    w = torch.zeros(x.shape[1], k, requires_grad=True)
    b = torch.zeros(k, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=iters, history_size=20, line_search_fn="strong_wolfe")
    n = x.shape[0]

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(torch.sparse.mm(x, w) + b, y, reduction="sum") / n + (w * w).sum() / (2 * c * n)
        loss.backward()
        return loss
    opt.step(closure)
    return w.detach(), b.detach()


def bow_logreg(task: Task, cs: Sequence[float] = (0.1, 1.0, 10.0, 100.0)) -> dict[str, Any] | None:
    """Logistic regression on bag-of-words features (bow_features), the inverse regularisation C chosen by the
    task's main metric on dev; deterministic, so one run (std 0). None for a regression task."""
    if task.regression:
        return None
    vocab = 1 + max(max(ex.ids) for part in (task.train, task.dev, task.test) for ex in part)
    feats = {n: bow_features(getattr(task, n), vocab, task.num_special) for n in ("train", "dev", "test")}
    y = {n: [ex.label for ex in getattr(task, n)] for n in ("train", "dev", "test")}
    metric, best = main_metric(task), None
    with torch.random.fork_rng():
        for c in cs:
            w, b = _fit_logreg(feats["train"], torch.tensor(y["train"]), len(task.labels), c)
            dev = score_run(task, y["dev"], (torch.sparse.mm(feats["dev"], w) + b).argmax(-1).tolist())[metric]
            if best is None or dev > best[0]:
                best = (dev, c, w, b)
    dev_score, c, w, b = best
    pred = (torch.sparse.mm(feats["test"], w) + b).argmax(-1).tolist()
    run = {"seed": None, **score_run(task, y["test"], pred), "dev_score": dev_score, "C": c}
    return {**summarize([run]), "C": c, "features": "log1p token counts, L2-normalised"}
