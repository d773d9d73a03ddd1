"""The model-score classifier: one feature, the pretrained model's own score of the input sentence (its first
scorer's log-likelihood or pseudo-log-likelihood, Objective.sentence_scores), normalised, and a logistic regression
on it. On an acceptability task (wiki_acceptability, CoLA) this is what the model knows zero-shot turned into a
classifier with nothing else learned, so it is a lower bound that fine-tuning the same model should reach.

Two normalisations, the one with the better dev accuracy kept (both recorded):
- per_token: log-score / tokens (the probes' `_norm`).
- slor: (log-score - unigram log-probability) / tokens, the syntactic log-odds ratio of Pauls & Klein (2012), as
  Lau, Clark & Lappin (2017) use it for acceptability: it takes out how rare the sentence's words are, which a
  corruption that keeps the words (a swap) leaves unchanged, so what remains is the model's surprise at the order.
  The unigram distribution is the pretraining data's training split (add-one smoothed)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from runner.data.unigram import token_counts
from runner.evaluation.downstream.metrics import score_run, summarize
from runner.evaluation.downstream.tasks import Task

NORMALISATIONS = ("per_token", "slor")


def unigram_logprobs(data: Any, vocab_size: int) -> torch.Tensor | None:
    """log p(token) (V,) from the pretraining data's training split, add-one smoothed; None without one."""
    split = getattr(data, "splits", {}).get("train")
    if split is None:
        return None
    counts = token_counts(split, 0).astype(np.float64)
    full = np.ones(vocab_size, dtype=np.float64)
    full[:min(len(counts), vocab_size)] += counts[:vocab_size]
    return torch.from_numpy(np.log(full / full.sum()))


def fit_logistic(x: torch.Tensor, y: torch.Tensor, k: int, iters: int = 200) -> nn.Linear:
    """Multinomial logistic regression (k labels) on dense standardised features x (N, D), a small L2 penalty,
    fitted by L-BFGS; features standardised inside (the returned layer takes raw features)."""
    mu, sd = x.mean(0), x.std(0).clamp(min=1e-8)
    z = (x - mu) / sd
    lin = nn.Linear(x.shape[1], k).double()
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    opt = torch.optim.LBFGS(lin.parameters(), lr=1, max_iter=iters, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(lin(z), y) + 1e-4 * (lin.weight ** 2).sum()
        loss.backward()
        return loss
    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():  # fold the standardisation into the layer
        w = lin.weight / sd
        lin.bias -= (w * mu).sum(1)
        lin.weight.copy_(w)
    return lin


@torch.no_grad()
def score_feature(objective: Any, encoder: nn.Module, task: Task, specials: Any, data: Any = None,
                  batch_size: int = 64) -> dict[str, Any] | None:
    """The one-feature classifier of the model's own sentence score on `task` (single sentences only), with the
    normalisation chosen on dev; test metrics as a one-run summary. None when the task has pairs or labels that are
    not classes, or the objective cannot score sentences."""
    if task.pairs or task.regression:
        return None
    parts = {n: getattr(task, n) for n in ("train", "dev", "test")}
    sentences = [list(ex.ids[1:-1]) for p in parts.values() for ex in p]  # without [CLS] / [SEP]
    was = (encoder.training, objective.training)
    encoder.eval(), objective.eval()
    try:
        scores = objective.sentence_scores(encoder, sentences, specials, first_only=True)
    finally:
        encoder.train(was[0]), objective.train(was[1])
    if not scores:
        return None
    scorer, s = next(iter(scores.items()))
    s = s.double().cpu()
    lengths = torch.tensor([max(len(x), 1) for x in sentences], dtype=torch.float64)
    feats = {"per_token": s / lengths}
    uni = unigram_logprobs(data, 1 + max(max(x, default=0) for x in sentences)) if data is not None else None
    if uni is not None:
        u = torch.tensor([float(uni[x].sum()) for x in sentences], dtype=torch.float64)
        feats["slor"] = (s - u) / lengths
    bounds, lo = {}, 0
    for n, p in parts.items():
        bounds[n] = (lo, lo + len(p))
        lo += len(p)
    y = {n: torch.tensor([ex.label for ex in p]) for n, p in parts.items()}
    tried, best = {}, None
    for name, f in feats.items():
        if not torch.isfinite(f).all():
            continue
        x = {n: f[a:b, None] for n, (a, b) in bounds.items()}
        lin = fit_logistic(x["train"], y["train"], len(task.labels))
        dev = score_run(task, y["dev"].tolist(), lin(x["dev"]).argmax(-1).tolist())
        tried[name] = dev["accuracy"]
        if best is None or dev["accuracy"] > best[0]:
            best = (dev["accuracy"], name, lin, x)
    if best is None:
        return None
    dev_acc, name, lin, x = best
    pred = lin(x["test"]).argmax(-1).tolist()
    run = {"seed": None, **score_run(task, y["test"].tolist(), pred), "dev_score": dev_acc}
    return {**summarize([run]), "scorer": scorer, "normalisation": name, "dev_accuracy_by_normalisation": tried,
            "what": "logistic regression on the model's own normalised sentence score (no fine-tuning)"}

