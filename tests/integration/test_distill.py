"""objective=distill (DistilBERT): the preset and its parity with transformers, the loss terms against a hand
computation, a teacher from a run or from a transformers directory, student initialisation, a run that learns, the
one-line errors, and experiment=distil's teach-then-distil chain.
This file holds the tests that train or start a process; the others: tests/unit/test_distill.py."""
from __future__ import annotations

import json
import math

import pytest
import torch

import runner.build
import runner.objectives.distill
from runner.build import build
from runner.config.errors import ConfigError
from runner.engine.feeds import build_feed
from runner.objectives.masking import IGNORE
from runner.run import run
from tests.conftest import TINY, cli, make_cfg


# the student: model=distil at TINY's width (so the cosine term applies against the TINY teacher)
STUDENT = [*TINY, "model=distil", "model.hidden_dropout=0", "model.attention_dropout=0"]


def student_cfg(teacher, *overrides):
    return make_cfg(*STUDENT, f"objective.teacher={teacher}", "objective.teach=[]", *overrides)


def test_the_loss_terms_are_distilberts(bert_teacher):
    cfg = student_cfg(bert_teacher, "trainer.max_steps=0")
    built = build(cfg)
    obj, enc = built.objective, built.module.encoder
    assert obj.cosine  # equal widths: the cosine term is on
    batch = build_feed(built, cfg).get(0)
    norms = {k: float(v) for k, v in obj.normalizers(batch).items()}
    loss, stats = built.module(batch, norms)
    # by hand: KL(teacher || student) at T, times T^2; the MLM cross-entropy; 1 - cosine over real tokens
    T, V = obj.temperature, obj.vocab
    with torch.no_grad():
        h = enc.encode_batch(batch)
        labels = batch["labels"].reshape(-1)
        idx = (labels != IGNORE).nonzero().squeeze(1)
        s = obj.mlm_logits(enc, h.reshape(-1, h.shape[-1])[idx])[:, :V]
        t_logits, t_hidden = obj.teacher.outputs(batch, idx)
        p = torch.softmax(t_logits[:, :V] / T, -1)
        kl = (p * (p.log() - torch.log_softmax(s / T, -1))).sum() * T * T
        ce = -torch.log_softmax(s, -1).gather(1, labels[idx][:, None]).sum()
        real = batch["attention_mask"].bool().reshape(-1)
        a, b = h.reshape(-1, h.shape[-1])[real], t_hidden.reshape(-1, h.shape[-1])[real]
        cos = (1 - (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))).sum()
    M, N = len(idx), int(real.sum())
    expected = 5.0 * kl / M + 2.0 * ce / M + 1.0 * cos / N
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-4, atol=1e-5)
    m = obj.metrics(stats)
    assert m["distill_ce"] == pytest.approx(float(kl) / M, rel=1e-4)
    assert m["mlm_loss"] == pytest.approx(float(ce) / M, rel=1e-4)
    assert m["distill_cos"] == pytest.approx(float(cos) / N, rel=1e-4)


def test_a_transformers_teacher_gives_the_run_teachers_targets(bert_teacher):
    """The run's hf/ export as the teacher, run by transformers on right-padded rows and mapped back onto the packed
    batch: the same logits and hidden states as the run's own modules on the packed rows."""
    cfg = student_cfg(bert_teacher, "trainer.max_steps=0", "data.format=doc_sentences", "data.seq_len=256")
    built = build(cfg)
    from_hf = runner.objectives.distill.load_teacher(str(bert_teacher / "hf"), built.data.specials.pad)
    batch = build_feed(built, cfg).get(0)
    assert "starts" in batch  # packed
    idx = (batch["labels"].reshape(-1) != IGNORE).nonzero().squeeze(1)
    with torch.no_grad():
        (a_logits, a_hidden), (b_logits, b_hidden) = built.objective.teacher.outputs(batch, idx), \
            from_hf.outputs(batch, idx)
    V = built.objective.vocab
    torch.testing.assert_close(b_logits[:, :V], a_logits[:, :V], rtol=1e-4, atol=1e-4)
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(b_hidden[real], a_hidden[real], rtol=1e-4, atol=1e-4)


