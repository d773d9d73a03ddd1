"""What only the evaluation layer knows, checked before any work (runner/build.py validate): the downstream tasks'
names, the probes' kinds and split, the minimal-pair suite files, and the pooling a causal model allows."""
from __future__ import annotations

from typing import Any

from runner.config.errors import require
from runner.data.corpus import SPLITS
from runner.evaluation.downstream.registry import task_names, unknown_task
from runner.evaluation.probes.pairs import KINDS
from runner.evaluation.probes.suites import read_suites
from runner.models.registry import model_config


def check_task(name: Any, key: str) -> None:
    """One downstream task name (eval.task, an entry of crossover.tasks)."""
    why = unknown_task(str(name))
    require(why is None, f"{key}={name!r}: {why}; use {key}={task_names()}" if key == "eval.task" else
            f"{key}: {name!r}: {why}; use {task_names()}")


def check_eval(cfg: Any) -> None:
    """The eval group as the model and the task list allow: checked whenever downstream evaluation may run, and by
    python -m runner.finetune."""
    e = cfg.eval
    check_task(e.task, "eval.task")
    require(not (model_config(cfg.model).causal and e.pooling == "cls"), "eval.pooling=cls on a causal "
            "Transformer-XL sees only the first token; use eval.pooling=last or mean")


def check_probes(p: Any) -> None:
    """The probes' corruption kinds and the split whose sentences they use."""
    bad = [k for k in p.kinds if k not in KINDS]
    require(not bad and bool(p.kinds), f"probes.kinds={list(p.kinds)}: each must be one of {', '.join(KINDS)}")
    require(p.split in SPLITS, f"probes.split={p.split!r} must be one of {', '.join(SPLITS)} (validation or "
            "test: never trained on)")


def check_suites(p: Any) -> None:
    """probes.suites read (each file once, cached for the run): a missing path, an empty file, a line without a field
    or a pair of two equal sentences is one line naming the file and line, before any data is read."""
    if p.get("suites"):
        read_suites(list(p.suites))


def check_evaluation(cfg: Any) -> None:
    """The probes' kinds and split, the suite files, the crossover's tasks, and eval when downstream evaluation may
    run."""
    if (p := cfg.get("probes")) is not None and p.enabled:
        check_probes(p)
    if p is not None:
        check_suites(p)
    if (x := cfg.get("crossover")) is not None and x.enabled:
        for name in x.tasks:
            check_task(name, "crossover.tasks")
            require(str(name) != "glue", "crossover.tasks: 'glue' is a report over nine tasks, not one margin; "
                    "name single tasks (glue_sst2, wiki_acceptability, ...)")
    if (e := cfg.get("eval")) is not None and e.downstream is not False:  # on, or auto (on in a multirun)
        check_eval(cfg)
