"""ELECTRA as transformers' ElectraForPreTraining (the discriminator) and ElectraForMaskedLM (the generator, or an
MLM run): BERT's names under "electra", plus embeddings_project when the embeddings are narrower than the layers."""
from __future__ import annotations

from typing import Any

from runner.config.errors import ConfigError
from runner.hf.adapters.bert import BertAdapter
from runner.models.config import EncoderConfig, embedding_width


class ElectraAdapter(BertAdapter):
    """model.family=electra (and objective=rtd's exports, which travel as ELECTRA)."""

    families = ("electra",)
    model_type = "electra"
    pair_head = False
    prefix = "electra"
    tied = (*BertAdapter.tied, "generator_lm_head.weight")  # the generator's decoder is its word embeddings

    def encoder_table(self) -> list[tuple[str, str]]:
        """BERT's, and the embedding projection."""
        project = (r"encoder\.embeddings\.project\.(weight|bias)", "{p}.embeddings_project.\\1")
        return [*super().encoder_table(), project]

    def head_table(self) -> list[tuple[str, str]]:
        """The generator's head (ElectraForMaskedLM) and the discriminator's (ElectraForPreTraining)."""
        return [
            (r"objective\.mlm_head\.transform\.(weight|bias)", "generator_predictions.dense.\\1"),
            (r"objective\.mlm_head\.norm\.(weight|bias)", "generator_predictions.LayerNorm.\\1"),
            (r"objective\.mlm_head\.bias", "generator_lm_head.bias"),
            (r"objective\.disc_head\.(dense|dense_prediction)\.(weight|bias)", "discriminator_predictions.\\1.\\2"),
        ]

    def transformers_class(self, nsp: bool, discriminator: bool = False) -> type:
        """ElectraForPreTraining for the discriminator, else ElectraForMaskedLM; none with a pair head."""
        import transformers

        if nsp:
            raise ConfigError("model.family=electra has no transformers class with a next-sentence head; "
                              "use objective=mlm or rtd, or model.family=bert, to export")
        return transformers.ElectraForPreTraining if discriminator else transformers.ElectraForMaskedLM

    def transformers_config(self, config: EncoderConfig, nsp: bool, specials: dict[str, int],
                            discriminator: bool = False) -> Any:
        """transformers.ElectraConfig of the discriminator or the generator; embeddings_project exists there exactly
        when embedding_size != hidden_size."""
        import transformers

        return transformers.ElectraConfig(architectures=["ElectraForPreTraining" if discriminator else
                                                         "ElectraForMaskedLM"],
                                          embedding_size=embedding_width(config), **self.common(config, specials))

    def sharing_unsupported(self, config: EncoderConfig) -> str | None:
        """transformers' ELECTRA shares no layers and projects embeddings only when they are narrower."""
        if config.share != "none":
            return (f"model.share={config.share} has no transformers ELECTRA counterpart (it shares no layers); "
                    "use model.share=none to export or import")
        if config.embedding_size == config.hidden_size:
            return ("model.embedding_size equals model.hidden_size, but transformers' ELECTRA projects embeddings "
                    "only when they differ; set model.embedding_size=null to export or import")
        return None
