"""RoBERTa as transformers' RobertaForMaskedLM: BERT's backbone under "roberta", its own LM head, no pair head."""
from __future__ import annotations

from typing import Any

from runner.hf.adapters.bert import BertAdapter
from runner.models.config import EncoderConfig


class RobertaAdapter(BertAdapter):
    """model.family=roberta (its position ids start after the padding id, as transformers' RoBERTa's)."""

    families = ("roberta",)
    model_type = "roberta"
    pair_head = False
    prefix = "roberta"

    def head_table(self) -> list[tuple[str, str]]:
        """The MLM head as lm_head."""
        return [
            (r"objective\.mlm_head\.transform\.(weight|bias)", "lm_head.dense.\\1"),
            (r"objective\.mlm_head\.norm\.(weight|bias)", "lm_head.layer_norm.\\1"),
            (r"objective\.mlm_head\.bias", "lm_head.bias"),
        ]

    def transformers_class(self, nsp: bool, discriminator: bool = False) -> type:
        """RobertaForMaskedLM."""
        import transformers

        return transformers.RobertaForMaskedLM

    def transformers_config(self, config: EncoderConfig, nsp: bool, specials: dict[str, int],
                            discriminator: bool = False) -> Any:
        """transformers.RobertaConfig of ours."""
        import transformers

        return transformers.RobertaConfig(architectures=["RobertaForMaskedLM"], **self.common(config, specials))
