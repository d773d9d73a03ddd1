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

Pair formats are redrawn per copy (BERT's dupe factor) from random.Random(seed * 1000 + copy); the single
formats are deterministic and repeated. Label 1 means "random next" (NSP) or "swapped" (SOP).
"""
from __future__ import annotations

import random
from typing import Callable

import numpy as np
import torch

from runner.data.tokenized import TokenizedCorpus
from runner.data.tokenizer import SpecialIds

NSP_FORMATS = ("segment_pair", "sentence_pair")  # labels for next-sentence prediction
PAIR_FORMATS = NSP_FORMATS + ("sop_pair",)
SINGLE_FORMATS = ("full_sentences", "doc_sentences", "contiguous")
FORMATS = PAIR_FORMATS + SINGLE_FORMATS
LABEL_KEYS = {"segment_pair": "next_sentence_label", "sentence_pair": "next_sentence_label",
              "sop_pair": "sentence_order_label"}
SOP_SWAP_PROB = 0.5  # ALBERT: swapped (label 1) or in order (label 0), 50/50

Pair = tuple[list[int], list[int], int]


def default_format(pairs: bool) -> str:
    """data.format=null: BERT's segment pairs for an objective on pairs (NSP), else RoBERTa's FULL-SENTENCES."""
    return "segment_pair" if pairs else "full_sentences"


# ---- single sequences ----------------------------------------------------------------------------------------

def _chunks(ids: list[int], size: int) -> list[list[int]]:
    """Split a token list into pieces of at most `size` (for sentences longer than a block)."""
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def _pack_sentences(corpus: TokenizedCorpus, max_tokens: int, sep: int, cross_documents: bool) -> list[list[int]]:
    blocks: list[list[int]] = []
    cur: list[int] = []

    def flush() -> None:
        nonlocal cur
        while cur and cur[-1] == sep:  # a document separator right before the block's own [SEP] says nothing
            cur.pop()
        if cur:
            blocks.append(cur)
        cur = []

    for d in range(corpus.num_docs):
        if cur:
            if not cross_documents or len(cur) + 1 > max_tokens:
                flush()
            else:
                cur.append(sep)  # document boundary inside a block
        for s in corpus.doc_sentences(d):
            for piece in _chunks(s.tolist(), max_tokens):
                if len(cur) + len(piece) > max_tokens:
                    flush()
                cur.extend(piece)
    flush()
    return blocks


def pack_full_sentences(corpus: TokenizedCorpus, max_tokens: int, sep: int) -> list[list[int]]:
    """Fill blocks of at most max_tokens with whole sentences, crossing documents with an extra separator
    (Liu et al. 2019, section 4.2, FULL-SENTENCES). A sentence longer than a block is split."""
    return _pack_sentences(corpus, max_tokens, sep, cross_documents=True)


def pack_doc_sentences(corpus: TokenizedCorpus, max_tokens: int, sep: int) -> list[list[int]]:
    """As FULL-SENTENCES, but a block never crosses a document boundary (DOC-SENTENCES): the last block of
    each document is short, so blocks hold variable numbers of tokens (RoBERTa raises the batch size to
    compensate; here the short blocks are padded, see PretrainingData.stats()'s padding fraction)."""
    return _pack_sentences(corpus, max_tokens, sep, cross_documents=False)


def token_stream(corpus: TokenizedCorpus, sep: int) -> torch.Tensor:
    """All tokens in corpus order, a separator between documents (int32): the stream that contiguous blocks,
    and a causal language model's segments, are cut from."""
    starts = corpus.sent_offsets[corpus.doc_offsets[1:-1]].numpy()  # token offset of every document but the first
    return torch.from_numpy(np.insert(corpus.ids.numpy(), starts, np.int32(sep)))


def pack_contiguous(corpus: TokenizedCorpus, max_tokens: int, sep: int) -> list[list[int]]:
    """Cut the token stream into blocks of exactly max_tokens: no padding at all, sentences may be cut
    (cramming, MosaicBERT). The incomplete tail is dropped, unless it is the only block."""
    stream = token_stream(corpus, sep)
    n = len(stream) // max_tokens
    if n == 0:
        return [stream.tolist()] if len(stream) else []
    return stream[:n * max_tokens].view(n, max_tokens).tolist()


def single_tensors(blocks: list[list[int]], seq_len: int, sp: SpecialIds) -> dict[str, torch.Tensor]:
    """[CLS] block [SEP], right-padded to seq_len."""
    return _to_tensors([([sp.cls] + b + [sp.sep], [0] * (len(b) + 2)) for b in blocks], seq_len, sp)


# ---- pairs ---------------------------------------------------------------------------------------------------

def _target(max_tokens: int, short_seq_prob: float, rng: random.Random) -> int:
    """BERT's target length: max_tokens, or with short_seq_prob a random shorter one, so the model also sees
    short inputs as in fine-tuning (create_pretraining_data.py; ALBERT keeps the rule)."""
    return rng.randint(2, max_tokens) if rng.random() < short_seq_prob else max_tokens


def _other_doc(n_docs: int, d: int, rng: random.Random) -> int:
    other = rng.randrange(n_docs - 1)
    return other + (other >= d)  # any document but this one


def segment_pairs(corpus: TokenizedCorpus, max_tokens: int, short_seq_prob: float, random_next_prob: float,
                  rng: random.Random) -> list[Pair]:
    """BERT's pair creation (create_pretraining_data.py), SEGMENT-PAIR in RoBERTa's Table 2: sentences of a
    document are gathered up to a target length, split at a random sentence boundary into A and B; with
    random_next_prob B is replaced by text from a random other document (label 1) and the chunk's unused
    sentences start the next pair. The target is redrawn for every pair. One deviation keeps labels balanced
    on short documents: a one-sentence chunk is never forced random (see the comment in the loop)."""
    pairs = []
    n_docs = corpus.num_docs
    for d in range(n_docs):
        sents = [s.tolist() for s in corpus.doc_sentences(d)]
        target = _target(max_tokens, short_seq_prob, rng)
        chunk, length, i = [], 0, 0
        while i < len(sents):
            chunk.append(sents[i])
            length += len(sents[i])
            if i == len(sents) - 1 or length >= target:
                # BERT's code forces a random B for a one-sentence chunk; on short articles (the wiki summaries
                # have a median of 3 sentences) that tilts labels to ~65% random. Here a document's lone last
                # sentence makes no pair, and a lone sentence that filled the target takes the next sentence as
                # B when the draw says "not random", so every pair had both labels open: NSP stays balanced.
                if len(chunk) == 1 and i == len(sents) - 1:
                    chunk, length = [], 0
                    target = _target(max_tokens, short_seq_prob, rng)
                    i += 1
                    continue
                is_random = n_docs > 1 and rng.random() < random_next_prob
                if len(chunk) == 1 and not is_random:
                    i += 1
                    chunk.append(sents[i])
                a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                a = [t for s in chunk[:a_end] for t in s]
                if is_random:
                    label = 1
                    o_sents = corpus.doc_sentences(_other_doc(n_docs, d, rng))
                    b = []
                    for s in o_sents[rng.randrange(len(o_sents)):]:
                        b.extend(s.tolist())
                        if len(b) >= target - len(a):
                            break
                    i -= len(chunk) - a_end  # the unused sentences of this chunk start the next pair
                else:
                    label = 0
                    b = [t for s in chunk[a_end:] for t in s]
                if b:
                    a, b = _truncate_pair(a, b, max_tokens, rng)
                    pairs.append((a, b, label))
                chunk, length = [], 0
                target = _target(max_tokens, short_seq_prob, rng)
            i += 1
    return pairs


def single_sentence_pairs(corpus: TokenizedCorpus, max_tokens: int, random_next_prob: float,
                          rng: random.Random) -> list[Pair]:
    """SENTENCE-PAIR (RoBERTa's Table 2): A is one natural sentence; B the sentence after it (label 0) or, with
    random_next_prob, a random sentence of a random other document (label 1), in which case A's successor
    starts the next pair. A document's last sentence, having no successor, is never an A (so each pair's label
    is one draw, and labels average random_next_prob). The pairs are far shorter than seq_len, which is the
    point of the ablation; no short targets are drawn. A pair longer than max_tokens is truncated."""
    pairs = []
    n_docs = corpus.num_docs
    for d in range(n_docs):
        sents = [s.tolist() for s in corpus.doc_sentences(d)]
        i = 0
        while i < len(sents) - 1:
            if n_docs > 1 and rng.random() < random_next_prob:
                o_sents = corpus.doc_sentences(_other_doc(n_docs, d, rng))
                a, b, label = sents[i], o_sents[rng.randrange(len(o_sents))].tolist(), 1
                i += 1
            else:
                a, b, label = sents[i], sents[i + 1], 0
                i += 2
            a, b = _truncate_pair(a, b, max_tokens, rng)
            pairs.append((a, b, label))
    return pairs


def sentence_order_pairs(corpus: TokenizedCorpus, max_tokens: int, short_seq_prob: float, rng: random.Random,
                         swap_prob: float = SOP_SWAP_PROB) -> list[Pair]:
    """ALBERT's sentence-order pairs (Lan et al. 2020, section 4.1): sentences of a document are gathered up to
    BERT's target length (short_seq_prob), split at a random sentence boundary into two consecutive segments,
    kept in order (label 0) or swapped (label 1) with swap_prob. Both segments always come from the same
    document: a chunk closes only with at least two sentences, and a document's lone remaining sentence is
    left out (ALBERT's code would fill it from another document, which is NSP's task, not SOP's)."""
    pairs = []
    for d in range(corpus.num_docs):
        sents = [s.tolist() for s in corpus.doc_sentences(d)]
        target = _target(max_tokens, short_seq_prob, rng)
        chunk: list[list[int]] = []
        length = 0
        for i, s in enumerate(sents):
            chunk.append(s)
            length += len(s)
            if i == len(sents) - 1 or (length >= target and len(chunk) >= 2):
                if len(chunk) >= 2:
                    a_end = rng.randint(1, len(chunk) - 1)
                    a = [t for x in chunk[:a_end] for t in x]
                    b = [t for x in chunk[a_end:] for t in x]
                    label = int(rng.random() < swap_prob)
                    if label:
                        a, b = b, a
                    a, b = _truncate_pair(a, b, max_tokens, rng)
                    pairs.append((a, b, label))
                chunk, length = [], 0
                target = _target(max_tokens, short_seq_prob, rng)
    return pairs


def _truncate_pair(a: list[int], b: list[int], max_tokens: int, rng: random.Random) -> tuple[list[int], list[int]]:
    """Trim the longer segment, from the front or back at random, until the pair fits."""
    a, b = list(a), list(b)
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        del longer[0 if rng.random() < 0.5 else -1]
    return a, b


def pair_tensors(pairs: list[Pair], seq_len: int, sp: SpecialIds,
                 label_key: str = "next_sentence_label") -> dict[str, torch.Tensor]:
    """[CLS] A [SEP] B [SEP] with segment ids 0 / 1, and the pair labels under label_key."""
    rows = [([sp.cls] + a + [sp.sep] + b + [sp.sep], [0] * (len(a) + 2) + [1] * (len(b) + 1)) for a, b, _ in pairs]
    out = _to_tensors(rows, seq_len, sp)
    out[label_key] = torch.tensor([lab for _, _, lab in pairs], dtype=torch.long)
    return out


def _to_tensors(rows: list[tuple[list[int], list[int]]], seq_len: int, sp: SpecialIds) -> dict[str, torch.Tensor]:
    """Right-pad rows of (ids, segment ids) into (N, seq_len) tensors with masks, in compact dtypes
    (int32 ids, uint8 segments, bool masks) so cached example sets stay small; batches widen them."""
    n = len(rows)
    ids = torch.full((n, seq_len), sp.pad, dtype=torch.int32)
    types = torch.zeros((n, seq_len), dtype=torch.uint8)
    for r, (row, seg) in enumerate(rows):
        ids[r, :len(row)] = torch.tensor(row, dtype=torch.int32)
        types[r, :len(seg)] = torch.tensor(seg, dtype=torch.uint8)
    special = (ids < sp.num_special) | ids.eq(sp.cls) | ids.eq(sp.sep) | ids.eq(sp.pad) | ids.eq(sp.mask)
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": ids.ne(sp.pad),
            "special_tokens_mask": special}


# ---- one entry point -----------------------------------------------------------------------------------------

def build_examples(corpus: TokenizedCorpus, fmt: str, seq_len: int, sp: SpecialIds, copies: int = 1, seed: int = 0,
                   random_next_prob: float = 0.5, short_seq_prob: float = 0.1) -> dict[str, torch.Tensor]:
    """The examples of `corpus` in data.format `fmt`, `copies` times (pairs redrawn per copy)."""
    if fmt in PAIR_FORMATS:
        max_tokens = seq_len - 3  # [CLS] A [SEP] B [SEP]
        draw: dict[str, Callable[[random.Random], list[Pair]]] = {
            "segment_pair": lambda rng: segment_pairs(corpus, max_tokens, short_seq_prob, random_next_prob, rng),
            "sentence_pair": lambda rng: single_sentence_pairs(corpus, max_tokens, random_next_prob, rng),
            "sop_pair": lambda rng: sentence_order_pairs(corpus, max_tokens, short_seq_prob, rng),
        }
        parts = [pair_tensors(draw[fmt](random.Random(seed * 1000 + c)), seq_len, sp, LABEL_KEYS[fmt])
                 for c in range(copies)]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    pack = {"full_sentences": pack_full_sentences, "doc_sentences": pack_doc_sentences,
            "contiguous": pack_contiguous}
    if fmt not in pack:
        raise ValueError(f"unknown example format {fmt!r}; one of {', '.join(FORMATS)}")
    one = single_tensors(pack[fmt](corpus, seq_len - 2, sp.sep), seq_len, sp)
    return {k: v.repeat(copies, *([1] * (v.dim() - 1))) for k, v in one.items()}


def padding_fraction(examples: dict[str, torch.Tensor]) -> float:
    """Share of the (N, seq_len) positions that are padding: compute spent on nothing at full length."""
    mask = examples["attention_mask"]
    return 1.0 - float(mask.sum()) / max(mask.numel(), 1)
