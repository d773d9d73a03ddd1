"""Sentence scores for the zero-shot probes (runner/evaluation/probes/): how each family's own head rates a whole sentence.

- Masked LMs: pseudo-log-likelihood (Salazar et al. 2020, "Masked Language Model Scoring"): the sum over the
  sentence's tokens of log p(token | the sentence with that one token masked), one masked copy per token; and, given
  the tokens' words, PLL-word-l2r (Kauf & Ivanova 2023): the later pieces of the scored token's word masked too.
- ELECTRA's discriminator: the summed log-probability that every token is original.
- Causal LMs: the log-likelihood of the tokens, each given those before it.
Sentences are token ids without specials; each family wraps them as it was trained ([CLS] s [SEP], or after a
document separator). The same functions score a transformers model (runner/evaluation/probes/transformers_scorer.py)."""
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


MaskedLogits = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""(ids (R, T), attention mask (R, T), positions (R,)) -> vocabulary logits (R, V) at one position of each row."""


def head_at(encoder: nn.Module, logits_of: Callable[[torch.Tensor], torch.Tensor]) -> MaskedLogits:
    """MaskedLogits of one of our encoders and its LM head: the head on the hidden state at each row's position."""
    def masked_logits(ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        hidden = plain_hidden(encoder, ids, mask)  # (R, T, H)
        return logits_of(hidden[torch.arange(len(pos), device=pos.device), pos])  # (R, V)
    return masked_logits


def word_l2r_masked(words: Sequence[int | None], j: int) -> tuple[int, ...]:
    """The positions masked when scoring token j by PLL-word-l2r (Kauf & Ivanova 2023): j and the later tokens of
    its word (the earlier ones stay visible); a token of no word (None) is masked alone."""
    w = words[j]
    if w is None:
        return (j,)
    return (j, *(k for k in range(j + 1, len(words)) if words[k] == w))


@torch.no_grad()
def masked_lm_scores(masked_logits: MaskedLogits, sentences: Sequence[Sequence[int]], mask_id: int, pad_id: int,
                     prefix: Sequence[int], suffix: Sequence[int], device: torch.device,
                     words: Sequence[Sequence[int | None]] | None = None, rows: int = ROWS) -> dict[str, torch.Tensor]:
    """Pseudo-log-likelihoods (N,) in nats under a masked LM, each sentence read as prefix + s + suffix: "pll"
    (Salazar et al. 2020: the sum over tokens of log p(token | the sentence with that token masked)) and, when the
    tokens' word indices are given, "pll_word_l2r" (Kauf & Ivanova 2023: the later tokens of the scored token's word
    masked too, so a word split in pieces is not predicted from its own rest). A row (sentence, masked set) is
    computed once: the last piece of every word, and every one-piece word, is the same row in both."""
    key: dict[tuple[int, tuple[int, ...]], int] = {}  # (sentence, masked positions) -> row
    pll: list[tuple[int, int]] = []  # (sentence, row) for each token
    l2r: list[tuple[int, int]] = []
    for i in by_length(sentences):
        for j in range(len(sentences[i])):
            for masked, into in [((j,), pll), *([(word_l2r_masked(words[i], j), l2r)] if words is not None else [])]:
                r = key.setdefault((i, masked), len(key))
                into.append((i, r))
    plan = list(key)  # row r: (sentence, masked positions); its target is the first masked position
    scores = torch.zeros(len(plan), dtype=torch.float64)
    for lo in range(0, len(plan), rows):
        chunk = plan[lo:lo + rows]
        batch, targets = [], []
        for i, masked in chunk:
            s = list(sentences[i])
            targets.append(s[masked[0]])
            for k in masked:
                s[k] = mask_id
            batch.append([*prefix, *s, *suffix])
        ids, mask = padded(batch, pad_id, device)  # (R, T)
        pos = torch.tensor([len(prefix) + masked[0] for _, masked in chunk], device=device)
        logp = F.log_softmax(masked_logits(ids, mask, pos).float(), dim=-1)  # (R, V)
        picked = logp.gather(1, torch.tensor(targets, device=device)[:, None]).squeeze(1)  # (R,)
        scores[lo:lo + len(chunk)] = picked.double().cpu()
    out = {}
    for name, pairs in (("pll", pll), ("pll_word_l2r", l2r)):
        if name == "pll" or words is not None:
            total = torch.zeros(len(sentences), dtype=torch.float64)
            if pairs:
                total.index_add_(0, torch.tensor([i for i, _ in pairs]), scores[torch.tensor([r for _, r in pairs])])
            out[name] = total
    return out


def pseudo_log_likelihood(encoder: nn.Module, logits_of: Callable[[torch.Tensor], torch.Tensor],
                          sentences: Sequence[Sequence[int]], specials: SpecialIds,
                          words: Sequence[Sequence[int | None]] | None = None) -> dict[str, torch.Tensor]:
    """masked_lm_scores of one of our encoders with its head logits_of(hidden (M, H)) -> (M, V), each sentence read
    as [CLS] s [SEP]: {"pll"} and, with word indices, {"pll_word_l2r"}."""
    return masked_lm_scores(head_at(encoder, logits_of), sentences, specials.mask, specials.pad, [specials.cls],
                            [specials.sep], device_of(encoder), words)


@torch.no_grad()
def per_token_sum(device: torch.device, token_scores: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  sentences: Sequence[Sequence[int]], prefix: Sequence[int], suffix: Sequence[int],
                  pad: int) -> torch.Tensor:
    """The sum (N,) over each sentence's own tokens of token_scores(ids (B, T), mask (B, T)) -> (B, T), for rows
    prefix + s + suffix (one forward per sentence)."""
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


QueryLogits = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""(ids (n, n), perm_mask (n, n, n), target_mapping (n, 1, n)) -> the query stream's vocabulary logits (n, V)."""


@torch.no_grad()
def permutation_scores(query_logits: QueryLogits, sentences: Sequence[Sequence[int]], device: torch.device,
                       words: Sequence[Sequence[int | None]] | None = None, rows: int = ROWS) -> dict[str, torch.Tensor]:
    """Pseudo-log-likelihoods (N,) under a permutation LM (XLNet): row j of a sentence predicts token j by the query
    stream from every other token, token j's content hidden from every position (perm_mask blocks its column);
    "pll" sums them, and given words "pll_word_l2r" also hides the later tokens of token j's word. Sentences of one
    length share a forward pass (no padding: XLNet's rows then need no input mask), up to `rows` rows each."""
    names = ["pll", *(["pll_word_l2r"] if words is not None else [])]
    out = {name: torch.zeros(len(sentences), dtype=torch.float64) for name in names}
    plan: list[tuple[str, int, torch.Tensor]] = []  # (scorer, sentence, hidden (n, n): row j hides these tokens)
    same: list[int] = []  # sentences of one-piece words only: their pll_word_l2r rows are their pll rows
    for i, s in enumerate(sentences):
        n = len(s)
        if n == 0:
            continue
        eye = torch.eye(n, dtype=torch.bool)
        plan.append(("pll", i, eye))
        if words is not None:
            hidden = eye.clone()
            for j in range(n):
                hidden[j, list(word_l2r_masked(words[i], j))] = True
            if torch.equal(hidden, eye):
                same.append(i)
            else:
                plan.append(("pll_word_l2r", i, hidden))
    by_length: dict[int, list[tuple[str, int, torch.Tensor]]] = {}
    for item in plan:
        by_length.setdefault(len(sentences[item[1]]), []).append(item)
    for n, items in sorted(by_length.items()):
        per = max(1, rows // n)  # sentences per forward
        for lo in range(0, len(items), per):
            chunk = items[lo:lo + per]
            ids = torch.cat([torch.tensor(list(sentences[i])).expand(n, n) for _, i, _ in chunk]).to(device)  # (k n, n)
            perm = torch.cat([h[:, None, :].expand(n, n, n) for _, _, h in chunk]).float().to(device)  # (k n, n, n)
            mapping = torch.eye(n).repeat(len(chunk), 1)[:, None, :].to(device)  # (k n, 1, n): row j targets j
            logp = F.log_softmax(query_logits(ids, perm, mapping).float(), dim=-1)  # (k n, V)
            r = torch.arange(len(ids), device=device)
            picked = logp.gather(1, ids[r, r % n][:, None]).squeeze(1)  # (k n,): row j's own token j
            sums = picked.view(len(chunk), n).sum(1).double().cpu()  # (k,): each sentence's score
            for c, (name, i, _) in enumerate(chunk):
                out[name][i] = sums[c]
    for i in same:
        out["pll_word_l2r"][i] = out["pll"][i]
    return out
