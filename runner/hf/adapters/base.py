"""What a family's transformers adapter declares (`FamilyAdapter`): its transformers class and config, the renaming of
its parameters both ways, what no transformers class can hold and why, and the config keys an import compares.

A family's adapter is a subclass in its own file under runner/hf/adapters/ (or in a BERTLAB_PLUGINS module) naming
the model.family values it serves in `families`; runner/hf/registry.py finds it, and runner/hf/mapping.py asks it
everything family-specific. `RenamedAdapter` is the machinery of families whose parameters map one to one onto
their class's by a table of regular expressions; `NoTransformersClass` is a family that transformers has no class
for.

Attention projections travel in the layout of the transformers class (`qkv_layout`): BERT, RoBERTa, ALBERT and
ELECTRA keep query, key and value apart, ModernBERT fuses them into one Wqkv; a model trained with the other
model.qkv is split or fused on the way out and back on the way in, so model.qkv never blocks an export."""
from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Mapping

import torch

from runner.config.errors import ConfigError
from runner.models.config import EncoderConfig


def fmt(value: Any) -> str:
    """A config value as the command line writes it (null, true, false, or the value)."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


class FamilyAdapter:
    """How the models of one family travel to transformers and back. One instance per model.family value it serves
    (`family`: that value, for messages)."""

    families: ClassVar[tuple[str, ...]] = ()  # model.family values it serves
    model_type: ClassVar[str | None] = None  # transformers' model_type in its checkpoints' config.json
    # a checkpoint of another model_type never initialises it (and it never initialises another family): its
    # config keys mean other things there; otherwise the compared keys decide
    own_model_type_only: ClassVar[bool] = False
    # whether it has a transformers class with a sentence-pair head (objective=mlm_nsp or mlm_sop)
    pair_head: ClassVar[bool] = False
    # transformers parameter names (suffixes) filled by tying to another tensor, never by our weights
    tied: ClassVar[tuple[str, ...]] = ("decoder.weight", "decoder.bias")
    # the special tokens whose ids its transformers config names (`<role>_token_id`)
    special_tokens: ClassVar[tuple[str, ...]] = ("pad", "bos", "eos")
    # transformers config key -> our model key, compared when model.init_from reads a checkpoint
    config_keys: ClassVar[dict[str, str]] = {
        "hidden_size": "hidden_size", "num_hidden_layers": "num_layers", "num_attention_heads": "num_heads",
        "intermediate_size": "intermediate_size", "vocab_size": "vocab_size",
        "max_position_embeddings": "max_position_embeddings"}

    def __init__(self, family: str) -> None:
        self.family = family

    def unsupported(self, config: EncoderConfig, nsp: bool = False) -> str | None:
        """Why no transformers class can hold this model (None when one can); one line naming the key."""
        return self.pair_unsupported(config, nsp)

    def pair_unsupported(self, config: EncoderConfig, nsp: bool) -> str | None:
        """Why a sentence-pair head (nsp) has no place in its transformers classes, or None."""
        if nsp and not self.pair_head:
            return (f"model.family={config.family} has no transformers class with a next-sentence or sentence-order "
                    "head; use objective=mlm or rtd, or model.family=bert or albert, to export")
        return None

    def transformers_class(self, nsp: bool, discriminator: bool = False) -> type:
        """The transformers class whose parameters ours map onto (nsp: with the pair head; discriminator: ELECTRA's)."""
        raise NotImplementedError

    def transformers_config(self, config: EncoderConfig, nsp: bool, specials: dict[str, int],
                            discriminator: bool = False) -> Any:
        """The transformers config object equivalent to ours; specials: `<role>_token_id` values to carry."""
        raise NotImplementedError

    def export_state(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Tensors under our names (encoder.*, objective.*) under transformers' names (tied ones left out)."""
        raise NotImplementedError

    def import_state(self, ours: Mapping[str, torch.Tensor], theirs: Mapping[str, torch.Tensor],
                     config: EncoderConfig) -> dict[str, torch.Tensor]:
        """The checkpoint's tensors (theirs) under our module's names (ours: its state dict), in the layout
        config builds; names it has no tensor for are left out."""
        raise NotImplementedError

    def config_mismatches(self, config: EncoderConfig, theirs: Any, where: Path) -> list[str]:
        """Each way a transformers config of its model_type differs from the model ours builds (one phrase each)."""
        return [f"model.{ours}={getattr(config, ours)} but {where} has {k}={getattr(theirs, k, None)}"
                for k, ours in self.config_keys.items() if getattr(theirs, k, None) != getattr(config, ours)]


class NoTransformersClass(FamilyAdapter):
    """A family that no transformers class holds: its runs keep their checkpoint and skip the export with a note.
    Also what runner/hf/registry.py answers for a family without an adapter of its own."""

    def why(self) -> str:
        """The note: why there is no transformers class, and what holds the model instead."""
        return (f"model.family={self.family} has no transformers adapter (a FamilyAdapter subclass in "
                "runner/hf/adapters/ or a BERTLAB_PLUGINS module); the run's checkpoints/last.pt holds the model")

    def unsupported(self, config: EncoderConfig, nsp: bool = False) -> str | None:
        """Always why()."""
        return self.why()

    def transformers_class(self, nsp: bool, discriminator: bool = False) -> type:
        """None there: a ConfigError saying why."""
        raise ConfigError(self.why())


_QKV_NAME = re.compile(r"(.*\.attention)\.(qkv|query|key|value)\.(weight|bias)")
_QKV_PARTS = ("query", "key", "value")


def qkv_layout(state: Mapping[str, torch.Tensor], fused: bool) -> dict[str, torch.Tensor]:
    """state (tensors under our names) with every attention's projections in one layout, the rest as it is:
    fused, one `attention.qkv` whose rows are queries, keys, values (model.qkv=fused, transformers' Wqkv); or
    separate `attention.query|key|value` (model.qkv=separate, BERT's). The one conversion both directions use:
    export turns a model into its transformers class's layout, import turns that back into the model's."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        m = _QKV_NAME.fullmatch(name)
        if m is None or (m[2] == "qkv") == fused:  # not a projection, or already in the layout
            out[name] = tensor
        elif not fused:  # qkv -> query, key, value
            for part, rows in zip(_QKV_PARTS, tensor.chunk(3, dim=0)):
                out[f"{m[1]}.{part}.{m[3]}"] = rows
        else:  # query, key, value -> qkv, at the query's place; a projection missing one of them stays as it is
            parts = [state.get(f"{m[1]}.{part}.{m[3]}") for part in _QKV_PARTS]
            if any(p is None for p in parts):
                out[name] = tensor
            elif m[2] == "query":
                out[f"{m[1]}.qkv.{m[3]}"] = torch.cat(parts, dim=0)
    return out


class RenamedAdapter(FamilyAdapter):
    """A family whose parameters map one to one onto its transformers class's by a rename table (our name pattern,
    transformers' name template), attention projections fused or split as that class holds them."""

    fused_qkv: ClassVar[bool] = False  # its class holds one Wqkv (rows q, k, v); else query, key and value apart

    def rename_table(self) -> list[tuple[str, str]]:
        """Regex pairs mapping our full parameter names onto transformers'."""
        raise NotImplementedError

    @cached_property
    def _compiled(self) -> list[tuple[re.Pattern, str]]:
        return [(re.compile(pat), tpl) for pat, tpl in self.rename_table()]

    def to_hf_name(self, name: str) -> str | None:
        """transformers' name for one of our parameters, or None if it has no counterpart."""
        for pat, tpl in self._compiled:
            if pat.fullmatch(name):
                return pat.sub(tpl, name)
        return None

    def export_state(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Tensors under transformers' names, attention projections in its class's layout; a KeyError names a
        parameter without a counterpart."""
        out = {}
        for name, tensor in qkv_layout(state, self.fused_qkv).items():
            hf = self.to_hf_name(name)
            if hf is None:
                raise KeyError(f"parameter {name!r} has no transformers counterpart for family {self.family!r}")
            out[hf] = tensor
        return out

    def import_state(self, ours: Mapping[str, torch.Tensor], theirs: Mapping[str, torch.Tensor],
                     config: EncoderConfig) -> dict[str, torch.Tensor]:
        """Every tensor of ours that the checkpoint holds, read in its class's attention layout, then put back
        into the layout config builds."""
        loaded = {}
        for name in qkv_layout(ours, self.fused_qkv):  # our names as the checkpoint's class lays out attention
            hf = self.to_hf_name(name)
            if hf is not None and hf in theirs:
                loaded[name] = theirs[hf]
        return qkv_layout(loaded, config.qkv == "fused")  # back into this model's layout
