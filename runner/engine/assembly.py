"""A built run: the encoder and the objective that trains it as one module, the data, and the time it took to build
(runner/build.py assembles it; the loop, evaluation and the export read it)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from runner.data.pretraining import PretrainingData
from runner.models.base import EncoderModule
from runner.models.config import EncoderConfig
from runner.objectives.base import Objective


class Pretrainer(nn.Module):
    """An encoder and the objective that trains it; the objective receives the encoder on each call."""

    def __init__(self, encoder: EncoderModule, objective: Objective):
        super().__init__()
        self.encoder, self.objective = encoder, objective
        objective.attach(encoder)  # before any optimizer sees the parameters (ELECTRA shares embeddings)

    def forward(self, batch: dict[str, torch.Tensor], norms: dict) -> tuple[torch.Tensor, dict]:
        """Loss of a batch, normalised by `norms`, and its stats."""
        return self.objective.loss(self.encoder, batch, norms)


@dataclass
class Built:
    """Everything a training run needs, before the loop starts."""

    config: EncoderConfig
    data: PretrainingData
    module: Pretrainer
    seconds: float = 0.0  # to build it: corpus, tokenizer, tokenized splits, model

    @property
    def objective(self) -> Objective:
        """The objective module."""
        return self.module.objective
