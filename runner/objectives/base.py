"""What every pretraining objective declares to the loop, the data, the export and the reports.

An objective is its own file under runner/objectives/: a subclass of `Objective` and its options dataclass
(`options_class`, the `objective` group's schema, registered by runner/config/schema.py as `base_<name>`), plus a YAML
under conf/objective/. The loop, the feeds and the export ask it only what this class declares."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Sequence

import torch
from torch import nn

from runner.data.tokenizer import SpecialIds
from runner.config.errors import ConfigError
from runner.models.base import EncoderModule
from runner.models.config import EncoderConfig
from runner.models.registry import encoder_class

Stats = dict[str, torch.Tensor]


@dataclass
class ObjectiveConfig:
    """Keys every objective has; each objective's options dataclass extends it."""

    _target_: str = "runner.objectives.base.Objective"
    name: str = "objective"

    def check(self) -> None:
        """Raise ConfigError on a value of this group that cannot work, whatever the model (one line naming it)."""


class Export(NamedTuple):
    """One transformers directory a finished run writes: tensors under our names, the config the transformers
    class is chosen and shaped by, whether it has the pair (NSP/SOP) head, whether it is an ELECTRA discriminator."""

    state: dict[str, torch.Tensor]
    config: EncoderConfig
    pair_head: bool
    discriminator: bool = False


@dataclass
class Report:
    """An objective's own end-of-run evaluation: stored as summary[key], logged as metrics, printed as a table."""

    key: str
    value: dict[str, Any]
    metrics: dict[str, float]
    table: Any = None  # a rich renderable


