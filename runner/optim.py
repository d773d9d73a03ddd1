"""AdamW with decoupled weight decay and BERT's linear warmup / linear decay schedule."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn



def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices and embeddings; leave biases and LayerNorm weights (all 1-D parameters) undecayed,
    as BERT's AdamWeightDecayOptimizer does."""
    decay, no_decay = [], []
    for _, p in module.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_linear(warmup: int, total: int, min_ratio: float):
    """LR multiplier: linear from 0 to 1 over `warmup` steps, then linear down to `min_ratio` at `total`."""
    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        left = max(total - warmup, 1)
        return max(min_ratio, min_ratio + (1.0 - min_ratio) * (total - step) / left)
    return factor


def build_adamw(module: nn.Module, max_steps: int, lr: float, betas: Sequence[float], eps: float,
                weight_decay: float, warmup_steps: int | None = None, warmup_fraction: float = 0.0,
                min_lr_ratio: float = 0.0, name: str = "adamw"):
    """AdamW and its LambdaLR schedule for a run of max_steps optimizer steps."""
    warmup = warmup_steps if warmup_steps is not None else int(round(warmup_fraction * max_steps))
    fused = next(module.parameters()).is_cuda
    opt = torch.optim.AdamW(param_groups(module, weight_decay), lr=lr, betas=tuple(betas), eps=eps,
                            **({"fused": True} if fused else {}))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_linear(warmup, max_steps, min_lr_ratio))
    return opt, sched
