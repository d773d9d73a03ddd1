"""The data side of scaling out: per-rank shards of one batch stream, and background DataLoader workers that
deliver exactly the in-process batches.
This file holds the tests that train or start a process; the others: tests/unit/test_loader.py."""
from __future__ import annotations

import json
import multiprocessing

import pytest
import torch

from runner.build import build
from runner.data.batches import Batches, batch_loader
from runner.engine.loop import Trainer
from tests.conftest import TINY, make_cfg
from tests.unit.test_loader import EXAMPLES, noise, train


def test_loader_workers_deliver_the_in_process_batches():
    batches = Batches(EXAMPLES, 5, seed=1, prepare=noise)
    loader = batch_loader(batches, 3, 20, num_workers=2)
    got = list(loader)
    assert len(got) == 17
    for i, b in zip(range(3, 20), got):
        want = batches.get(i)
        assert b.keys() == want.keys() and all(torch.equal(b[k], want[k]) for k in want)


@pytest.mark.slow
def test_trainer_batches_with_workers_equal_in_process(tmp_path):
    cfg = make_cfg(*TINY, "model=roberta", "trainer.max_steps=3", "trainer.num_workers=2")
    trainer = Trainer(cfg, build(cfg), tmp_path)
    for i in [0, 1, 2, 5, 6, 3]:  # in order, a jump ahead (resume), and past the planned end
        got, want = trainer.feed.get(i), trainer.feed.batches.get(i)
        assert torch.equal(got["input_ids"], want["input_ids"]) and torch.equal(got["labels"], want["labels"])
    assert multiprocessing.active_children(), "the loader runs in worker processes"
    trainer.feed.close()
    assert not multiprocessing.active_children(), "close() stops the workers"


@pytest.mark.slow
def test_workers_and_resume_equal_the_in_process_run(tmp_path):
    common = ["model=roberta", "trainer.max_steps=4", "trainer.grad_accum=2", "trainer.log_every=1",
              "trainer.eval_every=100", "trainer.checkpoint_every=100", "trainer.export_hf=false"]
    full = train(tmp_path / "w0", *common)
    workers = train(tmp_path / "w2", *common, "trainer.num_workers=2")
    train(tmp_path / "split", *common, "trainer.num_workers=2", "trainer.stop_after=2")
    resumed = train(tmp_path / "split", *common, "trainer.num_workers=2", "trainer.resume=true")
    assert not multiprocessing.active_children(), "no loader workers outlive a run"
    assert workers["final_train_loss"] == resumed["final_train_loss"] == full["final_train_loss"]  # bit for bit
    assert workers["final_val"] == resumed["final_val"] == full["final_val"]
    strip = lambda d: [{k: v for k, v in json.loads(r).items() if k not in ("train/tokens_per_s", "time")}
                       for r in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
    assert strip("w2") == strip("split") == strip("w0")
