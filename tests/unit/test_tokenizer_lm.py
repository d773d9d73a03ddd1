"""Tests for the Transformer-XL style word-level ("word") and character-level ("char") tokenizer kinds."""

import json

import pytest
from tokenizers import trainers

from runner.data.corpus import Document
from runner.data.token_corpus import tokenize_documents
from runner.data.tokenizer import (ROLES, SPECIALS, SpecialIds, encode_sentences, load_or_train_tokenizer,
                                   load_tokenizer, spaces_are_tokens, special_ids, tokenizer_cache_path,
                                   train_tokenizer)
from runner.data.words import continuation_table
from runner.config.errors import ConfigError

LM_SPECIALS = ["<pad>", "<unk>", "<eos>", "<mask>"]
# WikiText-103 style: already space-separated, punctuation attached as its own word, literal <unk>.
WT = ["the cat sat on the mat .", "the dog sat , and the cat ran @-@ away <unk> <unk> <unk> <unk>",
      "The Cat is a cat ."]
CHARS = ["hello world\nhello there", "the cat. The dog!\n"]


@pytest.fixture(scope="module")
def word():
    return train_tokenizer("word", iter(WT), 100, lowercase=False)


@pytest.fixture(scope="module")
def char():
    return train_tokenizer("char", iter(CHARS), 100, lowercase=False)


def vocab_json(tok) -> dict[str, int]:
    """The WordLevel model's own vocabulary (without the added-token overlay of get_vocab)."""
    return json.loads(tok.to_str())["model"]["vocab"]


@pytest.mark.parametrize("kind", ["word", "char"])
def test_specials_ids_and_roles(kind, word, char):
    tok = word if kind == "word" else char
    assert SPECIALS[kind] == LM_SPECIALS
    assert [tok.token_to_id(t) for t in LM_SPECIALS] == [0, 1, 2, 3]
    assert [vocab_json(tok)[t] for t in LM_SPECIALS] == [0, 1, 2, 3]
    assert special_ids(tok, kind) == SpecialIds(pad=0, unk=1, cls=2, sep=2, mask=3, num_special=4)
    assert ROLES[kind]["sep"] == ROLES[kind]["cls"] == "<eos>"
    assert sorted(tok.get_added_tokens_decoder()) == [0, 1, 2, 3]
    assert tok.post_processor is None  # nothing added around a sequence: the pipeline inserts <eos> itself
    assert tok.encode("the cat").ids == tok.encode("the cat", add_special_tokens=False).ids
    assert not continuation_table(tok, kind).any()  # whole-word / n-gram masking: per word or per character


def test_word_vocab_by_frequency(word):
    v = vocab_json(word)
    # Most frequent first, ties in code-point order: the(4) cat(3) .(2) sat(2), then the singletons.
    assert [t for t, _ in sorted(v.items(), key=lambda p: p[1])][4:8] == ["the", "cat", ".", "sat"]
    # The literal <unk> of the text is the special token, never a word of its own (it would take an id).
    assert sorted(v.values()) == list(range(len(v)))
    assert len(v) == 4 + len(set(" ".join(WT).split()) - {"<unk>"})


def test_word_splitting_decode_and_unk(word):
    enc = word.encode("the cat ran @-@ away , zebra <unk>")
    assert enc.tokens == ["the", "cat", "ran", "@-@", "away", ",", "<unk>", "<unk>"]
    assert enc.ids[-2:] == [1, 1]
    assert word.encode("cat.").tokens == ["<unk>"]  # whitespace only: "cat." is one (unknown) word
    assert word.encode("  the\tcat\nsat ").tokens == ["the", "cat", "sat"]
    assert word.decode(word.encode("the cat sat .").ids) == "the cat sat ."
    assert word.decode([word.token_to_id("the"), word.token_to_id("cat")]) == "the cat"
    assert word.encode("The cat").tokens == ["The", "cat"]  # cased
    hashes = train_tokenizer("word", iter(["a ##b ##b"]), 10, lowercase=False)
    assert hashes.decode(hashes.encode("a ##b").ids) == "a ##b"  # no WordPiece-style "##" gluing


def test_word_vocab_capped():
    tok = train_tokenizer("word", iter(WT), 7, lowercase=False)
    assert tok.get_vocab_size() == 7
    assert [t for t, i in sorted(vocab_json(tok).items(), key=lambda p: p[1])] == LM_SPECIALS + ["the", "cat", "."]
    assert tok.encode("the cat sat .").ids == [4, 5, 1, 6]  # "sat" is rare: <unk>


def test_word_lowercase():
    tok = train_tokenizer("word", iter(WT), 100, lowercase=True)
    assert "The" not in vocab_json(tok) and "Cat" not in vocab_json(tok)
    assert tok.encode("The CAT").tokens == ["the", "cat"]
    assert tok.encode("<unk>").ids == [1]  # specials are matched before lowercasing
    assert special_ids(tok, "word").num_special == 4


