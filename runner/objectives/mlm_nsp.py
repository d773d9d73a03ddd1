"""Masked LM plus BERT's next-sentence prediction (Devlin et al. 2019, section 3.1, task #2)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from runner.data.tokenizer import SpecialIds
from runner.models.config import EncoderConfig
from runner.models.flops import pooler_flops
from runner.data.packing import sequences
from runner.models.heads import NSPHead
from runner.objectives.base import Stats
from runner.config.errors import require
from runner.objectives.mlm import MaskedLM, MLMConfig, mlm_metrics


@dataclass
class MLMNSPConfig(MLMConfig):
    """objective=mlm_nsp: MLM plus next-sentence prediction on sentence pairs."""

    _target_: str = "runner.objectives.mlm_nsp.MaskedLMWithNSP"
    name: str = "mlm_nsp"
    masking: str = "static"
    random_next_prob: float = 0.5  # share of pairs whose segment B comes from another article

    def check(self) -> None:
        """Masking keys, and the share of random pairs."""
        super().check()
        require(0.0 < self.random_next_prob < 1.0,
                f"objective.random_next_prob={self.random_next_prob} must lie in (0, 1)")


class MaskedLMWithNSP(MaskedLM):
    """MLM on sentence pairs, plus a binary classifier on [CLS]: does segment B follow A in the article?
    Subclasses change the pair task by its name and label key (ALBERT's sentence order: objectives/mlm_sop.py)."""

    options_class = MLMNSPConfig
    needs_pairs = True
    feeds = ("examples",)
    task = "nsp"  # names the head (nsp_head), the normalizer and the metrics (nsp_loss, nsp_accuracy)
    label_key = "next_sentence_label"  # the examples' label tensor (runner/data/examples.py LABEL_KEYS)

    def __init__(self, options: MLMNSPConfig, model_config: EncoderConfig, specials: SpecialIds,
                 token_vocab_size: int, word_table: Any = None):
        super().__init__(options, model_config, specials, token_vocab_size, word_table=word_table)
        self.add_module(f"{self.task}_head", NSPHead(model_config))  # nsp_head | sop_head: transformers' names differ

    @property
    def random_next_prob(self) -> float:  # type: ignore[override]
        """The share of pairs whose segment B comes from another article (objective.random_next_prob)."""
        return self.options.random_next_prob

    @property
    def pair_head(self) -> NSPHead:
        """The pooler and two-way classifier on [CLS]."""
        return getattr(self, f"{self.task}_head")

    @classmethod
    def check(cls, config: EncoderConfig, options: MLMNSPConfig) -> None:
        """NSP needs examples and two segment embeddings to tell A from B."""
        super().check(config, options)
        name = options.name
        require(config.type_vocab_size >= 2,
                f"objective={name} needs model.type_vocab_size >= 2 (model={config.name} has "
                f"{config.type_vocab_size}); use objective=mlm or set model.type_vocab_size=2")

    def normalizers(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """MLM over selected tokens, the pair task over sequences."""
        return {**super().normalizers(batch), self.task: torch.tensor(batch[self.label_key].numel())}

    def loss(self, encoder: nn.Module, batch: dict[str, torch.Tensor],
             norms: dict[str, Any]) -> tuple[torch.Tensor, Stats]:
        """Sum of the mean MLM loss and the mean pair-task loss, as in BERT (and ALBERT)."""
        hidden = self.encode(encoder, batch)
        mlm_sum, stats = self.mlm_terms(encoder, hidden, batch["labels"])
        logits = self.pair_head(hidden, batch.get("starts")).float()  # (B, 2): one per sequence, packed or not
        target = batch[self.label_key]
        pair_sum = F.cross_entropy(logits, target, reduction="sum")
        t = self.task
        stats.update({f"{t}_loss_sum": pair_sum.detach(), f"{t}_correct": (logits.argmax(-1) == target).sum(),
                      f"{t}_count": torch.tensor(target.numel())})
        loss = mlm_sum / max(float(norms["mlm"]), 1.0) + pair_sum / max(float(norms[t]), 1.0)
        return loss, stats

    def head_flops(self, batch: dict[str, torch.Tensor]) -> float:
        """The MLM head on the selected positions and the pooler + classifier on every sequence."""
        return super().head_flops(batch) + pooler_flops(self.config, sequences(batch))

    @property
    def loss_terms(self) -> tuple[str, ...]:
        """The MLM loss and the pair task's (nsp_loss or sop_loss)."""
        return ("mlm_loss", f"{self.task}_loss")

    @property
    def headline(self) -> tuple[str, ...]:
        """Both losses, the masked-token accuracy and the pair task's accuracy."""
        return (*self.loss_terms, "mlm_accuracy", f"{self.task}_accuracy")

    def metrics(self, stats: Stats) -> dict[str, float]:
        """MLM metrics plus the pair task's loss and accuracy (nsp_* or sop_*)."""
        t = self.task
        n = max(float(stats[f"{t}_count"]), 1.0)
        return {**mlm_metrics(stats), f"{t}_loss": float(stats[f"{t}_loss_sum"]) / n,
                f"{t}_accuracy": float(stats[f"{t}_correct"]) / n}
