"""Pretraining heads shared by the objectives: the masked-LM head, BERT's pooler and NSP classifier."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from runner.models.config import EncoderConfig
from runner.models.encoder import ACTIVATIONS, init_weights


class MLMHead(nn.Module):
    """Dense + activation + LayerNorm, then a decoder tied to the word embeddings (BERT appendix A.2)."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.transform = nn.Linear(c.hidden_size, c.hidden_size)
        self.norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))
        self.act = ACTIVATIONS[c.activation]
        self.apply(lambda m: init_weights(m, c.initializer_range))

    def forward(self, hidden: torch.Tensor, decoder_weight: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits (..., V) for hidden states (..., H); the decoder weight is the embedding table."""
        return F.linear(self.norm(self.act(self.transform(hidden))), decoder_weight, self.bias)


class NSPHead(nn.Module):
    """BERT's pooler (tanh dense on [CLS]) and the two-way next-sentence classifier."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.pooler = nn.Linear(c.hidden_size, c.hidden_size)
        self.classifier = nn.Linear(c.hidden_size, 2)
        self.apply(lambda m: init_weights(m, c.initializer_range))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits (B, 2) from the first token's hidden state of (B, T, H)."""
        return self.classifier(torch.tanh(self.pooler(hidden[:, 0])))
