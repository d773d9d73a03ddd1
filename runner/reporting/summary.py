"""What a run says at its end: the console lines and table (what to look at first; summary.json has the rest)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table


def _num(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.3e}" if v and (abs(v) >= 1e5 or abs(v) < 1e-3) else f"{v:.4g}"


def probe_cell(p: dict[str, float], kinds: list[str]) -> str:
    """'swap 0.62 [0.54, 0.69]  replace ...  overall ...' from flat probe metrics."""
    parts = []
    for k in [*kinds, "overall"]:
        if k in p:
            ci = f" [{p[f'{k}_lo']:.2f}, {p[f'{k}_hi']:.2f}]" if f"{k}_lo" in p else ""
            parts.append(f"{k} {p[k]:.2f}{ci}")
    return "  ".join(parts)


def _validation_cell(s: dict[str, Any]) -> str:
    first, final = s.get("initial_val") or {}, s.get("final_val") or {}
    out = []
    for k, v in final.items():
        if k == "unigram_gap":
            continue
        out.append(f"{k} {_num(first[k])} -> {_num(v)}" if k in first else f"{k} {_num(v)}")
    return ", ".join(out)


def _downstream_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    tasks = s.get("downstream_tasks") or ({s["downstream"]["task"]: s["downstream"]} if s.get("downstream") else {})
    rows = []
    for name, d in tasks.items():
        cell = f"pretrained {d['accuracy_mean']:.3f} +/- {d['accuracy_std']:.3f}"
        for b, r in (d.get("baselines") or {}).items():
            cell += f" | {b.replace('_', ' ')} {r['accuracy_mean']:.3f}"
            if r.get("accuracy_std"):
                cell += f" +/- {r['accuracy_std']:.3f}"
        if d.get("baselines_source"):
            cell += f" (baselines {d['baselines_source']})"
        rows.append((f"downstream {name}", cell + f", chance {d['chance']['majority_accuracy']:.3f}"
                     if d.get("chance") else cell))
    return rows


def report_table(s: dict[str, Any]) -> Table:
    """The end-of-run table: validation, unigram gap, probes, downstream, cost, time and files; one screen."""
    table = Table(title=f"run summary: {s.get('name', '')}", show_header=False, expand=False)
    table.add_column("what", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    if s.get("final_val"):
        table.add_row("validation", _validation_cell(s))
    gap = (s.get("final_val") or {}).get("unigram_gap")
    if gap is not None and s.get("unigram_entropy") is not None:
        where = "below" if gap > 0 else "above"
        table.add_row("context", f"loss {abs(gap):.3f} nats {where} the unigram entropy of the training tokens "
                      f"({s['unigram_entropy']:.3f}, a context-blind model's loss)")
    pr = s.get("probes") or {}
    if pr.get("final"):
        kinds = list(pr.get("pairs", {}))
        scorers = pr.get("scorers") or ["score"]
        n = ", ".join(f"{v} {k}" for k, v in pr.get("pairs", {}).items())
        first = pr.get("initial") or {}
        table.add_row(f"probes ({scorers[0]})", probe_cell(pr["final"], kinds) +
                      (f"; at step 0 overall {first['overall']:.2f}" if "overall" in first else "") +
                      f"; chance 0.50, {n} pairs")
        for other in scorers[1:]:
            sub = {k.split("/", 1)[1]: v for k, v in pr["final"].items() if k.startswith(f"{other}/")}
            table.add_row(f"probes ({other})", probe_cell(sub, kinds))
    for name, cell in _downstream_rows(s):
        table.add_row(name, cell)
    if s.get("crossover"):
        c, top = s["crossover"], s["crossover"].get("max_flops") or 0
        say = lambda x: f"from {x:.1e} FLOPs" if x is not None else f"not by {top:.1e} FLOPs"  # noqa: E731
        table.add_row("crossover", "; ".join([*(f"{t} beats random init {say(x)}" for t, x in c["tasks"].items()),
                                              *(f"probe {k} above chance {say(x)}" for k, x in c["probes"].items())])
                      + " (crossover.json)")
    params = (s.get("parameters") or {}).get("total")
    exported = s.get("exported_parameters")
    cost = f"{_num(params)} parameters" if params else ""
    if exported:
        cost += f" ({', '.join(f'{k} {v:,}' for k, v in exported.items())} as exported)"
    if s.get("steps"):
        cost += (f", {s['steps']:,} steps, {_num(s.get('tokens_seen', 0))} tokens, {s.get('train_flops', 0):.2e} "
                 f"FLOPs, {s.get('tokens_per_s', 0):,.0f} tokens/s")
    if pad := s.get("padding"):  # what packing saved: the padding computed, and as right-padded rows
        cost += f", padding {pad['computed']:.1%} (padded rows: {pad['padded_layout']:.1%})"
    table.add_row("cost", cost)
    if s.get("time_s"):
        table.add_row("time (s)", ", ".join(f"{k.replace('_', ' ')} {v:,.0f}" for k, v in s["time_s"].items()))
    run_dir = Path(s.get("run_dir", "."))
    files = [str(run_dir / "summary.json"), "metrics.jsonl"]
    if s.get("hf_export"):
        files.append(Path(s["hf_export"]).name + "/")
    table.add_row("files", ", ".join(files))
    return table
