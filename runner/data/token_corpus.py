"""A corpus tokenized into flat token ids with sentence and document offsets: encoded chunk by chunk in one
streaming pass (in parallel worker processes on large corpora) into a directory of memory-mapped arrays per
split, which runner.data.pretraining builds once under the cache's lock and later runs share."""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import multiprocessing
import os
import pathlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from runner.data.corpus import Document
from runner.data.sentence_ids import encode_in_worker, encode_texts, init_worker

# Bump when the on-disk layout changes: it is part of the cache directory name (and checked in meta.json),
# so older caches, including version 1's single `.pt` files, are never read.
TOKENIZED_FORMAT = 4  # 4: docs.jsonl (titles and topics) per split

# Worker processes start only after this many characters were encoded in-process, unless the corpus is known to be
# larger from the start (its files' size). A worker imports only numpy and tokenizers (runner/data/sentence_ids.py,
# ~0.4 s), while in-process encoding is multi-threaded in Rust but splits sentences and converts ids on one core:
# on 2 cores the 8 MB benchmark corpus (7.4M characters) took 2.4 s in-process against 2.7 s with workers, while
# 2 workers encode a chunk of 32 MB in 7.9 s against 11.2 s.
CHARS_PER_PROC = 16_000_000

# Characters of documents encoded per chunk: bounds the documents and transient Python token lists held at once
# (2 x num_proc chunks are in flight), whatever the corpus size; a chunk is also the unit of progress an interrupted
# pass resumes from.
CHUNK_CHARS = 1_000_000


