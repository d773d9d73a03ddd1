"""The training loop on the real wiki data, shrunk: learning, exact resume, accumulation, failures.
This file holds the tests that train or start a process; the others: tests/unit/test_train.py."""
from __future__ import annotations

import json

import pytest
import torch

from runner.store import checkpoint
from runner.build import build
from runner.config.errors import TrainingError
from runner.run import run
from tests.conftest import TINY, make_cfg
from tests.unit.test_train import train


pytestmark = pytest.mark.slow


def test_short_run_lowers_validation_loss(tmp_path):
    s = train(tmp_path, "model=roberta", "trainer.max_steps=60", "optimizer.lr=5e-3", "trainer.eval_every=30",
              "trainer.export_hf=false")
    assert s["final_val"]["mlm_loss"] < s["initial_val"]["mlm_loss"] - 0.5
    assert s["steps"] == 60 and s["tokens_seen"] > 0 and s["train_flops"] > 0
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"train/loss", "train/lr", "train/grad_norm", "train/tokens", "train/tokens_per_s",
            "train/flops"} <= set().union(*lines)
    assert any("val/mlm_accuracy" in x and "val/perplexity" in x for x in lines)


@pytest.mark.parametrize("overrides", [
    ["model=roberta"],  # dynamic masks
    ["model=bert"],  # static masks with NSP
    # short sentence pairs in wide rows: packed several to a row, the pair head on each example's [CLS]
    ["model=bert", "data.format=sentence_pair", "data.seq_len=256", "model.hidden_dropout=0.1"],
], ids=["roberta", "bert", "bert-packed-pairs"])
def test_resume_equals_uninterrupted_run(tmp_path, overrides):
    common = [*overrides, "trainer.max_steps=10", "trainer.checkpoint_every=100", "trainer.eval_every=5",
              "trainer.log_every=1", "trainer.export_hf=false", "objective.dupe_factor=2"]
    full = train(tmp_path / "full", *common)
    train(tmp_path / "split", *common, "trainer.stop_after=4")
    assert checkpoint.load(tmp_path / "split")["step"] == 4
    resumed = train(tmp_path / "split", *common, "trainer.resume=true")
    assert resumed["final_train_loss"] == full["final_train_loss"]  # bit for bit
    assert resumed["final_val"] == full["final_val"] and resumed["padding"] == full["padding"]
    if "data.format=sentence_pair" in overrides:  # the packed path was the one resumed
        assert full["padding"]["attention"] < full["padding"]["padded_layout"]
    a = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    b = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    strip = lambda rows: [{k: v for k, v in json.loads(r).items() if k not in ("train/tokens_per_s", "time")} for r in rows]
    assert strip(a) == strip(b)


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    cfg = make_cfg(*TINY, "model=roberta", "trainer.grad_accum=1", "trainer.max_steps=10", "trainer.checkpoint_every=2")
    built = build(cfg)
    loss = built.objective.loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += built.module.training  # count training steps only, not evaluation batches
        out, stats = loss(*args, **kwargs)
        return (out * float("nan") if calls["n"] > 5 else out), stats

    monkeypatch.setattr(built.objective, "loss", poisoned)
    with pytest.raises(TrainingError, match="at step 6.*last good checkpoint"):
        run(cfg, built, tmp_path)
    assert checkpoint.load(tmp_path)["step"] == 4
    assert not (tmp_path / "summary.json").exists()


def poison(built, monkeypatch, bad_steps):
    """Make the training loss NaN at the given steps (1-based; evaluation batches untouched)."""
    loss = built.objective.loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += built.module.training
        out, stats = loss(*args, **kwargs)
        return (out * float("nan") if built.module.training and calls["n"] in bad_steps else out), stats

    monkeypatch.setattr(built.objective, "loss", poisoned)


def test_nonfinite_skip_policy_skips_the_update_and_finishes_the_run(tmp_path, monkeypatch, capsys):
    cfg = make_cfg(*TINY, "model=roberta", "trainer.max_steps=10", "trainer.nonfinite=skip", "trainer.log_every=1")
    built = build(cfg)
    poison(built, monkeypatch, {4, 7})
    summary = run(cfg, built, tmp_path)
    assert summary["steps"] == 10 and summary["skipped_steps"] == 2
    assert "update skipped" in capsys.readouterr().err
    records = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    assert [r["train/skipped_steps"] for r in records if "train/loss" in r] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    optimizer = checkpoint.load(tmp_path)["optimizer"]["state"]
    assert {int(v["step"]) for v in optimizer.values()} == {8}  # 10 steps, 2 updates skipped


def test_nonfinite_skip_policy_stops_after_too_many_in_a_row(tmp_path, monkeypatch):
    cfg = make_cfg(*TINY, "model=roberta", "trainer.max_steps=10", "trainer.nonfinite=skip",
                   "trainer.max_skipped_steps=2", "trainer.checkpoint_every=2")
    built = build(cfg)
    poison(built, monkeypatch, {5, 6, 7, 8})
    with pytest.raises(TrainingError, match=r"at step 7 \(3 steps in a row\)"):
        run(cfg, built, tmp_path)
    assert checkpoint.load(tmp_path)["step"] == 6  # the skipped steps 5 and 6 still advanced and checkpointed


def scale_up(built, monkeypatch, factor, bad_steps):
    """Multiply the training loss by a finite factor at the given steps (its fp16 gradients overflow)."""
    loss = built.objective.loss
    calls = {"n": 0}

    def scaled(*args, **kwargs):
        calls["n"] += built.module.training
        out, stats = loss(*args, **kwargs)
        return (out * factor if built.module.training and calls["n"] in bad_steps else out), stats

    monkeypatch.setattr(built.objective, "loss", scaled)


