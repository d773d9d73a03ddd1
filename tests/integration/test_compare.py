"""runner.reporting.compare: the run comparison table, files and plots, from fake run dirs (no training).
This file holds the tests that train or start a process; the others: tests/unit/test_compare.py."""
from __future__ import annotations

import json
import time

import pytest

from runner.reporting.compare import compare
from tests.unit.test_compare import make_run, summary


def test_wandb_offline_comparison_run_in_the_runs_group(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from tests.wandb_records import history, records, run_info

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    root = tmp_path / "sweep"
    for job in ("0_bert_mlm", "1_bert_mlm"):
        make_run(root, job, "bert", "mlm", group="ablation",
                 metrics=[{"step": 25, "val/mlm_loss": 5.0, "probe/overall": 0.6, "probe/overall_lo": 0.54,
                           "probe/overall_hi": 0.66}],
                 summary=summary("bert", "mlm", {"mlm_loss": 5.0}))
    compare([root], wandb=True)
    files = list((root / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1 and (root / "comparison.csv").exists()
    for _ in range(50):  # wandb-core may still be writing the file when finish() returns
        if "exit" in {r.WhichOneof("record_type") for r in records(files[0])}:
            break
        time.sleep(0.2)
    info = run_info(files[0])
    assert info.run_group == "ablation" and info.job_type == "comparison"
    (logged,) = history(files[0])
    assert (logged["comparison/_type"], logged["comparison/nrows"]) == ("table-file", 2)
    assert logged["val_loss_vs_flops/_type"] == logged["probes_vs_flops/_type"] == "image-file"
    table = json.loads((files[0].parent / "files" / logged["comparison/path"]).read_text())
    assert table["columns"][:2] == ["run", "job"] and [r[1] for r in table["data"]] == ["0_bert_mlm", "1_bert_mlm"]
