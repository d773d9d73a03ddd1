"""Fixed-length examples from a tokenized corpus, in the input formats of RoBERTa's Table 2 (Liu et al. 2019,
section 4.2), ALBERT's sentence-order pairs (Lan et al. 2020, section 4.1) and a contiguous token stream.

data.format     one example                                                        label
segment_pair    [CLS] A [SEP] B [SEP]; A, B spans of whole sentences (BERT)         next_sentence_label
sentence_pair   [CLS] A [SEP] B [SEP]; A, B one natural sentence each               next_sentence_label
sop_pair        [CLS] A [SEP] B [SEP]; two consecutive spans of one document,      sentence_order_label
                swapped half the time (ALBERT)
full_sentences  [CLS] whole sentences [SEP], crossing documents with a [SEP]       -
doc_sentences   [CLS] whole sentences [SEP], never crossing a document boundary    -
contiguous      [CLS] exactly seq_len - 2 tokens of the stream [SEP], no padding   -

Builders work on sentence lengths only and return ranges of the corpus's token stream (runner/data/stream.py):
one (start, end) per block, or (a_start, a_end, b_start, b_end) per pair. An ExampleSet reads the tokens of the
rows a batch asks for. Pair formats are redrawn per copy (BERT's dupe factor) from random.Random(seed * 1000 +
copy); the single formats are deterministic and repeated. Label 1 means "random next" (NSP) or "swapped" (SOP).
"""
from __future__ import annotations

import random
from array import array
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from runner.data.stream import TokenStream
from runner.data.token_corpus import TokenizedCorpus
from runner.data.tokenizer import SpecialIds

NSP_FORMATS = ("segment_pair", "sentence_pair")  # labels for next-sentence prediction
PAIR_FORMATS = NSP_FORMATS + ("sop_pair",)
SINGLE_FORMATS = ("full_sentences", "doc_sentences", "contiguous")
FORMATS = PAIR_FORMATS + SINGLE_FORMATS
LABEL_KEYS = {"segment_pair": "next_sentence_label", "sentence_pair": "next_sentence_label",
              "sop_pair": "sentence_order_label"}
SOP_SWAP_PROB = 0.5  # ALBERT: swapped (label 1) or in order (label 0), 50/50

PairRanges = tuple[np.ndarray, np.ndarray]  # (N, 4) int64 stream ranges A then B, (N,) int8 labels


def default_format(pairs: bool) -> str:
    """data.format=null: BERT's segment pairs for an objective on pairs (NSP), else RoBERTa's FULL-SENTENCES."""
    return "segment_pair" if pairs else "full_sentences"


class _Docs:
    """Sentence boundaries of a corpus, read one document at a time: the builders hold one document's worth of
    Python integers, never the corpus's (the offsets stay in their memory-mapped file)."""

    def __init__(self, corpus: TokenizedCorpus):
        self.sent = corpus.sent_offsets.numpy()  # (S + 1,) token offsets of the sentences
        self.doc = corpus.doc_offsets.numpy()  # (D + 1,) sentence offsets of the documents
        self.n_docs = len(self.doc) - 1

    def offsets(self, d: int) -> list[int]:
        """Token offsets of document d's sentence boundaries (its sentence count + 1 values)."""
        return self.sent[self.doc[d]:self.doc[d + 1] + 1].tolist()


def _span(offs: list[int], d: int, first: int, n: int) -> tuple[int, int]:
    """Stream range of n consecutive sentences of document d from its sentence `first` (d separators precede
    the document in the stream)."""
    return offs[first] + d, offs[first + n] + d


# ---- single sequences ----------------------------------------------------------------------------------------

