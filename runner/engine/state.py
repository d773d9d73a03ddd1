"""A run's checkpoint state, gathered from the components that own it (the torchtitan way: each hands over its
own state_dict): the model and optimizer (through the parallel wrapper), the schedule, the precision's loss
scaler, the feed's position, the encoder's per-rank state (Transformer-XL's memories), every rank's random
state and the loop's progress counters. The keys stay flat, as checkpoints written before this layout have them,
so those resume unchanged (a missing `feed` position is derived from the step). The run's resolved config is kept
too (`config`, plain types), with every resume's changed settings (`resume_changes`): a resume compares its config
with the checkpoint's (runner/config/changes.py), refuses a change to what makes the run what it is and lists the
others."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from runner.store import checkpoint
from runner.engine import distributed
from runner.config.changes import Changes, describe, diff, refusal
from runner.config.errors import ConfigError, TrainingError
from runner.models.registry import defining_values
from runner.store import layout
from runner.config.console import console


@dataclass
class Progress:
    """How far the run has come: counted over every invocation of a resumed run."""

    step: int = 0
    tokens: int = 0  # non-padding tokens read
    positions: int = 0  # token positions attention computed, padding included (packed rows: little of it)
    token_rows: int = 0  # positions the token-wise layers computed (an unpadding encoder: the real tokens alone)
    padded_positions: int = 0  # positions the same batches would compute as right-padded rows, one example each
    flops: float = 0.0  # training FLOPs (runner/models/flops.py)
    elapsed: float = 0.0  # seconds in training steps (evaluation excluded)
    skipped: int = 0  # updates skipped for a non-finite loss (trainer.nonfinite=skip)
    first_val: dict | None = None  # validation metrics at step 0
    first_probes: dict | None = None  # probe accuracies at step 0

    def state_dict(self) -> dict[str, Any]:
        """The counters."""
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Counters from a checkpoint (keys added later keep their defaults)."""
        for f in fields(self):
            if f.name in state:
                setattr(self, f.name, state[f.name])


class Checkpointer:
    """Writes and reads checkpoints/last.pt of a run directory from the trainer's components."""

    def __init__(self, run_dir: Path, keep: int, model_config: Any, parts: dict[str, Any]):
        # parts: parallel, optimizer, scheduler, precision, feed, encoder, progress, world, grad_accum
        self.run_dir, self.keep, self.model_config, self.p = Path(run_dir), keep, model_config, parts
        self.config: dict[str, Any] | None = None  # the run's resolved config (track()), saved with each checkpoint
        self.changes: list[dict[str, Any]] = []  # {"key", "before", "after", "step"}: every resume's

    def track(self, config: dict[str, Any]) -> None:
        """Record the run's resolved config (plain types, no `hydra` node) in its checkpoints, so a resume can tell
        what changed."""
        self.config = config

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit for bit (called on every rank: RNG and per-rank states are gathered)."""
        p = self.p
        rngs = distributed.gather(checkpoint.rng_state())
        ranks = distributed.gather(p["encoder"].rank_state())
        module, optimizer = p["parallel"].state_dict(p["optimizer"])
        return {"module": module, "optimizer": optimizer, "precision": p["precision"].state_dict(),
                "scheduler": p["scheduler"].state_dict(), **p["progress"].state_dict(),
                "feed": p["feed"].state_dict(), "rng": rngs[0], "rng_ranks": rngs,
                "memory_ranks": ranks if any(r is not None for r in ranks) else None, "world_size": p["world"],
                "strategy": p["parallel"].strategy if p["world"] > 1 else "single",
                "model_config": OmegaConf.to_container(self.model_config), "config": self.config,
                "resume_changes": self.changes}

    def save(self) -> None:
        """checkpoints/last.pt, written by rank 0 (every rank contributes its RNG state)."""
        state = self.state_dict()
        if distributed.is_main():
            checkpoint.save(self.run_dir, state, keep=self.keep)

    def restore(self) -> str | None:
        """Load checkpoints/last.pt into every component; a note to show when per-rank state could not carry over."""
        p, s = self.p, checkpoint.load(self.run_dir)
        changed = self.check_config(s)
        fresh = _hyperparameters(p["optimizer"], p["scheduler"])  # as this invocation's config built them
        p["parallel"].load_state_dict(p["optimizer"], s["module"], s["optimizer"])
        p["scheduler"].load_state_dict(s["scheduler"])
        _apply(p["optimizer"], p["scheduler"], fresh, changed)
        p["precision"].load_state_dict(s.get("precision"))
        p["progress"].load_state_dict(s)
        p["feed"].load_state_dict(s.get("feed") or {"position": s["step"] * p["grad_accum"]})
        world, rank = p["world"], distributed.rank()
        rngs = s.get("rng_ranks") or [s["rng"]]
        # the same world size continues every rank's own random stream; another one gives each rank rank 0's
        checkpoint.set_rng_state(rngs[rank] if len(rngs) == world else s["rng"])
        ranks = s.get("memory_ranks")
        if ranks and len(ranks) == world:  # each rank's rows continue with their own state (memory)
            p["encoder"].load_rank_state(ranks[rank])
        elif ranks:  # rows are dealt to ranks anew: no row's state is its own any more
            p["encoder"].load_rank_state(None)
            return (f"the checkpoint was written by {len(ranks)} ranks, this run has {world}: the model's per-rank "
                    "state (Transformer-XL memories) starts empty")
        return None

    def check_config(self, s: dict[str, Any]) -> set[str]:
        """Refuse a checkpoint trained as another run (one line naming the keys); list the settings changed since
        it was written (console, and self.changes for summary.json and later checkpoints); return the optimizer
        hyperparameters among them (lr, betas, eps, weight_decay), which restore() applies over the checkpoint's."""
        self.changes = list(s.get("resume_changes") or [])
        if self.config is None or s.get("config") is None:  # no config to compare: the model's identity, as ever
            if defining_values(s["model_config"]) != defining_values(self.model_config):
                raise TrainingError(f"the checkpoint in {self.run_dir} was trained with another model config; "
                                    "resume with the run's own overrides or start a new run directory")
            if self.config is not None:
                self._say("[yellow]note:[/] the checkpoint does not record its config; changes cannot be listed")
            return set()
        found = resume_diff(s["config"], self.config, int(s.get("world_size", 1)), int(self.p["world"]), int(s["step"]))
        if found.refused:
            raise refusal(self.run_dir, found.refused)
        held = self._held_by_optimizer(s)  # these apply through restore()'s _apply, the others as built
        if found.listed:
            self.changes += found.listed
            self._say(f"[yellow]resumed at step {s['step']:,} with changed settings:[/] {describe(found.listed)}")
        return {c["key"].split(".", 1)[1] for c in found.listed if c["key"] in held}

    @staticmethod
    def _held_by_optimizer(s: dict[str, Any]) -> set[str]:
        """optimizer.<key> for each hyperparameter the checkpoint's optimizer state holds (lr, betas, eps, ...): its
        param_groups and the schedule's base rates come back on load, over the values the config built."""
        groups = (s.get("optimizer") or {}).get("param_groups") or [{}]
        return {f"optimizer.{k}" for k in groups[0] if k != "params"}

    @staticmethod
    def _say(line: str) -> None:
        if distributed.is_main():

            console.print(line, highlight=False, soft_wrap=True)