def test_char_vocab_and_unk(char):
    v = vocab_json(char)
    text = "".join(CHARS)
    assert len(v) == 4 + len(set(text))
    assert all(len(t) == 1 for t in v if t not in LM_SPECIALS)
    order = [t for t, _ in sorted(v.items(), key=lambda p: p[1])][4:]
    # "e" (6 times), then the space, "h" and "l" (5 each) in code-point order.
    assert order[:4] == ["e", " ", "h", "l"]
    assert order == sorted(set(text), key=lambda c: (-text.count(c), c))
    assert char.encode("hez").ids[-1] == 1 and char.encode("hez").tokens == ["h", "e", "<unk>"]


@pytest.mark.parametrize("s", ["hello world", "  the cat.\nThe dog!\n\n", "\nhello there ", " "])
def test_char_round_trip(char, s):
    enc = char.encode(s, add_special_tokens=False)
    assert enc.tokens == list(s)
    assert 1 not in enc.ids
    assert char.decode(enc.ids) == s


def test_char_vocab_capped_and_lowercase():
    tok = train_tokenizer("char", iter(CHARS), 7, lowercase=False)
    assert [t for t, i in sorted(vocab_json(tok).items(), key=lambda p: p[1])] == LM_SPECIALS + ["e", " ", "h"]
    assert tok.encode("lee h").ids == [1, 4, 4, 5, 6]  # "l" ties with "h" but loses on code point: <unk>
    lc = train_tokenizer("char", iter(["AAb"]), 100, lowercase=True)
    assert lc.encode("Ab").tokens == ["a", "b"] and "A" not in vocab_json(lc)


def test_char_sentences_keep_the_space_between_them(char, word):
    assert spaces_are_tokens(char) and not spaces_are_tokens(word)
    out = encode_sentences(char, ["hello there.", "The cat."])
    assert [char.decode(ids) for ids in out] == ["hello there. ", "The cat. "]
    # Word-level ids get no separator: words are the units, and a space is no token.
    sents = ["the cat .", "the dog ."]
    assert encode_sentences(word, sents) == [word.encode(s).ids for s in sents] == [[4, 5, 6], [4, 15, 6]]
    # Through the corpus pipeline: sentences are split (and stripped) then concatenated per document.
    tc = tokenize_documents(char, [Document("t", "x", "hello there. The cat.\nThe dog!")])
    assert char.decode(tc.ids.tolist()) == "hello there. The cat. The dog! "
    assert tc.num_sentences == 3


def test_word_sentences_through_pipeline(word):
    tc = tokenize_documents(word, [Document("t", "x", "the cat sat . The dog ran .")])
    assert [word.id_to_token(i) for i in tc.ids.tolist()] == ["the", "cat", "sat", ".", "The", "dog", "ran", "."]
    assert tc.num_sentences == 2


def test_load_or_train_caches(tmp_path, monkeypatch):
    first = {}
    for kind in ("word", "char"):
        first[kind] = load_or_train_tokenizer(kind, lambda: iter(WT), 50, False, tmp_path, "k")
        assert tokenizer_cache_path(tmp_path, kind, 50, False, "k").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("retrained: the cache was not used")

    monkeypatch.setattr(trainers, "WordLevelTrainer", no_training)
    for kind in ("word", "char"):
        again = load_or_train_tokenizer(kind, lambda: pytest.fail("texts read again"), 50, False, tmp_path, "k")
        assert again.to_str() == first[kind].to_str()
        assert [again.token_to_id(t) for t in LM_SPECIALS] == [0, 1, 2, 3]
    assert again.decode(again.encode("the cat").ids) == "the cat"  # char: the spaces survive the save
    with pytest.raises(AssertionError, match="retrained"):  # the patch is live: a new setting would train
        load_or_train_tokenizer("word", lambda: iter(WT), 51, False, tmp_path, "k")


def test_load_tokenizer(tmp_path, word, char):
    word.save(str(tmp_path / "word.json"))
    char.save(str(tmp_path / "char.json"))
    w, f = load_tokenizer(str(tmp_path / "word.json"), "word")
    assert f == tmp_path / "word.json" and w.to_str() == word.to_str()
    assert special_ids(w, "word") == SpecialIds(0, 1, 2, 2, 3, 4)
    c, _ = load_tokenizer(str(tmp_path / "char.json"), "char")
    assert c.decode(c.encode("hello world\n").ids) == "hello world\n" and spaces_are_tokens(c)
    # A word/char file for a BERT kind: the hint names both kinds whose specials it has.
    with pytest.raises(ConfigError, match=r"no '\[PAD\]' token.*model.tokenizer=word or model.tokenizer=char"):
        load_tokenizer(str(tmp_path / "word.json"), "wordpiece")


def test_unknown_kind_still_rejected():
    with pytest.raises(ValueError, match=r"model.tokenizer must be one of \['bpe', 'char', 'unigram', 'word', "):
        train_tokenizer("words", ["x"], 10, False)
    for call in (lambda: special_ids(None, "chars"), lambda: load_tokenizer("x", "chars"),
                 lambda: load_or_train_tokenizer("chars", lambda: [], 10, False, "/nonexistent", "k"),
                 lambda: continuation_table(None, "chars")):
        with pytest.raises(ValueError, match="model.tokenizer"):
            call()
