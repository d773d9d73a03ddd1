"""Tests for runner.data.tokenizer, runner.data.token_corpus and runner.data.cache."""

import os
import pathlib

import pytest
import torch

from runner.data import cache
from runner.data.corpus import Document, load_wiki
from runner.data.token_corpus import tokenize_documents
from runner.data.tokenizer import (SPECIALS, encode_sentences, load_or_train_tokenizer,
                                   special_ids, tokenizer_cache_path, train_tokenizer)

VOCAB = 2000


@pytest.fixture(scope="session")
def docs() -> list[Document]:
    return load_wiki()


@pytest.fixture(scope="session")
def texts(docs) -> list[str]:
    return [d.text for d in docs[:300]]


@pytest.fixture(scope="session")
def wordpiece(texts):
    return train_tokenizer("wordpiece", iter(texts), VOCAB, lowercase=True)


@pytest.fixture(scope="session")
def bpe(texts):
    return train_tokenizer("bpe", iter(texts), VOCAB, lowercase=False)


# ---------------------------------------------------------------- wordpiece

def test_wordpiece_specials_and_vocab(wordpiece):
    assert [wordpiece.token_to_id(t) for t in SPECIALS["wordpiece"]] == [0, 1, 2, 3, 4]
    assert special_ids(wordpiece, "wordpiece") == (
        type(special_ids(wordpiece, "wordpiece"))(pad=0, unk=1, cls=2, sep=3, mask=4, num_special=5))
    assert 1000 < wordpiece.get_vocab_size() <= VOCAB
    assert any(t.startswith("##") for t in wordpiece.get_vocab())


def test_wordpiece_round_trip_lowercased(wordpiece):
    s = "The History of Science is a long story, and the city was founded in 1990."
    enc = wordpiece.encode(s, add_special_tokens=False)
    assert special_ids(wordpiece, "wordpiece").unk not in enc.ids
    assert wordpiece.decode(enc.ids) == s.lower()
    # lowercase=True also strips accents, as in uncased BERT.
    assert wordpiece.normalizer.normalize_str("Café Naïve") == "cafe naive"


def check_cls_sep_template(tok) -> None:
    """[CLS] A [SEP] and [CLS] A [SEP] B [SEP] with [CLS]=2, [SEP]=3 and segment ids 0 / 1."""
    single = tok.encode("hello world")
    assert single.tokens[0] == "[CLS]" and single.tokens[-1] == "[SEP]"
    assert single.ids[0] == 2 and single.ids[-1] == 3
    pair = tok.encode("hello world", "second part")
    n_a = len(tok.encode("hello world", add_special_tokens=False).ids)
    n_b = len(tok.encode("second part", add_special_tokens=False).ids)
    assert pair.ids[0] == 2 and pair.ids[n_a + 1] == 3 and pair.ids[-1] == 3
    assert pair.type_ids == [0] * (n_a + 2) + [1] * (n_b + 1)


def test_wordpiece_post_processor(wordpiece):
    check_cls_sep_template(wordpiece)


# ---------------------------------------------------------------- bpe

def test_bpe_specials_and_vocab(bpe):
    assert [bpe.token_to_id(t) for t in ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]] == [0, 1, 2, 3, 4]
    ids = special_ids(bpe, "bpe")
    assert (ids.cls, ids.pad, ids.sep, ids.unk, ids.mask, ids.num_special) == (0, 1, 2, 3, 4, 5)
    assert 1000 < bpe.get_vocab_size() <= VOCAB


@pytest.mark.parametrize("s", ["Café naïve — 東京", "The History of Science, (1990) isn't \"long\".",
                               "  two  spaces\tand tab", "emoji 🙂 ok"])
def test_bpe_round_trip_exact(bpe, s):
    ids = bpe.encode(s, add_special_tokens=False).ids
    assert 3 not in ids  # byte-level: never unknown
    assert bpe.decode(ids) == s


