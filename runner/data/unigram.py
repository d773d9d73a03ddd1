"""The unigram entropy of a split's tokens: the loss a model that ignores context reaches (it predicts every
token with the split's token frequencies). A validation loss below it is what the model learned from context."""
from __future__ import annotations

import math

import numpy as np

from runner.data.token_corpus import TokenIds, TokenizedCorpus

MAX_TOKENS = 50_000_000  # a larger corpus: its first 50M tokens (the frequencies have long settled)


def token_counts(corpus: TokenizedCorpus, num_special: int, max_tokens: int = MAX_TOKENS) -> np.ndarray:
    """Counts (V,) of the split's regular tokens (ids >= num_special): the ones an MLM or LM head predicts."""
    ids = corpus.ids
    arr = ids.array() if isinstance(ids, TokenIds) else ids.numpy()
    counts = np.bincount(np.asarray(arr[:max_tokens], dtype=np.int64))
    counts[:num_special] = 0
    return counts


def entropy(counts: np.ndarray) -> float:
    """Entropy in nats of the distribution proportional to counts."""
    c = counts[counts > 0].astype(np.float64)
    if c.size == 0:
        return 0.0
    p = c / c.sum()
    return float(-(p * np.log(p)).sum())


def unigram_entropy(corpus: TokenizedCorpus, num_special: int) -> float:
    """Entropy in nats of the split's regular-token frequencies (math.nan for an empty split)."""
    counts = token_counts(corpus, num_special)
    return entropy(counts) if counts.sum() else math.nan
