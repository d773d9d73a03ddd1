"""Permutation language modelling (XLNet, Yang et al. 2019, sections 2.2-2.3) over contiguous streams.

Each row gets a factorization order; only its last tokens are predicted (partial prediction: about 1/K of the
tokens, K = objective.perm_k), and they are chosen in spans as XLNet's data_utils `_sample_mask` does: a span of n
words (p(n) proportional to 1/n, n <= max_gram) with about n * mask_alpha / mask_beta tokens of context around
it. As XLNet's `_local_perm`, the other tokens come first in the order (everyone sees them), each target sees the
targets before it in the order, and separators are never targets. The first reuse_len tokens form their own block,
which does not see the rest: their content states become the next step's memory, and the stream's next segment
starts right after them (runner/data/lm_stream.py stride). bi_data reads the second half of the rows with backward
relative positions. The sampling is a pure function of the batch's generator in prepare(), so resumed runs draw the
same orders; the head is the word table (tied) plus a bias, as transformers' XLNetLMHeadModel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from runner.data.tokenizer import SpecialIds
from runner.config.errors import ConfigError
from runner.models.config import EncoderConfig
from runner.models.registry import encoder_class
from runner.objectives.base import Objective, ObjectiveConfig, Stats
from runner.objectives.scoring import permutation_scores
from runner.config.errors import require

IGNORE = -100


@dataclass
class PLMConfig(ObjectiveConfig):
    """objective=plm: XLNet's permutation language modelling with two-stream attention."""

    _target_: str = "runner.objectives.plm.PermutationLM"
    name: str = "plm"
    perm_k: int = 6  # partial prediction: about 1/K of the tokens are targets (XLNet base: 6)
    num_predict: Optional[int] = None  # cap on targets per row (XLNet: 85 of 512); null: round(T / perm_k)
    mask_alpha: float = 6.0  # context tokens around a span of n: n * mask_alpha / mask_beta (XLNet's flags)
    mask_beta: float = 1.0
    max_gram: int = 5  # longest span, in words
    # the first reuse_len tokens are the context reused as memory by the next step (XLNet: 256 of 512); null:
    # the whole segment is cached and the next segment follows it
    reuse_len: Optional[int] = None
    bi_data: bool = False  # the second half of each batch reads backward relative positions (XLNet's bi_data)

    def check(self) -> None:
        """The sampling keys."""
        require(self.perm_k >= 1, f"objective.perm_k={self.perm_k} must be >= 1 (1/K of the tokens are predicted)")
        require(self.num_predict is None or self.num_predict >= 1,
                f"objective.num_predict={self.num_predict} must be >= 1 or null (round(T / perm_k))")
        require(self.mask_alpha > 0 and self.mask_beta > 0, f"objective.mask_alpha={self.mask_alpha} and "
                f"objective.mask_beta={self.mask_beta} must be > 0")
        require(self.max_gram >= 1, f"objective.max_gram={self.max_gram} must be >= 1")
        require(self.reuse_len is None or self.reuse_len >= 1,
                f"objective.reuse_len={self.reuse_len} must be >= 1 or null (cache the whole segment)")


