"""Long-context evaluation of a Transformer-XL three ways (Dai et al. 2019, section 4.3 and Table 9):

- cached: segment by segment, each segment attending to the memory of the ones before (the paper's evaluation);
- no memory: every segment alone (what a model with a fixed context of one segment sees);
- sliding window (Al-Rfou et al. 2018): for every predicted token, recompute the whole window of the last
  `window` tokens and keep only the last position's prediction, the vanilla model's evaluation with a context
  as long as the cached one; as exact as it is slow.

`explicit_nll` is the reference the cached computation must equal: one forward over a whole row whose attention
mask lets each token see exactly the keys the memory gives it.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch
from torch import nn



def lm_metrics(nll_sum: float, count: float, char_level: bool) -> dict[str, float]:
    """lm_loss (nats per token), perplexity, and bpc (bits per character) when tokens are characters."""
    loss = nll_sum / max(count, 1.0)
    out = {"lm_loss": loss, "perplexity": math.exp(min(loss, 50.0))}
    if char_level:
        out["bpc"] = loss / math.log(2)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def cached_nll(model: nn.Module, objective: nn.Module, rows: torch.Tensor, tgt_len: int, mem_len: int,
               clamp_len: int | None = None, same_length: bool = False) -> torch.Tensor:
    """Per-token NLL (R, N) of rows (R, N + 1) read segment by segment of tgt_len with a memory of mem_len."""
    out, memory = [], None
    for s in range(0, rows.shape[1] - 1, tgt_len):
        x, y = rows[:, s:s + tgt_len + 1][:, :-1], rows[:, s + 1:s + tgt_len + 1]  # (R, T), (R, T)
        h, memory = model(x, memory if mem_len > 0 else None, mem_len=mem_len, clamp_len=clamp_len,
                          same_length=same_length)
        out.append(objective.token_nll(model, h, y))
    return torch.cat(out, dim=1)  # (R, N)


@torch.no_grad()
def explicit_nll(model: nn.Module, objective: nn.Module, rows: torch.Tensor, tgt_len: int,
                 mem_len: int) -> torch.Tensor:
    """Per-token NLL (R, N) from one forward over each whole row: the token at p, in the segment starting at s,
    sees keys s - mem_len .. p, the keys segment-level recurrence gives it at every layer."""
    x, y = rows[:, :-1], rows[:, 1:]
    N = x.shape[1]
    p = torch.arange(N, device=x.device)
    first = (p // tgt_len) * tgt_len - mem_len  # (N,) first key each query may see
    block = (p[None, :] < first[:, None]).expand(x.shape[0], N, N)  # (R, N, N); the causal part is the model's
    h, _ = model(x, None, mem_len=0, block=block)
    return objective.token_nll(model, h, y)


@torch.no_grad()
def sliding_nll(model: nn.Module, objective: nn.Module, rows: torch.Tensor, window: int, targets: torch.Tensor,
                batch_size: int = 64, clamp_len: int | None = None) -> torch.Tensor:
    """NLL of the tokens after input positions `targets` (M, 2) = (row, t), t >= window - 1, each predicted from
    its own window rows[row, t - window + 1 .. t] recomputed from scratch (no memory); returns (M,)."""
    idx = torch.arange(window, device=rows.device)
    out = []
    for i in range(0, targets.shape[0], batch_size):
        r, t = targets[i:i + batch_size].unbind(1)  # (b,), (b,)
        cols = (t - window + 1)[:, None] + idx[None, :]  # (b, W)
        x = rows[r[:, None], cols]  # (b, W)
        h, _ = model(x, None, mem_len=0, clamp_len=clamp_len)
        out.append(objective.token_nll(model, h[:, -1:], rows[r, t + 1][:, None]).squeeze(1))
    return torch.cat(out)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int = 1) -> tuple[Any, float]:
    """fn's result and its best wall time over `repeats` runs (a busy machine only ever adds time), with the
    device's queued work included."""
    best, out = float("inf"), None
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return out, best


