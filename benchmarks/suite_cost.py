"""What a minimal-pair suite adds to a validation: the corpus probes (probes.pairs per kind, what every validation
scores today) against a suite's per-paradigm subsample (probes.suite_pairs, e.g. BLiMP at 10 pairs per paradigm),
each scored by the family's own heads, timed in interleaved rounds in one process on each CPU preset as composed from
conf/ (random weights: the cost of scoring does not depend on them).

    python benchmarks/suite_cost.py --suite ~/blimp/data                          # the CPU presets, 10 per paradigm
    python benchmarks/suite_cost.py --suite ~/blimp/data --models bert --rounds 1  # smoke run

BLiMP is not shipped: https://github.com/alexwarstadt/blimp (its data/ folder). Run it on a quiet machine: another
torch process beside it changes the ratio.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without `pip install -e .`

import torch  # noqa: E402

MODELS = "bert,roberta,albert,electra,modernbert,txl,xlnet"  # distil's student scores as bert does (PLL)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", type=Path, required=True, help="a suite in BLiMP's format (BLiMP's data/ folder)")
    p.add_argument("--models", default=MODELS, help="model presets (default: %(default)s)")
    p.add_argument("--per-paradigm", type=int, default=10, help="pairs per paradigm (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds, median kept (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    return p.parse_args(argv)


def built_probes(model: str, args: argparse.Namespace):
    """The model built at random init, its corpus probes and its suite subsample."""
    from hydra import compose, initialize_config_dir

    from runner.build import build, register
    from runner.evaluation.probes.accuracy import build_probes
    from runner.evaluation.probes.suite_scoring import build_suite_probes

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={model}", "logger.mode=disabled", "eval.downstream=false",
                                           "trainer.max_steps=0", f"probes.suites=[{args.suite}]",
                                           f"probes.suite_pairs={args.per_paradigm}"])
    built = build(cfg)
    return built, build_probes(cfg, built.data), build_suite_probes(cfg, built.data)


def timed(f) -> float:
    """Seconds f() takes."""
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Time both per model and print the table."""
    from rich.console import Console
    from rich.table import Table

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    table = Table(title=f"one validation's scoring: corpus probes vs the suite at {args.per_paradigm} pairs per "
                        f"paradigm (median of {args.rounds} rounds, {torch.get_num_threads()} threads)")
    for col in ("model", "scorers", "probe pairs", "probes s", "suite pairs", "suite s", "suite / probes"):
        table.add_column(col, justify="left" if col in ("model", "scorers") else "right")
    for model in args.models.split(","):
        built, probes, suites = built_probes(model, args)
        obj, enc = built.objective, built.module.encoder
        a, b = [], []
        for _ in range(args.rounds):
            a.append(timed(lambda: probes.evaluate(obj, enc)))
            b.append(timed(lambda: suites.evaluate(obj, enc)))
        pa, pb = statistics.median(a), statistics.median(b)
        n_suite = sum(len(e.suite.pairs) for e in suites.during)
        table.add_row(model, ", ".join(suites.scorers), f"{len(probes.pairs):,}", f"{pa:.2f}", f"{n_suite:,}",
                      f"{pb:.2f}", f"{pb / pa:.2f}")
        print(f"{model}: probes {pa:.2f}s, suite {pb:.2f}s", flush=True)
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
