"""Transformer-XL (Dai et al. 2019): a causal decoder with segment-level recurrence and relative positional
attention, in plain PyTorch.

Its own class, not a flag on the encoder: it changes the call signature (a memory in, a new memory out) and the
state a run carries between steps. Layout and parameter shapes follow kimiyoung/transformer-xl's
MemTransformerLM with attn_type 0 (RelPartialLearnable), so parameter counts equal the original code's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from runner.data.lm_stream import EVAL_SLOT  # the memory slot of evaluation batches
from runner.models.flops import txl_layer_flops
from runner.models.adaptive import AdaptiveEmbedding
from runner.models.base import EncoderModule
from runner.models.config import EncoderConfig
from runner.config.errors import require
from runner.models.encoder import init_weights

Memory = list[torch.Tensor]  # per layer, (B, M, H): the hidden states entering that layer for the last M tokens



@dataclass
class TXLConfig(EncoderConfig):
    """Transformer-XL's keys on top of the encoder's (schema `base_txl`, conf/model/txl*.yaml)."""

    schema = "base_txl"

    family: str = "txl"
    # hidden states per layer carried from earlier segments with no gradient (section 3.2); 0 trains segments
    # independently (the paper's "no recurrence" ablation)
    mem_len: int = 0
    eval_tgt_len: Optional[int] = None  # segment length at evaluation; null: data.seq_len (the training length)
    eval_mem_len: Optional[int] = None  # memory at evaluation; null: mem_len (the paper evaluates with longer ones)
    clamp_len: Optional[int] = None  # at evaluation: distances beyond this share clamp_len's sinusoid; null: none
    same_length: bool = False  # at evaluation: every query attends to eval_mem_len keys (the original's flag)
    # adaptive input and softmax (Baevski & Auli 2019; Grave et al. 2017): vocabulary cluster boundaries (ids sorted
    # by frequency, as the word and char tokenizers assign them); [] is a full softmax
    cutoffs: List[int] = field(default_factory=list)
    div_val: int = 1  # cluster i's embeddings are embedding_size // div_val**i wide, then projected
    pre_lnorm: bool = False  # LayerNorm before attention and FFN (the original's --pre_lnorm); false: post-LN
    activation: str = "relu"  # the feed-forward's (the original's PositionwiseFF: ReLU)
    # every token sees its whole segment and the memory (XLNet's two-way relative attention, without the
    # permutation), for masked objectives (objective=mlm); false: the causal decoder objective=clm trains
    bidirectional: bool = False

    @property
    def causal(self) -> bool:
        """A decoder unless model.bidirectional."""
        return not self.bidirectional

    @property
    def adaptive_embeddings(self) -> str:
        """Adaptive input embeddings whenever model.cutoffs splits the vocabulary."""
        return f"model.cutoffs={list(self.cutoffs)}" if self.cutoffs else ""

    def bidirectional_why(self) -> str:
        """model.bidirectional makes the decoder attend both ways."""
        return "with model.bidirectional=true lets every token see the ones after it; set model.bidirectional=false, " \
            "or use objective=mlm"

    def causal_fix(self) -> str:
        """The causal decoder serves masked objectives with two-way attention."""
        return ("use objective=clm (the txl presets' default), or model.bidirectional=true (docs/transformer_xl.md: "
                "memory on a bidirectional encoder)")

    @property
    def max_seq_len(self) -> int | None:
        """Relative positions: no table limits the length."""
        return None

    def check(self) -> None:
        """The encoder's checks, then memory and evaluation lengths and the adaptive softmax cutoffs."""
        super().check()
        require(self.activation in ("relu", "gelu"), f"model.activation={self.activation!r} must be relu "
             "(Transformer-XL) or gelu")
        require(self.mem_len >= 0, f"model.mem_len={self.mem_len} must be >= 0 (0: no memory)")
        for key in ("eval_tgt_len", "eval_mem_len", "clamp_len"):
            low = 1 if key == "eval_tgt_len" else 0
            require(getattr(self, key) is None or getattr(self, key) >= low,
                 f"model.{key}={getattr(self, key)} must be >= {low} or null")
        cuts = list(self.cutoffs)
        require(all(a < b for a, b in zip([0, *cuts], [*cuts, self.vocab_size])),
             f"model.cutoffs={cuts} must increase strictly between 0 and model.vocab_size={self.vocab_size}; "
             "e.g. [20000, 40000, 200000] for WikiText-103's 267,735 words")
        require(self.div_val >= 1, f"model.div_val={self.div_val} must be >= 1 (1: every cluster as wide as the "
             "embeddings)")
        width = self.embedding_size or self.hidden_size
        require(self.div_val == 1 or width // self.div_val ** len(cuts) >= 1,
             f"model.div_val={self.div_val} makes the last of {len(cuts) + 1} clusters 0 wide (embedding width "
             f"{width}); lower model.div_val or use fewer model.cutoffs")
        require(self.share == "none", f"model.share={self.share} is not implemented for model.family=txl; use "
             "model.share=none")
        base = EncoderConfig()
        for key in ("position", "ffn", "norm", "bias", "local_window", "qkv"):  # the BERT-family encoder's options
            require(getattr(self, key) == getattr(base, key), f"model.{key}={getattr(self, key)!r} is an option of the "
                 f"BERT-family encoder, not implemented for model.family=txl; drop it")
        require(self.init_from is None, f"model.init_from={self.init_from!r}: transformers has no Transformer-XL class "
             "to load from (TransfoXL was removed in transformers 5); drop model.init_from")




