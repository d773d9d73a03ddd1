"""Where and how a run computes: threads, the process group, the device, the data-parallel wrapper (DDP or
FSDP2), mixed precision and compilation, set up once from the trainer config."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from runner.engine import distributed, threads
from runner.engine.threads import ThreadPlan
from runner.engine.parallel import STRATEGIES, Parallel
from runner.engine.precision import PRECISIONS, Precision
from runner.config.errors import ConfigError, require


@dataclass
class Runtime:
    """The device, the number of ranks, the module on it, its parallel wrapper, the precision policy and the CPU
    threads."""

    device: torch.device
    world: int
    module: nn.Module
    parallel: Parallel
    amp: Precision
    threads: ThreadPlan


def start(t: Any, module: nn.Module) -> Runtime:
    """Threads, process group, device; module moved there (FSDP: sharded instead), wrapped, maybe compiled."""
    plan = threads.apply(t.threads, int(t.get("num_workers") or 0))  # the share of the cores (runner/engine/threads.py)
    distributed.init()
    device = distributed.local_device(resolve_device(t.device))
    world = distributed.world_size()
    # FSDP moves each block to the device as it shards it: no rank ever holds the whole model there
    fsdp = world > 1 and t.strategy == "fsdp"
    module = module if fsdp else module.to(device)
    # DDP averages gradients over ranks; the loop normalises each rank's loss by the global counts and scales it by
    # the world size, so the gradient is the single-process one over the global batch (FSDP's reduce-scatter
    # averages the same way)
    parallel = Parallel(module, t.strategy, world, device)
    scaler = None
    if parallel.sharded:  # fp16 under FSDP: the ranks must agree whether a step overflowed
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler as scaler
    amp = Precision(t.precision, device, scaler)
    if t.compile:  # the training forward; evaluation stays eager (no second graph for no_grad)
        parallel.compile()
    return Runtime(device, world, module, parallel, amp, plan)


def check_machine(t) -> None:
    """trainer.precision, strategy, compile and resume, and the torchrun launch they run under."""
    import os
    import shutil

    require(t.precision in PRECISIONS, f"trainer.precision={t.precision!r} must be {', '.join(PRECISIONS)}")
    require(t.strategy in STRATEGIES, f"trainer.strategy={t.strategy!r} must be {' or '.join(STRATEGIES)}")
    require(t.resume in (True, False, "auto"), f"trainer.resume={t.resume!r} must be true, false or auto")
    device = resolve_device(t.device)
    if t.precision == "bf16" and device.type == "cuda":
        require(torch.cuda.is_bf16_supported(), f"trainer.precision=bf16 but {torch.cuda.get_device_name(device)} has "
              "no bf16; use trainer.precision=fp16 (loss scaling) or auto")
    require(not (t.compile and device.type == "cpu" and not any(map(shutil.which, ("c++", "g++", "clang++")))),
          "trainer.compile=true on the CPU needs a C++ compiler (torch inductor), and none is on PATH; install one "
          "(e.g. g++) or drop trainer.compile")
    if distributed.launched() and device.type == "cuda":
        local, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        require(local < gpus or gpus == 1, f"torchrun started local rank {local} but this node has {gpus} GPUs; use "
              f"--nproc_per_node={gpus} or fewer")


def resolve_device(name: str) -> torch.device:
    """The device for trainer.device ('auto': CUDA if present, else CPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"trainer.device={name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    require(dev.type != "cuda" or torch.cuda.is_available(),
          f"trainer.device={name!r} but CUDA is not available here; use trainer.device=auto or cpu")
    require(dev.type != "mps" or torch.backends.mps.is_available(),
          f"trainer.device={name!r} but MPS is not available here; use trainer.device=auto or cpu")
    return dev
