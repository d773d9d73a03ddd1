"""Runs that share a machine: two `python -m runner` runs started together against the same two one after the other,
with the cores divided through bertlab's registry of live processes (runner/engine/threads.py) and as before (each
run given a registry of its own, so it sees no other: torch's default threads each); and one run alone both ways.
Optionally, one run alone with OpenMP's passive waiting, the other fix the issue measured. Each run is a fresh process
with its own run directory; the data cache is warmed first.

    python benchmarks/concurrent_runs.py                       # model=bert data=wiki trainer.max_steps=150
    python benchmarks/concurrent_runs.py --steps 50 --with-passive
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
    p.add_argument("--with-passive", action="store_true",
                   help="also one run alone with OMP_WAIT_POLICY=PASSIVE (the issue's other fix)")
    return p.parse_args(argv)


def start(args: argparse.Namespace, tmp: Path, name: str, mode: str) -> subprocess.Popen:
    """One run: mode "shared" (bertlab: the registry all runs share), "before" (a registry of its own) or "passive"
    (its own registry, OMP_WAIT_POLICY=PASSIVE)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["BERTLAB_PROCESSES"] = str(tmp / "registry" if mode == "shared" else tmp / f"registry-{name}")
    if mode == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
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
        wall([start(args, tmp, "warm", "before")])  # the tokenizer and tokenized cache, built once
        n = iter(range(1000))

        def one(mode: str) -> float:
            return wall([start(args, tmp, f"run{next(n)}", mode)])

        def pair(mode: str) -> float:
            return wall([start(args, tmp, f"run{next(n)}", mode), start(args, tmp, f"run{next(n)}", mode)])

        alone: dict[str, list[float]] = {"before": [], "shared": [], **({"passive": []} if args.with_passive else {})}
        for r in range(args.repeats):
            for mode in (list(alone) if r % 2 == 0 else list(alone)[::-1]):
                alone[mode].append(one(mode))
        sequence = one("shared") + one("shared")
        together = pair("shared")
        before_pair = pair("before")
    mean = {k: sum(v) / len(v) for k, v in alone.items()}
    table = Table(title=f"python -m runner {' '.join(args.overrides)} trainer.max_steps={args.steps}: wall seconds "
                        f"(each run a fresh process, {os.cpu_count()} cores)")
    for col in ("what", "seconds", "ratio"):
        table.add_column(col, justify="left" if col == "what" else "right")
    table.add_row("one run alone, before", f"{mean['before']:.1f}", "")
    table.add_row("one run alone, bertlab (registry)", f"{mean['shared']:.1f}",
                  f"{mean['shared'] / mean['before']:.3f}x of before")
    if "passive" in mean:
        table.add_row("one run alone, OMP_WAIT_POLICY=PASSIVE", f"{mean['passive']:.1f}",
                      f"{mean['passive'] / mean['before']:.3f}x of before")
    table.add_row("two runs in sequence", f"{sequence:.1f}", "")
    table.add_row("two runs together, bertlab", f"{together:.1f}", f"{together / sequence:.2f}x of sequence")
    table.add_row("two runs together, before", f"{before_pair:.1f}", f"{before_pair / sequence:.2f}x of sequence")
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
