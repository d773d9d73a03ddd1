"""Transformer-XL (Dai et al. 2019): a causal decoder with segment-level recurrence and relative positional
attention, in plain PyTorch.

Its own class, not a flag on the encoder: it changes the call signature (a memory in, a new memory out) and the
state a run carries between steps. Layout and parameter shapes follow kimiyoung/transformer-xl's
MemTransformerLM with attn_type 0 (RelPartialLearnable), so parameter counts equal the original code's.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from runner.models.adaptive import AdaptiveEmbedding
from runner.models.config import EncoderConfig
from runner.models.encoder import init_weights

Memory = list[torch.Tensor]  # per layer, (B, M, H): the hidden states entering that layer for the last M tokens


def sinusoid(positions: torch.Tensor, width: int) -> torch.Tensor:
    """Fixed sinusoid embeddings (K, width) of (relative) positions (K,) (Vaswani et al. 2017, section 3.5)."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0.0, width, 2.0, device=positions.device) / width))  # (width/2,)
    angles = positions[:, None].float() * inv_freq[None, :]  # (K, width/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)  # (K, width)


def rel_shift(x: torch.Tensor) -> torch.Tensor:
    """Re-index scores (B, n, T, K) computed against relative positions K-1 .. 0 (column j holds distance K-1-j)
    so that column j holds key j: out[..., i, j] = x[..., i, j + T - 1 - i], the distance (K - T + i) - j of query
    i to key j (exact for j <= K - T + i, the keys a causal query sees). The pad-and-reshape trick of the original
    code: one copy, no gather."""
    B, n, T, K = x.shape
    padded = F.pad(x, (1, 0))  # (B, n, T, K + 1)
    return padded.view(B, n, K + 1, T)[:, :, 1:].reshape(B, n, T, K)  # (B, n, T, K)


def causal_mask(T: int, M: int, device: torch.device, same_length_mem: int | None = None) -> torch.Tensor:
    """Boolean (T, K = M + T), True where query i may NOT attend key j: future keys (j > M + i). With
    same_length_mem = mem_len, also keys more than mem_len - 1 tokens back, so every query sees as many keys
    (the original's same_length evaluation)."""
    ones = torch.ones(T, M + T, dtype=torch.bool, device=device)
    mask = torch.triu(ones, diagonal=1 + M)
    if same_length_mem is not None:
        mask_len = M + T - same_length_mem
        shift = T - mask_len if mask_len > 0 else T
        mask = mask | torch.tril(ones, diagonal=-shift)
    return mask


class RelativeAttention(nn.Module):
    """Multi-head attention over [memory; segment] with the four-term relative score (section 3.3):
    A_ij = (q_i + u) . k_j + (q_i + v) . W_R R_(i-j), R fixed sinusoids, u and v learned per head (shared by all
    layers, held by the model and passed in)."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.heads, self.head_dim, self.pre_norm = c.num_heads, c.head_dim, c.pre_lnorm
        inner = c.num_heads * c.head_dim
        self.qkv = nn.Linear(c.hidden_size, 3 * inner, bias=False)  # the original's qkv_net
        self.r_net = nn.Linear(c.hidden_size, inner, bias=False)  # W_kR: relative position keys
        self.out = nn.Linear(inner, c.hidden_size, bias=False)  # o_net
        self.norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout)
        self.attention_dropout = nn.Dropout(c.attention_dropout)
        self.scale = 1.0 / math.sqrt(c.head_dim)

    def forward(self, x: torch.Tensor, mem: torch.Tensor | None, pos: torch.Tensor, u: torch.Tensor,
                v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, H) attends to [mem (B, M, H); x]; pos (K, H) embeds distances K-1 .. 0; mask (T, K) or
        (B, T, K), True where blocked."""
        B, T, H = x.shape
        n, d = self.heads, self.head_dim
        ctx = x if mem is None or mem.shape[1] == 0 else torch.cat([mem.to(x.dtype), x], dim=1)  # (B, K, H)
        K = ctx.shape[1]
        w = self.qkv.weight  # (3 n d, H): queries only for the segment, keys and values for memory too
        src_q, src_kv = (self.norm(x), self.norm(ctx)) if self.pre_norm else (x, ctx)
        q = F.linear(src_q, w[:n * d]).view(B, T, n, d)  # (B, T, n, d)
        k, val = F.linear(src_kv, w[n * d:]).view(B, K, 2, n, d).unbind(2)  # (B, K, n, d) each
        r = self.r_net(pos).view(K, n, d)  # (K, n, d)
        content = torch.einsum("bind,bjnd->bnij", q + u, k)  # (B, n, T, K): terms (a) + (c)
        position = rel_shift(torch.einsum("bind,jnd->bnij", q + v, r))  # (B, n, T, K): terms (b) + (d)
        # softmax in at least fp32 under bf16 autocast; double stays double (the exactness tests)
        scores = ((content + position) * self.scale).to(torch.promote_types(x.dtype, torch.float32))
        blocked = mask[None, None] if mask.dim() == 2 else mask[:, None]  # (1|B, 1, T, K)
        probs = self.attention_dropout(scores.masked_fill(blocked, float("-inf")).softmax(-1).to(x.dtype))
        y = torch.einsum("bnij,bjnd->bind", probs, val).reshape(B, T, n * d)  # (B, T, n d)
        y = self.dropout(self.out(y))
        return x + y if self.pre_norm else self.norm(x + y)


