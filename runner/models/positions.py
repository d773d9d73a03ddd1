"""Positions without a table, and which keys a query may see: rotary embeddings (RoPE, Su et al. 2021), ALiBi's
linear distance biases (Press et al. 2022; symmetric, as MosaicBERT uses them in an encoder) and sliding-window
attention (Longformer, ModernBERT's local layers)."""
from __future__ import annotations

import math

import torch


def rope_frequencies(head_dim: int, theta: float) -> torch.Tensor:
    """Inverse frequencies (head_dim / 2,): theta ** (-2i / head_dim)."""
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))


def rope_tables(seq_len: int, head_dim: int, theta: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (T, head_dim) of positions 0 .. T-1, each frequency repeated for both halves of a head."""
    angles = torch.arange(seq_len, device=device, dtype=torch.float32)[:, None] * \
        rope_frequencies(head_dim, theta).to(device)[None, :]  # (T, head_dim / 2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, head_dim)
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, heads, T, d) rotated by position: dimension j pairs with j + d/2 (the GPT-NeoX / transformers layout),
    computed in float32 and returned in x's dtype."""
    half = x.shape[-1] // 2
    xf = x.float()
    rotated = torch.cat([-xf[..., half:], xf[..., :half]], dim=-1)
    return (xf * cos + rotated * sin).to(x.dtype)


def alibi_slopes(heads: int) -> torch.Tensor:
    """Per-head slopes (heads,): the geometric series 2^(-8/n), 2^(-16/n), ... for n a power of two; otherwise the
    closest power of two's series followed by every other slope of the next one (Press et al. 2022, section 3)."""
    def series(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(heads).is_integer():
        return torch.tensor(series(heads))
    closest = 2 ** math.floor(math.log2(heads))
    return torch.tensor(series(closest) + series(2 * closest)[0::2][:heads - closest])


def alibi_bias(heads: int, seq_len: int, device: torch.device) -> torch.Tensor:
    """Additive attention biases (heads, T, T): -slope * |i - j|."""
    pos = torch.arange(seq_len, device=device)
    distance = (pos[None, :] - pos[:, None]).abs().float()  # (T, T)
    return -alibi_slopes(heads).to(device)[:, None, None] * distance


def window_mask(seq_len: int, window: int, device: torch.device) -> torch.Tensor:
    """(T, T), True where key j is within window // 2 tokens of query i (ModernBERT's local attention: 128 tokens,
    64 on either side)."""
    pos = torch.arange(seq_len, device=device)
    return (pos[None, :] - pos[:, None]).abs() <= window // 2
