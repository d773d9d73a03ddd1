"""A post-LayerNorm transformer encoder (BERT, RoBERTa, ALBERT) in plain PyTorch.

Module names are our own; `runner.models.hf` maps them one-to-one onto transformers' names.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from runner.flops import encoder_flops
from runner.models.base import EncoderModule
from runner.models.config import SHARES, EncoderConfig, embedding_width

ACTIVATIONS = {"gelu": F.gelu, "gelu_new": lambda x: F.gelu(x, approximate="tanh"), "relu": F.relu}


class Embeddings(nn.Module):
    """Token + position + segment embeddings, LayerNorm, dropout (BERT section 3, figure 2); with
    model.embedding_size, E-wide tables projected to the hidden size (ALBERT section 3.1)."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.config = c
        width = embedding_width(c)
        self.word_embeddings = nn.Embedding(c.vocab_size, width, padding_idx=c.pad_token_id)
        # RoBERTa reserves position `pad_token_id` for padding, as transformers does.
        pos_pad = c.pad_token_id if c.pads_positions else None
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, width, padding_idx=pos_pad)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, width)
        self.norm = nn.LayerNorm(width, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout)
        # ALBERT 3.1: V x E + E x H parameters instead of V x H; transformers' ALBERT embedding_hidden_mapping_in,
        # ELECTRA's embeddings_project. Present whenever embedding_size is set, also for E == H.
        self.project = nn.Linear(width, c.hidden_size) if c.embedding_size is not None else None

    def position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Position ids: 0..T-1 for BERT; pad-aware from pad_id+1 for RoBERTa (padding keeps pad_id)."""
        c = self.config
        if c.pads_positions:
            not_pad = input_ids.ne(c.pad_token_id).long()
            return torch.cumsum(not_pad, dim=1) * not_pad + c.pad_token_id  # (B, T)
        return torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)  # (1, T)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Embed token ids (B, T) into (B, T, H)."""
        x = self.word_embeddings(input_ids) + self.position_embeddings(self.position_ids(input_ids))  # (B, T, E)
        if token_type_ids is None:
            x = x + self.token_type_embeddings.weight[0]
        else:
            x = x + self.token_type_embeddings(token_type_ids.long())
        x = self.dropout(self.norm(x))
        return x if self.project is None else self.project(x)  # (B, T, H)


class SelfAttention(nn.Module):
    """Multi-head self-attention through scaled_dot_product_attention (fused kernels where available)."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.heads, self.head_dim = c.num_heads, c.head_dim
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)
        self.out = nn.Linear(c.hidden_size, c.hidden_size)
        self.attention_dropout = c.attention_dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Attend over x (B, T, H); mask is boolean (B, 1, 1, T), True where a key may be attended."""
        B, T, _ = x.shape
        q, k, v = (proj(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)  # (B, heads, T, head_dim)
                   for proj in (self.query, self.key, self.value))
        p = self.attention_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, heads, T, head_dim)
        return self.out(y.transpose(1, 2).reshape(B, T, -1))  # (B, T, H)


class Layer(nn.Module):
    """One post-LN transformer block: x = LN(x + Attn(x)); x = LN(x + FFN(x)) (Vaswani et al.; BERT)."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.attention = SelfAttention(c)
        self.attn_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.intermediate = nn.Linear(c.hidden_size, c.intermediate_size)
        self.output = nn.Linear(c.intermediate_size, c.hidden_size)
        self.ffn_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout)
        self.act = ACTIVATIONS[c.activation]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Apply the block to x (B, T, H)."""
        x = self.attn_norm(x + self.dropout(self.attention(x, mask)))
        return self.ffn_norm(x + self.dropout(self.output(self.act(self.intermediate(x)))))


class Encoder(EncoderModule):
    """Embeddings followed by `num_layers` transformer blocks; returns the last hidden states.

    Cross-layer sharing (ALBERT section 3.1, Table 4) keeps one set of tensors, never synchronised copies:
    share=all holds a single Layer applied num_layers times; share=attention|ffn holds num_layers Layers whose
    attention (query/key/value/out) or feed-forward (intermediate/output) modules are one object. LayerNorms
    stay per layer in the partial modes, as the ALBERT code scopes them outside its attention and FFN blocks."""

    families = ("bert", "roberta", "albert", "electra")

    def __init__(self, config: EncoderConfig):
        super().__init__()
        if config.activation not in ACTIVATIONS:
            raise ValueError(f"model.activation={config.activation!r} is not one of {sorted(ACTIVATIONS)}")
        if config.share not in SHARES:
            raise ValueError(f"model.share={config.share!r} is not one of {', '.join(SHARES)}")
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Layer(config) for _ in range(1 if config.share == "all" else config.num_layers))
        first = self.layers[0]
        for layer in self.layers[1:]:
            if config.share == "attention":
                layer.attention = first.attention
            elif config.share == "ffn":
                layer.intermediate, layer.output = first.intermediate, first.output
        self.apply(lambda m: init_weights(m, config.initializer_range))

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode input_ids (B, T) into hidden states (B, T, H); attention_mask (B, T) is 1 for real tokens."""
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T): packed batches skip the mask
        x = self.embeddings(input_ids, token_type_ids)
        for i in range(self.config.num_layers):
            x = self.layers[i % len(self.layers)](x, mask)  # share=all: the one layer, every time
        return x

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
        """Forward matmul FLOPs (runner/flops.py encoder_flops)."""
        return encoder_flops(self.config, sequences * seq_len, seq_len)


def init_weights(module: nn.Module, std: float) -> None:
    """BERT's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorm, zero padding rows."""
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
        nn.init.zeros_(module.bias)
