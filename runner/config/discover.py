"""Classes found by importing every module of a package: how the encoder, objective and transformers-adapter
registries see a new family or objective without a list to edit. Modules named in the environment variable
BERTLAB_PLUGINS (comma-separated) are imported first, so a family or objective defined in a researcher's own package
is found like one of ours."""
from __future__ import annotations

import importlib
import os
import pkgutil
from types import ModuleType

from runner.config.errors import ConfigError

PLUGINS = "BERTLAB_PLUGINS"  # the environment variable: modules to import before any registry is read


def plugin_modules() -> list[str]:
    """The module names BERTLAB_PLUGINS lists, in order (empty entries and spaces dropped)."""
    return [name.strip() for name in os.environ.get(PLUGINS, "").split(",") if name.strip()]


def load_plugins() -> list[ModuleType]:
    """Import every module BERTLAB_PLUGINS names (Python imports each once); a name that is not a module is a
    one-line ConfigError naming the variable and the module."""
    out = []
    for name in plugin_modules():
        try:
            out.append(importlib.import_module(name))
        except ModuleNotFoundError as e:
            # only a missing plugin is the user's typo; a plugin missing one of its own imports keeps its traceback
            if e.name is None or not (name == e.name or name.startswith(e.name + ".")):
                raise
            raise ConfigError(f"{PLUGINS}={os.environ.get(PLUGINS)}: no module named {name!r} (is its package on "
                              "PYTHONPATH or installed?); fix the name or drop it from the variable") from None
    return out


def subclasses_in(package: ModuleType, base: type) -> list[type]:
    """Every subclass of base, at any depth, once the BERTLAB_PLUGINS modules and all of package's modules are
    imported: those of the package and those defined anywhere else (a plugin, a test)."""
    load_plugins()
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")

    def below(cls: type) -> list[type]:
        return [s for c in cls.__subclasses__() for s in (c, *below(c))]
    return list(dict.fromkeys(below(base)))  # a class reached by two bases (multiple inheritance) once
