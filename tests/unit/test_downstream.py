"""Downstream evaluation (issue 6): tasks (wiki_topic, GLUE from local files), fine-tuning over seeds, baselines.
The tests of this file that train or start a process: tests/integration/test_downstream.py."""
from __future__ import annotations

import dataclasses

import random
import statistics
from types import SimpleNamespace

import pytest
import torch

from runner.data.token_corpus import TokenizedCorpus
from runner.data.tokenizer import SpecialIds, special_ids, train_tokenizer
from runner.evaluation.downstream import (Classifier, Example, Task, accuracy, glue_task, macro_f1,
                               random_like, summarize, wiki_topic)
from runner.evaluation.downstream.classifier import collate
from runner.config.errors import ConfigError
from runner.models.config import EncoderConfig
from runner.models.encoder import Encoder
from runner.models.txl import TXLConfig, TransformerXL


def keyword_task(n: int = 240, seed: int = 0, pairs: bool = False) -> Task:
    """Three labels, each marked by its own keyword among random filler tokens."""
    rng = random.Random(seed)

    def ex() -> Example:
        y = rng.randrange(3)
        body = [rng.randrange(10, 60) for _ in range(rng.randrange(4, 14))]
        body.insert(rng.randrange(len(body)), 5 + y)
        if pairs:
            b = [rng.randrange(10, 60) for _ in range(3)]
            return Example((SP.cls, *body, SP.sep, *b, SP.sep), y, (0,) * (len(body) + 2) + (1,) * 4)
        return Example((SP.cls, *body, SP.sep), y)
    return Task("keywords", ["a", "b", "c"], [ex() for _ in range(n)], [ex() for _ in range(60)],
                [ex() for _ in range(90)], pad_id=SP.pad, num_special=SP.num_special, pairs=pairs)


SP = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, num_special=5)


def test_accuracy_and_macro_f1_by_hand():
    y_true, y_pred = [0, 0, 1, 1, 2], [0, 1, 1, 1, 0]
    assert accuracy(y_true, y_pred) == pytest.approx(3 / 5)
    # label 0: tp 1 fp 1 fn 1 -> 0.5; label 1: tp 2 fp 1 fn 0 -> 0.8; label 2: tp 0 -> 0
    assert macro_f1(y_true, y_pred) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert macro_f1([1, 1], [1, 1]) == 1.0
    assert macro_f1([0, 1], [1, 0]) == 0.0


def test_summarize_mean_and_sample_std():
    s = summarize([{"accuracy": 0.5, "f1": 0.2}, {"accuracy": 0.6, "f1": 0.4}, {"accuracy": 0.7, "f1": 0.9}])
    assert s["accuracy_mean"] == pytest.approx(0.6) and s["accuracy_std"] == pytest.approx(0.1)  # ddof=1
    assert s["f1_mean"] == pytest.approx(0.5) and s["f1_std"] == pytest.approx(statistics.stdev([0.2, 0.4, 0.9]))
    one = summarize([{"accuracy": 0.3, "f1": 0.1}])
    assert (one["accuracy_mean"], one["accuracy_std"], one["f1_std"]) == (0.3, 0.0, 0.0)


def corpus(docs: list) -> TokenizedCorpus:
    """A TokenizedCorpus of (title, topic, sentences of ids)."""
    ids, sent, doc = [], [0], [0]
    for _, _, sentences in docs:
        for s in sentences:
            ids.extend(s)
            sent.append(len(ids))
        doc.append(len(sent) - 1)
    return TokenizedCorpus(ids=torch.tensor(ids, dtype=torch.int32), sent_offsets=torch.tensor(sent),
                           doc_offsets=torch.tensor(doc), topics=[d[1] for d in docs], titles=[d[0] for d in docs])


def fake_data(n_test: int = 200, seed: int = 0) -> SimpleNamespace:
    rng = random.Random(seed)
    topics = ["Arts", "History", "People", "Uncategorized", ""]

    def docs(prefix: str, n: int) -> list:
        return [(f"{prefix} {i}", topics[i % len(topics)],
                 [[rng.randrange(5, 50) for _ in range(rng.randrange(1, 30))] for _ in range(rng.randrange(1, 6))])
                for i in range(n)]
    return SimpleNamespace(splits={"train": corpus(docs("train", 50)), "validation": corpus(docs("val", 10)),
                                   "test": corpus(docs("test", n_test))}, specials=SP)