def _pack(corpus: TokenizedCorpus, max_tokens: int, cross_documents: bool) -> np.ndarray:
    """Greedy packing of whole sentences into blocks of at most max_tokens stream positions; a sentence longer
    than a block is split. Across documents a block holds the separator between them (never at its end)."""
    docs = _Docs(corpus)
    out = array("q")
    start = size = 0
    ends_with_sep = False

    def flush() -> None:
        nonlocal size, ends_with_sep
        if ends_with_sep:  # a document separator right before the block's own [SEP] says nothing
            size -= 1
        if size:
            out.extend((start, start + size))
        size, ends_with_sep = 0, False

    for d in range(docs.n_docs):
        if size:
            if not cross_documents or size + 1 > max_tokens:
                flush()
            else:
                size += 1  # the separator before this document, inside the block
                ends_with_sep = True
        offs = docs.offsets(d)
        for lo, hi in zip(offs, offs[1:]):
            p, n = lo + d, hi - lo
            for off in range(0, n, max_tokens):
                piece = min(max_tokens, n - off)
                if size + piece > max_tokens:
                    flush()
                if not size:
                    start = p + off
                size += piece
                ends_with_sep = False
    flush()
    return np.frombuffer(out, dtype=np.int64).reshape(-1, 2).copy()


def full_sentence_ranges(corpus: TokenizedCorpus, max_tokens: int) -> np.ndarray:
    """Blocks of at most max_tokens filled with whole sentences, crossing documents with an extra separator
    (Liu et al. 2019, section 4.2, FULL-SENTENCES). A sentence longer than a block is split."""
    return _pack(corpus, max_tokens, cross_documents=True)


def doc_sentence_ranges(corpus: TokenizedCorpus, max_tokens: int) -> np.ndarray:
    """As FULL-SENTENCES, but a block never crosses a document boundary (DOC-SENTENCES): the last block of
    each document is short, so blocks hold variable numbers of tokens (RoBERTa raises the batch size to
    compensate; here the short blocks are padded, see PretrainingData.stats()'s padding fraction)."""
    return _pack(corpus, max_tokens, cross_documents=False)


def contiguous_ranges(corpus: TokenizedCorpus, max_tokens: int) -> np.ndarray:
    """The token stream cut into blocks of exactly max_tokens: no padding at all, sentences may be cut
    (cramming, MosaicBERT). The incomplete tail is dropped, unless it is the only block."""
    length = corpus.num_tokens + max(corpus.num_docs - 1, 0)
    n = length // max_tokens
    if n == 0:
        return np.array([[0, length]] if length else np.zeros((0, 2)), dtype=np.int64)
    starts = np.arange(n, dtype=np.int64) * max_tokens
    return np.stack([starts, starts + max_tokens], axis=1)


# ---- pairs ---------------------------------------------------------------------------------------------------

def _target(max_tokens: int, short_seq_prob: float, rng: random.Random) -> int:
    """BERT's target length: max_tokens, or with short_seq_prob a random shorter one, so the model also sees
    short inputs as in fine-tuning (create_pretraining_data.py; ALBERT keeps the rule)."""
    return rng.randint(2, max_tokens) if rng.random() < short_seq_prob else max_tokens


def _other_doc(n_docs: int, d: int, rng: random.Random) -> int:
    other = rng.randrange(n_docs - 1)
    return other + (other >= d)  # any document but this one


def _truncate(a0: int, a1: int, b0: int, b1: int, max_tokens: int, rng: random.Random) -> tuple[int, int, int, int]:
    """Trim the longer segment by one token, from the front or back at random, until the pair fits (BERT)."""
    while (a1 - a0) + (b1 - b0) > max_tokens:
        if a1 - a0 > b1 - b0:
            if rng.random() < 0.5:
                a0 += 1
            else:
                a1 -= 1
        elif rng.random() < 0.5:
            b0 += 1
        else:
            b1 -= 1
    return a0, a1, b0, b1


