"""Hugging Face transformers interop, whatever the family: export to a `save_pretrained` directory, the parameters
an export holds, and initialisation from a local checkpoint directory (model.init_from).

Everything that differs between families (the transformers class and config, the rename table, what no class can
hold) is the family's adapter's (runner/hf/adapters/<family>.py, found by runner/hf/registry.py); this module asks
the adapter of `config.family` and never tests which family it is."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from runner.data.cache import WriteFailed, tensor_bytes, write_error
from runner.data.tokenizer import export_tokenizer, special_added_tokens
from runner.config.errors import ConfigError
from runner.models.config import EncoderConfig
from runner.hf.registry import adapter_for, adapters


def hf_model_class(family: str, nsp: bool, discriminator: bool = False) -> type:
    """The transformers class whose parameters ours map onto (ELECTRA: discriminator or generator / MLM)."""
    return adapter_for(family).transformers_class(nsp, discriminator)


def hf_config(config: EncoderConfig, nsp: bool, specials: dict[str, int], discriminator: bool = False) -> Any:
    """The transformers config object equivalent to ours (ELECTRA: of the discriminator or the generator)."""
    return adapter_for(config.family).transformers_config(config, nsp, specials, discriminator)


def to_hf_state_dict(module: nn.Module | dict[str, torch.Tensor], family: str) -> dict[str, torch.Tensor]:
    """Our module's state dict (or a dict of tensors under our names) under transformers' names, attention
    projections fused or split as the family's class holds them (tied decoder weights are left to transformers)."""
    return adapter_for(family).export_state(module if isinstance(module, dict) else module.state_dict())


def hf_unsupported(config: EncoderConfig, nsp: bool = False) -> str | None:
    """Why no transformers class can hold this model (None when one can), as the family's adapter says: one line
    naming the key (nsp: with a sentence-pair head, objective=mlm_nsp or mlm_sop)."""
    return adapter_for(config.family).unsupported(config, nsp)


def build_hf_model(module: nn.Module | dict[str, torch.Tensor], config: EncoderConfig, nsp: bool,
                   specials: dict[str, int] | None = None, discriminator: bool = False):
    """A transformers model holding exactly our weights (module, or tensors under our names)."""
    if (why := hf_unsupported(config, nsp)) is not None:
        raise ConfigError(why)
    hf = hf_model_class(config.family, nsp, discriminator)(hf_config(config, nsp, specials or {}, discriminator))
    adapter = adapter_for(config.family)
    missing, unexpected = hf.load_state_dict(to_hf_state_dict(module, config.family), strict=False)
    # Only the tied decoder (weight = word embeddings, bias = the head's bias) may be filled by tying.
    missing = [k for k in missing if not k.endswith(adapter.tied)]
    if missing or unexpected:
        raise RuntimeError(f"export mismatch: missing {missing}, unexpected {unexpected}")
    hf.tie_weights()
    return hf.eval()


def hf_parameter_count(config: EncoderConfig, nsp: bool, discriminator: bool = False) -> int:
    """Parameters of the transformers model an export of this config holds, as transformers counts them
    (`num_parameters()`: each tied or shared tensor once), from the model built on the meta device: shapes only,
    no memory and no initialisation, whatever the size. ConfigError when no transformers class holds it."""
    if (why := hf_unsupported(config, nsp)) is not None:
        raise ConfigError(why)
    with torch.device("meta"):
        hf = hf_model_class(config.family, nsp, discriminator)(hf_config(config, nsp, {}, discriminator))
    return int(hf.num_parameters())


def exported_parameters(parts: Mapping[str, Any]) -> dict[str, int]:
    """Parameters of each model a run exports, as transformers counts them, by export subdirectory ("hf", and
    "hf_generator" for ELECTRA): parts is objective.exports(encoder), each read for its config, pair_head and
    discriminator only; nothing is written and no weights are allocated (hf_parameter_count).
    {} where the run exports nothing: transformers missing, or a part no transformers class holds (hf_unsupported)."""
    try:
        import transformers  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the user's install
        return {}
    if any(hf_unsupported(p.config, bool(p.pair_head)) is not None for p in parts.values()):
        return {}
    return {sub: hf_parameter_count(p.config, bool(p.pair_head), bool(p.discriminator)) for sub, p in parts.items()}


