"""Tests for the memory-mapped tokenized cache: layout, parallel build, build-once locking, crash safety.
The tests of this file that train or start a process: tests/integration/test_tokenized_cache.py."""
from __future__ import annotations

import json
import pathlib
import pickle
import shutil

import numpy as np
import pytest
import torch

from runner.data import cache, sources
from runner.data import token_corpus as tokenized
from runner.data.corpus import SPLITS, Document, load_wiki, split_documents, split_of
from runner.data.pretraining import build_data
from runner.data.stream import TokenStream
from runner.data.token_corpus import (TOKENIZED_FORMAT, TokenIds, load_tokenized, save_tokenized,
                                   tokenize_documents)
from runner.data.tokenizer import train_tokenizer
from tests.conftest import make_cfg


@pytest.fixture(scope="module")
def docs() -> list[Document]:
    return load_wiki()[:400]


@pytest.fixture(scope="module")
def tok(docs):
    return train_tokenizer("bpe", (d.text for d in docs), 1000, lowercase=False)


def same(a, b) -> None:
    """Two TokenizedCorpus hold the same data."""
    assert a.ids.tolist() == b.ids.tolist()
    assert a.sent_offsets.tolist() == b.sent_offsets.tolist() and a.doc_offsets.tolist() == b.doc_offsets.tolist()
    assert a.titles == b.titles and a.topics == b.topics


def test_layout_and_load(tok, docs, tmp_path):
    tc = tokenize_documents(tok, docs)
    d = tmp_path / "split"
    d.mkdir()
    save_tokenized(tc, d, tok.get_vocab_size())
    assert sorted(p.name for p in d.iterdir()) == ["doc_offsets.npy", "docs.jsonl", "ids.bin", "meta.json",
                                                   "sent_offsets.npy"]
    assert (d / "ids.bin").stat().st_size == 2 * tc.num_tokens  # uint16
    meta = json.loads((d / "meta.json").read_text())
    assert meta["format"] == TOKENIZED_FORMAT and meta["dtype"] == "uint16" and meta["num_tokens"] == tc.num_tokens
    got = load_tokenized(d)
    assert isinstance(got.ids, TokenIds)
    assert got.titles._values is None, "titles are read only when asked for"
    same(tc, got)
    assert got.titles[3] == tc.titles[3] and len(got.topics) == tc.num_docs
    assert got.ids.dtype == torch.int32 and got.ids.dim() == 1 and got.num_tokens == tc.num_tokens
    assert got.sent_offsets.dtype == torch.int64
    for i in (0, 7, got.num_docs - 1):
        a, b = got.doc_sentences(i), tc.doc_sentences(i)
        assert all(x.dtype == torch.int32 and torch.equal(x, y) for x, y in zip(a, b))
        assert torch.cat(a).tolist() == torch.cat(b).tolist()
    assert torch.equal(got.ids[5], tc.ids[5]) and torch.equal(got.ids[torch.tensor([3, 1])], tc.ids[[3, 1]])
    assert int(got.ids.tensor().max()) == int(tc.ids.max())  # an explicit full int32 copy  # other tensor methods: a full int32 copy
    assert (TokenStream(got, 2).all() == TokenStream(tc, 2).all()).all()
    again = pickle.loads(pickle.dumps(got.ids))  # pickles as the path, re-maps the file
    assert again.tolist() == tc.ids.tolist()


def test_uint32_when_vocab_large(tmp_path):
    tc = tokenized.TokenizedCorpus(torch.tensor([70_000, 1, 65_536], dtype=torch.int32), torch.tensor([0, 2, 3]),
                                   torch.tensor([0, 2]), ["t"], ["a"])
    save_tokenized(tc, tmp_path, 80_000)
    assert (tmp_path / "ids.bin").stat().st_size == 12
    assert load_tokenized(tmp_path).ids.tolist() == [70_000, 1, 65_536]
    with pytest.raises(ValueError, match="outside"):
        save_tokenized(tc, tmp_path, 1000)


def test_empty_split_round_trips(tok, tmp_path):
    counts = tokenized.tokenize_splits([], lambda d: "train", SPLITS, tok, tmp_path, num_proc=1)
    assert counts == {"train": 0, "validation": 0, "test": 0}
    got = load_tokenized(tmp_path / "validation")
    assert (got.num_docs, got.num_sentences, got.num_tokens) == (0, 0, 0) and got.ids.tolist() == []


