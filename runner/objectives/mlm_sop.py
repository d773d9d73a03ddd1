"""Masked LM plus ALBERT's sentence-order prediction (Lan et al. 2020, section 4.1)."""
from __future__ import annotations

from typing import Any

from runner.data.tokenizer import SpecialIds
from runner.models.config import EncoderConfig
from runner.objectives.mlm_nsp import MaskedLMWithNSP


class MaskedLMWithSOP(MaskedLMWithNSP):
    """MLM on two consecutive segments of one document, plus a binary classifier on [CLS]: are they in their
    original order (0) or swapped (1)? NSP's topic shortcut is gone, since both segments share the document
    (ALBERT section 4.1). Same pooler + classifier as NSP; only the labels (data.format=sop_pair) and the
    transformers names (albert.pooler, sop_classifier) differ."""

    task = "sop"
    label_key = "sentence_order_label"

    def __init__(self, model_config: EncoderConfig, specials: SpecialIds, token_vocab_size: int,
                 name: str = "mlm_sop", **mlm: Any):
        super().__init__(model_config, specials, token_vocab_size, name=name, **mlm)