def test_bpe_post_processor(bpe):
    single = bpe.encode("hello world")
    assert single.ids[0] == 0 and single.ids[-1] == 2
    pair = bpe.encode("hello world", "second part")
    n_a = len(bpe.encode("hello world", add_special_tokens=False).ids)
    # RoBERTa layout: <s> A </s></s> B </s>, all type ids 0 (type_vocab_size=1).
    assert pair.ids[0] == 0 and pair.ids[n_a + 1:n_a + 3] == [2, 2] and pair.ids[-1] == 2
    assert set(pair.type_ids) == {0}


@pytest.mark.parametrize("kind, lowercase", [("wordpiece", True), ("wordpiece", False),
                                             ("bpe", False)])
def test_training_is_deterministic(texts, kind, lowercase):
    # huggingface/tokenizers#1794: WordPiece "##" ids (and merges on ties) vary between runs.
    runs = {train_tokenizer(kind, iter(texts), VOCAB, lowercase).to_str() for _ in range(3)}
    assert len(runs) == 1


def test_wordpiece_only_real_specials_are_added(wordpiece):
    assert sorted(wordpiece.get_added_tokens_decoder()) == [0, 1, 2, 3, 4]
    assert wordpiece.encode("x##e", add_special_tokens=False).tokens[0] == "x"
    assert wordpiece.decode(wordpiece.encode("abe cde").ids) == "abe cde"


def test_unknown_kind():
    with pytest.raises(ValueError, match="model.tokenizer.*bpe.*wordpiece"):
        train_tokenizer("sentencepiece", ["x"], 100, True)
    with pytest.raises(ValueError, match="model.tokenizer"):
        special_ids(None, "sentencepiece")


# ---------------------------------------------------------------- encode / cache

def test_encode_sentences(wordpiece):
    sents = ["hello world.", "second sentence here."]
    out = encode_sentences(wordpiece, sents)
    assert out == [wordpiece.encode(s, add_special_tokens=False).ids for s in sents]
    assert all(2 not in ids and 3 not in ids for ids in out)
    assert encode_sentences(wordpiece, []) == []


def test_encode_sentences_rejects_padding(texts):
    tok = train_tokenizer("wordpiece", iter(texts[:20]), 300, True)
    tok.enable_padding()
    with pytest.raises(ValueError, match="padding"):
        encode_sentences(tok, ["a b"])


def test_load_or_train_caches(tmp_path, texts, monkeypatch):
    calls = []

    def texts_fn():
        if calls:
            raise AssertionError("texts_fn called again: cache not used")
        calls.append(1)
        return iter(texts[:100])

    first = load_or_train_tokenizer("wordpiece", texts_fn, 500, True, tmp_path, "abc")
    path = tokenizer_cache_path(tmp_path, "wordpiece", 500, True, "abc")
    assert path == tmp_path / "tokenizers" / "wordpiece-v500-lc-abc" / "tokenizer.json"
    assert path.is_file() and sorted(os.listdir(path.parent)) == [".manifest.json", "tokenizer.json"]  # no temp litter
    # Would fail if it retrained: train_tokenizer is not reachable any more.
    monkeypatch.setattr("runner.data.tokenizer.train_tokenizer", None)
    second = load_or_train_tokenizer("wordpiece", texts_fn, 500, True, tmp_path, "abc")
    s = ["the city was founded in 1990.", "a second sentence"]
    assert [e.ids for e in second.encode_batch(s)] == [e.ids for e in first.encode_batch(s)]
    assert second.to_str() == first.to_str()

    assert tokenizer_cache_path(tmp_path, "wordpiece", 600, True, "abc") != path
    assert tokenizer_cache_path(tmp_path, "wordpiece", 500, False, "abc") != path
    assert tokenizer_cache_path(tmp_path, "bpe", 500, True, "abc") != path


# ---------------------------------------------------------------- tokenized corpus

