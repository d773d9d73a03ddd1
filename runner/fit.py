"""Which objectives a model preset trains with, read from the config files before Hydra composes them.

A preset names its family's recipe (conf/recipe/<name>.yaml), which picks an objective and may set keys of it
(XLNet's `objective.reuse_len`). With another objective on the command line, Hydra would merge those keys into an
objective that lacks them and fail with its own composition error; `refusal` says it first, in one line: the model,
the objective, the keys, and the objectives that fit."""
from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from runner.objectives.registry import schemas

CONF = Path(__file__).resolve().parents[1] / "conf"


def _defaults(path: Path) -> list:
    return list(OmegaConf.to_container(OmegaConf.load(path)).get("defaults") or []) if path.is_file() else []


@lru_cache(maxsize=None)
def preset_recipe(model: str) -> str | None:
    """The recipe conf/model/<model>.yaml names: its own (`/recipe@_global_` or an override of it), else the one of
    the preset it extends; None: none (or no such preset)."""
    recipe = None
    for entry in _defaults(CONF / "model" / f"{model}.yaml"):
        if isinstance(entry, str) and entry != "_self_":
            recipe = preset_recipe(entry) or recipe
        elif isinstance(entry, dict):
            for key, value in entry.items():
                if key.removeprefix("override").strip() == "/recipe@_global_":
                    recipe = value
    return recipe


@lru_cache(maxsize=None)
def recipe_objective(recipe: str) -> tuple[str | None, frozenset[str]]:
    """The objective a recipe picks and the objective keys it sets."""
    path = CONF / "recipe" / f"{recipe}.yaml"
    picked = None
    for entry in _defaults(path):
        if isinstance(entry, dict):
            picked = entry.get("override /objective", picked)
    node = OmegaConf.load(path).get("objective") if path.is_file() else None
    return picked, frozenset(node.keys() if isinstance(node, DictConfig) else ())


@lru_cache(maxsize=None)
def objective_keys(objective: str) -> frozenset[str] | None:
    """The keys of objective conf/objective/<objective>.yaml (its options dataclass); None: no such objective."""
    for entry in _defaults(CONF / "objective" / f"{objective}.yaml"):
        if isinstance(entry, str) and entry in schemas():
            return frozenset(f.name for f in dataclasses.fields(schemas()[entry]))
        if isinstance(entry, str) and entry != "_self_" and (keys := objective_keys(entry)) is not None:
            return keys
    return None


def objectives() -> list[str]:
    """Every objective under conf/objective/."""
    return sorted(p.stem for p in (CONF / "objective").glob("*.yaml") if objective_keys(p.stem) is not None)


def refusal(model: str, objective: str) -> str | None:
    """One line when model's recipe sets objective keys that `objective` lacks (Hydra could not compose them);
    None when they fit, or when either name is not a config file (Hydra names it)."""
    recipe = preset_recipe(model)
    if recipe is None:
        return None
    picked, keys = recipe_objective(recipe)
    have = objective_keys(objective)
    if have is None or keys <= have:
        return None
    missing = ", ".join(f"objective.{k}" for k in sorted(keys - have))
    fits = [o for o in objectives() if keys <= objective_keys(o)]
    return (f"model={model} does not train with objective={objective}: its recipe (conf/recipe/{recipe}.yaml) sets "
            f"{missing}, which objective={objective} does not have; objectives that fit model={model}: "
            f"{', '.join(fits)} (or leave objective= out for the recipe's {picked})")


def default_choice(group: str) -> str | None:
    """The option conf/config.yaml's defaults pick for a group."""
    for entry in _defaults(CONF / "config.yaml"):
        if isinstance(entry, dict) and group in entry:
            return entry[group]
    return None


def command_line_refusal(args: Sequence[str], default_model: str | None = None) -> str | None:
    """The first refusal among the model= and objective= values of command-line overrides (each combination of a
    multirun's comma-separated values; no model=: `default_model`); None when no objective= is given or every pair
    fits."""
    def values(group: str) -> list[str]:
        found = [a.split("=", 1)[1] for a in args if a.lstrip("+").split("=", 1)[0] == group and "=" in a]
        return [v.strip() for v in found[-1].split(",") if v.strip()] if found else []

    models, objs = values("model") or ([default_model] if default_model else []), values("objective")
    for model, objective in itertools.product(models, objs):
        if why := refusal(model, objective):
            return why
    return None
