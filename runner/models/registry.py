"""model.family -> the encoder class that serves it, found among runner/models/*'s `EncoderModule` subclasses, so
a new family is a new file there plus a config (no list to edit)."""
from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

import runner.models as models_package
from runner.config.discover import subclasses_in
from runner.config.errors import ConfigError, require
from runner.data.tokenizer import ROLES, SPECIALS
from runner.models.base import EncoderModule
from runner.models.config import EncoderConfig


@lru_cache(maxsize=1)
def families() -> dict[str, type[EncoderModule]]:
    """Every model.family value and its encoder class."""
    out: dict[str, type[EncoderModule]] = {}
    for cls in subclasses_in(models_package, EncoderModule):
        for family in cls.families:
            if family in out and out[family] is not cls:
                raise RuntimeError(f"model.family={family} is served by {out[family].__name__} and {cls.__name__}")
            out[family] = cls
    return out


def encoder_class(family: str) -> type[EncoderModule]:
    """The class serving model.family, or a one-line ConfigError naming the families there are."""
    known = families()
    if family not in known:
        raise ConfigError(f"model.family={family!r} must be one of {', '.join(sorted(known))}")
    return known[family]


def config_classes() -> list[type]:
    """The distinct config schemas of the families (each stored in Hydra's ConfigStore under its `schema` name)."""
    return list(dict.fromkeys(cls.config_class for cls in families().values()))


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return f.default


def upgrade(node: Any) -> dict[str, Any]:
    """A `model` node as its family's schema has it: a config saved before a key moved to another family's schema
    (Transformer-XL's keys lived in every model config) drops that key when it holds its default there; any other
    unknown key is a one-line ConfigError."""
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    cls = encoder_class(str(values.get("family", "bert"))).config_class
    known = {f.name for f in dataclasses.fields(cls)}
    elsewhere = {f.name: _default(f) for other in config_classes() for f in dataclasses.fields(other)}
    for key in sorted(set(values) - known):
        if key in elsewhere and values[key] == elsewhere[key]:
            del values[key]
        else:
            raise ConfigError(f"model.{key}={values[key]!r} is not a key of model.family={values.get('family')} "
                              f"({cls.__name__}); drop it")
    return values


def model_config(node: Any) -> EncoderConfig:
    """The typed config of a `model` node (a composed group, a run's saved config.yaml, or a dict)."""
    if isinstance(node, EncoderConfig):
        return node
    values = upgrade(node)
    return encoder_class(str(values.get("family", "bert"))).config_class(**values)


def defining_values(node: Any) -> dict[str, Any]:
    """The keys and values of a model config that make a run's model what it is (all but reporting keys), for
    comparing a checkpoint's with a resumed run's."""
    out = dataclasses.asdict(model_config(node))
    out.pop("report_presets", None)
    return out


def build_encoder(config: EncoderConfig) -> EncoderModule:
    """A freshly initialised encoder for config."""
    return encoder_class(config.family)(config)


def defaults_of(family: str) -> Mapping[str, Any]:
    """A family's config schema with its defaults, as an OmegaConf node (old saved configs are merged onto it)."""
    return OmegaConf.structured(encoder_class(family).config_class)


def check_model(cfg: Any) -> None:
    """The model group in its family's schema, and what the family allows the data: a position table long enough for
    data.seq_len, and packing only for families that read padded examples (a one-line ConfigError before any work)."""
    m, d = cfg.model, cfg.data
    config = model_config(m)  # the family's schema; an unknown family fails here
    config.check()
    if config.max_seq_len is not None:  # a position table (relative positions: any length)
        pad = SPECIALS[config.tokenizer].index(ROLES[config.tokenizer]["pad"])  # the tokenizer kind's padding id
        offset = config.offset_for(pad)  # RoBERTa: positions start after the padding id
        require(d.seq_len <= config.max_position_embeddings - offset,
                f"data.seq_len={d.seq_len} exceeds model.max_position_embeddings={config.max_position_embeddings}"
                f"{f' minus the position offset {offset}' if offset else ''}; lower data.seq_len or raise "
                "model.max_position_embeddings")
    cls = encoder_class(config.family)
    require(d.get("packing") is not True or cls.packs,
            f"data.packing=true packs examples into shared rows, but model.family={config.family} reads "
            f"{cls.feed} without padding to remove; drop data.packing=true (the default, null, packs where it "
            "applies)")
