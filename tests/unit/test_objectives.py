"""Masking statistics (BERT 3.1), example formats (FULL-SENTENCES, contiguous, NSP pairs), batch order."""
from __future__ import annotations

import random

import torch

from runner.data.batches import Batches
from runner.data.examples import (ExampleSet, contiguous_ranges, full_sentence_ranges, segment_pair_ranges)
from runner.data.stream import TokenStream
from runner.data.token_corpus import TokenizedCorpus
from runner.data.tokenizer import SpecialIds
from runner.objectives.masking import IGNORE, MaskingSpec, mask_tokens

SP = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, num_special=5)


def corpus(doc_lengths: list[list[int]]) -> TokenizedCorpus:
    """A synthetic corpus: document d, sentence s holds distinct ids so order can be checked."""
    ids, sent, doc, nxt = [], [0], [0], 5
    for sentences in doc_lengths:
        for n in sentences:
            ids.extend(range(nxt, nxt + n))
            nxt += n
            sent.append(len(ids))
        doc.append(len(sent) - 1)
    return TokenizedCorpus(torch.tensor(ids, dtype=torch.int32), torch.tensor(sent), torch.tensor(doc),
                           ["t"] * len(doc_lengths), [f"d{i}" for i in range(len(doc_lengths))])


def blocks_of(c: TokenizedCorpus, ranges) -> list[list[int]]:
    """The token lists of single-sequence ranges, separators included."""
    st = TokenStream(c, SP.sep)
    return [st.tokens(a, b).tolist() for a, b in ranges.tolist()]


def pairs_of(c: TokenizedCorpus, drawn) -> list[tuple[list[int], list[int], int]]:
    """(A tokens, B tokens, label) of drawn pair ranges."""
    st, (ranges, labels) = TokenStream(c, SP.sep), drawn
    return [(st.tokens(r[0], r[1]).tolist(), st.tokens(r[2], r[3]).tolist(), int(lab))
            for r, lab in zip(ranges.tolist(), labels.tolist())]


def test_masking_rates_follow_bert():
    ids = torch.randint(5, 1000, (400, 128), generator=torch.Generator().manual_seed(0))
    ids[:, 0], ids[:, -1] = SP.cls, SP.sep
    special = ids < SP.num_special
    spec = MaskingSpec(mask_id=SP.mask, first_regular_id=5, vocab_size=1000)
    masked, labels = mask_tokens(ids, special, spec, torch.Generator().manual_seed(1))
    selected = labels.ne(IGNORE)
    assert not selected[special].any(), "special tokens are never selected"
    assert abs(selected.float().sum() / (~special).sum() - 0.15) < 0.005
    assert torch.equal(labels[selected], ids[selected])
    n = selected.sum()
    as_mask = (masked.eq(SP.mask) & selected).sum() / n
    kept = (masked.eq(ids) & selected).sum() / n
    assert abs(as_mask - 0.8) < 0.01 and abs(kept - 0.1 - 0.1 / 995) < 0.01  # random can redraw the same id
    assert torch.equal(masked[~selected], ids[~selected])
    assert (masked[selected & masked.ne(SP.mask)] >= 5).all(), "random replacements are never special tokens"


def test_full_sentences_never_split_a_sentence_and_cross_documents():
    c = corpus([[10, 20], [15, 5], [70]])
    ranges = full_sentence_ranges(c, max_tokens=62)
    blocks = blocks_of(c, ranges)
    sentences = [c.sentence(j).tolist() for j in range(c.num_sentences)]
    assert all(len(b) <= 62 for b in blocks)
    # each sentence shorter than a block lands whole in one block
    for s in sentences[:-1]:
        assert any(b[i:i + len(s)] == s for b in blocks for i in range(len(b))), s
    assert [SP.sep] in [b[i:i + 1] for b in blocks for i in range(len(b))], "documents are joined by a separator"
    assert sum(len(b) for b in blocks) == sum(map(len, sentences)) + 1  # one separator inside a block
    assert [len(b) for b in blocks] == [51, 62, 8]  # the 70-token sentence is longer than a block: split
    t = ExampleSet(TokenStream(c, SP.sep), ranges, 64, SP).tensors()
    assert torch.equal(t["input_ids"][:, 0], torch.full((len(blocks),), SP.cls))
    assert t["special_tokens_mask"].equal(t["input_ids"] < 5)


def test_contiguous_packing_leaves_no_padding():
    c = corpus([[10, 20, 30], [15, 5], [70]])
    blocks = blocks_of(c, contiguous_ranges(c, max_tokens=30))
    assert all(len(b) == 30 for b in blocks)
    assert len(blocks) == (c.num_tokens + 2) // 30  # two document separators; the incomplete tail is dropped


def test_sentence_pairs_are_half_random_and_well_formed():
    c = corpus([[12] * 8 for _ in range(60)])
    drawn = segment_pair_ranges(c, 61, short_seq_prob=0.1, random_next_prob=0.5, rng=random.Random(0))
    pairs = pairs_of(c, drawn)
    labels = [lab for _, _, lab in pairs]
    assert 0.4 < sum(labels) / len(labels) < 0.65
    assert all(len(a) + len(b) <= 61 and a and b for a, b, _ in pairs)
    doc_of = {int(t): d for d in range(c.num_docs) for s in c.doc_sentences(d) for t in s}
    for a, b, lab in pairs:
        same_doc = doc_of[a[-1]] == doc_of[b[0]]
        assert same_doc != bool(lab), "label 1 exactly when B comes from another article"
        if not lab:
            assert b[0] > a[-1], "B follows A in the same article"
    t = ExampleSet(TokenStream(c, SP.sep), drawn[0], 64, SP, drawn[1], "next_sentence_label").tensors()
    row, types = t["input_ids"][0], t["token_type_ids"][0]
    a, b, _ = pairs[0]
    assert row[0] == SP.cls and row[len(a) + 1] == SP.sep and row[len(a) + len(b) + 2] == SP.sep
    assert types[:len(a) + 2].eq(0).all() and types[len(a) + 2:len(a) + len(b) + 3].eq(1).all()


def test_batches_are_a_function_of_the_index():
    ex = {"input_ids": torch.arange(50).repeat_interleave(4).view(50, 4) + 5,
          "attention_mask": torch.ones(50, 4, dtype=torch.long)}
    b1, b2 = Batches(ex, 8, seed=3), Batches(ex, 8, seed=3)
    assert torch.equal(b1.get(17)["input_ids"], b2.get(17)["input_ids"])
    epoch = torch.cat([b1.get(i)["input_ids"][:, 0] for i in range(50 // 2 // 8 * 2 + 1)])[:48]
    assert len(set(epoch.tolist())) == 48, "no example repeats within an epoch"
    assert not torch.equal(Batches(ex, 8, seed=4).get(0)["input_ids"], b1.get(0)["input_ids"])
