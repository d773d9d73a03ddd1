"""Downstream evaluation: fine-tune the pretrained encoder on eval.task (runner/evaluation/downstream/).

A run calls prepare_downstream(cfg, built) once its data is built, before training (a bad task, an unreachable
GLUE dataset or a corpus without labels shows then, not after the pretraining), and downstream_eval(cfg, built,
device, task) at its end; `python -m runner.finetune <run_dir>` does the same on a finished run's checkpoint."""
from __future__ import annotations

import copy
import time
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from rich.markup import escape

from runner.config.checks import typed
from runner.config.console import console
from runner.config.errors import ConfigError
from runner.config.schema import EvalConfig
from runner.engine.assembly import Built
from runner.evaluation.downstream.baselines import cache_dir
from runner.evaluation.downstream.glue import GlueSuite, glue_report
from runner.evaluation.downstream.metrics import beside
from runner.evaluation.downstream.protocol import finetune
from runner.evaluation.downstream.registry import load_task
from runner.evaluation.downstream.score_feature import score_feature
from runner.evaluation.downstream.tasks import Task
from runner.store.names import is_multirun


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
        task = load_task(e.task, built.data, e.seq_len, path=e.path, data_cfg=cfg.get("data"), glue=e.get("glue"))
    except (ValueError, KeyError) as err:  # e.g. no held-out split in this data
        raise NoLabels(str(err).strip("'\"")) from None
    if isinstance(task, GlueSuite):
        for why in task.missing.values():
            console.print(f"[yellow]glue: left out {escape(why)}", highlight=False, soft_wrap=True)
        return task
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
    prepare_downstream) on `device` by the protocol (runner.evaluation.downstream.protocol.finetune: every metric
    over eval.seeds seeds, with the linear probe, the model's own score and the baselines), or, for eval.task=glue,
    every GLUE task under eval.glue's recipe (run_glue). The result is printed in one line and returned.
    task=None loads eval.task here (None returned when the data has no labels for it)."""
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

    if isinstance(task, GlueSuite):
        result = run_glue(cfg, built, _device_of(device), task)
        console.print(glue_line(result), highlight=False, soft_wrap=True)
        return result
    encoder = built.module.encoder
    result = finetune(lambda: copy.deepcopy(encoder), task, device=_device_of(device), **protocol_settings(cfg, built))
    console.print(result_line(result), highlight=False, soft_wrap=True)
    return result


def pretrained_pooler(built: Built) -> torch.nn.Module | None:
    """The pooler a pair task (NSP, SOP) pretrained on [CLS], which fine-tuning reads through; None without one."""
    return getattr(getattr(built.module.objective, "pair_head", None), "pooler", None)


def protocol_settings(cfg: DictConfig, built: Built) -> dict[str, Any]:
    """finetune()'s settings from eval.* (runner/evaluation/downstream/protocol.py), with the run's pretrained
    pooler and its own sentence scorer (eval.score_feature) where it has them."""
    e, module = typed(cfg.eval, EvalConfig), built.module
    data_cfg = cfg.get("data")
    score = (lambda t: score_feature(module.objective, module.encoder, t, built.data.specials, built.data)) \
        if e.score_feature else None
    return dict(seeds=range(e.seeds), epochs=e.epochs, lr=e.learning_rates(), batch_size=e.batch_size,
                seq_len=e.seq_len, pooling=e.pooling, head=e.head, dropout=e.dropout, packing=e.packing is not False,
                pooler=pretrained_pooler(built), scorer=score,
                baselines=("random_init", "bow_logreg") if e.baselines else (),
                baseline_cache=cache_dir(data_cfg.get("cache_dir") if data_cfg is not None else None),
                shape=module.encoder)


def run_glue(cfg: DictConfig, built: Built, device: torch.device, suite: GlueSuite) -> dict[str, Any]:
    """eval.task=glue: every task of the suite fine-tuned under eval.glue's one recipe over its seeds, the last
    epoch scored on the official dev sets, reported as papers report GLUE (glue.glue_report)."""
    g, encoder = cfg.eval.glue, built.module.encoder
    t0, results = time.perf_counter(), {}
    for key, task in suite.tasks.items():
        results[key] = finetune(lambda: copy.deepcopy(encoder), task, seeds=range(g.seeds), epochs=g.epochs,
                                lr=g.lr, batch_size=g.batch_size, seq_len=g.seq_len, device=device,
                                pooling=cfg.eval.pooling, head=g.head, select="last",
                                packing=cfg.eval.get("packing") is not False, pooler=pretrained_pooler(built),
                                baselines=())
    report = glue_report(results, suite.missing)
    report.update(tasks=results, recipe=OmegaConf.to_container(g, resolve=True), source=suite.source,
                  wall_s=round(time.perf_counter() - t0, 2))
    return report


def glue_line(report: dict[str, Any]) -> str:
    """One line: GLUE's average without WNLI and each column's median (x100, as papers print them)."""
    cols = ", ".join(f"{c} {v['median'] * 100:.1f}" for c, v in report["columns"].items())
    avg = report.get("average")
    part = "" if report.get("complete") else f" over {len(report['averaged'])} columns (not all of GLUE)"
    return (f"downstream glue: average {avg * 100:.1f}{part} (median over {report['recipe']['seeds']} seeds, dev); "
            f"{cols}" if avg is not None else f"downstream glue: {cols}")


def result_line(result: dict[str, Any]) -> str:
    """One line: the task's main metric and macro-F1 over seeds at the chosen learning rate, the linear probe, the
    model's own score, each baseline, and the best constant answer."""
    n, m = len(result.get("per_seed", [])), result.get("metric", "accuracy")
    others = beside(result)
    chance = (result.get("chance") or {}).get("best_constant_accuracy")
    lr = f" at lr {result['lr']:g}" if "lr" in result else ""
    f1 = f", macro-F1 {result['f1_mean']:.3f} +/- {result['f1_std']:.3f}" if "f1_mean" in result else ""
    return (f"downstream {result['task']}: {m} {result[f'{m}_mean']:.3f} +/- {result[f'{m}_std']:.3f}{f1} over {n} "
            f"seeds{lr}" + "".join(f"; {k} {v[f'{m}_mean']:.3f}" for k, v in others.items() if f"{m}_mean" in v) +
            (f"; best constant {chance:.3f}" if chance is not None else "") +
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
    """Downstream scores as flat W&B keys: downstream/accuracy_mean ..., downstream/<baseline>_accuracy_mean,
    downstream/linear_probe_..., downstream/score_feature_...; by_task: downstream/<task>/... (a task besides the
    run's main one). GLUE: downstream/glue/average and downstream/glue/<column> (medians over seeds)."""
    if result.get("task") == "glue":
        out = {f"downstream/glue/{c}": v["median"] for c, v in result.get("columns", {}).items()}
        if result.get("average") is not None:
            out["downstream/glue/average"] = result["average"]
        return out
    p = f"downstream/{result['task']}/" if by_task else "downstream/"
    metric = result.get("metric", "accuracy")
    keys = dict.fromkeys(["accuracy_mean", "accuracy_std", "f1_mean", "f1_std", f"{metric}_mean", f"{metric}_std"])
    out = {f"{p}{k}": result[k] for k in keys if k in result}
    for name, b in beside(result).items():
        for k in dict.fromkeys(("accuracy_mean", "f1_mean", f"{metric}_mean")):
            if k in b:
                out[f"{p}{name}_{k}"] = b[k]
    return out
