"""Our XLNet (runner/models/xlnet.py with objective=plm's tied head) as transformers' XLNetLMHeadModel and back:
the config, the state-dict renaming both ways, the model built with our weights, and the family's adapter
(`XLNetAdapter`) through which runner/hf/mapping.py exports and imports it."""
from __future__ import annotations

import re
from typing import Any, ClassVar, Mapping

import torch

from runner.hf.adapters.base import FamilyAdapter
from runner.models.config import EncoderConfig
from runner.models.xlnet import XLNetConfig

_ATTN = ("q", "k", "v", "o", "r", "r_r_bias", "r_s_bias", "r_w_bias", "seg_embed")
# ours (under the encoder) -> transformers' XLNetLMHeadModel, per layer {i}
_LAYER = {**{f"attention.{p}": f"rel_attn.{p}" for p in _ATTN},
          "attention.norm.weight": "rel_attn.layer_norm.weight", "attention.norm.bias": "rel_attn.layer_norm.bias",
          "ffn.intermediate.weight": "ff.layer_1.weight", "ffn.intermediate.bias": "ff.layer_1.bias",
          "ffn.output.weight": "ff.layer_2.weight", "ffn.output.bias": "ff.layer_2.bias",
          "ffn.norm.weight": "ff.layer_norm.weight", "ffn.norm.bias": "ff.layer_norm.bias"}
_TOP = {"embeddings.word_embeddings.weight": "transformer.word_embedding.weight",
        "embeddings.mask_emb": "transformer.mask_emb"}
HEAD_BIAS = "lm_head.bias"  # the objective's (runner/objectives/plm.py) LM bias; its weight is the word table


def hf_config(config: XLNetConfig, *, reuse_len: int | None = None, bi_data: bool = False) -> Any:
    """transformers.XLNetConfig of our model config (two-way attention, untied per-layer biases)."""
    from transformers import XLNetConfig as HFConfig

    return HFConfig(vocab_size=config.vocab_size, d_model=config.hidden_size, n_layer=config.num_layers,
                    n_head=config.num_heads, d_inner=config.intermediate_size, ff_activation=config.activation,
                    untie_r=True, attn_type="bi", initializer_range=config.initializer_range,
                    layer_norm_eps=config.layer_norm_eps, dropout=config.hidden_dropout,
                    mem_len=config.mem_len or None, reuse_len=reuse_len, bi_data=bi_data,
                    clamp_len=-1 if config.clamp_len is None else config.clamp_len, same_length=False,
                    pad_token_id=config.pad_token_id, tie_word_embeddings=True)


def to_hf_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """XLNetLMHeadModel's state dict from ours: encoder keys (optionally under "encoder.") and the head bias
    (optionally under "objective."); lm_loss.weight is the word table (tied)."""
    out = {}
    for key, value in state.items():
        k = key.removeprefix("encoder.").removeprefix("objective.")
        if k in _TOP:
            out[_TOP[k]] = value
        elif k == HEAD_BIAS:
            out["lm_loss.bias"] = value
        elif m := re.fullmatch(r"layers\.(\d+)\.(.+)", k):
            out[f"transformer.layer.{m[1]}.{_LAYER[m[2]]}"] = value
        else:
            raise KeyError(f"no transformers XLNet counterpart for {key!r}")
    out["lm_loss.weight"] = out["transformer.word_embedding.weight"]
    return out


def from_hf_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(encoder state, objective state) from an XLNetLMHeadModel (or XLNetModel) state dict."""
    top = {v: k for k, v in _TOP.items()}
    layer = {v: k for k, v in _LAYER.items()}
    encoder, objective = {}, {}
    for key, value in state.items():
        k = key if key.startswith(("transformer.", "lm_loss.")) else f"transformer.{key}"
        if k in top:
            encoder[top[k]] = value
        elif k == "lm_loss.bias":
            objective[HEAD_BIAS] = value
        elif k == "lm_loss.weight":
            continue  # tied to the word table
        elif m := re.fullmatch(r"transformer\.layer\.(\d+)\.(.+)", k):
            encoder[f"layers.{m[1]}.{layer[m[2]]}"] = value
        else:
            raise KeyError(f"no counterpart in our XLNet for {key!r}")
    return encoder, objective


def hf_model(encoder: torch.nn.Module, head_bias: torch.Tensor | None = None, **config: Any) -> Any:
    """transformers' XLNetLMHeadModel holding our encoder's weights (and the PLM head's bias; zeros if None), in
    eval mode; config: hf_config's keywords (reuse_len, bi_data)."""
    from transformers import XLNetLMHeadModel

    model = XLNetLMHeadModel(hf_config(encoder.config, **config))
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items() if not k.endswith("_extra_state")}
    bias = head_bias if head_bias is not None else torch.zeros(encoder.config.vocab_size)
    state[f"objective.{HEAD_BIAS}"] = bias
    missing, unexpected = model.load_state_dict(to_hf_state(state), strict=False)
    need = [k for k in missing if k != "lm_loss.weight"]
    if need or unexpected:
        raise RuntimeError(f"XLNet weight mapping: missing {need}, unexpected {unexpected}")
    model.tie_weights()
    return model.eval()


class XLNetAdapter(FamilyAdapter):
    """model.family=xlnet as XLNetLMHeadModel (relative positions: no table; its LM head's weight is the word table)."""

    families = ("xlnet",)
    model_type = "xlnet"
    tied = (*FamilyAdapter.tied, "lm_loss.weight")
    config_keys: ClassVar[dict[str, str]] = {  # XLNetConfig's names
        "d_model": "hidden_size", "n_layer": "num_layers", "n_head": "num_heads", "d_inner": "intermediate_size",
        "vocab_size": "vocab_size"}

    def transformers_class(self, nsp: bool, discriminator: bool = False) -> type:
        """XLNetLMHeadModel."""
        from transformers import XLNetLMHeadModel

        return XLNetLMHeadModel

    def transformers_config(self, config: EncoderConfig, nsp: bool, specials: dict[str, int],
                            discriminator: bool = False) -> Any:
        """hf_config of ours (XLNet's config names no special token but padding, which ours carries)."""
        return hf_config(config)

    def export_state(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """to_hf_state of every tensor but the modules' extra state."""
        return to_hf_state({k: v for k, v in state.items() if not k.endswith("_extra_state")})

    def import_state(self, ours: Mapping[str, torch.Tensor], theirs: Mapping[str, torch.Tensor],
                     config: EncoderConfig) -> dict[str, torch.Tensor]:
        """from_hf_state, under the module's encoder. and objective. prefixes."""
        encoder, objective = from_hf_state(dict(theirs))
        return {**{f"encoder.{k}": v for k, v in encoder.items()},
                **{f"objective.{k}": v for k, v in objective.items()}}