def sample_targets(special: torch.Tensor, starts: torch.Tensor, goal: int, o: PLMConfig,
                   g: torch.Generator) -> torch.Tensor:
    """XLNet's `_sample_mask` on one row part: (L,) bool targets, about `goal` of them, in spans of whole words
    (starts (L,): True where a word starts) with context around each, then single tokens until the goal; special
    (L,) positions are never targets."""
    L = special.numel()
    mask = torch.zeros(L, dtype=torch.bool)
    if goal <= 0 or L == 0:
        return mask
    ok = (~special).tolist()
    start = (starts & ~special).tolist()
    p = torch.tensor([1.0 / n for n in range(1, o.max_gram + 1)])
    grams = (torch.multinomial(p, L + 1, replacement=True, generator=g) + 1).tolist()
    draws = torch.rand(L + 1, generator=g).tolist()
    count, cur, step = 0, 0, 0
    while cur < L and count < goal and step <= L:
        n = min(grams[step], goal - count)
        ctx = int(n * o.mask_alpha // o.mask_beta)
        left = int(draws[step] * ctx)
        step += 1
        beg = cur + left
        while beg < L and not start[beg]:
            beg += 1
        if beg >= L:
            break
        end, words = beg + 1, 1
        while end < L:  # the span ends where its (n+1)-th word starts, or at a special token
            if start[end]:
                words += 1
                if words > n:
                    break
            if not ok[end]:
                break
            end += 1
        if end >= L:
            break
        mask[beg:end] = True
        count += end - beg
        cur = end + ctx - left
    if count < goal:  # single tokens until the goal, as the original
        order = torch.randperm(L, generator=g)
        free = order[torch.tensor(ok)[order] & ~mask[order]][:goal - count]
        mask[free] = True
    elif count > goal:  # a last span crossing the goal is cut at its end
        idx = mask.nonzero().squeeze(1)
        mask[idx[goal:]] = False
    return mask


def local_perm(targets: torch.Tensor, special: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """XLNet's `_local_perm` on one row part: (L, L) bool, True where query i may not see key j, for a random
    factorization order in which the non-targets come first (everyone sees them) and each target sees the targets
    before it in the order, not itself; special tokens take part in the order but are not predicted."""
    L = targets.numel()
    rank = torch.randperm(L, generator=g)
    hidden = targets | special  # keys in the order
    rev = torch.where(hidden, rank, -1)
    self_rev = torch.where(targets, rev, rev + 1)
    return (self_rev[:, None] <= rev[None, :]) & hidden[None, :]


class PermutationLM(Objective):
    """Predict the targets of a sampled factorization order with the query stream; the word table (tied) and a
    bias score the vocabulary."""

    options_class = PLMConfig
    feeds = ("streams",)
    lm_metric = "plm_loss"

    def __init__(self, options: PLMConfig, model_config: EncoderConfig, specials: SpecialIds, token_vocab_size: int,
                 word_table: Optional[torch.Tensor] = None):
        super().__init__(options, model_config)
        self.o = options
        self.word_table = None if word_table is None else word_table.bool().cpu()  # is_continuation per token id
        self.lm_head = PLMHead(model_config.vocab_size)

    @classmethod
    def check(cls, config: EncoderConfig, options: PLMConfig) -> None:
        """An encoder with a query stream (model.family=xlnet)."""
        require(encoder_class(config.family).two_stream, f"objective={options.name} needs two-stream attention, which "
                f"model.family={config.family} lacks; use model=xlnet (or xlnet_base, xlnet_large)")
        super().check(config, options)

    # ---- sampling ------------------------------------------------------------------------------------------------
    def goal(self, T: int) -> int:
        """Targets per row: round(T / perm_k), capped at num_predict."""
        n = max(1, round(T / self.o.perm_k))
        return min(n, self.o.num_predict) if self.o.num_predict else n

    def prepare(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """perm_mask (B, T, T), target_mapping (B, P, T) and plm_labels (B, P) (IGNORE past a row's targets) of
        a stream batch, drawn from `generator` alone."""
        ids = batch["input_ids"]
        B, T = ids.shape
        R = self.o.reuse_len or 0
        if R >= T:
            raise ConfigError(f"objective.reuse_len={R} must be < data.seq_len={T} (the rest of the segment is "
                              "what the next step reuses), or null")
        special = batch.get("special_tokens_mask")
        special = torch.zeros_like(ids, dtype=torch.bool) if special is None else special.bool()
        cont = self.word_table[ids.clamp(max=len(self.word_table) - 1)] if self.word_table is not None else None
        starts = torch.ones_like(special) if cont is None else ~cont
        P = self.goal(T)
        parts = [(0, R), (R, T)] if R else [(0, T)]
        goals = [P * R // T, P - P * R // T] if R else [P]
        perm = torch.ones(B, T, T, dtype=torch.bool)
        mapping = torch.zeros(B, P, T)
        labels = torch.full((B, P), IGNORE, dtype=torch.long)
        for b in range(B):
            targets = torch.zeros(T, dtype=torch.bool)
            for (lo, hi), goal in zip(parts, goals):
                t = sample_targets(special[b, lo:hi].cpu(), starts[b, lo:hi].cpu(), goal, self.o, generator)
                targets[lo:hi] = t
                perm[b, lo:hi, lo:hi] = local_perm(t, special[b, lo:hi].cpu(), generator)
                perm[b, hi:, lo:hi] = False  # later blocks see this one whole (XLNet: the rest sees the reuse part)
            where = targets.nonzero().squeeze(1)[:P]
            mapping[b, torch.arange(where.numel()), where] = 1.0
            labels[b, :where.numel()] = ids[b, where]
        out = dict(batch)
        out.update(perm_mask=perm.to(ids.device), target_mapping=mapping.to(ids.device),
                   plm_labels=labels.to(ids.device))
        return out

    # ---- loss ------------------------------------------------------------------------------------------------
    def logits(self, encoder: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits of hidden states (..., H): the tied word table and the head's bias."""
        return self.lm_head(hidden, encoder.embeddings.word_embeddings.weight)

    @torch.no_grad()
    def sentence_scores(self, encoder: nn.Module, sentences: Sequence[Sequence[int]], specials: SpecialIds,
                        words: Sequence[Sequence[int | None]] | None = None,
                        first_only: bool = False) -> dict[str, torch.Tensor]:
        """Pseudo-log-likelihood (N,) under the permutation LM: each token predicted by the query stream from all
        the others, its own content hidden from every position (perm_mask blocks its column), summed over the
        sentence; one row per predicted token, no memory. Given words, also PLL-word-l2r: the later tokens of the
        predicted token's word hidden too (Kauf & Ivanova 2023)."""
        def query_logits(ids: torch.Tensor, perm: torch.Tensor, mapping: torch.Tensor) -> torch.Tensor:
            g = encoder.streams(ids, perm_mask=perm, target_mapping=mapping, mem_len=0)[0]  # (n, 1, H)
            return self.logits(encoder, g[:, 0])  # (n, V)
        was = encoder.training
        encoder.eval()
        try:
            return permutation_scores(query_logits, sentences, next(encoder.parameters()).device,
                                      None if first_only else words)
        finally:
            encoder.train(was)

    def normalizers(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The loss is a mean over the predicted tokens of the (accumulated) batch."""
        return {"plm": batch["plm_labels"].ne(IGNORE).sum()}

    def loss(self, encoder: nn.Module, batch: dict[str, torch.Tensor],
             norms: dict[str, Any]) -> tuple[torch.Tensor, Stats]:
        """Cross-entropy on the predicted tokens only (the query stream at each target), normalised by their
        accumulated count."""
        out = encoder.encode_stream(batch, reuse_len=self.o.reuse_len, bi_data=self.o.bi_data)  # (B, P, H)
        labels = batch["plm_labels"].reshape(-1)
        keep = labels.ne(IGNORE).nonzero().squeeze(1)
        h = out.reshape(-1, out.shape[-1]).index_select(0, keep)
        logits = self.logits(encoder, h).float()
        target = labels.index_select(0, keep)
        total = F.cross_entropy(logits, target, reduction="sum")
        stats = {"plm_loss_sum": total.detach().double(), "plm_correct": (logits.argmax(-1) == target).sum(),
                 "plm_count": torch.tensor(keep.numel()), "plm_tokens": torch.tensor(batch["input_ids"].numel())}
        return total / max(float(norms["plm"]), 1.0), stats

    @property
    def headline(self) -> tuple[str, ...]:
        """The loss and the accuracy on the predicted tokens."""
        return ("plm_loss", "plm_accuracy")

    def metrics(self, stats: Stats) -> dict[str, float]:
        """Mean loss (nats per predicted token), accuracy, perplexity and the share of tokens predicted."""
        n = max(float(stats["plm_count"]), 1.0)
        loss = float(stats["plm_loss_sum"]) / n
        return {"plm_loss": loss, "plm_accuracy": float(stats["plm_correct"]) / n,
                "perplexity": math.exp(min(loss, 50.0)),
                "predicted_fraction": float(stats["plm_count"]) / max(float(stats["plm_tokens"]), 1.0)}

    def head_flops(self, batch: dict[str, torch.Tensor]) -> float:
        """The tied decoder on the predicted tokens."""
        return 2.0 * float(batch["plm_labels"].ne(IGNORE).sum()) * self.config.hidden_size * self.config.vocab_size

class PLMHead(nn.Module):
    """The LM bias; the weight is the encoder's word table (transformers' lm_loss, tied)."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Logits (..., V)."""
        return F.linear(hidden, weight, self.bias)