def _hyperparameters(optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """The freshly built optimizer's per-group hyperparameters and the schedule's peak rates, before a checkpoint's
    state replaces them."""
    groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    return {"groups": groups, "base_lrs": list(scheduler.base_lrs)}


def _apply(optimizer: Any, scheduler: Any, fresh: dict[str, Any], keys: set[str]) -> None:
    """Put this invocation's values of the changed optimizer hyperparameters back over the checkpoint's: betas, eps
    and weight_decay per group as built (a no-decay group keeps 0); lr as the schedule's new peak, the current rate
    following from it at the schedule's position. Adam's moments stay the checkpoint's."""
    for key in keys - {"lr"}:
        for group, built in zip(optimizer.param_groups, fresh["groups"]):
            if key in built:
                group[key] = built[key]
    if "lr" in keys:
        scheduler.base_lrs = list(fresh["base_lrs"])
        for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
            group["initial_lr"] = base
            group["lr"] = base * factor(scheduler.last_epoch)
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]  # get_last_lr(): the step's rate


def _current(config: dict[str, Any]) -> dict[str, Any]:
    """config under today's schemas (runner/store/layout.py current); as it was, when it cannot be (a key since
    removed, a family no longer served)."""
    try:
        return OmegaConf.to_container(layout.current(config), resolve=True)
    except (ConfigError, OmegaConfBaseException, ImportError):
        return config


def resume_diff(before: dict[str, Any], after: dict[str, Any], world_before: int, world_after: int,
                step: int) -> Changes:
    """What changed from a checkpoint's recorded config (before, at step) to the resumed run's (after): the changes
    that refuse the resume and those that are listed (runner/config/changes.py)."""
    after = _current(after)
    return diff(_current(before), after, world_before, world_after, step, set(defining_values(after["model"])))


def run_config(cfg: Any) -> dict[str, Any]:
    """The run's resolved config in plain types without Hydra's node: what its checkpoints record (a resume
    compares against it) and its loggers receive."""
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("hydra", None)
    return config


def refuse_early(cfg: Any, run_dir: Any) -> None:
    """Before any data or model is built: the check restore() makes, against the config recorded in the run's last.pt
    (its pickle read, its tensors memory-mapped rather than loaded). Nothing when there is no readable checkpoint
    with a config: restore() says what is wrong with it later."""
    try:
        state = torch.load(checkpoint.checkpoint_path(run_dir), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - missing, corrupt or unsafe: checkpoint.load reports it in its place
        return
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        return
    config = run_config(cfg)
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    found = resume_diff(state["config"], config, int(state.get("world_size", 1)), world, int(state.get("step", 0)))
    if found.refused:
        raise refusal(run_dir, found.refused)
