"""Training FLOPs estimate: 3 x forward (backward costs twice the forward), counting matmuls only
(Kaplan et al. 2020, section 2.1; the ELECTRA paper's FLOPs accounting counts the same terms)."""
from __future__ import annotations

from runner.models.config import EncoderConfig


def layer_matmul_params(c: EncoderConfig) -> int:
    """Weights multiplied per token in one encoder layer: Q, K, V, output and the two FFN matrices."""
    return 4 * c.hidden_size * c.hidden_size + 2 * c.hidden_size * c.intermediate_size


def train_flops(c: EncoderConfig, sequences: int, seq_len: int, predicted: int, pooled: bool = False) -> float:
    """FLOPs of one training step over `sequences` x `seq_len` tokens with `predicted` MLM positions."""
    tokens = sequences * seq_len
    encoder = tokens * c.num_layers * (2 * layer_matmul_params(c) + 4 * seq_len * c.hidden_size)  # + QK^T, AV
    head = predicted * 2 * (c.hidden_size * c.hidden_size + c.hidden_size * c.vocab_size)
    pool = sequences * 2 * (c.hidden_size * c.hidden_size + 2 * c.hidden_size) if pooled else 0
    return 3.0 * (encoder + head + pool)
