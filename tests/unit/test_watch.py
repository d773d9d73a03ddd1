"""The live view of a sweep (runner/reporting/watch.py) and the sweep.json marker it reads (runner/sweeps/callback.py).
The tests of this file that train or start a process: tests/integration/test_watch.py."""
from __future__ import annotations

import io
import json
import os
import re
import socket
import time
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf
from rich.console import Console

from runner.config.errors import ConfigError
from runner.sweeps.callback import SweepCallback, expected_jobs
from runner.reporting.watch import MARKER, STALL_S, job_states, sweep_state, watch


T0 = 1_700_000_000.0  # a fixed "now" for the hand-made jobs


def make_job(sweep: Path, name: str, max_steps: int = 10, records: list[dict] | None = None, partial: str = "",
             summary: dict | None = None, log: str = "", budget: dict | None = None,
             overrides: tuple[str, ...] = ()) -> Path:
    """A job directory as Hydra and the runner write it: config, overrides, metrics, log and maybe summary.json."""
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    config = {"trainer": {"max_steps": max_steps, "log_every": 1, "stop_after": None, "budget": budget or {}}}
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["seed=0", *overrides]))
    if records is not None:
        (job / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + partial)
    if summary is not None:
        (job / "summary.json").write_text(json.dumps(summary))
    (job / "__main__.log").write_text(log)
    return job


def mark(sweep: Path, jobs: int | None, ended: str | None = None, pid: int | None = None, swept=("optimizer.lr",)):
    """sweep.json as SweepCallback writes it."""
    sweep.mkdir(parents=True, exist_ok=True)
    (sweep / MARKER).write_text(json.dumps({"jobs": jobs, "swept": list(swept), "started": "2023-11-14T22:00:00+00:00",
                                            "ended": ended, "pid": pid or os.getpid(),
                                            "host": socket.gethostname()}))


def train(step: int, loss: float, when: float | None = None) -> dict:
    """A training record of metrics.jsonl."""
    r = {"step": step, "train/loss": loss, "train/tokens": 512 * step, "train/tokens_per_s": 1000.0 + step,
         "train/flops": 1e6 * step}
    return r if when is None else {**r, "time": when}


def test_job_states_of_finished_failed_running_and_pending_jobs(tmp_path):
    sweep = tmp_path / "s"
    mark(sweep, jobs=4)
    make_job(sweep, "0_bert_mlm", records=[{"step": 0, "val/mlm_loss": 7.0}, train(10, 6.5)],
             summary={"steps": 10, "max_steps": 10, "final_train_loss": 6.4, "final_val": {"mlm_loss": 6.2},
                      "tokens_per_s": 900.0, "wall_time_s": 42.0}, overrides=("optimizer.lr=0.001",))
    make_job(sweep, "1_bert_mlm", records=[], log="[2023-11-14][runner][ERROR] - error: trainer.batch_size=0 must be"
             " > 0\n", overrides=("optimizer.lr=0.002",))
    running = [{"step": 0, "val/mlm_loss": 7.1, "time": T0 - 60}, train(2, 7.0, T0 - 50), train(4, 6.9, T0 - 40)]
    make_job(sweep, "2_bert_mlm", records=running, partial='{"step": 6, "train/lo', overrides=("optimizer.lr=0.003",))
    cache: dict = {}
    jobs = job_states(sweep, cache, now=T0 - 40)
    assert [(j.job, j.status) for j in jobs] == [("0_bert_mlm", "finished"), ("1_bert_mlm", "failed"),
                                                 ("2_bert_mlm", "running"), ("3", "pending")]
    done, failed, run, pending = jobs
    assert (done.name, done.step, done.max_steps, done.loss, done.val_loss, done.elapsed_s) == \
        ("optimizer.lr=0.001", 10, 10, 6.4, 6.2, 42.0)
    assert failed.error == "trainer.batch_size=0 must be > 0"
    # the torn last line is left for the next read: step 4 of 10, 2 steps per 10 s, so 30 s to go
    assert (run.step, run.max_steps, run.progress, run.loss, run.val_metric, run.val_loss) == \
        (4, 10, 0.4, 6.9, "mlm_loss", 7.1)
    assert run.eta_s == pytest.approx(30.0)
    assert pending.status == "pending" and pending.step is None
    with (sweep / "2_bert_mlm" / "metrics.jsonl").open("a") as f:  # the job finishes writing the line
        f.write('ss": 6.8, "train/tokens_per_s": 1200.0, "time": %s}\n' % (T0 - 30))
    run = job_states(sweep, cache, now=T0 - 30)[2]
    assert (run.step, run.loss, run.tokens_per_s) == (6, 6.8, 1200.0)
    assert run.eta_s == pytest.approx(20.0)  # 4 steps in 20 s, 4 to go


