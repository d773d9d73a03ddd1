"""XLNet (Yang et al. 2019): Transformer-XL's relative attention and memory with two-stream self-attention, in plain
PyTorch.

The content stream h is a Transformer-XL encoder over [memory; segment]; the query stream g starts from a learned
mask embedding at the positions to predict and attends to the content stream's keys and values, never to its own
position's content. Which keys each query sees is the permutation mask (B, T, T) that objective=plm
(runner/objectives/plm.py) samples; target_mapping (B, P, T) places the P queries. Every layer has its own relative
biases (u = r_w_bias, v = r_r_bias, the segment bias r_s_bias) and two segment embeddings (same / different
segment), as the original with untie_r. Module shapes follow transformers' XLNetLMHeadModel, so parameter counts
and logits equal its (runner/hf/adapters/xlnet.py maps the weights; tests/test_xlnet.py checks both).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from runner.models.flops import txl_layer_flops
from runner.models.base import EncoderModule
from runner.models.config import EncoderConfig
from runner.config.errors import require
from runner.models.encoder import init_weights
from runner.models.txl import EVAL_SLOT, FeedForward, rel_shift, sinusoid

Memory = list[torch.Tensor]  # per layer, (B, M, H): the content stream entering that layer for the last M tokens


@dataclass
class XLNetConfig(EncoderConfig):
    """XLNet's keys on top of the encoder's (schema `base_xlnet`, conf/model/xlnet*.yaml)."""

    schema = "base_xlnet"

    family: str = "xlnet"
    vocab_size: int = 32000
    # content-stream states per layer carried from the previous segment with no gradient (Transformer-XL 3.2); 0:
    # segments are independent. Which tokens are cached is objective.reuse_len (XLNet's reuse_len)
    mem_len: int = 0
    clamp_len: Optional[int] = None  # relative distances beyond this share clamp_len's sinusoid; null: none
    eval_tgt_len: Optional[int] = None  # segment length at evaluation; null: data.seq_len (the training length)
    activation: str = "gelu"

    @property
    def max_seq_len(self) -> int | None:
        """Relative positions: no table limits the length."""
        return None

    def check(self) -> None:
        """The encoder's checks, then XLNet's: memory and clamp, and none of the BERT-family options."""
        super().check()
        require(self.mem_len >= 0, f"model.mem_len={self.mem_len} must be >= 0 (0: no memory)")
        require(self.eval_tgt_len is None or self.eval_tgt_len >= 1,
             f"model.eval_tgt_len={self.eval_tgt_len} must be >= 1 or null")
        require(self.clamp_len is None or self.clamp_len >= 0, f"model.clamp_len={self.clamp_len} must be >= 0 or null")
        require(self.activation in ("gelu", "relu"), f"model.activation={self.activation!r} must be gelu (XLNet) or relu")
        require(self.share == "none", f"model.share={self.share} is not implemented for model.family=xlnet; use "
             "model.share=none")
        require(self.embedding_size is None, f"model.embedding_size={self.embedding_size}: XLNet's embeddings are "
             "hidden_size wide; set model.embedding_size=null")
        base = EncoderConfig()
        for key in ("position", "ffn", "norm", "norm_position", "bias", "local_window", "qkv"):
            require(getattr(self, key) == getattr(base, key), f"model.{key}={getattr(self, key)!r} is an option of the "
                 f"BERT-family encoder, not implemented for model.family=xlnet; drop it")


def blocked_value(dtype: torch.dtype) -> float:
    """The score of a blocked key: the dtype's lowest value (a query that sees no key attends uniformly, as
    transformers' -1e30 does)."""
    return torch.finfo(dtype).min