class FeedForward(nn.Module):
    """Position-wise ReLU feed-forward with residual and LayerNorm (the original's PositionwiseFF)."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.pre_norm = c.pre_lnorm
        self.intermediate = nn.Linear(c.hidden_size, c.intermediate_size)
        self.output = nn.Linear(c.intermediate_size, c.hidden_size)
        self.norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply to x (B, T, H)."""
        h = self.norm(x) if self.pre_norm else x
        y = self.dropout(self.output(self.dropout(F.relu(self.intermediate(h)))))
        return x + y if self.pre_norm else self.norm(x + y)


class XLLayer(nn.Module):
    """Relative attention over memory and segment, then the feed-forward block."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.attention = RelativeAttention(c)
        self.ffn = FeedForward(c)

    def forward(self, x: torch.Tensor, mem: torch.Tensor | None, pos: torch.Tensor, u: torch.Tensor,
                v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Apply the layer to x (B, T, H)."""
        return self.ffn(self.attention(x, mem, pos, u, v, mask))


class TransformerXL(nn.Module):
    """Adaptive embeddings, num_layers relative-attention layers with memory; returns the last hidden states
    and the new memory. Memory is detached (section 3.2: SG(h_{tau-1})): gradients never cross segments."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.embeddings = AdaptiveEmbedding(config)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.layers = nn.ModuleList(XLLayer(config) for _ in range(config.num_layers))
        # u and v of section 3.3, shared by every layer (the original's r_w_bias and r_r_bias, untie_r=False)
        self.r_w_bias = nn.Parameter(torch.empty(config.num_heads, config.head_dim))
        self.r_r_bias = nn.Parameter(torch.empty(config.num_heads, config.head_dim))
        self.apply(lambda m: init_weights(m, config.initializer_range))
        for p in (self.r_w_bias, self.r_r_bias):
            nn.init.normal_(p, std=config.initializer_range)
        for p in self.embeddings.projections:  # the original's proj_init_std
            nn.init.normal_(p, std=config.initializer_range / 2)

    def forward(self, input_ids: torch.Tensor, memory: Memory | None = None, *, mem_len: int | None = None,
                clamp_len: int | None = None, same_length: bool = False,
                block: torch.Tensor | None = None) -> tuple[torch.Tensor, Memory]:
        """Hidden states (B, T, H) of input_ids (B, T) after `memory` (per layer (B, M, H), or None), and the new
        memory: the last mem_len (default model.mem_len) positions of [memory; segment] per layer. block (B, T, K),
        True where a query may not see a key, adds to the causal mask (document boundaries)."""
        B, T = input_ids.shape
        M = 0 if not memory else memory[0].shape[1]
        K = M + T
        mem_len = self.config.mem_len if mem_len is None else mem_len
        x = self.dropout(self.embeddings(input_ids))  # (B, T, H)
        distances = torch.arange(K - 1, -1, -1.0, device=x.device)  # (K,): distance of key 0 .. K-1 to the last query
        if clamp_len is not None and clamp_len > 0:
            distances = distances.clamp(max=clamp_len)  # farther keys share clamp_len's sinusoid
        pos = self.dropout(sinusoid(distances, self.config.hidden_size).to(x.dtype))  # (K, H)
        mask = causal_mask(T, M, x.device, mem_len if same_length else None)  # (T, K)
        if block is not None:
            mask = mask[None] | block  # (B, T, K)
        states = [x]
        for i, layer in enumerate(self.layers):
            x = layer(x, memory[i] if memory else None, pos, self.r_w_bias, self.r_r_bias, mask)
            states.append(x)
        new_memory = update_memory(memory, states[:-1], mem_len)
        return self.dropout(x), new_memory


@torch.no_grad()
def update_memory(memory: Memory | None, states: list[torch.Tensor], mem_len: int) -> Memory:
    """Per layer, the last mem_len positions of [old memory; this segment's layer inputs], detached."""
    if mem_len <= 0:
        return []
    out = []
    for i, h in enumerate(states):
        cat = h if not memory else torch.cat([memory[i].to(h.dtype), h], dim=1)  # (B, M + T, H)
        out.append(cat[:, -mem_len:].detach())
    return out
