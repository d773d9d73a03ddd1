"""benchmarks/gpu_mfu.py on its CPU smoke path: both implementations reported, model FLOPs from runner.models.flops, MFU
from the reported numbers, the peak table and the n/a path for a card it does not know. Never asserts wall time.
This file holds the tests that train or start a process; the others: tests/unit/test_gpu_mfu.py."""
from __future__ import annotations

import json
import statistics

import pytest
import torch

from runner.build import encoder_config
from runner.models.flops import train_flops
from tests.conftest import make_cfg
from tests.unit import test_gpu_mfu as unit

mfu = unit.mfu  # the unit tier's fixture, shared


SMOKE = ["--device", "cpu", "--models", "bert_tiny", "--batch-size", "2", "--seq-len", "32", "--steps", "1",
         "--warmup", "1", "--rounds", "1", "--threads", "1"]


@pytest.fixture
def run(mfu, tmp_path, capsys):
    """Call mfu.main(argv + --json) in-process; (results JSON, printed text). Restores torch's thread count."""
    threads = torch.get_num_threads()

    def call(*argv: str):
        out = tmp_path / "mfu.json"
        assert mfu.main([*SMOKE, *argv, "--json", str(out)]) == 0
        return json.loads(out.read_text()), capsys.readouterr().out

    yield call
    torch.set_num_threads(threads)


def test_smoke_reports_both_with_train_flops_and_mfu(run):
    data, text = run("--dtype", "fp32", "--peak-tflops", "0.5")
    assert data["peak_tflops"] == 0.5 and data["peak_note"] == "--peak-tflops"
    [r] = data["results"]
    assert set(r["implementations"]) == {"ours", "transformers"} and r["attn_implementation"] == "sdpa"
    assert "ours" in text and "transformers (sdpa)" in text

    config = encoder_config(make_cfg("model=bert_tiny"))
    assert r["flops_per_step"] == train_flops(config, 2, 32, r["labelled_positions"])
    assert r["transformers_unlabelled_head_flops_per_step"] == \
        train_flops(config, 2, 32, 2 * 32) - r["flops_per_step"] > 0
    assert 0 < r["labelled_positions"] < 2 * 32

    tokens = 2 * 32 * 1
    for v in r["implementations"].values():
        assert v["tokens_per_s_rounds"] == pytest.approx([tokens / s for s in v["seconds_rounds"]])
        assert v["tokens_per_s"] == pytest.approx(statistics.median(v["tokens_per_s_rounds"]))
        assert v["achieved_tflops"] == pytest.approx(r["flops_per_step"] * v["tokens_per_s"] / tokens / 1e12)
        assert v["mfu"] == pytest.approx(v["achieved_tflops"] / data["peak_tflops"])
        assert f"{100 * v['mfu']:.1f}%" in text
        assert v["peak_memory_bytes"] is None  # CPU: no CUDA allocator to ask
        assert v["params"] == r["implementations"]["ours"]["params"]  # same weights, tied tensors counted once
    assert r["ratio"] == pytest.approx(r["implementations"]["ours"]["tokens_per_s"]
                                       / r["implementations"]["transformers"]["tokens_per_s"])
    assert r["eval_loss_abs_diff"] < 1e-4


def test_unknown_device_prints_na_and_names_the_flag(run):
    data, text = run("--dtype", "bf16")  # a CPU is not in the dense bf16 peak table: the unknown-card path
    assert data["peak_tflops"] is None and "--peak-tflops" in data["peak_note"]
    assert all(v["mfu"] is None for v in data["results"][0]["implementations"].values())
    assert "MFU n/a" in text and "--peak-tflops" in text
