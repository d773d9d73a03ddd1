"""benchmarks/gpu_suite.sh and gpu_suite.py: the CPU smoke run end to end (every part ok, the same suite.json and
suite.md a GPU run writes), the aggregation of parts that timed out, failed or were skipped (MFU against the H200's
peak from gpu_mfu.py's table, without a GPU), and the GPU plan: its budgets fit 8 minutes and its
bert_improvements overrides compose. Never asserts wall time.
The tests of this file that train or start a process: tests/integration/test_gpu_suite.py."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from runner.models.flops import train_flops
from runner.build import validate
from tests.conftest import ROOT, load_benchmark, make_cfg


SCRIPT = ROOT / "benchmarks" / "gpu_suite.sh"


FAMILIES = ["bert", "roberta", "albert", "electra", "txl", "modernbert", "xlnet"]  # experiment=bert_improvements' sweep


@pytest.fixture(scope="module")
def suite():
    return load_benchmark("gpu_suite")


def fake_run(sweep: Path, name: str, model: str, summary: dict | None) -> None:
    """A sweep job directory as Hydra and the runner leave it: .hydra/config.yaml, and summary.json if finished."""
    (sweep / name / ".hydra").mkdir(parents=True)
    (sweep / name / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
        {"model": {"name": model}, "objective": {"name": "mlm"}, "data": {"name": "wiki"}}))
    if summary is not None:
        (sweep / name / "summary.json").write_text(json.dumps(summary))
    else:
        (sweep / name / "__main__.log").write_text("RuntimeError: boom\n")


def test_aggregate_records_timeouts_failures_and_skips(suite, tmp_path, capsys):
    out = tmp_path
    (out / "logs").mkdir()
    (out / "machine.json").write_text(json.dumps({"cpu": "Intel Xeon", "cpu_count": 16, "torch": "2.x",
                                                  "cuda": "12.8", "gpus": [{"name": "NVIDIA H200", "memory_gib": 139.8,
                                                                            "capability": "9.0"}]}))
    row = {"model": "bert_tiny", "compiled": False, "batch_size": 4, "seq_len": 32, "lengths": "wiki",
           "real_tokens": 100, "labelled_positions": 15, "padding_padded": 0.22, "padding_packed": 0.1,
           "tokens_per_s_ours": 2e6, "tokens_per_s_ours_packed": 3e6, "tokens_per_s_transformers": 1e6,
           "ratio": 2.0, "ratio_packed": 3.0, "packed_vs_padded": 1.5, "steps_per_round": 10, "rounds": 3,
           "warmup": 3, "attn_implementation": "sdpa", "eval_loss_abs_diff": 0.0}
    (out / "eager.json").write_text(json.dumps({
        "machine": {"cpu": "Intel Xeon", "gpu": "NVIDIA H200"}, "results": [row],
        "args": {"device": "cuda", "dtype": "bf16", "compile_backend": None}}))
    (out / "logs" / "oom.log").write_text("Traceback (most recent call last):\n  File x\n"
                                          "torch.OutOfMemoryError: CUDA out of memory.\n")
    sweep = out / "bert_improvements"
    fake_run(sweep, "0_bert_mlm_nsp", "bert", {"name": "model=bert", "model": "bert", "steps": 699,
                                                "tokens_per_s": 5e5, "device": "cuda", "precision": "bf16",
                                                "final_val": {"mlm_loss": 5.5}, "parameters": {"total": 760322}})
    fake_run(sweep, "1_roberta_mlm", "roberta", None)
    parts = [
        {"part": "machine", "kind": "machine", "rc": 0, "seconds": 3.0, "budget_s": 15, "output": "machine.json"},
        {"part": "throughput_eager_bert", "kind": "throughput", "rc": 0, "seconds": 20.0, "budget_s": 30,
         "output": "eager.json"},
        {"part": "mfu", "kind": "mfu", "rc": 1, "seconds": 9.0, "budget_s": 35, "output": "mfu.json",
         "log": "logs/oom.log"},
        {"part": "throughput_compiled_bert", "kind": "throughput", "rc": 124, "seconds": 95.0, "budget_s": 95,
         "output": "compiled.json"},
        {"part": "throughput_compiled_modernbert", "kind": "throughput", "rc": None, "seconds": 0, "budget_s": 2,
         "output": "compiled2.json", "skipped": "no time left before the deadline"},
        {"part": "bert_improvements", "kind": "improvements", "rc": 124, "seconds": 150.0, "budget_s": 150,
         "output": "bert_improvements"},
    ]
    (out / "parts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in parts))

    assert suite.main(["aggregate", str(out), "--wall-s", "300"]) == 1  # not every part ok
    data = json.loads((out / "suite.json").read_text())
    status = {n: e["status"] for n, e in data["parts"].items()}
    assert status == {"machine": "ok", "throughput_eager_bert": "ok", "mfu": "failed",
                      "throughput_compiled_bert": "timeout", "throughput_compiled_modernbert": "skipped",
                      "bert_improvements": "timeout"}
    assert data["status"] == "failed" and data["not_ok"] == [n for n, s in status.items() if s != "ok"]
    assert "CUDA out of memory" in data["parts"]["mfu"]["error"]
    assert data["parts"]["throughput_compiled_bert"]["error"] == "timed out after 95 s"
    assert data["parts"]["throughput_compiled_modernbert"]["error"] == "no time left before the deadline"
    assert data["parts"]["bert_improvements"]["error"] == "timed out after 150 s; 1 of 2 runs started had finished"

    [r] = data["parts"]["throughput_eager_bert"]["results"]
    assert r["peak_tflops"] == 989.4 and "H200" in r["peak_note"]  # gpu_mfu.py's dense bf16 table
    per_token = train_flops(suite.model_config("bert_tiny"), 4, 100 / 4, 15) / 100
    assert r["flops_per_real_token"] == pytest.approx(per_token)
    assert r["mfu_ours_packed"] == pytest.approx(3e6 * per_token / 1e12 / 989.4)
    runs = data["parts"]["bert_improvements"]["results"]  # what finished before the timeout is kept
    assert [(x["model"], x["status"]) for x in runs] == [("bert", "finished"), ("roberta", "failed")]

    md = (out / "suite.md").read_text()
    assert "| throughput_compiled_bert | timeout | 95.0 | 95 | timed out after 95 s |" in md
    assert "No figures from: throughput_compiled_bert (timeout), throughput_compiled_modernbert (skipped)." in md
    assert "| bert_tiny | eager | 4x32 | 22.0% > 10.0% | 2,000,000 | 3,000,000 | 1,000,000 |" in md
    assert "No figures (failed)." in md and "| model=bert | bert |" in md and "NVIDIA H200" in md
    capsys.readouterr()


def script_values() -> tuple[dict[str, int], list[str]]:
    """The GPU mode's budgets (the first, unindented assignments) and IMPROVEMENTS_GPU from gpu_suite.sh."""
    text = SCRIPT.read_text()
    values = {k: int(v) for line in re.findall(r"^(?:B_|DEADLINE|KILL)[A-Z_]*=.*$", text, flags=re.M)
              for k, v in re.findall(r"(\w+)=(\d+)", line)}
    overrides = shlex.split(re.search(r"^IMPROVEMENTS_GPU=\((.*?)\)", text, flags=re.M | re.S).group(1))
    return values, overrides


