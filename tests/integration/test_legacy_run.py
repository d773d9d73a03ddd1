"""A run directory written before the package was split into layers (tests/fixtures/run_v0: its config names
runner.optim.build_adamw, its checkpoints were written by runner/checkpoint.py) still resumes, fine-tunes, exports and
compares: each test works on a copy, so the fixture itself is never written."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, TINY, make_cfg

pytestmark = pytest.mark.slow

FIXTURE = ROOT / "tests" / "fixtures" / "run_v0"
# the overrides it was made with (tests/fixtures/README.md): TINY's, and its steps, checkpoints and probes
MADE_WITH = [*TINY, "model=bert", "trainer.max_steps=4", "trainer.eval_every=2", "trainer.checkpoint_every=2",
             "probes.pairs=10"]
OLD_TARGET, NEW_TARGET = "runner.optim.build_adamw", "runner.engine.optim.build_adamw"


@pytest.fixture
def legacy(tmp_path) -> Path:
    """A copy of the fixture's run directory."""
    copy = tmp_path / "run_v0"
    shutil.copytree(FIXTURE, copy)
    return copy


def test_the_fixture_is_a_run_from_before_the_split(legacy):
    saved = yaml.safe_load((legacy / ".hydra" / "config.yaml").read_text())
    assert saved["optimizer"]["_target_"] == OLD_TARGET and saved["trainer"]["max_steps"] == 4
    from runner.store import checkpoint
    from runner.store.layout import current, open_run, read_summary

    assert checkpoint.load(legacy)["step"] == 4
    assert read_summary(legacy)["steps"] == 4
    assert open_run(legacy, finished=True).config.optimizer._target_ == NEW_TARGET  # layout.current rewrites it
    assert current(saved).optimizer._target_ == NEW_TARGET


def test_it_resumes_from_its_last_step_listing_only_the_changed_max_steps(legacy, capsys):
    from runner.build import build
    from runner.run import run

    cfg = make_cfg(*MADE_WITH, "trainer.resume=true", "trainer.max_steps=6")
    summary = run(cfg, build(cfg), legacy)
    assert summary["steps"] == 6 and summary["max_steps"] == 6
    # the moved optimizer (_target_ runner.optim. -> runner.engine.optim.) is not a change: max_steps alone is
    assert summary["resume_changes"] == [{"key": "trainer.max_steps", "before": 4, "after": 6, "step": 4}]
    assert "resumed at step 4 with changed settings: trainer.max_steps: 4 -> 6" in capsys.readouterr().err
    assert json.loads((legacy / "summary.json").read_text())["steps"] == 6
    steps = [r["step"] for r in map(json.loads, (legacy / "metrics.jsonl").read_text().splitlines())
             if "train/loss" in r]
    assert steps[0] == 4 and steps[-1] == 6  # the records up to its checkpoint kept, the new steps after them
    from runner.store import checkpoint

    state = checkpoint.load(legacy)
    assert state["step"] == 6 and state["config"]["optimizer"]["_target_"] == NEW_TARGET


def test_it_fine_tunes_into_its_summary(legacy):
    from runner.finetune import finetune_run

    before = json.loads((legacy / "summary.json").read_text())
    result = finetune_run(legacy, ["eval.task=wiki_acceptability", "eval.seeds=1", "eval.epochs=1",
                                   "eval.seq_len=64", "eval.baselines=false", "trainer.device=cpu"])
    after = json.loads((legacy / "summary.json").read_text())
    assert result["task"] == "wiki_acceptability" and 0.0 <= result["accuracy_mean"] <= 1.0
    assert after["downstream"] == result and after["downstream_tasks"] == {"wiki_acceptability": result}
    assert {k: v for k, v in after.items() if not k.startswith("downstream")} == before  # the rest stands
    last = json.loads((legacy / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 4 and last["downstream/accuracy_mean"] == result["accuracy_mean"]


def test_it_exports_an_hf_directory_that_transformers_loads(legacy):
    transformers = pytest.importorskip("transformers")
    import torch
    from safetensors.torch import load_file

    from runner.__main__ import export_run_dir

    shutil.rmtree(legacy / "hf")
    with torch.enable_grad():  # export_run_dir turns gradients off for its process: on again for the other tests
        assert export_run_dir(legacy) == str(legacy / "hf")
    # the same checkpoint gives the same tensors as the export the old code wrote
    old, new = load_file(FIXTURE / "hf" / "model.safetensors"), load_file(legacy / "hf" / "model.safetensors")
    assert set(new) == set(old) and all(torch.equal(new[k], old[k]) for k in old)
    model = transformers.AutoModelForPreTraining.from_pretrained(legacy / "hf")
    tokenizer = transformers.AutoTokenizer.from_pretrained(legacy / "hf")
    assert model.config.hidden_size == 32 and tokenizer.vocab_size == 1000
    with torch.no_grad():
        out = model(**tokenizer("The city lies on the river.", return_tensors="pt"))
    assert out.prediction_logits.shape[-1] == model.config.vocab_size and torch.isfinite(out.prediction_logits).all()


def test_it_compares_as_a_finished_row(legacy, tmp_path):
    from runner.reporting.compare import compare

    (row,) = compare([legacy], out=tmp_path / "comparison", html=True)
    summary = json.loads((legacy / "summary.json").read_text())
    assert row["status"] == "finished" and row["error"] is None
    assert (row["model"], row["objective"], row["steps"]) == ("bert", "mlm_nsp", 4)
    assert row["val_metric"] == "mlm_loss" and row["val_loss"] == summary["final_val"]["mlm_loss"]
    assert row["probe_overall"] == summary["probes"]["final"]["overall"]
    page = (tmp_path / "comparison" / "comparison.html").read_text()
    assert "table.sortable" in page and "function sortBy" in page  # the style and script, inlined