class _Pairs:
    """Collects (A range, B range, label) rows, truncating each pair to max_tokens."""

    def __init__(self, max_tokens: int, rng: random.Random):
        self.max_tokens, self.rng = max_tokens, rng
        self.ranges, self.labels = array("q"), array("b")

    def add(self, a: tuple[int, int], b: tuple[int, int], label: int) -> None:
        self.ranges.extend(_truncate(*a, *b, self.max_tokens, self.rng))
        self.labels.append(label)

    def result(self) -> PairRanges:
        ranges = np.frombuffer(self.ranges, dtype=np.int64).reshape(-1, 4).copy()
        return ranges, np.frombuffer(self.labels, dtype=np.int8).copy()


def segment_pair_ranges(corpus: TokenizedCorpus, max_tokens: int, short_seq_prob: float, random_next_prob: float,
                        rng: random.Random) -> PairRanges:
    """BERT's pair creation (create_pretraining_data.py), SEGMENT-PAIR in RoBERTa's Table 2: sentences of a
    document are gathered up to a target length, split at a random sentence boundary into A and B; with
    random_next_prob B is replaced by text from a random other document (label 1) and the chunk's unused
    sentences start the next pair. The target is redrawn for every pair. One deviation keeps labels balanced
    on short documents: a one-sentence chunk is never forced random (see the comment in the loop)."""
    docs, out = _Docs(corpus), _Pairs(max_tokens, rng)
    for d in range(docs.n_docs):
        offs = docs.offsets(d)
        n_sents = len(offs) - 1
        target = _target(max_tokens, short_seq_prob, rng)
        first = size = length = 0  # the chunk: `size` sentences from `first`, `length` tokens
        i = 0
        while i < n_sents:
            if not size:
                first = i
            size += 1
            length += offs[i + 1] - offs[i]
            if i == n_sents - 1 or length >= target:
                # BERT's code forces a random B for a one-sentence chunk; on short articles (the wiki summaries
                # have a median of 3 sentences) that tilts labels to ~65% random. Here a document's lone last
                # sentence makes no pair, and a lone sentence that filled the target takes the next sentence as
                # B when the draw says "not random", so every pair had both labels open: NSP stays balanced.
                if size == 1 and i == n_sents - 1:
                    size = length = 0
                    target = _target(max_tokens, short_seq_prob, rng)
                    i += 1
                    continue
                is_random = docs.n_docs > 1 and rng.random() < random_next_prob
                if size == 1 and not is_random:
                    i += 1
                    size += 1
                a_end = rng.randint(1, size - 1) if size >= 2 else 1
                a = _span(offs, d, first, a_end)
                if is_random:
                    o = _other_doc(docs.n_docs, d, rng)
                    o_offs = docs.offsets(o)
                    k = rng.randrange(len(o_offs) - 1)
                    want, n_b = target - (a[1] - a[0]), 0
                    for end in o_offs[k + 1:]:  # whole sentences of the other document until B is long enough
                        n_b += 1
                        if end - o_offs[k] >= want:
                            break
                    b, label = _span(o_offs, o, k, n_b), 1
                    i -= size - a_end  # the unused sentences of this chunk start the next pair
                else:
                    b, label = _span(offs, d, first + a_end, size - a_end), 0
                if b[1] > b[0]:
                    out.add(a, b, label)
                size = length = 0
                target = _target(max_tokens, short_seq_prob, rng)
            i += 1
    return out.result()


def sentence_pair_ranges(corpus: TokenizedCorpus, max_tokens: int, random_next_prob: float,
                         rng: random.Random) -> PairRanges:
    """SENTENCE-PAIR (RoBERTa's Table 2): A is one natural sentence; B the sentence after it (label 0) or, with
    random_next_prob, a random sentence of a random other document (label 1), in which case A's successor
    starts the next pair. A document's last sentence, having no successor, is never an A (so each pair's label
    is one draw, and labels average random_next_prob). The pairs are far shorter than seq_len, which is the
    point of the ablation; no short targets are drawn. A pair longer than max_tokens is truncated."""
    docs, out = _Docs(corpus), _Pairs(max_tokens, rng)
    for d in range(docs.n_docs):
        offs = docs.offsets(d)
        i = 0
        while i < len(offs) - 2:  # sentence i has a successor
            if docs.n_docs > 1 and rng.random() < random_next_prob:
                o = _other_doc(docs.n_docs, d, rng)
                o_offs = docs.offsets(o)
                k = rng.randrange(len(o_offs) - 1)
                out.add(_span(offs, d, i, 1), _span(o_offs, o, k, 1), 1)
                i += 1
            else:
                out.add(_span(offs, d, i, 1), _span(offs, d, i + 1, 1), 0)
                i += 2
    return out.result()


