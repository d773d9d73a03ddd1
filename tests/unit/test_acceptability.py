"""wiki_acceptability: held-out sentences of the run's corpus, each as written or with two adjacent words swapped,
which bag-of-words features cannot tell apart.
The tests of this file that train or start a process: tests/integration/test_acceptability.py."""
from __future__ import annotations

import pytest

from runner.build import build
from runner.evaluation.downstream.registry import load_task
from runner.evaluation.downstream.tasks import acceptability_rows, wiki_acceptability
from runner.evaluation.probes.pairs import held_out_sentences, words_of
from tests.conftest import TINY, make_cfg


OVERRIDES = [*TINY, "data.max_docs=1000", "data.test_fraction=0.3"]  # ~300 held-out articles, ~800 sentences


@pytest.fixture(scope="module")
def run():
    cfg = make_cfg(*OVERRIDES)
    return cfg, build(cfg)


def test_sentences_appear_once_as_written_or_with_one_adjacent_swap(run):
    cfg, _ = run
    rows = acceptability_rows(cfg.data)
    assert len(rows) > 500 and len({o for o, _, _ in rows}) == len(rows)  # each sentence once
    for original, text, label in rows:
        if label:  # corrupted: the same words, one adjacent pair exchanged
            a, b = words_of(original), words_of(text)
            diff = [i for i in range(len(a)) if a[i] != b[i]]
            assert text != original and sorted(a) == sorted(b)
            assert len(diff) == 2 and diff[1] == diff[0] + 1 and (a[diff[0]], a[diff[1]]) == (b[diff[1]], b[diff[0]])
        else:
            assert text == original
    share = sum(label for _, _, label in rows) / len(rows)
    assert abs(share - 0.5) <= 0.1
    train_split = set(held_out_sentences(cfg.data, "train", 10**6, min_words=6, max_words=30))
    assert not train_split & {o for o, _, _ in rows}  # only documents pretraining never saw


def test_the_task_is_fixed_balanced_and_capped(run):
    cfg, built = run
    task = load_task("wiki_acceptability", built.data, 64, data_cfg=cfg.data)
    again = wiki_acceptability(built.data, cfg.data, 64)
    assert (task.train, task.dev, task.test) == (again.train, again.dev, again.test)  # deterministic
    assert task.labels == ["acceptable", "corrupted"] and 300 <= len(task.train) <= 600
    assert len(task.dev) >= 100 and len(task.test) >= 100
    sp = built.data.specials
    for ex in task.train + task.dev + task.test:
        assert ex.ids[0] == sp.cls and ex.ids[-1] == sp.sep and len(ex.ids) <= 64
    labels = [ex.label for part in (task.train, task.dev, task.test) for ex in part]
    assert abs(sum(labels) / len(labels) - 0.5) <= 0.1
    capped = wiki_acceptability(built.data, cfg.data, 64, max_train=50)
    assert capped.train == task.train[:50] and capped.test == task.test