def export(module: nn.Module | dict[str, torch.Tensor], config: EncoderConfig, nsp: bool, tokenizer, out_dir: Path,
           discriminator: bool = False) -> Path:
    """Write a `save_pretrained` directory (weights, config, tokenizer) that AutoModelForMaskedLM loads
    (AutoModelForPreTraining for an ELECTRA discriminator)."""
    try:
        from transformers import PreTrainedTokenizerFast
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our console already reports the export
    except ImportError as e:  # pragma: no cover - depends on the user's install
        raise ConfigError("export needs transformers: pip install -e '.[hf]'") from e
    # Special tokens by name, per tokenizer kind: wordpiece [PAD] [UNK] [CLS] [SEP] [MASK]; unigram (ALBERT)
    # <pad> <unk> [CLS] [SEP] [MASK]; bpe (RoBERTa) <pad> <unk> <s> </s> <mask>, <s> and </s> also bos and eos.
    # Each is declared as the released checkpoints of its kind declare it (RoBERTa's and ALBERT's mask takes the
    # space before it), so fill-mask text reads as there (runner/data/tokenizer.py export_tokenizer).
    tokens = special_added_tokens(config.tokenizer)
    if config.tokenizer == "bpe":
        tokens.update(bos=tokens["cls"], eos=tokens["sep"])
    named = adapter_for(config.family).special_tokens  # the ids its transformers config names
    ids = {f"{k}_token_id": tokenizer.token_to_id(t.content) for k, t in tokens.items() if k in named}
    hf = build_hf_model(module, config, nsp, ids, discriminator)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    inputs = ["input_ids", "token_type_ids", "attention_mask"] if config.type_vocab_size > 1 else \
        ["input_ids", "attention_mask"]
    fast = PreTrainedTokenizerFast(tokenizer_object=export_tokenizer(tokenizer, config.tokenizer),
                                   model_max_length=config.max_seq_len, model_input_names=inputs,
                                   **{f"{k}_token": v for k, v in tokens.items()})
    try:
        hf.save_pretrained(tmp)
        fast.save_pretrained(tmp)
    except BaseException as e:  # a full disk: no half-written export under either name
        shutil.rmtree(tmp, ignore_errors=True)
        if write_error(e):
            raise WriteFailed(out_dir, e, tensor_bytes(dict(hf.state_dict())),
                              f"free space and export again: python -m runner export={out_dir.parent}") from e
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)  # a crash mid-export never leaves a half-written directory under the final name
    return out_dir


def load_hf_weights(module: nn.Module, config: EncoderConfig, path: str) -> list[str]:
    """Initialise our module from a local transformers checkpoint; returns the names left at random init."""
    from transformers import AutoConfig

    if (why := hf_unsupported(config)) is not None:
        raise ConfigError(f"model.init_from={path!r}: {why}")
    p = Path(path).expanduser()
    if not (p / "config.json").is_file():
        raise ConfigError(f"model.init_from={path!r} is not a transformers checkpoint directory "
                          "(no config.json); give a directory written by save_pretrained")
    theirs = AutoConfig.from_pretrained(p)
    bad = _config_mismatches(config, theirs, p / "config.json")
    if bad:
        raise ConfigError("model.init_from does not fit the model: " + "; ".join(bad) +
                          " (set the model keys to match)")
    state = _read_weights(p)
    ours = module.state_dict()
    loaded = adapter_for(config.family).import_state(ours, state, config)
    module.load_state_dict(loaded, strict=False)
    return [name for name in ours if name not in loaded]


def _config_mismatches(config: EncoderConfig, theirs: Any, where: Path) -> list[str]:
    """Each way a transformers config differs from the model ours builds (one phrase each; [] when it fits): a
    checkpoint of a model_type whose config keys mean other things (an adapter's own_model_type_only), else the
    keys the family's adapter compares."""
    adapter, kind = adapter_for(config.family), getattr(theirs, "model_type", None)
    exclusive = adapter.own_model_type_only or any(a.own_model_type_only and a.model_type == kind
                                                   for a in adapters().values())
    if kind != adapter.model_type and exclusive:
        return [f"model.family={config.family} but {where} has model_type={kind}"]
    return adapter.config_mismatches(config, theirs, where)


def _read_weights(p: Path) -> dict[str, torch.Tensor]:
    """The tensors stored in a checkpoint directory, exactly as saved (nothing randomly filled in)."""
    if (p / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(p / "model.safetensors")
    if (p / "pytorch_model.bin").is_file():
        import pickle

        try:  # weights_only: a .bin is a pickle, and one naming anything but tensors could run code
            return torch.load(p / "pytorch_model.bin", map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise ConfigError(f"model.init_from={str(p)!r}: pytorch_model.bin was not loaded, it holds more than "
                              "tensors (unpickling it could run code); use a model.safetensors checkpoint") from e
    raise ConfigError(f"model.init_from={str(p)!r} holds no model.safetensors or pytorch_model.bin")