def test_without_times_the_eta_comes_from_the_progress_the_watch_saw(tmp_path):
    sweep = tmp_path / "s"
    mark(sweep, jobs=1)
    job = make_job(sweep, "0_bert_mlm", max_steps=100, records=[train(10, 7.0)])
    cache: dict = {}
    assert job_states(sweep, cache, now=T0)[0].eta_s is None  # one sighting: no rate yet
    with (job / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(train(20, 6.9)) + "\n")
    state = job_states(sweep, cache, now=T0 + 10)[0]
    assert state.eta_s == pytest.approx(80.0)  # 10 steps in 10 s, 80 to go


def test_a_tokens_budget_gives_the_progress_and_an_estimated_step_count(tmp_path):
    sweep = tmp_path / "s"
    mark(sweep, jobs=1)
    make_job(sweep, "0_bert_mlm", max_steps=1500, records=[train(25, 7.0)], budget={"tokens": 51200})
    state = job_states(sweep, now=T0)[0]
    assert (state.progress, state.max_steps, state.approx) == (0.25, 100, True)


def test_a_job_the_sequential_launcher_left_without_a_summary_failed(tmp_path):
    sweep = tmp_path / "s"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(
        {"hydra": {"launcher": {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}}}))
    make_job(sweep, "0_bert_mlm", records=[train(3, 7.0)])  # crashed: its error went to the terminal only
    make_job(sweep, "1_bert_mlm", records=[train(1, 7.2)])
    (sweep / "0_bert_mlm" / "checkpoints").mkdir()
    (sweep / "0_bert_mlm" / "checkpoints" / "last.pt").write_bytes(b"")
    jobs = job_states(sweep, now=time.time())
    assert [j.status for j in jobs] == ["incomplete", "running"]
    assert "no summary.json" in jobs[0].error


def test_a_running_job_that_writes_nothing_for_long_is_stalled(tmp_path):
    sweep = tmp_path / "s"
    mark(sweep, jobs=1)
    make_job(sweep, "0_bert_mlm", records=[train(3, 7.0)])
    assert job_states(sweep, now=time.time() + STALL_S + 60)[0].status == "stalled"


def test_the_sweep_is_over_when_marked_ended_or_all_expected_jobs_are_done(tmp_path):
    sweep = tmp_path / "s"
    mark(sweep, jobs=2)
    make_job(sweep, "0_bert_mlm", records=[], summary={"steps": 10})
    assert not sweep_state(sweep).over  # job 1 has not started
    make_job(sweep, "1_bert_mlm", records=[], summary={"steps": 10})
    state = sweep_state(sweep)
    assert state.over and state.all_finished and not state.ended
    mark(sweep, jobs=None, ended="2023-11-14T22:05:00+00:00")  # an unknown count: the end mark decides
    state = sweep_state(sweep)
    assert state.over and state.ended and state.elapsed_s == pytest.approx(300.0)
    mark(sweep, jobs=None)
    assert not sweep_state(sweep).over  # the sweep process (this one) lives: more jobs may come


def test_watch_of_an_older_finished_sweep_ends_at_once(tmp_path):
    sweep = tmp_path / "s"
    make_job(sweep, "0_bert_mlm", records=[train(10, 6.5)], summary={"steps": 10, "max_steps": 10},
             overrides=("model=bert",))
    make_job(sweep, "1_bert_mlm", records=[train(10, 6.5)], summary={"steps": 10, "max_steps": 10},
             overrides=("model=roberta",))
    out = io.StringIO()
    assert watch(sweep, interval=0.01, console=Console(file=out, width=160), timeout=10) == 0
    assert "sweep ended: 2 of 2 jobs finished" in out.getvalue()
    assert [j.name for j in job_states(sweep)] == ["model=bert", "model=roberta"]  # no sweep.json: what differs


