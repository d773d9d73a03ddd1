"""The SentencePiece-style unigram tokenizer (ALBERT's), local tokenizers (data.tokenizer.path), and the note
on a trained vocabulary smaller than model.vocab_size.
The tests of this file that train or start a process: tests/integration/test_tokenizers_extra.py."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from runner.build import build
from runner.data.corpus import load_wiki
from runner.data.pretraining import build_data
from runner.data.tokenizer import (METASPACE, SPECIALS, SpecialIds, _canonical_unigram, load_tokenizer,
                                   special_ids, train_tokenizer)
from runner.data.words import continuation_table
from runner.config.errors import ConfigError
from runner.run import run
from tests.conftest import TINY, make_cfg


VOCAB = 2000


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [d.text for d in load_wiki()[:300]]


@pytest.fixture(scope="module")
def unigram(texts):
    return train_tokenizer("unigram", iter(texts), VOCAB, lowercase=True)


def test_unigram_specials_and_vocab(unigram):
    assert SPECIALS["unigram"] == ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    assert [unigram.token_to_id(t) for t in SPECIALS["unigram"]] == [0, 1, 2, 3, 4]
    assert special_ids(unigram, "unigram") == SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, num_special=5)
    assert sorted(unigram.get_added_tokens_decoder()) == [0, 1, 2, 3, 4]
    assert 1000 < unigram.get_vocab_size() <= VOCAB
    model = json.loads(unigram.to_str())["model"]
    assert model["type"] == "Unigram" and model["unk_id"] == 1 and not model["byte_fallback"]
    assert METASPACE + "the" in unigram.get_vocab()


def test_unigram_round_trip(unigram):
    s = "The History of Science is a long story, and the city was founded in 1990."
    enc = unigram.encode(s, add_special_tokens=False)
    assert 1 not in enc.ids and enc.tokens[0].startswith(METASPACE)
    assert unigram.decode(enc.ids) == s.lower()
    # SentencePiece-like normalization: NFKC, lowercase, whitespace runs collapsed and trimmed.
    assert unigram.normalizer.normalize_str("  Two   Spaces\tand\nTab \ufb01 ") == "two spaces and tab fi"
    assert unigram.decode(unigram.encode("a  b\tc").ids) == "a b c"  # specials skipped
    assert unigram.encode("\u2603", add_special_tokens=False).ids[-1] == 1  # unseen character: <unk>


def test_unigram_post_processor(unigram):
    from tests.unit.test_tokenizer import check_cls_sep_template

    check_cls_sep_template(unigram)


def test_unigram_training_is_deterministic(texts, unigram):
    again = train_tokenizer("unigram", iter(texts), VOCAB, lowercase=True)
    assert again.to_str() == unigram.to_str()
    cased = {train_tokenizer("unigram", iter(texts[:100]), 800, lowercase=False).to_str() for _ in range(2)}
    assert len(cased) == 1
    tok = cased.pop()
    assert '"Lowercase"' not in tok


def test_canonical_unigram_fixes_trainer_noise():
    # What the trainer leaves to chance: last-bit noise, the order of equal scores, and which dropped
    # character gets which of the scores min, min-1e-4, min-2e-4, ... (hash-set order).
    specials = [(t, 0.0) for t in SPECIALS["unigram"]]
    real = [("\u2581the", -3.1), ("e", -4.2), ("\u2581a", -4.2), ("s", -5.0), ("ing", -9.9)]
    dropped = ["(", "$", "\u00e7", "\u03c3"]

    def trained(rng: random.Random) -> list[tuple[str, float]]:
        order = dropped[:]
        rng.shuffle(order)
        base = -11.2043610272 + rng.uniform(-4e-11, 4e-11)
        pieces = [(t, s + rng.uniform(-4e-11, 4e-11)) for t, s in real]
        pieces += [(c, base - 1e-4 * k) for k, c in enumerate(order)]
        rng.shuffle(pieces)
        return specials + pieces

    outs = [_canonical_unigram(trained(random.Random(seed)), len(specials)) for seed in range(6)]
    assert all(o == outs[0] for o in outs)
    out = outs[0]
    assert out[:5] == specials
    order = ["\u2581the", "e", "\u2581a", "s", "ing", "$", "(", "\u00e7", "\u03c3"]  # equal scores: by piece
    assert [t for t, _ in out[5:]] == order
    assert [s for _, s in out[-4:]] == [-11.20436, -11.20446, -11.20456, -11.20466]


def test_unigram_continuation_table(unigram):
    table = continuation_table(unigram, "unigram")
    assert table.shape == (unigram.get_vocab_size(),) and table.dtype == torch.bool
    vocab = unigram.get_vocab()
    for token, i in vocab.items():
        if token in SPECIALS["unigram"]:
            assert not table[i]
        else:
            assert bool(table[i]) == (not token.startswith(METASPACE)), token
    enc = unigram.encode("photosynthesis happened yesterday", add_special_tokens=False)
    starts = [not table[i] for i in enc.ids]
    assert starts[0] and sum(starts) == 3  # one start per word, the first word included


def save_hf_dir(tok, out: Path) -> Path:
    """Save `tok` as transformers does (a released tokenizer directory: tokenizer.json and its configs)."""
    from transformers import PreTrainedTokenizerFast

    PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(out)
    assert (out / "tokenizer.json").is_file()
    return out


def test_tokenizer_path_loads_saved_tokenizer(tmp_path, unigram, monkeypatch):
    saved = save_hf_dir(unigram, tmp_path / "tok")
    monkeypatch.setattr("runner.data.pretraining.load_or_train_tokenizer",
                        lambda *a, **k: pytest.fail("trained a tokenizer despite data.tokenizer.path"))
    cfg = make_cfg(*TINY, "model.tokenizer=unigram", f"model.vocab_size={VOCAB}", f"data.tokenizer.path={saved}",
                   "trainer.max_steps=0")
    built = build(cfg)
    tok = built.data.tokenizer
    assert tok.get_vocab() == unigram.get_vocab() and json.loads(tok.to_str())["model"] == \
        json.loads(unigram.to_str())["model"]
    assert built.data.specials == special_ids(unigram, "unigram")
    stats = built.data.stats()
    assert stats["tokenizer"] == str(saved / "tokenizer.json") and stats["vocab_size"] == unigram.get_vocab_size()
    ids = built.data.splits["train"].ids
    s = "the city was founded in 1990."
    assert int(ids.tensor().max()) < unigram.get_vocab_size()
    assert tok.encode(s).ids == unigram.encode(s).ids
    other = make_cfg(*TINY, "model.tokenizer=unigram", f"model.vocab_size={VOCAB}",
                     f"data.tokenizer.path={saved / 'tokenizer.json'}", "trainer.max_steps=0")
    again = build(other)  # the file itself works too; the cache is keyed by the file's content
    assert again.data.key == built.data.key
    monkeypatch.undo()
    trained = build(make_cfg(*TINY, "model.tokenizer=unigram", f"model.vocab_size={VOCAB}", "trainer.max_steps=0"))
    assert trained.data.key != built.data.key and trained.data.stats()["tokenizer"] == "trained"


def test_tokenizer_path_takes_precedence_over_init_from(tmp_path, texts, unigram):
    wordpiece = train_tokenizer("wordpiece", iter(texts[:50]), 300, lowercase=True)
    wordpiece.save(str(tmp_path / "checkpoint-tokenizer.json"))
    unigram.save(str(tmp_path / "mine.json"))
    cfg = make_cfg(*TINY, "model.tokenizer=unigram", f"data.tokenizer.path={tmp_path / 'mine.json'}").data
    data = build_data(cfg, tokenizer_kind="unigram", vocab_size=VOCAB, lowercase=True, pairs=False,
                      tokenizer_path=str(tmp_path / "checkpoint-tokenizer.json"))
    assert data.tokenizer.get_vocab() == unigram.get_vocab()


def one_line_error(*overrides: str) -> str:
    cfg = make_cfg(*TINY, "trainer.max_steps=0", *overrides)
    with pytest.raises(ConfigError) as ei:
        build(cfg)
    msg = str(ei.value)
    assert "\n" not in msg
    return msg


def test_tokenizer_path_missing(tmp_path):
    msg = one_line_error(f"data.tokenizer.path={tmp_path / 'nowhere'}")
    assert "data.tokenizer.path" in msg and "nowhere" in msg and "tokenizer.json" in msg
    (tmp_path / "empty").mkdir()
    msg = one_line_error(f"data.tokenizer.path={tmp_path / 'empty'}")
    assert "data.tokenizer.path" in msg and "holds no tokenizer.json" in msg
    (tmp_path / "bad.json").write_text("{not json")
    msg = one_line_error(f"data.tokenizer.path={tmp_path / 'bad.json'}")
    assert "data.tokenizer.path" in msg and "not a Hugging Face tokenizers file" in msg


def test_tokenizer_path_missing_special_token(tmp_path, texts):
    wordpiece = train_tokenizer("wordpiece", iter(texts[:50]), 300, lowercase=True)
    saved = save_hf_dir(wordpiece, tmp_path / "wp")
    msg = one_line_error("model.tokenizer=unigram", f"data.tokenizer.path={saved}")
    assert "data.tokenizer.path" in msg and "'<pad>'" in msg and "model.tokenizer=unigram" in msg
    assert "model.tokenizer=wordpiece" in msg  # the kind whose specials it has
    bpe = train_tokenizer("bpe", iter(texts[:50]), 300, lowercase=False)
    bpe.add_special_tokens(["[CLS]"])
    bpe.save(str(tmp_path / "bpe.json"))
    with pytest.raises(ConfigError, match=r"no '\[SEP\]' token \(sep\).*model.tokenizer=unigram.*bpe"):
        load_tokenizer(str(tmp_path / "bpe.json"), "unigram")


def test_loaded_tokenizer_without_padding(tmp_path):
    tok = train_tokenizer("unigram", iter(["a b c. d e f."] * 20), 30, lowercase=True)
    tok.enable_padding(length=64)
    tok.enable_truncation(8)
    tok.save(str(tmp_path / "t.json"))
    loaded, f = load_tokenizer(str(tmp_path / "t.json"), "unigram")
    assert loaded.padding is None and loaded.truncation is None and f == tmp_path / "t.json"


@pytest.mark.parametrize("kind", ["wordpiece", "unigram"])
def test_small_corpus_vocab_note_in_summary(tmp_path, kind):
    cfg = make_cfg(*TINY, f"model.tokenizer={kind}", "data.max_docs=50", "model.vocab_size=5000",
                   "trainer.max_steps=0")
    run(cfg, build(cfg), tmp_path)
    stats = json.loads((tmp_path / "summary.json").read_text())["data_stats"]
    n = stats["vocab_size"]
    assert n < 5000 and stats["configured_vocab_size"] == 5000 and stats["tokenizer"] == "trained"
    assert stats["vocab_note"] == (f"trained vocabulary has {n:,} tokens, fewer than model.vocab_size=5000; "
                                   "the model keeps 5000 embedding rows")


def test_no_vocab_note_when_full(unigram):
    from runner.data.pretraining import PretrainingData

    data = PretrainingData(tokenizer=unigram, specials=special_ids(unigram, "unigram"), splits={}, seq_len=64,
                           format="full_sentences", short_seq_prob=0.1, cache_dir=Path("."), key="k",
                           configured_vocab_size=unigram.get_vocab_size())
    assert "vocab_note" not in data.vocab_stats()
