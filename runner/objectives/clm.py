"""Causal language modelling over contiguous streams with Transformer-XL's memory (Dai et al. 2019).

Batches come from runner/data/lm_stream.py: each row continues its own stream in the next step, so the memory
a row carries is the hidden states of the text right before it. The model keeps the memories
(TransformerXL.encode_stream: one per stream slot, kept in checkpoints); this objective adds the adaptive softmax
tied to the model's adaptive embeddings and the next-token loss.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from runner.data.tokenizer import SpecialIds
from runner.models.adaptive import AdaptiveSoftmax
from runner.models.config import EncoderConfig
from runner.objectives.base import Objective, Stats, require
from runner.objectives.scoring import per_token_sum, plain_hidden

RESETS = ("stream", "document")


class CausalLM(Objective):
    """Next-token prediction with an adaptive (or full) softmax tied to the model's adaptive embeddings."""

    streams = True  # the loop feeds contiguous-stream batches (StreamBatches), not example sets
    lm_metric = "lm_loss"

    def __init__(self, model_config: EncoderConfig, specials: SpecialIds, token_vocab_size: int, name: str = "clm",
                 reset: str = "stream", compare_tokens: int = 256, word_table: Any = None):
        super().__init__(model_config, name)
        require(reset in RESETS, f"objective.reset={reset!r} must be one of {', '.join(RESETS)}")
        require(compare_tokens >= 0, f"objective.compare_tokens={compare_tokens} must be >= 0 (0 skips the "
                "memory / sliding-window comparison)")
        self.reset, self.compare_tokens, self.sep = reset, compare_tokens, specials.sep
        self.char_level = model_config.tokenizer == "char"  # bits per character instead of per token
        self.lm_head = AdaptiveSoftmax(model_config)

    @classmethod
    def check(cls, config: EncoderConfig, name: str) -> None:
        """Causal LM needs the Transformer-XL decoder (the BERT-family encoders attend both ways)."""
        require(config.family == "txl", f"objective={name} trains a causal decoder, but model.family="
                f"{config.family} is a bidirectional encoder; use model=txl (or another txl_* preset), or a masked "
                "objective (mlm, rtd) with this model")
        require(not config.bidirectional, f"objective={name} predicts the next token, but model.bidirectional=true "
                "lets every token see the ones after it; set model.bidirectional=false, or use objective=mlm")

    def hidden(self, encoder: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Hidden states (B, T, H) of a stream batch, read with (and updating) its slot's memory."""
        return encoder.encode_stream(batch, self.sep, document_reset=self.reset == "document")

    # ---- loss ------------------------------------------------------------------------------------------------
    def normalizers(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The loss is a mean over every predicted token of the (accumulated) batch."""
        return {"lm": torch.tensor(batch["labels"].numel())}

    def token_nll(self, encoder: nn.Module, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood (B, T) of labels (B, T) given hidden states (B, T, H)."""
        flat = hidden.reshape(-1, hidden.shape[-1])  # (B*T, H)
        return self.lm_head.nll(flat, labels.reshape(-1), encoder.embeddings).view(labels.shape)

    def loss(self, encoder: nn.Module, batch: dict[str, torch.Tensor],
             norms: dict[str, Any]) -> tuple[torch.Tensor, Stats]:
        """Summed next-token NLL over the batch, normalised by the accumulated token count."""
        nll = self.token_nll(encoder, self.hidden(encoder, batch), batch["labels"])
        total = nll.sum()
        stats = {"lm_nll_sum": total.detach().double(), "lm_count": torch.tensor(nll.numel(), dtype=torch.float64)}
        return total / max(float(norms["lm"]), 1.0), stats

    def metrics(self, stats: Stats) -> dict[str, float]:
        """Mean NLL (nats per token), perplexity, and bits per character for character-level vocabularies."""
        return lm_metrics(float(stats["lm_nll_sum"]), float(stats["lm_count"]), self.char_level)

    def sentence_scores(self, encoder: nn.Module, sentences: Sequence[Sequence[int]],
                        specials: SpecialIds) -> dict[str, torch.Tensor]:
        """Log-likelihood of each sentence read as a new document (after a separator), without memory."""
        def next_token_logp(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            hidden = plain_hidden(encoder, ids, mask)  # (B, T, H), causal
            nll = self.token_nll(encoder, hidden[:, :-1], ids[:, 1:])  # (B, T - 1): token t given those before
            return F.pad(-nll, (1, 0))  # (B, T): the separator itself is not scored
        return {"loglik": per_token_sum(encoder, next_token_logp, sentences, [self.sep], [], specials.pad)}


def lm_metrics(nll_sum: float, count: float, char_level: bool) -> dict[str, float]:
    """lm_loss (nats per token), perplexity, and bpc (bits per character) when tokens are characters."""
    loss = nll_sum / max(count, 1.0)
    out = {"lm_loss": loss, "perplexity": math.exp(min(loss, 50.0))}
    if char_level:
        out["bpc"] = loss / math.log(2)
    return out