def test_fp16_overflow_skips_the_step_halves_the_scale_and_resumes_exactly(tmp_path, monkeypatch):
    """trainer.precision=fp16: a step whose scaled gradients overflow is skipped by the GradScaler, which halves the
    loss scale; that is not a diverging run (trainer.nonfinite=stop does not stop it), and the scale is part of the
    checkpoint, so a resumed run continues exactly."""
    common = [*TINY, "model=roberta", "trainer.precision=fp16", "trainer.max_steps=8", "trainer.log_every=1",
              "trainer.eval_every=4", "trainer.export_hf=false"]
    cfg = make_cfg(*common)
    built = build(cfg)
    scale_up(built, monkeypatch, 1e30, {3})
    full = run(cfg, built, tmp_path / "full")
    assert full["precision"] == "fp16" and full["steps"] == 8 and full["skipped_steps"] == 0
    rows = [json.loads(ln) for ln in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "train/loss" in r]
    assert [r["train/loss_scale"] for r in train_rows] == [65536.0] * 2 + [32768.0] * 6
    assert [r["train/fp16_overflows"] for r in train_rows] == [0, 0] + [1] * 6
    steps = {int(v["step"]) for v in checkpoint.load(tmp_path / "full")["optimizer"]["state"].values()}
    assert steps == {7}  # 8 steps, the overflowing one skipped

    def split_run(bad_steps, *extra):  # the hook counts this process's steps: the resumed part starts at 1
        cfg = make_cfg(*common, *extra)
        b = build(cfg)
        scale_up(b, monkeypatch, 1e30, bad_steps)
        return run(cfg, b, tmp_path / "split")

    split_run({3}, "trainer.stop_after=5")
    assert checkpoint.load(tmp_path / "split")["precision"]["scaler"]["scale"] == 32768.0
    resumed = split_run(set(), "trainer.resume=auto")
    assert resumed["final_val"] == full["final_val"] and resumed["final_train_loss"] == full["final_train_loss"]
    rows = [json.loads(ln) for ln in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [r["train/loss_scale"] for r in rows if "train/loss" in r][-3:] == [32768.0] * 3  # restored, not 65536


def test_resume_auto_starts_fresh_without_a_checkpoint_and_continues_with_one(tmp_path):
    """trainer.resume=auto (a requeued job's setting): no checkpoint, a new run; a checkpoint, its continuation."""
    common = ["model=roberta", "trainer.max_steps=6", "trainer.log_every=1", "trainer.export_hf=false",
              "trainer.resume=auto"]
    first = train(tmp_path, *common, "trainer.stop_after=3")
    assert first["steps"] == 3
    second = train(tmp_path, *common)
    assert second["steps"] == 6
    rows = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train/loss" in r] == [1, 2, 3, 4, 5, 6]


def test_compiled_training_matches_eager_and_keeps_the_modules_names(tmp_path):
    """trainer.compile=true (torch.compile, inductor): the same losses as eager to float tolerance; checkpoints and
    the hf/ export carry the eager module's parameter names."""
    common = ["model=roberta", "model.hidden_dropout=0", "model.attention_dropout=0", "trainer.max_steps=3",
              "trainer.log_every=1", "trainer.eval_every=100"]
    eager = train(tmp_path / "eager", *common, "trainer.export_hf=false")
    compiled = train(tmp_path / "compiled", *common, "trainer.compile=true")
    assert compiled["final_train_loss"] == pytest.approx(eager["final_train_loss"], rel=1e-4)
    assert compiled["final_val"]["mlm_loss"] == pytest.approx(eager["final_val"]["mlm_loss"], rel=1e-4)
    a, b = (checkpoint.load(tmp_path / d)["module"] for d in ("eager", "compiled"))
    assert list(a) == list(b)
    assert (tmp_path / "compiled" / "hf" / "model.safetensors").is_file()


def test_a_checkpoint_in_the_layout_before_components_resumes_exactly(tmp_path):
    """Checkpoints written before the trainer's components saved their own state: no feed position, and a model
    config with Transformer-XL's keys (then in every model config) and without keys added since. They resume and
    the run continues as if never stopped; an already finished run says it is complete."""
    common = ["model=roberta", "model.hidden_dropout=0", "trainer.max_steps=6", "trainer.log_every=1",
              "trainer.export_hf=false", "trainer.eval_every=100"]
    whole = train(tmp_path / "whole", *common)
    train(tmp_path / "split", *common, "trainer.stop_after=3")
    for path in (tmp_path / "split" / "checkpoints").glob("*.pt"):
        state = torch.load(path, weights_only=False)
        state.pop("feed", None)
        state["model_config"].pop("report_presets", None)
        state["model_config"].update(mem_len=0, cutoffs=[], div_val=1, bidirectional=False)
        torch.save(state, path)
    resumed = train(tmp_path / "split", *common, "trainer.resume=true")
    assert resumed["steps"] == 6 and resumed["final_train_loss"] == whole["final_train_loss"]
    assert resumed["final_val"] == whole["final_val"]


def test_resuming_a_finished_run_says_it_is_complete(tmp_path, capsys):
    common = ["model=roberta", "trainer.max_steps=2", "trainer.export_hf=false", "trainer.eval_every=100"]
    train(tmp_path, *common)
    capsys.readouterr()
    again = train(tmp_path, *common, "trainer.resume=true")
    err = capsys.readouterr().err
    assert again["steps"] == 2 and "is complete (step 2): nothing left to train" in err and "tok/s" not in err