def test_wiki_topic_subsets_are_fixed_disjoint_and_from_the_test_split():
    data = fake_data()
    task = wiki_topic(data, seq_len=16)
    assert task.labels == ["Arts", "History", "People"]  # Uncategorized and missing topics left out
    test_split = data.splits["test"]
    kept = [i for i, p in enumerate(test_split.topics) if p not in ("Uncategorized", "")]
    expected = {}  # title -> [CLS] + the document's first 14 tokens + [SEP]
    for i in kept:
        lo = int(test_split.sent_offsets[test_split.doc_offsets[i]])
        hi = int(test_split.sent_offsets[test_split.doc_offsets[i + 1]])
        expected[test_split.titles[i]] = (SP.cls, *test_split.ids[lo:hi].tolist()[:14], SP.sep)
    title_of = {v: k for k, v in expected.items()}
    assert len(title_of) == len(expected) == 120

    def assignment(t: Task) -> dict:
        out = {}
        for name in ("train", "dev", "test"):
            for ex in getattr(t, name):
                assert ex.ids[0] == SP.cls and ex.ids[-1] == SP.sep and len(ex.ids) <= 16 and ex.token_types is None
                assert t.labels[ex.label] == test_split.topics[test_split.titles.index(title_of[ex.ids])]
                assert title_of[ex.ids] not in out, "a document in two subsets"
                out[title_of[ex.ids]] = name
        return out
    full = assignment(task)
    assert set(full) == set(expected)  # every kept test-split document exactly once, nothing else
    n = {name: list(full.values()).count(name) for name in ("train", "dev", "test")}
    assert 0.45 < n["train"] / 120 < 0.75 and n["dev"] > 10 and n["test"] > 10  # 60/20/20 by hash
    assert assignment(wiki_topic(data, seq_len=16)) == full
    # fixed: a document lands in the same subset whatever else the split holds, in any order
    docs = [(t, p, [s.tolist() for s in test_split.doc_sentences(i)])
            for i, (t, p) in enumerate(zip(test_split.titles, test_split.topics))]
    sub = [docs[i] for i in random.Random(1).sample(range(len(docs)), 120)]
    sub_task = wiki_topic(SimpleNamespace(splits={"test": corpus(sub)}, specials=SP), seq_len=16)
    sub_assignment = assignment(sub_task)
    assert len(sub_assignment) > 50 and all(full[t] == name for t, name in sub_assignment.items())
    # other fractions move documents; bad fractions are refused
    assert assignment(wiki_topic(data, seq_len=16, fractions=(0.2, 0.4, 0.4))) != full
    with pytest.raises(ValueError, match="fractions"):
        wiki_topic(data, fractions=(0.5, 0.2, 0.2))


@pytest.fixture(scope="module")
def tok():
    text = ["the movie was great and fun", "a dull and boring film", "he said it was fine", "is this a question",
            "the cat sat on the mat", "it rains in spain today", " ".join(map(str, range(200)))] * 20
    t = train_tokenizer("wordpiece", text, 400, True)
    return t, special_ids(t, "wordpiece")


def write(path, rows):
    path.write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")