class TwoStreamAttention(nn.Module):
    """Relative multi-head attention with the segment term, shared by both streams of one layer. Projections are
    (H, heads, head_dim) tensors as the original's (q, k, v, o, r); the biases belong to the layer."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        n, d, H = c.num_heads, c.head_dim, c.hidden_size
        for name in ("q", "k", "v", "o", "r"):
            setattr(self, name, nn.Parameter(torch.empty(H, n, d)))
        self.r_r_bias = nn.Parameter(torch.empty(n, d))  # v: position bias
        self.r_s_bias = nn.Parameter(torch.empty(n, d))  # segment bias
        self.r_w_bias = nn.Parameter(torch.empty(n, d))  # u: content bias
        self.seg_embed = nn.Parameter(torch.empty(2, n, d))  # [same segment, different segment]
        self.norm = nn.LayerNorm(H, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout)
        self.attention_dropout = nn.Dropout(c.attention_dropout)
        self.scale = 1.0 / math.sqrt(d)

    def core(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kr: torch.Tensor, seg: torch.Tensor | None,
             mask: torch.Tensor | None) -> torch.Tensor:
        """Attention of queries q (B, T, n, d) at segment positions 0..T-1 over keys k and values v (B, K, n, d);
        kr (B, P, n, d) position keys of distances K-1 .. -(T-1); seg (B, T, K) True where query and key lie in
        different segments; mask (B, T, K) True where blocked. Returns (B, T, n, d)."""
        K = k.shape[1]
        content = torch.einsum("bind,bjnd->bnij", q + self.r_w_bias, k)  # (B, n, T, K)
        position = rel_shift(torch.einsum("bind,bpnd->bnip", q + self.r_r_bias, kr), K)  # (B, n, T, K)
        scores = content + position
        if seg is not None:
            per_kind = torch.einsum("bind,snd->bnis", q + self.r_s_bias, self.seg_embed)  # (B, n, T, 2)
            scores = scores + torch.where(seg[:, None], per_kind[..., 1:], per_kind[..., :1])  # (B, n, T, K)
        scores = (scores * self.scale).to(torch.promote_types(q.dtype, torch.float32))
        if mask is not None:
            scores = scores.masked_fill(mask[:, None], blocked_value(scores.dtype))
        probs = self.attention_dropout(scores.softmax(-1).to(v.dtype))
        return torch.einsum("bnij,bjnd->bind", probs, v)  # (B, T, n, d)

    def post(self, x: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        """Output projection, dropout, residual and LayerNorm (post-LN) of attention output vec (B, L, n, d)."""
        return self.norm(x + self.dropout(torch.einsum("bind,hnd->bih", vec, self.o)))

    def forward(self, h: torch.Tensor, g: torch.Tensor | None, mem: torch.Tensor | None, pos: torch.Tensor,
                seg: torch.Tensor | None, mask_h: torch.Tensor | None, mask_g: torch.Tensor | None,
                target_mapping: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Content stream h (B, T, H) after memory mem (B, M, H) and query stream g (B, P, H) placed by
        target_mapping (B, P, T); pos (B, K + T - 1, H) relative encodings. Returns both streams' new states."""
        ctx = h if mem is None or mem.shape[1] == 0 else torch.cat([mem.to(h.dtype), h], dim=1)  # (B, K, H)
        k = torch.einsum("bjh,hnd->bjnd", ctx, self.k)
        v = torch.einsum("bjh,hnd->bjnd", ctx, self.v)
        kr = torch.einsum("bph,hnd->bpnd", pos.to(h.dtype), self.r)
        q = torch.einsum("bih,hnd->bind", h, self.q)
        out_h = self.post(h, self.core(q, k, v, kr, seg, mask_h))
        if g is None:
            return out_h, None
        qg = torch.einsum("bmh,hnd->bmnd", g, self.q)  # (B, P, n, d)
        qg = torch.einsum("bmnd,bml->blnd", qg, target_mapping.to(qg.dtype))  # (B, T, n, d): at their positions
        vec = self.core(qg, k, v, kr, seg, mask_g)  # (B, T, n, d)
        vec = torch.einsum("blnd,bml->bmnd", vec, target_mapping.to(vec.dtype))  # (B, P, n, d)
        return out_h, self.post(g, vec)


class XLNetLayer(nn.Module):
    """Two-stream attention, then the feed-forward block on each stream (the same weights)."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.attention = TwoStreamAttention(c)
        self.ffn = FeedForward(c)

    def forward(self, h: torch.Tensor, g: torch.Tensor | None, mem: torch.Tensor | None, pos: torch.Tensor,
                seg: torch.Tensor | None, mask_h: torch.Tensor | None, mask_g: torch.Tensor | None,
                target_mapping: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Both streams through the layer."""
        h, g = self.attention(h, g, mem, pos, seg, mask_h, mask_g, target_mapping)
        return self.ffn(h), (None if g is None else self.ffn(g))


class XLNetEmbeddings(nn.Module):
    """The word table (tied to the LM head) and the query stream's learned start, the mask embedding."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.mask_emb = nn.Parameter(torch.empty(1, 1, c.hidden_size))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Word embeddings (B, T, H)."""
        return self.word_embeddings(input_ids)


@dataclass
class SlotMemory:
    """One stream slot's memory: per layer (B, M, H), and the stream position each row's next segment starts at."""

    layers: list[torch.Tensor]
    next_positions: torch.Tensor  # (B,)


