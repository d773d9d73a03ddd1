"""What changed between the config a run's checkpoint recorded and the config it resumes with.

Three kinds of keys (dotted, as on the command line):
- defining: they make the run what it is, so a change refuses the resume. The model as
  runner.models.registry.defining_values sees it (every model key but report_presets), objective.*, seed, the data keys that
  decide which tokens the model reads (data.* but DATA_HARMLESS), and the global batch: trainer.batch_size and
  trainer.grad_accum refuse only when batch_size x grad_accum x world size changes, so a 2-rank run of batch 4 may
  go on in one process with batch 8 (resuming at another world size alone is allowed: docs/distributed.md).
- ignored: settings of one invocation that never change what the run computes (IGNORED).
- listed: everything else (optimizer.*, trainer.max_steps, eval.*, ...): shown on resume and kept in summary.json.
  A listed key the checkpoint's optimizer state holds (optimizer.lr, betas, eps, weight_decay) is put back over
  the loaded state (runner/engine/state.py), so every listed change takes effect from the resumed step.
Both configs are first brought up to today's schemas (runner/store/layout.py current), so a key added since the
checkpoint was written is no change."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runner.config.errors import TrainingError

IGNORED = frozenset({"trainer.resume", "trainer.stop_after", "trainer.threads", "trainer.num_workers", "logger.mode",
                     "export"})
# where and how the token cache is built, and how bad input lines are treated (a run that read skip's lines would
# stop under error): never which tokens the model reads
DATA_HARMLESS = frozenset({"data.cache_dir", "data.num_proc", "data.bad_lines"})
BATCH = ("trainer.batch_size", "trainer.grad_accum")
_NONE = object()  # a key one of the configs lacks


@dataclass
class Changes:
    """The changed keys, each {"key", "before", "after", "step"}: those that refuse, and those that are listed."""

    refused: list[dict[str, Any]] = field(default_factory=list)
    listed: list[dict[str, Any]] = field(default_factory=list)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of a nested dict; lists and empty dicts are values."""
    if not isinstance(node, dict) or not node:
        return {prefix: node} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in node.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _global_batch(flat: dict[str, Any], world: int) -> Any:
    try:
        return int(flat["trainer.batch_size"]) * int(flat["trainer.grad_accum"]) * world
    except (KeyError, TypeError, ValueError):
        return None


def _is_defining(key: str, model_keys: set[str]) -> bool:
    top, _, rest = key.partition(".")
    if top == "model":
        return rest.split(".", 1)[0] in model_keys
    if top == "data":
        return key not in DATA_HARMLESS
    return top in ("objective", "seed")


def diff(before: dict[str, Any], after: dict[str, Any], world_before: int, world_after: int, step: int,
         model_keys: set[str]) -> Changes:
    """The changes from the checkpoint's config (before, at step) to the resumed run's (after), both already under
    today's schemas (runner/store/layout.py current); model_keys: the model keys that define the model
    (runner/models/registry.py defining_values)."""
    old, new = flatten(before), flatten(after)
    batch_changed = _global_batch(old, world_before) != _global_batch(new, world_after)
    out = Changes()
    for key in sorted(set(old) | set(new)):
        if key in IGNORED or key.startswith("hydra.") or old.get(key, _NONE) == new.get(key, _NONE):
            continue
        change = {"key": key, "before": old.get(key), "after": new.get(key), "step": step}
        both = key in old and key in new  # a key only one schema has is listed: it cannot tell two runs apart
        refuses = batch_changed if key in BATCH else both and _is_defining(key, model_keys)
        (out.refused if refuses else out.listed).append(change)
    if world_before != world_after:
        out.listed.append({"key": "world_size", "before": world_before, "after": world_after, "step": step})
    return out


def describe(changes: list[dict[str, Any]]) -> str:
    """key: before -> after, ...; one line (null: unset, or a key only one of the configs has)."""
    show = lambda v: "null" if v is None else str(v)  # noqa: E731
    return ", ".join(f"{c['key']}: {show(c['before'])} -> {show(c['after'])}" for c in changes)


def refusal(run_dir: Any, refused: list[dict[str, Any]]) -> Exception:
    """The one-line refusal of a resume that changes what the run is."""
    return TrainingError(f"the checkpoint in {run_dir} was trained as another run ({describe(refused)}); resume "
                         "with the run's own values, or start a new run in another hydra.run.dir")
