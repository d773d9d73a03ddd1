"""Masked language modelling (BERT section 3.1; RoBERTa section 4.1 for dynamic masking)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from runner.data.tokenizer import SpecialIds
from runner.models.config import EncoderConfig
from runner.models.heads import MLMHead
from runner.models.registry import encoder_class
from runner.models.flops import mlm_head_flops
from runner.objectives.base import Objective, ObjectiveConfig, Stats
from runner.config.errors import require
from runner.objectives.masking import IGNORE, SPANS, MaskingSpec, mask_tokens
from runner.objectives.scoring import pseudo_log_likelihood


@dataclass
class MLMConfig(ObjectiveConfig):
    """objective=mlm: masked language modelling."""

    _target_: str = "runner.objectives.mlm.MaskedLM"
    name: str = "mlm"
    masking: str = "dynamic"  # static: drawn once per example copy (BERT); dynamic: drawn per batch (RoBERTa)
    mask_prob: float = 0.15
    mask_token_prob: float = 0.8  # of the selected tokens, replaced by [MASK]
    random_token_prob: float = 0.1  # replaced by a random token; the rest are kept
    dupe_factor: int = 10  # static masking: copies of the data, each with its own masks
    span: str = "token"  # token: each token alone (BERT) | whole_word: all pieces of a word (BERT WWM) | ngram (ALBERT)
    max_ngram: int = 3  # span=ngram: spans of n <= max_ngram whole words, p(n) proportional to 1/n (ALBERT 4.1)
    max_predictions: Optional[int] = None  # cap on selected tokens per sequence (BERT: 20 at 128); null: no cap

    def check(self) -> None:
        """Masking keys."""
        require(self.masking in ("static", "dynamic"),
                f"objective.masking={self.masking!r} must be 'static' (BERT) or 'dynamic' (RoBERTa)")
        require(0.0 < self.mask_prob < 1.0, f"objective.mask_prob={self.mask_prob} must lie in (0, 1)")
        m, r = self.mask_token_prob, self.random_token_prob
        require(m >= 0 and r >= 0 and m + r <= 1.0, f"objective.mask_token_prob + objective.random_token_prob = "
                f"{m + r} must lie in [0, 1] (the rest are kept unchanged)")
        require(self.dupe_factor >= 1, f"objective.dupe_factor={self.dupe_factor} must be >= 1")
        require(self.span in SPANS, f"objective.span={self.span!r} must be one of {', '.join(SPANS)}")
        require(self.max_ngram >= 1, f"objective.max_ngram={self.max_ngram} must be >= 1")
        require(self.max_predictions is None or self.max_predictions >= 1,
                f"objective.max_predictions={self.max_predictions} must be >= 1 or null (no cap)")


class MaskedLM(Objective):
    """Predict selected tokens from their context. The head runs only on the selected positions
    (as MosaicBERT and cramming do): on a 30k vocabulary a full-sequence head costs more than a small encoder.
    Selection is per token (BERT), per whole word (BERT's whole-word masking) or per n-gram of words (ALBERT
    section 4.1); the two span modes need `word_table`, the tokenizer's is_continuation[vocab_size] table
    (runner/data/words.py)."""

    lm_metric = "mlm_loss"

    options_class = MLMConfig

    def __init__(self, options: MLMConfig, model_config: EncoderConfig, specials: SpecialIds, token_vocab_size: int,
                 word_table: Optional[torch.Tensor] = None):
        super().__init__(options, model_config)
        o = options
        require(o.span == "token" or word_table is not None,
                f"objective.span={o.span} needs the tokenizer's word-boundary table (word_table=...); "
                "build the objective through runner.build or use objective.span=token")
        self.static_masks = o.masking == "static"
        self.copies = o.dupe_factor if self.static_masks else 1
        self.word_table = None if word_table is None else word_table.bool().cpu()  # not a buffer: no checkpoint key
        self.spec = MaskingSpec(mask_id=specials.mask, first_regular_id=specials.num_special,
                                vocab_size=token_vocab_size, prob=o.mask_prob, mask_token_prob=o.mask_token_prob,
                                random_token_prob=o.random_token_prob, span=o.span, max_ngram=o.max_ngram,
                                max_predictions=o.max_predictions)
        self.mlm_head = MLMHead(model_config)

    @classmethod
    def check(cls, config: EncoderConfig, options: MLMConfig) -> None:
        """The encoder serves it (Objective.check); its embeddings are one tied table; static masks need examples."""
        super().check(config, options)
        require(not config.adaptive_embeddings, f"objective={options.name} decodes with one tied embedding table, "
                f"but {config.adaptive_embeddings} makes the embeddings adaptive; set it to [] (one full softmax)")
        require(options.masking != "static" or encoder_class(config.family).feed == "examples",
                f"objective.masking=static stores one set of masks per example, but model.family={config.family} "
                "reads contiguous streams, not examples; use objective.masking=dynamic")

    def prepare(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Mask the batch's input ids; labels hold the original ids of the selected positions."""
        out = dict(batch)
        out["input_ids"], out["labels"] = mask_tokens(batch["input_ids"], batch["special_tokens_mask"],
                                                      self.spec, generator, self.word_table)
        return out

    def normalizers(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The MLM loss is a mean over all selected tokens of the (accumulated) batch."""
        return {"mlm": batch["labels"].ne(IGNORE).sum()}

    def mlm_logits(self, encoder: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """Full vocabulary logits for hidden states (..., H); used for export parity checks."""
        return self.mlm_head(hidden, encoder.embeddings.word_embeddings.weight)

    def selected_logits(self, encoder: nn.Module, hidden: torch.Tensor,
                        labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits (M, V) of the M selected positions, their flat positions (M,) in (B*T) and their targets (M,)."""
        flat = labels.reshape(-1)
        idx = flat.ne(IGNORE).nonzero().squeeze(1)  # (M,)
        h = hidden.reshape(-1, hidden.shape[-1]).index_select(0, idx)  # (M, H)
        return self.mlm_logits(encoder, h).float(), idx, flat.index_select(0, idx)  # (M, V), (M,), (M,)

    def mlm_terms(self, encoder: nn.Module, hidden: torch.Tensor, labels: torch.Tensor,
                  selected: tuple[torch.Tensor, ...] | None = None) -> tuple[torch.Tensor, Stats]:
        """Summed cross-entropy over selected positions only, and its stats; `selected` reuses selected_logits'
        output (ELECTRA samples from the same logits)."""
        logits, idx, target = selected if selected is not None else self.selected_logits(encoder, hidden, labels)
        loss_sum = F.cross_entropy(logits, target, reduction="sum")
        stats = {"mlm_loss_sum": loss_sum.detach(), "mlm_correct": (logits.argmax(-1) == target).sum(),
                 "mlm_count": torch.tensor(idx.numel())}
        return loss_sum, stats

    def loss(self, encoder: nn.Module, batch: dict[str, torch.Tensor],
             norms: dict[str, Any]) -> tuple[torch.Tensor, Stats]:
        """MLM loss normalised by the accumulated number of selected tokens."""
        hidden = self.encode(encoder, batch)
        loss_sum, stats = self.mlm_terms(encoder, hidden, batch["labels"])
        return loss_sum / max(float(norms["mlm"]), 1.0), stats

    def head_flops(self, batch: dict[str, torch.Tensor]) -> float:
        """The MLM head on the selected positions."""
        return mlm_head_flops(self.config, int(batch["labels"].ne(IGNORE).sum()))

    @property
    def headline(self) -> tuple[str, ...]:
        """The loss terms and the masked-token accuracy."""
        return (*self.loss_terms, "mlm_accuracy")

    def metrics(self, stats: Stats) -> dict[str, float]:
        """Mean MLM loss, accuracy and perplexity over the selected tokens."""
        return mlm_metrics(stats)

    def sentence_scores(self, encoder: nn.Module, sentences: Sequence[Sequence[int]], specials: SpecialIds,
                        words: Sequence[Sequence[int | None]] | None = None,
                        first_only: bool = False) -> dict[str, torch.Tensor]:
        """Pseudo-log-likelihood under the MLM head (Salazar et al. 2020) and, given words, PLL-word-l2r (Kauf &
        Ivanova 2023)."""
        return pseudo_log_likelihood(encoder, lambda h: self.mlm_logits(encoder, h), sentences, specials,
                                     None if first_only else words)


def mlm_metrics(stats: Stats) -> dict[str, float]:
    """Mean MLM loss, accuracy and perplexity over the selected tokens of summed stats."""
    n = max(float(stats["mlm_count"]), 1.0)
    loss = float(stats["mlm_loss_sum"]) / n
    return {"mlm_loss": loss, "mlm_accuracy": float(stats["mlm_correct"]) / n, "perplexity": math.exp(min(loss, 50.0))}
