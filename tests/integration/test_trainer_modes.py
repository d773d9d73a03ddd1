"""benchmarks/trainer_modes.py on a tiny config: every requested mode measured through the real Trainer, the
precision each ran in, the ratio against fp32, and the validation loss of the same model. Never asserts wall time.
This file holds the tests that train or start a process; the others: tests/unit/test_trainer_modes.py."""
from __future__ import annotations

import json

import pytest

from tests.conftest import TINY
from tests.unit import test_trainer_modes as unit

modes = unit.modes  # the unit tier's fixture, shared


def test_modes_run_the_trainer_in_each_precision(modes, tmp_path):
    out = tmp_path / "modes.json"
    results = modes.main(["--modes", "fp32,bf16,fp16", "--steps", "2", "--warmup", "1", "--device", "cpu",
                          "--json", str(out), "--overrides", *[o for o in TINY if not o.startswith("logger.")]])
    assert [(r["mode"], r["precision"], r["compile"]) for r in results] == \
        [("fp32", "fp32", False), ("bf16", "bf16", False), ("fp16", "fp16", False)]
    assert results[0]["ratio_vs_fp32"] == 1.0
    for r in results:
        assert r["ratio_vs_fp32"] == pytest.approx(r["tokens_per_s"] / results[0]["tokens_per_s"])
        assert r["tokens"] > 0 and r["val_metric"] == "mlm_loss"
        # the same weights, batches and schedule: low precision changes the loss a little, not the model
        assert r["val_loss"] == pytest.approx(results[0]["val_loss"], rel=2e-2)
    assert json.loads(out.read_text())["results"][1]["precision"] == "bf16"
