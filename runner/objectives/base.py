"""What every pretraining objective provides to the loop: heads, batch preparation, a normalised loss."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from runner.data.tokenizer import SpecialIds
from runner.errors import ConfigError
from runner.models.config import EncoderConfig

Stats = dict[str, torch.Tensor]


class Objective(nn.Module):
    """Heads and loss of one pretraining task. It receives the encoder at each call and owns no encoder
    weights, so any objective composes with any encoder that can serve it."""

    needs_pairs: bool = False  # True when examples are sentence pairs (NSP) rather than packed text
    # the validation metric that is a language-model loss in nats per token, compared with the unigram entropy of
    # the training tokens (the loss of a model blind to context); None: the objective has none
    lm_metric: str | None = None

    def __init__(self, model_config: EncoderConfig, name: str):
        super().__init__()
        self.name = name
        self.config = model_config

    @classmethod
    def check(cls, config: EncoderConfig, name: str) -> None:
        """Raise ConfigError if this encoder cannot serve the objective (called before any data is built)."""

    @classmethod
    def check_options(cls, config: EncoderConfig, options: Any) -> None:
        """Raise ConfigError if the objective's own keys (the `objective` node) cannot work with this encoder,
        before any data is built (ELECTRA's generator size and tying)."""

    def attach(self, encoder: nn.Module) -> None:
        """Bind to the run's encoder once, before the optimizer exists; objectives that share tensors with it
        (ELECTRA's generator embeddings) point their modules at the encoder's here. Default: nothing."""

    def prepare(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Turn clean examples into training inputs (e.g. masking); called per batch, or per example (static)."""
        return batch

    @staticmethod
    def encode(encoder: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Hidden states (B, T, H) of a batch; a recurrent model (Transformer-XL) reads the loop's contiguous-stream
        batches with its memory of the previous segment."""
        if hasattr(encoder, "encode_stream"):
            return encoder.encode_stream(batch, sep=-1)  # no document resets: -1 is never a token id
        return encoder(batch["input_ids"], batch.get("token_type_ids"), batch.get("attention_mask"))

    def normalizers(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-loss denominators of a batch; the loop sums them over gradient-accumulation micro-batches."""
        raise NotImplementedError

    def loss(self, encoder: nn.Module, batch: dict[str, torch.Tensor],
             norms: dict[str, Any]) -> tuple[torch.Tensor, Stats]:
        """Total loss divided by `norms`, plus detached sums for metrics."""
        raise NotImplementedError

    @staticmethod
    def metrics(stats: Stats) -> dict[str, float]:
        """Turn summed stats into readable metrics."""
        raise NotImplementedError

    def sentence_scores(self, encoder: nn.Module, sentences: Sequence[Sequence[int]],
                        specials: SpecialIds) -> dict[str, torch.Tensor]:
        """Log-scores (N,) of whole sentences (token ids without specials) by each of this objective's scorers, the
        one the family is judged by first (runner/objectives/scoring.py); the zero-shot probes compare them on
        minimal pairs. {}: the objective has no way to score a sentence."""
        return {}


def require(ok: bool, message: str) -> None:
    """Raise ConfigError with message unless ok."""
    if not ok:
        raise ConfigError(message)
