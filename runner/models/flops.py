"""Training FLOPs estimate: 3 x forward (backward costs twice the forward), counting matmuls only
(Kaplan et al. 2020, section 2.1; the ELECTRA paper's FLOPs accounting counts the same terms)."""
from __future__ import annotations

from runner.models.config import EncoderConfig, embedding_width
from runner.models.adaptive import cluster_bounds, cluster_width


def layer_matmul_params(c: EncoderConfig) -> int:
    """Weights multiplied per token in one encoder layer: Q, K, V, output and the feed-forward (a GLU's first
    projection is twice as wide)."""
    ffn = 3 if c.gated else 2
    return 4 * c.hidden_size * c.hidden_size + ffn * c.hidden_size * c.intermediate_size


def encoder_flops(c: EncoderConfig, tokens: int, seq_len: int, positions: int | None = None) -> int:
    """Forward matmul FLOPs of the encoder over `tokens` tokens in rows of seq_len (+ the E -> H projection of
    factorized embeddings); QK^T and AV for each of `positions` queries (default: `tokens`; an unpadding encoder's
    attention alone computes its rows' padding, runner/models/unpadded.py) over the keys a query sees: all seq_len,
    or a sliding window's."""
    positions = tokens if positions is None else positions
    project = tokens * 2 * embedding_width(c) * c.hidden_size if c.embedding_size is not None else 0
    window = 2 * (c.local_window // 2) + 1 if c.local_window is not None else seq_len  # keys within local_window // 2
    keys = sum(seq_len if c.global_layer(i) else min(seq_len, window) for i in range(c.num_layers))
    return project + tokens * c.num_layers * 2 * layer_matmul_params(c) + positions * 4 * keys * c.hidden_size


def mlm_head_flops(c: EncoderConfig, predicted: int) -> int:
    """Forward matmul FLOPs of the MLM head (dense H -> E, decoder E -> V) on `predicted` positions."""
    return predicted * 2 * (c.hidden_size * embedding_width(c) + embedding_width(c) * c.vocab_size)


def pooler_flops(c: EncoderConfig, sequences: int) -> int:
    """Forward matmul FLOPs of the pooler (dense H -> H) and the two-way pair classifier on [CLS]."""
    return sequences * 2 * (c.hidden_size * c.hidden_size + 2 * c.hidden_size)


def disc_head_flops(c: EncoderConfig, tokens: int) -> int:
    """Forward matmul FLOPs of ELECTRA's discriminator head (dense H -> H, dense H -> 1) on every token."""
    return tokens * 2 * (c.hidden_size * c.hidden_size + c.hidden_size)


def train_flops(c: EncoderConfig, sequences: int, seq_len: int, predicted: int, pooled: bool = False,
                generator: EncoderConfig | None = None) -> float:
    """FLOPs of one training step over `sequences` x `seq_len` tokens with `predicted` MLM positions. With an
    ELECTRA `generator` config, the MLM head sits on the generator (whose encoder also runs over every token)
    and the discriminator's head (dense H -> H, dense H -> 1) runs over every token (Clark et al. 2020)."""
    tokens = sequences * seq_len
    pool = pooler_flops(c, sequences) if pooled else 0
    if generator is None:
        return 3.0 * (encoder_flops(c, tokens, seq_len) + mlm_head_flops(c, predicted) + pool)
    disc_head = disc_head_flops(c, tokens)
    gen = encoder_flops(generator, tokens, seq_len) + mlm_head_flops(generator, predicted)
    return 3.0 * (encoder_flops(c, tokens, seq_len) + disc_head + gen + pool)


def txl_layer_flops(c: EncoderConfig, tgt_len: int, mem_len: int) -> int:
    """Forward FLOPs of one Transformer-XL layer over one segment of tgt_len tokens after a memory of mem_len: keys
    and values are computed for memory and segment (K = mem_len + tgt_len), queries and FFN for the segment, the
    relative position keys once per segment; scores against K keys twice (content and position terms) plus the
    weighted sum of values."""
    T, K, H = tgt_len, mem_len + tgt_len, c.hidden_size
    inner = c.num_heads * (H // c.num_heads)
    return (2 * T * H * inner  # queries
            + 2 * K * H * 2 * inner  # keys and values over memory and segment
            + 2 * K * H * inner  # r_net on K relative positions
            + 2 * T * inner * H  # output projection
            + 2 * T * 2 * H * c.intermediate_size  # FFN
            + 3 * 2 * T * K * inner)  # content scores, position scores, attention-weighted values


def txl_train_flops(c: EncoderConfig, sequences: int, tgt_len: int, mem_len: int) -> float:
    """FLOPs of one Transformer-XL training step over `sequences` segments of tgt_len tokens after a memory of
    mem_len: its layers (txl_layer_flops) and the (adaptive) softmax over every token (adaptive_softmax_flops)."""
    per_layer = txl_layer_flops(c, tgt_len, mem_len)
    return 3.0 * sequences * (c.num_layers * per_layer + tgt_len * adaptive_softmax_flops(c))


def adaptive_softmax_flops(c: EncoderConfig) -> int:
    """Forward matmul FLOPs per token of the (adaptive) softmax: per cluster the H -> E_i projection and the E_i x
    cluster-size logits (the head also scores one logit per tail cluster). Every cluster is counted for every
    token, what a full distribution costs; training scores a tail only for the targets in it, so this is an upper
    bound by at most the tails' share. With no cutoffs: the one E x V decoder (and H -> E when they differ)."""

    bounds = cluster_bounds(c)
    if not c.cutoffs:
        e = embedding_width(c)
        return 2 * e * c.vocab_size + (2 * c.hidden_size * e if e != c.hidden_size else 0)
    total = 0
    for i in range(len(bounds) - 1):
        e = cluster_width(c, i) if c.div_val > 1 else embedding_width(c)
        size = bounds[i + 1] - bounds[i] + (len(bounds) - 2 if i == 0 else 0)
        projected = c.div_val > 1 or e != c.hidden_size
        total += 2 * e * size + (2 * c.hidden_size * e if projected else 0)
    return total