class XLNet(EncoderModule):
    """Word embeddings, num_layers two-stream layers over [memory; segment]. forward() returns the content stream
    (B, T, H), or the query stream (B, P, H) when a target_mapping is given; `streams()` also returns the new
    memory. encode_stream() keeps one memory per stream slot across the loop's batches, as Transformer-XL's."""

    families = ("xlnet",)
    config_class = XLNetConfig
    feed = "streams"
    two_stream = True

    def __init__(self, config: XLNetConfig):
        super().__init__()
        self.config = config
        self.embeddings = XLNetEmbeddings(config)
        self.layers = nn.ModuleList(XLNetLayer(config) for _ in range(config.num_layers))
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.apply(lambda m: init_weights(m, config.initializer_range))
        for p in self.parameters():  # the (H, n, d) projections, biases and mask embedding: N(0, 0.02), as XLNet
            if p.dim() != 1 and p.dim() != 2 or p is self.embeddings.mask_emb:
                nn.init.normal_(p, std=config.initializer_range)
        for layer in self.layers:
            a = layer.attention
            for p in (a.r_r_bias, a.r_s_bias, a.r_w_bias):
                nn.init.normal_(p, std=config.initializer_range)
        self.memory: dict[int, SlotMemory] = {}

    # ---- the two streams ------------------------------------------------------------------------------------
    def relative_encodings(self, B: int, T: int, K: int, bi_data: bool, device: torch.device,
                           dtype: torch.dtype) -> torch.Tensor:
        """(B, K + T - 1, H) sinusoids of distances K-1 .. -(T-1); bi_data: the second half of the rows read
        negated distances (the text backward), as XLNet's bi_data."""
        dist = torch.arange(K - 1, -T, -1.0, device=device)  # (P,)
        clamp = self.config.clamp_len
        pos = sinusoid(dist if not clamp else dist.clamp(-clamp, clamp), self.config.hidden_size)  # (P, H)
        if not bi_data:
            return pos.to(dtype)[None].expand(B, -1, -1)
        back = sinusoid(-dist if not clamp else (-dist).clamp(-clamp, clamp), self.config.hidden_size)
        half = B // 2
        return torch.cat([pos[None].expand(half, -1, -1), back[None].expand(B - half, -1, -1)]).to(dtype)

    def streams(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, *, perm_mask: torch.Tensor | None = None,
                target_mapping: torch.Tensor | None = None, memory: Memory | None = None,
                memory_blocked: torch.Tensor | None = None, reuse_len: int | None = None,
                mem_len: int | None = None, bi_data: bool = False) -> tuple[torch.Tensor, Memory]:
        """Both streams over input_ids (B, T) after `memory` (per layer (B, M, H)).

        perm_mask (B, T, T): 1/True where query i may not see key j (the factorization order); target_mapping
        (B, P, T): the P query-stream positions (one-hot rows); attention_mask (B, T): 0 at padding keys;
        token_type_ids (B, T): segments (the memory is segment 0); memory_blocked (B, M): True where a row's memory
        is not its own past. The content stream always sees its own token. Returns the query stream's output
        (B, P, H) when target_mapping is given, else the content stream's (B, T, H), and the new memory: per layer
        the last mem_len of [memory; the layer's input at the first reuse_len (null: all) positions]."""
        B, T = input_ids.shape
        M = 0 if not memory else memory[0].shape[1]
        K = M + T
        mem_len = self.config.mem_len if mem_len is None else mem_len
        device = input_ids.device
        blocked = None  # (B, T, K) for the query stream; the content stream unblocks each token's own key
        if perm_mask is not None or attention_mask is not None:
            seg_part = torch.zeros(B, T, T, dtype=torch.bool, device=device)
            if perm_mask is not None:
                seg_part = seg_part | perm_mask.bool()
            if attention_mask is not None:
                seg_part = seg_part | ~attention_mask.bool()[:, None, :]
            mem_part = torch.zeros(B, T, M, dtype=torch.bool, device=device)
            blocked = torch.cat([mem_part, seg_part], dim=2)
        if memory_blocked is not None and M > 0:
            extra = F.pad(memory_blocked.bool()[:, None, :].expand(-1, T, -1), (0, T))  # (B, T, K)
            blocked = extra if blocked is None else blocked | extra
        if blocked is not None:
            own = F.pad(torch.eye(T, dtype=torch.bool, device=device), (M, 0))  # (T, K)
            blocked_h = blocked & ~own
        else:
            blocked_h = None
        seg = None
        if token_type_ids is not None:
            keys = F.pad(token_type_ids, (M, 0))  # memory: segment 0
            seg = token_type_ids[:, :, None] != keys[:, None, :]  # (B, T, K)
        h = self.dropout(self.embeddings(input_ids))  # (B, T, H)
        g = None
        if target_mapping is not None:
            g = self.dropout(self.embeddings.mask_emb.to(h.dtype).expand(B, target_mapping.shape[1], -1))
        pos = self.dropout(self.relative_encodings(B, T, K, bi_data, device, h.dtype))
        cached = []
        for i, layer in enumerate(self.layers):
            cached.append(h)
            h, g = layer(h, g, memory[i] if memory else None, pos, seg, blocked_h, blocked, target_mapping)
        new_memory = update_memory(memory, cached, mem_len, reuse_len)
        return self.dropout(g if g is not None else h), new_memory

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, **streams: Any) -> torch.Tensor:
        """The content stream (B, T, H), or the query stream (B, P, H) with target_mapping= (see streams())."""
        return self.streams(input_ids, token_type_ids, attention_mask, **streams)[0]

    # ---- memory across the loop's batches ------------------------------------------------------------------
    def encode_stream(self, batch: dict[str, torch.Tensor], *, reuse_len: int | None = None,
                      bi_data: bool = False, stride: int | None = None) -> torch.Tensor:
        """The output of a stream batch (input_ids, positions, slot; perm_mask and target_mapping when the
        objective samples them) with its slot's memory, storing the new one. A row whose segment does not start
        where its memory ended (an epoch wrap, a fresh evaluation) sees none of its memory. The next segment of a
        row starts `stride` (default: reuse_len, else T) tokens later."""
        x, positions = batch["input_ids"], batch["positions"]
        T = x.shape[1]
        slot = int(batch["slot"]) if "slot" in batch else (0 if self.training else EVAL_SLOT)
        prev = self.memory.get(slot)
        mem_blocked = None if prev is None else ~prev.next_positions.eq(positions)[:, None].expand(
            -1, prev.layers[0].shape[1])
        out, layers = self.streams(x, batch.get("token_type_ids"), None, perm_mask=batch.get("perm_mask"),
                                   target_mapping=batch.get("target_mapping"),
                                   memory=prev.layers if prev is not None else None, memory_blocked=mem_blocked,
                                   reuse_len=reuse_len, bi_data=bi_data)
        if self.config.mem_len > 0:
            step = stride or reuse_len or T
            self.memory[slot] = SlotMemory(layers, positions + step)
        return out

    def reset_memory(self) -> None:
        """Forget every slot's memory."""
        self.memory.clear()

    # ---- the EncoderModule interface ------------------------------------------------------------------------
    def encode_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """A stream batch with its slot's memory: the content stream, or the query stream when it has targets."""
        return self.encode_stream(batch)

    def encode_rows(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
                    attention_mask: torch.Tensor) -> torch.Tensor:
        """Independent rows: the content stream, no memory, no query sees a padding key."""
        return self.streams(input_ids, token_type_ids, attention_mask, mem_len=0)[0]

    def forward_flops(self, sequences: int, seq_len: int) -> float:
        """Forward matmul FLOPs of the content stream after a memory of mem_len (runner/models/flops.py txl_layer_flops;
        the position keys cover K + T - 1 distances), plus the query stream, counted over all T positions as it
        is computed."""
        c = self.config
        content = txl_layer_flops(c, seq_len, c.mem_len) + 2 * (seq_len - 1) * c.hidden_size * c.hidden_size
        K, T, H = c.mem_len + seq_len, seq_len, c.hidden_size
        query = 2 * T * H * H * 2 + 3 * 2 * T * K * H + 2 * T * 2 * H * c.intermediate_size  # q, o, scores, FFN
        return sequences * c.num_layers * (content + query)

    def shard_blocks(self) -> list[nn.Module]:
        """Every layer."""
        return list(self.layers)

    def rank_state(self) -> Any:
        """This rank's training memories, on the CPU."""
        return {slot: {"layers": [t.cpu() for t in m.layers], "next_positions": m.next_positions.cpu()}
                for slot, m in self.memory.items() if slot >= 0}

    def load_rank_state(self, state: Any) -> None:
        """This rank's memories; None: start without memory."""
        self.reset_memory()
        device = self.embeddings.mask_emb.device
        for slot, m in (state or {}).items():
            self.memory[int(slot)] = SlotMemory([t.to(device) for t in m["layers"]], m["next_positions"].to(device))

    def get_extra_state(self) -> dict[int, dict[str, Any]]:
        """The training slots' memories, for checkpoints."""
        return self.rank_state()

    def set_extra_state(self, state: dict[int, dict[str, Any]]) -> None:
        """Restore get_extra_state()'s memories."""
        self.load_rank_state(state)


@torch.no_grad()
def update_memory(memory: Memory | None, states: list[torch.Tensor], mem_len: int,
                  reuse_len: int | None = None) -> Memory:
    """Per layer, the last mem_len positions of [old memory; the first reuse_len (None: all) of this segment's
    layer inputs], detached."""
    if mem_len <= 0:
        return []
    out = []
    for i, h in enumerate(states):
        h = h if not reuse_len else h[:, :reuse_len]
        cat = h if not memory else torch.cat([memory[i].to(h.dtype), h], dim=1)
        out.append(cat[:, -mem_len:].detach())
    return out
