"""`python -m runner.watch <multirun dir> [--interval S]`: a live table of a sweep in progress (each job's step,
loss, tokens/s, elapsed time, ETA and status) read from the jobs' metrics.jsonl, until the sweep ends.

The sweep's end comes from sweep.json, which runner.sweeps.callback.SweepCallback writes into the sweep directory
(how many jobs to expect, the sweep process, and "ended" once every job is done). Reading the job directories is
kept apart from drawing them: sweep_state() and job_states() are plain functions over the files.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from runner.reporting.collect import distinct_overrides, log_error, pick_metric
from runner.config.errors import ConfigError
from runner.config.console import stdout_console
from runner.config.console import console as err_console
from runner.store import checkpoint, layout

MARKER = layout.SWEEP_MARKER  # {"jobs", "swept", "started", "ended", "pid", "host"}, written by SweepCallback
STALL_S = 900.0  # no new record or log line for this long: shown as stalled (a validation pass takes far less)
WINDOW = 20  # the rate (and so the ETA) is measured over the last WINDOW timed records
BUDGETS = ("steps", "tokens", "flops", "minutes")  # trainer.budget's kinds (runner/config/budget.py)
SEQUENTIAL = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"  # one job at a time
DONE = ("finished", "failed", "incomplete")
STYLES = {"finished": "green", "running": "cyan", "starting": "cyan", "pending": "dim", "stalled": "yellow",
          "incomplete": "yellow", "failed": "red"}
ERROR_LINE = re.compile(r"\berror:\s*\S|^Traceback")  # what compare.log_error reports as a job's failure


@dataclass
class JobState:
    """One job of a sweep as its directory shows it now."""

    job: str  # the job directory's name (0_bert_mlm_nsp), or Hydra's job number while it does not exist
    name: str = ""  # the overrides the sweep varies
    status: str = "pending"  # pending | starting | running | stalled | finished | incomplete | failed
    step: int | None = None
    max_steps: int | None = None  # the step the job ends at
    approx: bool = False  # max_steps estimated from the progress of a tokens/FLOPs/minutes budget
    progress: float | None = None  # 0..1 of the job's steps or budget
    loss: float | None = None  # the last train/loss
    val_metric: str | None = None  # mlm_loss, lm_loss or plm_loss
    val_loss: float | None = None
    tokens_per_s: float | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    error: str | None = None
    path: Path | None = None


@dataclass
class SweepState:
    """A sweep: its jobs (expected ones not started yet included), what sweep.json says and whether it is over."""

    path: Path
    jobs: list[JobState]
    expected: int | None  # jobs the sweep launches; None when unknown
    elapsed_s: float | None
    marked: bool  # the sweep directory has sweep.json
    ended: bool  # sweep.json says the sweep ended
    alive: bool | None  # the sweep process exists; None when unknown (no sweep.json, another host)
    pid: int | None = None

    @property
    def died(self) -> bool:
        """The sweep process is gone without marking the end, leaving jobs unfinished."""
        return self.marked and not self.ended and self.alive is False and not self.all_finished

    @property
    def all_finished(self) -> bool:
        """Every job the sweep launches has finished."""
        return bool(self.jobs) and all(j.status == "finished" for j in self.jobs)

    @property
    def over(self) -> bool:
        """Nothing will change any more: the end is marked, the process is gone, or every job is done."""
        done = bool(self.jobs) and all(j.status in DONE for j in self.jobs)
        if self.ended or self.alive is False:
            return True
        if self.expected is not None:
            return done and len(self.jobs) >= self.expected
        return done and not self.marked  # a sweep without sweep.json (an older one): the jobs present

    def counts(self) -> dict[str, int]:
        """Jobs per status."""
        out: dict[str, int] = {}
        for j in self.jobs:
            out[j.status] = out.get(j.status, 0) + 1
        return out


class MetricsTail:
    """What a job's metrics.jsonl says so far, read on from where the last read stopped; a line still being written
    (no newline yet) waits for the next read, and a rewritten file (a resumed run truncates it) is read again."""

    def __init__(self, path: Path):
        self.path = path
        self._reset(None)

    def _reset(self, inode: int | None) -> None:
        self.inode, self.offset, self.count = inode, 0, 0
        self.step: int | None = None
        self.train: dict | None = None  # the last record with train/loss
        self.val: dict | None = None  # the last record with a validation loss
        self.first_time: float | None = None
        self.timed: deque[dict] = deque(maxlen=WINDOW)  # training records that carry "time"

    def read(self) -> MetricsTail:
        """Take in the lines appended since the last read."""
        try:
            st = self.path.stat()
        except OSError:
            return self
        if st.st_ino != self.inode or st.st_size < self.offset:
            self._reset(st.st_ino)
        if st.st_size == self.offset:
            return self
        with self.path.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read(st.st_size - self.offset)
        whole = chunk.rfind(b"\n") + 1
        for line in chunk[:whole].splitlines():
            try:
                self._add(json.loads(line))
            except (json.JSONDecodeError, UnicodeDecodeError):
                pass  # a line torn by a killed job
        self.offset += whole
        return self

    def _add(self, record: Any) -> None:
        if not isinstance(record, dict):
            return
        self.count += 1
        if isinstance(record.get("step"), int):
            self.step = max(self.step or 0, record["step"])
        if isinstance(record.get("time"), (int, float)) and self.first_time is None:
            self.first_time = float(record["time"])
        if "train/loss" in record:
            self.train = record
            if isinstance(record.get("time"), (int, float)):
                self.timed.append(record)
        if pick_metric(record, "val/"):
            self.val = record


@dataclass
class _Job:
    """What the watch keeps of one job between refreshes: its config and overrides (fixed once written), the
    metrics read so far, and the progress it saw (the rate when records carry no time)."""

    config: dict | None = None
    overrides: list[str] | None = None
    tail: MetricsTail | None = None
    seen: list[tuple[float, float]] = field(default_factory=list)  # (when, progress): first and latest change


def target(config: dict) -> tuple[str, float] | None:
    """What ends the job: (budget kind, amount), or ("steps", trainer.max_steps) without a budget; a steps target
    is cut at trainer.stop_after (the job leaves there, to resume later)."""
    t = config.get("trainer") or {}
    budget = t.get("budget") or {}
    kind = next((k for k in BUDGETS if budget.get(k) is not None), None)
    if kind is None or t.get("max_steps") == 0:  # max_steps=0 builds only, budget or not
        kind, amount = "steps", t.get("max_steps")
    else:
        amount = budget[kind]
    if kind == "steps" and isinstance(amount, int) and isinstance(t.get("stop_after"), int):
        amount = min(amount, t["stop_after"])
    try:
        return kind, float(amount)
    except (TypeError, ValueError):
        return None


def progress_at(record: dict, goal: tuple[str, float] | None, start: float | None) -> float | None:
    """The share of the job done at this record (0..1): its steps, tokens or FLOPs, or minutes since `start`."""
    if goal is None:
        return None
    kind, amount = goal
    if amount <= 0:
        return 1.0
    value = {"steps": record.get("step"), "tokens": record.get("train/tokens"), "flops": record.get("train/flops"),
             "minutes": (record["time"] - start) / 60.0 if "time" in record and start is not None else None}[kind]
    return None if not isinstance(value, (int, float)) else min(1.0, max(0.0, value / amount))


def timed_eta(tail: MetricsTail, goal: tuple[str, float] | None, now: float) -> float | None:
    """Seconds left at the rate of the last timed records (their "time" field), None with fewer than two."""
    points = [(r["time"], p) for r in tail.timed if (p := progress_at(r, goal, tail.first_time)) is not None]
    return eta_from(points[0], points[-1], now) if len(points) >= 2 else None


def eta_from(first: tuple[float, float], last: tuple[float, float], now: float) -> float | None:
    """Seconds left from two (time, progress) points, counting the time already gone since the later one."""
    (t0, p0), (t1, p1) = first, last
    if t1 <= t0 or p1 <= p0:
        return None
    return max(0.0, (1.0 - p1) * (t1 - t0) / (p1 - p0) - (now - t1))


def logged_error(run_dir: Path) -> str | None:
    """The job's failure as compare.log_error reads it, when its log holds an error line or a traceback."""
    for log in layout.job_logs(run_dir):
        try:
            if any(ERROR_LINE.search(line) for line in log.read_text(errors="replace").splitlines()):
                return log_error(run_dir)
        except OSError:
            continue
    return None


