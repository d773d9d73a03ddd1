"""Unpadding: the token-wise layers of an encoder run on its real tokens only (MosaicBERT's and ModernBERT's
unpadding).

A batch of rows (B, T), right-padded or packed (runner/data/packing.py), has N <= B * T real tokens. The encoder
gathers them once into an (N, H) tensor; embeddings, norms, the QKV, output and feed-forward projections, dropout and
the heads that score every token then compute no padding position at all. Attention alone sees the (B, T) rows: the
queries, keys and values are laid back into them (zeros at padding) for scaled_dot_product_attention, under the
padding or document mask, and its output is gathered back to the N tokens. The padding fraction of the token-wise
layers is 0 for every layout; attention's is the layout's (reported apart in summary.json)."""
from __future__ import annotations

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