def sinusoid(positions: torch.Tensor, width: int) -> torch.Tensor:
    """Fixed sinusoid embeddings (K, width) of (relative) positions (K,) (Vaswani et al. 2017, section 3.5)."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0.0, width, 2.0, device=positions.device) / width))  # (width/2,)
    angles = positions[:, None].float() * inv_freq[None, :]  # (K, width/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)  # (K, width)


def rel_shift(x: torch.Tensor, K: int) -> torch.Tensor:
    """Re-index scores (B, n, T, P) computed against relative distances K-1, K-2, ... (column c holds distance
    K-1-c) so that column j holds key j: out[..., i, j] = x[..., i, j + T - 1 - i], the distance (K - T + i) - j of
    query i to key j; exact for j <= P - T + i: every key a causal query sees when P = K, every key when
    P = K + T - 1 (distances down to -(T-1), the bidirectional case). The original code's pad-and-reshape trick: one
    copy, no gather. Returns (B, n, T, K)."""
    B, n, T, P = x.shape
    padded = F.pad(x, (1, 0))  # (B, n, T, P + 1)
    return padded.view(B, n, P + 1, T)[:, :, 1:].reshape(B, n, T, P)[..., :K]  # (B, n, T, K)


def causal_mask(T: int, M: int, device: torch.device, same_length_mem: int | None = None) -> torch.Tensor:
    """Boolean (T, K = M + T), True where query i may NOT attend key j: future keys (j > M + i). With
    same_length_mem = mem_len, also keys more than mem_len - 1 tokens back, so every query sees as many keys
    (the original's same_length evaluation)."""
    ones = torch.ones(T, M + T, dtype=torch.bool, device=device)
    mask = torch.triu(ones, diagonal=1 + M)  # (T, K)
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
        """x (B, T, H) attends to [mem (B, M, H); x]; pos (P, H) embeds distances K-1, K-2, ... (P = K causal,
        K + T - 1 bidirectional); mask (T, K) or (B, T, K), True where blocked."""
        B, T, H = x.shape
        n, d = self.heads, self.head_dim
        ctx = x if mem is None or mem.shape[1] == 0 else torch.cat([mem.to(x.dtype), x], dim=1)  # (B, K, H)
        K = ctx.shape[1]
        w = self.qkv.weight  # (3 n d, H): queries only for the segment, keys and values for memory too
        src_q, src_kv = (self.norm(x), self.norm(ctx)) if self.pre_norm else (x, ctx)
        q = F.linear(src_q, w[:n * d]).view(B, T, n, d)  # (B, T, n, d)
        k, val = F.linear(src_kv, w[n * d:]).view(B, K, 2, n, d).unbind(2)  # (B, K, n, d) each
        r = self.r_net(pos).view(pos.shape[0], n, d)  # (P, n, d)
        content = torch.einsum("bind,bjnd->bnij", q + u, k)  # (B, n, T, K): terms (a) + (c)
        position = rel_shift(torch.einsum("bind,pnd->bnip", q + v, r), K)  # (B, n, T, K): terms (b) + (d)
        # softmax in at least fp32 under bf16 autocast; double stays double (the exactness tests)
        scores = ((content + position) * self.scale).to(torch.promote_types(x.dtype, torch.float32))
        blocked = mask[None, None] if mask.dim() == 2 else mask[:, None]  # (1|B, 1, T, K)
        probs = self.attention_dropout(scores.masked_fill(blocked, float("-inf")).softmax(-1).to(x.dtype))
        y = torch.einsum("bnij,bjnd->bind", probs, val).reshape(B, T, n * d)  # (B, T, n d)
        y = self.dropout(self.out(y))
        return x + y if self.pre_norm else self.norm(x + y)


class FeedForward(nn.Module):
    """Position-wise feed-forward (model.activation: ReLU, the original's PositionwiseFF; XLNet's GELU) with residual
    and LayerNorm, after it (post-LN, XLNet's only form) or before it (pre_norm: TXL's --pre_lnorm)."""

    def __init__(self, c: EncoderConfig, pre_norm: bool = False):
        super().__init__()
        self.pre_norm = pre_norm
        self.intermediate = nn.Linear(c.hidden_size, c.intermediate_size)
        self.output = nn.Linear(c.intermediate_size, c.hidden_size)
        self.norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout)
        self.act = F.gelu if c.activation == "gelu" else F.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply to x (B, T, H)."""
        h = self.norm(x) if self.pre_norm else x
        y = self.dropout(self.output(self.dropout(self.act(self.intermediate(h)))))
        return x + y if self.pre_norm else self.norm(x + y)


class XLLayer(nn.Module):
    """Relative attention over memory and segment, then the feed-forward block."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.attention = RelativeAttention(c)
        self.ffn = FeedForward(c, pre_norm=c.pre_lnorm)

    def forward(self, x: torch.Tensor, mem: torch.Tensor | None, pos: torch.Tensor, u: torch.Tensor,
                v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Apply the layer to x (B, T, H)."""
        return self.ffn(self.attention(x, mem, pos, u, v, mask))


@dataclass
class SlotMemory:
    """One stream slot's memory: per layer (B, M, H), where its rows end, and document ids (document resets)."""

    layers: list[torch.Tensor]
    next_positions: torch.Tensor  # (B,) stream position right after the memory
    seps_seen: torch.Tensor  # (B,) separators read so far: the document id of the next token
    doc_ids: torch.Tensor  # (B, M) document id of each memory position
    # (B, M) True where the position is the row's own past: False for what a row that started a new stream (an
    # epoch wrap) kept from the stream it left; every key is seen when absent (checkpoints written before it)
    valid: Optional[torch.Tensor] = None


class TransformerXL(EncoderModule):
    """Adaptive embeddings, num_layers relative-attention layers with memory; returns the last hidden states
    and the new memory. Memory is detached (section 3.2: SG(h_{tau-1})): gradients never cross segments.

    forward() is pure: memory in, memory out. encode_stream() is what objectives call on the loop's contiguous-stream
    batches: it keeps one memory per stream slot (each gradient-accumulation micro-batch owns its rows; evaluation
    has its own slot) with the stream position where it ended, and a batch whose rows do not start there (an epoch
    wrap, a fresh evaluation) starts with none. The memories are this module's extra state, so a checkpoint resumes
    with the context it had."""

    families = ("txl",)
    config_class = TXLConfig
    feed = "streams"

    def __init__(self, config: TXLConfig):
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
        self.memory: dict[int, SlotMemory] = {}
        self.use_memory = True  # False: evaluate every segment alone (the comparison's "no memory" run)

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
        two_way = self.config.bidirectional
        x = self.dropout(self.embeddings(input_ids))  # (B, T, H)
        # distance of the last query to key 0 .. K-1; two-way attention also needs keys up to T-1 after a query
        distances = torch.arange(K - 1, -T if two_way else -1, -1.0, device=x.device)  # (P,)
        if clamp_len is not None and clamp_len > 0:
            distances = distances.clamp(min=-clamp_len, max=clamp_len)  # farther keys share clamp_len's sinusoid
        pos = self.dropout(sinusoid(distances, self.config.hidden_size).to(x.dtype))  # (P, H)
        if two_way:
            mask = torch.zeros(T, K, dtype=torch.bool, device=x.device)  # (T, K): the whole segment and memory
        else:
            mask = causal_mask(T, M, x.device, mem_len if same_length else None)  # (T, K)
        if block is not None:
            mask = mask[None] | block  # (B, T, K)
        states = [x]
        for i, layer in enumerate(self.layers):
            x = layer(x, memory[i] if memory else None, pos, self.r_w_bias, self.r_r_bias, mask)
            states.append(x)
        new_memory = update_memory(memory, states[:-1], mem_len)
        return self.dropout(x), new_memory

    # ---- memory across the loop's batches ------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """Memory length, clamp and same_length of the current mode: training's, or evaluation's (the paper
        evaluates with a longer memory, clamped distances and same-length attention)."""
        c = self.config
        if self.training:
            return {"mem_len": c.mem_len, "clamp_len": None, "same_length": False}
        mem = c.eval_mem_len if c.eval_mem_len is not None else c.mem_len
        return {"mem_len": mem if self.use_memory else 0, "clamp_len": c.clamp_len,
                "same_length": c.same_length and not c.bidirectional}

    def encode_stream(self, batch: dict[str, torch.Tensor], sep: int, document_reset: bool = False) -> torch.Tensor:
        """Hidden states (B, T, H) of a contiguous-stream batch (input_ids, positions, slot) with its slot's memory,
        storing the new memory. document_reset: no token attends across a separator id `sep`, in the segment or
        the memory (documents end at their separator, as WT103's <eos>)."""
        x, positions = batch["input_ids"], batch["positions"]
        B, T = x.shape
        slot = int(batch["slot"]) if "slot" in batch else (0 if self.training else EVAL_SLOT)
        prev = self.memory.get(slot) if self.use_memory else None
        settings = self.settings()
        is_sep = x.eq(sep).long()
        if prev is None:
            seen = torch.zeros(B, dtype=torch.long, device=x.device)
            keys = doc = seen[:, None] + is_sep.cumsum(1) - is_sep  # (B, T)
            visible = torch.ones(B, T, dtype=torch.bool, device=x.device)  # (B, K = T)
            block = keys[:, None, :] != doc[:, :, None] if document_reset else None  # (B, T, K)
        else:
            # Rows that do not continue their memory (an epoch wrap, a fresh evaluation) start a new stream: per row
            # and with masks, not a branch on the data, so torch.compile traces the step as one graph
            # (tests/test_compile.py). Such a row sees none of its memory keys, which is the memory-free result.
            cont = prev.next_positions.eq(positions)  # (B,)
            seen = torch.where(cont, prev.seps_seen, 0)  # (B,) the document id of the segment's first token
            doc = seen[:, None] + is_sep.cumsum(1) - is_sep  # (B, T): separators before t, the token's own excluded
            keys = torch.cat([prev.doc_ids, doc], dim=1)  # (B, K)
            mem_ok = cont[:, None] if prev.valid is None else prev.valid & cont[:, None]  # (B, M)
            visible = torch.cat([mem_ok.expand(-1, prev.doc_ids.shape[1]),
                                 torch.ones(B, T, dtype=torch.bool, device=x.device)], dim=1)  # (B, K)
            block = ~visible[:, None, :].expand(-1, T, -1)  # (B, T, K)
            if document_reset:
                block = block | (keys[:, None, :] != doc[:, :, None])
        h, layers = self(x, prev.layers if prev is not None else None, **settings, block=block)
        mem_len = settings["mem_len"]
        if mem_len > 0:
            self.memory[slot] = SlotMemory(layers, positions + T, seen + is_sep.sum(1), keys[:, -mem_len:],
                                           visible[:, -mem_len:])
        else:
            self.memory.pop(slot, None)
        return h

    def reset_memory(self) -> None:
        """Forget every slot's memory."""
        self.memory.clear()

    # ---- the EncoderModule interface ------------------------------------------------------------------------
    def encode_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """A stream batch with its slot's memory, no document resets (-1 is never a token id)."""
        return self.encode_stream(batch, sep=-1)

    def encode_rows(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
                    attention_mask: torch.Tensor) -> torch.Tensor:
        """Independent rows: no memory, no query sees a padding key."""
        block = ~attention_mask.bool()[:, None, :].expand(-1, input_ids.shape[1], -1)  # (B, T, T)
        return self(input_ids, mem_len=0, block=block)[0]

    def forward_flops(self, sequences: int, seq_len: int) -> float:
        """Forward matmul FLOPs after a memory of mem_len (runner/models/flops.py txl_layer_flops)."""
        return sequences * self.config.num_layers * txl_layer_flops(self.config, seq_len, self.config.mem_len)

    def shard_blocks(self) -> list[nn.Module]:
        """Every layer."""
        return list(self.layers)

    def rank_state(self) -> Any:
        """This rank's training memories (its rows' context), on the CPU."""
        return {slot: {k: [t.cpu() for t in v] if isinstance(v, list) else v if v is None else v.cpu()
                       for k, v in m.items()}
                for slot, m in self.get_extra_state().items()}

    def load_rank_state(self, state: Any) -> None:
        """This rank's memories; None: rows are dealt to ranks anew and start without memory."""
        if state is None:
            self.reset_memory()
        else:
            self.set_extra_state(state)

    def get_extra_state(self) -> dict[int, dict[str, Any]]:
        """The training slots' memories (evaluation's EVAL_SLOT is rebuilt by every evaluation), for checkpoints."""
        return {slot: vars(m) for slot, m in self.memory.items() if slot >= 0}

    def set_extra_state(self, state: dict[int, dict[str, Any]]) -> None:
        """Restore get_extra_state()'s memories on this module's device."""
        device = self.r_w_bias.device
        self.memory = {int(slot): SlotMemory(layers=[t.to(device) for t in m["layers"]],
                                             **{k: m[k].to(device) for k in ("next_positions", "seps_seen",
                                                                              "doc_ids", "valid")
                                                if m.get(k) is not None})
                       for slot, m in (state or {}).items()}


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