def last_activity(run_dir: Path) -> float | None:
    """When the job last wrote a record, a log line, a checkpoint or its summary (unix seconds)."""
    paths = [run_dir / layout.METRICS, checkpoint.checkpoint_path(run_dir), run_dir / layout.SUMMARY,
             *layout.job_logs(run_dir)]
    times = []
    for p in paths:
        try:
            times.append(p.stat().st_mtime)
        except OSError:
            pass
    return max(times, default=None)


def started_at(run_dir: Path) -> float | None:
    """When the job started: Hydra writes .hydra/config.yaml as it begins."""
    try:
        return (run_dir / layout.CONFIG).stat().st_mtime
    except OSError:
        return None


def finished_state(state: JobState, summary: dict, tail: MetricsTail) -> JobState:
    """A job with summary.json: its final numbers."""
    final = summary.get("final_val") if isinstance(summary.get("final_val"), dict) else {}
    metric = pick_metric(final)
    state.status, state.progress, state.eta_s = "finished", 1.0, 0.0
    state.step = summary.get("steps", tail.step)
    state.max_steps = summary.get("max_steps") or state.step
    state.loss = summary.get("final_train_loss", (tail.train or {}).get("train/loss"))
    if metric:
        state.val_metric, state.val_loss = metric, final[metric]
    state.tokens_per_s = summary.get("tokens_per_s", state.tokens_per_s)
    state.elapsed_s = summary.get("wall_time_s", state.elapsed_s)
    return state


