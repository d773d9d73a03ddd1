"""Downstream evaluation wired into a run: after pretraining, fine-tuning results land in summary.json, the
metrics log and the console; a corpus without labels skips it with a note.
This file holds the tests that train or start a process; the others: tests/unit/test_downstream_run.py."""
from __future__ import annotations

import json

import pytest

from runner.build import build
from runner.evaluation.after_training import prepare_downstream
from runner.run import run
from tests.conftest import TINY, make_cfg


pytestmark = pytest.mark.slow


def test_run_ends_with_downstream_scores_and_baselines(tmp_path, capsys):
    cfg = make_cfg(*TINY, "model=roberta", "data.max_docs=1500", "trainer.max_steps=10", "eval.downstream=true",
                   "eval.seeds=2", "eval.epochs=1", "eval.seq_len=64", "trainer.export_hf=false")
    s = run(cfg, build(cfg), tmp_path)
    d = s["downstream"]
    assert d["task"] == "wiki_topic" and len(d["per_seed"]) == 2
    assert 0.0 <= d["accuracy_mean"] <= 1.0 and d["accuracy_std"] >= 0.0
    assert set(d["baselines"]) == {"random_init", "bow_logreg"}
    assert "Uncategorized" not in d["labels"]
    logged = set().union(*[json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()])
    assert {"downstream/accuracy_mean", "downstream/f1_mean", "downstream/random_init_accuracy_mean",
            "downstream/bow_logreg_accuracy_mean"} <= logged
    assert "downstream wiki_topic: accuracy" in "".join(capsys.readouterr())


def test_corpus_without_topics_skips_downstream_with_a_note(tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(40):
        (docs / f"{i}.txt").write_text(f"Document {i} has a few sentences. " * 30)
    cfg = make_cfg(*TINY, "model=roberta", "data=text", f"data.paths=[{docs}]", "trainer.max_steps=2",
                   "eval.downstream=true", "trainer.export_hf=false", "data.val_fraction=0.2")
    built = build(cfg)
    assert prepare_downstream(cfg, built) is None  # said before training, which goes on
    assert "skipped downstream evaluation" in "".join(capsys.readouterr())
    s = run(cfg, built, tmp_path / "run")
    assert "downstream" not in s
    assert "skipped downstream evaluation" in "".join(capsys.readouterr())
