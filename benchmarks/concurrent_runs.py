"""Runs that share a machine: two `python -m runner` runs started together against the same two one after the other,
and one run alone with OpenMP's waiting passive (bertlab's default, runner/__init__.py) against active (torch's,
what a run did before). Each run is a fresh process with its own run directory; the data cache is warmed first.

    python benchmarks/concurrent_runs.py                       # model=bert data=wiki trainer.max_steps=150
    python benchmarks/concurrent_runs.py --steps 50 --with-active-pair   # also the pair as before (minutes)
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--overrides", nargs="*", default=["model=bert", "data=wiki"], help="the run (default: %(default)s)")
    p.add_argument("--steps", type=int, default=150, help="trainer.max_steps of each run (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=2, help="alone: passive/active alternations (default: %(default)s)")
    p.add_argument("--with-active-pair", action="store_true",
                   help="also two runs together with active waiting (what collapsed: 3.3x on 2 cores)")
    return p.parse_args(argv)


def start(args: argparse.Namespace, tmp: Path, name: str, wait: str | None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    if wait:
        env["OMP_WAIT_POLICY"] = wait
    cmd = [sys.executable, "-m", "runner", *args.overrides, f"trainer.max_steps={args.steps}", "logger.mode=disabled",
           "eval.downstream=false", "probes.enabled=false", "trainer.export_hf=false",
           f"hydra.run.dir={tmp / name}"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wall(procs: list[subprocess.Popen]) -> float:
    t0 = time.perf_counter()
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a run failed (exit {p.returncode}): {err.strip().splitlines()[-1] if err else ''}")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    console = Console()
    with tempfile.TemporaryDirectory(prefix="bertlab-concurrent-") as d:
        tmp = Path(d)
        wall([start(args, tmp, "warm", None)])  # the tokenizer and tokenized cache, built once
        n = iter(range(1000))
        alone = {"passive": [], "active": []}
        for r in range(args.repeats):
            for wait in (("passive", "active") if r % 2 == 0 else ("active", "passive")):
                alone[wait].append(wall([start(args, tmp, f"run{next(n)}", wait.upper())]))
        sequence = wall([start(args, tmp, f"run{next(n)}", None)]) + wall([start(args, tmp, f"run{next(n)}", None)])
        together = wall([start(args, tmp, f"run{next(n)}", None), start(args, tmp, f"run{next(n)}", None)])
        active_pair = wall([start(args, tmp, f"run{next(n)}", "ACTIVE"), start(args, tmp, f"run{next(n)}", "ACTIVE")]) \
            if args.with_active_pair else None
    mean = {k: sum(v) / len(v) for k, v in alone.items()}
    table = Table(title=f"python -m runner {' '.join(args.overrides)} trainer.max_steps={args.steps}: wall seconds "
                        f"(each run a fresh process, {os.cpu_count()} cores)")
    for col in ("what", "seconds", "ratio"):
        table.add_column(col, justify="left" if col == "what" else "right")
    table.add_row("one run alone, active waiting (before)", f"{mean['active']:.1f}", "")
    table.add_row("one run alone, passive waiting (bertlab)", f"{mean['passive']:.1f}",
                  f"{mean['passive'] / mean['active']:.3f}x of active")
    table.add_row("two runs in sequence", f"{sequence:.1f}", "")
    table.add_row("two runs together", f"{together:.1f}", f"{together / sequence:.2f}x of sequence")
    if active_pair is not None:
        table.add_row("two runs together, active waiting (before)", f"{active_pair:.1f}",
                      f"{active_pair / sequence:.2f}x of sequence")
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
