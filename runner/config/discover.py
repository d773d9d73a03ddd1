"""Classes found by importing every module of a package: how the encoder and objective registries see a new
family or objective without a list to edit."""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def subclasses_in(package: ModuleType, base: type) -> list[type]:
    """Every subclass of base, at any depth, once all of package's modules are imported."""
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")

    def below(cls: type) -> list[type]:
        return [s for c in cls.__subclasses__() for s in (c, *below(c))]
    return below(base)