def test_glue_single_sentences_from_tsv(tmp_path, tok):
    tokenizer, sp = tok
    d = tmp_path / "SST-2"
    d.mkdir()
    train = [("sentence", "label")] + [(f"the movie was great {i}" if i % 2 else f"a dull film {i}", str(i % 2))
                                       for i in range(200)]
    write(d / "train.tsv", train)
    write(d / "dev.tsv", [("sentence", "label"), ("a boring film", "0"), ("great fun", "1")])
    task = glue_task("glue_sst2", tokenizer, sp, seq_len=10, path=d)
    assert task.name == "glue_sst2" and task.labels == ["negative", "positive"] and not task.pairs
    assert len(task.dev) == 2 and [ex.label for ex in task.dev] == [0, 1]
    # a fixed part of train is the test set: disjoint, about test_fraction (10%), the same on every load
    assert len({ex.ids for ex in task.train + task.test}) == 200, "distinct sentences stay distinct"
    assert len(task.train) + len(task.test) == 200 and 5 <= len(task.test) <= 40
    assert {ex.ids for ex in task.train}.isdisjoint({ex.ids for ex in task.test})
    again = glue_task("sst2", tokenizer, sp, seq_len=10, path=d)
    assert again.test == task.test and again.train == task.train
    for ex in task.train + task.dev:
        assert ex.ids[0] == sp.cls and ex.ids[-1] == sp.sep and len(ex.ids) <= 10 and ex.token_types is None
    enc = tokenizer.encode("a boring film", add_special_tokens=False).ids
    assert task.dev[0].ids == (sp.cls, *enc, sp.sep)
    dev_as_test = glue_task("sst2", tokenizer, sp, seq_len=10, path=d, test_from="dev")
    assert dev_as_test.test == dev_as_test.dev and len(dev_as_test.train) == 200


def test_glue_pairs_get_token_types(tmp_path, tok):
    tokenizer, sp = tok
    mrpc = tmp_path / "MRPC"  # GLUE's original layout: Quality, #1 ID, #2 ID, #1 String, #2 String
    mrpc.mkdir()
    head = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
    write(mrpc / "train.tsv", [head] + [(str(i % 2), "1", "2", f"he said it was fine {i}", "the cat sat")
                                        for i in range(50)])
    write(mrpc / "dev.tsv", [head, ("1", "3", "4", "the cat sat on the mat", "it rains")])
    task = glue_task("mrpc", tokenizer, sp, seq_len=32, path=mrpc)
    assert task.pairs and task.labels == ["not_equivalent", "equivalent"]
    ex = task.dev[0]
    a = tokenizer.encode("the cat sat on the mat", add_special_tokens=False).ids
    b = tokenizer.encode("it rains", add_special_tokens=False).ids
    assert ex.ids == (sp.cls, *a, sp.sep, *b, sp.sep) and ex.label == 1
    assert ex.token_types == (0,) * (len(a) + 2) + (1,) * (len(b) + 1)
    assert all(e.token_types is not None and e.token_types.count(1) >= 2 for e in task.train + task.test)
    # truncation keeps both segments and the structure within seq_len
    short = glue_task("mrpc", tokenizer, sp, seq_len=7, path=mrpc).dev[0]
    assert len(short.ids) == 7 and short.ids.count(sp.sep) == 2 and short.token_types[-1] == 1
    assert short.token_types.index(1) == short.ids.index(sp.sep) + 1

    rte = tmp_path / "RTE"  # string labels
    rte.mkdir()
    write(rte / "train.tsv", [("index", "sentence1", "sentence2", "label")] +
          [(str(i), "the cat sat", f"it rains {i}", "entailment" if i % 3 else "not_entailment") for i in range(30)])
    write(rte / "dev.tsv", [("index", "sentence1", "sentence2", "label"), ("0", "a", "b", "not_entailment")])
    t = glue_task("rte", tokenizer, sp, path=rte)
    assert t.dev[0].label == 1 and {ex.label for ex in t.train + t.test} == {0, 1}
    cola = tmp_path / "CoLA"  # no header; label in column 1, sentence in column 3
    cola.mkdir()
    write(cola / "train.tsv", [("gj04", str(i % 2), "", f"the cat sat {i}") for i in range(30)])
    write(cola / "dev.tsv", [("gj04", "0", "*", "cat the sat")])
    c = glue_task("cola", tokenizer, sp, path=cola)
    assert c.labels == ["unacceptable", "acceptable"] and c.dev[0].label == 0 and not c.pairs
    assert c.dev[0].ids == (sp.cls, *tokenizer.encode("cat the sat", add_special_tokens=False).ids, sp.sep)


