"""A damaged cache entry met by two processes at once (runner/data/cache.py cached_dir): the first rebuilds it under
the lock with one warning; the second, waiting on the lock meanwhile, reads the rebuilt entry without building it
again or warning. The single-process cases: tests/unit/test_cache_heal.py."""
from __future__ import annotations

import json
import multiprocessing
import time
import warnings
from pathlib import Path

from runner.data.cache import cached_dir


def build_slowly(tmp: Path, log: Path) -> None:
    with log.open("a") as f:
        f.write("build\n")
    time.sleep(1.5)  # long enough for the second process to reach the lock
    (tmp / "data.txt").write_text("x" * 1000)


def open_entry(entry: Path, log: Path, started: Path | None = None) -> None:
    if started is not None:
        started.write_text("")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = cached_dir(entry, lambda tmp: build_slowly(tmp, log), lambda p: (p / "data.txt").read_text())
    with log.open("a") as f:
        f.write(json.dumps({"read": len(text), "warnings": [str(w.message) for w in caught]}) + "\n")


def test_a_process_waiting_on_the_lock_reads_the_entry_the_other_rebuilt(tmp_path):
    entry, log = tmp_path / "cache" / "entry", tmp_path / "log"
    open_entry(entry, log)
    (entry / "data.txt").write_text("x" * 10)  # cut short
    ctx = multiprocessing.get_context("fork")
    first = ctx.Process(target=open_entry, args=(entry, log, tmp_path / "first_started"))
    first.start()
    while not (tmp_path / "first_started").exists():
        time.sleep(0.01)
    time.sleep(0.5)  # the first process has the lock and is rebuilding
    second = ctx.Process(target=open_entry, args=(entry, log))
    second.start()
    first.join(30)
    second.join(30)
    assert first.exitcode == 0 and second.exitcode == 0
    lines = log.read_text().splitlines()
    assert lines.count("build") == 2  # the original build and one rebuild, not two
    records = [json.loads(x) for x in lines if x.startswith("{")][1:]
    assert [r["read"] for r in records] == [1000, 1000]
    warned = [w for r in records for w in r["warnings"]]
    assert len(warned) == 1 and "data.txt has 10 bytes, 1,000 were written" in warned[0]
