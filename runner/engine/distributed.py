"""torch.distributed for `torchrun --nproc_per_node=N -m runner ...`: data parallel training with DDP (gloo on CPU,
NCCL on GPU). Each rank reads its own slice of the batch stream (runner/data/batches.py), the loss normalisers
(masked-token counts) are summed over ranks so the averaged gradient equals one process's over the global batch,
and only rank 0 logs, checkpoints and writes outputs."""
from __future__ import annotations

import datetime
import os
import sys
import time
from typing import Any

import torch
import torch.distributed as dist


def launched() -> bool:
    """Whether torchrun started this process as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """Rank 0, or a single process: the one that logs, checkpoints and writes outputs."""
    return rank() == 0


def in_submitit_job() -> bool:
    """Whether this process is a submitit job (SLURM through submitit, or submitit's local executor)."""
    return "SUBMITIT_EXECUTOR" in os.environ or "SUBMITIT_LOCAL_JOB_ID" in os.environ


def from_submitit() -> None:
    """A submitit job with several tasks (hydra.launcher.tasks_per_node, or nodes > 1): one process per task, as
    torchrun would start them; export the rank, world size and rendezvous address torch.distributed reads."""
    if launched() or not in_submitit_job():
        return
    import submitit

    env = submitit.JobEnvironment()
    if env.num_tasks > 1:
        # every task sees the node's GPUs and takes cuda:LOCAL_RANK (local_device), as under torchrun
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def init() -> None:
    """Join the process group torchrun describes (a CPU group for objects and, with CUDA, NCCL for tensors)."""
    if launched() and not dist.is_initialized():
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))


def local_device(device: torch.device) -> torch.device:
    """cuda -> this rank's GPU (LOCAL_RANK); other devices unchanged."""
    if device.type == "cuda" and launched():
        # one visible GPU (SLURM's --gpus-per-task): that one; else this rank's among the node's
        index = int(os.environ.get("LOCAL_RANK", "0")) if torch.cuda.device_count() > 1 else 0
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
    return device


def _reduce(values: list[float], device: torch.device, op: Any) -> list[float]:
    """values reduced elementwise over ranks (float64, so counts stay exact); on the GPU under NCCL, else on the
    CPU group (gloo)."""
    t = torch.tensor(values, dtype=torch.float64, device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=op)
    return t.tolist()


def all_sum(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Each value summed over ranks; unchanged in a single process."""
    if not dist.is_initialized() or not values:
        return values
    keys = sorted(values)
    return dict(zip(keys, _reduce([float(values[k]) for k in keys], device, dist.ReduceOp.SUM)))


def all_sum_tensors(values: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Each tensor (a scalar or a vector: ELECTRA's histograms) summed over ranks, as float64 on the CPU; one
    collective for them all. Unchanged in values (moved to the CPU) in a single process."""
    local = {k: v.detach().to("cpu", torch.float64) for k, v in values.items()}
    if not dist.is_initialized() or not local:
        return local
    keys = sorted(local)
    flat = torch.cat([local[k].reshape(-1) for k in keys]).to(device if device.type == "cuda" else "cpu")
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    out, at = {}, 0
    for k in keys:
        n = local[k].numel()
        out[k], at = flat[at:at + n].cpu().reshape(local[k].shape), at + n
    return out


def all_max(value: float, device: torch.device) -> float:
    """The largest value over ranks; unchanged in a single process."""
    if not dist.is_initialized():
        return value
    return _reduce([float(value)], device, dist.ReduceOp.MAX)[0]


def broadcast(value: Any) -> Any:
    """Rank 0's value on every rank (any picklable object)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any) -> list[Any]:
    """Every rank's value, in rank order, on every rank ([value] in a single process)."""
    if not dist.is_initialized():
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def shutdown(barrier: bool = True) -> None:
    """Leave the process group (after a barrier unless told otherwise); nothing in a single process."""
    if dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()


def hydra_args(argv: list[str]) -> list[str]:
    """Command-line additions that make the ranks of a torchrun launch agree on one run directory (rank 0's
    timestamp) and keep ranks > 0 from writing Hydra's files into it. Called before Hydra parses argv."""
    if not launched():
        return []
    init()
    extra = []
    if not any(a.startswith("hydra.run.dir=") for a in argv):
        stamp = broadcast(time.strftime("%Y-%m-%d_%H-%M-%S"))
        extra.append(f"hydra.run.dir=outputs/runs/{stamp}_${{hydra:runtime.choices.model}}_"
                     "${hydra:runtime.choices.objective}")
    if not is_main():
        extra += ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    if any(a in ("-m", "--multirun") for a in argv):
        print("error: torchrun runs one job over several processes; a sweep (-m) of distributed jobs goes through "
              "hydra/launcher=submitit_slurm with hydra.launcher.tasks_per_node=N", file=sys.stderr)
        sys.exit(2)
    return extra
