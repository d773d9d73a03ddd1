"""Assemble a run from the composed config: data, encoder, objective (one builder per group)."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from hydra.utils import get_class
from omegaconf import DictConfig
from torch import nn

from runner.data.pretraining import build_data
from runner.data.tokenizer import SpecialIds
from runner.data.words import continuation_table
from runner.config import checks, schema
from runner.config.discover import load_plugins
from runner.config.errors import ConfigError
from runner.engine.assembly import Built, Pretrainer
from runner.engine.runtime import check_machine
from runner.evaluation.checks import check_evaluation
from runner.reporting.backends import check_backends
from runner.models.config import EncoderConfig
from runner.models.heads import MLMHead
from runner.hf.mapping import load_hf_weights
from runner.models.registry import build_encoder, check_model, config_classes, model_config
from runner.objectives.base import Objective, options_of
from runner.objectives.registry import schemas as objective_schemas


def register() -> None:
    """Hydra's ConfigStore: every group's schema, each encoder family's model schema and each objective's options,
    those of the BERTLAB_PLUGINS modules included (imported first; a name that is not a module: ConfigError)."""
    load_plugins()
    schema.register(config_classes(), objective_schemas())


def validate(cfg: DictConfig) -> None:
    """Every check before any work, in layer order; the first inconsistent setting raises a one-line ConfigError."""
    check_model(cfg)  # the family's schema and what it allows the data
    checks.check_data(cfg)
    checks.check_training(cfg)
    check_machine(cfg.trainer)  # device, precision, strategy, the torchrun launch
    checks.check_schedule_and_outputs(cfg)
    check_backends(cfg.logger)
    check_evaluation(cfg)  # task names, probe kinds, the pooling a causal model allows


def encoder_config(cfg: DictConfig) -> EncoderConfig:
    """The typed encoder config of the `model` group (also from a run's saved, untyped config.yaml)."""
    return model_config(cfg.model)


def objective_class(node: DictConfig) -> type[Objective]:
    """The objective class an `objective` node names (its _target_)."""
    cls = get_class(node._target_)
    if not (isinstance(cls, type) and issubclass(cls, Objective)):
        raise ConfigError(f"objective._target_={node._target_} is not an Objective subclass")
    return cls


def objective_options(node: DictConfig, config: EncoderConfig) -> tuple[type[Objective], object]:
    """The objective class and its checked options dataclass; raises ConfigError if the options are bad or this
    encoder cannot serve the objective (before any data is built)."""
    cls = objective_class(node)
    options = options_of(cls, node)
    options.check()
    cls.check(config, options)
    return cls, options


def build_objective(node: DictConfig, config: EncoderConfig, specials: SpecialIds, token_vocab_size: int,
                    word_table: torch.Tensor | None = None) -> Objective:
    """The objective an `objective` node describes, for an encoder config and a tokenizer's specials."""
    cls, options = objective_options(node, config)
    return cls(options, config, specials, token_vocab_size, word_table=word_table)


def build(cfg: DictConfig) -> Built:
    """Validate the config, then build data, encoder and objective."""
    started = time.perf_counter()
    validate(cfg)
    config = encoder_config(cfg)
    objective_cls, options = objective_options(cfg.objective, config)
    tokenizer_path = None  # keep a checkpoint's vocab; data.tokenizer.path, when set, wins (build_data)
    if config.init_from and (Path(config.init_from).expanduser() / "tokenizer.json").is_file():
        tokenizer_path = str(Path(config.init_from).expanduser() / "tokenizer.json")
    if required := objective_cls.tokenizer_file(options):  # distillation: the teacher's vocabulary, or none
        local = (cfg.data.get("tokenizer") or {}).get("path")
        if local and not same_vocabulary(local, required):
            raise ConfigError(f"data.tokenizer.path={local} is not the tokenizer objective={options.name} needs "
                              f"({required}): their vocabularies differ; drop data.tokenizer.path")
        tokenizer_path = required
    data = build_data(cfg.data, tokenizer_kind=config.tokenizer, vocab_size=config.vocab_size,
                      lowercase=config.lowercase, pairs=objective_cls.needs_pairs, tokenizer_path=tokenizer_path,
                      objective=options.name, labels=objective_cls.label_key)
    n_tok = data.tokenizer.get_vocab_size()
    if n_tok > config.vocab_size:
        src = "" if data.tokenizer_source == "trained" else f" ({data.tokenizer_source})"
        raise ConfigError(f"the tokenizer{src} has {n_tok} tokens but model.vocab_size={config.vocab_size}; "
                          f"set model.vocab_size>={n_tok}")
    config = dataclasses.replace(config, pad_token_id=data.specials.pad)
    torch.manual_seed(cfg.seed)
    encoder = build_encoder(config)
    if encoder.feed == "streams":  # contiguous rows of the token stream (lm_stream.py), not data.format's examples
        data.format = "stream"
    objective = objective_cls(options, config, data.specials, n_tok,
                              word_table=continuation_table(data.tokenizer, config.tokenizer))
    objective.use_data(data)
    module = Pretrainer(encoder, objective)
    if config.init_from:
        load_hf_weights(module, config, config.init_from)
    return Built(config=config, data=data, module=module, seconds=time.perf_counter() - started)


def same_vocabulary(a: str, b: str) -> bool:
    """Whether two tokenizer.json files map the same tokens to the same ids."""
    import json

    vocab = [json.loads(Path(p).expanduser().read_text())["model"].get("vocab") for p in (a, b)]
    return vocab[0] == vocab[1]


def parameter_counts(module: Pretrainer) -> dict[str, int]:
    """Parameters per module and the unique total (shared or tied tensors counted once)."""
    enc = module.encoder
    counts = {"embeddings": _count(enc.embeddings), "encoder_layers": _count(enc.layers)}
    for name, child in module.objective.named_children():
        counts[name] = _count(child)
    counts["total"] = _count(module)
    return counts


def _count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())  # parameters() yields each shared tensor once


def preset_config(name: str) -> EncoderConfig:
    """The typed config of model preset conf/model/<name>.yaml, composed inside or outside a Hydra app."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside @hydra.main or a compose context: its search path
        return encoder_config(compose("config", overrides=[f"model={name}"]))
    register()
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        return encoder_config(compose("config", overrides=[f"model={name}"]))


def preset_parameters(name: str) -> int:
    """Unique parameters of a preset's encoder and MLM head (transformers' *ForMaskedLM count), on the meta device."""
    config = preset_config(name)
    with torch.device("meta"):  # shapes only: no memory, no init cost
        return _count(nn.ModuleList([build_encoder(config), MLMHead(config)]))
