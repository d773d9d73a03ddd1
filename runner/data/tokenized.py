"""A whole corpus tokenized into flat tensors with sentence and document offsets."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from tokenizers import Tokenizer

from runner.data.corpus import Document
from runner.data.tokenizer import encode_sentences

# Sentences per encode_batch call: bounds peak memory of the Encoding objects.
_CHUNK = 50_000


@dataclass
class TokenizedCorpus:
    """Token ids of all sentences concatenated, plus offsets to recover sentences and documents."""

    ids: torch.Tensor  # int32 [num_tokens]
    sent_offsets: torch.Tensor  # int64 [num_sentences + 1], into ids
    doc_offsets: torch.Tensor  # int64 [num_docs + 1], into sentences
    topics: list[str]
    titles: list[str]

    @property
    def num_docs(self) -> int:
        """Number of documents."""
        return len(self.doc_offsets) - 1

    @property
    def num_sentences(self) -> int:
        """Number of sentences."""
        return len(self.sent_offsets) - 1

    @property
    def num_tokens(self) -> int:
        """Number of tokens."""
        return int(self.ids.numel())

    def sentence(self, j: int) -> torch.Tensor:
        """Token ids of sentence `j` (a view into `ids`)."""
        return self.ids[int(self.sent_offsets[j]):int(self.sent_offsets[j + 1])]

    def doc_sentences(self, i: int) -> list[torch.Tensor]:
        """Token-id tensors (views into `ids`) of the sentences of document `i`."""
        lo, hi = int(self.doc_offsets[i]), int(self.doc_offsets[i + 1])
        return [self.sentence(j) for j in range(lo, hi)]


def tokenize_documents(tok: Tokenizer, docs: list[Document]) -> TokenizedCorpus:
    """Sentence-split and encode (no special tokens) every document into a TokenizedCorpus."""
    sentences: list[str] = []
    doc_of: list[int] = []  # document index of each sentence
    for i, doc in enumerate(docs):
        ss = doc.sentences()
        sentences.extend(ss)
        doc_of.extend([i] * len(ss))
    encoded: list[list[int]] = []
    for lo in range(0, len(sentences), _CHUNK):
        encoded.extend(encode_sentences(tok, sentences[lo:lo + _CHUNK]))

    lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
    keep = lengths > 0  # e.g. a "sentence" of control characters normalizes to nothing
    lengths = lengths[keep]
    doc_of_kept = np.asarray(doc_of, dtype=np.int64)[keep]
    n_tokens = int(lengths.sum())
    # Empty sentences contribute no tokens, so chaining all of them is the same as the kept ones.
    ids = np.fromiter(itertools.chain.from_iterable(encoded), dtype=np.int32, count=n_tokens)
    sent_offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=sent_offsets[1:])

    # Sentences per doc; docs left with none are dropped entirely.
    per_doc = np.bincount(doc_of_kept, minlength=len(docs))
    kept_docs = np.flatnonzero(per_doc)
    doc_offsets = np.zeros(len(kept_docs) + 1, dtype=np.int64)
    np.cumsum(per_doc[kept_docs], out=doc_offsets[1:])
    return TokenizedCorpus(
        ids=torch.from_numpy(ids), sent_offsets=torch.from_numpy(sent_offsets),
        doc_offsets=torch.from_numpy(doc_offsets),
        topics=[docs[i].topic for i in kept_docs], titles=[docs[i].title for i in kept_docs])
