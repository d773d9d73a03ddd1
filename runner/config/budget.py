"""Training budgets: a run ends after a number of steps, tokens, training FLOPs or wall-clock minutes, and the
learning-rate schedule spans the budget, so runs of different models at one FLOPs budget are an equal-compute
comparison (ELECTRA's way of comparing, Clark et al. 2020, section 3.3; cramming's wall-clock budget).

Steps, tokens and FLOPs budgets become a number of optimizer steps before training: batches are a function of
the step, so the cost of one step is measured on step 0's micro-batches and the schedule is built for
ceil(budget / cost) steps; the loop stops at the first step that reaches the budget. A minutes budget cannot be
planned that way: its schedule runs on the share of the time spent (TICKS ticks over the budget)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from runner.config.errors import ConfigError

KINDS = ("steps", "tokens", "flops", "minutes")
TICKS = 10_000  # schedule resolution of a minutes budget: the schedule's "steps" are 1/TICKS of the time


@dataclass(frozen=True)
class Budget:
    """What ends the run: `amount` of `kind` (steps | tokens | flops | minutes)."""

    kind: str
    amount: float

    def spent(self, step: int, tokens: int, flops: float, elapsed_s: float) -> bool:
        """Whether the run has used its budget."""
        used = {"steps": step, "tokens": tokens, "flops": flops, "minutes": elapsed_s / 60.0}[self.kind]
        return used >= self.amount

    def plan(self, step_tokens: int, step_flops: float) -> int:
        """Optimizer steps the schedule spans: the budget over one step's cost (TICKS for a minutes budget)."""
        if self.kind == "minutes":
            return TICKS
        cost = {"steps": 1.0, "tokens": float(step_tokens), "flops": float(step_flops)}[self.kind]
        return max(1, math.ceil(self.amount / max(cost, 1e-30)))

    def tick(self, elapsed_s: float) -> int:
        """The schedule position of a minutes budget after elapsed_s seconds of training."""
        return min(TICKS, int(elapsed_s / (self.amount * 60.0) * TICKS))


def budget_of(cfg: Any) -> Budget | None:
    """The trainer.budget node as a Budget, or None when unset (trainer.max_steps ends the run)."""
    if cfg is None:
        return None
    chosen = {k: cfg.get(k) for k in KINDS if cfg.get(k) is not None}
    if not chosen:
        return None
    if len(chosen) > 1:
        keys = ", ".join(f"trainer.budget.{k}={v}" for k, v in chosen.items())
        raise ConfigError(f"{keys}: set one budget (steps, tokens, flops or minutes), not {len(chosen)}")
    kind, amount = next(iter(chosen.items()))
    if not amount > 0:
        raise ConfigError(f"trainer.budget.{kind}={amount} must be > 0")
    return Budget(kind, float(amount))