class TokenIds:
    """Read-only 1-D int32 token ids backed by a compact (uint16/uint32) memory-mapped file.

    Slicing and indexing read only the touched pages and return int32 torch tensors; numel/len/dim/shape/dtype
    need no read. It is not a tensor: other tensor methods and torch functions raise (a corpus can be far larger
    than memory), and a full int32 copy is asked for explicitly with tensor(), numpy() or tolist(); array() is
    the memory map itself."""

    def __init__(self, path: pathlib.Path | str, dtype: str, n: int) -> None:
        self.path, self.file_dtype, self.n = pathlib.Path(path), dtype, int(n)
        # np.memmap cannot map an empty file.
        self._mm = np.memmap(self.path, dtype=dtype, mode="r", shape=(self.n,)) if self.n else np.zeros(0, dtype)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle as the path, so DataLoader workers re-map the file (sharing the page cache) instead of copying.
        return TokenIds, (self.path, self.file_dtype, self.n)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype every read returns (the file itself is narrower)."""
        return torch.int32

    @property
    def shape(self) -> torch.Size:
        """torch.Size([num_tokens])."""
        return torch.Size([self.n])

    def size(self, dim: int | None = None) -> torch.Size | int:
        """As Tensor.size."""
        return self.shape if dim is None else self.shape[dim]

    def dim(self) -> int:
        """Always 1."""
        return 1

    def numel(self) -> int:
        """Number of tokens."""
        return self.n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, torch.Tensor):
            key = key.numpy()
        out = self._mm[key]
        if np.ndim(out) == 0:
            return torch.tensor(int(out), dtype=torch.int32)
        # Widen to int32 (a copy): torch's uint16 support is partial, and consumers concatenate with int32.
        return torch.from_numpy(np.array(out, dtype=np.int32))

    def array(self) -> np.ndarray:
        """The memory map itself (uint16/uint32, read-only): slices read only the pages they touch."""
        return self._mm

    def numpy(self) -> np.ndarray:
        """All ids as a new int32 numpy array."""
        return np.array(self._mm, dtype=np.int32)

    def tolist(self) -> list[int]:
        """All ids as Python ints."""
        return self._mm.tolist()

    def tensor(self) -> torch.Tensor:
        """All ids as a new int32 torch tensor."""
        return torch.from_numpy(self.numpy())

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.numpy() if dtype is None else self.numpy().astype(dtype)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.tensor())

    def __getattr__(self, name: str) -> Any:
        # Only attributes defined above exist: a tensor method would need the whole corpus in memory, so that
        # copy is asked for by name rather than made silently.
        if name.startswith("_"):  # never for our own state (e.g. during unpickling): avoids recursion
            raise AttributeError(name)
        raise AttributeError(f"TokenIds has no attribute {name!r}: it is a memory-mapped corpus, not a tensor; "
                             "slice it (ids[a:b]) to read a range, or call .tensor() for a full int32 copy "
                             f"(then .tensor().{name})")

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        """torch functions refuse a TokenIds rather than copy the corpus: pass ids.tensor() (or a slice)."""
        name = getattr(func, "__name__", str(func))
        raise TypeError(f"{name}() was given a TokenIds, a memory-mapped corpus, not a tensor; pass a slice "
                        "(ids[a:b]) or .tensor(), an explicit full int32 copy")

    def __repr__(self) -> str:
        return f"TokenIds({str(self.path)!r}, {self.file_dtype}, n={self.n})"


@dataclass
class TokenizedCorpus:
    """Token ids of all sentences concatenated, plus offsets to recover sentences and documents."""

    ids: torch.Tensor | TokenIds  # int32 [num_tokens]; TokenIds when loaded from the cache
    sent_offsets: torch.Tensor  # int64 [num_sentences + 1], into ids
    doc_offsets: torch.Tensor  # int64 [num_docs + 1], into sentences
    topics: Sequence[str]  # per document; read from docs.jsonl on first use when loaded from the cache
    titles: Sequence[str]

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


def default_num_proc(num_proc: int | None) -> int:
    """`num_proc`, or when None min(4, CPU count)."""
    return max(1, num_proc if num_proc is not None else min(4, os.cpu_count() or 1))


def _chunks(docs: Iterable[Document], chars: int) -> Iterator[list[Document]]:
    """Consecutive runs of documents holding about `chars` characters each, in order."""
    buf: list[Document] = []
    n = 0
    for d in docs:
        buf.append(d)
        n += len(d.text)
        if n >= chars:
            yield buf
            buf, n = [], 0
    if buf:
        yield buf


EncodedChunk = tuple[list[Document], np.ndarray, np.ndarray, np.ndarray]  # documents, ids, lengths, per-doc counts


def encode_stream(tok: Tokenizer, docs: Iterable[Document], num_proc: int | None = 1,
                  size: int | None = None) -> Iterator[EncodedChunk]:
    """Sentence-split and encode (no special tokens) documents chunk by chunk (CHUNK_CHARS characters), in order.
    With num_proc > 1, chunks go to spawned workers while this process reads the next ones (at most 2 x num_proc
    chunks in flight, so memory stays bounded) and come back in order: from the first chunk when `size` (the
    corpus's bytes, if known) reaches CHARS_PER_PROC, else once CHARS_PER_PROC characters were encoded in-process.
    The output is the same either way."""
    workers = default_num_proc(num_proc)
    read, pool = (CHARS_PER_PROC if size is not None and size >= CHARS_PER_PROC else 0), None
    pending: collections.deque = collections.deque()  # (chunk, its async result), in reading order
    try:
        for chunk in _chunks(docs, CHUNK_CHARS):
            if workers > 1 and read >= CHARS_PER_PROC:
                if pool is None:
                    # spawn, not fork: the Rust tokenizer's thread pool may already exist and does not survive fork.
                    ctx = multiprocessing.get_context("spawn")
                    pool = ctx.Pool(workers, initializer=init_worker, initargs=(tok.to_str(),))
                pending.append((chunk, pool.apply_async(encode_in_worker, ([d.text for d in chunk],))))
                while len(pending) >= 2 * workers:  # two chunks per worker in flight evens out their sizes
                    c, result = pending.popleft()
                    yield (c, *result.get())
            else:
                yield (chunk, *encode_texts(tok, [d.text for d in chunk]))
                read += sum(len(d.text) for d in chunk)
        while pending:
            c, result = pending.popleft()
            yield (c, *result.get())
    finally:
        if pool is not None:
            pool.terminate()


@dataclass
class Encoded:
    """Encoded documents that kept at least one sentence: titles, topics, ids, sentence lengths, sentences per doc."""

    titles: list[str]
    topics: list[str]
    ids: np.ndarray
    lengths: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, chunk: EncodedChunk, select: np.ndarray | None = None) -> Encoded:
        """The chunk's documents (those where `select` is True, if given), dropping documents with no sentences."""
        docs, ids, lengths, per_doc = chunk
        keep = per_doc > 0 if select is None else (per_doc > 0) & select
        if keep.all():
            return cls([d.title for d in docs], [d.topic for d in docs], ids, lengths, per_doc)
        sent_keep = np.repeat(keep, per_doc)  # (sentences,)
        kept = np.flatnonzero(keep)
        return cls([docs[i].title for i in kept], [docs[i].topic for i in kept], ids[np.repeat(sent_keep, lengths)],
                   lengths[sent_keep], per_doc[keep])


def tokenize_documents(tok: Tokenizer, docs: Iterable[Document], num_proc: int | None = 1) -> TokenizedCorpus:
    """Encode documents into an in-memory TokenizedCorpus (small corpora and tests; runs write to disk with
    TokenizedWriter instead). Documents left with no sentences are dropped."""
    parts = [Encoded.of(c) for c in encode_stream(tok, docs, num_proc)]
    ids = np.concatenate([p.ids for p in parts]) if parts else np.zeros(0, np.int32)
    lengths = np.concatenate([p.lengths for p in parts]) if parts else np.zeros(0, np.int64)
    counts = np.concatenate([p.counts for p in parts]) if parts else np.zeros(0, np.int64)
    return TokenizedCorpus(ids=torch.from_numpy(ids.astype(np.int32, copy=False)),
                           sent_offsets=torch.from_numpy(_offsets(lengths)), doc_offsets=torch.from_numpy(_offsets(counts)),
                           topics=[t for p in parts for t in p.topics], titles=[t for p in parts for t in p.titles])


def _offsets(lengths: np.ndarray) -> np.ndarray:
    """[0, cumsum(lengths)...] as int64."""
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def ids_dtype(vocab_size: int) -> str:
    """The narrowest unsigned numpy dtype holding ids below `vocab_size`: uint16 up to 65,536, else uint32."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


_json = json.JSONEncoder(ensure_ascii=False).encode  # one value as json.dumps(value, ensure_ascii=False) writes it


class TokenizedWriter:
    """Appends encoded documents to a split directory: ids.bin (raw uint16/uint32) grows chunk by chunk, so a
    corpus of any size is written holding one chunk; finish() adds sent_offsets.npy, doc_offsets.npy, meta.json.

    Every file is only appended to until finish(), so position() (the files' sizes) marks a point the writer can
    go back to: TokenizedWriter(directory, vocab_size, at=position) truncates the files there and appends after it
    (a build resumed after an interruption)."""

    FILES = ("ids.bin", "sent_lengths.tmp", "doc_counts.tmp", "docs.jsonl")  # the files that grow, in that order

    def __init__(self, directory: pathlib.Path | str, vocab_size: int, at: dict[str, int] | None = None):
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.vocab_size, self.dtype = vocab_size, ids_dtype(vocab_size)
        self._files = {}
        for name in self.FILES:
            f = open(self.dir / name, "r+b" if at else "wb")  # ids, int64 sentence lengths and sentences per
            if at:  # document (summed in finish()), a JSON line of title and topic per document
                f.truncate(at[name])
                f.seek(at[name])
            self._files[name] = f
        size = np.dtype(self.dtype).itemsize
        self.num_tokens = at["ids.bin"] // size if at else 0
        self.num_sentences = at["sent_lengths.tmp"] // 8 if at else 0
        self.num_docs = at["doc_counts.tmp"] // 8 if at else 0

    def add(self, part: Encoded) -> None:
        """Append documents."""
        if part.ids.size and (int(part.ids.min()) < 0 or int(part.ids.max()) >= self.vocab_size):
            raise ValueError(f"token ids outside [0, {self.vocab_size}) cannot be stored as {self.dtype}")
        ids, lengths, counts, docs = (self._files[name] for name in self.FILES)
        part.ids.astype(self.dtype).tofile(ids)
        part.lengths.astype(np.int64).tofile(lengths)
        part.counts.astype(np.int64).tofile(counts)
        # json.dumps({"title": t, "topic": p}, ensure_ascii=False) written out: a third of the cost per document
        docs.write("".join(f'{{"title": {_json(t)}, "topic": {_json(p)}}}\n'
                           for t, p in zip(part.titles, part.topics)).encode("utf-8"))
        self.num_tokens += int(part.ids.size)
        self.num_sentences += len(part.lengths)
        self.num_docs += len(part.counts)

    def position(self) -> dict[str, int]:
        """The files' sizes now, everything added so far written through to the operating system."""
        out = {}
        for name, f in self._files.items():
            f.flush()
            out[name] = f.tell()
        return out

    def finish(self) -> None:
        """Write the offsets and meta.json; the directory is then loadable with load_tokenized."""
        for f in self._files.values():
            f.close()
        for name, offsets in (("sent_lengths.tmp", "sent_offsets.npy"), ("doc_counts.tmp", "doc_offsets.npy")):
            _write_offsets(self.dir / name, self.dir / offsets)
            (self.dir / name).unlink()
        meta = {"format": TOKENIZED_FORMAT, "dtype": self.dtype, "num_tokens": self.num_tokens,
                "num_sentences": self.num_sentences, "num_docs": self.num_docs}
        (self.dir / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")


_OFFSET_BLOCK = 1 << 20  # lengths summed at a time by _write_offsets (8 MB)


def _write_offsets(lengths: pathlib.Path, out: pathlib.Path) -> None:
    """The .npy file of [0, cumsum(lengths)...] (int64) from a raw int64 file, a block at a time: neither array is
    held or mapped whole, so memory stays flat however long the split."""
    n = lengths.stat().st_size // 8
    with open(lengths, "rb") as src, open(out, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<i8", "fortran_order": False, "shape": (n + 1,)})
        total = np.zeros(1, dtype=np.int64)
        total.tofile(f)
        while (block := np.fromfile(src, dtype=np.int64, count=_OFFSET_BLOCK)).size:
            sums = np.cumsum(block)
            sums += total
            sums.tofile(f)
            total[0] = sums[-1]


def save_tokenized(tc: TokenizedCorpus, directory: pathlib.Path | str, vocab_size: int) -> None:
    """Write an in-memory TokenizedCorpus into `directory` (see TokenizedWriter)."""
    w = TokenizedWriter(directory, vocab_size)
    w.add(Encoded(tc.titles, tc.topics, np.asarray(tc.ids.numpy()), np.diff(tc.sent_offsets.numpy()),
                  np.diff(tc.doc_offsets.numpy())))
    w.finish()


PROGRESS = "progress.json"  # in the directory tokenize_splits writes: how far an interrupted pass got
# Characters encoded between two progress records (whole chunks). Replacing the record costs a few milliseconds (the
# file system writes the new one out before the rename), so not after every chunk: this bounds the work an
# interruption loses to a few seconds.
PROGRESS_CHARS = 16_000_000
_PROGRESS_VERSION = 1  # bump when the writers' files or the record change: an older record then starts over


def _tokenizer_hash(tok: Tokenizer) -> str:
    """A short hash of the tokenizer's JSON: a record left by another tokenizer is not resumed."""
    return hashlib.sha1(tok.to_str().encode("utf-8")).hexdigest()[:16]


def _read_progress(directory: pathlib.Path, names: Sequence[str], tok: Tokenizer) -> dict[str, Any] | None:
    """The progress record of an interrupted pass into `directory`, or None (none, another version or tokenizer,
    or files shorter than it says: then the pass starts from zero)."""
    try:
        record = json.loads((directory / PROGRESS).read_text(encoding="utf-8"))
        usable = (record["version"] == _PROGRESS_VERSION and record["tokenizer"] == _tokenizer_hash(tok)
                  and sorted(record["files"]) == sorted(names)
                  and all((directory / name / f).stat().st_size >= size
                          for name, sizes in record["files"].items() for f, size in sizes.items()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return record if usable else None


def _record_progress(directory: pathlib.Path, record: dict[str, Any]) -> None:
    """Replace the progress record (a rename: a kill leaves the old record or the new one, never half of one)."""
    tmp = directory / (PROGRESS + ".tmp")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    os.replace(tmp, directory / PROGRESS)


def tokenize_splits(docs: Iterable[Document], split: Callable[[Document], str], names: Sequence[str],
                    tok: Tokenizer, directory: pathlib.Path, num_proc: int | None = None,
                    size: int | None = None) -> dict[str, int]:
    """One streaming pass: encode documents and append each to the directory of its split (directory/<name>);
    returns the documents per split. Memory holds a few chunks of documents, not the corpus. size: the corpus's
    bytes, if known (encode_stream).

    Every PROGRESS_CHARS characters (whole chunks), directory/progress.json records the documents written and the
    files' sizes. A pass into a directory holding such a record from an interrupted pass (same tokenizer) resumes
    after it: the documents it covers are read but not encoded again, and the files come out byte for byte as an
    uninterrupted pass writes them (chunks are encoded independently and appended in order)."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    record = _read_progress(directory, names, tok)
    if record is None:
        record = {"version": _PROGRESS_VERSION, "tokenizer": _tokenizer_hash(tok), "docs": 0, "chunks": 0}
    writers = {name: TokenizedWriter(directory / name, tok.get_vocab_size(), (record.get("files") or {}).get(name))
               for name in names}
    done, chunks, since = record["docs"], record["chunks"], 0  # documents and chunks written, characters unrecorded
    for chunk in encode_stream(tok, itertools.islice(docs, done, None), num_proc, size):
        where = np.array([split(d) for d in chunk[0]])
        for name, w in writers.items():
            select = where == name
            if select.any():
                w.add(Encoded.of(chunk, select))
        done, chunks, since = done + len(chunk[0]), chunks + 1, since + sum(len(d.text) for d in chunk[0])
        if since >= PROGRESS_CHARS:
            record.update(docs=done, chunks=chunks, files={name: w.position() for name, w in writers.items()})
            _record_progress(directory, record)
            since = 0
    for w in writers.values():
        w.finish()
    (directory / PROGRESS).unlink(missing_ok=True)
    return {name: w.num_docs for name, w in writers.items()}


def load_tokenized(directory: pathlib.Path | str) -> TokenizedCorpus:
    """Map a directory written by save_tokenized; token ids are read lazily, page by page."""
    directory = pathlib.Path(directory)
    try:
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != TOKENIZED_FORMAT:
            raise ValueError(f"format {meta.get('format')}, expected {TOKENIZED_FORMAT}")
        ids = TokenIds(directory / "ids.bin", meta["dtype"], meta["num_tokens"])
        # Copy-on-write maps: torch needs writable arrays to wrap without a warning; pages stay shared until
        # written, which nothing does.
        sent = torch.from_numpy(np.load(directory / "sent_offsets.npy", mmap_mode="c"))
        doc = torch.from_numpy(np.load(directory / "doc_offsets.npy", mmap_mode="c"))
        if (len(sent) - 1, len(doc) - 1) != (meta["num_sentences"], meta["num_docs"]):
            raise ValueError("offset arrays disagree with meta.json")
    except Exception as e:
        raise RuntimeError(f"tokenized cache {directory} is unreadable ({type(e).__name__}: {e}); "
                           f"delete it to rebuild") from e
    docs = directory / "docs.jsonl"
    return TokenizedCorpus(ids=ids, sent_offsets=sent, doc_offsets=doc, topics=DocColumn(docs, "topic"),
                           titles=DocColumn(docs, "title"))


class DocColumn(Sequence):
    """One field of a split's docs.jsonl, read on first use: training never needs titles, so a run over a
    corpus of millions of documents does not hold them."""

    def __init__(self, path: pathlib.Path, field: str):
        self.path, self.field = path, field
        self._values: list[str] | None = None

    def _all(self) -> list[str]:
        if self._values is None:
            with open(self.path, encoding="utf-8") as f:
                self._values = [json.loads(line)[self.field] for line in f]
        return self._values

    def __getitem__(self, i: Any) -> Any:
        return self._all()[i]

    def __len__(self) -> int:
        return len(self._all())

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, Sequence) else NotImplemented
