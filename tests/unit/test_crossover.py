"""Where pretraining starts to pay: the snapshot series, paired margins, crossover detection, and a tiny run.
The tests of this file that train or start a process: tests/integration/test_crossover.py."""
from __future__ import annotations

import math

import pytest
import torch

from runner.engine.snapshots import Snapshots, snapshot_points
from runner.evaluation.crossover import crossovers, margin, t_interval


def test_snapshot_series_is_geometric_up_to_the_budget():
    assert snapshot_points(1e11, 2, 1e13) == [1e11, 3.16e11, 1e12, 3.16e12, 1e13]
    assert snapshot_points(1e11, 1, 5e12) == [1e11, 1e12, 5e12]
    assert snapshot_points(1e11, 2, 1.2e13) == [1e11, 3.16e11, 1e12, 3.16e12, 1.2e13]  # 1e13 gives way to the end
    assert snapshot_points(1e11, 2, 5e10) == []
    assert snapshot_points(1e11, 2, 1e11) == [1e11]


def test_snapshots_are_saved_once_at_the_first_step_past_each_threshold(tmp_path):
    s = Snapshots(tmp_path, [10.0, 20.0, 40.0])
    assert s.due(5.0) == []
    assert s.due(25.0) == [10.0, 20.0]  # one step crossed two thresholds: one file
    s.save(s.due(25.0), {"w": torch.ones(1)}, step=3, flops=25.0, tokens=7)
    assert s.due(30.0) == [] and s.pending == [40.0]
    saved = torch.load(tmp_path / "snapshots" / "flops-10.pt", weights_only=False)
    assert saved["step"] == 3 and saved["thresholds"] == [10.0, 20.0]
    other_rank = Snapshots(tmp_path / "rank1", [10.0, 40.0])
    other_rank.save([10.0], {}, step=3, flops=25.0, tokens=7, write=False)  # ranks > 0 keep pace without writing
    assert other_rank.pending == [40.0] and not (tmp_path / "rank1").exists()
    resumed = Snapshots(tmp_path, [10.0, 20.0, 40.0])
    resumed.skip_reached(25.0)
    assert resumed.pending == [40.0]


def result(pre: list[float], rand: list[float]) -> dict:
    per = lambda xs: [{"seed": i, "accuracy": x} for i, x in enumerate(xs)]  # noqa: E731
    return {"accuracy_mean": sum(pre) / len(pre), "accuracy_std": 0.0, "per_seed": per(pre),
            "baselines": {"random_init": {"accuracy_mean": sum(rand) / len(rand), "accuracy_std": 0.0,
                                          "per_seed": per(rand)}}}


def test_margin_is_paired_by_seed_with_a_t_interval():
    m = margin(result([0.6, 0.7, 0.8], [0.5, 0.6, 0.7]))
    assert m["margin"] == pytest.approx(0.1) and m["margin_std"] == pytest.approx(0.0, abs=1e-12)
    assert m["margin_lo"] == pytest.approx(0.1)  # every seed gained the same: a tight interval above zero
    mean, sd, lo, hi = t_interval([0.1, 0.3])
    assert mean == pytest.approx(0.2) and lo == pytest.approx(0.2 - 12.706 * sd / math.sqrt(2))
    assert t_interval([0.5])[2] == -math.inf


def test_crossover_is_the_first_snapshot_from_which_the_interval_clears_zero_or_chance():
    def point(flops, lo, probe_lo):
        return {"flops": flops, "tasks": {"t": {"margin_lo": lo}}, "probes": {"swap_lo": probe_lo,
                                                                            "overall_lo": probe_lo}}
    res = {"tasks": ["t"], "probe_kinds": ["swap"],
           "points": [point(1e11, -0.2, 0.40), point(1e12, 0.01, 0.45), point(1e13, 0.05, 0.55)]}
    c = crossovers(res)
    assert c["tasks"]["t"] == 1e12 and c["probes"]["swap"] == 1e13 and c["max_flops"] == 1e13
    res["points"] = res["points"][:1]
    assert crossovers(res)["tasks"]["t"] is None
    # a point that clears and falls back is noise: the crossover is where it clears for good
    res["points"] = [point(1e11, 0.02, 0.55), point(1e12, -0.01, 0.45), point(1e13, 0.03, 0.56)]
    assert crossovers(res)["tasks"]["t"] == 1e13 and crossovers(res)["probes"]["swap"] == 1e13
