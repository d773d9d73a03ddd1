"""The baselines (random-init fine-tuning, bag-of-words) are computed once per task, encoder shape and settings,
and reused by every later fine-tuning with the same ones, whatever the pretrained weights.
The tests of this file that train or start a process: tests/integration/test_baseline_cache.py."""
from __future__ import annotations

import copy


from runner.evaluation.downstream import Example
from runner.evaluation.downstream.baselines import baseline_inputs, baseline_key, encoder_shape
from runner.models.encoder import Encoder
from tests.unit.test_downstream import keyword_task, tiny_config


def test_the_key_follows_examples_settings_and_shape_but_not_the_name():
    task = keyword_task(n=48)
    shape = encoder_shape(Encoder(tiny_config()))
    settings = dict(epochs=1, lr=1e-3, batch_size=16, seq_len=32, pooling="auto", warmup_fraction=0.1,
                    weight_decay=0.01, dropout=0.1)

    def key(t=task, s=shape, st=settings, seeds=(0,), device="cpu"):
        return baseline_key(baseline_inputs(t, s, st, seeds, device, ("random_init", "bow_logreg")))
    k = key()
    assert k == key(s=encoder_shape(Encoder(tiny_config(name="another_preset"))))
    relabelled = copy.deepcopy(task)
    relabelled.test[0] = Example(task.test[0].ids, (task.test[0].label + 1) % 3)
    others = [key(t=relabelled), key(s=encoder_shape(Encoder(tiny_config(num_layers=2)))),
              key(st={**settings, "lr": 2e-3}), key(seeds=(0, 1)), key(device="meta")]
    assert len({k, *others}) == 6
