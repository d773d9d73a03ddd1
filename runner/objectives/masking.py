"""BERT's token masking (Devlin et al. 2019, section 3.1), shared by every masked-LM objective."""
from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE = -100  # label of positions that carry no loss (PyTorch's cross-entropy default ignore_index)


@dataclass(frozen=True)
class MaskingSpec:
    """Which tokens are selected and what replaces them."""

    mask_id: int
    first_regular_id: int  # ids below this are special tokens: never selected, never drawn as replacements
    vocab_size: int  # tokenizer's vocabulary: random replacements are drawn from [first_regular_id, vocab_size)
    prob: float = 0.15
    mask_token_prob: float = 0.8
    random_token_prob: float = 0.1


def mask_tokens(input_ids: torch.Tensor, special: torch.Tensor, spec: MaskingSpec,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Select each non-special token with probability spec.prob; of those, replace 80% by [MASK],
    10% by a random token, keep 10%. Returns (masked inputs, labels with IGNORE off the selection)."""
    probs = torch.full(input_ids.shape, spec.prob)
    probs.masked_fill_(special, 0.0)
    selected = torch.bernoulli(probs, generator=generator).bool()
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE))
    r = torch.rand(input_ids.shape, generator=generator)
    to_mask = selected & (r < spec.mask_token_prob)
    to_random = selected & (r >= spec.mask_token_prob) & (r < spec.mask_token_prob + spec.random_token_prob)
    randoms = torch.randint(spec.first_regular_id, spec.vocab_size, input_ids.shape, generator=generator,
                            dtype=input_ids.dtype)
    masked = torch.where(to_mask, torch.full_like(input_ids, spec.mask_id), input_ids)
    masked = torch.where(to_random, randoms, masked)
    return masked, labels
