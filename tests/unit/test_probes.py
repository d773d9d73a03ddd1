"""Zero-shot probes: minimal pairs, each family's sentence scorer against a hand computation, the report.
The tests of this file that train or start a process: tests/integration/test_probes.py."""
from __future__ import annotations

import math
import random
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from runner.build import Pretrainer
from runner.data.tokenizer import SpecialIds
from runner.data.unigram import entropy
from runner.models.config import EncoderConfig
from runner.models.encoder import Encoder
from runner.models.txl import TXLConfig, TransformerXL
from runner.objectives.clm import CausalLM
from runner.objectives.mlm import MaskedLM
from runner.objectives.rtd import ReplacedTokenDetection
from runner.evaluation.probes.pairs import FrequencyTable, build_pairs, corrupt, make_pairs, words_of
from runner.evaluation.probes.accuracy import pass_rate, wilson


SP = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, num_special=5)


WIKI = OmegaConf.create({"source": "wiki", "lang": "en-us", "path": None, "max_docs": 600, "val_fraction": 0.05,
                         "test_fraction": 0.05})


def encoder_config(**kw) -> EncoderConfig:
    base = dict(family="bert", vocab_size=40, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                max_position_embeddings=32, hidden_dropout=0.0, attention_dropout=0.0)
    return EncoderConfig(**{**base, **kw})


def test_pairs_are_deterministic_differ_from_the_original_and_are_what_they_are_called():
    a = build_pairs(WIKI, "validation", per_kind=40, seed=3)
    assert a == build_pairs(WIKI, "validation", per_kind=40, seed=3), "a pure function of (corpus, split, seed)"
    assert a != build_pairs(WIKI, "validation", per_kind=40, seed=4)
    assert Counter(p.kind for p in a) == {"swap": 40, "replace": 40}
    for p in a:
        w, c = words_of(p.original), words_of(p.corrupted)
        assert p.original != p.corrupted and len(w) == len(c)
        diff = [i for i in range(len(w)) if w[i] != c[i]]
        if p.kind == "swap":  # two neighbours exchanged: the same words, so the same bag of words
            assert Counter(w) == Counter(c) and len(diff) == 2 and diff[1] == diff[0] + 1
            assert (w[diff[0]], w[diff[1]]) == (c[diff[1]], c[diff[0]])
        else:  # one interior word replaced
            assert len(diff) == 1 and 0 < diff[0] < len(w) - 1 and w[diff[0]].lower() != c[diff[0]].lower()


def test_replacements_have_similar_corpus_frequency():
    counts = Counter({f"w{i}": 10_000 - i for i in range(1000)})
    table = FrequencyTable(counts)
    rng = random.Random(0)
    for word in ("w10", "w500", "w900"):
        r = table.rank[word]
        for _ in range(20):
            new = table.similar(word, rng)
            assert new != word and abs(table.rank[new] - r) <= max(20, int(r * 0.1))


def test_a_corruption_that_cannot_apply_gives_none():
    rng = random.Random(0)
    assert corrupt(["One", "two", "three."], "swap", rng) is None  # no two interior words
    assert corrupt(["It", "is", "is", "so."], "swap", rng) is None  # the only neighbours are equal
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(["a", "b", "c", "d"], "delete", rng)


def test_make_pairs_draws_each_kind_in_its_own_seeded_order():
    sentences = [f"The {a} cat sat on the {b} mat today." for a in ("big", "small", "old") for b in ("red", "blue")]
    table = FrequencyTable(Counter([w.lower() for s in sentences for w in s.split() if w.isalpha()] * 2))
    p1 = make_pairs(sentences, table, per_kind=3, seed=0)
    assert p1 == make_pairs(sentences, table, per_kind=3, seed=0)
    assert [p.kind for p in p1] == ["swap"] * 3 + ["replace"] * 3


def test_wilson_interval_and_ties_count_half():
    lo, hi = wilson(50, 100)
    assert (round(lo, 3), round(hi, 3)) == (0.404, 0.596)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)
    assert pass_rate(torch.tensor([2.0, 1.0, 3.0, 0.0]), torch.tensor([1.0, 1.0, 4.0, 0.0])) == 0.5


def test_unigram_entropy_of_known_counts():
    assert entropy(torch.tensor([5, 5]).numpy()) == pytest.approx(math.log(2))
    assert entropy(torch.tensor([0, 1, 1, 1, 1]).numpy()) == pytest.approx(math.log(4))


def sentences() -> list[list[int]]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(5, 40, (n,), generator=g).tolist() for n in (3, 7, 5, 9)]


def test_pseudo_log_likelihood_equals_a_hand_computation():
    torch.manual_seed(0)
    c = encoder_config()
    enc, obj = Encoder(c).eval(), MaskedLM.create(c, SP, 40).eval()
    got = obj.sentence_scores(enc, sentences(), SP)["pll"]
    for k, s in enumerate(sentences()):
        total = 0.0
        for j in range(len(s)):  # one masked copy per token, each scored alone (no padding)
            row = [SP.cls, *s, SP.sep]
            row[j + 1] = SP.mask
            with torch.no_grad():
                h = enc(torch.tensor([row]))[0, j + 1]
                total += float(F.log_softmax(obj.mlm_logits(enc, h), -1)[s[j]])
        assert float(got[k]) == pytest.approx(total, abs=1e-4)


def test_causal_log_likelihood_equals_a_hand_computation():
    torch.manual_seed(0)
    c = TXLConfig(name="t", family="txl", vocab_size=40, hidden_size=16, num_layers=2, num_heads=2,
                      intermediate_size=32, hidden_dropout=0.0, attention_dropout=0.0, mem_len=8, tokenizer="word")
    enc, obj = TransformerXL(c).eval(), CausalLM.create(c, SP, 40).eval()
    got = obj.sentence_scores(enc, sentences(), SP)["loglik"]
    for k, s in enumerate(sentences()):
        row = torch.tensor([[SP.sep, *s]])
        with torch.no_grad():
            h = enc(row, mem_len=0)[0]  # (1, T, H)
            nll = obj.token_nll(enc, h[:, :-1], row[:, 1:])
        assert float(got[k]) == pytest.approx(-float(nll.sum()), abs=1e-4)


def test_the_discriminator_scorer_reads_the_discriminator_not_the_generator():
    torch.manual_seed(0)
    c = encoder_config(family="electra", embedding_size=16)
    module = Pretrainer(Encoder(c), ReplacedTokenDetection.create(c, SP, 40, generator_size=0.5)).eval()
    enc, obj = module.encoder, module.objective
    before = obj.sentence_scores(enc, sentences(), SP)
    s = sentences()
    with torch.no_grad():  # the hand computation: sum over the sentence's tokens of log sigmoid(-logit)
        logits = obj.disc_head(enc(torch.tensor([[SP.cls, *s[1], SP.sep]])))[0, 1:-1]
    assert float(before["disc"][1]) == pytest.approx(float(F.logsigmoid(-logits).sum()), abs=1e-5)
    with torch.no_grad():
        for p in obj.generator.layers.parameters():  # the generator's own layers (not the shared embeddings)
            p.add_(torch.randn_like(p))
    after = obj.sentence_scores(enc, s, SP)
    assert torch.equal(after["disc"], before["disc"]), "the discriminator's score ignores the generator"
    assert not torch.allclose(after["generator"], before["generator"])
    with torch.no_grad():
        for p in obj.disc_head.parameters():
            p.add_(torch.randn_like(p))
    assert not torch.allclose(obj.sentence_scores(enc, s, SP)["disc"], before["disc"])
