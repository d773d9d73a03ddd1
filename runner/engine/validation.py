"""Validation during training: the objective's metrics over the fixed validation batches, the gap to the unigram
entropy of the training tokens, and the zero-shot probes, timed apart from training."""
from __future__ import annotations

import time
from typing import Any, Protocol, Sequence

import torch

from runner.data.batches import to_device


class Probes(Protocol):
    """What validation asks of the zero-shot probes (runner/evaluation/probes/accuracy.py builds them)."""

    def evaluate(self, objective: Any, encoder: Any) -> dict[str, float]:
        """Accuracy per corruption kind and overall, with interval bounds."""


class Suites(Protocol):
    """What validation asks of the minimal-pair suites (runner/evaluation/probes/suite_scoring.py builds them)."""

    def evaluate(self, objective: Any, encoder: Any, full: bool = False) -> dict[str, float]:
        """Mean-over-paradigm, per-phenomenon and per-paradigm accuracies of the per-paradigm subsample by the first
        scorer (full: every pair by every scorer)."""


class MetricsLog(Protocol):
    """Where the loop's records go (runner/reporting/logger.py RunLogger, or its NullLogger on ranks > 0)."""

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """One record at a training step."""


def validation_line(step: int, total: int | None, train_loss: float, val: dict[str, float],
                    probes: dict[str, float], suites: dict[str, float] | None = None,
                    headline: Sequence[str] | None = None) -> str:
    """One line per validation during training: the loss, the validation metrics the objective names as its headline
    (all of them when None; unigram_gap beside them), the probes' overall accuracy with its interval and each suite's
    mean over paradigms. Every metric stays in metrics.jsonl and the loggers."""
    keys = list(val) if headline is None else [k for k in (*headline, "unigram_gap") if k in val]
    line = f"step {step}/{total or '?'}  train loss {train_loss:.4f}  val " + \
        "  ".join(f"{k} {val[k]:.4g}" for k in keys)
    if "overall" in probes:
        interval = f" [{probes['overall_lo']:.2f}, {probes['overall_hi']:.2f}]" if "overall_lo" in probes else ""
        line += f"  probes {probes['overall']:.3f}{interval}"
    for key, value in (suites or {}).items():
        if key.count("/") == 1 and key.endswith("/overall"):
            line += f"  {key.split('/')[0]} {value:.3f}"
    return line


class Validator:
    """Scores a run's module at a step; remembers the last result (the end of the loop reuses it)."""

    def __init__(self, module: Any, objective: Any, batches: list[dict[str, torch.Tensor]], device: torch.device,
                 amp: Any):
        self.module, self.objective, self.batches, self.device, self.amp = module, objective, batches, device, amp
        self.probes: Probes | None = None  # zero-shot minimal pairs (the run sets them before training)
        self.suites: Suites | None = None  # probes.suites: scored on their per-paradigm subsample at each validation
        self.suite_scores: dict[int, dict[str, float]] = {}  # step -> the subsample's metrics (the last one kept)
        self.unigram_entropy: float | None = None  # the context-blind loss of the training tokens
        self.seconds = 0.0  # validation and probes in this invocation
        self.last: tuple[int, dict[str, float], dict[str, float]] | None = None  # (step, metrics, probes)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Validation metrics over the pre-masked validation batches."""
        self.module.eval()
        totals: dict[str, torch.Tensor] = {}
        for batch in self.batches:
            b = to_device(batch, self.device)
            with self.amp.autocast():
                _, stats = self.module(b, {k: 1.0 for k in self.objective.normalizers(b)})
            for k, v in stats.items():
                # summed as float64 tensors: counts stay exact, and vector stats (ELECTRA's histograms) add up
                v = v.detach().to("cpu", torch.float64)
                totals[k] = totals[k] + v if k in totals else v
        self.module.train()
        return self.objective.metrics(totals)

    def __call__(self, step: int) -> tuple[dict[str, float], dict[str, float]]:
        """Validation metrics (with the gap to the unigram entropy) and probe accuracies at this step."""
        start = time.perf_counter()
        val = self.evaluate()
        key = self.objective.lm_metric
        if self.unigram_entropy is not None and key in val:  # > 0: the model uses context
            val["unigram_gap"] = self.unigram_entropy - val[key]
        probes = self.probes.evaluate(self.objective, self.module.encoder) if self.probes is not None else {}
        if self.suites is not None:
            self.suite_scores = {step: self.suites.evaluate(self.objective, self.module.encoder)}
        self.seconds += time.perf_counter() - start
        self.last = (step, val, probes)
        return val, probes

    def full_suites(self) -> dict[str, float]:
        """The full suites' metrics by every scorer (the end of a run), timed with validation; {} without suites."""
        if self.suites is None:
            return {}
        start = time.perf_counter()
        out = self.suites.evaluate(self.objective, self.module.encoder, full=True)
        self.seconds += time.perf_counter() - start
        return out

    def at(self, step: int) -> tuple[dict[str, float], dict[str, float]]:
        """The validation of this step: the loop's when it ran at this step (it is deterministic), else a new one."""
        if self.last is not None and self.last[0] == step:
            return self.last[1], self.last[2]
        return self(step)
