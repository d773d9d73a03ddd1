"""Span masking: token (BERT), whole-word (BERT WWM) and n-gram (ALBERT 4.1) selection, the per-sequence cap,
word boundaries from the vocabulary, determinism, config keys and an end-to-end run of each.
The tests of this file that train or start a process: tests/integration/test_masking.py."""
from __future__ import annotations

from collections import Counter

import pytest
import torch

from runner.build import build_objective, encoder_config
from runner.data.tokenizer import SpecialIds, train_tokenizer
from runner.data.words import continuation_table
from runner.config.errors import ConfigError
from runner.objectives.masking import (IGNORE, SPANS, MaskingSpec, budgets, mask_tokens, sample_ngram_lengths,
                                       select_spans, word_starts)
from tests.conftest import make_cfg


SP = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, num_special=5)


V = 1000


TABLE = (torch.arange(V) % 3 == 0) & (torch.arange(V) >= SP.num_special)  # synthetic vocab: a third are "##x"


def batch(rows: int = 400, length: int = 128, seed: int = 0, dtype=torch.int64) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] A [SEP] B [SEP] [PAD]...: random regular ids with a random split point and padded tail."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(SP.num_special, V, (rows, length), generator=g, dtype=dtype)
    ends = torch.randint(length // 2, length, (rows,), generator=g)
    mids = torch.randint(4, length // 2 - 2, (rows,), generator=g)
    r = torch.arange(rows)
    ids[:, 0] = SP.cls
    ids[r, mids] = SP.sep
    ids[r, ends - 1] = SP.sep
    ids[torch.arange(length) >= ends.unsqueeze(1)] = SP.pad
    return ids, ids < SP.num_special


def spec(span: str, **kw) -> MaskingSpec:
    return MaskingSpec(mask_id=SP.mask, first_regular_id=SP.num_special, vocab_size=V, span=span, **kw)


def draw(span: str, ids: torch.Tensor, special: torch.Tensor, seed: int = 1, **kw):
    return mask_tokens(ids, special, spec(span, **kw), torch.Generator().manual_seed(seed), TABLE)


def words_whole(selected: torch.Tensor, ids: torch.Tensor, special: torch.Tensor) -> bool:
    """No word is partly selected: every word-continuing token shares its predecessor's selection."""
    inner = ~special & ~word_starts(ids, special, TABLE)  # (N, L); never at column 0
    return bool((selected[:, 1:] == selected[:, :-1])[inner[:, 1:]].all())


@pytest.mark.parametrize("span", SPANS)
def test_selection_rate_and_replacement_follow_bert(span):
    ids, special = batch()
    masked, labels = draw(span, ids, special)
    selected = labels.ne(IGNORE)
    assert abs(float(selected.sum() / (~special).sum()) - 0.15) < 0.01
    assert not selected[special].any() and torch.equal(masked[special], ids[special]), "specials untouched"
    assert torch.equal(labels[selected], ids[selected]) and torch.equal(masked[~selected], ids[~selected])
    n = selected.sum()
    assert abs(float((masked.eq(SP.mask) & selected).sum() / n) - 0.8) < 0.03
    assert abs(float((masked.eq(ids) & selected).sum() / n) - 0.1) < 0.03
    assert (masked[selected & masked.ne(SP.mask)] >= SP.num_special).all(), "random replacements are regular"
    if span != "token":  # a greedy fill: never over budget, and each row near it
        per_row, budget = selected.sum(1), budgets(special, 0.15)
        assert (per_row <= budget).all() and float((per_row == budget).float().mean()) > 0.9


def test_token_span_keeps_bernoulli_draws():
    ids, special = batch(50)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    old = MaskingSpec(mask_id=SP.mask, first_regular_id=SP.num_special, vocab_size=V)
    assert all(torch.equal(a, b) for a, b in zip(mask_tokens(ids, special, old, g1),
                                                  mask_tokens(ids, special, spec("token"), g2, TABLE)))


def test_whole_word_selects_every_piece_of_a_word():
    ids, special = batch()
    _, labels = draw("whole_word", ids, special)
    selected = labels.ne(IGNORE)
    assert words_whole(selected, ids, special)
    # the synthetic table has multi-piece words, and some of them are selected
    starts = word_starts(ids, special, TABLE)
    assert (selected & ~special & ~starts).any()
    assert not words_whole(draw("token", ids, special)[1].ne(IGNORE), ids, special), "token masking splits words"


def spans_of(span_words: torch.Tensor, ids: torch.Tensor, special: torch.Tensor) -> list[tuple[int, int, int, int]]:
    """(row, first token, end token, n) of each chosen span, walking n whole words from its first token."""
    starts = word_starts(ids, special, TABLE)
    out = []
    for r, s in span_words.nonzero().tolist():
        n, e, seen = int(span_words[r, s]), s, 0
        while e < ids.shape[1] and not special[r, e] and (seen < n or not starts[r, e]):
            seen += bool(starts[r, e])
            e += 1
        assert seen == n, "a span of n words lies inside one segment"
        out.append((r, s, e, n))
    return out


def test_ngram_spans_are_whole_words_and_cover_the_selection():
    ids, special = batch(200)
    selected, span_words = select_spans(ids, special, TABLE, 0.15, 3, None, torch.Generator().manual_seed(2))
    assert words_whole(selected, ids, special)
    rebuilt = torch.zeros_like(selected)
    for r, s, e, _ in spans_of(span_words, ids, special):
        assert not rebuilt[r, s:e].any(), "spans never overlap"
        rebuilt[r, s:e] = True
    assert torch.equal(rebuilt, selected)
    counts = Counter(n for *_, n in spans_of(span_words, ids, special))
    assert set(counts) == {1, 2, 3} and counts[1] > counts[2] > counts[3], counts


def test_ngram_length_distribution_is_albert():
    g = torch.Generator().manual_seed(0)
    n = sample_ngram_lengths(torch.full((200_000,), 3), 3, g)
    freq = torch.bincount(n, minlength=4)[1:].double() / n.numel()
    assert torch.allclose(freq, torch.tensor([6 / 11, 3 / 11, 2 / 11], dtype=torch.float64), atol=0.005), freq
    two = sample_ngram_lengths(torch.full((100_000,), 2), 3, g)  # near a segment end: renormalised over 1..2
    assert two.max() == 2 and abs(float(two.eq(1).double().mean()) - 2 / 3) < 0.01
    assert sample_ngram_lengths(torch.ones(1000, dtype=torch.long), 3, g).eq(1).all()


@pytest.mark.parametrize("span", SPANS)
def test_max_predictions_caps_every_row(span):
    ids, special = batch(200)
    _, labels = draw(span, ids, special, max_predictions=5)
    per_row = labels.ne(IGNORE).sum(1)
    assert per_row.max() == 5 and float(per_row.eq(5).float().mean()) > 0.9
    if span != "token":
        assert words_whole(labels.ne(IGNORE), ids, special)


def test_word_tables_from_real_tokenizers():
    texts = ["Hello world, said the wonderful worldly people.", "Tokenizers split wonderful words into pieces."] * 20
    bpe = train_tokenizer("bpe", texts, 300, lowercase=False)
    table = continuation_table(bpe, "bpe")
    vocab = bpe.get_vocab()
    assert table.shape == (bpe.get_vocab_size(),) and table.dtype == torch.bool
    assert not table[[vocab[t] for t in ("<s>", "</s>", "<pad>", "<mask>", "<unk>")]].any()
    assert all(table[i] != t.startswith("\u0120") for t, i in vocab.items() if not t.startswith("<"))
    ids = torch.tensor([bpe.encode("Hello world").ids])  # <s> Hello Ġworld </s>: no leading space on "Hello"
    special = torch.tensor([[i < 5 for i in ids[0].tolist()]])
    assert table[ids[0, 1]], "the first word has no space marker"
    assert word_starts(ids, special, table)[0, 1], "... but starts a word after <s>"
    wp = train_tokenizer("wordpiece", texts, 200, lowercase=True)
    wtable = continuation_table(wp, "wordpiece")
    assert all(wtable[i] == t.startswith("##") for t, i in wp.get_vocab().items())
    assert not wtable[wp.token_to_id("[CLS]")]


@pytest.mark.parametrize("span", SPANS)
def test_same_seed_same_masks(span):
    ids, special = batch(64, dtype=torch.int32)  # stored examples are int32
    a, b, c = draw(span, ids, special, 3), draw(span, ids, special, 3), draw(span, ids, special, 4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])
    assert a[0].dtype == a[1].dtype == torch.int32


def config_error(objective_cfg, model_config, word_table=None) -> ConfigError:
    """The one-line ConfigError building the objective raises."""
    with pytest.raises(ConfigError) as info:
        build_objective(objective_cfg, model_config, SP, V, word_table=word_table)
    return info.value


def test_span_keys_compose_and_are_validated():
    cfg = make_cfg("objective.span=ngram", "objective.max_predictions=20")
    assert (cfg.objective.span, cfg.objective.max_ngram, cfg.objective.max_predictions) == ("ngram", 3, 20)
    assert make_cfg("model=bert").objective.span == "token"  # default, also for mlm_nsp
    config = encoder_config(cfg)
    obj = build_objective(cfg.objective, config, SP, V, word_table=TABLE)
    assert obj.spec.span == "ngram" and obj.spec.max_predictions == 20
    for override in ["objective.span=foo", "objective.max_ngram=0", "objective.max_predictions=0"]:
        key = override.split("=")[0]
        error = config_error(make_cfg(override).objective, model_config=config, word_table=TABLE)
        assert key in str(error) and "\n" not in str(error)
    assert "objective.span" in str(config_error(cfg.objective, model_config=config))  # span masking without a table
    build_objective(make_cfg().objective, config, SP, V)  # token: no table needed