def compare_contexts(model: nn.Module, objective: nn.Module, rows: torch.Tensor, *, tgt_len: int, mem_len: int,
                     clamp_len: int | None, same_length: bool, sliding_tokens: int) -> dict[str, Any]:
    """Perplexity and tokens/s of cached, no-memory and sliding-window evaluation of rows (R, N + 1); the sliding
    window is as long as the cached attention (mem_len + tgt_len) and predicts `sliding_tokens` of the tokens, the
    others' perplexities are also given on exactly those tokens."""
    was_training = [m.training for m in (model, objective)]
    model.eval(), objective.eval()
    device = rows.device
    char = bool(objective.char_level)
    R, N = rows.shape[0], rows.shape[1] - 1
    window = mem_len + tgt_len
    try:
        cached, t_cached = timed(lambda: cached_nll(model, objective, rows, tgt_len, mem_len, clamp_len,
                                                     same_length), device)
        alone, t_alone = timed(lambda: cached_nll(model, objective, rows, tgt_len, 0, clamp_len), device)
        out: dict[str, Any] = {"attention_length": window, "tgt_len": tgt_len, "mem_len": mem_len,
                               "tokens": R * N, "memory": _summary(cached.sum(), cached.numel(), t_cached, char),
                               "no_memory": _summary(alone.sum(), alone.numel(), t_alone, char)}
        if window <= N and sliding_tokens > 0:  # targets every window can reach, spread evenly over the rows
            t = torch.arange(window - 1, N, device=device)
            grid = torch.stack(torch.meshgrid(torch.arange(R, device=device), t, indexing="ij"), -1).reshape(-1, 2)
            pick = grid[torch.linspace(0, grid.shape[0] - 1, min(sliding_tokens, grid.shape[0]),
                                       device=device).long()]  # (M, 2)
            slide, t_slide = timed(lambda: sliding_nll(model, objective, rows, window, pick, clamp_len=clamp_len),
                                    device)
            out["sliding_window"] = _summary(slide.sum(), slide.numel(), t_slide, char)
            same = {"memory": cached[pick[:, 0], pick[:, 1]], "no_memory": alone[pick[:, 0], pick[:, 1]]}
            out["on_sliding_tokens"] = {k: lm_metrics(float(v.sum()), v.numel(), char) for k, v in same.items()}
            out["speedup_vs_sliding"] = out["memory"]["tokens_per_s"] / max(out["sliding_window"]["tokens_per_s"],
                                                                             1e-12)
        out["ppl_gain_from_memory"] = out["no_memory"]["perplexity"] / out["memory"]["perplexity"]
        return out
    finally:
        model.train(was_training[0]), objective.train(was_training[1])


def _summary(nll_sum: torch.Tensor, count: int, seconds: float, char: bool) -> dict[str, float]:
    return {**lm_metrics(float(nll_sum), count, char), "tokens_per_s": count / max(seconds, 1e-12),
            "seconds": seconds}


def context_metrics(context: dict[str, Any]) -> dict[str, float]:
    """The comparison's headline numbers as flat W&B keys under context/."""
    out = {"context/ppl_gain_from_memory": context["ppl_gain_from_memory"]}
    for mode in ("memory", "no_memory", "sliding_window"):
        for k, v in context.get(mode, {}).items():
            if k != "seconds":
                out[f"context/{mode}_{k}"] = v
    if "speedup_vs_sliding" in context:
        out["context/speedup_vs_sliding"] = context["speedup_vs_sliding"]
    return out


def context_table(context: dict[str, Any]):
    """A rich table: perplexity and tokens/s of evaluation with memory, without, and by sliding window; the
    sliding window predicts only some of the tokens, so all three are also compared on exactly those."""
    from rich.table import Table

    table = Table(title=f"Evaluation context (attention length {context['attention_length']}: memory "
                        f"{context['mem_len']} + segment {context['tgt_len']})")
    for col in ("evaluation", f"perplexity ({context['tokens']:,} tokens)", "bpc", "tokens/s",
                "perplexity on the sliding window's tokens"):
        table.add_column(col, justify="left" if col == "evaluation" else "right")
    same = context.get("on_sliding_tokens", {})
    for mode, label in (("memory", "segments + memory"), ("no_memory", "segments alone"),
                        ("sliding_window", "sliding window")):
        if mode not in context:
            continue
        m = context[mode]
        whole = mode != "sliding_window"  # the sliding window's own tokens are a subset
        on = same.get(mode) if whole else m
        table.add_row(label, f"{m['perplexity']:.3f}" if whole else "-",
                      f"{m['bpc']:.4f}" if whole and "bpc" in m else "-", f"{m['tokens_per_s']:,.0f}",
                      f"{on['perplexity']:.3f}" if on else "-")
    speed = f"; memory is {context['speedup_vs_sliding']:.1f}x faster than the sliding window" \
        if "speedup_vs_sliding" in context else ""
    table.caption = f"memory lowers perplexity {context['ppl_gain_from_memory']:.3f}x{speed}"
    return table
