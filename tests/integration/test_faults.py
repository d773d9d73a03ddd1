"""Fault injection: signals, SIGKILL mid-run and mid-checkpoint, corrupt and truncated checkpoints, a full disk,
a failing W&B start. Each asserts that nothing is lost.
This file holds the tests that train or start a process; the others: tests/unit/test_faults.py."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from runner.store import checkpoint
from tests.conftest import ROOT, TINY, cli


RUN = [*TINY, "model=roberta", "trainer.max_steps=30", "trainer.eval_every=10", "trainer.log_every=1",
       "trainer.export_hf=false"]


def final(run_dir: Path) -> tuple[float, float]:
    s = json.loads((run_dir / "summary.json").read_text())
    return s["final_train_loss"], s["final_val"]["mlm_loss"]


def start(run_dir: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "runner", *RUN, *args, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_step(run_dir: Path, step: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Until metrics.jsonl has a training record at or past step."""
    deadline = time.monotonic() + timeout
    path = run_dir / "metrics.jsonl"
    while time.monotonic() < deadline and proc.poll() is None:
        lines = path.read_text().splitlines() if path.is_file() else []
        if any(json.loads(ln).get("step", 0) >= step and "train/loss" in ln for ln in lines if ln.strip()):
            return
        time.sleep(0.05)
    raise AssertionError(f"no step {step} in {path} (exit {proc.poll()})")


@pytest.fixture(scope="module")
def reference(finished_run) -> tuple[float, float]:
    """An uninterrupted run's final train and validation loss (the session's `python -m runner RUN` run)."""
    r = finished_run.result(*RUN)
    assert r.returncode == 0, r.stderr[-2000:]
    return final(finished_run(*RUN))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_stop_signal_finishes_the_step_checkpoints_and_resume_completes_the_same_run(tmp_path, reference, sig):
    proc = start(tmp_path, "trainer.checkpoint_every=1000")  # the only mid-run checkpoint is the signal's
    wait_for_step(tmp_path, 5, proc)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig, out[-2000:]
    assert f"{sig.name} at step" in out and "trainer.resume=true" in out
    step = checkpoint.load(tmp_path)["step"]
    assert 5 <= step < 30 and not (tmp_path / "summary.json").exists()
    r = cli(*RUN, "trainer.resume=true", run_dir=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert final(tmp_path) == reference  # bit for bit on CPU


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_ends_with_the_uninterrupted_metrics(tmp_path, reference):
    proc = start(tmp_path, "trainer.checkpoint_every=4")
    wait_for_step(tmp_path, 11, proc)
    proc.kill()  # SIGKILL: no handler runs, mid-step or mid-write
    proc.communicate(timeout=60)
    assert checkpoint.load(tmp_path)["step"] >= 8
    r = cli(*RUN, "trainer.checkpoint_every=4", "trainer.resume=true", run_dir=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert final(tmp_path) == reference
    records = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    steps = [r["step"] for r in records if "train/loss" in r]
    assert steps == list(range(1, 31)), "the resumed run rewrote what followed its checkpoint, once"


WRITER = """
import os, sys, torch
from runner.store import checkpoint
run_dir = sys.argv[1]
for step in range(1, 10_000):
    checkpoint.save(run_dir, {"step": step, "weights": torch.full((1_500_000,), float(step))}, keep=2)
    print(step, flush=True)
"""


@pytest.mark.slow
def test_sigkill_during_checkpoint_writes_never_leaves_a_torn_checkpoint(tmp_path):
    for delay in (0.3, 0.55, 0.8):  # different moments of the write loop
        run_dir = tmp_path / f"kill_{delay}"
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline()  # one checkpoint written
        time.sleep(delay)
        proc.kill()
        proc.communicate(timeout=60)
        state = checkpoint.load(run_dir)  # the newest complete checkpoint
        assert torch.equal(state["weights"], torch.full((1_500_000,), float(state["step"])))
        assert len(checkpoint.step_files(run_dir)) <= 3  # pruned as it went (one more while a write was cut)


class BrokenRun:
    """A W&B run whose service went away: every call fails."""

    summary: dict = {}

    def log(self, *args, **kwargs):
        raise ConnectionError("rate limited (429)")

    def finish(self, *args, **kwargs):
        raise ConnectionError("network is unreachable")


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["init", "log"])
def test_wandb_failures_never_stop_training_and_the_local_files_are_complete(tmp_path, monkeypatch, failure):
    import wandb

    from runner.build import build
    from runner.run import run
    from tests.conftest import make_cfg

    def init(*args, **kwargs):
        if failure == "init":
            raise RuntimeError("wandb.init timed out")
        return BrokenRun()

    monkeypatch.setattr(wandb, "init", init)
    cfg = make_cfg(*TINY, "trainer.max_steps=4", "trainer.log_every=1", "trainer.export_hf=false",
                   "logger.mode=offline")
    with pytest.warns(UserWarning, match="W&B"):
        summary = run(cfg, build(cfg), tmp_path)
    assert summary["steps"] == 4 and summary["wandb_mode"] == "disabled"
    records = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    assert [r["step"] for r in records if "train/loss" in r] == [1, 2, 3, 4]
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 4