def test_crash_leaves_nothing_then_retry_builds(tmp_path):
    target = tmp_path / "c" / "split"

    def boom(d: pathlib.Path) -> None:
        (d / "half").write_text("x")
        raise RuntimeError("killed mid-build")

    with pytest.raises(RuntimeError, match="mid-build"):
        cache.cached_dir(target, boom, lambda p: p)
    assert not target.exists() and [p.name for p in target.parent.iterdir()] == ["split.lock"]
    out = cache.cached_dir(target, lambda d: (d / "ok").write_text("1"), lambda p: (p / "ok").read_text())
    assert out == "1" and not list(target.parent.glob(".split.*"))


def test_stale_temp_dir_removed(tmp_path):
    stale = tmp_path / ".split.abc.tmp"
    stale.mkdir()
    cache.cached_dir(tmp_path / "split", lambda d: None, lambda p: None)
    assert not stale.exists() and (tmp_path / "split").is_dir()


def test_an_older_format_is_refused_with_the_fix(tok, docs, tmp_path):
    save_tokenized(tokenize_documents(tok, docs[:50]), tmp_path, tok.get_vocab_size())
    meta = json.loads((tmp_path / "meta.json").read_text())
    meta["format"] = TOKENIZED_FORMAT - 1
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(RuntimeError, match="delete it to rebuild"):
        load_tokenized(tmp_path)


def test_tokenize_splits_streams_documents_chunk_by_chunk(tok, docs, tmp_path, monkeypatch):
    monkeypatch.setattr(tokenized, "CHUNK_CHARS", 5_000)
    pulled, seen_at_write = [0], []

    def stream():
        for d in docs:
            pulled[0] += 1
            yield d

    add = tokenized.TokenizedWriter.add
    monkeypatch.setattr(tokenized.TokenizedWriter, "add", lambda self, part: (seen_at_write.append(pulled[0]),
                                                                           add(self, part))[1])
    which = lambda d: split_of(d.title, 0.1, 0.1)  # noqa: E731
    counts = tokenized.tokenize_splits(stream(), which, SPLITS, tok, tmp_path, num_proc=1)
    assert seen_at_write[0] < len(docs) / 10, "the first chunk is written before most documents are read"
    assert len(set(seen_at_write)) > 10, "written as the documents arrive"
    for name, part in split_documents(docs, 0.1, 0.1).items():  # the same as tokenizing each split in memory
        same(load_tokenized(tmp_path / name), tokenize_documents(tok, part))
        assert counts[name] == len(part)


def test_cached_corpus_is_not_read_again(tmp_path, monkeypatch):
    cfg = make_cfg("data.max_docs=120", f"data.cache_dir={tmp_path}")
    kw = dict(tokenizer_kind="wordpiece", vocab_size=500, lowercase=True, pairs=False)
    first = build_data(cfg.data, **kw)
    monkeypatch.setattr(sources.DocumentSource, "__iter__", lambda self: pytest.fail("the corpus was read again"))
    again = build_data(cfg.data, **kw)
    assert again.corpus_report == first.corpus_report and again.corpus_report["documents_used"] == 120
    for name in SPLITS:
        same(again.splits[name], first.splits[name])