def test_gpu_plan_fits_eight_minutes():
    v, _ = script_values()
    parts = v["B_MACHINE"] + 2 * v["B_EAGER"] + v["B_MFU"] + 2 * v["B_COMPILED"] + v["B_IMPROVEMENTS"]
    assert parts <= v["DEADLINE"]
    assert v["DEADLINE"] + v["KILL_GRACE"] + 10 <= v["TOTAL"]  # the last part's kill, then >= 10 s to aggregate
    assert v["TOTAL"] + v["KILL_GRACE"] <= 8 * 60


@pytest.mark.parametrize("family", FAMILIES)
def test_gpu_improvements_overrides_compose(family):
    _, overrides = script_values()
    assert "trainer.device=cuda" in overrides and "trainer.precision=bf16" in overrides
    cfg = make_cfg(*overrides, f"model={family}")
    assert cfg.logger.mode == "disabled" and cfg.trainer.precision == "bf16" and cfg.eval.downstream is False
    assert cfg.trainer.budget.flops == 8e12  # the experiment's own budget: comparable to docs/results.md
    cpu = [o for o in overrides if o != "trainer.device=cuda"]  # the runner's checks want a CUDA device for cuda
    validate(make_cfg(*cpu, "trainer.device=cpu", f"model={family}"))
