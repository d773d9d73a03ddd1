"""benchmarks/gpu_suite.sh and gpu_suite.py: the CPU smoke run end to end (every part ok, the same suite.json and
suite.md a GPU run writes), the aggregation of parts that timed out, failed or were skipped (MFU against the H200's
peak from gpu_mfu.py's table, without a GPU), and the GPU plan: its budgets fit 8 minutes and its
bert_improvements overrides compose. Never asserts wall time.
This file holds the tests that train or start a process; the others: tests/unit/test_gpu_suite.py."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.unit.test_gpu_suite import SCRIPT, FAMILIES
from tests.unit import test_gpu_suite as unit

suite = unit.suite  # the unit tier's fixture, shared


PARTS = ["machine", "throughput_eager_bert", "throughput_eager_modernbert", "mfu", "throughput_compiled_bert",
         "throughput_compiled_modernbert", "bert_improvements"]


@pytest.mark.slow
def test_smoke_run_writes_every_part(tmp_path):
    out = tmp_path / "suite"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(["bash", str(SCRIPT), "--smoke", str(out)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    data = json.loads((out / "suite.json").read_text())
    assert data["mode"] == "smoke" and data["status"] == "ok" and data["not_ok"] == []
    assert list(data["parts"]) == PARTS
    for name, e in data["parts"].items():
        assert e["status"] == "ok" and e["rc"] == 0 and e["error"] is None, (name, e)
        assert 0 < e["seconds"] <= e["budget_s"] and (out / e["log"]).is_file()
    assert data["machine"]["cpu_count"] >= 1 and data["machine"]["torch"]

    rows = [r for n in PARTS if n.startswith("throughput") for r in data["parts"][n]["results"]]
    assert [(r["model"], r["mode"]) for r in rows] == [("bert_tiny", "eager"), ("modernbert", "eager"),
                                                      ("bert_tiny", "compiled"), ("modernbert", "compiled")]
    for r in rows:
        tps = [r["tokens_per_s_ours"], r["tokens_per_s_ours_packed"], r["tokens_per_s_transformers"]]
        assert all(math.isfinite(x) and x > 0 for x in tps), r
        assert r["ratio"] == pytest.approx(tps[0] / tps[2]) and r["ratio_packed"] == pytest.approx(tps[1] / tps[2])
        assert r["compile_backend"] == ("eager" if r["mode"] == "compiled" else None)
        assert r["peak_tflops"] == 1.0 and r["flops_per_real_token"] > 0
        for impl, x in zip(("ours", "ours_packed", "transformers"), tps):
            assert r[f"mfu_{impl}"] == pytest.approx(x * r["flops_per_real_token"] / 1e12 / r["peak_tflops"])
            assert r[f"mfu_{impl}"] > 0
        assert 0 <= r["padding_packed"] <= r["padding_padded"] < 1 and r["eval_loss_abs_diff"] < 1e-4

    mfu = data["parts"]["mfu"]["results"]
    assert {(r["model"], r["implementation"]) for r in mfu} == {
        (m, i) for m in ("bert_tiny", "modernbert") for i in ("ours", "transformers")}
    assert all(r["tokens_per_s"] > 0 and r["mfu"] > 0 for r in mfu)

    runs = data["parts"]["bert_improvements"]["results"]
    assert [r["model"] for r in runs] == FAMILIES
    for r in runs:
        assert r["status"] == "finished" and r["steps"] == 2 and r["device"] == "cpu", r
        assert math.isfinite(r["val_loss"]) and r["tokens_per_s"] > 0 and 0 <= r["probe_overall"] <= 1
    assert not list((out / "bert_improvements").glob("*/checkpoints"))  # deleted: OUT stays small

    md = (out / "suite.md").read_text()
    for heading in ("## Parts", "## Training throughput", "## MFU and peak memory", "## experiment=bert_improvements"):
        assert heading in md
    assert "| model | mode | batch | padding: padded > packed | ours padded tok/s |" in md
    assert "| bert_tiny | compiled | 4x32 |" in md and "| modernbert | transformers (sdpa) | 4x32 |" in md
    assert "| model=txl | txl | clm |" in md and "not GPU figures" in md
    assert [json.loads(x)["part"] for x in (out / "parts.jsonl").read_text().splitlines()] == PARTS


def test_bad_usage(suite, capsys):
    r = subprocess.run(["bash", str(SCRIPT), "--nope"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "usage: bash benchmarks/gpu_suite.sh [--smoke] [OUT_DIR]" in r.stderr
    assert suite.main(["nope"]) == 2
    capsys.readouterr()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks a machine without CUDA")
def test_gpu_run_without_cuda_stops_after_the_preflight(tmp_path):
    out = tmp_path / "suite"
    env = {**os.environ, "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(SCRIPT), str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-2000:]
    data = json.loads((out / "suite.json").read_text())
    assert data["mode"] == "gpu" and data["status"] == "failed" and list(data["parts"]) == PARTS
    assert data["parts"]["machine"]["status"] == "failed" and "no CUDA device" in data["parts"]["machine"]["error"]
    assert all(data["parts"][n]["status"] == "skipped" for n in PARTS[1:])
    assert "| throughput_eager_bert | skipped |" in (out / "suite.md").read_text()
