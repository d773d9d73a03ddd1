"""The training loop on the real wiki data, shrunk: learning, exact resume, accumulation, failures.
The tests of this file that train or start a process: tests/integration/test_train.py."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from runner.store import checkpoint
from runner.build import build
from runner.config.errors import TrainingError
from runner.run import run
from runner.engine.loop import Trainer
from tests.conftest import TINY, make_cfg


def train(run_dir: Path, *overrides: str) -> dict:
    cfg = make_cfg(*TINY, *overrides)
    return run(cfg, build(cfg), run_dir)


pytestmark = pytest.mark.slow


def test_resume_without_checkpoint_says_how(tmp_path):
    with pytest.raises(TrainingError, match="hydra.run.dir"):
        train(tmp_path, "trainer.max_steps=2", "trainer.resume=true")


def grads_after_one_accumulation(tmp_path: Path, batch: int, accum: int) -> dict[str, torch.Tensor]:
    cfg = make_cfg(*TINY, "model=bert", "model.hidden_dropout=0", "model.attention_dropout=0",
                   f"trainer.batch_size={batch}", f"trainer.grad_accum={accum}")
    trainer = Trainer(cfg, build(cfg), tmp_path)
    trainer.accumulate()
    return {n: p.grad.clone() for n, p in trainer.module.named_parameters() if p.grad is not None}


def test_grad_accumulation_equals_large_batch(tmp_path):
    big = grads_after_one_accumulation(tmp_path / "a", 8, 1)
    small = grads_after_one_accumulation(tmp_path / "b", 4, 2)
    tiny = grads_after_one_accumulation(tmp_path / "c", 2, 4)
    assert big.keys() == small.keys() == tiny.keys()
    for name in big:
        torch.testing.assert_close(small[name], big[name], rtol=1e-4, atol=1e-6, msg=name)
        torch.testing.assert_close(tiny[name], big[name], rtol=1e-4, atol=1e-6, msg=name)


def test_crash_while_checkpointing_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    checkpoint.save(tmp_path, {"step": 1})

    def torn_write(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_write)
    with pytest.raises(TrainingError, match=r"could not write .*step-00000002.pt \(disk full\): .*its last "
                                            r"checkpoint \(step 1\) is intact"):
        checkpoint.save(tmp_path, {"step": 2})
    monkeypatch.undo()
    assert checkpoint.load(tmp_path)["step"] == 1
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.pt", "step-00000001.pt"], \
        "no temporary file left"
