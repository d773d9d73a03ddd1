"""wiki_acceptability: held-out sentences of the run's corpus, each as written or with two adjacent words swapped,
which bag-of-words features cannot tell apart.
This file holds the tests that train or start a process; the others: tests/unit/test_acceptability.py."""
from __future__ import annotations

import math


from runner.evaluation.downstream.bag_of_words import bow_logreg
from runner.evaluation.downstream.tasks import ACCEPTABILITY_SALT, wiki_acceptability
from tests.unit import test_acceptability as unit

run = unit.run  # the unit tier's fixture, shared


def test_bag_of_words_is_at_chance(run):
    """Both classes hold the same words, so bag-of-words logistic regression learns nothing that carries over:
    its test accuracy, pooled over the task's label hash and two more, lies in the binomial 95% interval of 0.5."""
    cfg, built = run
    correct = n = 0
    for salt in (ACCEPTABILITY_SALT, "s1", "s2"):
        task = wiki_acceptability(built.data, cfg.data, 64, salt=salt)
        acc = bow_logreg(task)["accuracy_mean"]
        correct, n = correct + round(acc * len(task.test)), n + len(task.test)
    assert abs(correct / n - 0.5) <= 1.96 * math.sqrt(0.25 / n), (correct, n)
