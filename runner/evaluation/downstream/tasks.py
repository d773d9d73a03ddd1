"""Labelled downstream tasks: train / dev / test lists of examples (token ids, label, token types) and label names.

- `wiki_topic`: the topic of each article of the bundled wiki corpus's held-out *test* split (the articles
  pretraining never saw, data.test_fraction), split by a hash of the title into fixed train/dev/test subsets.
- `wiki_acceptability`: sentences of the same held-out documents, each either as written or with two adjacent
  words swapped (by a hash of the sentence), to tell apart: word order, which bag-of-words cannot see.
- GLUE's tasks: glue.py; eval.task's names: registry.py.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple, Sequence

from runner.data.tokenizer import SpecialIds, encode_sentences
from runner.evaluation.probes.pairs import corrupt, held_out_sentences, join_words, words_of

EXCLUDED_TOPICS = ("Uncategorized", "")  # the wiki corpus's catch-all and missing topics (load_wiki's default)
SUBSET_SALT = "bertlab-downstream"  # a salt of its own: the subsets do not follow the pretraining split's hash


class Example(NamedTuple):
    """One input: token ids with specials ([CLS] ... [SEP]), its label index, and token types for pairs."""

    ids: tuple[int, ...]
    label: int | float  # a label index; a score for a regression task (STS-B)
    token_types: tuple[int, ...] | None = None
    features: tuple[float, ...] | None = None  # per-example inputs to the head besides the text (score_feature.py)


@dataclass
class Task:
    """A classification task: label names and fixed train / dev / test examples."""

    name: str
    labels: list[str]
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    pad_id: int = 0
    num_special: int = 0  # ids below this are special tokens (left out of bag-of-words features)
    pairs: bool = False
    notes: dict[str, Any] = field(default_factory=dict)  # how the subsets were chosen
    regression: bool = False  # one output, a score (STS-B): MSE loss, Pearson and Spearman
    metrics: tuple[str, ...] = ()  # the task's own metrics besides accuracy and macro-F1: mcc, binary_f1
    extra_tests: dict[str, list[Example]] = field(default_factory=dict)  # more test sets (MNLI's mismatched)
    acceptability: bool = False  # single sentences judged acceptable or not: the model's own score is a feature

    def sizes(self) -> dict[str, int]:
        """Examples per subset (and per extra test set) and the number of labels."""
        return {"train": len(self.train), "dev": len(self.dev), "test": len(self.test),
                **{k: len(v) for k, v in self.extra_tests.items()}, "labels": len(self.labels)}


def unit_hash(key: str, salt: str = SUBSET_SALT) -> float:
    """A stable float in [0, 1) from `key` alone."""
    digest = hashlib.sha1((salt + key).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def subset_of(key: str, fractions: Sequence[float], names: Sequence[str] = ("train", "dev", "test"),
              salt: str = SUBSET_SALT) -> str:
    """The subset of an item by a hash of its key: names[i] with probability fractions[i] (fractions sum to 1)."""
    u, edge = unit_hash(key, salt), 0.0
    for name, frac in zip(names, fractions):
        edge += frac
        if u < edge:
            return name
    return names[-1]


def _check_fractions(fractions: Sequence[float], n: int) -> None:
    if len(fractions) != n or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be {n} non-negative numbers summing to 1, got {list(fractions)}")


def single(ids: Sequence[int], specials: SpecialIds, seq_len: int) -> tuple[int, ...]:
    """[CLS] + the first seq_len - 2 ids + [SEP]."""
    if seq_len < 3:
        raise ValueError(f"seq_len must be at least 3 ([CLS] x [SEP]), got {seq_len}")
    return (specials.cls, *[int(i) for i in ids[:seq_len - 2]], specials.sep)


def pair(a: Sequence[int], b: Sequence[int], specials: SpecialIds, seq_len: int) -> tuple[tuple[int, ...],
                                                                                        tuple[int, ...]]:
    """[CLS] A [SEP] B [SEP] and its token types (0 up to the first [SEP], 1 after), truncating the longer of A and
    B one token at a time until it fits seq_len (BERT's run_classifier `_truncate_seq_pair`)."""
    if seq_len < 5:
        raise ValueError(f"seq_len must be at least 5 for pairs, got {seq_len}")
    a, b = list(a), list(b)
    while len(a) + len(b) > seq_len - 3:
        (a if len(a) > len(b) else b).pop()
    ids = (specials.cls, *a, specials.sep, *b, specials.sep)
    return tuple(int(i) for i in ids), (0,) * (len(a) + 2) + (1,) * (len(b) + 1)


# ---- wiki_topic -----------------------------------------------------------------------------------------------

def wiki_topic(data: Any, seq_len: int = 128, fractions: Sequence[float] = (0.6, 0.2, 0.2),
               exclude: Iterable[str] = EXCLUDED_TOPICS, split: str = "test", salt: str = SUBSET_SALT) -> Task:
    """Topic classification on the held-out `split` (default: test) of a PretrainingData: one example per document
    with a topic not in `exclude`, its input [CLS] + the document's first seq_len - 2 tokens + [SEP]; the labels are
    the sorted topics present; the documents go to train/dev/test by a salted hash of the title (`fractions`), so
    the subsets are fixed whatever the order or number of other documents."""
    _check_fractions(fractions, 3)
    corpus, sp = data.splits[split], data.specials
    excluded = set(exclude)
    titles, topics = list(corpus.titles), list(corpus.topics)
    sent, docs = corpus.sent_offsets, corpus.doc_offsets
    rows: list[tuple[str, str, tuple[int, ...]]] = []
    for i in range(corpus.num_docs):
        topic = topics[i] or ""
        if topic in excluded:
            continue
        lo = int(sent[int(docs[i])])
        hi = min(int(sent[int(docs[i + 1])]), lo + seq_len - 2)
        ids = corpus.ids[lo:hi].tolist()
        rows.append((titles[i], topic, single(ids, sp, seq_len)))
    labels = sorted({t for _, t, _ in rows})
    index = {t: k for k, t in enumerate(labels)}
    out: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
    for title, topic, ids in rows:
        out[subset_of(title, fractions, salt=salt)].append(Example(ids, index[topic]))
    notes = {"source": f"pretraining data split {split!r} ({corpus.num_docs} documents)",
             "excluded_topics": sorted(excluded), "fractions": list(fractions), "subset_by": "sha1(salt + title)",
             "skipped_documents": corpus.num_docs - len(rows)}
    return Task("wiki_topic", labels, out["train"], out["dev"], out["test"], pad_id=sp.pad,
                num_special=sp.num_special, notes=notes)


# ---- wiki_acceptability ---------------------------------------------------------------------------------------

ACCEPTABILITY_SALT = "bertlab-acceptability"
ACCEPTABILITY_LABELS = ("acceptable", "corrupted")


def acceptability_rows(data_cfg: Any, split: str = "test", max_sentences: int = 4000, min_words: int = 6,
                       max_words: int = 30, salt: str = ACCEPTABILITY_SALT) -> list[tuple[str, str, int]]:
    """(original, text, label) for each distinct sentence of the held-out `split`'s documents (corpus order) that
    an adjacent-word swap can corrupt: by a salted hash of the sentence, text is the sentence as it is (label 0,
    acceptable) or with two adjacent words swapped (label 1, corrupted; runner.evaluation.probes.pairs.corrupt), so each
    sentence appears once and both classes have the same words. A sentence no swap can corrupt is left out of
    both classes (keeping it as acceptable only would tell the classes apart by the kind of sentence), and so is
    one that a training-split document holds too."""
    import random

    # a sentence that a pretraining document also holds (a stock phrase) was trained on: left out
    seen = {join_words(words_of(s)) for s in held_out_sentences(data_cfg, "train", 10**9, min_words=min_words,
                                                                   max_words=max_words)} if split != "train" else set()
    rows = []
    for sentence in held_out_sentences(data_cfg, split, max_sentences, min_words=min_words, max_words=max_words):
        words = words_of(sentence)
        original = join_words(words)  # one spacing for both classes
        if original in seen:
            continue
        seen.add(original)
        swapped = corrupt(words, "swap", random.Random(f"{salt}:{original}"))
        if swapped is None:
            continue
        label = int(unit_hash(original, salt + "/label") < 0.5)
        rows.append((original, join_words(swapped) if label else original, label))
    return rows


def wiki_acceptability(data: Any, data_cfg: Any, seq_len: int = 128, fractions: Sequence[float] = (0.6, 0.2, 0.2),
                       max_train: int = 600, max_eval: int = 300, split: str = "test", max_sentences: int = 4000,
                       min_words: int = 6, max_words: int = 30, salt: str = ACCEPTABILITY_SALT) -> Task:
    """Binary acceptability of held-out sentences of the run's corpus (the documents wiki_topic uses: the
    pretraining's `split`, never trained on): acceptable (as written) or corrupted (two adjacent words swapped),
    from acceptability_rows. Bag-of-words features cannot separate the classes (the same words); word order can.
    Subsets by a salted hash of the sentence (`fractions`), each balanced: the first max_train // 2 training and
    max_eval // 2 dev and test sentences of each label in corpus order, then as many of each label as the rarer
    one has (so a constant answer scores 0.5 on every subset, the chance line the reader needs); inputs
    [CLS] ids [SEP] with the run's tokenizer, sentences longer than seq_len - 2 tokens left out (truncation
    could cut the swap off)."""
    _check_fractions(fractions, 3)
    rows = acceptability_rows(data_cfg, split, max_sentences, min_words, max_words, salt)
    sp = data.specials
    ids = encode_sentences(data.tokenizer, [text for _, text, _ in rows]) if rows else []
    by_label: dict[str, list[list[Example]]] = {p: [[], []] for p in ("train", "dev", "test")}
    caps = {"train": max_train // 2, "dev": max_eval // 2, "test": max_eval // 2}  # per label
    too_long = 0
    for (original, _, label), x in zip(rows, ids):
        if len(x) > seq_len - 2:
            too_long += 1
            continue
        part = subset_of(original, fractions, salt=salt + "/subset")
        if len(by_label[part][label]) < caps[part]:
            by_label[part][label].append(Example(single(x, sp, seq_len), label))
    out: dict[str, list[Example]] = {}
    for part, (ok, bad) in by_label.items():  # as many of each label, in corpus order within each
        n = min(len(ok), len(bad))
        out[part] = [ex for pair in zip(ok[:n], bad[:n]) for ex in pair]
    notes = {"source": f"sentences of the pretraining data's {split!r} split ({len(rows)} usable, {min_words}-"
                       f"{max_words} words)", "corruption": "two adjacent words swapped (runner.evaluation.probes.pairs)",
             "label_by": "sha1(salt + sentence) < 0.5", "subset_by": "sha1(salt + sentence)",
             "fractions": list(fractions), "caps_per_label": caps, "balanced": True, "too_long": too_long}
    return Task("wiki_acceptability", list(ACCEPTABILITY_LABELS), out["train"], out["dev"], out["test"],
                pad_id=sp.pad, num_special=sp.num_special, notes=notes, acceptability=True)