def sentence_order_ranges(corpus: TokenizedCorpus, max_tokens: int, short_seq_prob: float, rng: random.Random,
                          swap_prob: float = SOP_SWAP_PROB) -> PairRanges:
    """ALBERT's sentence-order pairs (Lan et al. 2020, section 4.1): sentences of a document are gathered up to
    BERT's target length (short_seq_prob), split at a random sentence boundary into two consecutive segments,
    kept in order (label 0) or swapped (label 1) with swap_prob. Both segments always come from the same
    document: a chunk closes only with at least two sentences, and a document's lone remaining sentence is
    left out (ALBERT's code would fill it from another document, which is NSP's task, not SOP's)."""
    docs, out = _Docs(corpus), _Pairs(max_tokens, rng)
    for d in range(docs.n_docs):
        offs = docs.offsets(d)
        n_sents = len(offs) - 1
        target = _target(max_tokens, short_seq_prob, rng)
        first = size = length = 0
        for i in range(n_sents):
            if not size:
                first = i
            size += 1
            length += offs[i + 1] - offs[i]
            if i == n_sents - 1 or (length >= target and size >= 2):
                if size >= 2:
                    a_end = rng.randint(1, size - 1)
                    a, b = _span(offs, d, first, a_end), _span(offs, d, first + a_end, size - a_end)
                    label = int(rng.random() < swap_prob)
                    out.add(*((b, a) if label else (a, b)), label)
                size = length = 0
                target = _target(max_tokens, short_seq_prob, rng)
    return out.result()


# ---- examples ------------------------------------------------------------------------------------------------

