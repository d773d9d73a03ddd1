"""End to end through `python -m runner`: W&B offline logging, transformers export and re-import.
This file holds the tests that train or start a process; the others: tests/unit/test_e2e.py."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from runner.build import build
from tests.conftest import TINY, cli, copy_run, make_cfg, run_cli
from tests.wandb_records import history, run_info


pytestmark = pytest.mark.slow


transformers = pytest.importorskip("transformers")


E2E = [*TINY, "model=bert", "trainer.max_steps=6", "trainer.eval_every=3", "trainer.log_every=2",
       "logger.mode=offline"]


@pytest.fixture(scope="module")
def bert_run(finished_run) -> Path:
    """A finished `python -m runner E2E` run (the session's, shared: read only)."""
    r = finished_run.result(*E2E)
    assert r.returncode == 0, r.stderr[-3000:]
    return finished_run(*E2E)


def test_offline_wandb_run_holds_the_logged_metrics(bert_run):
    files = list((bert_run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1, "the W&B run directory lives inside the run's output directory"
    rows = history(files[0])
    train_steps = [r["_step"] for r in rows if "train/loss" in r]
    assert train_steps == [2, 4, 6]
    assert all({"train/lr", "train/grad_norm", "train/tokens", "train/flops"} <= r.keys()
               for r in rows if "train/loss" in r)
    # each term of the loss reaches W&B too: the MLM's and the pair task's, averaged since the last record
    assert all({"train/mlm_loss", "train/nsp_loss"} <= r.keys() for r in rows if "train/loss" in r)
    assert {r["_step"] for r in rows if "val/mlm_loss" in r} == {0, 3, 6}
    assert any("val/nsp_accuracy" in r for r in rows)
    info = run_info(files[0])
    assert {"bert", "mlm_nsp", "wiki"} <= set(info.tags)
    assert info.display_name.startswith("bert-mlm_nsp-wiki")
    summary = json.loads((bert_run / "summary.json").read_text())
    assert summary["wandb_mode"] == "offline"
    jsonl = [json.loads(x) for x in (bert_run / "metrics.jsonl").read_text().splitlines()]
    assert [x["train/loss"] for x in jsonl if "train/loss" in x] == [r["train/loss"] for r in rows if "train/loss" in r]


def _ours(run_dir: Path):
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    cfg.trainer.max_steps = 0
    built = build(cfg)
    built.module.load_state_dict(torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["module"])
    return built


def test_export_loads_in_transformers_with_the_same_logits(bert_run):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    built = _ours(bert_run)
    hf = AutoModelForMaskedLM.from_pretrained(bert_run / "hf").eval()
    tok = AutoTokenizer.from_pretrained(bert_run / "hf")
    enc = tok(["The Moon orbits the Earth.", "Music is an art form."], padding=True, return_tensors="pt")
    module = built.module.eval()
    with torch.no_grad():
        ours = module.objective.mlm_logits(module.encoder, module.encoder(enc["input_ids"], enc["token_type_ids"],
                                                                          enc["attention_mask"]))
        theirs = hf(**enc).logits
    real = enc["attention_mask"].bool()
    assert (ours[real] - theirs[real]).abs().max() <= 1e-4
    assert enc["input_ids"][0, 0] == built.data.specials.cls


def test_export_command_rewrites_hf_directory(bert_run, tmp_path):
    run = copy_run(bert_run, tmp_path / "run")  # the export writes into it
    shutil.rmtree(run / "hf")
    r = cli(f"export={run}", run_dir=tmp_path / "export-job")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (run / "hf" / "model.safetensors").is_file()


def test_export_of_a_run_saved_before_newer_config_keys(bert_run, tmp_path):
    """A run directory from an older version lacks keys added since (trainer.strategy, compile, nonfinite, ...):
    export fills them with their defaults instead of failing on a missing key."""
    old = tmp_path / "old-run"
    shutil.copytree(bert_run, old, ignore=shutil.ignore_patterns("hf", "wandb"))
    saved = yaml.safe_load((old / ".hydra" / "config.yaml").read_text())
    for key in ("strategy", "compile", "nonfinite", "max_skipped_steps", "keep_checkpoints"):
        del saved["trainer"][key]
    del saved["eval"]["pooling"]
    (old / ".hydra" / "config.yaml").write_text(yaml.safe_dump(saved))
    r = cli(f"export={old}", run_dir=tmp_path / "export-job")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (old / "hf" / "model.safetensors").is_file()


def test_init_from_transformers_directory(bert_run):
    built = _ours(bert_run)
    cfg = make_cfg(*TINY, "model=bert", f"model.init_from={bert_run / 'hf'}", "trainer.max_steps=0")
    fresh = build(cfg)
    for (name, a), (_, b) in zip(built.module.state_dict().items(), fresh.module.state_dict().items()):
        assert torch.equal(a, b), name


def test_multirun_sweep_gives_each_job_its_own_run(tmp_path):
    # a real `python -m runner` process, start to end (the suite's other runs go through conftest.cli, in-process)
    r = run_cli("-m", *TINY, "model=bert,roberta", "trainer.max_steps=2", "trainer.export_hf=false",
                "logger.mode=offline", f"hydra.sweep.dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = sorted(p.name for p in tmp_path.iterdir() if (p / ".hydra").is_dir())
    assert jobs == ["0_bert_mlm_nsp", "1_roberta_mlm"]
    # the sweep ended with the comparison: files, and an offline W&B comparison run next to the jobs
    assert (tmp_path / "comparison.csv").is_file()
    assert len(list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))) == 1
    for job in jobs:
        summary = json.loads((tmp_path / job / "summary.json").read_text())
        assert summary["steps"] == 2
        assert len(list((tmp_path / job / "wandb").glob("offline-run-*/run-*.wandb"))) == 1
