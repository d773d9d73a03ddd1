"""benchmarks/gpu_mfu.py on its CPU smoke path: both implementations reported, model FLOPs from runner.models.flops, MFU
from the reported numbers, the peak table and the n/a path for a card it does not know. Never asserts wall time.
The tests of this file that train or start a process: tests/integration/test_gpu_mfu.py."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def mfu():
    return load_benchmark("gpu_mfu")


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
