"""Masked LM plus ALBERT's sentence-order prediction (Lan et al. 2020, section 4.1)."""
from __future__ import annotations

from dataclasses import dataclass

from runner.objectives.mlm import MLMConfig
from runner.objectives.mlm_nsp import MaskedLMWithNSP


@dataclass
class MLMSOPConfig(MLMConfig):
    """objective=mlm_sop: MLM plus ALBERT's sentence-order prediction on data.format=sop_pair (its default)."""

    _target_: str = "runner.objectives.mlm_sop.MaskedLMWithSOP"
    name: str = "mlm_sop"
    span: str = "ngram"  # ALBERT section 4.1: n-gram masking, n <= max_ngram, p(n) proportional to 1/n


class MaskedLMWithSOP(MaskedLMWithNSP):
    """MLM on two consecutive segments of one document, plus a binary classifier on [CLS]: are they in their
    original order (0) or swapped (1)? NSP's topic shortcut is gone, since both segments share the document
    (ALBERT section 4.1). Same pooler + classifier as NSP; only the labels (data.format=sop_pair) and the
    transformers names (albert.pooler, sop_classifier) differ."""

    options_class = MLMSOPConfig
    task = "sop"
    label_key = "sentence_order_label"
    random_next_prob = 0.5  # sop_pair never draws a random segment B (the pairing NSP formats would use)
