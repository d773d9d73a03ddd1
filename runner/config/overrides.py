"""key=value overrides of a finished run's settings (python -m runner.finetune, python -m runner.evaluate): each
checked against its group's schema, so an unknown key or a value of the wrong type is one line naming the key."""
from __future__ import annotations

from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from runner.config.errors import ConfigError
from runner.config.schema import EvalConfig, LoggerConfig, ProbeConfig, TrainerConfig

SCHEMAS = {"eval": EvalConfig, "trainer": TrainerConfig, "logger": LoggerConfig, "probes": ProbeConfig}


def apply_overrides(cfg: DictConfig, overrides: Sequence[str], allowed: Sequence[str], command: str,
                    usage: str) -> DictConfig:
    """cfg with key=value overrides, each key one of `allowed` (a group's every key: "eval.*"), checked against its
    group's schema; `command` and `usage` go into the one-line errors."""
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{item!r} is not an override; use key=value ({usage})")
        if not any(key == a or (a.endswith(".*") and key.startswith(a[:-1])) for a in allowed):
            raise ConfigError(f"{key}: {command} takes {', '.join(allowed)} overrides; the run's other settings are "
                              "its own")
        group, rest = key.split(".", 1)
        try:
            parsed = OmegaConf.from_dotlist([f"{rest}={value}"])
            cfg[group] = OmegaConf.merge(OmegaConf.structured(SCHEMAS[group]), cfg.get(group) or {}, parsed)
        except OmegaConfBaseException as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if "not in" in first or "Key '" in first:
                keys = ", ".join(OmegaConf.structured(SCHEMAS[group]).keys())
                raise ConfigError(f"{key} is not a key of {group} (its keys: {keys})") from None
            raise ConfigError(f"{item}: {first}") from None
    return cfg


def structured(group: str, node: Any) -> DictConfig:
    """A group's node (or {}) under its schema: every key with its default."""
    return OmegaConf.merge(OmegaConf.structured(SCHEMAS[group]), node or {})