def files_of(root: pathlib.Path) -> dict[str, bytes]:
    """Every file under root, by relative path, with its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def count_encoded(monkeypatch) -> list[int]:
    """The documents of each chunk encoded from now on (in this process), in order."""
    chunks: list[int] = []
    encode = tokenized.encode_texts
    monkeypatch.setattr(tokenized, "encode_texts",
                        lambda tok, texts: (chunks.append(len(texts)), encode(tok, texts))[1])
    return chunks


def stop_after(monkeypatch, n: int) -> None:
    """Interrupt tokenize_splits (as Ctrl-C does) once it recorded its progress n times."""
    record, times = tokenized._record_progress, [0]

    def record_then_stop(directory: pathlib.Path, progress: dict) -> None:
        record(directory, progress)
        times[0] += 1
        if times[0] == n:
            raise KeyboardInterrupt

    monkeypatch.setattr(tokenized, "_record_progress", record_then_stop)


def small_chunks(monkeypatch) -> None:
    """Chunks of 20,000 characters, progress recorded every other chunk or so."""
    monkeypatch.setattr(tokenized, "CHUNK_CHARS", 20_000)
    monkeypatch.setattr(tokenized, "PROGRESS_CHARS", 40_000)


def test_an_interrupted_pass_resumes_without_encoding_again(tok, docs, tmp_path, monkeypatch):
    small_chunks(monkeypatch)
    which = lambda d: split_of(d.title, 0.1, 0.1)  # noqa: E731
    encoded = count_encoded(monkeypatch)
    whole = tokenized.tokenize_splits(docs, which, SPLITS, tok, tmp_path / "whole", num_proc=1)
    all_chunks = list(encoded)
    assert len(all_chunks) > 8

    encoded.clear()
    with monkeypatch.context() as m:
        stop_after(m, 2)
        with pytest.raises(KeyboardInterrupt):
            tokenized.tokenize_splits(docs, which, SPLITS, tok, tmp_path / "resumed", num_proc=1)
    done = json.loads((tmp_path / "resumed" / tokenized.PROGRESS).read_text())["chunks"]
    assert 2 < done < len(all_chunks) - 2 and encoded == all_chunks[:done]

    encoded.clear()
    again = tokenized.tokenize_splits(docs, which, SPLITS, tok, tmp_path / "resumed", num_proc=1)
    assert encoded == all_chunks[done:], "the finished chunks are not encoded again"
    assert again == whole
    assert files_of(tmp_path / "resumed") == files_of(tmp_path / "whole"), "byte for byte the uninterrupted pass"


def test_a_record_of_another_tokenizer_or_longer_than_the_files_starts_over(tok, docs, tmp_path, monkeypatch):
    small_chunks(monkeypatch)
    which = lambda d: split_of(d.title, 0.1, 0.1)  # noqa: E731
    tokenized.tokenize_splits(docs, which, SPLITS, tok, tmp_path / "whole", num_proc=1)
    for spoil in ("tokenizer", "files"):
        out = tmp_path / spoil
        with monkeypatch.context() as m:
            stop_after(m, 2)
            with pytest.raises(KeyboardInterrupt):
                tokenized.tokenize_splits(docs, which, SPLITS, tok, out, num_proc=1)
        record = json.loads((out / tokenized.PROGRESS).read_text())
        if spoil == "tokenizer":
            record["tokenizer"] = "0" * 16
        else:  # e.g. a machine crash lost the end of a file the record counts
            record["files"]["train"]["ids.bin"] += 2
        (out / tokenized.PROGRESS).write_text(json.dumps(record))
        with monkeypatch.context() as m:
            encoded = count_encoded(m)
            tokenized.tokenize_splits(docs, which, SPLITS, tok, out, num_proc=1)
        assert sum(encoded) == len(docs), f"a spoiled record ({spoil}) starts from the first document"
        assert files_of(out) == files_of(tmp_path / "whole")


def test_an_interrupted_build_data_resumes_into_the_same_cache(tmp_path, monkeypatch):
    cfg = make_cfg("data.max_docs=120", f"data.cache_dir={tmp_path}")
    kw = dict(tokenizer_kind="wordpiece", vocab_size=500, lowercase=True, pairs=False)
    monkeypatch.setattr(tokenized, "CHUNK_CHARS", 5_000)
    monkeypatch.setattr(tokenized, "PROGRESS_CHARS", 5_000)  # a record after every chunk
    first = build_data(cfg.data, **kw)  # trains and caches the tokenizer; the tokenized cache is set aside
    built = next((tmp_path / "tokenized").glob("*-v*[0-9]"))
    reference = files_of(built)
    shutil.rmtree(built)

    with monkeypatch.context() as m:
        stop_after(m, 3)
        with pytest.raises(KeyboardInterrupt):
            build_data(cfg.data, **kw)
    partial = built.with_name(f".{built.name}.partial")
    assert not built.exists() and (partial / tokenized.PROGRESS).is_file(), "the interruption keeps the work done"

    encoded = count_encoded(monkeypatch)
    again = build_data(cfg.data, **kw)
    assert 0 < sum(encoded) < 120 - 3, "only the documents after the third chunk are encoded"
    assert not partial.exists() and files_of(built) == reference
    assert again.corpus_report == first.corpus_report


def test_offsets_are_summed_block_by_block_into_the_file_np_save_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(tokenized, "_OFFSET_BLOCK", 3)
    for lengths in ([], [5], [4, 0, 7, 1, 1, 9, 2]):
        np.asarray(lengths, dtype=np.int64).tofile(tmp_path / "lengths")
        tokenized._write_offsets(tmp_path / "lengths", tmp_path / "offsets.npy")
        np.save(tmp_path / "expected.npy", np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
        assert (tmp_path / "offsets.npy").read_bytes() == (tmp_path / "expected.npy").read_bytes()
