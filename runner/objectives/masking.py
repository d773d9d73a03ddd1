"""Token selection and replacement for every masked-LM objective.

Three ways to choose what is predicted (`MaskingSpec.span`):
- "token": BERT (Devlin et al. 2019, section 3.1): each non-special token independently with probability `prob`.
- "whole_word": BERT's whole-word masking (google-research/bert README, "Whole Word Masking", May 2019): all
  pieces of a chosen word are selected together, words chosen in random order until the per-sequence budget
  round(prob * tokens) is met (create_pretraining_data.py; a word that would exceed it is skipped).
- "ngram": ALBERT (Lan et al. 2020, section 4.1, after SpanBERT/Joshi et al. 2019): spans of n whole words,
  n <= max_ngram with p(n) = (1/n) / sum_k (1/k), i.e. 6/11, 3/11, 2/11 for max_ngram = 3; spans are tried
  in random order, shortened when they overflow the budget, and skipped when they overlap an earlier span
  (google-research/albert create_pretraining_data.py).
Then, as in BERT, each selected token becomes [MASK] (80%), a random token (10%) or stays (10%).
Every draw comes from the torch.Generator passed in, so masks are a function of the generator's seed."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

IGNORE = -100  # label of positions that carry no loss (PyTorch's cross-entropy default ignore_index)
SPANS = ("token", "whole_word", "ngram")
_CHUNK = 4096  # rows per span-selection pass: bounds the (rows, words, max_ngram) working set
_NEVER = 1 << 30  # token length of a span that does not exist (runs past its segment): never fits a budget


@dataclass(frozen=True)
class MaskingSpec:
    """Which tokens are selected and what replaces them."""

    mask_id: int
    first_regular_id: int  # ids below this are special tokens: never selected, never drawn as replacements
    vocab_size: int  # tokenizer's vocabulary: random replacements are drawn from [first_regular_id, vocab_size)
    prob: float = 0.15
    mask_token_prob: float = 0.8
    random_token_prob: float = 0.1
    span: str = "token"  # token | whole_word | ngram (see the module docstring)
    max_ngram: int = 3  # span=ngram: longest span, in words
    max_predictions: Optional[int] = None  # at most this many selected tokens per sequence; None: no cap


def mask_tokens(input_ids: torch.Tensor, special: torch.Tensor, spec: MaskingSpec, generator: torch.Generator,
                is_continuation: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Select tokens as spec.span says; replace 80% of them by [MASK], 10% by a random token, keep 10%.
    Returns (masked inputs, labels with IGNORE off the selection), both in input_ids' dtype."""
    if spec.span == "token":
        probs = torch.full(input_ids.shape, spec.prob)
        probs.masked_fill_(special, 0.0)
        selected = torch.bernoulli(probs, generator=generator).bool()
        if spec.max_predictions is not None:
            selected = cap_selection(selected, spec.max_predictions, generator)
    elif spec.span in ("whole_word", "ngram"):
        if is_continuation is None:
            raise ValueError(f"span={spec.span!r} needs the tokenizer's word-boundary table (is_continuation)")
        max_ngram = spec.max_ngram if spec.span == "ngram" else 1
        selected, _ = select_spans(input_ids, special, is_continuation, spec.prob, max_ngram,
                                   spec.max_predictions, generator)
    else:
        raise ValueError(f"span={spec.span!r} must be one of {', '.join(SPANS)}")
    return replace_selected(input_ids, selected, spec, generator)


def replace_selected(input_ids: torch.Tensor, selected: torch.Tensor, spec: MaskingSpec,
                     generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's 80/10/10 replacement of the selected tokens; labels are their original ids, IGNORE elsewhere."""
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE))
    r = torch.rand(input_ids.shape, generator=generator)
    to_mask = selected & (r < spec.mask_token_prob)
    to_random = selected & (r >= spec.mask_token_prob) & (r < spec.mask_token_prob + spec.random_token_prob)
    randoms = torch.randint(spec.first_regular_id, spec.vocab_size, input_ids.shape, generator=generator,
                            dtype=input_ids.dtype)
    masked = torch.where(to_mask, torch.full_like(input_ids, spec.mask_id), input_ids)
    masked = torch.where(to_random, randoms, masked)
    return masked, labels


