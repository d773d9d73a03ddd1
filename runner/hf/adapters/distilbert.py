"""DistilBERT as transformers' DistilBertForMaskedLM: BERT's post-norm blocks under other names, no segment table,
the decoder (vocab_projector) tied to the word embeddings."""
from __future__ import annotations

from typing import Any, ClassVar

from runner.config.errors import ConfigError
from runner.hf.adapters.bert import BertAdapter
from runner.hf.adapters.base import fmt
from runner.models.config import EncoderConfig

_LAYER = "distilbert.transformer.layer.\\1"


class DistilBertAdapter(BertAdapter):
    """model.family=distilbert (objective=distill's students)."""

    families = ("distilbert",)
    model_type = "distilbert"
    pair_head = False
    prefix = "distilbert"
    tied = (*BertAdapter.tied, "vocab_projector.weight")
    config_keys: ClassVar[dict[str, str]] = {  # DistilBertConfig's own names
        "dim": "hidden_size", "n_layers": "num_layers", "n_heads": "num_heads", "hidden_dim": "intermediate_size",
        "vocab_size": "vocab_size", "max_position_embeddings": "max_position_embeddings"}
    fixed: ClassVar[list[tuple[str, Any, str]]] = [
        *BertAdapter.fixed, ("type_vocab_size", 0, "has no segment embeddings"),
        ("embedding_size", None, "has no embedding projection"), ("share", "none", "shares no layers"),
        ("layer_norm_eps", 1e-12, "fixes its LayerNorm epsilon at 1e-12")]

    def encoder_table(self) -> list[tuple[str, str]]:
        """Word and position tables, and each layer's q_lin, k_lin, v_lin, out_lin, ffn.lin1, ffn.lin2 and norms."""
        return [
            (r"encoder\.embeddings\.norm\.(weight|bias)", "distilbert.embeddings.LayerNorm.\\1"),
            (r"encoder\.embeddings\.(word_embeddings|position_embeddings)\.weight", "distilbert.embeddings.\\1.weight"),
            (r"encoder\.layers\.(\d+)\.attention\.query\.(weight|bias)", _LAYER + ".attention.q_lin.\\2"),
            (r"encoder\.layers\.(\d+)\.attention\.key\.(weight|bias)", _LAYER + ".attention.k_lin.\\2"),
            (r"encoder\.layers\.(\d+)\.attention\.value\.(weight|bias)", _LAYER + ".attention.v_lin.\\2"),
            (r"encoder\.layers\.(\d+)\.attention\.out\.(weight|bias)", _LAYER + ".attention.out_lin.\\2"),
            (r"encoder\.layers\.(\d+)\.attn_norm\.(weight|bias)", _LAYER + ".sa_layer_norm.\\2"),
            (r"encoder\.layers\.(\d+)\.intermediate\.(weight|bias)", _LAYER + ".ffn.lin1.\\2"),
            (r"encoder\.layers\.(\d+)\.output\.(weight|bias)", _LAYER + ".ffn.lin2.\\2"),
            (r"encoder\.layers\.(\d+)\.ffn_norm\.(weight|bias)", _LAYER + ".output_layer_norm.\\2"),
        ]

    def head_table(self) -> list[tuple[str, str]]:
        """The MLM head as vocab_transform and vocab_layer_norm; vocab_projector's weight is the word table."""
        return [
            (r"objective\.mlm_head\.transform\.(weight|bias)", "vocab_transform.\\1"),
            (r"objective\.mlm_head\.norm\.(weight|bias)", "vocab_layer_norm.\\1"),
            (r"objective\.mlm_head\.bias", "vocab_projector.bias"),
        ]

    def transformers_class(self, nsp: bool, discriminator: bool = False) -> type:
        """DistilBertForMaskedLM; none with a pair head."""
        import transformers

        if nsp:
            raise ConfigError("model.family=distilbert has no transformers class with a next-sentence head; use "
                              "objective=mlm or distill to export")
        return transformers.DistilBertForMaskedLM

    def transformers_config(self, config: EncoderConfig, nsp: bool, specials: dict[str, int],
                            discriminator: bool = False) -> Any:
        """transformers.DistilBertConfig of ours (learned positions, tied decoder)."""
        import transformers

        return transformers.DistilBertConfig(
            architectures=["DistilBertForMaskedLM"], vocab_size=config.vocab_size, dim=config.hidden_size,
            n_layers=config.num_layers, n_heads=config.num_heads, hidden_dim=config.intermediate_size,
            activation=config.activation, max_position_embeddings=config.max_position_embeddings,
            dropout=config.hidden_dropout, attention_dropout=config.attention_dropout,
            initializer_range=config.initializer_range, sinusoidal_pos_embds=False, tie_word_embeddings=True,
            **{"pad_token_id": config.pad_token_id, **specials})

    def unsupported(self, config: EncoderConfig, nsp: bool = False) -> str | None:
        """BERT's fixed choices and DistilBERT's own (no segments, no projection, no sharing, its epsilon), then the
        pair head."""
        for key, value, does in self.fixed:
            if getattr(config, key) != value:
                return (f"model.{key}={fmt(getattr(config, key))} has no transformers DistilBERT counterpart (it "
                        f"{does}); use model.{key}={fmt(value)} to export or import")
        return self.pair_unsupported(config, nsp)
