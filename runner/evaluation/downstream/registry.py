"""eval.task's names and how each is loaded from a run's data: the corpus tasks (tasks.py), one GLUE task
(`glue_<name>`) and all of GLUE (`glue`: glue.py's suite)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.config.errors import ConfigError
from runner.evaluation.downstream.glue import GLUE, GlueSuite, glue_key, glue_suite, glue_task
from runner.evaluation.downstream.tasks import Task, wiki_acceptability, wiki_topic

CORPUS_TASKS = ("wiki_topic", "wiki_acceptability")  # tasks made from the run's own corpus


def task_names() -> str:
    """The eval.task values, for messages."""
    return f"{', '.join(CORPUS_TASKS)}, glue (all of GLUE) or glue_<{'|'.join(GLUE)}>"


def unknown_task(name: str) -> str | None:
    """Why `name` is not a downstream task (an eval.task value), or None when it is one."""
    if name in CORPUS_TASKS or name == "glue":
        return None
    if name.startswith("glue_"):
        return None if glue_key(name) in GLUE else f"unknown GLUE task {name!r}"
    return f"unknown downstream task {name!r}"


def load_task(name: str, data: Any, seq_len: int = 128, path: str | Path | None = None, data_cfg: Any = None,
              glue: Any = None, **kwargs: Any) -> Task | GlueSuite:
    """A task by name from a PretrainingData: "wiki_topic", "wiki_acceptability" (which reads the sentences
    through the data config, `data_cfg`: the run's cfg.data), "glue_<name>" (from `path` or the hub), or "glue"
    (every task of `glue.tasks`, from `path` laid out as GLUE's download, or the hub)."""
    if (why := unknown_task(name)) is not None:
        raise ConfigError(f"{why}: {task_names()}")
    if name == "wiki_topic":
        return wiki_topic(data, seq_len, **kwargs)
    if name == "wiki_acceptability":
        if data_cfg is None:
            raise ValueError("wiki_acceptability reads the corpus's sentences: pass data_cfg (the run's cfg.data)")
        return wiki_acceptability(data, data_cfg, seq_len, **kwargs)
    if name == "glue":
        names = list(glue.tasks) if glue is not None else list(GLUE)
        return glue_suite(data.tokenizer, data.specials, int(glue.seq_len) if glue is not None else seq_len, path,
                          names, glue.get("max_train") if glue is not None else None)
    return glue_task(name, data.tokenizer, data.specials, seq_len, path=path, **kwargs)
