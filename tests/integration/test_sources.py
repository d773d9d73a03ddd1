"""Tests for runner.data.sources: wiki/text/jsonl corpora, path rules, fingerprints, and every kind of bad input.
This file holds the tests that train or start a process; the others: tests/unit/test_sources.py."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from runner.build import build
from runner.run import run
from tests.conftest import TINY, make_cfg
from tests.unit.test_sources import sentences


def write_corpus(root: Path, n_docs: int = 200, seed: int = 0) -> None:
    """n_docs files of a few generated sentences in nested directories, plus an empty one."""
    rng = random.Random(seed)
    for i in range(n_docs):
        f = root / f"part{i % 4}" / f"doc{i:03d}.txt"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(" ".join(sentences(rng, rng.randint(3, 8))) + "\n")
    (root / "empty.txt").write_text("\n")


@pytest.mark.slow
def test_text_corpus_trains_and_reports(tmp_path):
    write_corpus(tmp_path / "corpus")
    cfg = make_cfg(*TINY, "data=text", f"data.paths=[{tmp_path / 'corpus'}]", "data.max_docs=null",
                   "trainer.max_steps=2", "trainer.eval_every=2", "trainer.export_hf=false")
    summary = run(cfg, build(cfg), tmp_path / "run")
    stats = summary["data_stats"]
    assert summary["steps"] == 2 and summary["data"] == "text"
    assert stats["corpus"]["source"] == "text" and stats["corpus"]["files_matched"] == 201
    assert stats["corpus"]["documents"] == 200 and stats["corpus"]["skipped_empty_files"] == 1
    assert stats["train_docs"] + stats["validation_docs"] + stats.get("test_docs", 0) == 200
    assert stats["validation_docs"] > 0
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["data_stats"]["corpus"]["documents"] == 200


@pytest.mark.slow
def test_wiki_fr_builds(tmp_path):
    cfg = make_cfg(*TINY, "data=wiki_fr", "trainer.max_steps=0", "data.max_docs=300")
    summary = run(cfg, build(cfg), tmp_path)
    assert summary["data"] == "wiki_fr" and summary["data_stats"]["corpus"]["documents_used"] == 300
    assert summary["data_stats"]["train_docs"] > 200
