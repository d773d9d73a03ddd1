"""Token ids of sentences: the encoding step of tokenization, importing only numpy and tokenizers (not torch), so
the worker processes that run it in parallel start in a fraction of a second."""

from __future__ import annotations

import itertools
import os

import numpy as np
from tokenizers import Tokenizer

from runner.data.corpus import split_sentences

# Sentences per encode call. Small batches are faster per sentence (1.6 s against 2.4 s for the 110k sentences of
# 8 MB at 50,000 a call, single-threaded, byte-level BPE): the Encoding objects of a call stay in cache-sized memory.
ENCODE_BATCH = 250


def spaces_are_tokens(tok: Tokenizer) -> bool:
    """Whether the tokenizer keeps a space as a token of its own (the char kind) rather than dropping it or
    folding it into the next word (WordPiece, word, unigram's "▁", byte-level BPE's "Ġ")."""
    pre = tok.pre_tokenizer
    return pre is not None and " " in [piece for piece, _ in pre.pre_tokenize_str("a b")]


def _check_plain(tok: Tokenizer) -> None:
    """ValueError if the tokenizer pads or truncates: either would silently alter corpus token streams."""
    if tok.padding is not None or tok.truncation is not None:
        raise ValueError("encode_sentences needs a tokenizer without padding/truncation enabled")


def _with_spaces(sentences: list[str]) -> list[str]:
    """Each sentence with the space that follows it, for a tokenizer whose tokens include spaces (the char kind).

    Sentence splitting strips the whitespace between sentences, and sentences are concatenated into one token
    stream: without it a character-level model would read "end.Next". A paragraph's line break becomes that space
    too, and a document's last sentence ends with one before the document separator."""
    return [s + " " for s in sentences]


def encode_sentences(tok: Tokenizer, sentences: list[str]) -> list[list[int]]:
    """Token ids of each sentence, without special tokens, via one parallel batch call. For a tokenizer whose
    tokens include spaces (the char kind) each sentence is encoded with a space after it (_with_spaces)."""
    _check_plain(tok)
    if not sentences:
        return []
    if spaces_are_tokens(tok):
        sentences = _with_spaces(sentences)
    # encode_batch_fast skips offset tracking, which we never use.
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
    return [e.ids for e in encode(sentences, add_special_tokens=False)]


def encode_texts(tok: Tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids (int32) of the sentences of documents' texts (split_sentences), their lengths with empty sentences
    left out, and the kept sentences per document (0: none). The same ids as encode_sentences, ENCODE_BATCH at a
    time."""
    _check_plain(tok)
    sentences: list[str] = []
    counts: list[int] = []  # sentences per document, empty ones still counted
    for text in texts:
        ss = split_sentences(text)
        sentences.extend(ss)
        counts.append(len(ss))
    per_doc = np.array(counts, dtype=np.int64)
    if sentences and spaces_are_tokens(tok):
        sentences = _with_spaces(sentences)
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
    lengths = np.zeros(len(sentences), dtype=np.int64)
    ids: list[list[int]] = []
    for lo in range(0, len(sentences), ENCODE_BATCH):
        batch = [e.ids for e in encode(sentences[lo:lo + ENCODE_BATCH], add_special_tokens=False)]
        lengths[lo:lo + len(batch)] = [len(x) for x in batch]
        ids.extend(batch)
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()))
    keep = lengths > 0  # e.g. a "sentence" of control characters normalizes to nothing
    if keep.all():
        return flat, lengths, per_doc
    doc_of = np.repeat(np.arange(len(texts)), per_doc)  # the document of each sentence
    return flat, lengths[keep], np.bincount(doc_of[keep], minlength=len(texts)).astype(np.int64)


_worker_tok: Tokenizer | None = None


def init_worker(tok_json: str) -> None:
    """Pool initializer: rebuild the tokenizer from JSON once per worker process."""
    global _worker_tok
    # The processes are the parallelism: a Rust thread pool per worker would oversubscribe the cores.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _worker_tok = Tokenizer.from_str(tok_json)


def encode_in_worker(texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """encode_texts with the worker's tokenizer (init_worker)."""
    assert _worker_tok is not None, "init_worker did not run in this process"
    return encode_texts(_worker_tok, texts)
