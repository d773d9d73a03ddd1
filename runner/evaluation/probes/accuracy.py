"""Score minimal pairs with a run's objective and report accuracy per corruption and overall, with a 95% binomial
(Wilson) interval; chance is 50%. A pair passes when the original sentence scores higher than its corrupted copy
(a tie counts half). Scores are summed over tokens; `_norm` variants divide by the sentence's token count."""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from tokenizers import Tokenizer
from torch import nn

from runner.data.tokenizer import SpecialIds, encode_sentences
from runner.evaluation.probes.pairs import Pair
from runner.config.console import console
from runner.evaluation.probes.pairs import build_pairs

Z95 = 1.959964


def wilson(passed: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval (lo, hi) of a binomial proportion passed / n."""
    if n == 0:
        return 0.0, 1.0
    p = passed / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def pass_rate(original: torch.Tensor, corrupted: torch.Tensor) -> float:
    """Share of pairs whose original outscores its corrupted copy, ties counted half."""
    wins = (original > corrupted).double() + 0.5 * (original == corrupted).double()
    return float(wins.mean()) if wins.numel() else math.nan


class Probes:
    """A run's minimal pairs, tokenized once with its tokenizer (each sentence cut to max_tokens tokens)."""

    def __init__(self, pairs: Sequence[Pair], tokenizer: Tokenizer, specials: SpecialIds, max_tokens: int):
        self.pairs, self.specials = list(pairs), specials
        texts = [p.original for p in self.pairs] + [p.corrupted for p in self.pairs]
        self.ids = [ids[:max_tokens] for ids in encode_sentences(tokenizer, texts)]
        self.kinds = sorted({p.kind for p in self.pairs}, key=[p.kind for p in self.pairs].index)
        self.scorers: list[str] = []  # the objective's scorer names, once evaluate() ran

    def counts(self) -> dict[str, int]:
        """Pairs per corruption kind."""
        return {k: sum(p.kind == k for p in self.pairs) for k in self.kinds}

    @torch.no_grad()
    def evaluate(self, objective: nn.Module, encoder: nn.Module) -> dict[str, float]:
        """Flat metrics: <kind>, <kind>_lo, <kind>_hi, <kind>_norm and overall* by the objective's first scorer;
        <scorer>/<kind> and <scorer>/overall by any other; {} when the objective cannot score sentences."""
        was = (encoder.training, objective.training)
        encoder.eval()
        objective.eval()
        try:
            scores = objective.sentence_scores(encoder, self.ids, self.specials)
            self.scorers = list(scores)
        finally:
            encoder.train(was[0])
            objective.train(was[1])
        P = len(self.pairs)
        lengths = torch.tensor([max(len(x), 1) for x in self.ids], dtype=torch.float64)
        kind_of = [p.kind for p in self.pairs]
        out: dict[str, float] = {}
        for rank, (scorer, s) in enumerate(scores.items()):
            prefix = "" if rank == 0 else f"{scorer}/"
            for norm, values in (("", s), ("_norm", s / lengths)):
                orig, corr = values[:P], values[P:]
                for kind in [*self.kinds, "overall"]:
                    sel = torch.tensor([kind in ("overall", k) for k in kind_of])
                    acc = pass_rate(orig[sel], corr[sel])
                    out[f"{prefix}{kind}{norm}"] = acc
                    if rank == 0 and not norm:
                        n = int(sel.sum())
                        out[f"{kind}_lo"], out[f"{kind}_hi"] = wilson(acc * n, n)
        return out


def build_probes(cfg: Any, data: Any) -> Probes | None:
    """The run's probes (cfg.probes) over its PretrainingData's tokenizer, or None when off or no sentence of the
    split can be corrupted (said on the console)."""

    p = cfg.get("probes")
    if p is None or not p.enabled:
        return None
    pairs = build_pairs(cfg.data, p.split, p.pairs, p.seed, list(p.kinds), p.min_words, p.max_words)
    if not pairs:
        console.print(f"[yellow]note:[/] no probe pairs: the {p.split} split has no sentence of {p.min_words}-"
                      f"{p.max_words} words to corrupt", highlight=False, soft_wrap=True)
        return None
    return Probes(pairs, data.tokenizer, data.specials, cfg.data.seq_len - 2)
