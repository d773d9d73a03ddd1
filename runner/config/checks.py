"""Checks of values that have the right type but do not fit together, made from the config alone; each failure is
one line naming the keys and the fix, raised before any data or model is built. Each group checks its own values
(its schema's `check()`, runner/config/schema.py); this module calls those and checks what spans groups. What only a
layer above knows (a family's position table, the machine, the logger backends, the task names) that layer checks,
and runner/build.py validate() runs every check in layer order."""
from __future__ import annotations

from omegaconf import OmegaConf

from runner.config.budget import budget_of
from runner.config.errors import require
from runner.config.schema import (CrossoverConfig, DataConfig, EvalConfig, LambConfig, LoggerConfig, OptimizerConfig,
                                  ProbeConfig, TrainerConfig)


def typed(node, schema: type):
    """A group's node as its schema's dataclass (OmegaConf.to_object). A node of another type (a run's saved,
    untyped config.yaml, a hand-made config) is merged onto the schema's defaults first."""
    kind = OmegaConf.get_type(node)
    if not (isinstance(kind, type) and issubclass(kind, schema)):
        node = OmegaConf.merge(OmegaConf.structured(schema), node)
    return OmegaConf.to_object(node)


def optimizer_schema(node) -> type:
    """The optimizer group's schema: LAMB's or AdamW's, by its _target_."""
    kind = OmegaConf.get_type(node)
    if isinstance(kind, type) and issubclass(kind, OptimizerConfig):
        return kind
    return LambConfig if node.get("_target_") == LambConfig._target_ else OptimizerConfig


def check_data(cfg) -> None:
    """The data group's own values."""
    typed(cfg.data, DataConfig).check()


def check_training(cfg) -> None:
    """The optimizer, the trainer (its budget too: one of steps, tokens, flops, minutes, positive) and what the
    budget allows the optimizer."""
    o, t = cfg.optimizer, cfg.trainer
    typed(o, optimizer_schema(o)).check()
    typed(t, TrainerConfig).check()


def check_schedule_and_outputs(cfg) -> None:
    """What a budget allows the schedule, the logger, the probes and the crossover, as far as the config alone
    tells."""
    o, t = cfg.optimizer, cfg.trainer
    budget = budget_of(t.get("budget"))
    require(budget is None or budget.kind != "minutes" or o.warmup_steps is None,
            f"optimizer.warmup_steps={o.warmup_steps} counts steps, but trainer.budget.minutes has no step count; "
            "use optimizer.warmup_fraction (a share of the time)")
    typed(cfg.logger, LoggerConfig).check()
    if (p := cfg.get("probes")) is not None and (p.enabled or p.get("suites")):
        typed(p, ProbeConfig).check()
    if (x := cfg.get("crossover")) is not None and x.enabled:
        require(budget is not None and budget.kind == "flops", "crossover.enabled=true keeps snapshots at training "
                "FLOPs up to the budget; set trainer.budget.flops (e.g. trainer.budget.flops=1e13)")
        typed(x, CrossoverConfig).check()
    if (e := cfg.get("eval")) is not None and e.downstream is not False:  # on, or auto (on in a multirun):
        typed(e, EvalConfig).check()  # checked now, not after the pretraining it follows