def cap_selection(selected: torch.Tensor, cap: int, generator: torch.Generator) -> torch.Tensor:
    """Keep at most `cap` selected positions per row, dropping a uniformly random excess."""
    n, length = selected.shape
    keys = torch.rand(selected.shape, generator=generator).masked_fill_(~selected, 2.0)  # unselected sort last
    order = keys.argsort(dim=1)  # (N, L): selected positions first, in random order
    keep = (torch.arange(length) < cap).expand(n, length)  # (N, L): the first `cap` of that order
    return selected & torch.zeros_like(selected).scatter_(1, order, keep)


def budgets(special: torch.Tensor, prob: float, max_predictions: Optional[int] = None) -> torch.Tensor:
    """Tokens to select per row: round(prob * non-special tokens), at least 1, at most max_predictions."""
    tokens = (~special).sum(1)  # (N,)
    budget = torch.round(tokens.double() * prob).long().clamp_(min=1)
    if max_predictions is not None:
        budget.clamp_(max=max_predictions)
    return torch.where(tokens > 0, budget, torch.zeros_like(budget))


def word_starts(input_ids: torch.Tensor, special: torch.Tensor, is_continuation: torch.Tensor) -> torch.Tensor:
    """(N, L) bool: non-special tokens that begin a word; a token right after a special one (or at position 0)
    always does, since RoBERTa's first word carries no leading-space marker."""
    cont = is_continuation.to(input_ids.device)[input_ids.long()]  # (N, L)
    after_special = torch.ones_like(special)
    after_special[:, 1:] = special[:, :-1]
    return ~special & (~cont | after_special)


def sample_ngram_lengths(available: torch.Tensor, max_ngram: int, generator: torch.Generator) -> torch.Tensor:
    """n in 1..min(available, max_ngram) per entry with p(n) proportional to 1/n (ALBERT section 4.1),
    renormalised where fewer words are available, as ALBERT's data creation does."""
    harmonic = torch.cumsum(1.0 / torch.arange(1, max_ngram + 1, dtype=torch.float64), 0)  # (G,): H_1..H_G
    top = torch.cat([torch.zeros(1, dtype=torch.float64), harmonic])[available.clamp(1, max_ngram).long()]
    u = torch.rand(available.shape, generator=generator, dtype=torch.float64) * top  # uniform on [0, H_m)
    # n = smallest k with H_k > u, so P(n = k) = (H_k - H_{k-1}) / H_m = (1/k) / H_m
    return 1 + (harmonic[:-1] <= u.unsqueeze(-1)).sum(-1)