@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_tokenize_documents(kind, wordpiece, bpe, docs):
    tok = {"wordpiece": wordpiece, "bpe": bpe}[kind]
    sub = docs[:200]
    tc = tokenize_documents(tok, sub)
    assert tc.ids.dtype == torch.int32 and tc.ids.dim() == 1
    assert tc.sent_offsets.dtype == torch.int64 and tc.doc_offsets.dtype == torch.int64
    assert int(tc.sent_offsets[0]) == 0 and int(tc.sent_offsets[-1]) == tc.num_tokens
    assert bool((tc.sent_offsets[1:] > tc.sent_offsets[:-1]).all())  # no empty sentences
    assert int(tc.doc_offsets[0]) == 0 and int(tc.doc_offsets[-1]) == tc.num_sentences
    assert bool((tc.doc_offsets[1:] > tc.doc_offsets[:-1]).all())  # no empty docs
    assert tc.num_docs == len(sub) and tc.titles == [d.title for d in sub]
    assert tc.topics == [d.topic for d in sub]
    assert int(tc.ids.min()) >= 0 and int(tc.ids.max()) < tok.get_vocab_size()
    unk = special_ids(tok, kind).unk
    for i in (0, 57, 199):
        got, want = tc.doc_sentences(i), sub[i].sentences()
        assert len(got) == len(want)
        for ids, s in zip(got, want):
            text = tok.decode(ids.tolist())
            if kind == "bpe":
                assert text == s
            elif unk not in ids:  # wordpiece: equal up to normalization and spacing
                assert "".join(text.split()) == "".join(tok.normalizer.normalize_str(s).split())


def test_tokenize_documents_drops_empty(wordpiece):
    docs = [Document("a", "t1", "Hello there.\n\x07\x00\nBye now."),
            Document("b", "t2", "\x00\x07"),
            Document("c", "t3", "Last one.")]
    tc = tokenize_documents(wordpiece, docs)
    assert tc.titles == ["a", "c"] and tc.topics == ["t1", "t3"]
    assert tc.num_sentences == 3 and tc.doc_offsets.tolist() == [0, 2, 3]
    assert wordpiece.decode(tc.doc_sentences(0)[1].tolist()) == "bye now."


def test_tokenize_documents_empty(wordpiece):
    tc = tokenize_documents(wordpiece, [])
    assert (tc.num_docs, tc.num_sentences, tc.num_tokens) == (0, 0, 0)


# ---------------------------------------------------------------- cache helpers

def test_atomic_save_failure_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "obj.pt"
    cache.atomic_save({"v": 1}, path)
    before = path.read_bytes()

    def broken_save(obj, f, *a, **k):
        f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(cache.WriteFailed, match=r"obj.pt \(disk full\): .*free there; nothing partial"):
        cache.atomic_save({"v": 2}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert torch.load(path, weights_only=False) == {"v": 1}
    assert os.listdir(path.parent) == ["obj.pt"]  # temp file cleaned up


def test_cached_builds_once(tmp_path):
    path = tmp_path / "c" / "x.pt"
    assert cache.cached(path, lambda: [1, 2, 3]) == [1, 2, 3]
    assert cache.cached(path, lambda: pytest.fail("rebuilt")) == [1, 2, 3]


def test_cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTLAB_CACHE", str(tmp_path / "env"))
    assert cache.cache_root(str(tmp_path / "explicit")) == tmp_path / "explicit"
    assert cache.cache_root(None) == tmp_path / "env"
    monkeypatch.delenv("BERTLAB_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache.cache_root(None) == pathlib.Path(tmp_path) / ".cache" / "bertlab"
    assert cache.cache_root("~/x") == pathlib.Path(tmp_path) / "x"


def test_key():
    assert cache.key("a", 1, 0.5) == cache.key("a", 1, 0.5)
    assert cache.key("a", 1, 0.5) != cache.key("a", 1, 0.25)
    assert len(cache.key("a")) == 12 and int(cache.key("a"), 16) >= 0
