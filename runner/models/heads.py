"""Pretraining heads shared by the objectives: the masked-LM head, BERT's pooler and NSP classifier."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from runner.data.packing import first_tokens
from runner.models.config import EncoderConfig, embedding_width
from runner.models.encoder import ACTIVATIONS, init_weights, make_norm
from runner.models.unpadded import Unpadded


class MLMHead(nn.Module):
    """Dense + activation + norm, then a decoder tied to the word embeddings (BERT appendix A.2; ModernBERT's head
    is the same with model.bias=false, the decoder keeping its bias). With
    factorized embeddings the dense maps H -> E so the decoder can reuse the E-wide table (ALBERT 3.1,
    transformers' AlbertMLMHead; ELECTRA's generator head has the same shape)."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.transform = nn.Linear(c.hidden_size, embedding_width(c), bias=c.bias)
        self.norm = make_norm(c, embedding_width(c))
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))
        self.act = ACTIVATIONS[c.activation]
        self.apply(lambda m: init_weights(m, c.initializer_range))

    def forward(self, hidden: torch.Tensor, decoder_weight: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits (..., V) for hidden states (..., H); the decoder weight is the (V, E) embedding table."""
        return F.linear(self.norm(self.act(self.transform(hidden))), decoder_weight, self.bias)


class NSPHead(nn.Module):
    """BERT's pooler (tanh dense on [CLS]) and a two-way classifier: next sentence (BERT) or sentence order
    (ALBERT section 4.1, whose pooler and sop_classifier have the same shapes)."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.pooler = nn.Linear(c.hidden_size, c.hidden_size)
        self.classifier = nn.Linear(c.hidden_size, 2)
        self.apply(lambda m: init_weights(m, c.initializer_range))

    def forward(self, hidden: torch.Tensor, starts: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, 2) from each sequence's first-token hidden state: hidden (B, T, H) of one sequence per row, or
        of packed rows with each sequence's flat start position in `starts` (B,) (runner/data/packing.py)."""
        return self.classifier(torch.tanh(self.pooler(first_tokens(hidden, starts))))


class DiscriminatorHead(nn.Module):
    """ELECTRA's per-token real/replaced classifier: dense H -> H, activation, dense H -> 1 (Clark et al. 2020,
    section 2; transformers' ElectraDiscriminatorPredictions)."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)
        self.dense_prediction = nn.Linear(c.hidden_size, 1)
        self.act = ACTIVATIONS[c.activation]
        self.apply(lambda m: init_weights(m, c.initializer_range))

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T) that each token of (B, T, H) was replaced; with an attention_mask (B, T), computed on the
        real tokens alone (runner/models/unpadded.py), 0 at padding."""
        layout = Unpadded.of(attention_mask)
        if layout is not None:
            hidden = layout.take(hidden)  # (N, H)
        logits = self.dense_prediction(self.act(self.dense(hidden))).squeeze(-1)  # (B, T) or (N,)
        return logits if layout is None else layout.pad(logits)
