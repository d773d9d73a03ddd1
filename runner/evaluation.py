"""End-of-run downstream evaluation: fine-tune the pretrained encoder on eval.task (runner/downstream/)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from runner.errors import ConfigError
from runner.logging import console

if TYPE_CHECKING:  # runner.train imports this module
    from runner.build import Built
    from runner.train import Trainer

def downstream_eval(cfg: DictConfig, built: Built, trainer: Trainer) -> dict[str, Any] | None:
    """Fine-tune the pretrained encoder on eval.task (mean +/- std over seeds, with baselines), or None when
    eval.downstream is off or the data has no labels for the task (said on the console)."""
    e = cfg.get("eval")
    if e is None or not e.downstream:
        return None
    import copy

    from runner.downstream.finetune import finetune
    from runner.downstream.tasks import load_task

    try:
        task = load_task(e.task, built.data, e.seq_len, path=e.path)
    except (ConfigError, ValueError) as err:  # e.g. a corpus without topics: the pretraining result stands
        console.print(f"[yellow]skipped downstream evaluation: {err}", highlight=False, soft_wrap=True)
        return None
    if not (task.train and task.dev and task.test):
        console.print(f"[yellow]skipped downstream evaluation: {e.task} has no labelled examples in this data "
                      f"({task.sizes()}); wiki_topic needs the wiki corpus's topics", highlight=False,
                      soft_wrap=True)
        return None
    encoder = built.module.encoder
    result = finetune(lambda: copy.deepcopy(encoder), task, seeds=range(e.seeds), epochs=e.epochs, lr=e.lr,
                      batch_size=e.batch_size, seq_len=e.seq_len, device=trainer.device, pooling=e.pooling,
                      baselines=("random_init", "bow_logreg") if e.baselines else ())
    console.print(f"downstream {task.name}: accuracy {result['accuracy_mean']:.3f} +/- {result['accuracy_std']:.3f}, "
                  f"macro-F1 {result['f1_mean']:.3f} +/- {result['f1_std']:.3f} over {e.seeds} seeds" +
                  "".join(f"; {k} {v['accuracy_mean']:.3f}" for k, v in result["baselines"].items()),
                  highlight=False, soft_wrap=True)
    return result


def downstream_metrics(result: dict[str, Any]) -> dict[str, float]:
    """Downstream scores as flat W&B keys: downstream/accuracy_mean ..., downstream/<baseline>_accuracy_mean."""
    out = {f"downstream/{k}": result[k] for k in ("accuracy_mean", "accuracy_std", "f1_mean", "f1_std")}
    for name, b in result.get("baselines", {}).items():
        for k in ("accuracy_mean", "f1_mean"):
            if k in b:
                out[f"downstream/{name}_{k}"] = b[k]
    return out