def test_glue_from_a_save_to_disk_dataset(tmp_path, tok):
    datasets = pytest.importorskip("datasets")
    tokenizer, sp = tok
    rows = {"question": ["is this a question"] * 20, "sentence": [f"it rains {i}" for i in range(20)],
            "label": [i % 2 for i in range(20)], "idx": list(range(20))}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows),
                          "validation": datasets.Dataset.from_dict({k: v[:4] for k, v in rows.items()})}
                         ).save_to_disk(str(tmp_path / "qnli"))
    task = glue_task("glue_qnli", tokenizer, sp, seq_len=16, path=tmp_path / "qnli", test_from="dev")
    assert task.pairs and len(task.train) == 20 and len(task.dev) == 4 and task.test == task.dev
    assert [ex.label for ex in task.dev] == [0, 1, 0, 1]
    assert all(ex.token_types is not None and 1 in ex.token_types for ex in task.train)


def test_glue_errors_are_one_line(tmp_path, tok):
    tokenizer, sp = tok
    with pytest.raises(ConfigError, match="unknown GLUE task 'glue_sts'"):
        glue_task("glue_sts", tokenizer, sp, path=tmp_path)
    with pytest.raises(ConfigError, match="neither train.tsv"):
        glue_task("sst2", tokenizer, sp, path=tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    write(bad / "train.tsv", [("sentence", "label"), ("fine", "positive?")])
    write(bad / "dev.tsv", [("sentence", "label"), ("fine", "1")])
    with pytest.raises(ConfigError, match=r"train.tsv:2: label 'positive\?'"):
        glue_task("sst2", tokenizer, sp, path=bad)


def tiny_config(**kw) -> EncoderConfig:
    base = dict(vocab_size=64, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                max_position_embeddings=64, hidden_dropout=0.0, attention_dropout=0.0)
    return EncoderConfig(**{**base, **kw})


def txl_config() -> TXLConfig:
    """tiny_config's shape as a causal Transformer-XL."""
    return TXLConfig(**{**dataclasses.asdict(tiny_config()), "family": "txl"})


def test_random_init_is_the_same_architecture_with_fresh_weights():
    torch.manual_seed(0)
    enc = Encoder(tiny_config())
    torch.manual_seed(1)
    fresh = random_like(enc)
    assert type(fresh) is Encoder and fresh.config == enc.config
    sd, fd = enc.state_dict(), fresh.state_dict()
    assert sd.keys() == fd.keys() and all(sd[k].shape == fd[k].shape for k in sd)
    assert not torch.equal(sd["embeddings.word_embeddings.weight"], fd["embeddings.word_embeddings.weight"])


@pytest.mark.parametrize("kind", ["bert", "txl"])
def test_padding_does_not_change_predictions(kind):
    """The head pools real tokens only: an example alone and padded in a batch with a longer one agree
    (BERT: first token with an attention mask; causal Transformer-XL: the last real token, pad keys blocked)."""
    torch.manual_seed(0)
    enc = TransformerXL(txl_config()) if kind == "txl" else Encoder(tiny_config())
    model = Classifier(enc, 3).eval()
    assert model.pooling == ("last" if kind == "txl" else "mean")  # auto: no pair task pretrained a pooler
    short, long = Example((2, 11, 12, 3), 0), Example((2, *range(13, 30), 3), 1)
    alone = collate([short], SP.pad, 32, torch.device("cpu"))
    both = collate([short, long], SP.pad, 32, torch.device("cpu"))
    with torch.no_grad():
        a = model(alone["input_ids"], alone["token_type_ids"], alone["attention_mask"])[0]
        b = model(both["input_ids"], both["token_type_ids"], both["attention_mask"])[0]
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_auto_pooling_reads_what_pretraining_trained():
    """auto: mean where no pair task trained [CLS]; cls through a copy of the pretrained NSP / SOP pooler where one
    did (BERT fine-tunes its pretrained pooler); the last token of a causal model."""
    torch.manual_seed(0)
    enc = Encoder(tiny_config())
    assert Classifier(enc, 2).pooling == "mean" and Classifier(enc, 2).pooler is None
    pooler = torch.nn.Linear(32, 32)
    model = Classifier(enc, 2, pooler=pooler)
    assert model.pooling == "cls" and model.pooler is not pooler
    assert torch.equal(model.pooler.weight, pooler.weight) and torch.equal(model.pooler.bias, pooler.bias)
    assert Classifier(TransformerXL(txl_config()), 2, pooler=pooler).pooling == "last"
    with pytest.raises(ValueError, match="causal"):
        Classifier(TransformerXL(txl_config()), 2, "cls")
