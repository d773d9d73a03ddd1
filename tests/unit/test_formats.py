"""Input formats (data.format): RoBERTa's Table 2 (Liu et al. 2019, section 4.2), ALBERT's sentence-order pairs
(Lan et al. 2020, section 4.1) and the contiguous stream; their fit with the objective; short real runs.
The tests of this file that train or start a process: tests/integration/test_formats.py."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from runner.build import build
from runner.data.examples import (FORMATS, build_example_set, build_examples, contiguous_ranges, doc_sentence_ranges,
                                  full_sentence_ranges, segment_pair_ranges, sentence_order_ranges,
                                  sentence_pair_ranges)
from runner.data.stream import TokenStream
from runner.data.pretraining import check_format
from runner.config.errors import ConfigError
from runner.run import run
from tests.conftest import TINY, make_cfg
from tests.unit.test_objectives import SP, blocks_of, corpus, pairs_of


def locate(c):
    """token id -> (document, sentence), and the token lists of every sentence."""
    where, sents = {}, []
    for d in range(c.num_docs):
        for j in range(int(c.doc_offsets[d]), int(c.doc_offsets[d + 1])):
            s = c.sentence(j).tolist()
            sents.append(s)
            where.update({t: (d, j) for t in s})
    return where, sents


def varied_corpus(n_docs: int = 80, seed: int = 0):
    """Documents of 1 to 9 sentences of 3 to 30 tokens."""
    rng = random.Random(seed)
    return corpus([[rng.randint(3, 30) for _ in range(rng.randint(1, 9))] for _ in range(n_docs)])


def test_doc_sentences_never_cross_a_document():
    c = varied_corpus()
    where, sents = locate(c)
    blocks = blocks_of(c, doc_sentence_ranges(c, max_tokens=40))
    assert all(0 < len(b) <= 40 for b in blocks)
    assert all(SP.sep not in b for b in blocks), "no document separator: a block holds one document"
    for b in blocks:
        assert len({where[t][0] for t in b}) == 1, "every token of a block comes from one document"
    assert [t for b in blocks for t in b] == c.ids.tolist(), "all tokens, in order, none repeated"
    starts = {b[0] for b in blocks}
    for s in sents:  # whole sentences: a sentence that fits is never cut
        if len(s) <= 40:
            assert any(b[i:i + len(s)] == s for b in blocks for i in range(len(b) - len(s) + 1))
    # each document starts a new block, so documents end in short blocks: more blocks than FULL-SENTENCES
    assert all(c.sentence(int(c.doc_offsets[d]))[0].item() in starts for d in range(c.num_docs))
    assert len(blocks) > len(full_sentence_ranges(c, 40))


def test_full_sentences_cross_documents_with_a_separator():
    c = varied_corpus()
    where, _ = locate(c)
    blocks = blocks_of(c, full_sentence_ranges(c, max_tokens=40))
    crossing = [b for b in blocks if len({where[t][0] for t in b if t != SP.sep}) > 1]
    assert crossing, "blocks run on into the next document"
    for b in crossing:
        for i in range(1, len(b)):
            prev, cur = b[i - 1], b[i]
            if cur != SP.sep and prev != SP.sep:
                assert where[prev][0] == where[cur][0], "a document change inside a block is marked by [SEP]"
    assert [t for b in blocks for t in b if t != SP.sep] == c.ids.tolist()


def test_contiguous_blocks_are_full_and_have_no_padding():
    c = varied_corpus()
    stream = torch.from_numpy(TokenStream(c, SP.sep).all())
    assert stream.dtype == torch.int32 and len(stream) == c.num_tokens + c.num_docs - 1
    assert stream[stream.ne(SP.sep)].tolist() == c.ids.tolist()
    blocks = blocks_of(c, contiguous_ranges(c, 30))
    assert all(len(b) == 30 for b in blocks) and [t for b in blocks for t in b] == stream[:len(blocks) * 30].tolist()
    ex = build_examples(c, "contiguous", 32, SP)
    assert ex["attention_mask"].all() and build_example_set(c, "contiguous", 32, SP).padding_fraction() == 0.0
    assert ex["input_ids"][:, 0].eq(SP.cls).all() and ex["input_ids"][:, -1].eq(SP.sep).all()
    assert blocks_of(corpus([[5]]), contiguous_ranges(corpus([[5]]), 30)) == [list(range(5, 10))], "a corpus under one block keeps it"


def test_sentence_pair_segments_are_single_sentences():
    c = varied_corpus(200)
    where, sents = locate(c)
    pairs = pairs_of(c, sentence_pair_ranges(c, 61, random_next_prob=0.5, rng=random.Random(0)))  # 30 + 30 always fits
    labels = [lab for _, _, lab in pairs]
    assert 0.45 < sum(labels) / len(labels) < 0.55
    last = {int(c.doc_offsets[d + 1]) - 1 for d in range(c.num_docs)}
    for a, b, lab in pairs:
        (da, ja), (db, jb) = where[a[0]], where[b[0]]
        assert a == sents[ja] and b == sents[jb], "each segment is exactly one whole sentence"
        assert ja not in last, "a document's last sentence has no next sentence, so it is never an A"
        if lab:
            assert db != da, "label 1: B is a sentence of another document"
        else:
            assert (db, jb) == (da, ja + 1), "label 0: B is the sentence right after A"
    assert max(len(a) + len(b) for a, b, _ in pairs) <= 61
    ex = build_example_set(c, "sentence_pair", 128, SP)
    assert ex.padding_fraction() > 0.5, "single sentences leave most of a 128-token sequence empty"


def test_sentence_pair_truncates_long_sentences():
    c = corpus([[50, 60], [70, 40]])
    for a, b, _ in pairs_of(c, sentence_pair_ranges(c, 61, 0.5, random.Random(1))):
        assert len(a) + len(b) == 61 and min(len(a), len(b)) >= 20


def test_segment_pair_labels_are_half_random_and_label_0_continues_a():
    c = corpus([[12] * 8 for _ in range(60)])
    where, _ = locate(c)
    pairs = pairs_of(c, segment_pair_ranges(c, 61, short_seq_prob=0.1, random_next_prob=0.5, rng=random.Random(0)))
    labels = [lab for _, _, lab in pairs]
    assert 0.4 < sum(labels) / len(labels) < 0.65
    for a, b, lab in pairs:
        assert a and b and len(a) + len(b) <= 61
        if lab:
            assert where[a[0]][0] != where[b[0]][0], "label 1: B from another document"
        else:
            assert where[a[0]][0] == where[b[-1]][0] and b[0] > a[-1], "label 0: B follows A in the same document"
            assert where[b[0]][1] - where[a[-1]][1] <= 1 or len(a) + len(b) == 61, "only truncation leaves a gap"


def test_short_targets_follow_short_seq_prob():
    c = corpus([[12] * 8 for _ in range(60)])
    lengths = {p: [len(a) + len(b) for a, b, _ in pairs_of(c, segment_pair_ranges(c, 61, p, 0.5, random.Random(0)))]
               for p in (0.0, 1.0)}
    assert sum(lengths[1.0]) / len(lengths[1.0]) < 0.8 * sum(lengths[0.0]) / len(lengths[0.0])
    sop = {p: [len(a) + len(b) for a, b, _ in pairs_of(c, sentence_order_ranges(c, 61, p, random.Random(0)))]
           for p in (0.0, 1.0)}
    assert len(sop[1.0]) > len(sop[0.0]), "shorter targets cut documents into more pairs"


def test_sop_pairs_are_consecutive_segments_of_one_document_swapped_half_the_time():
    c = varied_corpus(300)
    where, _ = locate(c)
    pairs = pairs_of(c, sentence_order_ranges(c, 61, short_seq_prob=0.1, rng=random.Random(0)))
    labels = [lab for _, _, lab in pairs]
    assert 0.45 < sum(labels) / len(labels) < 0.55
    untruncated = 0
    for a, b, lab in pairs:
        assert a and b and len(a) + len(b) <= 61
        assert len({where[t][0] for t in a + b}) == 1, "both segments come from the same document"
        first, second = (b, a) if lab else (a, b)
        assert first[-1] < second[0], "label 1 exactly when the segments are swapped"
        if len(a) + len(b) < 61:  # nothing was truncated: the segments meet at a sentence boundary
            untruncated += 1
            assert second[0] == first[-1] + 1 and where[second[0]][1] == where[first[-1]][1] + 1
    assert untruncated > len(pairs) / 5  # chunks overshoot the target (BERT), so many pairs are truncated
    ex = build_examples(c, "sop_pair", 64, SP, copies=2, seed=0)  # copy 0 draws from random.Random(0)
    assert "sentence_order_label" in ex and "next_sentence_label" not in ex
    assert ex["sentence_order_label"][:len(pairs)].tolist() == labels
    assert ex["input_ids"].shape[0] > len(pairs), "the second copy is drawn again"


def test_pair_tensors_layout_dtypes_and_determinism():
    c = varied_corpus(100)
    for fmt in ("segment_pair", "sentence_pair", "sop_pair"):
        ex = build_examples(c, fmt, 64, SP, copies=2, seed=3)
        assert ex["input_ids"].dtype == torch.int32 and ex["token_type_ids"].dtype == torch.uint8
        assert ex["attention_mask"].dtype == torch.bool and ex["special_tokens_mask"].dtype == torch.bool
        key = "sentence_order_label" if fmt == "sop_pair" else "next_sentence_label"
        assert ex[key].shape[0] == ex["input_ids"].shape[0]
        for row, types, mask in zip(ex["input_ids"][:20], ex["token_type_ids"][:20], ex["attention_mask"][:20]):
            n = int(mask.sum())
            seps = (row[:n] == SP.sep).nonzero().flatten().tolist()
            assert row[0] == SP.cls and len(seps) == 2 and seps[1] == n - 1, "[CLS] A [SEP] B [SEP]"
            assert types[:seps[0] + 1].eq(0).all() and types[seps[0] + 1:n].eq(1).all() and types[n:].eq(0).all()
        again = build_examples(c, fmt, 64, SP, copies=2, seed=3)
        assert all(torch.equal(ex[k], again[k]) for k in ex), "the seed fixes the examples"
        other = build_examples(c, fmt, 64, SP, copies=2, seed=4)
        assert other["input_ids"].shape != ex["input_ids"].shape or not torch.equal(other[key], ex[key])
        one = build_examples(c, fmt, 64, SP, copies=1, seed=3)
        n = one["input_ids"].shape[0]
        assert torch.equal(one["input_ids"], ex["input_ids"][:n]), "copy 0 of two is copies=1"
        assert not torch.equal(ex["input_ids"][n:2 * n], one["input_ids"]), "copy 1 is drawn again"


def test_single_formats_have_no_labels_and_repeat_per_copy():
    c = varied_corpus()
    for fmt in ("full_sentences", "doc_sentences", "contiguous"):
        one, two = build_examples(c, fmt, 40, SP), build_examples(c, fmt, 40, SP, copies=2)
        assert set(one) == {"input_ids", "token_type_ids", "attention_mask", "special_tokens_mask"}
        assert torch.equal(two["input_ids"], one["input_ids"].repeat(2, 1))
        assert one["token_type_ids"].eq(0).all()


def test_padding_fraction_orders_the_formats():
    c = varied_corpus(200)
    pad = {f: build_example_set(c, f, 64, SP).padding_fraction() for f in FORMATS}
    assert pad["contiguous"] == 0.0
    assert pad["full_sentences"] < pad["doc_sentences"] and pad["segment_pair"] < pad["sentence_pair"]


@pytest.mark.parametrize("overrides,pairs,fmt", [
    (["model=roberta"], False, "full_sentences"),  # data.format=null: the objective's default
    (["model=bert"], True, "segment_pair"),
    (["model=bert", "data.format=sentence_pair"], True, "sentence_pair"),
    (["model=roberta", "data.format=doc_sentences"], False, "doc_sentences"),
    (["model=bert", "objective=mlm", "data.format=contiguous"], False, "contiguous"),
])
def test_format_defaults_and_accepted_combinations(overrides, pairs, fmt):
    assert check_format(make_cfg(*overrides).data, pairs) == fmt


@pytest.mark.parametrize("overrides,words", [
    (["model=bert", "data.format=full_sentences"], ["data.format=full_sentences", "objective=mlm_nsp",
                                                     "data.format=segment_pair", "objective=mlm"]),
    (["model=bert", "data.format=contiguous"], ["data.format=contiguous", "objective=mlm_nsp"]),
    (["model=roberta", "data.format=segment_pair"], ["data.format=segment_pair", "objective=mlm",
                                                     "objective=mlm_nsp", "full_sentences"]),
    (["model=roberta", "data.format=sentence_pair"], ["data.format=sentence_pair", "objective=mlm"]),
    (["model=bert", "data.format=sop_pair"], ["data.format=sop_pair", "objective=mlm_nsp",
                                              "objective=mlm_sop"]),
    (["model=roberta", "data.format=sop_pair"], ["data.format=sop_pair", "objective=mlm",
                                                 "objective=mlm_sop"]),
    (["data.format=full_sentence"], ["data.format='full_sentence'", "doc_sentences"]),
])
def test_format_that_does_not_fit_the_objective_is_a_one_line_error(overrides, words):
    cfg = make_cfg(*TINY, *overrides)
    with pytest.raises(ConfigError) as e:
        build(cfg)  # the check runs before any corpus is read
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def train(run_dir: Path, *overrides: str) -> dict:
    cfg = make_cfg(*TINY, "trainer.max_steps=2", "trainer.eval_every=2", "trainer.export_hf=false",
                   "objective.dupe_factor=1", *overrides)
    return run(cfg, build(cfg), run_dir)


@pytest.mark.parametrize("fmt,key,objective", [("segment_pair", "next_sentence_label", "mlm_nsp"),
                                               ("sentence_pair", "next_sentence_label", "mlm_nsp"),
                                               ("sop_pair", "sentence_order_label", "mlm_sop")])
def test_pair_labels_near_half_on_the_short_wiki_articles(fmt, key, objective):
    built = build(make_cfg(*TINY, "model=bert", f"objective={objective}", "data.max_docs=600", f"data.format={fmt}",
                           "trainer.max_steps=0"))
    ex = built.data.examples("train", 1, 0)
    assert ex.label_key == key
    labels = torch.from_numpy(ex.labels.astype("float32"))
    assert len(labels) > 300
    assert abs(labels.mean().item() - 0.5) < 0.06
