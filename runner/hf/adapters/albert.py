"""ALBERT as transformers' AlbertForMaskedLM (AlbertForPreTraining with the sentence-order head): its encoder holds
the embedding projection, and each of our distinct layers is a layer group of one layer (share=all: group 0 applied
num_layers times; share=none: num_layers groups)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from runner.hf.adapters.bert import BertAdapter
from runner.models.config import EncoderConfig, embedding_width

_LAYER = "albert.encoder.albert_layer_groups.\\1.albert_layers.0"


class AlbertAdapter(BertAdapter):
    """model.family=albert: factorized embeddings and whole-layer sharing."""

    families = ("albert",)
    model_type = "albert"
    prefix = "albert"
    config_keys: ClassVar[dict[str, str]] = {**BertAdapter.config_keys, "embedding_size": "embedding_size"}

    def encoder_table(self) -> list[tuple[str, str]]:
        """The embeddings, their projection (embedding_hidden_mapping_in) and one layer group per distinct layer."""
        return [
            (r"encoder\.embeddings\.norm\.(weight|bias)", "albert.embeddings.LayerNorm.\\1"),
            (r"encoder\.embeddings\.(\w+_embeddings)\.weight", "albert.embeddings.\\1.weight"),
            (r"encoder\.embeddings\.project\.(weight|bias)", "albert.encoder.embedding_hidden_mapping_in.\\1"),
            (r"encoder\.layers\.(\d+)\.attention\.(query|key|value)\.(weight|bias)", _LAYER + ".attention.\\2.\\3"),
            (r"encoder\.layers\.(\d+)\.attention\.out\.(weight|bias)", _LAYER + ".attention.dense.\\2"),
            (r"encoder\.layers\.(\d+)\.attn_norm\.(weight|bias)", _LAYER + ".attention.LayerNorm.\\2"),
            (r"encoder\.layers\.(\d+)\.intermediate\.(weight|bias)", _LAYER + ".ffn.\\2"),
            (r"encoder\.layers\.(\d+)\.output\.(weight|bias)", _LAYER + ".ffn_output.\\2"),
            (r"encoder\.layers\.(\d+)\.ffn_norm\.(weight|bias)", _LAYER + ".full_layer_layer_norm.\\2"),
        ]

    def head_table(self) -> list[tuple[str, str]]:
        """The MLM head as predictions; the sentence-order head (nsp: ALBERT + objective=mlm_nsp) as albert.pooler and
        sop_classifier."""
        return [
            (r"objective\.mlm_head\.transform\.(weight|bias)", "predictions.dense.\\1"),
            (r"objective\.mlm_head\.norm\.(weight|bias)", "predictions.LayerNorm.\\1"),
            (r"objective\.mlm_head\.bias", "predictions.bias"),
            (r"objective\.(?:sop|nsp)_head\.pooler\.(weight|bias)", "albert.pooler.\\1"),
            (r"objective\.(?:sop|nsp)_head\.classifier\.(weight|bias)", "sop_classifier.classifier.\\1"),
        ]

    def transformers_class(self, nsp: bool, discriminator: bool = False) -> type:
        """AlbertForPreTraining with a pair head, else AlbertForMaskedLM."""
        import transformers

        return transformers.AlbertForPreTraining if nsp else transformers.AlbertForMaskedLM

    def transformers_config(self, config: EncoderConfig, nsp: bool, specials: dict[str, int],
                            discriminator: bool = False) -> Any:
        """transformers.AlbertConfig of ours: one layer group per distinct layer of ours."""
        import transformers

        return transformers.AlbertConfig(architectures=["AlbertForPreTraining" if nsp else "AlbertForMaskedLM"],
                                         embedding_size=embedding_width(config), inner_group_num=1,
                                         num_hidden_groups=1 if config.share == "all" else config.num_layers,
                                         classifier_dropout_prob=config.hidden_dropout, **self.common(config, specials))

    def sharing_unsupported(self, config: EncoderConfig) -> str | None:
        """transformers' ALBERT shares whole layers only, and always projects its embeddings."""
        if config.share in ("attention", "ffn"):
            return (f"model.share={config.share} has no transformers counterpart (ALBERT there shares whole layers "
                    "only); train with model.share=all or none to export or import")
        if config.embedding_size is None:
            return ("model.family=albert without model.embedding_size has no transformers counterpart (its ALBERT "
                    "always projects E -> H); set model.embedding_size (hidden_size for no factorization)")
        return None

    def config_mismatches(self, config: EncoderConfig, theirs: Any, where: Path) -> list[str]:
        """BERT's keys and the embedding width, then the layer groups model.share needs."""
        bad = super().config_mismatches(config, theirs, where)
        groups = 1 if config.share == "all" else config.num_layers
        got = (getattr(theirs, "num_hidden_groups", None), getattr(theirs, "inner_group_num", None))
        if got != (groups, 1):
            bad.append(f"model.share={config.share} needs num_hidden_groups={groups}, inner_group_num=1 but "
                       f"{where} has {got[0]}, {got[1]}")
        return bad
