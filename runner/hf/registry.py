"""model.family -> its transformers adapter, found among runner/hf/adapters/*'s `FamilyAdapter` subclasses (and those
of the BERTLAB_PLUGINS modules), so a family's transformers bridge is a file of its own (no list to edit)."""
from __future__ import annotations

from functools import lru_cache

import runner.hf.adapters as adapters_package
from runner.config.discover import subclasses_in
from runner.hf.adapters.base import FamilyAdapter, NoTransformersClass


@lru_cache(maxsize=1)
def adapters() -> dict[str, FamilyAdapter]:
    """Every model.family value that has an adapter, and that adapter."""
    out: dict[str, FamilyAdapter] = {}
    for cls in subclasses_in(adapters_package, FamilyAdapter):
        for family in cls.families:
            if family in out and type(out[family]) is not cls:
                raise RuntimeError(f"model.family={family} has two transformers adapters: "
                                   f"{type(out[family]).__name__} and {cls.__name__}")
            out[family] = cls(family)
    return out


def adapter_for(family: str) -> FamilyAdapter:
    """The adapter of model.family; a family without one gets NoTransformersClass (every export says why)."""
    return adapters().get(family) or NoTransformersClass(family)
