"""What unpadding buys in the runner's own loop: training tokens/s of `Trainer.train_step` with every token-wise
layer on the real tokens alone (runner/models/unpadded.py, the default) against the same trainer computing every
position of its rows, padding included (`Unpadded.of` answering None: the encoder before unpadding), same config,
weights and batches, in one process.

Steps are interleaved in rounds (alternating which goes first), and the measurement is repeated with the two trainers
built in the opposite order (packing_speed.py's finding: the trainer built second runs a few % slower); the ratio is
the mean of both orders. Padding shares: attention's from the trainers' own counts (summary.json's
`padding.attention`); the token-wise layers' is 0 unpadded (summary.json's `padding.token_wise`) and attention's share
when every position is computed.

    python benchmarks/unpadding_speed.py     # make run's command, and BERT segment pairs at 128 in batches of 8
    python benchmarks/unpadding_speed.py --runs "model=roberta" --rounds 2 --steps 2
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from packing_speed import trainer  # noqa: E402  (a sibling script, not a package)

RUNS = ["model=electra data=wiki",  # make run
        "model=bert objective=mlm_nsp data=wiki data.format=segment_pair data.seq_len=128 trainer.batch_size=8"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="*", default=RUNS, help="one quoted set of overrides per run (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=6, help="interleaved rounds per build order (default: %(default)s)")
    p.add_argument("--steps", type=int, default=3, help="steps per trainer per round (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per trainer first (default: %(default)s)")
    return p.parse_args(argv)


@contextlib.contextmanager
def every_position(on: bool):
    """Within it (when `on`), the encoder computes every position of its rows: no unpadding."""
    from runner.models.unpadded import Unpadded

    of = Unpadded.__dict__["of"]
    if on:
        Unpadded.of = classmethod(lambda cls, mask: None)
    try:
        yield
    finally:
        Unpadded.of = of


def measure(overrides: list[str], order: tuple[str, str], args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """tokens/s and padding per mode ("every": every position; "unpadded"), trainers built in `order`."""
    model = next(o.split("=", 1)[1] for o in overrides if o.startswith("model="))
    rest = [o for o in overrides if not o.startswith("model=")]
    trainers = {mode: trainer(model, "null", rest) for mode in order}

    def steps(mode: str, n: int) -> int:
        with every_position(mode == "every"):
            return sum(trainers[mode].train_step()["batch_tokens"] for _ in range(n))

    for mode in trainers:
        steps(mode, args.warmup)
    seconds, tokens = {m: 0.0 for m in trainers}, {m: 0 for m in trainers}
    for r in range(args.rounds):
        for mode in (order if r % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            tokens[mode] += steps(mode, args.steps)
            seconds[mode] += time.perf_counter() - t0
    out = {}
    for mode, t in trainers.items():
        g = t.progress
        attention = 1 - g.tokens / g.positions
        out[mode] = {"tps": tokens[mode] / seconds[mode], "attention": attention,
                     "token_wise": attention if mode == "every" else 1 - g.tokens / g.token_rows}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 150))
    table = Table(title="unpadding in Trainer.train_step: tokens/s unpadded / every position (mean of both build "
                        "orders)")
    for col in ("run", "token-wise padding", "attention padding", "every position tok/s", "unpadded tok/s",
                "ratio", "by order"):
        table.add_column(col, justify="left" if col == "run" else "right", no_wrap=col != "run")
    for spec in args.runs:
        overrides = spec.split()
        runs = [measure(overrides, order, args) for order in (("every", "unpadded"), ("unpadded", "every"))]
        ratios = [r["unpadded"]["tps"] / r["every"]["tps"] for r in runs]
        tps = {m: statistics.fmean(r[m]["tps"] for r in runs) for m in ("every", "unpadded")}
        first = runs[0]
        table.add_row(spec, f"{first['every']['token_wise']:.1%} -> {first['unpadded']['token_wise']:.1%}",
                      f"{first['unpadded']['attention']:.1%}", f"{tps['every']:,.0f}", f"{tps['unpadded']:,.0f}",
                      f"{statistics.fmean(ratios):.2f}x", " / ".join(f"{x:.2f}" for x in ratios))
        console.print(f"{spec}: done", highlight=False)
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
