"""`python -m runner.evaluate <run dir | transformers model dir> probes.suites=[PATH, ...]`: score minimal-pair suites
in BLiMP's format (runner/evaluation/probes/suites.py) with a finished run's own heads, or with any local transformers
masked LM, causal LM or ELECTRA discriminator (a run's hf/, a downloaded bert-base-uncased), by the same code, and
write the same report: per suite the mean over paradigms, per phenomenon and per paradigm, beside BLiMP's published
models.

    python -m runner.evaluate outputs/runs/<run> probes.suites=[blimp/data]
    python -m runner.evaluate outputs/runs/<run>/hf probes.suites=[blimp/data]
    python -m runner.evaluate ~/models/bert-base-uncased probes.suites=[blimp/data] --out outputs/evaluations/bert

A run's result goes into its summary.json (`suites`), its metrics.jsonl and its W&B run (`suite_full/...`); a
transformers model's into <--out>/summary.json (default outputs/evaluations/<model>), which runner.compare reads
beside runs. Overrides: probes.suites, probes.suite_final_pairs (pairs per paradigm; null: all), probes.seed,
trainer.device, trainer.threads, logger.mode; a run keeps its own probes.* values for the keys not overridden (a run
made with probes.suite_final_pairs=100 scores 100 per paradigm again unless given probes.suite_final_pairs=null). Errors (neither a run nor a model directory, a bad suite file) are one
line and exit code 2."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from runner.build import build
from runner.config.console import console, exit_code
from runner.config.errors import ConfigError
from runner.engine import lock as rundir
from runner.engine import threads
from runner.engine.runtime import resolve_device
from runner.config.checks import typed
from runner.config.overrides import apply_overrides, structured
from runner.config.schema import ProbeConfig
from runner.evaluation.checks import check_suites
from runner.evaluation.probes.suite_scoring import SuiteProbes, build_suite_probes
from runner.evaluation.probes.suites import read_suites
from runner.evaluation.probes.transformers_scorer import load_model, model_kind, transformers_scorer
from runner.reporting.logger import NullLogger, resumed_logger
from runner.reporting.summary import compute_axes
from runner.reporting.suite_table import suite_line, suite_table
from runner.store.layout import SUMMARY, is_run, open_run, write_summary

USAGE = ("usage: python -m runner.evaluate <run dir | transformers model dir> probes.suites=[PATH, ...] "
         "[probes.suite_final_pairs=N trainer.device=cpu] [--out DIR]")
KEYS = ("probes.suites", "probes.suite_final_pairs", "probes.seed", "trainer.device", "trainer.threads",
        "logger.mode")
EVALUATIONS = Path("outputs/evaluations")  # where a transformers model's report goes unless --out says


def settings(overrides: Sequence[str], base: DictConfig | None = None) -> DictConfig:
    """The probes, trainer and logger settings: base's (a run's) with the overrides, each checked against its
    schema; a key outside KEYS, or no suite at all, is a ConfigError."""
    cfg = base if base is not None else OmegaConf.create({g: structured(g, None) for g in ("probes", "trainer")})
    cfg = apply_overrides(cfg, overrides, KEYS, "python -m runner.evaluate", USAGE)
    if not cfg.get("probes") or not cfg.probes.suites:
        raise ConfigError("probes.suites is empty: name one or more .jsonl files or directories in BLiMP's format, "
                          "e.g. probes.suites=[blimp/data] (BLiMP: github.com/alexwarstadt/blimp)")
    typed(cfg.probes, ProbeConfig).check()
    check_suites(cfg.probes)
    return cfg


def evaluate_run(run_dir: Path, overrides: Sequence[str]) -> dict[str, Any]:
    """Score the suites with a finished run's own heads; the result goes into the run's summary.json and records."""
    run = open_run(run_dir, finished=True)
    with rundir.owned(run.path, resume=True):  # not beside a run still training there, nor a second evaluation
        cfg = settings(overrides, run.config)
        cfg.trainer.max_steps = 0
        device = resolve_device(cfg.trainer.device)
        threads.apply(cfg.trainer.threads)  # its share of the cores (runner/engine/threads.py)
        built = build(cfg)
        built.module.load_state_dict(run.module_state())
        built.module.to(device)
        probes = build_suite_probes(cfg, built.data)
        metrics = probes.evaluate(built.objective, built.module.encoder, full=True)
        if not metrics:
            raise ConfigError(f"objective={cfg.objective.name} has no way to score a sentence")
        report = probes.report(metrics)
        summary = run.summary
        summary["suites"] = {**(summary.get("suites") or {}), **report}
        logger = resumed_logger(cfg, run.path, summary)
        logger.log({**{f"suite_full/{k}": v for k, v in metrics.items()}, **compute_axes(summary)},
                   step=int(summary.get("steps", 0)))
        logger.finish(summary)  # summary.json, atomically, and the W&B run's summary
        if isinstance(logger, NullLogger):
            write_summary(run.path, summary)
    show(report, run.path / SUMMARY)
    return report


def evaluate_model(path: Path, overrides: Sequence[str], out: Path | None = None) -> dict[str, Any]:
    """Score the suites with a transformers model directory; the report goes to out/summary.json."""
    model_kind(path)  # a directory that is neither a run nor a model: one line, before anything loads
    cfg = settings(overrides)
    device = resolve_device(cfg.trainer.device)
    threads.apply(cfg.trainer.threads)  # its share of the cores (runner/engine/threads.py)
    m = load_model(path, device)
    suites = read_suites(list(cfg.probes.suites))
    if cfg.probes.suite_final_pairs is not None:
        suites = [s.sample(cfg.probes.suite_final_pairs, cfg.probes.seed) for s in suites]
    probes = SuiteProbes(suites, m.tokenizer, m.unk_id, None, m.max_tokens)
    report = probes.report(probes.evaluate_with(transformers_scorer(m, device), full=True))
    name = path.parent.name + "_" + path.name if path.name.startswith("hf") else path.name
    out = out or EVALUATIONS / name
    out.mkdir(parents=True, exist_ok=True)
    write_summary(out, {"name": name, "model": m.architecture, "kind": f"transformers {m.kind}",
                        "model_dir": str(path.resolve()), "parameters": {"total": m.parameters()},
                        "device": str(device), "suites": report})
    show(report, out / SUMMARY)
    return report


def show(report: dict[str, Any], where: Path) -> None:
    """Each suite's line and phenomenon table, and where the report went."""
    for name, r in report.items():
        console.print(suite_table(name, r))
        console.print(f"{name}: {suite_line(r)}", highlight=False, soft_wrap=True)
    console.print(f"wrote {where}", highlight=False, soft_wrap=True)


def evaluate(path: str | Path, overrides: Sequence[str] = (), out: str | Path | None = None) -> dict[str, Any]:
    """A run directory's or a transformers model directory's suite report (which one: .hydra/config.yaml)."""
    path = Path(str(path)).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{path}: no such directory; pass a run directory or a transformers model directory")
    if is_run(path):
        if out is not None:
            raise ConfigError("--out is for a transformers model; a run's report goes into its own summary.json")
        return evaluate_run(path, overrides)
    return evaluate_model(path, overrides, Path(out) if out is not None else None)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit code (2 for one-line errors)."""
    p = argparse.ArgumentParser(prog="python -m runner.evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help="a finished run directory or a transformers model directory")
    p.add_argument("overrides", nargs="*", help=f"key=value, one of {', '.join(KEYS)}")
    p.add_argument("--out", default=None, help=f"where a transformers model's report goes (default: {EVALUATIONS}/"
                                               "<model>)")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    return exit_code(lambda: evaluate(args.path, args.overrides, args.out))


if __name__ == "__main__":
    sys.exit(main())
