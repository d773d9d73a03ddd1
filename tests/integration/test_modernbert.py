"""ModernBERT (model.family=modernbert) against transformers' ModernBertForMaskedLM: the presets' parameter counts
(meta device), logits on identical weights over padded batches longer than the sliding window, export and reload
through the Auto classes and fill-mask, import (model.init_from) in either QKV layout; and the BERT family refusing
the options transformers' BERT classes cannot hold, but exporting a fused QKV split. Tiny configs keep it fast.
This file holds the tests that train or start a process; the others: tests/unit/test_modernbert.py."""
from __future__ import annotations

import pytest
import torch

from tests.unit.test_modernbert import ours_logits, theirs_logits, max_diff


transformers = pytest.importorskip("transformers")


@pytest.mark.slow
def test_run_exports_and_a_new_run_starts_from_it(finished_run):
    """python -m runner model=modernbert writes hf/, which AutoModelForMaskedLM loads with the checkpoint's logits
    and model.init_from reads back (here into a separate-QKV model), as a run builds it."""
    from omegaconf import OmegaConf

    from runner.build import build
    from tests.conftest import TINY

    modernbert = [*TINY, "model=modernbert", "model.num_layers=4", "model.local_window=8", "trainer.max_steps=2"]
    r = finished_run.result(*modernbert)  # the session's finished run (read only)
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = finished_run(*modernbert)
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    cfg.trainer.max_steps = 0
    trained = build(cfg)
    trained.module.load_state_dict(torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["module"])
    cfg.model.init_from, cfg.model.qkv = str(run_dir / "hf"), "separate"
    fresh = build(cfg)
    tok = transformers.AutoTokenizer.from_pretrained(run_dir / "hf")
    enc = tok(["The capital of France is <mask>.", "A much shorter one"], padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    ref = ours_logits(trained.module.eval(), ids, mask)
    assert max_diff(ours_logits(fresh.module.eval(), ids, mask), ref, mask) <= 1e-5
    model = transformers.AutoModelForMaskedLM.from_pretrained(run_dir / "hf").eval()
    assert max_diff(theirs_logits(model, ids, mask), ref, mask) <= 1e-4
