"""The downstream protocol (issue 28): a linear-probe head then the whole model (LP-FT), the epoch and the learning
rate chosen on dev, the model's own score as a one-feature classifier, and regression for STS-B."""
from __future__ import annotations

import copy
import dataclasses
import random

import pytest
import torch

from runner.evaluation.downstream import Example, Task, finetune
from runner.evaluation.downstream.score_feature import score_feature
from runner.models.encoder import Encoder
from tests.unit.test_downstream import SP, keyword_task, tiny_config

KW = dict(seq_len=32, batch_size=16, show_progress=False, baselines=())


def test_the_head_starts_as_the_linear_probe_and_dev_keeps_it_when_fine_tuning_hurts():
    task = keyword_task()
    torch.manual_seed(0)
    enc = Encoder(tiny_config())
    # a learning rate that wrecks the encoder: epoch 0 (the probe of the frozen features) has the best dev score
    r = finetune(lambda: copy.deepcopy(enc), task, seeds=[0, 1], epochs=2, lr=3.0, **KW)
    for p in r["per_seed"]:
        assert p["epochs"][0]["epoch"] == 0 and p["best_epoch"] == 0
        assert p["accuracy"] == p["probe"]["accuracy"]  # reported: the probe itself
    assert r["linear_probe"]["accuracy_mean"] == r["accuracy_mean"] and r["linear_probe"]["accuracy_std"] == 0.0
    assert r["linear_probe"]["accuracy_mean"] > 0.4  # random features with a keyword still read above 1/3
    # BERT's recipe: a random head, no epoch 0
    b = finetune(lambda: copy.deepcopy(enc), task, seeds=[0], epochs=2, lr=1e-3, head="random", **KW)
    assert [e["epoch"] for e in b["per_seed"][0]["epochs"]] == [1, 2] and "linear_probe" not in b


def test_the_learning_rate_is_chosen_on_dev_and_recorded():
    task = keyword_task(n=160)
    torch.manual_seed(0)
    enc = Encoder(tiny_config())
    grid = finetune(lambda: copy.deepcopy(enc), task, seeds=[0, 1], epochs=3, lr=[1e-5, 3e-3], **KW)
    assert [g["lr"] for g in grid["grid"]] == [1e-5, 3e-3] and grid["settings"]["lrs"] == [1e-5, 3e-3]
    best = max(grid["grid"], key=lambda g: g["dev_mean"])
    assert grid["lr"] == best["lr"] and grid["accuracy_mean"] == best["accuracy_mean"]
    one = finetune(lambda: copy.deepcopy(enc), task, seeds=[0, 1], epochs=3, lr=grid["lr"], **KW)
    assert one["per_seed"] == grid["per_seed"]  # the chosen learning rate's runs, as run alone


class Scorer(torch.nn.Module):
    """An objective whose first scorer is a sentence's log-likelihood: -2 per token, -9 more where token 7 follows
    token 8 (the "corruption")."""

    def sentence_scores(self, encoder, sentences, specials, words=None, first_only=False):
        out = []
        for s in sentences:
            bad = sum(1 for a, b in zip(s, s[1:]) if (a, b) == (8, 7))
            out.append(-2.0 * len(s) - 9.0 * bad)
        return {"pll": torch.tensor(out)}


def acceptability(seed: int = 0) -> Task:
    rng = random.Random(seed)

    def ex(y: int) -> Example:
        body = [rng.randrange(10, 40) for _ in range(rng.randrange(5, 15))]
        i = rng.randrange(len(body))
        body[i:i] = [8, 7] if y else [7, 8]
        return Example((SP.cls, *body, SP.sep), y)
    return Task("acc", ["acceptable", "corrupted"], [ex(i % 2) for i in range(80)], [ex(i % 2) for i in range(40)],
                [ex(i % 2) for i in range(60)], pad_id=SP.pad, num_special=SP.num_special, acceptability=True)


def test_the_models_own_score_as_a_one_feature_classifier():
    task = acceptability()
    data = type("D", (), {"splits": {}})()  # no training split: per-token only
    f = score_feature(Scorer(), torch.nn.Linear(1, 1), task, SP, data)
    assert f["scorer"] == "pll" and f["normalisation"] == "per_token" and f["accuracy_mean"] > 0.9
    assert list(f["dev_accuracy_by_normalisation"]) == ["per_token"]
    # in the protocol: beside the fine-tuning on an acceptability task, never on pairs
    torch.manual_seed(0)
    enc = Encoder(tiny_config())
    r = finetune(lambda: copy.deepcopy(enc), task, seeds=[0], epochs=1, lr=1e-3,
                 scorer=lambda t: score_feature(Scorer(), enc, t, SP, data), **KW)
    assert r["score_feature"]["accuracy_mean"] == f["accuracy_mean"]
    assert score_feature(Scorer(), enc, dataclasses.replace(task, pairs=True), SP, data) is None
    assert "score_feature" not in finetune(lambda: copy.deepcopy(enc), dataclasses.replace(task, acceptability=False),
                                           seeds=[0], epochs=1, lr=1e-3, scorer=lambda t: 1 / 0, **KW)


def test_a_regression_task_learns_a_score_and_reports_correlations():
    rng = random.Random(0)

    def ex() -> Example:
        k = rng.randrange(3)
        body = [rng.randrange(10, 40) for _ in range(rng.randrange(4, 10))]
        body.insert(rng.randrange(len(body)), 5 + k)
        return Example((SP.cls, *body, SP.sep), 2.5 * k + rng.uniform(-0.2, 0.2))
    task = Task("sts", ["score"], [ex() for _ in range(160)], [ex() for _ in range(40)], [ex() for _ in range(60)],
                pad_id=SP.pad, num_special=SP.num_special, regression=True)
    torch.manual_seed(0)
    r = finetune(lambda: Encoder(tiny_config()), task, seeds=[0, 1], epochs=6, lr=3e-3, **KW)
    assert r["metric"] == "spearman" and "accuracy_mean" not in r and r["chance"] == {}
    assert r["spearman_mean"] > 0.8 and r["pearson_mean"] > 0.8
    assert r["linear_probe"]["spearman_mean"] > 0.3  # least squares on frozen random features finds the keyword