def job_state(run_dir: Path, job: _Job, name: str, over: bool, now: float) -> JobState:
    """One job directory now; `over`: the sweep has moved past it, so a job without summary.json has stopped."""
    if job.config is None:
        job.config = layout.saved_config(run_dir)
    goal = target(job.config) if isinstance(job.config, dict) else None
    tail = (job.tail or MetricsTail(run_dir / layout.METRICS)).read()
    job.tail = tail
    state = JobState(job=run_dir.name, name=name, path=run_dir, step=tail.step)
    start = started_at(run_dir)
    state.elapsed_s = now - start if start is not None else None
    if tail.train:
        state.loss, state.tokens_per_s = tail.train.get("train/loss"), tail.train.get("train/tokens_per_s")
    if tail.val and (metric := pick_metric(tail.val, "val/")):
        state.val_metric, state.val_loss = metric, tail.val[f"val/{metric}"]
    summary = layout.read_summary(run_dir)
    if isinstance(summary, dict):
        return finished_state(state, summary, tail)
    latest = tail.train or ({"step": tail.step} if tail.step is not None else None)
    if latest is not None:
        state.progress = progress_at(latest, goal, tail.first_time)
    if goal is not None and goal[0] == "steps":
        state.max_steps = int(goal[1])
    elif state.progress and state.step:  # a budget's steps are planned in the job: estimate them from its share
        state.max_steps, state.approx = round(state.step / state.progress), True
    if state.progress is not None:
        observe(job, now, state.progress)
    active = last_activity(run_dir)
    state.error = logged_error(run_dir)
    if state.error or over:
        state.status = "incomplete" if checkpoint.saved_files(run_dir) else "failed"
        state.error = state.error or log_error(run_dir)
        state.elapsed_s = active - start if active is not None and start is not None else None
        return state
    state.status = "starting" if tail.count == 0 else "stalled" if active and now - active > STALL_S else "running"
    state.eta_s = timed_eta(tail, goal, now)
    if state.eta_s is None and len(job.seen) == 2:  # records without "time": the rate the watch itself saw
        state.eta_s = eta_from(job.seen[0], job.seen[1], now)
    return state


