"""Sentence scores for the zero-shot probes (runner/evaluation/probes/): how each family's own head rates a whole sentence.

- Masked LMs: pseudo-log-likelihood (Salazar et al. 2020, "Masked Language Model Scoring"): the sum over the
  sentence's tokens of log p(token | the sentence with that one token masked), one masked copy per token.
- ELECTRA's discriminator: the summed log-probability that every token is original.
- Causal LMs: the log-likelihood of the tokens, each given those before it.
Sentences are token ids without specials; each family wraps them as it was trained ([CLS] s [SEP], or after a
document separator)."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from runner.data.tokenizer import SpecialIds
from runner.models.base import EncoderModule

ROWS = 256  # sequences per forward pass


def device_of(module: nn.Module) -> torch.device:
    """Where a module's parameters live."""
    return next(module.parameters()).device


def plain_hidden(encoder: EncoderModule, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden states (B, T, H) of independent right-padded rows: no memory, padding keys blocked."""
    return encoder.encode_rows(input_ids, torch.zeros_like(input_ids), attention_mask)


def padded(rows: Sequence[Sequence[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, T) and attention mask (B, T) of rows."""
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.as_tensor(list(r), dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids.to(device), mask.to(device)


def by_length(sentences: Sequence[Sequence[int]]) -> list[int]:
    """Sentence indices, shortest first (less padding per batch)."""
    return sorted(range(len(sentences)), key=lambda i: len(sentences[i]))


@torch.no_grad()
def pseudo_log_likelihood(encoder: nn.Module, logits_of: Callable[[torch.Tensor], torch.Tensor],
                          sentences: Sequence[Sequence[int]], specials: SpecialIds) -> torch.Tensor:
    """PLL (N,) in nats of each sentence under a masked LM: encoder gives hidden states of [CLS] s [SEP] with one
    token masked, logits_of(hidden (M, H)) its vocabulary logits (M, V)."""
    device = device_of(encoder)
    items = [(i, j) for i in by_length(sentences) for j in range(len(sentences[i]))]
    out = torch.zeros(len(sentences), dtype=torch.float64)
    for lo in range(0, len(items), ROWS):
        chunk = items[lo:lo + ROWS]
        rows, targets = [], []
        for i, j in chunk:
            s = list(sentences[i])
            targets.append(s[j])
            s[j] = specials.mask
            rows.append([specials.cls, *s, specials.sep])
        ids, mask = padded(rows, specials.pad, device)  # (R, T)
        hidden = plain_hidden(encoder, ids, mask)  # (R, T, H)
        pos = torch.tensor([j + 1 for _, j in chunk], device=device)  # the masked token, after [CLS]
        h = hidden[torch.arange(len(chunk), device=device), pos]  # (R, H)
        logp = F.log_softmax(logits_of(h).float(), dim=-1)  # (R, V)
        tgt = torch.tensor(targets, device=device)
        picked = logp.gather(1, tgt[:, None]).squeeze(1)  # (R,)
        out.index_add_(0, torch.tensor([i for i, _ in chunk]), picked.double().cpu())
    return out


@torch.no_grad()
def per_token_sum(encoder: nn.Module, token_scores: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  sentences: Sequence[Sequence[int]], prefix: Sequence[int], suffix: Sequence[int],
                  pad: int) -> torch.Tensor:
    """The sum (N,) over each sentence's own tokens of token_scores(ids (B, T), mask (B, T)) -> (B, T), for rows
    prefix + s + suffix (one forward per sentence)."""
    device = device_of(encoder)
    order = by_length(sentences)
    out = torch.zeros(len(sentences), dtype=torch.float64)
    for lo in range(0, len(order), ROWS):
        chunk = order[lo:lo + ROWS]
        ids, mask = padded([[*prefix, *sentences[i], *suffix] for i in chunk], pad, device)
        scores = token_scores(ids, mask).double()  # (B, T)
        own = torch.zeros_like(scores, dtype=torch.bool)
        for r, i in enumerate(chunk):
            own[r, len(prefix):len(prefix) + len(sentences[i])] = True
        out[torch.tensor(chunk)] = scores.masked_fill(~own, 0.0).sum(1).cpu()
    return out
