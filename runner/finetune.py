"""`python -m runner.finetune <run_dir> [eval.key=value ...]`: fine-tune a finished run's encoder downstream.

The run is rebuilt from <run_dir>/.hydra/config.yaml (its data, tokenizer and model), its last checkpoint is
loaded, and the encoder is fine-tuned as at the end of a run (runner.evaluation.after_training.downstream_eval: eval.task over
eval.seeds seeds, with the cached or computed baselines). The result goes into the run's summary.json
(`downstream_tasks[<task>]`, and `downstream` when the run has none yet or it is the same task), its
metrics.jsonl and its W&B run (resumed by the id in wandb_id.txt; offline or disabled W&B is fine).

    python -m runner.finetune outputs/runs/<run>
    python -m runner.finetune outputs/runs/<run> eval.task=wiki_acceptability eval.seeds=2 trainer.device=cpu

Overrides: any eval.* key, and trainer.device, trainer.threads, logger.mode; the run's other settings are its own.
Errors (not a run directory, no checkpoint, a bad override) are one line and exit code 2."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig

from runner.config.errors import ConfigError
from runner.config.overrides import apply_overrides as overrides_of
from runner.reporting.logger import NullLogger, resumed_logger
from runner.reporting.summary import compute_axes
from runner.build import build
from runner.evaluation.after_training import NoLabels, downstream_eval, downstream_metrics, load_downstream_task, store_downstream
from runner.config.console import console, exit_code
from runner.store.layout import SUMMARY, open_run, write_summary
from runner.engine import threads
from runner.engine.runtime import resolve_device
from runner.evaluation.checks import check_eval
from runner.engine import lock as rundir

USAGE = ("usage: python -m runner.finetune <run_dir> [eval.task=wiki_topic eval.seeds=3 ... trainer.device=cpu "
         "logger.mode=disabled]")
OTHER_KEYS = ("trainer.device", "trainer.threads", "logger.mode")


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """cfg with key=value overrides of eval.* (and OTHER_KEYS), each checked against its group's schema: an
    unknown key or a value of the wrong type is a ConfigError naming the key."""
    return overrides_of(cfg, overrides, ("eval.*", *OTHER_KEYS), "python -m runner.finetune", USAGE)


def finetune_run(run_dir: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Fine-tune the run in run_dir on eval.task (with the overrides) and record the result; returns it."""
    run = open_run(run_dir, finished=True)
    run_dir, summary_file = run.path, run.path / SUMMARY

    # the run directory is this process's while it writes there: not beside a run still training in it, nor a
    # second fine-tuning
    with rundir.owned(run_dir, resume=True):
        cfg = apply_overrides(run.config, overrides)  # a run made before newer config keys still loads
        cfg.trainer.max_steps = 0
        check_eval(cfg)
        device = resolve_device(cfg.trainer.device)
        threads.apply(cfg.trainer.threads)  # its share of the cores (runner/engine/threads.py)
        built = build(cfg)
        try:
            task = load_downstream_task(cfg, built)
        except NoLabels as e:
            raise ConfigError(f"eval.task={cfg.eval.task}: {e}") from None
        built.module.load_state_dict(run.module_state())
        result = downstream_eval(cfg, built, device, task)
        summary = run.summary  # read again: the newest one gets the result
        store_downstream(summary, result)
        main = summary["downstream"] is result
        logger = resumed_logger(cfg, run_dir, summary)
        logger.log({**downstream_metrics(result, by_task=not main), **compute_axes(summary)},
                   step=int(summary.get("steps", 0)))
        logger.finish(summary)  # summary.json, atomically, and the W&B run's summary
        if isinstance(logger, NullLogger):
            write_summary(run_dir, summary)
        console.print(f"wrote {result['task']} to {summary_file}" + (" (also as its downstream)" if main else ""),
                      highlight=False, soft_wrap=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit code (2 for one-line errors)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE + "\n\n" + __doc__.split("\n\n", 1)[1])
        return 0 if args else 2
    return exit_code(lambda: finetune_run(Path(args[0]), args[1:]))


if __name__ == "__main__":
    sys.exit(main())
