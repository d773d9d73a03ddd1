"""Minimal pairs from held-out sentences of the run's own corpus: the original sentence against a corrupted copy
(BLiMP's and BabyLM's format, built from the corpus so it works offline and in any language).

The pairs are words, not token ids: every model in a comparison scores the same text, whatever its tokenizer.
Corruptions keep the number of words, so a summed score is fair:
- `swap`: two adjacent interior words exchanged (word order; bag-of-words cannot tell the two apart);
- `replace`: one interior word replaced by a random word of similar corpus frequency (what fits the context;
  a frequency-matched replacement leaves a unigram model at chance).
Deleting or duplicating a word changes the length, and a summed pseudo-log-likelihood prefers the shorter
sentence whatever the model knows, so those are left out.
"""
from __future__ import annotations

import itertools
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

from runner.data.corpus import split_of
from runner.data.sources import open_documents

KINDS = ("swap", "replace")
SCAN_DOCS = 20_000  # documents read for word frequencies and held-out sentences (a large corpus: its first ones)
BAND = 0.1  # a replacement's frequency rank lies within +/- 10% of the original's (at least 20 ranks)


@dataclass(frozen=True)
class Pair:
    """A held-out sentence and its corrupted copy."""

    original: str
    corrupted: str
    kind: str


def words_of(sentence: str) -> list[str]:
    """Whitespace-separated words, punctuation attached (as written)."""
    return sentence.split()


def join_words(words: Sequence[str]) -> str:
    """Words joined by single spaces."""
    return " ".join(words)


def _plain(word: str) -> bool:
    """A word of letters only (no punctuation, digits or hyphens): safe to move or replace."""
    return word.isalpha()


class FrequencyTable:
    """Lower-cased plain words ranked by corpus count, for frequency-matched replacements."""

    def __init__(self, counts: Counter):
        self.ranked = [w for w, c in counts.most_common() if c >= 2]  # hapaxes: too noisy to match
        self.rank = {w: i for i, w in enumerate(self.ranked)}

    def similar(self, word: str, rng: random.Random) -> str | None:
        """A different word whose frequency rank is within BAND of word's, or None when word is unranked."""
        r = self.rank.get(word.lower())
        if r is None or len(self.ranked) < 2:
            return None
        half = max(20, int(r * BAND))
        lo, hi = max(0, r - half), min(len(self.ranked) - 1, r + half)
        for _ in range(8):
            cand = self.ranked[rng.randint(lo, hi)]
            if cand != word.lower():
                return cand
        return None


def _case_like(template: str, word: str) -> str:
    if template.isupper() and len(template) > 1:
        return word.upper()
    return word[:1].upper() + word[1:] if template[:1].isupper() else word


def corrupt(words: list[str], kind: str, rng: random.Random, table: FrequencyTable | None = None) -> list[str] | None:
    """A corrupted copy of words (kind: swap | replace), never equal to it; None when the sentence has no
    position the corruption can use. The first and last words stay (capitals and final punctuation would
    give the corruption away)."""
    n = len(words)
    if kind == "swap":
        spots = [i for i in range(1, n - 2) if _plain(words[i]) and _plain(words[i + 1])
                 and words[i].lower() != words[i + 1].lower()]
        if not spots:
            return None
        i = rng.choice(spots)
        out = list(words)
        out[i], out[i + 1] = out[i + 1], out[i]
        return out
    if kind == "replace":
        if table is None:
            raise ValueError("corrupt(kind='replace') needs a FrequencyTable")
        spots = [i for i in range(1, n - 1) if _plain(words[i]) and words[i].lower() in table.rank]
        rng.shuffle(spots)
        for i in spots:
            new = table.similar(words[i], rng)
            if new is not None:
                out = list(words)
                out[i] = _case_like(words[i], new)
                return out
        return None
    raise ValueError(f"unknown corruption {kind!r}: one of {', '.join(KINDS)}")


def read_held_out(data_cfg: Any, split: str, min_words: int = 6, max_words: int = 20,
                  scan_docs: int = SCAN_DOCS) -> tuple[list[str], FrequencyTable]:
    """Sentences of `split`'s documents with min_words..max_words words (corpus order), and the word frequencies
    of every document read (all splits: the counts are about the language, not the split)."""

    counts: Counter = Counter()
    sentences: list[str] = []
    docs = open_documents(data_cfg)
    limit = min(x for x in (data_cfg.get("max_docs"), scan_docs) if x is not None)
    for doc in itertools.islice(docs, limit):
        sents = doc.sentences()
        for s in sents:
            counts.update(w.lower() for w in s.split() if _plain(w))
        if split_of(doc.title, data_cfg.val_fraction, data_cfg.test_fraction) == split:
            sentences.extend(s for s in sents if min_words <= len(s.split()) <= max_words)
    return sentences, FrequencyTable(counts)


def held_out_sentences(data_cfg: Any, split: str, max_sentences: int, min_words: int = 6,
                       max_words: int = 20) -> list[str]:
    """Up to max_sentences sentences of `split`'s documents with min_words..max_words words, in corpus order."""
    return read_held_out(data_cfg, split, min_words, max_words)[0][:max_sentences]


def make_pairs(sentences: Sequence[str], table: FrequencyTable, per_kind: int, seed: int,
               kinds: Sequence[str] = KINDS) -> list[Pair]:
    """per_kind pairs of each kind from the sentences, a deterministic function of (sentences, seed): each kind
    draws its sentences in its own seeded order."""
    out: list[Pair] = []
    for k, kind in enumerate(kinds):
        rng = random.Random(f"{seed}-{kind}")
        order = list(range(len(sentences)))
        rng.shuffle(order)
        made = 0
        for i in order:
            if made == per_kind:
                break
            words = words_of(sentences[i])
            bad = corrupt(words, kind, rng, table)
            if bad is not None and bad != words:
                out.append(Pair(join_words(words), join_words(bad), kind))
                made += 1
    return out


def build_pairs(data_cfg: Any, split: str = "validation", per_kind: int = 150, seed: int = 0,
                kinds: Sequence[str] = KINDS, min_words: int = 6, max_words: int = 20) -> list[Pair]:
    """The probe pairs of a run: per_kind of each kind from held-out `split` sentences of the data config's corpus."""
    sentences, table = read_held_out(data_cfg, split, min_words, max_words)
    return make_pairs(sentences, table, per_kind, seed, kinds)

