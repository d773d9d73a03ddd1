"""What packing buys in the runner's own loop: training tokens/s of `Trainer.train_step` with data.packing=false
(right-padded rows) and with packing (the default), same config, weights and batches, in one process.

Steps are interleaved in rounds (alternating which goes first), and the whole measurement is repeated with the two
trainers built in the opposite order: on this 2-core machine the trainer built second ran ~5% slower whatever it was,
so the reported ratio is the mean of the two orders. Padding shares come from the trainers' own counts (the ones
summary.json reports).

    python benchmarks/packing_speed.py                         # model=roberta, modernbert, electra, bert
    python benchmarks/packing_speed.py --models roberta --rounds 2 --steps 2
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="roberta,modernbert,electra,bert", help="presets (default: %(default)s)")
    p.add_argument("--overrides", nargs="*", default=[], help="extra overrides for both trainers")
    p.add_argument("--rounds", type=int, default=6, help="interleaved rounds per build order (default: %(default)s)")
    p.add_argument("--steps", type=int, default=3, help="steps per trainer per round (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per trainer first (default: %(default)s)")
    return p.parse_args(argv)


def trainer(model: str, packing: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from runner.build import build
    from runner.build import register
    from runner.engine.loop import Trainer

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={model}", "logger.mode=disabled", "eval.downstream=false",
                                           "trainer.max_steps=100000", f"data.packing={packing}", *overrides])
    return Trainer(cfg, build(cfg), tempfile.mkdtemp())


def measure(model: str, order: tuple[str, str], args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """tokens/s and padding per layout, trainers built in `order`."""
    trainers = {p: trainer(model, p, args.overrides) for p in order}
    for t in trainers.values():
        for _ in range(args.warmup):
            t.train_step()
    seconds = {p: 0.0 for p in trainers}
    tokens = {p: 0 for p in trainers}
    for r in range(args.rounds):
        for p in (order if r % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                tokens[p] += trainers[p].train_step()["batch_tokens"]
            seconds[p] += time.perf_counter() - t0
    out = {}
    for p, t in trainers.items():
        g = t.progress
        out[p] = {"tps": tokens[p] / seconds[p], "padding": 1 - g.tokens / g.positions}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    table = Table(title="data.packing in Trainer.train_step: tokens/s packed / padded (mean of both build orders)")
    for col in ("model", "padding padded", "padding packed", "padded tok/s", "packed tok/s", "ratio", "by order"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        runs = [measure(model, order, args) for order in (("false", "null"), ("null", "false"))]
        ratios = [r["null"]["tps"] / r["false"]["tps"] for r in runs]
        tps = {p: statistics.fmean(r[p]["tps"] for r in runs) for p in ("false", "null")}
        table.add_row(model, f"{runs[0]['false']['padding']:.1%}", f"{runs[0]['null']['padding']:.1%}",
                      f"{tps['false']:,.0f}", f"{tps['null']:,.0f}", f"{statistics.fmean(ratios):.2f}x",
                      " / ".join(f"{x:.2f}" for x in ratios))
        Console().print(f"{model}: done", highlight=False)
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
