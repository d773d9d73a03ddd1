"""One owner per run directory (runner/engine/lock.py), no new run into a used one, and resumes that list what changed
(runner/config/changes.py): concurrent runs, a SIGKILLed run's stale lock, a refused new run that changes nothing,
a resume with a changed learning rate, identity keys that refuse, the lock taken by rank 0 only.
This file holds the tests that train or start a process; the others: tests/unit/test_rundir.py."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.store import checkpoint
from runner.engine import lock as rundir
from runner.config.errors import TrainingError
from tests.conftest import ROOT, TINY, cli, copy_run, make_cfg


RUN = [*TINY, "model=roberta", "trainer.max_steps=20", "trainer.checkpoint_every=4", "trainer.eval_every=10",
       "trainer.log_every=1", "trainer.export_hf=false"]


CLOCK = ("time", "train/tokens_per_s")  # wall-clock fields of metrics.jsonl


def start(run_dir: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "runner", *RUN, *args, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def pause_at_step(run_dir: Path, step: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    """SIGSTOP proc once metrics.jsonl has a training record at or past step (it keeps its lock while stopped)."""
    deadline, path = time.monotonic() + timeout, run_dir / "metrics.jsonl"
    while time.monotonic() < deadline and proc.poll() is None:
        lines = path.read_text().splitlines() if path.is_file() else []
        if any(json.loads(ln).get("step", 0) >= step and "train/loss" in ln for ln in lines if ln.strip()):
            proc.send_signal(signal.SIGSTOP)
            return
        time.sleep(0.05)
    raise AssertionError(f"no step {step} in {path} (exit {proc.poll()})")


def records(run_dir: Path) -> list[dict]:
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    return [{k: v for k, v in r.items() if k not in CLOCK} for r in rows]


def result(run_dir: Path) -> tuple:
    s = json.loads((run_dir / "summary.json").read_text())
    return s["steps"], s["tokens_seen"], s["final_train_loss"], s["final_val"]


def files(run_dir: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under run_dir: its mtime and bytes."""
    return {str(p.relative_to(run_dir)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def error_lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith("error:")]


@pytest.fixture(scope="module")
def reference(finished_run) -> Path:
    """An undisturbed `python -m runner RUN` run (the session's, shared: read only)."""
    r = finished_run.result(*RUN)
    assert r.returncode == 0, r.stderr[-2000:]
    return finished_run(*RUN)


@pytest.mark.slow
def test_a_second_run_into_a_directory_in_use_exits_naming_the_owner_and_the_first_finishes_undisturbed(
        tmp_path, reference):
    first = start(tmp_path)
    try:
        pause_at_step(tmp_path, 2, first)
        before = files(tmp_path)
        assert "summary.json" not in before, "the first run ended before the second started"
        second = cli(*RUN, run_dir=tmp_path)
        assert files(tmp_path) == before, "the second run touched the first's files"
    finally:
        first.send_signal(signal.SIGCONT)
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out[-2000:]
    assert second.returncode == 2
    (line,) = error_lines(second.stderr)
    assert f"{tmp_path} is in use by host {socket.gethostname()} pid {first.pid} since " in line
    assert "hydra.run.dir=" in line
    assert result(tmp_path) == result(reference) and records(tmp_path) == records(reference)


@pytest.mark.slow
def test_a_sigkilled_runs_lock_does_not_block_its_resume(tmp_path, reference):
    proc = start(tmp_path, "trainer.checkpoint_every=2")  # how often it checkpoints changes no number
    pause_at_step(tmp_path, 3, proc)
    proc.kill()  # SIGKILL: no handler runs; its owner record stays in .lock
    proc.communicate(timeout=60)
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == proc.pid
    assert 2 <= checkpoint.load(tmp_path)["step"] < 20
    r = cli(*RUN, "trainer.checkpoint_every=2", "trainer.resume=true", run_dir=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert result(tmp_path) == result(reference) and records(tmp_path) == records(reference)
    assert (tmp_path / ".lock").read_text() == "", "a run that ends gives the directory up"


@pytest.mark.slow
def test_a_new_run_into_a_used_directory_refuses_and_changes_nothing(reference, tmp_path):
    reference = copy_run(reference, tmp_path / "run")  # should the refusal fail, the shared run stays as it was
    before = files(reference)
    assert ".hydra/config.yaml" in before and ".lock" in before
    r = cli(*RUN, "optimizer.lr=0.1", run_dir=reference)
    assert r.returncode == 2
    (line,) = error_lines(r.stderr)
    assert f"{reference} already holds a run (checkpoints/" in line
    assert "trainer.resume=true (or auto)" in line and "hydra.run.dir=" in line
    assert files(reference) == before


def schedule_factors(cfg, steps: int) -> dict[int, float]:
    """{step: the schedule's multiplier of the peak rate at that step's update}, as the run's optimizer builds it."""
    import torch
    from hydra.utils import instantiate

    opt, sched = instantiate(cfg.optimizer)(module=torch.nn.Linear(2, 2), max_steps=steps)
    out = {}
    for step in range(1, steps + 1):
        out[step] = sched.get_last_lr()[0] / cfg.optimizer.lr
        opt.step()
        sched.step()
    return out


@pytest.mark.slow
def test_a_resume_lists_changed_settings_on_the_console_in_the_summary_and_as_a_tag(tmp_path, monkeypatch):
    import runner.run as run_module
    from runner.build import build

    cfg = make_cfg(*RUN, "trainer.stop_after=3")
    run_module.run(cfg, build(cfg), tmp_path)
    lr = cfg.optimizer.lr
    r = cli(*RUN, "optimizer.lr=0.1", "trainer.resume=true", run_dir=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resumed at step 3 with changed settings: optimizer.lr: {lr} -> 0.1" in r.stderr
    first = {"key": "optimizer.lr", "before": lr, "after": 0.1, "step": 3}
    assert json.loads((tmp_path / "summary.json").read_text())["resume_changes"] == [first]
    # the new rate applies from the resumed step, at the schedule's position: the same schedule with a 0.1 peak
    logged = {r["step"]: r["train/lr"] for r in records(tmp_path) if "train/lr" in r}
    assert logged == pytest.approx({s: (lr if s <= 3 else 0.1) * f for s, f in schedule_factors(cfg, 20).items()})
    # a second resume keeps the first's list, and the W&B run is tagged
    tags, real = [], run_module.RunLogger
    monkeypatch.setattr(run_module, "RunLogger", lambda *a, **k: tags.extend(a[4]) or real(*a, **k))
    cfg = make_cfg(*RUN, "optimizer.lr=0.1", "trainer.eval_every=5", "trainer.resume=true")
    s = run_module.run(cfg, build(cfg), tmp_path)
    assert s["resume_changes"] == [first, {"key": "trainer.eval_every", "before": 10, "after": 5, "step": 20}]
    assert "resumed-with-changes" in tags


@pytest.mark.slow
def test_a_resume_that_changes_what_the_run_is_refuses_in_one_line(tmp_path):
    from runner.build import build
    from runner.run import run

    cfg = make_cfg(*RUN, "trainer.max_steps=2")
    run(cfg, build(cfg), tmp_path)
    cfg = make_cfg(*RUN, "trainer.max_steps=2", "trainer.batch_size=4", "trainer.resume=true")
    with pytest.raises(TrainingError) as e:
        run(cfg, build(cfg), tmp_path)
    assert "\n" not in str(e.value) and "trainer.batch_size: 8 -> 4" in str(e.value)
    assert "another hydra.run.dir" in str(e.value)
    # python -m runner makes the same check before it builds any data or model
    from runner.engine.state import refuse_early

    with pytest.raises(TrainingError, match=r"data.seq_len: 64 -> 32") as early:
        refuse_early(make_cfg(*RUN, "trainer.max_steps=2", "data.seq_len=32", "trainer.resume=true"), tmp_path)
    assert "\n" not in str(early.value)
    refuse_early(make_cfg(*RUN, "trainer.max_steps=4", "optimizer.lr=0.1", "trainer.resume=true"), tmp_path)


@pytest.mark.slow
def test_a_checkpoint_without_a_config_resumes_and_says_changes_cannot_be_listed(tmp_path, capsys):
    from runner.build import build
    from runner.run import run

    common = [*RUN, "trainer.max_steps=2", "trainer.eval_every=100"]
    cfg = make_cfg(*common)
    run(cfg, build(cfg), tmp_path)
    for path in (tmp_path / "checkpoints").glob("*.pt"):  # as written before checkpoints kept the config
        import torch

        state = torch.load(path, weights_only=False)
        state.pop("config", None), state.pop("resume_changes", None)  # last.pt and its step file: one file
        torch.save(state, path)
    capsys.readouterr()
    cfg = make_cfg(*common, "trainer.resume=true")
    s = run(cfg, build(cfg), tmp_path)
    assert "the checkpoint does not record its config; changes cannot be listed" in capsys.readouterr().err
    assert s["resume_changes"] == []


HOLDER = """
import fcntl, json, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, json.dumps({"host": sys.argv[2], "pid": os.getpid(), "since": "then", "command": "holder",
                         "slurm_job": sys.argv[3] or None, "restart": "0"}).encode())
print("held", flush=True)
time.sleep(60)
"""


def hold(lock: Path, host: str = "", slurm_job: str = "") -> subprocess.Popen:
    """Another process holding the flock on lock, with its owner record."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock), host or socket.gethostname(), slurm_job],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_held_lock_refuses_and_a_released_one_is_free(tmp_path):
    holder = hold(tmp_path / ".lock")
    try:
        with pytest.raises(rundir.RunDirInUse, match=f"in use by host .* pid {holder.pid} since then"):
            rundir.claim(tmp_path, resume=True)
    finally:
        holder.kill()
        holder.wait()
    rundir.claim(tmp_path, resume=True)  # the kernel dropped the dead holder's lock: stale, whatever its record says
    rundir.claim(tmp_path, resume=True)  # this process owns it already
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    rundir.release(tmp_path)
    assert (tmp_path / ".lock").read_text() == ""


def test_a_requeued_slurm_job_takes_over_from_its_earlier_attempt(tmp_path, monkeypatch):
    holder = hold(tmp_path / ".lock", host="dead-node", slurm_job="77")  # a failed node whose lease runs on
    try:
        monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
        monkeypatch.setenv("SLURM_JOB_ID", "78")  # another job: the owner is live as far as anyone can tell
        with pytest.raises(rundir.RunDirInUse):
            rundir.claim(tmp_path, resume=True)
        monkeypatch.setenv("SLURM_JOB_ID", "77")  # the same job, requeued: the scheduler ended its first attempt
        rundir.claim(tmp_path, resume=True)
        rundir.release(tmp_path)
    finally:
        holder.kill()
        holder.wait()


def test_without_flock_the_owner_record_decides(tmp_path, monkeypatch, capsys):
    import errno
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    lock = tmp_path / ".lock"
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for pid, host, refused in [(alive.pid, socket.gethostname(), True), (2 ** 22 + 1, socket.gethostname(), False),
                                   (alive.pid, "another-host", False)]:
            lock.write_text(json.dumps({"host": host, "pid": pid, "since": "then", "command": "x"}))
            if refused:
                with pytest.raises(rundir.RunDirInUse):
                    rundir.claim(tmp_path, resume=True)
            else:
                rundir.claim(tmp_path, resume=True)
                rundir.release(tmp_path)
    finally:
        alive.kill()
        alive.wait()
    assert "another-host" in capsys.readouterr().err  # cannot be checked from here: a warning, and on


def test_a_forked_worker_outliving_its_killed_parent_does_not_keep_the_lock(tmp_path):
    """DataLoader and tokenizer workers are forked with the lock file open; they close it, so the lock goes with
    the main process."""
    script = ("import os, sys, time; from runner.engine import lock as rundir; rundir.claim(sys.argv[1], resume=True)\n"
              "if os.fork() == 0:\n    time.sleep(60); os._exit(0)\n"
              "print('forked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "forked"
        with pytest.raises(rundir.RunDirInUse):
            rundir.claim(tmp_path, resume=True)  # the child closing its copy left the parent's lock in place
        proc.kill()
        proc.wait()
        rundir.claim(tmp_path, resume=True)  # the child still sleeps; the lock went with the parent
        rundir.release(tmp_path)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)


def test_fine_tuning_or_exporting_a_run_still_training_in_its_directory_refuses(tmp_path):
    """python -m runner.finetune writes summary.json and metrics.jsonl, export= writes hf/: not while another
    process owns the run."""
    from runner.finetune import finetune_run

    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("{}")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"")
    (tmp_path / "summary.json").write_text("{}")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; "
                               f"fd = os.open({str(tmp_path / '.lock')!r}, os.O_RDWR | os.O_CREAT); "
                               "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(rundir.RunDirInUse, match="is in use by"):
            finetune_run(tmp_path)
        r = cli(f"export={tmp_path}")
        assert r.returncode == 2 and f"run directory {tmp_path} is in use by" in r.stderr, r.stderr[-2000:]
        assert not (tmp_path / "hf").exists()
    finally:
        holder.kill()
        holder.wait()
