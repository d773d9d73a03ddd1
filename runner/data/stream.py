"""A tokenized corpus seen as one token stream with a separator between documents, addressed by position.

Every example format is a set of ranges in this stream (runner/data/examples.py): a block of packed sentences
is one range, a sentence pair two. Examples are then a few integers each, and their tokens are read from the
memory-mapped ids only when a batch needs them, so memory stays flat in corpus size."""
from __future__ import annotations

import numpy as np

from runner.data.token_corpus import TokenIds, TokenizedCorpus


class TokenStream:
    """Stream position p holds either a token of the corpus or the separator before a document (all but the
    first): the token ids[i] of document d sits at position i + d, the separator before document d at
    doc_start[d] + d - 1."""

    def __init__(self, corpus: TokenizedCorpus, sep: int):
        self.sep = int(sep)
        ids = corpus.ids
        self.ids = ids.array() if isinstance(ids, TokenIds) else ids.numpy()  # memmap pages, or in-memory ids
        self.sent_start = corpus.sent_offsets.numpy()  # (S + 1,) token offsets of the sentences
        self.doc_sent = corpus.doc_offsets.numpy()  # (D + 1,) sentence offsets of the documents
        self.doc_start = self.sent_start[self.doc_sent]  # (D + 1,) token offsets of the documents
        n_docs = len(self.doc_sent) - 1
        self.sep_pos = self.doc_start[1:-1] + np.arange(n_docs - 1)  # (D - 1,) stream positions of separators
        self.length = int(len(self.ids) + max(n_docs - 1, 0))

    def sentence_pos(self, j: int, doc: int) -> int:
        """Stream position of the first token of sentence j, which belongs to document doc."""
        return int(self.sent_start[j]) + doc

    def tokens(self, start: int, end: int) -> np.ndarray:
        """Stream positions [start, end) as int32 ids, separators included."""
        k0, k1 = np.searchsorted(self.sep_pos, [start, end], side="left")  # separators before start, before end
        a, b = start - k0, end - k1  # the same span in token coordinates
        out = np.asarray(self.ids[a:b], dtype=np.int32)
        if k1 > k0:  # separator k sits right before document k + 1's first token
            out = np.insert(out, self.doc_start[k0 + 1:k1 + 1] - a, np.int32(self.sep))
        return out

    def at(self, positions: np.ndarray) -> np.ndarray:
        """The ids (int32) at an array of stream positions, separators included; reads only their pages."""
        k = np.searchsorted(self.sep_pos, positions, side="left")  # separators before each position
        out = np.asarray(self.ids[positions - k], dtype=np.int32) if len(self.ids) else \
            np.zeros(len(positions), np.int32)
        is_sep = k < len(self.sep_pos)
        is_sep[is_sep] = self.sep_pos[k[is_sep]] == positions[is_sep]
        out[is_sep] = self.sep  # a separator's slot read a neighbouring token above; overwrite it
        return out

    def all(self) -> np.ndarray:
        """The whole stream as int32 ids."""
        return self.tokens(0, self.length)
