"""BLiMP's published scores (Warstadt et al. 2020, TACL; the repository's corrected raw_results/summary figures and
human validation, CC BY 4.0), per paradigm, shipped as a small table (blimp_published.json) so a run's suite scores
stand beside the 5-gram, LSTM, Transformer-XL and GPT-2 of the paper, aggregated as the paper does: the mean over
paradigms overall and per phenomenon."""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable

MODELS = ("ngram", "lstm", "txl", "gpt2")  # the paper's LMs, in its order; "human" besides


@lru_cache(maxsize=1)
def blimp_table() -> dict[str, Any]:
    """The shipped table: source, model names, and per paradigm (UID) its phenomenon and each model's accuracy."""
    return json.loads(resources.files(__package__).joinpath("blimp_published.json").read_text(encoding="utf-8"))


def model_names() -> dict[str, str]:
    """Table key -> the model's name as the paper gives it (ngram -> 5-gram)."""
    return dict(blimp_table()["models"])


def known_identical() -> dict[str, list[str]]:
    """BLiMP's published pairs whose two sentences are the same, UID -> pairIDs (passive_1: 2, principle_A_case_2: 5):
    kept, as every BLiMP pipeline keeps them (a tie: wrong), while any other such pair is an error."""
    return {k: v for k, v in blimp_table()["identical_pairs"].items() if k != "note"}


def paper_phenomenon(paradigm: str) -> str | None:
    """The phenomenon the paper counts a BLiMP paradigm under (its 12), or None for a paradigm not BLiMP's. The data
    files label animate_subject_passive and animate_subject_trans "s-selection"; the paper's tables count them under
    argument_structure."""
    row = blimp_table()["paradigms"].get(paradigm)
    return row["phenomenon"] if row else None


def is_blimp(paradigms: Iterable[str]) -> bool:
    """Whether every paradigm is one of BLiMP's 67 (BLiMP itself, a subset, or BabyLM's filtered BLiMP)."""
    names = set(paradigms)
    return bool(names) and names <= set(blimp_table()["paradigms"])


def published_scores(paradigms: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Per published model: its mean over the given paradigms (None: all 67) as "overall", and per phenomenon the
    mean over that phenomenon's paradigms among them, as "phenomena"."""
    table = blimp_table()["paradigms"]
    chosen = [p for p in (table if paradigms is None else paradigms) if p in table]
    out: dict[str, dict[str, Any]] = {}
    for model in (*MODELS, "human"):
        by_phenomenon: dict[str, list[float]] = {}
        for p in chosen:
            by_phenomenon.setdefault(table[p]["phenomenon"], []).append(table[p][model])
        values = [table[p][model] for p in chosen]
        out[model] = {"overall": sum(values) / len(values) if values else None,
                      "phenomena": {k: sum(v) / len(v) for k, v in by_phenomenon.items()}}
    return out