def select_spans(input_ids: torch.Tensor, special: torch.Tensor, is_continuation: torch.Tensor, prob: float,
                 max_ngram: int, max_predictions: Optional[int],
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole-word (max_ngram=1) or n-gram span selection. Returns (selected (N, L) bool, span_words (N, L):
    at the first token of each chosen span its length in words, 0 elsewhere)."""
    selected = torch.zeros(input_ids.shape, dtype=torch.bool)
    span_words = torch.zeros(input_ids.shape, dtype=torch.long)
    for lo in range(0, input_ids.shape[0], _CHUNK):
        sl = slice(lo, lo + _CHUNK)
        selected[sl], span_words[sl] = _select_chunk(input_ids[sl], special[sl], is_continuation, prob, max_ngram,
                                                     max_predictions, generator)
    return selected, span_words


def _select_chunk(input_ids: torch.Tensor, special: torch.Tensor, is_continuation: torch.Tensor, prob: float,
                  max_ngram: int, max_predictions: Optional[int],
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """select_spans on one chunk of rows: the greedy candidate loop runs over candidate rank, batched over rows."""
    special = special.bool()
    n, g = input_ids.shape[0], max_ngram
    regular = ~special
    starts = word_starts(input_ids, special, is_continuation)  # (N, L)
    wid = (starts.long().cumsum(1) - 1).clamp_(min=0)  # (N, L): word index of each token (specials: any)
    num_words = starts.sum(1)  # (N,)
    w_max = int(num_words.max()) if n else 0
    if w_max == 0:
        return torch.zeros_like(special), torch.zeros(special.shape, dtype=torch.long)
    width = w_max + g  # word columns, padded so a span starting at any word stays in range
    word_len = torch.zeros(n, width, dtype=torch.long).scatter_add_(1, wid, regular.long())  # (N, W+G) tokens
    segment = special.long().cumsum(1)  # (N, L): specials cut the row into segments; spans never cross them
    word_seg = torch.zeros(n, width, dtype=torch.long).scatter_add_(1, wid, torch.where(starts, segment, 0))
    valid = torch.arange(width) < num_words.unsqueeze(1)  # (N, W+G): real words
    word_seg.masked_fill_(~valid, -1)
    # span_len[:, w, j]: tokens in words w..w+j, or _NEVER when that span leaves the segment or the row
    span_len = torch.empty(n, w_max, g, dtype=torch.long)  # (N, W, G)
    inside = valid[:, :w_max].clone()  # (N, W)
    total = torch.zeros(n, w_max, dtype=torch.long)
    for j in range(g):
        inside &= word_seg[:, j:j + w_max].eq(word_seg[:, :w_max])
        total += word_len[:, j:j + w_max]
        span_len[:, :, j] = torch.where(inside, total, _NEVER)
    available = span_len.ne(_NEVER).sum(2)  # (N, W): longest span from each word, in words (0: no word)
    want = sample_ngram_lengths(available, g, generator) if g > 1 else available.clamp(max=1)  # (N, W): drawn n
    keys = torch.rand(n, w_max, generator=generator).masked_fill_(~valid[:, :w_max], 2.0)
    order = keys.argsort(dim=1)  # (N, W): candidate start words in random order, padding words last
    # Everything below is indexed by candidate rank k (column k = each row's k-th candidate).
    lengths = torch.arange(1, g + 1)  # (G,)
    ranked_len = span_len.gather(1, order.unsqueeze(2).expand(-1, -1, g))  # (N, W, G)
    ranked_len.masked_fill_(lengths > want.gather(1, order).unsqueeze(2), _NEVER)  # only n and shorter are tried
    ranked_idx = order.unsqueeze(2) + torch.arange(g)  # (N, W, G): word columns of each candidate's spans

    remaining = budgets(special, prob, max_predictions)  # (N,): tokens still to select
    covered = torch.zeros(n, width, dtype=torch.bool)  # (N, W+G): words already in a chosen span
    taken = torch.zeros(n, w_max, dtype=torch.long)  # (N, W): chosen span length (words) per rank, 0: skipped
    for k in range(w_max):
        if k % 4 == 0 and not bool((remaining > 0).any()):
            break
        lens = ranked_len[:, k]  # (N, G): tokens of the 1..G-word spans of the k-th candidate
        # ALBERT: the drawn n, else the longest shorter span that still fits the budget (0: none fits)
        m = (lens <= remaining.unsqueeze(1)).sum(1)  # (N,); spans grow with n, so lengths 1..m fit
        if g > 1:  # a span overlapping an earlier one is skipped (whole words are each tried once)
            idx = ranked_idx[:, k]  # (N, G)
            was = covered.gather(1, idx)  # (N, G)
            m.masked_fill_((was & (lengths <= m.unsqueeze(1))).any(1), 0)
            covered.scatter_(1, idx, was | (lengths <= m.unsqueeze(1)))
        remaining -= lens.gather(1, (m - 1).clamp(min=0).unsqueeze(1)).squeeze(1) * (m > 0)
        taken[:, k] = m
    chosen = torch.zeros(n, w_max, dtype=torch.long).scatter_(1, order, taken)  # (N, W): back to word order
    if g == 1:
        covered[:, :w_max] = chosen > 0
    selected = covered.gather(1, wid) & regular  # (N, L)
    span_words = torch.where(starts, chosen.gather(1, wid.clamp(max=w_max - 1)), 0)  # (N, L)
    return selected, span_words
