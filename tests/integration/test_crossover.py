"""Where pretraining starts to pay: the snapshot series, paired margins, crossover detection, and a tiny run.
This file holds the tests that train or start a process; the others: tests/unit/test_crossover.py."""
from __future__ import annotations

import json

import pytest

from runner.reporting.crossover_report import report
from tests.conftest import TINY, cli


@pytest.mark.slow
def test_a_run_with_crossover_snapshots_probes_and_fine_tunes_each_point(tmp_path):
    run = tmp_path / "run"
    r = cli(*TINY, "model=roberta", "trainer.budget.flops=1e9", "crossover.enabled=true",
                "crossover.start_flops=3e8", "crossover.tasks=[wiki_topic]", "eval.seeds=2", "eval.epochs=1",
                "trainer.export_hf=false", run_dir=run)
    assert r.returncode == 0, r.stderr[-3000:]
    snaps = sorted(p.name for p in (run / "snapshots").glob("*.pt"))
    assert snaps == ["flops-1e+09.pt", "flops-3e+08.pt"], snaps
    out = json.loads((run / "crossover.json").read_text())
    assert [round(p["flops"] / 1e8) for p in out["points"]][0] >= 3 and len(out["points"]) == 2
    for p in out["points"]:
        t = p["tasks"]["wiki_topic"]
        assert len(t["per_seed_margin"]) == 2 and t["margin_lo"] <= t["margin"] <= t["margin_hi"]
        assert 0.0 <= p["probes"]["overall"] <= 1.0
    # the baselines were fine-tuned once: the second snapshot reads them from the cache
    assert [p["tasks"]["wiki_topic"]["baselines_source"] for p in out["points"]] == ["computed", "cached"]
    assert json.loads((run / "summary.json").read_text())["crossover"]["max_flops"] == out["points"][-1]["flops"]
    written = report([run], tmp_path / "report")
    assert {p.name for p in written} >= {"crossover.md", "margin_vs_flops.png", "probes_vs_flops.png"}
