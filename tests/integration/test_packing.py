"""data.packing=true: each micro-batch's examples packed into fewer rows, attention kept within each example. The
padded layout is the reference: the same hidden states, logits and losses (fp32, 1e-5), the same training run, exact
resume (tests/integration/test_train.py) and accumulation, and the padding share before and after in the summary.
This file holds the tests that train or start a process; the others: tests/unit/test_packing.py."""
from __future__ import annotations

import json

import pytest

from runner.build import build
from runner.run import run
from tests.conftest import TINY, make_cfg
from tests.unit.test_packing import SHORT


def train(run_dir, *overrides):
    cfg = make_cfg(*TINY, *SHORT, *overrides)
    return run(cfg, build(cfg), run_dir)


@pytest.mark.slow
def test_a_packed_run_trains_as_the_padded_one_and_reports_its_padding(tmp_path):
    common = ["model=roberta", "trainer.batch_size=32", "trainer.max_steps=4", "trainer.eval_every=4",
              "trainer.export_hf=false"]
    padded = train(tmp_path / "padded", *common, "data.packing=false")
    packed = train(tmp_path / "packed", *common)  # null: packed, as the encoder reads examples
    assert packed["final_val"]["mlm_loss"] == pytest.approx(padded["final_val"]["mlm_loss"], rel=1e-4)
    assert packed["final_train_loss"] == pytest.approx(padded["final_train_loss"], rel=1e-4)
    assert packed["tokens_seen"] == padded["tokens_seen"]
    before, after = padded["padding"], packed["padding"]
    assert before["attention"] == before["padded_layout"] > 0.2  # doc_sentences at 256: much padding
    assert after["padded_layout"] == before["padded_layout"] and after["attention"] < before["attention"] / 2
    # the token-wise layers compute no padding in either layout (runner/models/unpadded.py)
    assert before["token_wise"] == after["token_wise"] == 0.0
    assert before["token_rows"] == after["token_rows"] == packed["tokens_seen"]
    assert packed["train_flops"] < padded["train_flops"]  # attention's padding is no longer computed
    saved = json.loads((tmp_path / "packed" / "summary.json").read_text())
    assert saved["padding"] == after
