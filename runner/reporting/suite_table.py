"""Minimal-pair suite results on the console (a run's end, python -m runner.evaluate): one line per suite in the run's
summary table, and per suite a table of its phenomena, each scorer beside BLiMP's published models when the suite is
BLiMP's (runner/evaluation/probes/published.py)."""
from __future__ import annotations

from typing import Any

from rich.table import Table

from runner.evaluation.probes.published import MODELS, is_blimp, model_names, published_scores


def _published(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    paradigms = list(report.get("paradigms") or {})
    return published_scores(paradigms) if is_blimp(paradigms) else {}


def suite_line(report: dict[str, Any]) -> str:
    """'pll 0.534, pll_word_l2r 0.528 (mean of 67 paradigms, 67,000 pairs); published 5-gram 0.612, ...'."""
    scores = ", ".join(f"{s} {x:.3f}" for s, x in (report.get("overall") or {}).items())
    line = f"{scores} (mean of {report.get('paradigm_count', 0)} paradigms, {report.get('pairs', 0):,} pairs"
    if report.get("unk_share"):
        line += f", {report['unk_share']:.1%} with an unknown token"
    line += ")"
    if pub := _published(report):
        names = model_names()
        line += "; published " + ", ".join(f"{names[m]} {pub[m]['overall']:.3f}" for m in MODELS)
    return line


def suite_table(name: str, report: dict[str, Any]) -> Table:
    """Per phenomenon (the mean of its paradigms) each scorer's accuracy, and BLiMP's published models beside them."""
    scorers = list(report.get("scorers") or [])
    pub = _published(report)
    names = {**model_names(), "txl": "TXL"}  # short enough for an 80-column screen
    table = Table(title=f"{name}: accuracy per phenomenon (mean of its paradigms; chance 0.50, ties count as wrong)")
    table.add_column("phenomenon", no_wrap=True)
    table.add_column("n", justify="right")  # paradigms
    for s in scorers:
        table.add_column(s.replace("_", " "), justify="right", overflow="fold")
    for m in MODELS if pub else ():
        table.add_column(names[m], justify="right", style="dim", overflow="fold")
    count = {}
    for p in (report.get("paradigms") or {}).values():
        count[p["phenomenon"]] = count.get(p["phenomenon"], 0) + 1
    for term, row in (report.get("phenomena") or {}).items():
        table.add_row(term, str(count.get(term, "")), *(f"{row[s]:.3f}" if s in row else "" for s in scorers),
                      *(f"{pub[m]['phenomena'].get(term, float('nan')):.3f}" for m in MODELS if pub))
    overall = report.get("overall") or {}
    table.add_row("overall", str(report.get("paradigm_count", "")),
                  *(f"{overall[s]:.3f}" if s in overall else "" for s in scorers),
                  *(f"{pub[m]['overall']:.3f}" for m in MODELS if pub), style="bold")
    return table
