"""benchmarks/gpu_mfu.py on its CPU smoke path: both implementations reported, model FLOPs from runner.models.flops, MFU
from the reported numbers, the peak table and the n/a path for a card it does not know. Never asserts wall time."""
from __future__ import annotations

import json
import statistics
from types import SimpleNamespace

import pytest
import torch

from runner.build import encoder_config
from runner.models.flops import train_flops
from tests.conftest import load_benchmark, make_cfg

SMOKE = ["--device", "cpu", "--models", "bert_tiny", "--batch-size", "2", "--seq-len", "32", "--steps", "1",
         "--warmup", "1", "--rounds", "1", "--threads", "1"]


@pytest.fixture(scope="module")
def mfu():
    return load_benchmark("gpu_mfu")


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


def test_peak_table(mfu):
    assert mfu.lookup_peak("NVIDIA H100 80GB HBM3")[0] == 989.4
    assert mfu.lookup_peak("NVIDIA H100 PCIe")[0] == 756.5
    assert mfu.lookup_peak("NVIDIA H100 NVL")[0] == 835.5
    assert mfu.lookup_peak("NVIDIA H200")[0] == 989.4
    assert mfu.lookup_peak("NVIDIA A100-SXM4-80GB")[0] == mfu.lookup_peak("NVIDIA A100 80GB PCIe")[0] == 312.0
    assert mfu.lookup_peak("NVIDIA A10")[0] == 125.0
    assert mfu.lookup_peak("NVIDIA L40S")[0] == 362.05 and mfu.lookup_peak("NVIDIA L40")[0] == 181.05
    assert mfu.lookup_peak("NVIDIA L4")[0] == 121.0
    assert mfu.lookup_peak("NVIDIA GeForce RTX 4090")[0] == 165.2
    for unknown in ("NVIDIA A10G", "NVIDIA GeForce RTX 4090 D", "Tesla V100-SXM2-16GB",
                    "NVIDIA H100 80GB HBM3 MIG 1g.10gb"):
        assert mfu.lookup_peak(unknown) is None, unknown
    cuda_bf16 = SimpleNamespace(peak_tflops=None, device=torch.device("cuda"), dtype="bf16")
    assert mfu.resolve_peak(cuda_bf16, "NVIDIA H100 80GB HBM3")[0] == 989.4
    peak, note = mfu.resolve_peak(cuda_bf16, "NVIDIA Hypothetical X1")
    assert peak is None and "--peak-tflops" in note
    assert mfu.resolve_peak(SimpleNamespace(peak_tflops=None, device=torch.device("cuda"), dtype="fp32"),
                            "NVIDIA H100 80GB HBM3")[0] is None  # the table is bf16: no fp32 MFU against it
    assert mfu.resolve_peak(SimpleNamespace(peak_tflops=7.0, device=torch.device("cuda"), dtype="fp32"),
                            "NVIDIA Hypothetical X1") == (7.0, "--peak-tflops")


@pytest.mark.parametrize("argv, message", [
    (["--device", "cpu", "--models", "bert_nope"], "unknown model 'bert_nope'"),
    (["--device", "cpu", "--models", "bert_tiny", "--seq-len", "100000"], "exceeds bert_tiny's"),
    (["--device", "cpu", "--peak-tflops", "0"], "--peak-tflops must be > 0"),
    (["--device", "cpu", "--steps", "0"], "--steps must be >= 1"),
    (["--device", "tpu"], "--device"),
])
def test_bad_args_are_one_line_errors(mfu, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        mfu.parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().splitlines()[-1].count(message) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_default_needs_cuda(mfu, capsys):
    with pytest.raises(SystemExit):
        mfu.parse_args([])
    assert "no CUDA device here: pass --device cpu" in capsys.readouterr().err
