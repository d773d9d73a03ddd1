"""Downstream evaluation: fine-tune the pretrained encoder on eval.task (runner/evaluation/downstream/).

A run calls prepare_downstream(cfg, built) once its data is built, before training (a bad task, an unreachable
GLUE dataset or a corpus without labels shows then, not after the pretraining), and downstream_eval(cfg, built,
device, task) at its end; `python -m runner.finetune <run_dir>` does the same on a finished run's checkpoint."""
from __future__ import annotations

from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from rich.markup import escape

from runner.config.errors import ConfigError
from runner.config.console import console
from runner.engine.assembly import Built
from runner.store.names import is_multirun
from runner.evaluation.downstream.baselines import cache_dir
from runner.evaluation.downstream.classifier import finetune
from runner.evaluation.downstream.tasks import Task, load_task


def in_multirun() -> bool:
    """Whether this process runs one job of a Hydra multirun (False outside Hydra, e.g. in tests)."""
    try:
        return HydraConfig.initialized() and is_multirun(HydraConfig.get())
    except Exception:  # noqa: BLE001 - no usable hydra node: a single run
        return False


def downstream_enabled(cfg: DictConfig, multirun: bool | None = None) -> bool:
    """Whether the run fine-tunes downstream at its end: eval.downstream true / false, or null (auto): on in a
    multirun, off in a single run. multirun=None asks Hydra (no Hydra config: a single run)."""
    e = cfg.get("eval")
    if e is None:
        return False
    if e.get("downstream") is None:
        return in_multirun() if multirun is None else bool(multirun)
    return bool(e.downstream)


def finetune_hint(run_dir: Any) -> str:
    """The line a single run ends with when it did not fine-tune (eval.downstream auto or false)."""
    return f"fine-tune later: python -m runner.finetune {run_dir}"


class NoLabels(Exception):
    """The run's data has no labelled examples for eval.task (e.g. wiki_topic on a corpus without topics)."""


def load_downstream_task(cfg: DictConfig, built: Built) -> Task:
    """eval.task loaded from the run's data: a ConfigError when it cannot be (unknown task, GLUE neither local nor
    reachable, a bad eval.path), NoLabels when the data has no labelled examples for it."""

    e = cfg.eval
    try:
        task = load_task(e.task, built.data, e.seq_len, path=e.path, data_cfg=cfg.get("data"))
    except (ValueError, KeyError) as err:  # e.g. no held-out split in this data
        raise NoLabels(str(err).strip("'\"")) from None
    if not (task.train and task.dev and task.test):
        need = {"wiki_topic": "; wiki_topic needs the wiki corpus's topics",
                "wiki_acceptability": "; wiki_acceptability needs held-out sentences of 6 to 30 words (data."
                                      "test_fraction, data.max_docs)"}.get(e.task, "")
        raise NoLabels(f"{e.task} has no labelled examples in this data ({task.sizes()}){need}")
    return task


def prepare_downstream(cfg: DictConfig, built: Built, multirun: bool | None = None) -> Task | None:
    """The downstream task, loaded before training; None when downstream evaluation is off (downstream_enabled)
    or the data has no labels for the task (a note on the console; the pretraining goes on). A task that cannot be
    loaded at all (unknown, GLUE unreachable, a bad eval.path) is a ConfigError: the run stops before training."""
    if not downstream_enabled(cfg, multirun):
        return None
    try:
        return load_downstream_task(cfg, built)
    except NoLabels as err:
        console.print(f"[yellow]skipped downstream evaluation: {escape(str(err))}", highlight=False, soft_wrap=True)
        return None


def _device_of(device: Any) -> torch.device:
    """A torch.device from a device, a device name, or anything with a .device (a Trainer)."""
    if isinstance(device, (str, torch.device)):
        return torch.device(device)
    return torch.device(device.device)


def downstream_eval(cfg: DictConfig, built: Built, device: Any, task: Task | None = None) -> dict[str, Any] | None:
    """Fine-tune the pretrained encoder (built.module.encoder; ELECTRA: the discriminator) on `task` (from
    prepare_downstream) on `device`: test accuracy and macro-F1 as mean +/- std over eval.seeds seeds, with the
    baselines. The result dict (runner.evaluation.downstream.classifier.finetune's) is printed in one line and returned.
    task=None loads eval.task here (None returned when the data has no labels for it)."""
    import copy


    e = cfg.get("eval")
    if task is None:  # loaded at the end (the call before prepare_downstream existed): failures skip with a note
        if not downstream_enabled(cfg):
            return None
        try:
            task = prepare_downstream(cfg, built)
        except ConfigError as err:
            console.print(f"[yellow]skipped downstream evaluation: {escape(str(err))}", highlight=False,
                          soft_wrap=True)
            return None
        if task is None:
            return None

    encoder = built.module.encoder
    data_cfg = cfg.get("data")
    result = finetune(lambda: copy.deepcopy(encoder), task, seeds=range(e.seeds), epochs=e.epochs, lr=e.lr,
                      batch_size=e.batch_size, seq_len=e.seq_len, device=_device_of(device), pooling=e.pooling,
                      packing=e.get("packing") is not False,
                      baselines=("random_init", "bow_logreg") if e.baselines else (),
                      baseline_cache=cache_dir(data_cfg.get("cache_dir") if data_cfg is not None else None),
                      shape=encoder)
    console.print(result_line(result), highlight=False, soft_wrap=True)
    return result


def result_line(result: dict[str, Any]) -> str:
    """One line: the task's accuracy and macro-F1 over seeds, and each baseline's accuracy."""
    n = len(result.get("per_seed", []))
    return (f"downstream {result['task']}: accuracy {result['accuracy_mean']:.3f} +/- {result['accuracy_std']:.3f}, "
            f"macro-F1 {result['f1_mean']:.3f} +/- {result['f1_std']:.3f} over {n} seeds" +
            "".join(f"; {k} {v['accuracy_mean']:.3f}" for k, v in result["baselines"].items()) +
            (" (baselines cached)" if result.get("baselines_source") == "cached" else ""))


def store_downstream(summary: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """Put a downstream result into a run's summary (in place, also returned): summary["downstream_tasks"][task] =
    result, and summary["downstream"] = result when the summary has no "downstream" yet or it is the same task
    (so sweep.metric=downstream.accuracy_mean keeps meaning the run's first task). A "downstream" written before
    "downstream_tasks" existed is listed there too."""
    tasks = summary.setdefault("downstream_tasks", {})
    old = summary.get("downstream")
    if isinstance(old, dict) and old.get("task") and old["task"] not in tasks:
        tasks[old["task"]] = old
    tasks[result["task"]] = result
    if not isinstance(old, dict) or old.get("task") == result["task"]:
        summary["downstream"] = result
    return summary


def downstream_metrics(result: dict[str, Any], by_task: bool = False) -> dict[str, float]:
    """Downstream scores as flat W&B keys: downstream/accuracy_mean ..., downstream/<baseline>_accuracy_mean;
    by_task: downstream/<task>/accuracy_mean ... (a task besides the run's main one)."""
    p = f"downstream/{result['task']}/" if by_task else "downstream/"
    out = {f"{p}{k}": result[k] for k in ("accuracy_mean", "accuracy_std", "f1_mean", "f1_std")}
    for name, b in result.get("baselines", {}).items():
        for k in ("accuracy_mean", "f1_mean"):
            if k in b:
                out[f"{p}{name}_{k}"] = b[k]
    return out

