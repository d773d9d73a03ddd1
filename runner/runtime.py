"""Where and how a run computes: threads, the process group, the device, the data-parallel wrapper (DDP or
FSDP2), mixed precision and compilation, set up once from the trainer config."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from runner import distributed
from runner.parallel import Parallel
from runner.precision import Precision
from runner.validate import resolve_device


@dataclass
class Runtime:
    """The device, the number of ranks, the module on it, its parallel wrapper and the precision policy."""

    device: torch.device
    world: int
    module: nn.Module
    parallel: Parallel
    amp: Precision


def start(t: Any, module: nn.Module) -> Runtime:
    """Threads, process group, device; module moved there (FSDP: sharded instead), wrapped, maybe compiled."""
    if t.threads:
        torch.set_num_threads(t.threads)
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
    return Runtime(device, world, module, parallel, amp)
