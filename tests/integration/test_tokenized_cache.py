"""Tests for the memory-mapped tokenized cache: layout, parallel build, build-once locking, crash safety.
This file holds the tests that train or start a process; the others: tests/unit/test_tokenized_cache.py."""
from __future__ import annotations

import itertools
import json
import multiprocessing
import pathlib

import torch

from runner.data import cache
from runner.data import token_corpus as tokenized
from runner.data.corpus import Document
from runner.data.token_corpus import (load_tokenized, save_tokenized,
                                   tokenize_documents)
from tests.unit.test_tokenized_cache import same
from tests.unit import test_tokenized_cache as unit

docs = unit.docs  # the unit tier's fixture, shared
tok = unit.tok  # the unit tier's fixture, shared


def test_parallel_identical_to_single(tok, docs, monkeypatch):
    # Empty docs at a chunk edge and in the middle must be dropped the same way by workers.
    mixed = [Document("e0", "t", ""), *docs[:150], Document("e1", "t", "  "), *docs[150:]]
    one = tokenize_documents(tok, mixed, num_proc=1)
    monkeypatch.setattr(tokenized, "CHARS_PER_PROC", 1)  # force workers even for this small corpus
    monkeypatch.setattr(tokenized, "CHUNK_CHARS", 10_000)  # many chunks: one in-process, then chunks in flight on workers
    two = tokenize_documents(tok, mixed, num_proc=2)
    same(one, two)
    assert "e0" not in two.titles and "e1" not in two.titles and two.num_docs == len(docs)


def _request(directory: str, marker: str, out: str) -> None:
    """One process asking for a split: the build is slow and counts itself in `marker`."""
    import time

    def build(d: pathlib.Path) -> None:
        with open(marker, "a") as f:
            f.write("built\n")
        time.sleep(1.0)  # long enough that the other process arrives mid-build
        tc = tokenized.TokenizedCorpus(torch.arange(10, dtype=torch.int32), torch.tensor([0, 4, 10]),
                                       torch.tensor([0, 2]), ["topic"], ["title"])
        save_tokenized(tc, d, 100)

    tc = cache.cached_dir(directory, build, load_tokenized)
    pathlib.Path(out).write_text(json.dumps([tc.ids.tolist(), tc.sent_offsets.tolist(), list(tc.titles)]))


def test_two_processes_build_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    target, marker = str(tmp_path / "split"), str(tmp_path / "marker")
    procs = [ctx.Process(target=_request, args=(target, marker, str(tmp_path / f"out{i}"))) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert pathlib.Path(marker).read_text() == "built\n"
    outs = [json.loads((tmp_path / f"out{i}").read_text()) for i in range(2)]
    assert outs[0] == outs[1] == [list(range(10)), [0, 4, 10], ["title"]]


def _tokenize_until_killed(tok_file: str, docs: list, out: str, marker: str) -> None:
    """A builder that reports its third chunk done in `marker`, then waits to be killed."""
    import time

    from runner.data.corpus import SPLITS, split_of
    from tokenizers import Tokenizer

    tokenized.CHUNK_CHARS = tokenized.PROGRESS_CHARS = 20_000  # a record after every chunk
    record = tokenized._record_progress

    def record_then_wait(directory: pathlib.Path, progress: dict) -> None:
        record(directory, progress)
        if progress["chunks"] == 3:
            pathlib.Path(marker).write_text("3")
            time.sleep(600)

    tokenized._record_progress = record_then_wait
    tokenized.tokenize_splits(docs, lambda d: split_of(d.title, 0.1, 0.1), SPLITS, Tokenizer.from_file(tok_file),
                              pathlib.Path(out), num_proc=1)


def test_a_killed_pass_resumes_and_writes_the_same_files(tok, docs, tmp_path, monkeypatch):
    import time

    from runner.data.corpus import SPLITS, split_of

    which = lambda d: split_of(d.title, 0.1, 0.1)  # noqa: E731
    monkeypatch.setattr(tokenized, "CHUNK_CHARS", 20_000)
    monkeypatch.setattr(tokenized, "PROGRESS_CHARS", 20_000)
    tokenized.tokenize_splits(docs, which, SPLITS, tok, tmp_path / "whole", num_proc=1)
    tok.save(str(tmp_path / "tok.json"))
    out, marker = tmp_path / "killed", tmp_path / "marker"
    p = multiprocessing.get_context("spawn").Process(target=_tokenize_until_killed,
                                                     args=(str(tmp_path / "tok.json"), docs, str(out), str(marker)))
    p.start()
    deadline = time.monotonic() + 120
    while not marker.exists() and p.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), f"the builder stopped early (exit code {p.exitcode})"
    p.kill()  # SIGKILL: no cleanup runs
    p.join(30)
    assert json.loads((out / tokenized.PROGRESS).read_text())["chunks"] == 3
    encoded = unit.count_encoded(monkeypatch)
    tokenized.tokenize_splits(docs, which, SPLITS, tok, out, num_proc=1)
    first_three = sum(len(c) for c in itertools.islice(tokenized._chunks(docs, 20_000), 3))
    assert sum(encoded) == len(docs) - first_three, "the three finished chunks are not encoded again"
    assert unit.files_of(out) == unit.files_of(tmp_path / "whole")
