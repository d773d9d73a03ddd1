"""The baselines (random-init fine-tuning, bag-of-words) are computed once per task, encoder shape and settings,
and reused by every later fine-tuning with the same ones, whatever the pretrained weights.
This file holds the tests that train or start a process; the others: tests/unit/test_baseline_cache.py."""
from __future__ import annotations

import copy

import torch

from runner.evaluation.downstream import finetune
from runner.models.encoder import Encoder
from tests.unit.test_downstream import keyword_task, tiny_config


KW = dict(seeds=[0], epochs=1, lr=1e-3, batch_size=16, seq_len=32, show_progress=False)


def test_a_second_finetune_with_the_same_shape_reuses_the_baselines(tmp_path):
    task = keyword_task(n=48)
    torch.manual_seed(0)
    a = Encoder(tiny_config())
    torch.manual_seed(1)
    b = Encoder(tiny_config())  # other weights, same shape
    first = finetune(lambda: copy.deepcopy(a), task, baseline_cache=tmp_path, **KW)
    second = finetune(lambda: copy.deepcopy(b), task, baseline_cache=tmp_path, **KW)
    assert (first["baselines_source"], second["baselines_source"]) == ("computed", "cached")
    assert second["baselines_key"] == first["baselines_key"] and second["baselines"] == first["baselines"]
    assert second["per_seed"] != first["per_seed"]  # the pretrained arm is fine-tuned each time
    # the cached numbers are what the baselines give without a cache
    assert finetune(lambda: copy.deepcopy(b), task, **KW)["baselines"] == first["baselines"]
    torch.manual_seed(0)
    wider = Encoder(tiny_config(hidden_size=48))
    third = finetune(lambda: copy.deepcopy(wider), task, baseline_cache=tmp_path, **KW)
    assert third["baselines_source"] == "computed" and third["baselines_key"] != first["baselines_key"]
    assert len(list(tmp_path.glob("*.json"))) == 2