@dataclass
class ExampleSet:
    """Examples as stream ranges; rows(idx) reads their tokens into (len(idx), seq_len) tensors in compact
    dtypes (int32 ids, uint8 segment ids, bool masks), right-padded."""

    stream: TokenStream
    ranges: np.ndarray  # (N, 2): one block per example; (N, 4): A then B of a pair
    seq_len: int
    specials: SpecialIds
    labels: np.ndarray | None = None  # (N,) int8 pair labels
    label_key: str | None = None  # next_sentence_label | sentence_order_label

    def __len__(self) -> int:
        return int(self.ranges.shape[0])

    @property
    def is_pairs(self) -> bool:
        """True for [CLS] A [SEP] B [SEP] examples."""
        return self.ranges.shape[1] == 4

    def lengths(self) -> np.ndarray:
        """Tokens per example, special tokens included."""
        r = np.asarray(self.ranges)
        if self.is_pairs:
            return (r[:, 1] - r[:, 0]) + (r[:, 3] - r[:, 2]) + 3
        return r[:, 1] - r[:, 0] + 2

    def padding_fraction(self) -> float:
        """Share of the (N, seq_len) positions that are padding: compute spent on nothing at full length."""
        return 1.0 - float(self.lengths().sum()) / max(len(self) * self.seq_len, 1)

    def rows(self, idx: np.ndarray | torch.Tensor | range) -> dict[str, torch.Tensor]:
        """The examples at idx as tensors; only their tokens are read (vectorised over the whole batch)."""
        idx = np.asarray(idx, dtype=np.int64)
        sp, n, T = self.specials, len(idx), self.seq_len
        r = np.asarray(self.ranges[idx]).reshape(n, -1)  # (n, 2) or (n, 4)
        t = np.arange(T)[None, :]  # (1, T) output positions
        a0, la = r[:, :1], r[:, 1:2] - r[:, :1]  # (n, 1) each
        src = np.where((t >= 1) & (t <= la), a0 + t - 1, -1)  # (n, T): stream position shown at each slot
        ids = np.full((n, T), sp.pad, dtype=np.int32)
        types = np.zeros((n, T), dtype=np.uint8)
        rows = np.arange(n)
        if self.is_pairs:  # [CLS] A [SEP] B [SEP]
            b0, lb = r[:, 2:3], r[:, 3:4] - r[:, 2:3]
            in_b = (t >= la + 2) & (t <= la + lb + 1)
            src = np.where(in_b, b0 + t - la - 2, src)
            types[(t >= la + 2) & (t <= la + lb + 2)] = 1
            ids[rows, (la + lb + 2)[:, 0]] = sp.sep
        content = src >= 0
        ids[content] = self.stream.at(src[content])
        ids[:, 0] = sp.cls
        ids[rows, (la + 1)[:, 0]] = sp.sep
        x = torch.from_numpy(ids)
        special = (x < sp.num_special) | x.eq(sp.cls) | x.eq(sp.sep) | x.eq(sp.pad) | x.eq(sp.mask)
        out = {"input_ids": x, "token_type_ids": torch.from_numpy(types), "attention_mask": x.ne(sp.pad),
               "special_tokens_mask": special}
        if self.labels is not None and self.label_key:
            out[self.label_key] = torch.from_numpy(np.asarray(self.labels[idx], dtype=np.int64))
        return out

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every example as tensors (small sets, tests)."""
        return self.rows(np.arange(len(self)))


def build_example_set(corpus: TokenizedCorpus, fmt: str, seq_len: int, sp: SpecialIds, copies: int = 1,
                      seed: int = 0, random_next_prob: float = 0.5, short_seq_prob: float = 0.1) -> ExampleSet:
    """The examples of `corpus` in data.format `fmt`, `copies` times (pairs redrawn per copy)."""
    stream = TokenStream(corpus, sp.sep)
    if fmt in PAIR_FORMATS:
        max_tokens = seq_len - 3  # [CLS] A [SEP] B [SEP]
        draw: dict[str, Callable[[random.Random], PairRanges]] = {
            "segment_pair": lambda rng: segment_pair_ranges(corpus, max_tokens, short_seq_prob, random_next_prob,
                                                            rng),
            "sentence_pair": lambda rng: sentence_pair_ranges(corpus, max_tokens, random_next_prob, rng),
            "sop_pair": lambda rng: sentence_order_ranges(corpus, max_tokens, short_seq_prob, rng),
        }
        parts = [draw[fmt](random.Random(seed * 1000 + c)) for c in range(copies)]
        return ExampleSet(stream, np.concatenate([p[0] for p in parts]), seq_len, sp,
                          np.concatenate([p[1] for p in parts]), LABEL_KEYS[fmt])
    pack = {"full_sentences": full_sentence_ranges, "doc_sentences": doc_sentence_ranges,
            "contiguous": contiguous_ranges}
    if fmt not in pack:
        raise ValueError(f"unknown example format {fmt!r}; one of {', '.join(FORMATS)}")
    return ExampleSet(stream, np.tile(pack[fmt](corpus, seq_len - 2), (copies, 1)), seq_len, sp)


def build_examples(corpus: TokenizedCorpus, fmt: str, seq_len: int, sp: SpecialIds, copies: int = 1, seed: int = 0,
                   random_next_prob: float = 0.5, short_seq_prob: float = 0.1) -> dict[str, torch.Tensor]:
    """build_example_set(...) read into tensors: every example at once (small corpora, tests)."""
    return build_example_set(corpus, fmt, seq_len, sp, copies, seed, random_next_prob, short_seq_prob).tensors()
