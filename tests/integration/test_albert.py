"""ALBERT (Lan et al. 2020): factorized embeddings and cross-layer sharing against transformers' AlbertFor*,
sentence-order prediction, LAMB, and the composed `model=albert` recipe end to end.
This file holds the tests that train or start a process; the others: tests/unit/test_albert.py."""
from __future__ import annotations

import json
import math

import pytest
import torch
from omegaconf import OmegaConf

from runner.store import checkpoint
from runner.build import build
from runner.run import run
from tests.conftest import make_cfg
from tests.unit.test_albert import REFERENCE, SMALL_ALBERT


transformers = pytest.importorskip("transformers")


def test_cli_albert_trains_exports_and_reloads_in_transformers(finished_run):
    albert = [*SMALL_ALBERT, "trainer.export_hf=true", "trainer.max_steps=4", "trainer.eval_every=2"]
    r = finished_run.result(*albert)  # the session's finished run (read only)
    assert r.returncode == 0, r.stderr
    run_dir, output = finished_run(*albert), r.stdout + r.stderr
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["objective"] == "mlm_sop" and s["steps"] == 4
    assert {"sop_loss", "sop_accuracy", "mlm_loss"} <= set(s["final_val"])
    assert s["preset_parameters"]["albert_large"] == REFERENCE["albert_large"]
    assert s["preset_parameters"]["bert_large"] == 335_174_458  # BertForMaskedLM; ALBERT's Table 2 says 334M
    assert "albert_large 16.8M, bert_large 335.2M; this run" in output
    # our model from the run's checkpoint against transformers' reload of the exported directory
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    cfg.trainer.max_steps = 0
    built = build(cfg)
    built.module.load_state_dict(checkpoint.load(run_dir)["module"])
    ours = built.module.eval()
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(run_dir / "hf").eval()
    assert type(theirs).__name__ == "AlbertForMaskedLM"
    tok = transformers.AutoTokenizer.from_pretrained(run_dir / "hf")
    enc = tok(["the cat sat on the mat", "a longer second sentence than the first one"], padding=True,
              return_tensors="pt")
    with torch.no_grad():
        hidden = ours.encoder(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"])
        logits = ours.objective.mlm_logits(ours.encoder, hidden)
        ref = theirs(**enc).logits
    real = enc["attention_mask"].bool()
    assert (logits[real] - ref[real]).abs().max() <= 1e-4


def test_partial_sharing_trains_and_skips_the_export_with_a_note(tmp_path, capsys):
    cfg = make_cfg(*SMALL_ALBERT, "model.share=ffn", "trainer.export_hf=true", "trainer.max_steps=2",
                   "trainer.eval_every=2")
    s = run(cfg, build(cfg), tmp_path)
    assert s["steps"] == 2 and math.isfinite(s["final_val"]["sop_loss"])
    assert s["hf_export"] is None and not (tmp_path / "hf").exists()
    captured = capsys.readouterr()
    assert "skipped the hf/ export: model.share=ffn" in captured.out + captured.err
