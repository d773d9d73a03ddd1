"""Minimal-pair suites in BLiMP's format: reading and its one-line errors, the per-paradigm subsample, scoring as the
field scores BLiMP (mean over paradigms, ties wrong), PLL-word-l2r against a hand computation, a transformers model
scored by the same code as a run's heads, and BLiMP's published figures. The tests that train or run a command:
tests/integration/test_suites_run.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from runner.build import build, validate
from runner.config.errors import ConfigError
from runner.data.tokenizer import SpecialIds, encode_with_words
from runner.data.words import words_per_token
from runner.engine.validation import validation_line
from runner.evaluate import evaluate, settings
from runner.evaluation.probes.published import blimp_table, is_blimp, known_identical, published_scores
from runner.evaluation.probes.suite_scoring import (SuiteProbes, accuracies, build_suite_probes, encode_suite,
                                                    objective_scorer, suite_metrics)
from runner.evaluation.probes.suites import Suite, SuitePair, read_pairs, read_suites
from runner.evaluation.probes.transformers_scorer import load_model, model_kind, transformers_scorer
from runner.hf.export import export_run
from runner.models.config import EncoderConfig
from runner.models.encoder import Encoder
from runner.objectives.mlm import MaskedLM
from runner.objectives.scoring import masked_lm_scores, head_at, word_l2r_masked
from runner.reporting.suite_table import suite_line, suite_table
from tests.conftest import ROOT, TINY, make_cfg

FIXTURES = ROOT / "tests" / "fixtures" / "minimal_pairs"
SP = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, num_special=5)


def write(path: Path, rows: list, raw: bool = False) -> Path:
    path.write_text("".join((r if raw else json.dumps(r)) + "\n" for r in rows))
    return path


def pair(good: str = "The cat sleeps.", bad: str = "The cat sleep.", uid: str = "p", term: str = "t", **kw) -> dict:
    return {"sentence_good": good, "sentence_bad": bad, "UID": uid, "linguistics_term": term, **kw}


# ---- reading -------------------------------------------------------------------------------------------------------
def test_a_blimp_format_folder_reads_as_one_suite_named_after_its_parent():
    (suite,) = read_suites([str(FIXTURES / "data")])
    assert suite.name == "minimal_pairs", "a data/ folder is named after its parent, as BLiMP's data/ -> blimp"
    assert suite.paradigms == ["anaphor_number_agreement", "determiner_noun_agreement_1",
                               "regular_plural_subject_verb_agreement_1"], "files in name order"
    assert len(suite.pairs) == 18 and suite.pairs[0] == SuitePair(
        "The boys washed themselves.", "The boys washed himself.", "anaphor_number_agreement", "anaphor_agreement", "0")
    assert suite.phenomenon_of()["determiner_noun_agreement_1"] == "determiner_noun_agreement"
    own = read_suites([str(FIXTURES / "own_pairs.jsonl")])[0]
    assert own.name == "own_pairs" and own.paradigms == ["my_npi"], "extra fields (note) are ignored"


@pytest.mark.parametrize("rows, raw, expect", [
    ([pair(), {k: v for k, v in pair().items() if k != "UID"}], False, "bad.jsonl:2: no UID"),
    ([pair(), pair(sentence_good="")], False, "bad.jsonl:2: no sentence_good"),
    ([pair(good="Same.", bad="Same.")], False, "bad.jsonl:1: sentence_good and sentence_bad are the same"),
    ([json.dumps(pair()), "{not json"], True, "bad.jsonl:2: not a JSON object"),
    ([json.dumps(pair()), "[1, 2]"], True, "bad.jsonl:2: not a JSON object"),
    ([], True, "bad.jsonl: empty"),
])
def test_a_bad_suite_file_is_one_line_naming_the_file_and_line(tmp_path, rows, raw, expect):
    f = write(tmp_path / "bad.jsonl", rows, raw)
    with pytest.raises(ConfigError) as e:
        read_suites([str(f)])
    assert expect in str(e.value) and "\n" not in str(e.value)


def test_paths_that_hold_no_suite_and_two_suites_of_one_name_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="does not exist.*github.com/alexwarstadt/blimp"):
        read_suites([str(tmp_path / "nowhere")])
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ConfigError, match="holds no .jsonl file"):
        read_suites([str(tmp_path / "empty_dir")])
    (tmp_path / "b").mkdir()
    a = write(tmp_path / "x.jsonl", [pair()])
    b = write(tmp_path / "b" / "x.jsonl", [pair()])
    with pytest.raises(ConfigError, match="two suites are named 'x'"):
        read_suites([str(a), str(b)])


def test_only_blimps_published_identical_pairs_are_kept(tmp_path):
    assert known_identical() == {"passive_1": ["324", "810"],
                                 "principle_A_case_2": ["105", "287", "372", "816", "967"]}
    kept = write(tmp_path / "passive_1.jsonl", [pair("Douglas's senator was left by Susan.",
                                                     "Douglas's senator was left by Susan.", "passive_1", "a",
                                                     pairID="324")])
    assert len(read_pairs(kept)) == 1, "BLiMP as published loads"
    other = write(tmp_path / "p.jsonl", [pair("A b.", "A b.", "passive_1", "a", pairID="5")])
    with pytest.raises(ConfigError, match="p.jsonl:1: sentence_good and sentence_bad are the same"):
        read_pairs(other)


def test_a_changed_file_is_read_again(tmp_path):
    f = write(tmp_path / "s.jsonl", [pair()])
    assert len(read_suites([str(f)])[0].pairs) == 1
    write(f, [pair(), pair("A dog barks.", "A dog bark.")])
    assert len(read_suites([str(f)])[0].pairs) == 2


def test_the_subsample_is_per_paradigm_seeded_and_in_file_order():
    (suite,) = read_suites([str(FIXTURES / "data")])
    a = suite.sample(2, seed=0)
    assert a == suite.sample(2, seed=0), "the same pairs for every run of a comparison"
    assert a != suite.sample(2, seed=1)
    assert [p.paradigm for p in a.pairs].count("determiner_noun_agreement_1") == 2 and len(a.pairs) == 6
    index = {p: i for i, p in enumerate(suite.pairs)}
    assert [index[p] for p in a.pairs] == sorted(index[p] for p in a.pairs)
    assert suite.sample(None, 0) is suite and suite.sample(100, 0).pairs == suite.pairs


# ---- scoring as BLiMP is scored -------------------------------------------------------------------------------------
def test_the_overall_score_is_the_mean_of_paradigms_not_of_pairs_and_ties_are_wrong():
    pairs = [SuitePair(f"g{i}", f"b{i}", "big", "x", str(i)) for i in range(8)] + \
            [SuitePair(f"g{i}", f"b{i}", "small", "y", str(i)) for i in range(8, 10)]
    suite = Suite("s", "s", tuple(pairs))
    right = torch.tensor([True] * 8 + [False, False])
    overall, phenomena, paradigms = accuracies(suite, right)
    assert paradigms == {"big": 1.0, "small": 0.0} and overall == 0.5, "not 8/10"
    assert phenomena == {"x": 1.0, "y": 0.0}
    encoded = type("E", (), {"suite": suite, "good": torch.arange(0, 20, 2), "bad": torch.arange(1, 21, 2),
                             "unknown": torch.zeros(10, dtype=torch.bool)})()
    flat = torch.zeros(20)  # a model that scores every sentence the same gets nothing right
    m = suite_metrics(encoded, {"pll": flat, "other": torch.arange(20, 0, -1).double()})
    assert m["s/overall"] == m["s/pll/overall"] == 0.0, "a tie is wrong"
    assert m["s/other/overall"] == 1.0 and m["s/other/paradigm/small"] == 1.0 and m["s/pairs"] == 10


def test_pairs_with_an_unknown_token_are_scored_and_counted(finished_tokenizer):
    tok, specials = finished_tokenizer
    suite = Suite("s", "s", (SuitePair("The cat sleeps.", "The cat sleep.", "p", "t", "0"),
                             SuitePair("The ☃ sleeps.", "The ☃ sleep.", "p", "t", "1")))
    e = encode_suite(suite, tok, specials.unk, None)
    assert e.unknown.tolist() == [False, True]


@pytest.fixture(scope="module")
def tiny_bert():
    cfg = make_cfg("model=bert", "objective=mlm", *TINY, "trainer.max_steps=0",
                   f"probes.suites=[{FIXTURES / 'data'}]", "probes.suite_pairs=2")
    return cfg, build(cfg)


@pytest.fixture(scope="module")
def finished_tokenizer(tiny_bert):
    return tiny_bert[1].data.tokenizer, tiny_bert[1].data.specials


def test_words_come_from_the_tokenizer_and_word_l2r_masks_the_rest_of_the_word(finished_tokenizer):
    tok, _ = finished_tokenizer
    ids, words = encode_with_words(tok, ["unbelievably long words."])
    assert len(ids[0]) == len(words[0]) and words[0][0] == 0 and words[0][-1] == words[0][-2] + 1, "'.' is a word"
    assert word_l2r_masked([0, 0, 0, 1, 1, 2], 0) == (0, 1, 2)
    assert word_l2r_masked([0, 0, 0, 1, 1, 2], 1) == (1, 2), "the earlier pieces stay visible"
    assert word_l2r_masked([0, 0, 0, 1, 1, 2], 4) == (4,) and word_l2r_masked([None, 0], 0) == (0,)


def test_pll_word_l2r_equals_a_hand_computation_and_pll_is_unchanged():
    torch.manual_seed(0)
    c = EncoderConfig(family="bert", vocab_size=40, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                      max_position_embeddings=32, hidden_dropout=0.0, attention_dropout=0.0)
    enc, obj = Encoder(c).eval(), MaskedLM.create(c, SP, 40).eval()
    sents = [[10, 11, 12, 13, 14], [20, 21, 22], [30]]
    words = [[0, 0, 1, 1, 1], [0, 1, 2], [0]]
    got = obj.sentence_scores(enc, sents, SP, words)
    for k, (s, w) in enumerate(zip(sents, words)):
        pll = l2r = 0.0
        for j in range(len(s)):
            for masked, into in (((j,), "pll"), (word_l2r_masked(w, j), "l2r")):
                row = [SP.cls, *s, SP.sep]
                for m in masked:
                    row[m + 1] = SP.mask
                with torch.no_grad():
                    h = enc(torch.tensor([row]))[0, j + 1]
                    lp = float(F.log_softmax(obj.mlm_logits(enc, h), -1)[s[j]])
                pll, l2r = (pll + lp, l2r) if into == "pll" else (pll, l2r + lp)
        assert float(got["pll"][k]) == pytest.approx(pll, abs=1e-4)
        assert float(got["pll_word_l2r"][k]) == pytest.approx(l2r, abs=1e-4)
    assert float(got["pll_word_l2r"][1]) == pytest.approx(float(got["pll"][1]), abs=1e-6), "one piece per word"
    assert set(obj.sentence_scores(enc, sents, SP, words, first_only=True)) == {"pll"}
    small = masked_lm_scores(head_at(enc, lambda h: obj.mlm_logits(enc, h)), sents, SP.mask, SP.pad, [SP.cls],
                             [SP.sep], torch.device("cpu"), words, rows=3)
    assert torch.allclose(small["pll_word_l2r"], got["pll_word_l2r"]), "the same in chunks of any size"


def test_xlnet_scores_the_same_batched_by_length_as_one_sentence_at_a_time():
    cfg = make_cfg("model=xlnet", "model.num_layers=2", "model.hidden_size=32", "model.num_heads=2",
                   "model.intermediate_size=64", "model.vocab_size=1000", "data.max_docs=300", "data.seq_len=32",
                   "objective.reuse_len=16", "trainer.max_steps=0", "logger.mode=disabled")
    built = build(cfg)
    enc, obj, sp = built.module.encoder, built.objective, built.data.specials
    sents = [[20, 30, 40], [50, 60, 70], [80, 90, 100, 110], [7]]
    words = [[0, 0, 1], [0, 1, 2], [0, 0, 0, 1], [0]]
    together = obj.sentence_scores(enc, sents, sp, words)
    for i, (s, w) in enumerate(zip(sents, words)):
        alone = obj.sentence_scores(enc, [s], sp, [w])
        for name in ("pll", "pll_word_l2r"):
            assert float(together[name][i]) == pytest.approx(float(alone[name][0]), abs=1e-4)
    assert float(together["pll_word_l2r"][0]) != pytest.approx(float(together["pll"][0]), abs=1e-6)


# ---- a run's suites, validation and the report ---------------------------------------------------------------------
def test_a_runs_suites_score_the_subsample_by_the_first_scorer_and_everything_at_the_end(tiny_bert):
    cfg, built = tiny_bert
    probes = build_suite_probes(cfg, built.data)
    during = probes.evaluate(built.objective, built.module.encoder)
    end = probes.evaluate(built.objective, built.module.encoder, full=True)
    assert during["minimal_pairs/pairs"] == 6 and end["minimal_pairs/pairs"] == 18
    assert "minimal_pairs/pll_word_l2r/overall" not in during and "minimal_pairs/pll_word_l2r/overall" in end
    report = probes.report(end)["minimal_pairs"]
    assert report["scorers"] == ["pll", "pll_word_l2r"] and report["paradigm_count"] == 3
    assert report["overall"]["pll"] == pytest.approx(sum(p["pll"] for p in report["paradigms"].values()) / 3)
    assert report["phenomena"]["anaphor_agreement"]["pll"] == report["paradigms"]["anaphor_number_agreement"]["pll"]
    line = validation_line(10, 20, 1.0, {"mlm_loss": 2.0}, {}, during)
    assert f"minimal_pairs {during['minimal_pairs/overall']:.3f}" in line


def test_the_report_shows_blimps_published_models_only_beside_blimp_paradigms():
    report = {"overall": {"pll": 0.6}, "paradigm_count": 1, "pairs": 10, "scorers": ["pll"],
              "phenomena": {"anaphor_agreement": {"pll": 0.6}},
              "paradigms": {"anaphor_number_agreement": {"phenomenon": "anaphor_agreement", "pll": 0.6}}}
    assert "published 5-gram 0.519" in suite_line(report)
    assert len(suite_table("s", report).columns) == 3 + 4
    report["paradigms"] = {"my_npi": {"phenomenon": "npi", "pll": 0.6}}
    assert "published" not in suite_line(report) and len(suite_table("s", report).columns) == 3


def test_blimps_published_means_are_the_papers():
    p = published_scores()
    assert {m: round(p[m]["overall"], 3) for m in p} == {"ngram": 0.612, "lstm": 0.698, "txl": 0.696,
                                                        "gpt2": 0.830, "human": 0.886}
    assert round(p["gpt2"]["phenomena"]["island_effects"], 3) == 0.727
    assert is_blimp(["adjunct_island"]) and not is_blimp(["my_npi"]) and not is_blimp([])


def test_a_bad_suite_stops_validation_before_any_data(tmp_path):
    f = write(tmp_path / "x.jsonl", [pair(), pair(good="Same.", bad="Same.")])
    cfg = make_cfg("model=bert", *TINY, f"probes.suites=[{f}]", "probes.enabled=false")
    with pytest.raises(ConfigError, match=r"x.jsonl:2: sentence_good and sentence_bad are the same"):
        validate(cfg)


def test_words_per_token_counts_the_texts_words(tiny_bert):
    _, built = tiny_bert
    train, tok = built.data.splits["train"], built.data.tokenizer
    ratio = words_per_token(train, tok, built.data.specials.num_special)
    exact_words = sum(len(t.split()) for t in tok.decode_batch(
        [[int(x) for x in train.sentence(j).tolist()] for j in range(train.num_sentences)], skip_special_tokens=True))
    exact_tokens = sum(int((train.sentence(j) >= built.data.specials.num_special).sum())
                       for j in range(train.num_sentences))
    assert 0.2 < ratio < 1.0 and ratio == pytest.approx(exact_words / exact_tokens, rel=0.05)


# ---- any transformers model, by the same code ----------------------------------------------------------------------
@pytest.mark.parametrize("model", ["bert", "electra_bert", "xlnet"])  # electra_bert: the ELECTRA transformers holds
def test_a_runs_hf_export_scores_as_its_own_heads(tmp_path, model):
    extra = ["objective.reuse_len=16", "data.seq_len=32"] if model == "xlnet" else []
    cfg = make_cfg(f"model={model}", *TINY, *extra, "trainer.max_steps=0", f"probes.suites=[{FIXTURES / 'data'}]")
    built = build(cfg)
    export_run(built, tmp_path)
    probes = build_suite_probes(cfg, built.data)
    encoded = probes.full[0]
    ours = objective_scorer(built.objective, built.module.encoder, built.data.specials)(encoded.ids, encoded.words)
    m = load_model(tmp_path / "hf", torch.device("cpu"))
    assert m.kind == {"bert": "masked_lm", "electra_bert": "electra_discriminator", "xlnet": "permutation_lm"}[model]
    hf_encoded = encode_suite(encoded.suite, m.tokenizer, m.unk_id, m.max_tokens)
    assert hf_encoded.ids == encoded.ids and hf_encoded.words == encoded.words, "the same tokens and words"
    theirs = transformers_scorer(m, torch.device("cpu"))(hf_encoded.ids, hf_encoded.words)
    assert set(theirs) <= set(ours) and theirs
    for name, s in theirs.items():
        assert torch.allclose(s, ours[name], atol=2e-3), name
    hf_probes = SuiteProbes([encoded.suite], m.tokenizer, m.unk_id, None, m.max_tokens)
    a = probes.evaluate(built.objective, built.module.encoder, full=True)
    b = hf_probes.evaluate_with(transformers_scorer(m, torch.device("cpu")), full=True)
    assert {k: v for k, v in b.items()} == {k: a[k] for k in b}


def test_the_kind_of_a_model_directory_comes_from_its_architectures(tmp_path):
    for arch, kind in [("BertForMaskedLM", "masked_lm"), ("AlbertForPreTraining", "masked_lm"),
                       ("ElectraForPreTraining", "electra_discriminator"), ("GPT2LMHeadModel", "causal_lm"),
                       ("LlamaForCausalLM", "causal_lm"), ("XLNetLMHeadModel", "permutation_lm")]:
        (tmp_path / "config.json").write_text(json.dumps({"architectures": [arch]}))
        assert model_kind(tmp_path) == (kind, arch)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertForSequenceClassification"]}))
    with pytest.raises(ConfigError, match="scores a masked LM"):
        model_kind(tmp_path)


def test_evaluate_refuses_a_directory_that_is_neither_in_one_line(tmp_path):
    with pytest.raises(ConfigError) as e:
        evaluate(tmp_path, [f"probes.suites=[{FIXTURES / 'data'}]"])
    assert "neither a bertlab run" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="no such directory"):
        evaluate(tmp_path / "nope", [])


def test_evaluate_takes_only_its_keys_and_needs_a_suite():
    with pytest.raises(ConfigError, match="model.hidden_size: python -m runner.evaluate takes probes.suites"):
        settings(["model.hidden_size=8"])
    with pytest.raises(ConfigError, match="probes.suites is empty"):
        settings([])
    with pytest.raises(ConfigError, match="probes.suite_final_pairs=0 must be >= 1"):
        settings([f"probes.suites=[{FIXTURES / 'data'}]", "probes.suite_final_pairs=0"])
    cfg = settings([f"probes.suites=[{FIXTURES / 'data'}]", "trainer.device=cpu"])
    assert list(cfg.probes.suites) == [str(FIXTURES / "data")] and cfg.trainer.device == "cpu"


def test_blimp_paradigms_count_under_the_papers_twelve_phenomena(tmp_path):
    f = write(tmp_path / "animate_subject_trans.jsonl",
              [pair("A girl saw a cat.", "A rock saw a cat.", "animate_subject_trans", "s-selection")])
    assert read_pairs(f)[0].phenomenon == "argument_structure", "as the paper's tables count it"
    own = write(tmp_path / "mine.jsonl", [pair(uid="mine", term="s-selection")])
    assert read_pairs(own)[0].phenomenon == "s-selection", "a paradigm of one's own keeps its label"
    assert len({v["phenomenon"] for v in blimp_table()["paradigms"].values()}) == 12
