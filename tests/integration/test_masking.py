"""Span masking: token (BERT), whole-word (BERT WWM) and n-gram (ALBERT 4.1) selection, the per-sequence cap,
word boundaries from the vocabulary, determinism, config keys and an end-to-end run of each.
This file holds the tests that train or start a process; the others: tests/unit/test_masking.py."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from runner.build import build
from runner.data.batches import trim
from runner.objectives.masking import (IGNORE, word_starts)
from runner.run import run
from tests.conftest import TINY, make_cfg


@pytest.mark.slow
@pytest.mark.parametrize("model,span", [("bert", "whole_word"), ("roberta", "ngram")])
def test_span_masking_trains_end_to_end(tmp_path: Path, model, span):
    cfg = make_cfg(*TINY, f"model={model}", f"objective.span={span}", "trainer.max_steps=3", "trainer.eval_every=3",
                   "trainer.export_hf=false", "objective.dupe_factor=1")
    built = build(cfg)
    summary = run(cfg, built, tmp_path)
    assert summary["steps"] == 3 and summary["final_val"]["mlm_loss"] > 0
    obj = built.objective
    assert obj.spec.span == span and obj.word_table.shape[0] == built.data.tokenizer.get_vocab_size()
    ex = trim(built.data.examples("validation", 1, 0).rows(range(16)))
    out = obj.prepare(ex, torch.Generator().manual_seed(0))
    selected, special = out["labels"].ne(IGNORE), ex["special_tokens_mask"]
    inner = ~special & ~word_starts(ex["input_ids"], special, obj.word_table)
    assert selected.any() and (selected[:, 1:] == selected[:, :-1])[inner[:, 1:]].all()
