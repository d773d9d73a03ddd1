"""The live view of a sweep (runner/reporting/watch.py) and the sweep.json marker it reads (runner/sweeps/callback.py).
This file holds the tests that train or start a process; the others: tests/unit/test_watch.py."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import pytest
from rich.console import Console

from runner.reporting.watch import MARKER, sweep_state, watch
from tests.conftest import ROOT, TINY
from tests.unit.test_watch import make_job, mark, train


def dead_pid() -> int:
    """The id of a process that has exited and been reaped."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_watch_reports_a_sweep_whose_process_is_gone(tmp_path):
    sweep = tmp_path / "s"
    mark(sweep, jobs=3, pid=dead_pid())
    make_job(sweep, "0_bert_mlm", records=[], summary={"steps": 10})
    make_job(sweep, "1_bert_mlm", records=[train(3, 7.0)])
    out = io.StringIO()
    assert watch(sweep, interval=0.01, console=Console(file=out, width=160), timeout=10) == 1
    text = out.getvalue()
    assert "is gone" in text and "2 of 3 jobs did not finish" in text
    state = sweep_state(sweep)
    assert state.died and [j.status for j in state.jobs] == ["finished", "failed", "pending"]


@pytest.mark.slow
def test_watch_follows_a_multirun_of_two_tiny_jobs_to_its_end(tmp_path):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    with (tmp_path / "sweep.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "runner", "-m", *TINY, "trainer.max_steps=4,6",
                                 "trainer.log_every=1", "trainer.export_hf=false", "sweep.compare=false",
                                 f"hydra.sweep.dir={sweep}"], cwd=ROOT, env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 60
            while not (sweep / MARKER).is_file() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            out = io.StringIO()
            code = watch(sweep, interval=0.2, console=Console(file=out, force_terminal=False, width=160), timeout=120)
            assert proc.wait(timeout=60) == 0, (tmp_path / "sweep.log").read_text()
        finally:
            proc.kill()
    text = out.getvalue()
    assert code == 0, text
    updates = [line for line in text.splitlines() if line.startswith("watch:")]
    assert any(s in updates[0] for s in ("pending", "starting", "running")), text  # seen before the end
    final = text[text.rindex("┏"):]  # the closing table
    rows = [line for line in final.splitlines() if "_bert_mlm_nsp" in line]
    assert len(rows) == 2 and all("finished" in r for r in rows), final
    assert "4 / 4" in rows[0] and "trainer.max_steps=4" in rows[0]
    assert "6 / 6" in rows[1] and "trainer.max_steps=6" in rows[1]
    assert "sweep ended: 2 of 2 jobs finished" in text
