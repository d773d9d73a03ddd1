"""Minimal-pair suites (suites.py) scored by any scorer of whole sentences, as the field scores BLiMP: a pair is right
when the grammatical sentence scores strictly higher (a tie is wrong: a model that scores every sentence the same
gets 0, not 0.5 or 1); a paradigm's accuracy is its share of right pairs; a suite's overall score is the mean of
its paradigms' accuracies, a phenomenon's the mean of its paradigms'.

The scorer is a run's objective (each family's own head: Objective.sentence_scores) or a transformers model
(transformers_scorer.py); both go through SuiteProbes.evaluate_with, so a run and its hf/ export are scored by one
piece of code. A sentence is encoded as the tokenizer encodes it: a pair with an unknown token (the tokenizer's unk
id) in either sentence is scored as it is, and its share is reported (`unk_share`).

Flat metrics (metrics.jsonl, W&B: under suite/ during training on the per-paradigm subsample, suite_full/ at the
end): <suite>/overall (the first scorer's), <suite>/<scorer>/overall, <suite>/<scorer>/phenomenon/<term>,
<suite>/<scorer>/paradigm/<UID>, <suite>/pairs and <suite>/unk_share."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from tokenizers import Tokenizer
from torch import nn

from runner.data.tokenizer import SpecialIds, encode_with_words
from runner.evaluation.probes.suites import Suite, read_suites

Scorer = Callable[[list[list[int]], list[list[int | None]]], dict[str, torch.Tensor]]
"""(token ids, word indices) of N sentences -> {scorer name: log-scores (N,)}, the family's own scorer first."""


@dataclass
class EncodedSuite:
    """A suite's pairs tokenized once: unique sentences, and per pair the rows of its good and bad sentence."""

    suite: Suite
    ids: list[list[int]]
    words: list[list[int | None]]
    good: torch.Tensor  # (P,) row of each pair's grammatical sentence
    bad: torch.Tensor  # (P,)
    unknown: torch.Tensor  # (P,) bool: either sentence holds the unknown token


def encode_suite(suite: Suite, tokenizer: Tokenizer, unk_id: int | None, max_tokens: int | None) -> EncodedSuite:
    """suite's sentences encoded once each (a sentence in several pairs is scored once), cut to max_tokens."""
    texts = list(dict.fromkeys(s for p in suite.pairs for s in (p.good, p.bad)))
    row = {t: i for i, t in enumerate(texts)}
    ids, words = encode_with_words(tokenizer, texts)
    if max_tokens is not None:
        ids, words = [x[:max_tokens] for x in ids], [w[:max_tokens] for w in words]
    has_unk = torch.tensor([unk_id is not None and unk_id in x for x in ids])
    good = torch.tensor([row[p.good] for p in suite.pairs])
    bad = torch.tensor([row[p.bad] for p in suite.pairs])
    return EncodedSuite(suite, ids, words, good, bad, has_unk[good] | has_unk[bad])


def accuracies(suite: Suite, right: torch.Tensor) -> tuple[float, dict[str, float], dict[str, float]]:
    """(overall, per phenomenon, per paradigm) from right (P,) bool: the mean of paradigm accuracies overall and per
    phenomenon, as BLiMP reports them."""
    rows: dict[str, list[int]] = {}  # paradigm -> its pairs, in one pass
    for i, p in enumerate(suite.pairs):
        rows.setdefault(p.paradigm, []).append(i)
    per_paradigm = {paradigm: float(right[torch.tensor(idx)].double().mean()) for paradigm, idx in rows.items()}
    phenomenon_of = suite.phenomenon_of()
    per_phenomenon: dict[str, list[float]] = {}
    for paradigm, acc in per_paradigm.items():
        per_phenomenon.setdefault(phenomenon_of[paradigm], []).append(acc)
    overall = sum(per_paradigm.values()) / len(per_paradigm)
    return overall, {k: sum(v) / len(v) for k, v in per_phenomenon.items()}, per_paradigm


def suite_metrics(encoded: EncodedSuite, scores: dict[str, torch.Tensor]) -> dict[str, float]:
    """The flat metrics of one suite from its sentences' scores by each scorer."""
    name, out = encoded.suite.name, {}
    for rank, (scorer, s) in enumerate(scores.items()):
        right = s[encoded.good] > s[encoded.bad]  # a tie is wrong
        overall, phenomena, paradigms = accuracies(encoded.suite, right)
        if rank == 0:
            out[f"{name}/overall"] = overall
        out[f"{name}/{scorer}/overall"] = overall
        out.update({f"{name}/{scorer}/phenomenon/{k}": v for k, v in phenomena.items()})
        out.update({f"{name}/{scorer}/paradigm/{k}": v for k, v in paradigms.items()})
    out[f"{name}/pairs"] = float(len(encoded.suite.pairs))
    out[f"{name}/unk_share"] = float(encoded.unknown.double().mean())
    return out


