"""A full disk is an error message and nothing lost (runner/data/cache.py WriteFailed): the file that did not fit is
named with the bytes it needed and the free space, no partial file is left, the last complete checkpoint stays as it
was, and the run resumes from it to the undisturbed run's final state. On a real small filesystem (a tmpfs the test
mounts, where it may) and by a failure injected at each write site (everywhere)."""
from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from runner.data.cache import WriteFailed
from runner.store import checkpoint
from tests.conftest import TINY, cli
from tests.unit.test_train import train

pytestmark = pytest.mark.slow

RUN = ["model=bert", "trainer.max_steps=6", "trainer.checkpoint_every=2", "trainer.eval_every=3", "trainer.log_every=1",
       "trainer.export_hf=false", "objective.dupe_factor=2"]


def same_end(a: dict, b: dict) -> None:
    assert (a["steps"], a["final_train_loss"], a["final_val"]) == (b["steps"], b["final_train_loss"], b["final_val"])


def full_disk_on(call: int, real=torch.save):
    """torch.save raising what it raises when its file stops taking bytes, at the `call`-th save (1-based)."""
    calls = [0]

    def save(obj, f, *args, **kwargs):
        calls[0] += 1
        if calls[0] == call:
            real(obj, f, *args, **kwargs)  # a partial file: the zip writer fails when the disk is full
            f.truncate(f.tell() // 2)
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 26048 vs 25942")
        return real(obj, f, *args, **kwargs)
    return save


def test_a_full_disk_at_the_second_checkpoint_resumes_to_the_undisturbed_end(tmp_path, monkeypatch):
    full = train(tmp_path / "full", *RUN)
    with monkeypatch.context() as m:
        m.setattr(torch, "save", full_disk_on(2))  # checkpoints at steps 2 (fits) and 4 (the disk is full)
        with pytest.raises(WriteFailed) as failed:
            train(tmp_path / "split", *RUN)
    message = str(failed.value)
    assert "\n" not in message and "step-00000004.pt" in message and "no space left" in message
    assert "it needed" in message and "free there" in message and "trainer.resume=true" in message
    assert "last checkpoint (step 2) is intact" in message
    names = sorted(p.name for p in (tmp_path / "split" / "checkpoints").iterdir())
    assert names == ["last.pt", "step-00000002.pt"]  # no partial step 4, no temporary file
    assert checkpoint.load(tmp_path / "split")["step"] == 2
    lines = (tmp_path / "split" / "metrics.jsonl").read_text()
    assert lines.endswith("\n")
    same_end(train(tmp_path / "split", *RUN, "trainer.resume=true"), full)


@pytest.mark.parametrize("site", ["metrics.jsonl", "summary.json"])
def test_each_run_file_that_does_not_fit_stops_the_run_in_one_line(tmp_path, monkeypatch, site):
    """metrics.jsonl (appended: cut back to its last whole record) and summary.json (written whole or not at all):
    one line naming the file, the run resumable from its last checkpoint."""
    real_open, real_replace = Path.open, os.replace

    def full_open(self, mode="r", *a, **k):
        f = real_open(self, mode, *a, **k)
        if self.name == "metrics.jsonl" and "a" in mode and checkpoint.step_files(self.parent):  # after step 2
            real_write = f.write

            def write(text):
                real_write(text[:5])
                raise OSError(errno.ENOSPC, "No space left on device")
            f.write = write
        return f

    def full_replace(src, dst, *a, **k):
        if Path(dst).name == "summary.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst, *a, **k)

    with monkeypatch.context() as m:
        if site == "metrics.jsonl":
            m.setattr(Path, "open", full_open)
        else:
            m.setattr(os, "replace", full_replace)
        with pytest.raises(WriteFailed) as failed:
            train(tmp_path, *RUN)
    message = str(failed.value)
    assert "\n" not in message and "no space left" in message and "trainer.resume=true" in message
    assert site in message
    assert not [p for p in tmp_path.rglob("*.tmp")]  # no temporary file left
    if site == "metrics.jsonl":  # every line whole
        for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
            assert line.startswith("{") and line.endswith("}")


def test_a_snapshot_that_does_not_fit_is_one_line_and_not_left_half_written(tmp_path, monkeypatch):
    from runner.engine.snapshots import Snapshots

    checkpoint.save(tmp_path, {"step": 2, "module": {}})
    snaps = Snapshots(tmp_path, [1e9])
    with monkeypatch.context() as m:
        m.setattr(torch, "save", full_disk_on(1))
        with pytest.raises(WriteFailed) as failed:
            snaps.save([1e9], {"w": torch.zeros(1000)}, 2, 1e9, 100)
    message = str(failed.value)
    assert "flops-1e+09.pt" in message and "it needed 4.0 kB" in message and "(step 2) is intact" in message
    assert list((tmp_path / "snapshots").iterdir()) == []


def test_on_a_real_small_filesystem_the_command_says_one_line(tmp_path):
    """`python -m runner` with its run directory on a tmpfs too small for the second checkpoint (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the injected failures above cover the write sites")
    probe = tmp_path / "probe"
    probe.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True).returncode:
        pytest.skip("this machine does not let the test mount a tmpfs")
    subprocess.run(["umount", str(probe)], check=True)
    sized = train(tmp_path / "sized", *RUN)  # how large a checkpoint and the rest of the run directory are
    ckpt = (tmp_path / "sized" / "checkpoints" / "last.pt").stat().st_size
    small = tmp_path / "small"
    small.mkdir()
    size_kb = (int(ckpt * 1.3) + 128 * 1024) // 1024  # the first checkpoint fits, the second beside it does not
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(small)], check=True)
    try:
        r = cli(*TINY, *RUN, run_dir=small / "run")
        errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        assert r.returncode == 2 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert "could not write" in errors[0] and "no space left" in errors[0] and "trainer.resume=true" in errors[0]
        assert "step-00000004.pt" in errors[0] and "(step 2) is intact" in errors[0]
        assert checkpoint.load(small / "run")["step"] == 2  # the last complete one
        shutil.copytree(small / "run", tmp_path / "moved")  # "copy the run directory to a disk with room"
    finally:
        for handler in logging.getLogger().handlers[:]:  # the in-process run's log file is on the tmpfs
            if isinstance(handler, logging.FileHandler) and str(small) in handler.baseFilename:
                handler.close()
                logging.getLogger().removeHandler(handler)
        subprocess.run(["umount", "-l", str(small)], check=False)  # lazy: detached even if a file is still open
    assert str(small) not in Path("/proc/mounts").read_text()
    same_end(train(tmp_path / "moved", *RUN, "trainer.resume=true"), sized)
