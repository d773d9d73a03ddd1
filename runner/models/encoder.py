"""The BERT-family transformer encoder (BERT, RoBERTa, ALBERT, ELECTRA, ModernBERT) in plain PyTorch.

BERT's post-LayerNorm block with learned positions is the default; the later improvements are options of the same
modules (runner/models/config.py): rotary or ALiBi positions, gated feed-forwards, pre-norm with a final norm,
RMSNorm, no biases, sliding-window layers, a fused QKV projection. Module names are our own; each family's adapter
(runner/hf/adapters/) maps them onto transformers' names.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from runner.data.packing import real_tokens
from runner.models.flops import encoder_flops
from runner.models.base import EncoderModule
from runner.models.config import SHARES, EncoderConfig, embedding_width
from runner.models.positions import alibi_bias, rope_tables, rotate, window_mask
from runner.models.unpadded import Unpadded, Varlen, kernel_runs_on, sequence_bounds, varlen_kernel

ACTIVATIONS = {"gelu": F.gelu, "gelu_new": lambda x: F.gelu(x, approximate="tanh"), "relu": F.relu, "silu": F.silu}


def make_norm(c: EncoderConfig, width: int) -> nn.Module:
    """model.norm over `width` features: LayerNorm (with a bias when model.bias) or RMSNorm (a scale only)."""
    if c.norm == "rmsnorm":
        return nn.RMSNorm(width, eps=c.layer_norm_eps)
    return nn.LayerNorm(width, eps=c.layer_norm_eps, bias=c.bias)


class Embeddings(nn.Module):
    """Token (+ learned position) (+ segment) embeddings, a norm, dropout (BERT section 3, figure 2); with
    model.embedding_size, E-wide tables projected to the hidden size (ALBERT section 3.1). Rotary and ALiBi
    positions live in the attention; type_vocab_size 0 has no segment table (ModernBERT)."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.config = c
        width = embedding_width(c)
        self.word_embeddings = nn.Embedding(c.vocab_size, width, padding_idx=c.pad_token_id)
        # RoBERTa reserves position `pad_token_id` for padding, as transformers does.
        pos_pad = c.pad_token_id if c.pads_positions else None
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, width, padding_idx=pos_pad) \
            if c.position == "learned" else None
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, width) if c.type_vocab_size > 0 else None
        self.norm = make_norm(c, width) if c.embedding_norm else None
        self.dropout = nn.Dropout(c.hidden_dropout)
        # ALBERT 3.1: V x E + E x H parameters instead of V x H; transformers' ALBERT embedding_hidden_mapping_in,
        # ELECTRA's embeddings_project. Present whenever embedding_size is set, also for E == H.
        self.project = nn.Linear(width, c.hidden_size, bias=c.bias) if c.embedding_size is not None else None

    def position_ids(self, input_ids: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Position ids: 0..T-1 for BERT; pad-aware from pad_id+1 for RoBERTa (padding keeps pad_id). `positions`
        (B, T): each token's position within its sequence (packed rows, runner/data/packing.py)."""
        c = self.config
        if positions is not None:
            if not c.pads_positions:
                return positions
            return torch.where(input_ids.ne(c.pad_token_id), positions + c.pad_token_id + 1, c.pad_token_id)
        if c.pads_positions:
            not_pad = input_ids.ne(c.pad_token_id).long()
            return torch.cumsum(not_pad, dim=1) * not_pad + c.pad_token_id  # (B, T)
        return torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)  # (1, T)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                positions: torch.Tensor | None = None, layout: Unpadded | None = None) -> torch.Tensor:
        """Embed token ids (B, T) into (B, T, H); with a `layout`, only its real tokens: (N, H)."""
        position_ids = self.position_ids(input_ids, positions) if self.position_embeddings is not None else None
        if layout is not None:  # the ids of the real tokens only: every table lookup and the norm run on N rows
            input_ids = layout.take(input_ids)
            token_type_ids = None if token_type_ids is None else layout.take(token_type_ids)
            position_ids = None if position_ids is None else layout.take(position_ids)
        x = self.word_embeddings(input_ids)  # (B, T, E) or (N, E)
        if position_ids is not None:
            x = x + self.position_embeddings(position_ids)
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                x = x + self.token_type_embeddings.weight[0]
            else:
                x = x + self.token_type_embeddings(token_type_ids.long())
        if self.norm is not None:
            x = self.norm(x)
        x = self.dropout(x)
        return x if self.project is None else self.project(x)  # (B, T, H) or (N, H)