class Objective(nn.Module):
    """Heads and loss of one pretraining task. It receives the encoder at each call and owns no encoder
    weights, so any objective composes with any encoder that can serve it."""

    options_class: ClassVar[type] = ObjectiveConfig
    needs_pairs: ClassVar[bool] = False  # examples are sentence pairs (NSP, SOP) rather than packed text
    # the pair labels its examples carry (runner/data/examples.py LABEL_KEYS: next-sentence or sentence-order
    # labels), which choose the data formats it trains on; None: no pair task
    label_key: ClassVar[str | None] = None
    # the feeds it can be trained on ("examples", "streams": runner/models/base.py EncoderModule.feed)
    feeds: ClassVar[tuple[str, ...]] = ("examples", "streams")
    causal: ClassVar[bool] = False  # predicts each token from the ones before it (needs a causal encoder)
    # the validation metric that is a language-model loss in nats per token, compared with the unigram entropy of
    # the training tokens (the loss of a model blind to context); None: the objective has none
    lm_metric: ClassVar[str | None] = None
    # how the example feed serves it: masks drawn once per example copy (static, BERT) and how many copies; the
    # share of NSP pairs whose segment B comes from another document
    static_masks: bool = False
    copies: int = 1
    random_next_prob: float = 0.5

    def __init__(self, options: Any, model_config: EncoderConfig):
        super().__init__()
        self.options, self.name, self.config = options, options.name, model_config

    @classmethod
    def create(cls, model_config: EncoderConfig, specials: SpecialIds, token_vocab_size: int,
               word_table: torch.Tensor | None = None, **options: Any) -> "Objective":
        """The objective from keyword options over its options dataclass's defaults (checked), as in tests."""
        opts = cls.options_class(**options)
        opts.check()
        return cls(opts, model_config, specials, token_vocab_size, word_table=word_table)

    @classmethod
    def check(cls, config: EncoderConfig, options: Any) -> None:
        """Raise ConfigError if this encoder cannot serve the objective with these options (before any data is
        built). The default: the encoder's feed is one the objective reads, and it attends the way the objective
        predicts."""
        name, family = options.name, config.family
        if cls.causal and not config.causal:
            raise ConfigError(f"objective={name} trains a causal decoder, but model.family={family} "
                              f"{config.bidirectional_why()}")
        feed = encoder_class(family).feed
        if feed not in cls.feeds:
            raise ConfigError(f"model.family={family} is fed contiguous {feed}, but objective={name} needs "
                              f"{' or '.join(cls.feeds)} (its pair head or generator); use a BERT-family model "
                              "(model=bert, roberta, albert, electra) or objective=mlm / clm")
        if not cls.causal and config.causal:
            raise ConfigError(f"model.family={family} is a causal decoder, but objective={name} predicts masked "
                              f"tokens from both sides; {config.causal_fix()}")

    def attach(self, encoder: nn.Module) -> None:
        """Bind to the run's encoder once, before the optimizer exists; objectives that share tensors with it
        (ELECTRA's generator embeddings) point their modules at the encoder's here. Default: nothing."""

    @property
    def loss_terms(self) -> tuple[str, ...]:
        """The metrics (keys of metrics()) that are the terms of the training loss, unweighted: each training record
        carries them as train/<name>, averaged over the steps since the last record. Default: the language-model
        loss."""
        return (self.lm_metric,) if self.lm_metric else ()

    @property
    def headline(self) -> tuple[str, ...]:
        """The few validation metrics the console's line at each validation shows (every metric stays in
        metrics.jsonl and the loggers). Default: the loss terms."""
        return self.loss_terms

    def verdict(self, val: dict[str, float]) -> dict[str, Any] | None:
        """Whether the model the objective trains learned beyond a constant answer, from validation metrics:
        {"what", "learned" (bool), "margin", "text" (one sentence)} for the end-of-run table, summary.json and the
        comparison. None: the objective has no such check (its context gap says it)."""
        return None

    def use_data(self, data: Any) -> None:
        """Read what the objective needs from the run's pretraining data (runner/data/pretraining.py) before
        training: ELECTRA's unigram control samples the training tokens' frequencies. Default: nothing."""

    def prepare(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Turn clean examples into training inputs (e.g. masking); called per batch, or per example (static)."""
        return batch

    @staticmethod
    def encode(encoder: EncoderModule, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Hidden states (B, T, H) of one of the loop's batches (a recurrent encoder reads it with its memory)."""
        return encoder.encode_batch(batch)

    def normalizers(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-loss denominators of a batch; the loop sums them over gradient-accumulation micro-batches."""
        raise NotImplementedError

    def loss(self, encoder: nn.Module, batch: dict[str, torch.Tensor],
             norms: dict[str, Any]) -> tuple[torch.Tensor, Stats]:
        """Total loss divided by `norms`, plus detached sums for metrics."""
        raise NotImplementedError

    def metrics(self, stats: Stats) -> dict[str, float]:
        """Turn summed stats into readable metrics."""
        raise NotImplementedError

    def head_flops(self, batch: dict[str, torch.Tensor]) -> float:
        """Forward matmul FLOPs of the objective's own networks and heads over a batch (runner/models/flops.py)."""
        raise NotImplementedError

    def train_flops(self, encoder: EncoderModule, batch: dict[str, torch.Tensor]) -> float:
        """Training FLOPs of one micro-batch: 3 x the forward of encoder and heads (backward = 2 x forward)."""
        return 3.0 * (encoder.batch_flops(batch) + self.head_flops(batch))

    @property
    def pair_head(self) -> nn.Module | None:
        """The sentence-pair classifier on [CLS] (NSP, SOP), or None."""
        return None

    def exports(self, encoder: nn.Module) -> dict[str, Export]:
        """What a finished run writes for transformers, by subdirectory: the encoder with this objective's heads
        in hf/ (ELECTRA adds its generator: runner/objectives/rtd.py)."""
        state = {**{f"encoder.{k}": v for k, v in encoder.state_dict().items()},
                 **{f"objective.{k}": v for k, v in self.state_dict().items()}}
        return {"hf": Export(state, self.config, self.pair_head is not None)}

    def sentence_scores(self, encoder: nn.Module, sentences: Sequence[Sequence[int]], specials: SpecialIds,
                        words: Sequence[Sequence[int | None]] | None = None,
                        first_only: bool = False) -> dict[str, torch.Tensor]:
        """Log-scores (N,) of whole sentences (token ids without specials) by each of this objective's scorers, the
        one the family is judged by first (runner/objectives/scoring.py); the zero-shot probes and the minimal-pair
        suites compare them on minimal pairs. words: each token's word index (the tokenizer's word_ids), for the
        scorers that need word boundaries (PLL-word-l2r); None: those are left out. first_only: the first scorer alone
        (what a validation during training tracks; the others cost as much again). {}: the objective has no way to
        score a sentence."""
        return {}

    def final_report(self, encoder: EncoderModule, data: Any, cfg: Any, device: torch.device,
                     autocast: Any, results: dict[str, Any] | None = None) -> Report | None:
        """An evaluation of the objective's own at the end of a run (Transformer-XL's memory comparison,
        distillation's student against teacher); `results`: the run's final_val, final_probes, downstream and
        val_batches. None: none."""
        return None

    @classmethod
    def prerequisite(cls, options: Any) -> tuple[str, list[str]] | None:
        """A run that must have finished before this one starts, as (its directory, its overrides): distillation's
        teacher when objective.teach is set and the directory holds no finished run. None: nothing to run first."""
        return None

    @classmethod
    def tokenizer_file(cls, options: Any) -> str | None:
        """A tokenizer.json the objective's data must be tokenized with (distillation: the teacher's); None: the
        data config's own."""
        return None




def options_of(cls: type[Objective], node: Any) -> Any:
    """The objective's options dataclass from a config node (composed, saved or plain dict), defaults filled in."""
    from omegaconf import OmegaConf

    merged = OmegaConf.merge(OmegaConf.structured(cls.options_class), node)
    return OmegaConf.to_object(merged)

