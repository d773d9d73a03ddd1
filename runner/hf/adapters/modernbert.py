"""ModernBERT as transformers' ModernBertForMaskedLM: pre-norm, rotary positions, no position or segment table, fused
attention projections (Wqkv), a GLU feed-forward, global and sliding-window layers (layer_types), the decoder tied to
the token embeddings."""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from runner.config.errors import ConfigError
from runner.hf.adapters.base import RenamedAdapter, fmt
from runner.models.config import EncoderConfig


def modernbert_layer_types(config: EncoderConfig) -> list[str]:
    """transformers' ModernBERT layer_types of our layers: full_attention where global, else sliding_attention."""
    return ["full_attention" if config.global_layer(i) else "sliding_attention" for i in range(config.num_layers)]


def _activations(config: EncoderConfig) -> dict[str, str]:
    """ModernBERT's two activations: its GLU's (ours: model.activation, or silu for ffn=swiglu) and its head's."""
    return {"hidden_activation": "silu" if config.ffn == "swiglu" else config.activation,
            "classifier_activation": config.activation}


class ModernBertAdapter(RenamedAdapter):
    """model.family=modernbert."""

    families = ("modernbert",)
    model_type = "modernbert"
    own_model_type_only = True  # ModernBertConfig's keys are not BertConfig's
    fused_qkv = True
    special_tokens = ("pad", "bos", "eos", "cls", "sep")  # ModernBERT's own defaults index its 50k vocabulary
    config_keys: ClassVar[dict[str, str]] = {**RenamedAdapter.config_keys, "norm_eps": "layer_norm_eps"}
    # What transformers' ModernBERT fixes: (key, its value, what it does). ffn=swiglu is its GLU with silu, any
    # model.bias its flags (all equal), local_window/global_every its layer_types, qkv=separate fused at export.
    fixed: ClassVar[list[tuple[str, Any, str]]] = [
        ("position", "rope", "rotates queries and keys"),
        ("norm_position", "pre", "normalises before each block, with a final norm"),
        ("norm", "layernorm", "uses LayerNorm"),
        ("embedding_norm", True, "normalises the embeddings (its first layer has no attention norm)"),
        ("type_vocab_size", 0, "has no segment embeddings"),
        ("embedding_size", None, "has no embedding projection"),
        ("share", "none", "shares no layers"),
    ]

    def rename_table(self) -> list[tuple[str, str]]:
        """The backbone under "model"; the head's dense and norm, and the decoder's bias (its weight is tied)."""
        return [
            (r"encoder\.embeddings\.word_embeddings\.weight", "model.embeddings.tok_embeddings.weight"),
            (r"encoder\.embeddings\.norm\.(weight|bias)", "model.embeddings.norm.\\1"),
            (r"encoder\.layers\.(\d+)\.attn_norm\.(weight|bias)", "model.layers.\\1.attn_norm.\\2"),
            (r"encoder\.layers\.(\d+)\.attention\.qkv\.(weight|bias)", "model.layers.\\1.attn.Wqkv.\\2"),
            (r"encoder\.layers\.(\d+)\.attention\.out\.(weight|bias)", "model.layers.\\1.attn.Wo.\\2"),
            (r"encoder\.layers\.(\d+)\.ffn_norm\.(weight|bias)", "model.layers.\\1.mlp_norm.\\2"),
            (r"encoder\.layers\.(\d+)\.intermediate\.(weight|bias)", "model.layers.\\1.mlp.Wi.\\2"),
            (r"encoder\.layers\.(\d+)\.output\.(weight|bias)", "model.layers.\\1.mlp.Wo.\\2"),
            (r"encoder\.final_norm\.(weight|bias)", "model.final_norm.\\1"),
            (r"objective\.mlm_head\.transform\.(weight|bias)", "head.dense.\\1"),
            (r"objective\.mlm_head\.norm\.(weight|bias)", "head.norm.\\1"),
            (r"objective\.mlm_head\.bias", "decoder.bias"),
        ]

    def transformers_class(self, nsp: bool, discriminator: bool = False) -> type:
        """ModernBertForMaskedLM; none with a pair head."""
        import transformers

        if nsp:
            raise ConfigError("model.family=modernbert has no transformers class with a next-sentence head; "
                              "use objective=mlm to export")
        return transformers.ModernBertForMaskedLM

    def transformers_config(self, config: EncoderConfig, nsp: bool, specials: dict[str, int],
                            discriminator: bool = False) -> Any:
        """transformers' ModernBertConfig of ours: model.bias sets every bias flag but the decoder's (always there),
        layer_types spell out global_every and local_window, the rope thetas go per layer type."""
        import transformers

        local = config.local_rope_theta if config.local_rope_theta is not None else config.rope_theta
        window = {} if config.local_window is None else {"local_attention": config.local_window}
        # special ids our tokenizer has (export passes them); ModernBERT's own defaults index its 50k vocabulary
        ids = {"pad_token_id": config.pad_token_id, "bos_token_id": None, "eos_token_id": None, "cls_token_id": None,
               "sep_token_id": None, **specials}
        return transformers.ModernBertConfig(
            architectures=["ModernBertForMaskedLM"], vocab_size=config.vocab_size, hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size, num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads, max_position_embeddings=config.max_position_embeddings,
            initializer_range=config.initializer_range, norm_eps=config.layer_norm_eps, norm_bias=config.bias,
            attention_bias=config.bias, mlp_bias=config.bias, classifier_bias=config.bias, decoder_bias=True,
            attention_dropout=config.attention_dropout, embedding_dropout=config.hidden_dropout,
            mlp_dropout=config.hidden_dropout, classifier_dropout=config.hidden_dropout,
            layer_types=modernbert_layer_types(config), tie_word_embeddings=True,
            rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": config.rope_theta},
                             "sliding_attention": {"rope_type": "default", "rope_theta": local}},
            **_activations(config), **window, **ids)

    def unsupported(self, config: EncoderConfig, nsp: bool = False) -> str | None:
        """The pair head, the later improvements in ModernBERT's one combination (`fixed`), and a GLU."""
        if (why := self.pair_unsupported(config, nsp)) is not None:
            return why
        for key, value, does in self.fixed:
            if getattr(config, key) != value:
                return (f"model.{key}={fmt(getattr(config, key))} has no transformers ModernBERT counterpart (it "
                        f"{does}); use model.{key}={fmt(value)} to export or import")
        if config.ffn == "mlp":
            return ("model.ffn=mlp has no transformers ModernBERT counterpart (its feed-forward is a GLU); use "
                    "model.ffn=geglu (or swiglu) to export or import")
        return None

    def config_mismatches(self, config: EncoderConfig, theirs: Any, where: Path) -> list[str]:
        """The shapes, then what changes the function without changing a shape: layer pattern, window, thetas,
        activations, bias flags."""
        bad = super().config_mismatches(config, theirs, where)
        if list(getattr(theirs, "layer_types", None) or []) != modernbert_layer_types(config):
            bad.append(f"model.local_window={fmt(config.local_window)}, model.global_every={config.global_every} "
                       f"give layer_types {modernbert_layer_types(config)} but {where} has {theirs.layer_types}")
        sliding = "sliding_attention" in modernbert_layer_types(config)
        if sliding and theirs.local_attention != config.local_window:
            bad.append(f"model.local_window={config.local_window} but {where} has "
                       f"local_attention={theirs.local_attention}")
        rope = getattr(theirs, "rope_parameters", None) or {}
        local = config.local_rope_theta if config.local_rope_theta is not None else config.rope_theta
        for kind, key, want in (("full_attention", "rope_theta", config.rope_theta),
                                ("sliding_attention", "local_rope_theta" if config.local_rope_theta is not None
                                 else "rope_theta (local_rope_theta=null)", local)):
            got = (rope.get(kind) or {}).get("rope_theta")
            if kind in theirs.layer_types and got != want:
                bad.append(f"model.{key}={want} but {where} has {kind} rope_theta={got}")
        for k, want in _activations(config).items():
            if getattr(theirs, k, None) != want:
                bad.append(f"model.ffn={config.ffn}, model.activation={config.activation} need {k}={want} but "
                           f"{where} has {getattr(theirs, k, None)}")
        for k in ("attention_bias", "mlp_bias", "norm_bias", "classifier_bias"):
            if getattr(theirs, k, None) != config.bias:
                bad.append(f"model.bias={fmt(config.bias)} but {where} has {k}={fmt(getattr(theirs, k, None))}")
        return bad
