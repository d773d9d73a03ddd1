"""Masked LM plus BERT's next-sentence prediction (Devlin et al. 2019, section 3.1, task #2)."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from runner.data.tokenizer import SpecialIds
from runner.models.config import EncoderConfig
from runner.models.heads import NSPHead
from runner.objectives.base import Stats, require
from runner.objectives.mlm import MaskedLM


class MaskedLMWithNSP(MaskedLM):
    """MLM on sentence pairs, plus a binary classifier on [CLS]: does segment B follow A in the article?"""

    needs_pairs = True

    def __init__(self, model_config: EncoderConfig, specials: SpecialIds, token_vocab_size: int,
                 name: str = "mlm_nsp", random_next_prob: float = 0.5, **mlm: Any):
        super().__init__(model_config, specials, token_vocab_size, name=name, **mlm)
        require(0.0 < random_next_prob < 1.0, f"objective.random_next_prob={random_next_prob} must lie in (0, 1)")
        self.random_next_prob = random_next_prob
        self.nsp_head = NSPHead(model_config)

    @classmethod
    def check(cls, config: EncoderConfig, name: str) -> None:
        """NSP needs two segment embeddings to tell A from B."""
        require(config.type_vocab_size >= 2,
                f"objective={name} needs model.type_vocab_size >= 2 (model={config.name} has "
                f"{config.type_vocab_size}); use objective=mlm or set model.type_vocab_size=2")

    def normalizers(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """MLM over selected tokens, NSP over sequences."""
        return {**super().normalizers(batch), "nsp": torch.tensor(batch["next_sentence_label"].numel())}

    def loss(self, encoder: nn.Module, batch: dict[str, torch.Tensor],
             norms: dict[str, Any]) -> tuple[torch.Tensor, Stats]:
        """Sum of the mean MLM loss and the mean NSP loss, as in BERT."""
        hidden = encoder(batch["input_ids"], batch.get("token_type_ids"), batch.get("attention_mask"))
        mlm_sum, stats = self.mlm_terms(encoder, hidden, batch["labels"])
        logits = self.nsp_head(hidden).float()  # (B, 2)
        target = batch["next_sentence_label"]
        nsp_sum = F.cross_entropy(logits, target, reduction="sum")
        stats.update(nsp_loss_sum=nsp_sum.detach(), nsp_correct=(logits.argmax(-1) == target).sum(),
                     nsp_count=torch.tensor(target.numel()))
        loss = mlm_sum / max(float(norms["mlm"]), 1.0) + nsp_sum / max(float(norms["nsp"]), 1.0)
        return loss, stats

    @staticmethod
    def metrics(stats: Stats) -> dict[str, float]:
        """MLM metrics plus NSP loss and accuracy."""
        n = max(float(stats["nsp_count"]), 1.0)
        return {**MaskedLM.metrics(stats), "nsp_loss": float(stats["nsp_loss_sum"]) / n,
                "nsp_accuracy": float(stats["nsp_correct"]) / n}
