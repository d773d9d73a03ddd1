"""Training budgets: steps, tokens, FLOPs or minutes end the run, and the schedule spans the budget.
The tests of this file that train or start a process: tests/integration/test_budget.py."""
from __future__ import annotations

import pytest

from runner.config.errors import ConfigError
from runner.build import validate
from tests.conftest import make_cfg


pytestmark = pytest.mark.slow


@pytest.mark.parametrize("overrides,needle", [
    (["trainer.budget.flops=1e12", "trainer.budget.tokens=100"], "set one budget"),
    (["trainer.budget.tokens=-5"], "trainer.budget.tokens=-5"),
    (["trainer.budget.minutes=1", "optimizer.warmup_steps=10"], "optimizer.warmup_fraction"),
])
def test_bad_budgets_fail_before_any_work(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        validate(make_cfg(*overrides))
