"""BERT as transformers' BertForMaskedLM (BertForPreTraining with the NSP or SOP head): the rename table, the config,
and what those classes cannot hold. RoBERTa, ALBERT, ELECTRA and DistilBERT extend this adapter in their own files."""
from __future__ import annotations

from typing import Any, ClassVar

from runner.hf.adapters.base import RenamedAdapter, fmt
from runner.models.config import EncoderConfig


class BertAdapter(RenamedAdapter):
    """model.family=bert; the post-norm encoder with learned positions that its relatives share."""

    families = ("bert",)
    model_type = "bert"
    pair_head = True
    prefix: ClassVar[str] = "bert"  # the backbone's name in transformers' parameter names ({p} in the tables)
    config_keys: ClassVar[dict[str, str]] = {**RenamedAdapter.config_keys, "type_vocab_size": "type_vocab_size"}
    # The later improvements (runner/models/config.py) that transformers' BERT, RoBERTa, ALBERT and ELECTRA classes
    # cannot hold: (key, the value those classes have, what they do instead). model.qkv is not one: it is split.
    fixed: ClassVar[list[tuple[str, Any, str]]] = [
        ("position", "learned", "learn a position table"),
        ("ffn", "mlp", "have a dense, activation, dense feed-forward"),
        ("norm_position", "post", "normalise after each residual"),
        ("norm", "layernorm", "use LayerNorm"),
        ("bias", True, "have biases in every linear layer and LayerNorm"),
        ("local_window", None, "attend over the whole sequence in every layer"),
        ("embedding_norm", True, "normalise the embeddings"),
    ]

    def encoder_table(self) -> list[tuple[str, str]]:
        """(our name pattern, transformers' name template) of the backbone; {p} is the prefix."""
        layer = "{p}.encoder.layer.\\1"
        return [
            (r"encoder\.embeddings\.norm\.(weight|bias)", "{p}.embeddings.LayerNorm.\\1"),
            (r"encoder\.embeddings\.(\w+_embeddings)\.weight", "{p}.embeddings.\\1.weight"),
            (r"encoder\.layers\.(\d+)\.attention\.(query|key|value)\.(weight|bias)", layer + ".attention.self.\\2.\\3"),
            (r"encoder\.layers\.(\d+)\.attention\.out\.(weight|bias)", layer + ".attention.output.dense.\\2"),
            (r"encoder\.layers\.(\d+)\.attn_norm\.(weight|bias)", layer + ".attention.output.LayerNorm.\\2"),
            (r"encoder\.layers\.(\d+)\.intermediate\.(weight|bias)", layer + ".intermediate.dense.\\2"),
            (r"encoder\.layers\.(\d+)\.output\.(weight|bias)", layer + ".output.dense.\\2"),
            (r"encoder\.layers\.(\d+)\.ffn_norm\.(weight|bias)", layer + ".output.LayerNorm.\\2"),
        ]

    def head_table(self) -> list[tuple[str, str]]:
        """(our name pattern, transformers' name) of the objective's heads."""
        return [
            (r"objective\.mlm_head\.transform\.(weight|bias)", "cls.predictions.transform.dense.\\1"),
            (r"objective\.mlm_head\.norm\.(weight|bias)", "cls.predictions.transform.LayerNorm.\\1"),
            (r"objective\.mlm_head\.bias", "cls.predictions.bias"),
            # NSP and SOP heads have one shape: either fills the family's pair-head slot (BERT + objective=mlm_sop)
            (r"objective\.(?:nsp|sop)_head\.pooler\.(weight|bias)", "bert.pooler.dense.\\1"),
            (r"objective\.(?:nsp|sop)_head\.classifier\.(weight|bias)", "cls.seq_relationship.\\1"),
        ]

    def rename_table(self) -> list[tuple[str, str]]:
        """The backbone's and the heads' pairs, {p} filled with the prefix."""
        return [(pat, tpl.replace("{p}", self.prefix)) for pat, tpl in self.encoder_table() + self.head_table()]

    def transformers_class(self, nsp: bool, discriminator: bool = False) -> type:
        """BertForPreTraining with a pair head, else BertForMaskedLM."""
        import transformers

        return transformers.BertForPreTraining if nsp else transformers.BertForMaskedLM

    def common(self, config: EncoderConfig, specials: dict[str, int]) -> dict[str, Any]:
        """The BertConfig keywords its relatives' configs share."""
        return dict(vocab_size=config.vocab_size, hidden_size=config.hidden_size,
                    num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
                    intermediate_size=config.intermediate_size, hidden_act=config.activation,
                    max_position_embeddings=config.max_position_embeddings, type_vocab_size=config.type_vocab_size,
                    layer_norm_eps=config.layer_norm_eps, hidden_dropout_prob=config.hidden_dropout,
                    attention_probs_dropout_prob=config.attention_dropout,
                    initializer_range=config.initializer_range, **{"pad_token_id": config.pad_token_id, **specials})

    def transformers_config(self, config: EncoderConfig, nsp: bool, specials: dict[str, int],
                            discriminator: bool = False) -> Any:
        """transformers.BertConfig of ours."""
        import transformers

        return transformers.BertConfig(architectures=["BertForPreTraining" if nsp else "BertForMaskedLM"],
                                       **self.common(config, specials))

    def unsupported(self, config: EncoderConfig, nsp: bool = False) -> str | None:
        """The pair head, none of the later improvements (`fixed`), a segment table, then sharing and factorized
        embeddings (sharing_unsupported)."""
        if (why := self.pair_unsupported(config, nsp)) is not None:
            return why
        for key, value, does in self.fixed:
            if getattr(config, key) != value:
                return (f"model.{key}={fmt(getattr(config, key))} has no transformers {config.family} counterpart "
                        f"(its classes {does}); use model.family=modernbert or model.{key}={fmt(value)} to "
                        "export or import")
        if config.type_vocab_size == 0:
            return (f"model.type_vocab_size=0 has no transformers {config.family} counterpart (its embeddings "
                    "always add a segment table); use model.type_vocab_size=1 or more to export or import")
        return self.sharing_unsupported(config)

    def sharing_unsupported(self, config: EncoderConfig) -> str | None:
        """Why its class cannot hold this model's cross-layer sharing or embedding projection: BERT's has neither."""
        if config.share != "none":
            return (f"model.share={config.share} has no transformers counterpart for model.family={config.family}; "
                    "use model.family=albert (with model.embedding_size) or model.share=none to export or import")
        if config.embedding_size is not None:
            return (f"model.embedding_size is set but transformers' {config.family} has no embedding projection; "
                    "use model.family=albert or model.embedding_size=null to export or import")
        return None
