"""Checks of values that have the right type but do not fit together; each failure is one line naming the
keys and the fix, raised before any data or model is built. Each group checks its own values (its schema's
`check()`: runner/schema.py for data, optimizer, trainer, logger, eval, probes and crossover); this module calls
those and checks what spans groups, and the machine the run is on."""
from __future__ import annotations

import torch
from omegaconf import OmegaConf

from runner.budget import budget_of
from runner.errors import ConfigError
from runner.data.tokenizer import ROLES, SPECIALS
from runner.models.registry import encoder_class, model_config
from runner.schema import (CrossoverConfig, DataConfig, EvalConfig, LambConfig, LoggerConfig, OptimizerConfig,
                           ProbeConfig, TrainerConfig)


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def typed(node, schema: type):
    """A group's node as its schema's dataclass (OmegaConf.to_object). A node of another type (a run's saved,
    untyped config.yaml, a hand-made config) is merged onto the schema's defaults first."""
    kind = OmegaConf.get_type(node)
    if not (isinstance(kind, type) and issubclass(kind, schema)):
        node = OmegaConf.merge(OmegaConf.structured(schema), node)
    return OmegaConf.to_object(node)


def optimizer_schema(node) -> type:
    """The optimizer group's schema: LAMB's or AdamW's, by its _target_."""
    kind = OmegaConf.get_type(node)
    if isinstance(kind, type) and issubclass(kind, OptimizerConfig):
        return kind
    return LambConfig if node.get("_target_") == LambConfig._target_ else OptimizerConfig


def validate(cfg) -> None:
    """Raise ConfigError on the first inconsistent setting."""
    m, d, t, o = cfg.model, cfg.data, cfg.trainer, cfg.optimizer
    config = model_config(m)  # the family's schema (runner/models/registry.py); an unknown family fails here
    config.check()
    if config.max_seq_len is not None:  # a position table (relative positions: any length)
        pad = SPECIALS[config.tokenizer].index(ROLES[config.tokenizer]["pad"])  # the tokenizer kind's padding id
        offset = config.offset_for(pad)  # RoBERTa: positions start after the padding id
        _need(d.seq_len <= config.max_position_embeddings - offset,
              f"data.seq_len={d.seq_len} exceeds model.max_position_embeddings={config.max_position_embeddings}"
              f"{f' minus the position offset {offset}' if offset else ''}; lower data.seq_len or raise "
              "model.max_position_embeddings")
    typed(d, DataConfig).check()
    _need(d.get("packing") is not True or encoder_class(config.family).packs,
          f"data.packing=true packs examples into shared rows, but model.family={config.family} reads "
          f"{encoder_class(config.family).feed} without padding to remove; drop data.packing=true (the default, "
          "null, packs where it applies)")
    typed(o, optimizer_schema(o)).check()
    typed(t, TrainerConfig).check()  # its budget too: one of steps, tokens, flops, minutes, positive
    distributed_settings(t)
    budget = budget_of(t.get("budget"))
    _need(budget is None or budget.kind != "minutes" or o.warmup_steps is None,
          f"optimizer.warmup_steps={o.warmup_steps} counts steps, but trainer.budget.minutes has no step count; "
          "use optimizer.warmup_fraction (a share of the time)")
    typed(cfg.logger, LoggerConfig).check()
    if (p := cfg.get("probes")) is not None and p.enabled:
        typed(p, ProbeConfig).check()
    if (x := cfg.get("crossover")) is not None and x.enabled:
        _need(budget is not None and budget.kind == "flops", "crossover.enabled=true keeps snapshots at training "
              "FLOPs up to the budget; set trainer.budget.flops (e.g. trainer.budget.flops=1e13)")
        typed(x, CrossoverConfig).check()
    if (e := cfg.get("eval")) is not None and e.downstream is not False:  # on, or auto (on in a multirun):
        eval_settings(cfg)  # checked now, not after the pretraining it follows


def eval_settings(cfg) -> None:
    """The eval group (its own values, then the pooling the model allows): checked whenever downstream evaluation
    may run, and by python -m runner.finetune."""
    e = cfg.eval
    typed(e, EvalConfig).check()
    causal = model_config(cfg.model).causal
    _need(not (causal and e.pooling == "cls"), "eval.pooling=cls on a causal Transformer-XL sees only the first "
          "token; use eval.pooling=last or mean")


def distributed_settings(t) -> None:
    """trainer.precision, strategy, compile and resume, and the torchrun launch they run under."""
    import os
    import shutil

    from runner import distributed
    from runner.parallel import STRATEGIES
    from runner.precision import PRECISIONS

    _need(t.precision in PRECISIONS, f"trainer.precision={t.precision!r} must be {', '.join(PRECISIONS)}")
    _need(t.strategy in STRATEGIES, f"trainer.strategy={t.strategy!r} must be {' or '.join(STRATEGIES)}")
    _need(t.resume in (True, False, "auto"), f"trainer.resume={t.resume!r} must be true, false or auto")
    device = resolve_device(t.device)
    if t.precision == "bf16" and device.type == "cuda":
        _need(torch.cuda.is_bf16_supported(), f"trainer.precision=bf16 but {torch.cuda.get_device_name(device)} has "
              "no bf16; use trainer.precision=fp16 (loss scaling) or auto")
    _need(not (t.compile and device.type == "cpu" and not any(map(shutil.which, ("c++", "g++", "clang++")))),
          "trainer.compile=true on the CPU needs a C++ compiler (torch inductor), and none is on PATH; install one "
          "(e.g. g++) or drop trainer.compile")
    if distributed.launched() and device.type == "cuda":
        local, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        _need(local < gpus or gpus == 1, f"torchrun started local rank {local} but this node has {gpus} GPUs; use "
              f"--nproc_per_node={gpus} or fewer")


def resolve_device(name: str) -> torch.device:
    """The device for trainer.device ('auto': CUDA if present, else CPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"trainer.device={name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    _need(dev.type != "cuda" or torch.cuda.is_available(),
          f"trainer.device={name!r} but CUDA is not available here; use trainer.device=auto or cpu")
    _need(dev.type != "mps" or torch.backends.mps.is_available(),
          f"trainer.device={name!r} but MPS is not available here; use trainer.device=auto or cpu")
    return dev