def observe(job: _Job, now: float, progress: float) -> None:
    """Remember when the watch first saw the job's progress and when it last saw it grow."""
    if not job.seen:
        job.seen = [(now, progress)]
    elif progress > job.seen[-1][1]:
        job.seen = [job.seen[0], (now, progress)]


def read_marker(sweep_dir: Path) -> dict | None:
    """sweep.json, or None when missing or unreadable."""
    try:
        marker = json.loads((sweep_dir / MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return marker if isinstance(marker, dict) else None


def process_alive(marker: dict) -> bool | None:
    """Whether the sweep process of sweep.json still runs; None when it ran on another host or gave no pid."""
    pid = marker.get("pid")
    if not isinstance(pid, int) or marker.get("host") != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process of that id: alive as far as we can tell
    try:  # a process that exited but was not yet reaped by its parent is a zombie: gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def unix_time(iso: Any) -> float | None:
    """An ISO 8601 time from sweep.json as unix seconds."""
    try:
        return datetime.fromisoformat(str(iso)).timestamp()
    except ValueError:
        return None


def one_at_a_time(sweep_dir: Path, runs: list[Path], cache: dict) -> bool:
    """Whether the sweep runs its jobs one after another (Hydra's basic launcher): multirun.yaml's launcher, else
    the first job's .hydra/hydra.yaml (the Optuna sweeper writes no multirun.yaml)."""
    if "sequential" not in cache:
        nodes = [(layout.read_yaml(sweep_dir / layout.MULTIRUN) or {}).get("hydra"), *map(layout.saved_hydra, runs[:1])]
        hydra = next((h for h in nodes if isinstance(h, dict) and "launcher" in h), None)
        if hydra is None:
            return False  # not written yet: ask again next time
        cache["sequential"] = (hydra.get("launcher") or {}).get("_target_") == SEQUENTIAL
    return cache["sequential"]


def job_names(runs: list[Path], swept: list[str] | None, cache: dict) -> dict[Path, str]:
    """Each job's name: its overrides of the swept keys (as the runs name themselves), else those that differ."""
    jobs = {r: cache.setdefault(r, _Job()) for r in runs}
    for r, job in jobs.items():
        if job.overrides is None:
            job.overrides = layout.saved_overrides(r)
    if swept:
        keys = set(swept)
        return {r: ",".join(o for o in job.overrides or [] if o.split("=", 1)[0].lstrip("+~") in keys)
                for r, job in jobs.items()}
    return distinct_overrides(runs) if runs else {}


def sweep_state(sweep_dir: Path | str, cache: dict | None = None, now: float | None = None) -> SweepState:
    """The sweep in sweep_dir now. `cache` (a dict the caller keeps between calls) makes reading incremental."""
    path, cache, now = Path(sweep_dir), {} if cache is None else cache, time.time() if now is None else now
    if not path.is_dir():
        raise ConfigError(f"{path}: not a directory (pass a multirun directory, outputs/multirun/<time>)")
    if layout.is_run(path):
        raise ConfigError(f"{path}: one run's directory, not a multirun's; pass the sweep directory above it")
    marker = read_marker(path)
    alive = process_alive(marker) if marker else None
    if alive is False:
        marker = read_marker(path) or marker  # it may have marked the end just before exiting
    runs = layout.jobs_in(path)
    if not runs and marker is None and not (path / layout.MULTIRUN).is_file():
        raise ConfigError(f"{path}: no sweep jobs in it (no {MARKER}, multirun.yaml or job directories)")
    expected = marker.get("jobs") if marker and isinstance(marker.get("jobs"), int) else None
    ended = bool(marker and marker.get("ended"))
    names = job_names(runs, (marker or {}).get("swept"), cache)
    sequential = one_at_a_time(path, runs, cache)
    jobs = [job_state(r, cache.setdefault(r, _Job()), names.get(r, ""), ended or alive is False or
                      (sequential and i < len(runs) - 1), now) for i, r in enumerate(runs)]
    numbers = {layout.job_key(r)[0] for r in runs}
    jobs += [JobState(job=str(n)) for n in range(expected or 0) if n not in numbers]  # not started yet
    started = unix_time(marker.get("started")) if marker else None
    if started is None:
        started = min((t for r in runs if (t := started_at(r)) is not None), default=None)
    stop = unix_time(marker.get("ended")) if ended else None
    if marker is None and jobs and all(j.status in DONE for j in jobs):  # an older sweep: its last write
        stop = max((t for r in runs if (t := last_activity(r)) is not None), default=None)
    elapsed = (stop or now) - started if started is not None else None
    return SweepState(path, jobs, expected, elapsed, marker is not None, ended, alive,
                      marker.get("pid") if marker else None)


def job_states(sweep_dir: Path | str, cache: dict | None = None, now: float | None = None) -> list[JobState]:
    """Every job of the sweep in sweep_dir now, in Hydra's job order, those not started yet last."""
    return sweep_state(sweep_dir, cache, now).jobs


def duration(seconds: float | None) -> str:
    """1h02m, 3m05s, 12s; '-' when unknown."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def number(value: Any, fmt: str) -> str:
    """A number formatted, '-' when missing or not a number."""
    return format(value, fmt) if isinstance(value, (int, float)) else "-"


def steps_cell(j: JobState) -> str:
    """step / max_steps, the max marked ~ when estimated from a budget."""
    if j.step is None:
        return "-"
    return f"{j.step:,} / {'~' if j.approx else ''}{j.max_steps:,}" if j.max_steps is not None else f"{j.step:,}"


def job_table(state: SweepState) -> Table:
    """The table of jobs: one row each, the status coloured, a failed job's error under its name."""
    table = Table(title=f"sweep {state.path}", title_justify="left", show_lines=False)
    for name, justify in (("job", "left"), ("run", "left"), ("status", "left"), ("step", "right"),
                          ("%", "right"), ("loss", "right"), ("val", "right"), ("tok/s", "right"),
                          ("elapsed", "right"), ("ETA", "right")):
        table.add_column(name, justify=justify, overflow="fold", no_wrap=justify == "right")
    for j in state.jobs:
        run = escape(j.name) + (f"\n[red]{escape(j.error)}[/]" if j.error and j.status in DONE else "")
        val = f"{j.val_metric} {j.val_loss:.4f}" if j.val_metric and isinstance(j.val_loss, (int, float)) else "-"
        eta = "-" if j.status in DONE or j.status == "pending" else duration(j.eta_s)
        table.add_row(escape(j.job), run, f"[{STYLES.get(j.status, 'white')}]{j.status}[/]", steps_cell(j),
                      number(None if j.progress is None else 100 * j.progress, ".0f"), number(j.loss, ".4f"), val,
                      number(j.tokens_per_s, ",.0f"), duration(j.elapsed_s), eta)
    return table


def footer(state: SweepState, clock: bool = True) -> str:
    """Counts per status and (with `clock`) the sweep's elapsed time, as one line."""
    c = state.counts()
    busy = [f"{c[k]} {k}" for k in ("starting", "stalled") if c.get(k)]  # running, but not logging as expected
    running = c.get("running", 0) + c.get("starting", 0) + c.get("stalled", 0)
    parts = [f"{c.get('finished', 0)} finished", f"{running} running" + (f" ({', '.join(busy)})" if busy else ""),
             f"{c.get('pending', 0)} pending", f"{c.get('failed', 0)} failed"]
    parts += [f"{c['incomplete']} incomplete"] if c.get("incomplete") else []
    total = state.expected if state.expected is not None else len(state.jobs)
    return f"{total} jobs: " + " · ".join(parts) + (f" · sweep {duration(state.elapsed_s)}" if clock else "")


def view(state: SweepState) -> Group:
    """The table with its footer line."""
    return Group(job_table(state), Text(footer(state)))


def progress_line(state: SweepState, clock: bool = True) -> str:
    """One line for a console that is not a terminal (a log file), where the live table cannot redraw; printed when
    it changes apart from the clock."""
    jobs = ", ".join(f"{j.job} {j.status}" + (f" {steps_cell(j)}" if j.step is not None else "") for j in state.jobs)
    return f"watch: {footer(state, clock)}: {jobs}"


def outcome(state: SweepState, note: str | None = None) -> tuple[int, str]:
    """(exit code, the closing line): 0 when every job finished, else 1 naming what did not finish."""
    total, done = len(state.jobs), sum(j.status == "finished" for j in state.jobs)
    left = [j for j in state.jobs if j.status != "finished"]
    if note:
        return 1, f"[yellow]{note}:[/] {done} of {total} jobs finished so far; the sweep goes on"
    if state.all_finished:
        return 0, f"[green]sweep ended:[/] {done} of {total} jobs finished in {duration(state.elapsed_s)}"
    failed = "; ".join(f"{escape(j.job)} {j.status}" + (f" ({escape(j.error)})" if j.error else "") for j in left)
    if state.died:
        return 1, (f"[bold red]the sweep process (pid {state.pid}) is gone:[/] {len(left)} of {total} jobs did not "
                   f"finish: {failed}")
    return 1, f"[bold red]sweep ended:[/] {done} of {total} jobs finished; {failed}"


def watch(sweep_dir: Path | str, interval: float = 2.0, console: Console | None = None,
          timeout: float | None = None) -> int:
    """Show the sweep in sweep_dir live until it ends (or `timeout` seconds pass, or Ctrl-C), then its final table
    and one line; the exit code is 0 when every job finished, 1 otherwise."""

    console = console or stdout_console
    cache: dict = {}
    state = sweep_state(sweep_dir, cache)  # a bad directory fails here, before the live display
    lines = not console.is_terminal
    last = progress_line(state, clock=False)
    if lines:
        console.print(progress_line(state), highlight=False, soft_wrap=True, markup=False)
    note, clock = None, time.monotonic()
    try:
        with Live(view(state), console=console, transient=True, auto_refresh=False) as live:
            while not state.over:
                left = None if timeout is None else timeout - (time.monotonic() - clock)
                if left is not None and left <= 0:
                    note = f"stopped watching after {duration(timeout)}"
                    break
                time.sleep(interval if left is None else min(interval, left))
                state = sweep_state(sweep_dir, cache)
                live.update(view(state), refresh=True)
                if lines and (line := progress_line(state, clock=False)) != last:
                    console.print(progress_line(state), highlight=False, soft_wrap=True, markup=False)
                    last = line
    except KeyboardInterrupt:
        note = "stopped watching"
    code, closing = outcome(state, note)
    console.print(view(state))
    console.print(closing, highlight=False, soft_wrap=True)
    return 130 if note == "stopped watching" else code


def main_watch(path: Path, interval: float = 2.0) -> None:
    """CLI action (python -m runner.compare --watch DIR): watch the sweep, exit with watch's code (2: a bad DIR)."""

    try:
        code = watch(path, interval)
    except ConfigError as e:
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        code = 2
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """CLI: python -m runner.watch <multirun dir> [--interval S]."""
    parser = argparse.ArgumentParser(prog="python -m runner.watch", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="a Hydra multirun directory (outputs/multirun/<time>)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")
    args = parser.parse_args(argv)
    main_watch(args.path, args.interval)


if __name__ == "__main__":
    main()
