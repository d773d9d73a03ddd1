"""Every objective class, found among runner/objectives/*'s `Objective` subclasses (a new objective is a new file
there plus a YAML under conf/objective/; no list to edit)."""
from __future__ import annotations

from functools import lru_cache

import runner.objectives as objectives_package
from runner.config.discover import subclasses_in
from runner.objectives.base import Objective, ObjectiveConfig


@lru_cache(maxsize=1)
def objective_classes() -> list[type[Objective]]:
    """The objective classes of runner/objectives/, each with its own options dataclass."""
    return [c for c in subclasses_in(objectives_package, Objective) if c.options_class is not ObjectiveConfig]


def schemas() -> dict[str, type]:
    """ConfigStore name (base_<objective name>) -> options dataclass, for conf/objective/*.yaml to extend."""
    out: dict[str, type] = {}
    for cls in objective_classes():
        out[f"base_{cls.options_class.name}"] = cls.options_class
    return out
