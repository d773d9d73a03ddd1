"""AdamW with decoupled weight decay and BERT's linear warmup / linear decay schedule; LAMB (ALBERT's optimizer)."""
from __future__ import annotations

import math
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


def warmup_cosine(warmup: int, total: int, min_ratio: float):
    """LR multiplier: linear warmup, then cosine annealing from 1 to `min_ratio` at `total` (Transformer-XL's
    schedule; Loshchilov & Hutter 2017 without restarts)."""
    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        done = min(max(step - warmup, 0) / max(total - warmup, 1), 1.0)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * done))
    return factor


def warmup_stable_decay(warmup: int, total: int, min_ratio: float, decay_fraction: float):
    """LR multiplier: linear warmup, the peak held, then a 1 - sqrt decay to `min_ratio` over the last
    `decay_fraction` of the steps (the trapezoidal warmup-stable-decay schedule ModernBERT trains with; Hägele et
    al. 2024 for the 1 - sqrt shape): a run can be continued from before its decay."""
    decay_steps = max(int(round(decay_fraction * total)), 1)
    start = total - decay_steps

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        if step < start:
            return 1.0
        done = min((step - start) / decay_steps, 1.0)
        return min_ratio + (1.0 - min_ratio) * (1.0 - math.sqrt(done))
    return factor


DECAYS = {"linear": warmup_linear, "cosine": warmup_cosine, "wsd": warmup_stable_decay}


def build_adamw(module: nn.Module, max_steps: int, lr: float, betas: Sequence[float], eps: float,
                weight_decay: float, warmup_steps: int | None = None, warmup_fraction: float = 0.0,
                min_lr_ratio: float = 0.0, name: str = "adamw", decay: str = "linear", decay_fraction: float = 0.1):
    """AdamW and its LambdaLR schedule for a run of max_steps optimizer steps (Adam with weight_decay=0)."""
    fused = next(module.parameters()).is_cuda
    opt = torch.optim.AdamW(param_groups(module, weight_decay), lr=lr, betas=tuple(betas), eps=eps,
                            **({"fused": True} if fused else {}))
    return opt, schedule(opt, max_steps, warmup_steps, warmup_fraction, min_lr_ratio, decay, decay_fraction)


def schedule(opt: torch.optim.Optimizer, max_steps: int, warmup_steps: int | None, warmup_fraction: float,
             min_lr_ratio: float, decay: str = "linear", decay_fraction: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup (warmup_steps, else warmup_fraction of max_steps), then BERT's linear, a cosine, or the
    warmup-stable-decay schedule (decay_fraction: its final decay's share of the steps)."""
    warmup = warmup_steps if warmup_steps is not None else int(round(warmup_fraction * max_steps))
    extra = (decay_fraction,) if decay == "wsd" else ()
    return torch.optim.lr_scheduler.LambdaLR(opt, DECAYS[decay](warmup, max_steps, min_lr_ratio, *extra))


class Lamb(torch.optim.Optimizer):
    """LAMB (You et al. 2020, Algorithm 2): Adam's step plus decoupled weight decay, rescaled per tensor by the
    trust ratio ||w|| / ||update|| (1 when either norm is 0). Groups with adapt=False (biases, LayerNorm) take
    the plain Adam step, as ALBERT's lamb_optimizer.py excludes them from layer adaptation and decay."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0, bias_correction: bool = True, adapt: bool = True):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      bias_correction=bias_correction, adapt=adapt))

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                if group["bias_correction"]:
                    m_hat, v_hat = m / (1 - b1 ** state["step"]), v / (1 - b2 ** state["step"])
                else:
                    m_hat, v_hat = m, v
                update = m_hat / (v_hat.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update.add_(p, alpha=group["weight_decay"])
                ratio = 1.0
                if group["adapt"]:
                    w_norm, u_norm = p.norm(), update.norm()
                    ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                p.sub_(update * (group["lr"] * ratio))
        return loss


def build_lamb(module: nn.Module, max_steps: int, lr: float, betas: Sequence[float], eps: float,
               weight_decay: float, warmup_steps: int | None = None, warmup_fraction: float = 0.0,
               min_lr_ratio: float = 0.0, bias_correction: bool = True, name: str = "lamb", decay: str = "linear",
               decay_fraction: float = 0.1):
    """LAMB and the same warmup / decay schedules as build_adamw."""
    matrices, vectors = param_groups(module, weight_decay)  # the 1-D group gets neither decay nor trust ratio
    opt = Lamb([{**matrices, "adapt": True}, {**vectors, "adapt": False}], lr=lr, betas=tuple(betas), eps=eps,
               bias_correction=bias_correction)
    return opt, schedule(opt, max_steps, warmup_steps, warmup_fraction, min_lr_ratio, decay, decay_fraction)
