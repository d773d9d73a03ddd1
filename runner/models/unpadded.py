"""Unpadding: the token-wise layers of an encoder run on its real tokens only (MosaicBERT's and ModernBERT's
unpadding).

A batch of rows (B, T), right-padded or packed (runner/data/packing.py), has N <= B * T real tokens. The encoder
gathers them once into an (N, H) tensor; embeddings, norms, the QKV, output and feed-forward projections, dropout and
the heads that score every token then compute no padding position at all. Attention alone sees the (B, T) rows: the
queries, keys and values are laid back into them (zeros at padding) for scaled_dot_product_attention, under the
padding or document mask, and its output is gathered back to the N tokens. Where the device has a variable-length
kernel (torch.nn.attention.varlen on CUDA, in half precision), attention too runs on the N tokens, sequence by
sequence (`Varlen`). The padding fraction of the token-wise layers is 0 for every layout; attention's is the
layout's on the CPU (reported apart in summary.json)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class Unpadded:
    """The real tokens of (B, T) rows: `tokens` (N,), their flat positions, row-major."""

    def __init__(self, tokens: torch.Tensor, rows: int, width: int):
        self.tokens, self.rows, self.width = tokens, rows, width

    @classmethod
    def of(cls, attention_mask: torch.Tensor | None) -> Unpadded | None:
        """The layout of rows whose attention_mask (B, T) is 1 at real tokens; None when there is no mask, or, eager,
        when no position is padding (nothing to take out). Compiled, always a layout: the graph never branches on the
        data, and a full batch's layout takes every position, the same numbers."""
        if attention_mask is None or (not torch.compiler.is_compiling() and bool(attention_mask.all())):
            return None
        B, T = attention_mask.shape
        return cls(attention_mask.reshape(-1).nonzero().squeeze(1), B, T)

    def take(self, values: torch.Tensor) -> torch.Tensor:
        """The real tokens' entries (N, ...) of per-position values (B, T, ...); (1, T) values (shared by every row)
        are broadcast first."""
        if values.shape[0] != self.rows:
            values = values.expand(self.rows, *values.shape[1:])
        return values.reshape(self.rows * self.width, *values.shape[2:]).index_select(0, self.tokens)

    def pad(self, values: torch.Tensor) -> torch.Tensor:
        """Per-token values (N, ...) laid back into the rows (B, T, ...), zeros at padding."""
        out = values.new_zeros(self.rows * self.width, *values.shape[1:])
        return out.index_put((self.tokens,), values).view(self.rows, self.width, *values.shape[1:])


def varlen_kernel() -> Callable[..., torch.Tensor] | None:
    """torch's variable-length attention (torch.nn.attention.varlen: flash attention on CUDA), or None where this
    torch has none."""
    try:
        from torch.nn.attention.varlen import varlen_attn  # defer: absent from older torch releases
    except ImportError:
        return None
    return varlen_attn


def kernel_runs_on(x: torch.Tensor) -> bool:
    """Whether the variable-length kernel serves activations like x: on CUDA, in half precision (half weights or
    autocast)."""
    half = (torch.float16, torch.bfloat16)
    return x.is_cuda and (x.dtype in half or (torch.is_autocast_enabled("cuda") and
                                             torch.get_autocast_dtype("cuda") in half))


class Varlen:
    """Attention over each sequence of a layout as it is, with a variable-length kernel: queries, keys and values stay
    (N, heads, d), and no score is computed for padding or across sequences. `window`: (left, right) keys a query
    sees, (-1, -1) for all of its sequence (a sliding-window layer: local_window // 2 each side)."""

    def __init__(self, cu_seqlens: torch.Tensor, max_len: int, window: tuple[int, int], kernel: Callable[..., Any]):
        self.cu_seqlens, self.max_len, self.window, self.kernel = cu_seqlens, max_len, window, kernel

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention outputs (N, heads, d) of q, k, v (N, heads, d)."""
        cu = self.cu_seqlens
        return self.kernel(q, k, v, cu, cu, self.max_len, self.max_len, window_size=self.window)


def sequence_bounds(layout: Unpadded, sequence_ids: torch.Tensor | None) -> tuple[torch.Tensor, int]:
    """cu_seqlens (S + 1,) int32 and the longest length of the S sequences among the layout's real tokens, in their
    flat order: each row's real tokens (right-padded rows), or each packed example (sequence_ids, 1-based per row)."""
    row = layout.tokens // layout.width  # (N,)
    key = row if sequence_ids is None else row * (layout.width + 1) + layout.take(sequence_ids)
    starts = torch.cat([key.new_ones(1, dtype=torch.bool), key[1:].ne(key[:-1])]).nonzero().squeeze(1)  # (S,)
    bounds = torch.cat([starts, starts.new_full((1,), key.numel())])
    return bounds.to(torch.int32), int((bounds[1:] - bounds[:-1]).max())