def test_the_student_starts_from_every_other_teacher_layer(bert_teacher):
    cfg = student_cfg(bert_teacher, "trainer.max_steps=0", "model.num_layers=1")
    built = build(cfg)
    student, teacher = built.module.encoder, built.objective.teacher.encoder
    assert torch.equal(student.layers[0].intermediate.weight, teacher.layers[0].intermediate.weight)
    assert torch.equal(student.embeddings.word_embeddings.weight, teacher.embeddings.word_embeddings.weight)
    assert not any(p.requires_grad for p in built.objective.teacher.parameters())
    assert not any(k.startswith("teacher") or "teacher." in k for k in built.module.state_dict())


def test_a_distillation_run_learns_and_reports_against_its_teacher(bert_teacher, tmp_path):
    cfg = student_cfg(bert_teacher, "trainer.max_steps=30", "optimizer.lr=5e-3", "trainer.eval_every=30",
                      "objective.init_from_teacher=false")
    s = run(cfg, build(cfg), tmp_path)
    first, last = s["initial_val"], s["final_val"]
    assert last["distill_loss"] < first["distill_loss"] - 0.5
    assert {"distill_ce", "distill_cos", "mlm_loss", "teacher_mlm_accuracy"} <= set(last)
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "train/loss" in r]  # each term of DistilBERT's loss in every training record
    assert train and all({"train/mlm_loss", "train/distill_ce", "train/distill_cos"} <= r.keys() for r in train)
    d = s["distillation"]
    assert d["teacher_parameters"] > d["student_parameters"] > 0
    assert 0 < d["parameter_share"] < 1 and d["speedup"] > 0
    assert d["teacher_scores"]["probes"] is not None and d["score_share"]["probes"] > 0
    assert "of the teacher's parameters" in d["line"]
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == ["DistilBertForMaskedLM"]


def test_a_student_tokenizer_other_than_the_teachers_is_one_line_before_any_work(bert_teacher, tmp_path,
                                                                                     monkeypatch):
    other = json.loads((bert_teacher / "hf" / "tokenizer.json").read_text())
    vocab = other["model"]["vocab"]
    first = next(iter(vocab))
    vocab[first + "x"] = vocab.pop(first)
    (tmp_path / "tokenizer.json").write_text(json.dumps(other))
    monkeypatch.setattr(runner.build, "build_data", lambda *a, **k: pytest.fail("data built before the check"))
    with pytest.raises(ConfigError, match=r"^data.tokenizer.path=.* is not the tokenizer objective=distill needs"):
        build(student_cfg(bert_teacher, "trainer.max_steps=0", f"data.tokenizer.path={tmp_path / 'tokenizer.json'}"))


@pytest.mark.slow
def test_experiment_distil_teaches_then_distils_in_one_command(tmp_path):
    teacher = tmp_path / "teacher"
    small = [*TINY[:5], "data.max_docs=200", "data.seq_len=64", "trainer.batch_size=8", "trainer.eval_batches=2"]
    teach = "[" + ",".join(f"'{o}'" for o in ["model=bert", "objective=mlm", "trainer.max_steps=5", *small]) + "]"
    r = cli("experiment=distil", f"objective.teacher={teacher}", f"objective.teach={teach}", *small,
                "trainer.max_steps=5", "eval.downstream=false", "logger.mode=disabled", run_dir=tmp_path / "student")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (teacher / "summary.json").is_file() and (tmp_path / "student" / "summary.json").is_file()
    summary = json.loads((tmp_path / "student" / "summary.json").read_text())
    assert summary["distillation"]["teacher"] == str(teacher)
    assert "training the run it needs first" in r.stdout + r.stderr
    again = cli("experiment=distil", f"objective.teacher={teacher}", f"objective.teach={teach}", *small,
                    "trainer.max_steps=5", "eval.downstream=false", "logger.mode=disabled",
                    run_dir=tmp_path / "student2")
    assert again.returncode == 0 and "training the run it needs first" not in again.stdout + again.stderr
    assert not math.isnan(summary["final_val"]["distill_loss"])
