"""Fault injection: signals, SIGKILL mid-run and mid-checkpoint, corrupt and truncated checkpoints, a full disk,
a failing W&B start. Each asserts that nothing is lost.
The tests of this file that train or start a process: tests/integration/test_faults.py."""
from __future__ import annotations

import errno
import os

import pytest
import torch

from runner.store import checkpoint
from runner.config.errors import TrainingError


def test_last_k_checkpoints_are_kept_and_last_links_the_newest(tmp_path):
    for step in range(1, 6):
        checkpoint.save(tmp_path, {"step": step}, keep=2)
    assert [p.name for p in checkpoint.step_files(tmp_path)] == ["step-00000005.pt", "step-00000004.pt"]
    assert checkpoint.load(tmp_path)["step"] == 5
    assert os.path.samefile(checkpoint.checkpoint_path(tmp_path), checkpoint.step_files(tmp_path)[0])


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_corrupt_checkpoint_is_named_and_the_previous_one_is_used(tmp_path, damage, capsys):
    for step in (1, 2):
        checkpoint.save(tmp_path, {"step": step, "w": torch.ones(1000)}, keep=2)
    newest = checkpoint.step_files(tmp_path)[0]
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\0garbage" * 100)  # last.pt: same file
    assert checkpoint.load(tmp_path)["step"] == 1
    err = capsys.readouterr().err  # the console is stderr
    assert "last.pt is unreadable" in err and "trying the previous one" in err
    checkpoint.step_files(tmp_path)[1].write_bytes(b"")
    with pytest.raises(TrainingError, match="no readable checkpoint in .*corrupt or truncated"):
        checkpoint.load(tmp_path)


def test_a_full_disk_during_a_checkpoint_is_reported_and_the_previous_survives(tmp_path, monkeypatch):
    checkpoint.save(tmp_path, {"step": 1})

    def no_space(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(TrainingError, match=r"step-00000002.pt \(no space left on the device\).*free there.*"
                                            r"last checkpoint \(step 1\) is intact.*trainer.resume=true"):
        checkpoint.save(tmp_path, {"step": 2})
    monkeypatch.undo()
    assert checkpoint.load(tmp_path)["step"] == 1
    assert not list((tmp_path / "checkpoints").glob(".*")), "no temporary file left"
