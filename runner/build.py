"""Assemble a run from the composed config: data, encoder, objective (one builder per group)."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from runner.data.pretraining import PretrainingData, build_data
from runner.data.words import continuation_table
from runner.errors import ConfigError
from runner.models import Encoder, EncoderConfig
from runner.models.heads import MLMHead
from runner.models.hf import load_hf_weights
from runner.models.txl import TransformerXL
from runner.objectives.base import Objective
from runner.objectives.mlm import MaskedLM
from runner.validate import validate


class Pretrainer(nn.Module):
    """An encoder and the objective that trains it; the objective receives the encoder on each call."""

    def __init__(self, encoder: Encoder | TransformerXL, objective: Objective):
        super().__init__()
        self.encoder, self.objective = encoder, objective
        objective.attach(encoder)  # before any optimizer sees the parameters (ELECTRA shares embeddings)

    def forward(self, batch: dict[str, torch.Tensor], norms: dict) -> tuple[torch.Tensor, dict]:
        """Loss of a batch, normalised by `norms`, and its stats."""
        return self.objective.loss(self.encoder, batch, norms)


@dataclass
class Built:
    """Everything a training run needs, before the loop starts."""

    config: EncoderConfig
    data: PretrainingData
    module: Pretrainer
    seconds: float = 0.0  # to build it: corpus, tokenizer, tokenized splits, model

    @property
    def objective(self) -> Objective:
        """The objective module."""
        return self.module.objective


def encoder_config(cfg: DictConfig) -> EncoderConfig:
    """The typed encoder config of the `model` group (also from a run's saved, untyped config.yaml)."""
    return EncoderConfig(**OmegaConf.to_container(cfg.model, resolve=True))


def build(cfg: DictConfig) -> Built:
    """Validate the config, then build data, encoder and objective."""
    started = time.perf_counter()
    validate(cfg)
    config = encoder_config(cfg)
    objective_cls = get_class(cfg.objective._target_)
    objective_cls.check(config, cfg.objective.name)
    if config.family == "txl" and not getattr(objective_cls, "streams", False):
        check_masked_txl(config, objective_cls, cfg.objective)
    objective_cls.check_options(config, cfg.objective)
    tokenizer_path = None  # keep a checkpoint's vocab; data.tokenizer.path, when set, wins (build_data)
    if config.init_from and (Path(config.init_from).expanduser() / "tokenizer.json").is_file():
        tokenizer_path = str(Path(config.init_from).expanduser() / "tokenizer.json")
    data = build_data(cfg.data, tokenizer_kind=config.tokenizer, vocab_size=config.vocab_size,
                      lowercase=config.lowercase, pairs=objective_cls.needs_pairs, tokenizer_path=tokenizer_path,
                      objective=cfg.objective.name)
    n_tok = data.tokenizer.get_vocab_size()
    if n_tok > config.vocab_size:
        src = "" if data.tokenizer_source == "trained" else f" ({data.tokenizer_source})"
        raise ConfigError(f"the tokenizer{src} has {n_tok} tokens but model.vocab_size={config.vocab_size}; "
                          f"set model.vocab_size>={n_tok}")
    if config.family == "txl":  # contiguous rows of the token stream (lm_stream.py), not data.format's examples
        data.format = "stream"
    config = dataclasses.replace(config, pad_token_id=data.specials.pad)
    torch.manual_seed(cfg.seed)
    encoder = TransformerXL(config) if config.family == "txl" else Encoder(config)
    try:
        objective = instantiate(cfg.objective, model_config=config, specials=data.specials, token_vocab_size=n_tok,
                                word_table=continuation_table(data.tokenizer, config.tokenizer))
    except InstantiationException as e:  # Hydra wraps our one-line ConfigErrors; unwrap them for the CLI
        if isinstance(e.__cause__, ConfigError):
            raise e.__cause__ from None
        raise
    module = Pretrainer(encoder, objective)
    if config.init_from:
        load_hf_weights(module, config, config.init_from)
    return Built(config=config, data=data, module=module, seconds=time.perf_counter() - started)


def check_masked_txl(config: EncoderConfig, objective_cls: type, options: DictConfig) -> None:
    """A Transformer-XL backbone serves objective=mlm when it attends both ways with a full softmax (XLNet's
    backbone with memory, trained by masking); the pair and generator objectives need the BERT-family encoder."""
    name = options.name
    if objective_cls is not MaskedLM:
        raise ConfigError(f"model.family=txl serves objective=clm, or objective=mlm with model.bidirectional=true; "
                          f"objective={name} needs a BERT-family encoder (its pair head or generator)")
    if not config.bidirectional:
        raise ConfigError(f"model.family=txl is a causal decoder, but objective={name} predicts masked tokens from "
                          "both sides; use objective=clm (the txl presets' default), or model.bidirectional=true "
                          "(README: memory on a bidirectional encoder)")
    if config.cutoffs:
        raise ConfigError(f"objective={name} decodes with one tied embedding table, but model.cutoffs="
                          f"{list(config.cutoffs)} makes the embeddings adaptive; set model.cutoffs=[]")
    if options.get("masking") == "static":
        raise ConfigError("objective.masking=static stores one set of masks per example, but model.family=txl reads "
                          "contiguous streams, not examples; use objective.masking=dynamic")


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

    from runner.schema import register

    if GlobalHydra.instance().is_initialized():  # inside @hydra.main or a compose context: its search path
        return encoder_config(compose("config", overrides=[f"model={name}"]))
    register()
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        return encoder_config(compose("config", overrides=[f"model={name}"]))


def preset_parameters(name: str) -> int:
    """Unique parameters of a preset's encoder and MLM head (transformers' *ForMaskedLM count), on the meta device."""
    config = preset_config(name)
    with torch.device("meta"):  # shapes only: no memory, no init cost
        return _count(nn.ModuleList([Encoder(config), MLMHead(config)]))


def albert_contrast() -> dict[str, float]:
    """ALBERT's headline (Lan et al. 2020, Table 2: 18M vs 334M): albert_large against bert_large, both counted
    from their presets with an MLM head."""
    albert, bert = preset_parameters("albert_large"), preset_parameters("bert_large")
    return {"albert_large": albert, "bert_large": bert, "ratio": round(albert / bert, 4)}