class SelfAttention(nn.Module):
    """Multi-head self-attention through scaled_dot_product_attention (fused kernels where available); queries and
    keys rotated when model.position=rope."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.heads, self.head_dim, self.fused = c.num_heads, c.head_dim, c.qkv == "fused"
        if self.fused:  # one (3H, H) matrix: queries, keys, values in that order (transformers' Wqkv)
            self.qkv = nn.Linear(c.hidden_size, 3 * c.hidden_size, bias=c.bias)
        else:
            self.query = nn.Linear(c.hidden_size, c.hidden_size, bias=c.bias)
            self.key = nn.Linear(c.hidden_size, c.hidden_size, bias=c.bias)
            self.value = nn.Linear(c.hidden_size, c.hidden_size, bias=c.bias)
        self.out = nn.Linear(c.hidden_size, c.hidden_size, bias=c.bias)
        self.attention_dropout = c.attention_dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None, layout: Unpadded | None = None) -> torch.Tensor:
        """Attend over x (B, T, H), or over the real tokens x (N, H) of a `layout` (the projections and rotations run on
        them; only the scores and the weighted sum see the rows' padding). mask is boolean (True: may attend) or
        additive, broadcastable to (B, heads, T, T), or with a layout a `Varlen` (runner/models/unpadded.py); rope: cos
        and sin (T, head_dim), (B, 1, T, head_dim) per token of packed rows, or (N, 1, head_dim) per real token of a
        layout."""
        H = x.shape[-1]
        if self.fused:
            q, k, v = self.qkv(x).split(H, dim=-1)
        else:
            q, k, v = self.query(x), self.key(x), self.value(x)
        if layout is not None:
            if rope is not None:  # per real token: (N, heads, d) by (N, 1, d)
                q, k = (rotate(t.view(-1, self.heads, self.head_dim), *rope).reshape(-1, H) for t in (q, k))
            if isinstance(mask, Varlen):  # each sequence as it is: no padding, no other sequence's keys
                y = mask.attend(*(t.view(-1, self.heads, self.head_dim) for t in (q, k, v)))  # (N, heads, d)
                return self.out(y.reshape(-1, H))
            q, k, v = (layout.pad(t) for t in (q, k, v))  # (B, T, H), zeros at padding
        B, T = q.shape[:2]
        q, k, v = (t.view(B, T, self.heads, self.head_dim).transpose(1, 2) for t in (q, k, v))  # (B, heads, T, d)
        if rope is not None and layout is None:
            q, k = rotate(q, *rope), rotate(k, *rope)
        p = self.attention_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, heads, T, head_dim)
        y = y.transpose(1, 2).reshape(B, T, -1)  # (B, T, H)
        return self.out(y if layout is None else layout.take(y))  # (B, T, H) or (N, H)


class Layer(nn.Module):
    """One transformer block. Post-norm (BERT): x = N(x + Attn(x)); x = N(x + FFN(x)). Pre-norm:
    x = x + Attn(N(x)); x = x + FFN(N(x)). FFN: dense, activation, dense; or a GLU, act(a) * b of one 2I-wide
    projection."""

    def __init__(self, c: EncoderConfig, first: bool = False):
        super().__init__()
        self.pre = c.norm_position == "pre"
        self.attention = SelfAttention(c)
        # pre-norm after normalised embeddings (not projected after the norm): the first block reads them as they are
        # (ModernBERT's layer 0)
        skip = self.pre and first and c.embedding_norm and c.embedding_size is None and c.share == "none"
        self.attn_norm = None if skip else make_norm(c, c.hidden_size)
        width = 2 * c.intermediate_size if c.gated else c.intermediate_size
        self.intermediate = nn.Linear(c.hidden_size, width, bias=c.bias)
        self.output = nn.Linear(c.intermediate_size, c.hidden_size, bias=c.bias)
        self.ffn_norm = make_norm(c, c.hidden_size)
        self.dropout = nn.Dropout(c.hidden_dropout)
        self.gated = c.gated
        self.act = F.silu if c.ffn == "swiglu" else ACTIVATIONS[c.activation]

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        """The feed-forward of x (..., H), token by token."""
        h = self.intermediate(x)
        if self.gated:
            a, b = h.chunk(2, dim=-1)
            return self.output(self.act(a) * b)
        return self.output(self.act(h))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None, layout: Unpadded | None = None) -> torch.Tensor:
        """Apply the block to x (B, T, H), or to the real tokens x (N, H) of a `layout`."""
        if self.pre:
            h = x if self.attn_norm is None else self.attn_norm(x)
            x = x + self.dropout(self.attention(h, mask, rope, layout))
            return x + self.dropout(self.ffn(self.ffn_norm(x)))
        x = self.attn_norm(x + self.dropout(self.attention(x, mask, rope, layout)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


class Encoder(EncoderModule):
    """Embeddings followed by `num_layers` transformer blocks (and, with pre-norm, a final norm); returns the last
    hidden states.

    Cross-layer sharing (ALBERT section 3.1, Table 4) keeps one set of tensors, never synchronised copies:
    share=all holds a single Layer applied num_layers times; share=attention|ffn holds num_layers Layers whose
    attention (query/key/value/out) or feed-forward (intermediate/output) modules are one object. LayerNorms
    stay per layer in the partial modes, as the ALBERT code scopes them outside its attention and FFN blocks."""

    families = ("bert", "roberta", "albert", "electra", "modernbert", "distilbert")
    packs = True
    unpads = True

    def __init__(self, config: EncoderConfig):
        super().__init__()
        if config.activation not in ACTIVATIONS:
            raise ValueError(f"model.activation={config.activation!r} is not one of {sorted(ACTIVATIONS)}")
        if config.share not in SHARES:
            raise ValueError(f"model.share={config.share!r} is not one of {', '.join(SHARES)}")
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Layer(config, first=i == 0)
                                    for i in range(1 if config.share == "all" else config.num_layers))
        first = self.layers[0]
        for layer in self.layers[1:]:
            if config.share == "attention":
                layer.attention = first.attention
            elif config.share == "ffn":
                layer.intermediate, layer.output = first.intermediate, first.output
        self.final_norm = make_norm(config, config.hidden_size) if config.norm_position == "pre" else None
        self.apply(lambda m: init_weights(m, config.initializer_range))

    def masks(self, attention_mask: torch.Tensor | None, T: int, device: torch.device,
              sequence_ids: torch.Tensor | None = None) -> dict[bool, torch.Tensor | None]:
        """The attention mask of global (True) and sliding-window (False) layers: padding keys blocked (packed rows:
        keys of other sequences too), the window, and ALiBi's biases (then additive, -inf where blocked). None:
        attend everywhere."""
        c = self.config
        pad = None
        if sequence_ids is not None:  # packed rows: a token sees its own sequence (padding sees padding)
            pad = sequence_ids[:, None, :, None].eq(sequence_ids[:, None, None, :])  # (B, 1, T, T)
        # eager: a batch without padding skips the mask (SDPA's fastest kernels); compiled: always the mask, so the
        # graph never branches on the data (the mask of a full batch lets every key through: the same numbers)
        elif attention_mask is not None and (torch.compiler.is_compiling() or not bool(attention_mask.all())):
            pad = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
        bias = alibi_bias(c.num_heads, T, device)[None] if c.position == "alibi" else None  # (1, heads, T, T)
        out: dict[bool, torch.Tensor | None] = {}
        for is_global in {c.global_layer(i) for i in range(c.num_layers)}:
            allowed = pad
            if not is_global:
                window = window_mask(T, c.local_window, device)[None, None]  # (1, 1, T, T)
                # a padding query far from every real token would see no key at all (NaN through the softmax, then
                # into every row): it may see itself, which no real token's attention is changed by
                allowed = window if allowed is None else \
                    (allowed & window) | torch.eye(T, dtype=torch.bool, device=device)
            if bias is not None:
                allowed = bias if allowed is None else bias.masked_fill(~allowed, float("-inf"))
            out[is_global] = allowed
        return out

    def varlen_masks(self, layout: Unpadded | None, sequence_ids: torch.Tensor | None,
                     x: torch.Tensor) -> dict[bool, Varlen] | None:
        """Global (True) and sliding-window (False) layers' variable-length attention over the layout's sequences,
        where the device has the kernel: CUDA, half precision (autocast or half weights), no ALiBi bias, no attention
        dropout while training (the kernel has neither). None: the padded rows and their mask instead."""
        c, kernel = self.config, varlen_kernel()
        if layout is None or kernel is None or not kernel_runs_on(x) or c.position == "alibi" or \
                (self.training and c.attention_dropout > 0):
            return None
        cu_seqlens, longest = sequence_bounds(layout, sequence_ids)
        side = c.local_window // 2 if c.local_window is not None else -1
        return {g: Varlen(cu_seqlens, longest, (-1, -1) if g else (side, side), kernel)
                for g in {c.global_layer(i) for i in range(c.num_layers)}}

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                sequence_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Encode input_ids (B, T) into hidden states (B, T, H), zeros at padding; attention_mask (B, T) is 1 for real
        tokens, and every token-wise layer runs on those alone (runner/models/unpadded.py). Packed rows
        (runner/data/packing.py) also give each token's position within its sequence and its sequence's index in the
        row (0: padding); attention then stays within each sequence."""
        c, T = self.config, input_ids.shape[1]
        layout = Unpadded.of(attention_mask)
        x = self.embeddings(input_ids, token_type_ids, position_ids, layout)  # (N, H), or (B, T, H) without padding
        masks = self.varlen_masks(layout, sequence_ids, x) or self.masks(attention_mask, T, x.device, sequence_ids)
        ropes: dict[bool, tuple[torch.Tensor, torch.Tensor]] = {}
        if c.position == "rope":  # one table per theta the layers use
            local = c.local_rope_theta if c.local_rope_theta is not None else c.rope_theta
            tables = {theta: rope_tables(T, c.head_dim, theta, x.device) for theta in {c.rope_theta, local}}
            if layout is not None:  # each real token's angle at its position (within its sequence, packed)
                at = layout.take(position_ids if position_ids is not None else
                                 torch.arange(T, device=x.device)[None])  # (N,)
                tables = {k: (cos[at][:, None], sin[at][:, None]) for k, (cos, sin) in tables.items()}  # (N, 1, d)
            elif position_ids is not None:  # packed rows without padding
                tables = {k: (cos[position_ids][:, None], sin[position_ids][:, None])
                          for k, (cos, sin) in tables.items()}  # (B, 1, T, head_dim)
            ropes = {True: tables[c.rope_theta], False: tables[local]}
        for i in range(c.num_layers):
            g = c.global_layer(i)  # share=all: the one layer, every time
            x = self.layers[i % len(self.layers)](x, masks[g], ropes.get(g), layout)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x if layout is None else layout.pad(x)

    def shard_blocks(self) -> list[nn.Module]:
        """Every layer, unless layers share modules (ALBERT's share=all|attention|ffn: all stay with the root)."""
        return list(self.layers) if self.config.share == "none" else []

    def encode_rows(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
                    attention_mask: torch.Tensor) -> torch.Tensor:
        """Hidden states of right-padded rows; a single segment embedding (RoBERTa) ignores token types."""
        if token_type_ids is not None and self.config.type_vocab_size < 2:
            token_type_ids = None
        return self(input_ids, token_type_ids, attention_mask)

    def forward_flops(self, sequences: int, seq_len: int) -> float:
        """Forward matmul FLOPs (runner/models/flops.py encoder_flops)."""
        return encoder_flops(self.config, sequences * seq_len, seq_len)

    def batch_flops(self, batch: dict[str, torch.Tensor]) -> float:
        """The token-wise layers' FLOPs on the batch's real tokens, attention's on every position of its rows."""
        B, T = batch["input_ids"].shape
        return encoder_flops(self.config, real_tokens(batch), T, B * T)


def init_weights(module: nn.Module, std: float) -> None:
    """BERT's initialisation: N(0, 0.02) weights, zero biases, unit norms, zero padding rows."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=std)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        if module.bias is not None:  # model.bias=false: a scale only
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.RMSNorm):
        nn.init.ones_(module.weight)
