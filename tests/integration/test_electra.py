"""ELECTRA (Clark et al. 2020): parameter counts and logits against transformers, replaced-token labels, gradient
isolation of the generator, embedding sharing, export, and `python -m runner model=electra_bert` (ELECTRA's
BERT-style encoder, what transformers holds) end to end; the controls that found why its discriminator stays at chance
at CPU compute, and `model=electra` (the same objective on a modern encoder: no hf/ export).
This file holds the tests that train or start a process; the others: tests/unit/test_electra.py."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
import torch
from rich.console import Console

from runner.build import build, encoder_config
from runner.engine.feeds import build_feed
from runner.models.flops import encoder_flops, mlm_head_flops, train_flops
from runner.reporting.summary import report_table
from runner.run import run
from tests.conftest import TINY, cli, make_cfg


transformers = pytest.importorskip("transformers")


def test_nsp_on_the_electra_architecture_trains_and_skips_the_export_with_a_note(tmp_path, capsys):
    cfg = make_cfg(*TINY, "model=electra_bert", "objective=mlm_nsp", "trainer.export_hf=true", "trainer.max_steps=2",
                   "trainer.eval_every=2")
    s = run(cfg, build(cfg), tmp_path)  # BERT-style NSP pretraining of an ELECTRA-architecture encoder is legitimate
    assert s["steps"] == 2 and math.isfinite(s["final_val"]["nsp_loss"])
    assert s["hf_export"] is None and not (tmp_path / "hf").exists()
    captured = capsys.readouterr()
    assert "skipped the hf/ export: model.family=electra has no transformers class" in captured.out + captured.err


ELECTRA = [*TINY, "model=electra_bert", "trainer.max_steps=6", "trainer.eval_every=3", "trainer.log_every=3"]


@pytest.fixture(scope="module")
def electra_run(finished_run) -> Path:
    """A finished `python -m runner ELECTRA` run (the session's, shared: read only)."""
    r = finished_run.result(*ELECTRA)
    assert r.returncode == 0, r.stderr[-3000:]
    return finished_run(*ELECTRA)


def test_cli_run_logs_generator_and_discriminator_metrics(electra_run):
    summary = json.loads((electra_run / "summary.json").read_text())
    final = summary["final_val"]
    for key in ("mlm_loss", "mlm_accuracy", "sampled_accuracy", "disc_loss", "disc_accuracy", "disc_precision",
                "disc_recall", "disc_f1", "replaced_rate", "all_real_accuracy", "all_real_loss", "disc_auc"):
        assert key in final, key
    assert 0.0 < final["replaced_rate"] < 0.3 and 0.0 <= final["disc_auc"] <= 1.0
    assert final["all_real_accuracy"] == pytest.approx(1.0 - final["replaced_rate"])
    assert summary["objective"] == "rtd" and {"generator", "disc_head", "mlm_head"} <= set(summary["parameters"])
    cfg = make_cfg(*TINY, "model=electra_bert")
    disc_only = 6 * train_flops(encoder_config(cfg), 8, 64, 0)
    assert summary["train_flops"] > disc_only  # the generator and both heads are counted too


def test_cli_export_reloads_in_transformers_with_our_logits(electra_run):
    from omegaconf import OmegaConf
    from transformers import AutoModelForMaskedLM, AutoModelForPreTraining, AutoTokenizer

    cfg = OmegaConf.load(electra_run / ".hydra" / "config.yaml")
    cfg.trainer.max_steps = 0
    built = build(cfg)
    built.module.load_state_dict(torch.load(electra_run / "checkpoints" / "last.pt", weights_only=False)["module"])
    module = built.module.eval()
    disc = AutoModelForPreTraining.from_pretrained(electra_run / "hf").eval()
    gen = AutoModelForMaskedLM.from_pretrained(electra_run / "hf_generator").eval()
    assert type(disc).__name__ == "ElectraForPreTraining" and type(gen).__name__ == "ElectraForMaskedLM"
    tok = AutoTokenizer.from_pretrained(electra_run / "hf")
    enc = tok(["The Moon orbits the Earth.", "Music is an art form."], padding=True, return_tensors="pt")
    real = enc["attention_mask"].bool()
    obj = module.objective
    with torch.no_grad():
        ours_d = obj.disc_head(module.encoder(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"]))
        g = obj.generator
        ours_g = obj.mlm_logits(g, g(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"]))
        assert (ours_d[real] - disc(**enc).logits[real]).abs().max() <= 1e-4
        assert (ours_g[real] - gen(**enc).logits[real]).abs().max() <= 1e-4


def test_rtd_trains_a_bert_encoder(tmp_path):
    r = cli(*TINY, "model=bert", "objective=rtd", "trainer.max_steps=2", "trainer.export_hf=false",
                run_dir=tmp_path / "run")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["model"] == "bert" and summary["objective"] == "rtd" and "disc_f1" in summary["final_val"]


def test_a_short_wiki_run_lifts_the_discriminator_above_all_real(tmp_path):
    cfg = make_cfg(*TINY, "model=electra_bert", "model.hidden_size=64", "model.embedding_size=32", "optimizer.lr=1e-3",
                   "trainer.max_steps=80", "trainer.eval_every=1000", "trainer.eval_batches=8",
                   "trainer.export_hf=false",
                   "objective.mask_prob=0.25", "objective.generator_size=0.125")  # the mix that lifts it fastest here
    summary = run(cfg, build(cfg), tmp_path)
    first, final = summary["initial_val"], summary["final_val"]
    assert first["disc_accuracy"] < first["all_real_accuracy"], "untrained, it does worse than saying 'real'"
    assert final["disc_accuracy"] > final["all_real_accuracy"] + 0.005
    assert final["disc_auc"] > 0.7 and final["disc_f1"] > 0.1
    assert final["disc_loss"] < final["all_real_loss"] - 0.03, "better than the best constant predictor"


def test_training_records_carry_each_loss_term(tmp_path):
    cfg = make_cfg(*ELECTRA, "trainer.log_every=1", "trainer.export_hf=false")
    run(cfg, build(cfg), tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "train/loss" in r]
    assert len(train) == 6
    for r in train:  # one step per record: the loss is exactly generator MLM + lambda x discriminator
        assert r["train/loss"] == pytest.approx(r["train/mlm_loss"] + cfg.objective.disc_weight * r["train/disc_loss"],
                                                rel=1e-4)


def test_uniform_replacements_teach_the_discriminator_what_the_token_alone_tells(tmp_path):
    """The control that separates the discriminator's machinery from the generator's dynamics (docs/evaluation.md,
    ELECTRA's discriminator): replacements drawn uniformly are told apart by their frequency, so a working
    discriminator reaches the AUC of the token's identity within a few dozen steps and beats the constant predictor
    by far. A broken label, loss mask or gradient path leaves it at 0.5."""
    cfg = make_cfg(*TINY, "model=electra_bert", "model.hidden_size=64", "model.embedding_size=32", "optimizer.lr=3e-3",
                   "trainer.max_steps=60", "trainer.eval_every=1000", "trainer.eval_batches=8",
                   "trainer.export_hf=false", "probes.enabled=false",
                   "objective.replacements=uniform", "objective.generator_weight=0")
    summary = run(cfg, build(cfg), tmp_path)
    first, final = summary["initial_val"], summary["final_val"]
    assert first["token_only_auc"] > 0.65, "uniform draws are rare tokens: identity tells them apart"
    assert first["disc_auc"] < 0.6 and final["disc_auc"] > max(0.75, final["token_only_auc"])
    assert summary["verdict"]["learned"] and final["disc_loss"] < 0.9 * final["all_real_loss"]
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(report_table(summary))  # the end-of-run table says it in words, beside the numbers
    assert "the discriminator beat its constant baseline" in " ".join(console.export_text().replace("│", " ").split())


def test_a_frozen_masked_lm_proposes_the_replacements(bert_teacher, tmp_path):
    """objective.replacements=frozen (Fast-ELECTRA's frozen generator): the finished run's masked LM, with its
    tokenizer, samples every replacement; it is not trained or saved with the run."""
    cfg = make_cfg(*ELECTRA, "objective.replacements=frozen", f"objective.frozen_generator={bert_teacher}",
                   "objective.generator_weight=0", "trainer.export_hf=false", "trainer.max_steps=2")
    built = build(cfg)
    assert built.data.tokenizer_source == str(bert_teacher / "hf" / "tokenizer.json")  # its vocabulary, its ids
    assert not any("frozen" in k for k in built.module.state_dict())  # not trained, saved or exported with the run
    obj, sp = built.objective, built.data.specials
    ids = torch.tensor([[sp.cls, *built.data.tokenizer.encode("the city is the capital of the country").ids, sp.sep]])
    batch = obj.prepare({"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": 0 * ids,
                         "special_tokens_mask": ids < sp.num_special}, torch.Generator().manual_seed(0))
    idx = batch["labels"].reshape(-1).ne(-100).nonzero().squeeze(1)
    ours = torch.randn(len(idx), built.config.vocab_size)  # the run's own generator's: not what is sampled
    with torch.no_grad():
        assert torch.equal(obj.corrupt(batch, obj.replacement_logits(batch, ours, idx), idx)[0],
                           obj.corrupt(batch, obj.frozen.outputs(batch, idx)[0], idx)[0])
    # the frozen generator's forward is counted: one third of its training FLOPs (no backward)
    own = obj.head_flops(batch)
    frozen, obj.__dict__["frozen"] = obj.frozen, None
    without = obj.head_flops(batch)
    obj.__dict__["frozen"] = frozen
    selected = int(batch["labels"].ne(-100).sum())
    assert own - without == pytest.approx((encoder_flops(frozen.config, ids.numel(), ids.shape[1]) +
                                           mlm_head_flops(frozen.config, selected)) / 3)
    summary = run(cfg, built, tmp_path)
    assert summary["steps"] == 2 and math.isfinite(summary["final_val"]["disc_loss"])
    # the samples are the trained masked LM's: it fills masked tokens better than this run's untrained generator
    # (weight 0), which draws nearly uniformly from 1,000 tokens (0.001 equal to the original). Compared in
    # expectation on a batch of the corpus, the probability each draw is the original (what the run's
    # sampled_accuracy estimates from a few hundred draws of p ~ 0.005: a handful of hits, too few to compare)
    masked = build_feed(built, cfg).batches.padded(0)
    idx = masked["labels"].reshape(-1).ne(-100).nonzero().squeeze(1)
    with torch.no_grad():
        probs = obj.frozen.outputs(masked, idx)[0].float().softmax(-1)
    p_original = probs[torch.arange(len(idx)), masked["labels"].reshape(-1)[idx]].mean()
    assert p_original > 3 / built.config.vocab_size