def objective_scorer(objective: nn.Module, encoder: nn.Module, specials: SpecialIds, first_only: bool = False) -> Scorer:
    """A run's scorer: its objective's own heads (Objective.sentence_scores; first_only: the first scorer alone), in
    eval mode while it scores."""
    def score(ids: list[list[int]], words: list[list[int | None]]) -> dict[str, torch.Tensor]:
        was = (encoder.training, objective.training)
        encoder.eval()
        objective.eval()
        try:
            with torch.no_grad():
                return objective.sentence_scores(encoder, ids, specials, words, first_only)
        finally:
            encoder.train(was[0])
            objective.train(was[1])
    return score


class SuiteProbes:
    """probes.suites tokenized once with one tokenizer: the per-paradigm subsample scored at every validation, the
    full suites at the end."""

    def __init__(self, suites: Sequence[Suite], tokenizer: Tokenizer, unk_id: int | None, specials: SpecialIds | None,
                 max_tokens: int | None = None, per_paradigm: int | None = None, seed: int = 0):
        self.specials, self.per_paradigm, self.seed = specials, per_paradigm, seed
        self.full = [encode_suite(s, tokenizer, unk_id, max_tokens) for s in suites]
        self.during = self.full if per_paradigm is None else \
            [encode_suite(s.sample(per_paradigm, seed), tokenizer, unk_id, max_tokens) for s in suites]
        self.scorers: list[str] = []  # the scorer names, once scored

    def evaluate_with(self, score: Scorer, full: bool = False) -> dict[str, float]:
        """Flat metrics of every suite (the full suites, or the subsample scored during training) by score."""
        out: dict[str, float] = {}
        for encoded in self.full if full else self.during:
            scores = score(encoded.ids, encoded.words)
            if not scores:
                return {}
            if full or not self.scorers:
                self.scorers = list(scores)
            out.update(suite_metrics(encoded, scores))
        return out

    def evaluate(self, objective: nn.Module, encoder: nn.Module, full: bool = False) -> dict[str, float]:
        """evaluate_with the run's own heads ({} when its objective cannot score sentences): during training the
        subsample by the family's first scorer (its others cost as much again), at the end (full) every pair by every
        scorer."""
        return self.evaluate_with(objective_scorer(objective, encoder, self.specials, first_only=not full), full)

    def report(self, metrics: dict[str, float], full: bool = True) -> dict[str, Any]:
        """summary.json's `suites`: per suite its path, counts, scorers, overall, per phenomenon and per paradigm."""
        out: dict[str, Any] = {}
        for encoded in self.full if full else self.during:
            out[encoded.suite.name] = suite_report(encoded.suite, metrics, self.scorers,
                                                   None if full else self.per_paradigm, self.seed)
        return out


def suite_report(suite: Suite, metrics: dict[str, float], scorers: Sequence[str], per_paradigm: int | None,
                 seed: int) -> dict[str, Any]:
    """One suite's nested report from its flat metrics."""
    n = suite.name
    phenomenon_of = suite.phenomenon_of()
    return {"path": suite.path, "pairs": int(metrics.get(f"{n}/pairs", 0)), "paradigm_count": len(phenomenon_of),
            "pairs_per_paradigm": per_paradigm, "seed": seed, "scorers": list(scorers),
            "unk_share": metrics.get(f"{n}/unk_share"),
            "overall": {s: metrics[f"{n}/{s}/overall"] for s in scorers if f"{n}/{s}/overall" in metrics},
            "phenomena": {term: {s: metrics[f"{n}/{s}/phenomenon/{term}"] for s in scorers
                                 if f"{n}/{s}/phenomenon/{term}" in metrics}
                          for term in dict.fromkeys(phenomenon_of.values())},
            "paradigms": {uid: {"phenomenon": term, **{s: metrics[f"{n}/{s}/paradigm/{uid}"] for s in scorers
                                                      if f"{n}/{s}/paradigm/{uid}" in metrics}}
                          for uid, term in phenomenon_of.items()}}


def build_suite_probes(cfg: Any, data: Any) -> SuiteProbes | None:
    """The run's suites (probes.suites) over its tokenizer, or None when it names none."""
    p = cfg.get("probes")
    if p is None or not p.get("suites"):
        return None
    suites = read_suites(list(p.suites))
    if p.get("suite_final_pairs") is not None:
        suites = [s.sample(p.suite_final_pairs, p.seed) for s in suites]
    return SuiteProbes(suites, data.tokenizer, data.specials.unk, data.specials, cfg.data.seq_len - 2,
                       p.get("suite_pairs"), p.seed)
