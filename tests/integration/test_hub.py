"""data.source=hub: datasets saved locally, WikiText grouping, and fail-fast offline errors.
This file holds the tests that train or start a process; the others: tests/unit/test_hub.py."""
from __future__ import annotations

import pytest

from runner.build import build
from tests.conftest import TINY, make_cfg
from tests.unit import test_hub as unit

saved = unit.saved  # the unit tier's fixture, shared


datasets = pytest.importorskip("datasets")


@pytest.mark.slow
def test_training_run_on_a_saved_dataset(saved, tmp_path):
    from runner.run import run

    cfg = make_cfg(*TINY, "data=hub", f"data.hub.name={saved}", "data.max_docs=null", "trainer.max_steps=2",
                   "trainer.export_hf=false", "model.vocab_size=300")
    summary = run(cfg, build(cfg), tmp_path)
    assert summary["steps"] == 2 and summary["data_stats"]["corpus"]["source"] == "hub"