def test_compare_watch_follows_the_sweep_and_exits_with_its_code(tmp_path, capsys):
    """python -m runner.compare --watch DIR: the same view; exit 0 when every job finished, 2 for a bad DIR."""
    from runner.reporting.compare import main

    sweep = tmp_path / "s"
    for i, model in enumerate(["bert", "roberta"]):
        make_job(sweep, f"{i}_{model}_mlm", records=[train(10, 6.5)], summary={"steps": 10, "max_steps": 10},
                 overrides=(f"model={model}",))
    with pytest.raises(SystemExit) as done:
        main(["--watch", str(sweep), "--interval", "0.01"])
    assert done.value.code == 0 and "2 of 2 jobs finished" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bad:
        main(["--watch", str(tmp_path / "missing")])
    assert bad.value.code == 2


def test_watch_times_out_on_a_sweep_that_goes_on(tmp_path):
    sweep = tmp_path / "s"
    mark(sweep, jobs=2)
    make_job(sweep, "0_bert_mlm", records=[train(3, 7.0)])
    out = io.StringIO()
    assert watch(sweep, interval=0.05, console=Console(file=out, width=160), timeout=0.2) == 1
    assert "stopped watching after" in out.getvalue()


def test_ctrl_c_ends_the_watch_quietly_with_the_table(tmp_path, monkeypatch):
    sweep = tmp_path / "s"
    mark(sweep, jobs=2)
    make_job(sweep, "0_bert_mlm", records=[train(3, 7.0)])

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("runner.reporting.watch.time.sleep", interrupt)
    out = io.StringIO()
    assert watch(sweep, console=Console(file=out, force_terminal=True, width=160)) == 130  # a terminal: live view
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # the terminal's colours and cursor moves
    assert "Traceback" not in text and "stopped watching: 0 of 2 jobs finished so far" in text
    assert "3 / 10" in text[text.rindex("┏"):]  # the final table, printed after the live one is gone


def test_a_bad_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not a directory"):
        watch(tmp_path / "missing")
    with pytest.raises(ConfigError, match="no sweep jobs"):
        watch(tmp_path)
    make_job(tmp_path, "run")
    with pytest.raises(ConfigError, match="one run's directory"):
        watch(tmp_path / "run")


def hydra_config(sweep: Path, task: list[str], sweeper: dict | None = None) -> OmegaConf:
    """The parts of a multirun's config the callback reads."""
    return OmegaConf.create({
        "hydra": {"sweep": {"dir": str(sweep)}, "overrides": {"task": task, "hydra": []},
                  "sweeper": sweeper or {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                                         "params": None}},
        "sweep": {"compare": False}, "logger": {"mode": "disabled"}})


def test_expected_jobs_of_a_grid_and_of_optuna(tmp_path):
    assert expected_jobs(hydra_config(tmp_path, ["seed=0,1,2", "optimizer.lr=1e-4,3e-4", "model=bert"])) == 6
    grid = hydra_config(tmp_path, ["seed=0,1"], {"_target_": "hydra._internal.core_plugins.basic_sweeper."
                                                              "BasicSweeper", "params": {"model": "bert,roberta"}})
    assert expected_jobs(grid) == 4
    optuna = {"_target_": "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper", "n_trials": 7}
    assert expected_jobs(hydra_config(tmp_path, ["optimizer.lr=interval(1e-4,1e-3)"], optuna)) == 7
    assert expected_jobs(hydra_config(tmp_path, ["seed=interval(0,1)"])) is None  # no grid of that


def test_the_callback_marks_the_sweep_start_and_end(tmp_path):
    sweep = tmp_path / "s"
    config = hydra_config(sweep, ["seed=0,1"])
    callback = SweepCallback()
    callback.on_multirun_start(config)
    marker = json.loads((sweep / MARKER).read_text())
    assert (marker["jobs"], marker["swept"], marker["ended"], marker["pid"]) == (2, ["seed"], None, os.getpid())
    callback.on_multirun_end(config)
    assert json.loads((sweep / MARKER).read_text())["ended"] is not None


def test_a_marker_that_cannot_be_written_is_only_a_warning(tmp_path, capsys):
    blocked = tmp_path / "file"
    blocked.write_text("")  # the sweep dir's parent is a file: nothing can be written under it
    SweepCallback().on_multirun_start(hydra_config(blocked / "s", ["seed=0,1"]))
    assert "could not write" in capsys.readouterr().err
