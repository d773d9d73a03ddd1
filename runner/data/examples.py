"""Fixed-length examples from a tokenized corpus: RoBERTa's FULL-SENTENCES packing, contiguous packing,
and BERT's sentence pairs for next-sentence prediction."""
from __future__ import annotations

import random

import torch

from runner.data.tokenized import TokenizedCorpus
from runner.data.tokenizer import SpecialIds


def _chunks(ids: list[int], size: int) -> list[list[int]]:
    """Split a token list into pieces of at most `size` (for sentences longer than a block)."""
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def pack_full_sentences(corpus: TokenizedCorpus, max_tokens: int, sep: int) -> list[list[int]]:
    """Fill blocks of at most max_tokens with whole sentences, crossing documents with an extra separator
    (Liu et al. 2019, section 4.2, FULL-SENTENCES). A sentence longer than a block is split."""
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
            if len(cur) + 1 > max_tokens:
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


def pack_contiguous(corpus: TokenizedCorpus, max_tokens: int, sep: int) -> list[list[int]]:
    """Cut the whole token stream (documents joined by a separator) into blocks of exactly max_tokens:
    no padding at all, sentences may be cut (cramming, MosaicBERT)."""
    stream: list[int] = []
    for d in range(corpus.num_docs):
        if stream:
            stream.append(sep)
        lo, hi = int(corpus.sent_offsets[corpus.doc_offsets[d]]), int(corpus.sent_offsets[corpus.doc_offsets[d + 1]])
        stream.extend(corpus.ids[lo:hi].tolist())
    return _chunks(stream, max_tokens)


def single_tensors(blocks: list[list[int]], seq_len: int, sp: SpecialIds) -> dict[str, torch.Tensor]:
    """[CLS] block [SEP], right-padded to seq_len."""
    return _to_tensors([([sp.cls] + b + [sp.sep], [0] * (len(b) + 2)) for b in blocks], seq_len, sp)


def sentence_pairs(corpus: TokenizedCorpus, max_tokens: int, short_seq_prob: float, random_next_prob: float,
                   rng: random.Random) -> list[tuple[list[int], list[int], int]]:
    """BERT's pair creation (create_pretraining_data.py): segment A is one or more sentences of a document;
    B continues it, or with random_next_prob comes from a random other document (label 1).
    A share short_seq_prob of pairs gets a shorter target length, so the model sees short inputs too."""
    pairs = []
    n_docs = corpus.num_docs
    for d in range(n_docs):
        sents = [s.tolist() for s in corpus.doc_sentences(d)]
        target = rng.randint(2, max_tokens) if rng.random() < short_seq_prob else max_tokens
        chunk, length, i = [], 0, 0
        while i < len(sents):
            chunk.append(sents[i])
            length += len(sents[i])
            if i == len(sents) - 1 or length >= target:
                a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                a = [t for s in chunk[:a_end] for t in s]
                if (len(chunk) == 1 or rng.random() < random_next_prob) and n_docs > 1:
                    label = 1
                    other = rng.randrange(n_docs - 1)
                    other += other >= d  # any document but this one
                    o_sents = corpus.doc_sentences(other)
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
                target = rng.randint(2, max_tokens) if rng.random() < short_seq_prob else max_tokens
            i += 1
    return pairs


def _truncate_pair(a: list[int], b: list[int], max_tokens: int, rng: random.Random) -> tuple[list[int], list[int]]:
    """Trim the longer segment, from the front or back at random, until the pair fits."""
    a, b = list(a), list(b)
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        del longer[0 if rng.random() < 0.5 else -1]
    return a, b


def pair_tensors(pairs: list[tuple[list[int], list[int], int]], seq_len: int, sp: SpecialIds) -> dict[str, torch.Tensor]:
    """[CLS] A [SEP] B [SEP] with segment ids 0 / 1 and the next-sentence label."""
    rows = [([sp.cls] + a + [sp.sep] + b + [sp.sep], [0] * (len(a) + 2) + [1] * (len(b) + 1)) for a, b, _ in pairs]
    out = _to_tensors(rows, seq_len, sp)
    out["next_sentence_label"] = torch.tensor([lab for _, _, lab in pairs], dtype=torch.long)
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
