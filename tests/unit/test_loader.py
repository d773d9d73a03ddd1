"""The data side of scaling out: per-rank shards of one batch stream, and background DataLoader workers that
deliver exactly the in-process batches.
The tests of this file that train or start a process: tests/integration/test_loader.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from runner.build import build
from runner.engine import distributed
from runner.data.batches import Batches
from runner.config.errors import ConfigError
from runner.build import validate
from runner.run import run
from runner.engine.loop import Trainer
from tests.conftest import TINY, make_cfg


ROWS, WIDTH = 48, 4


EXAMPLES = {"input_ids": torch.arange(ROWS).repeat_interleave(WIDTH).view(ROWS, WIDTH) + 5,
            "attention_mask": torch.ones(ROWS, WIDTH, dtype=torch.long)}


def noise(batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A stand-in for dynamic masking: one draw per row from the batch's generator."""
    return {**batch, "noise": torch.rand(batch["input_ids"].shape[0], generator=generator)}


def ids(batch: dict[str, torch.Tensor]) -> list[int]:
    return batch["input_ids"][:, 0].tolist()


def test_dist_rank_world_reads_torchrun_env(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (2, 4, False)


def test_ranks_shard_the_single_process_stream():
    world, b = 3, 4
    ranks = [Batches(EXAMPLES, b, seed=5, prepare=noise, rank=r, world_size=world) for r in range(world)]
    single = Batches(EXAMPLES, b, seed=5, prepare=noise)
    wide = Batches(EXAMPLES, b * world, seed=5, prepare=noise)
    seen: list[int] = []
    for i in range(ROWS // (b * world) * 2):  # two epochs
        parts = [r.get(i) for r in ranks]
        rows = [ids(p) for p in parts]
        assert sum(rows, []) == ids(wide.get(i)), "ranks together form the W*B batch of one process"
        assert len(set(sum(rows, []))) == b * world, "ranks see disjoint rows at the same index"
        for r, p in enumerate(parts):  # same rows and same masks as the single-process batch i * W + r
            s = single.get(i * world + r)
            assert ids(p) == ids(s) and torch.equal(p["noise"], s["noise"])
        assert not torch.equal(parts[0]["noise"], parts[1]["noise"]), "ranks draw different masks"
        seen += sum(rows, [])
    first, second = seen[:ROWS], seen[ROWS:]
    assert sorted(first) == sorted(second) == list(range(5, 5 + ROWS)), "each example once per epoch in total"
    assert ranks[0].epoch_of(ROWS // (b * world) - 1) == 1.0 == single.epoch_of(ROWS // b - 1)


def test_rank_outside_world_is_refused():
    with pytest.raises(ValueError, match="rank 2 is outside world size 2"):
        Batches(EXAMPLES, 4, seed=0, rank=2, world_size=2)


def train(run_dir: Path, *overrides: str) -> dict:
    cfg = make_cfg(*TINY, *overrides)
    return run(cfg, build(cfg), run_dir)


def test_negative_num_workers_is_a_config_error(tmp_path):
    cfg = make_cfg(*TINY, "trainer.num_workers=-1")
    with pytest.raises(ConfigError, match="trainer.num_workers=-1"):
        validate(cfg)  # refused before any data is built


def masks_by_example(batches: Batches, indices: range) -> dict[int, torch.Tensor]:
    """Example id (its first token) -> the noise its row was prepared with, over the given batch indices."""
    out: dict[int, torch.Tensor] = {}
    for i in indices:
        b = batches.get(i)
        for row, key in enumerate(ids(b)):
            out.setdefault(key, []).append(b["noise"][row])
    return out


def test_static_masks_belong_to_the_example_not_the_batch():
    per_epoch = ROWS // 4
    static = masks_by_example(Batches(EXAMPLES, 4, seed=2, prepare=noise, static=True), range(3 * per_epoch))
    assert all(len(v) == 3 and v[0] == v[1] == v[2] for v in static.values()), "same masks every epoch"
    other_batch = masks_by_example(Batches(EXAMPLES, 6, seed=2, prepare=noise, static=True), range(ROWS // 6))
    assert all(other_batch[k][0] == static[k][0] for k in static), "independent of the rows batched with it"
    assert len({float(v[0]) for v in static.values()}) == ROWS, "each example its own draw"
    dynamic = masks_by_example(Batches(EXAMPLES, 4, seed=2, prepare=noise), range(2 * per_epoch))
    assert all(v[0] != v[1] for v in dynamic.values()), "dynamic masks are redrawn every epoch"
    reseeded = masks_by_example(Batches(EXAMPLES, 4, seed=3, prepare=noise, static=True), range(per_epoch))
    assert all(reseeded[k][0] != static[k][0] for k in static), "the run seed changes the static masks"


def test_examples_are_memory_mapped_ranges_read_per_batch(tmp_path):
    cfg = make_cfg(*TINY, "model=bert", "objective.dupe_factor=3", "trainer.max_steps=1")
    trainer = Trainer(cfg, build(cfg), tmp_path)
    ex = trainer.feed.batches.examples
    assert trainer.feed.batches.static and len(ex) > 2.5 * len(trainer.built.data.examples("train", 1, cfg.seed))
    assert isinstance(ex.ranges, np.memmap) and isinstance(ex.stream.ids, np.memmap)
    assert ex.ranges.nbytes / len(ex) == 32, "a pair is four int64 stream positions, whatever seq_len"
    b = trainer.feed.batches.get(0)
    assert b["input_ids"].dtype == torch.long and b["labels"].shape == b["input_ids"].shape
    rows = ex.rows(range(len(ex)))
    assert ex.padding_fraction() == pytest.approx(1 - float(rows["attention_mask"].double().mean()))
    assert int(rows["next_sentence_label"].sum()) == int(np.asarray(ex.labels).sum())
