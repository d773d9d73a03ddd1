"""What a run says at its end: summary.json assembled from the trainer, its progress and the results of the work after
training, the time each phase took (PhaseClock), and the console lines and table (what to look at first; summary.json
has the rest)."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from omegaconf import DictConfig
from rich.table import Table

from runner.config.console import console
from runner.engine.assembly import Built
from runner.engine.loop import Trainer
from runner.evaluation.after_training import (downstream_enabled, downstream_metrics, finetune_hint, glue_line,
                                               store_downstream)
from runner.evaluation.downstream.metrics import beside
from runner.hf.export import exported_counts
from runner.store.layout import METRICS, SUMMARY
from runner.reporting.suite_table import suite_line, suite_table


class PhaseClock:
    """Where a run's time goes: seconds per phase (data, validation_probes, finetuning, export: summary.json's
    time_s), each block timed with phase(), and the wall time since the clock started plus what was spent before it
    (the build: corpus, tokenizer, model)."""

    def __init__(self, **before: float):
        self.started = time.perf_counter()
        self.before = dict(before)
        self.spent: dict[str, float] = dict(before)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Count the block's time to phase `name`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.spent[name] = self.spent.get(name, 0.0) + time.perf_counter() - start

    def seconds(self, name: str) -> float:
        """Seconds counted to phase `name` so far (0.0 when none)."""
        return self.spent.get(name, 0.0)

    def total(self) -> float:
        """Seconds since the clock started, with the time spent before it."""
        return time.perf_counter() - self.started + sum(self.before.values())


@dataclass
class RunEnd:
    """What a run's end produced, for its summary: where and under which names it logged, the last training
    record, the final validation and probes, and the results of the work after training (None: not done)."""

    run_dir: Path
    name: str
    group: str
    last: dict[str, Any]
    final_val: dict[str, float]
    final_probes: dict[str, float]
    finished: bool  # trained to its end (its steps or budget) and validated
    parameters: dict[str, int]  # per module and the unique total (runner/build.py parameter_counts)
    presets: dict[str, int] | None = None  # model.report_presets counted beside this run
    downstream: dict[str, Any] | None = None
    own: Any = None  # the objective's own evaluation (runner/objectives/base.py Report)
    crossover: dict[str, Any] | None = None
    exported: bool = False  # the hf/ export was attempted (hf_export: its directory, None when skipped)
    hf_export: str | None = None
    suites: dict[str, float] | None = None  # the full minimal-pair suites' flat metrics (probes.suites)


def padding_shares(p: Any) -> dict[str, Any]:
    """The share of padding in what training computed, apart for the token-wise layers (embeddings, projections,
    feed-forwards, norms, per-token heads: 0 when the encoder unpads, runner/models/unpadded.py) and for attention
    (the positions of its rows: data.packing's packed rows hold little), and the share the same batches would have had
    as right-padded rows, one example each; {} before any step, or for a run resumed from a checkpoint that did not
    count positions (token_wise left out when it did not count the token-wise rows)."""
    if not p.positions or p.positions < p.tokens:
        return {}
    out = {"attention": round(1 - p.tokens / p.positions, 4),
           "padded_layout": round(1 - p.tokens / p.padded_positions, 4),
           "positions": p.positions, "padded_positions": p.padded_positions}
    if p.token_rows >= p.tokens > 0:
        out = {"token_wise": round(1 - p.tokens / p.token_rows, 4), **out, "token_rows": p.token_rows}
    return out


def run_summary(cfg: DictConfig, built: Built, trainer: Trainer, logger: Any, clock: PhaseClock,
                end: RunEnd) -> dict[str, Any]:
    """summary.json's content: the run's identity, size, progress and cost, its validation, probes, budget and the
    results after training, and where its time went (this invocation's; training: every invocation's steps)."""
    p, v = trainer.progress, trainer.validate
    summary = {
        "name": end.name, "model": cfg.model.name, "objective": cfg.objective.name, "data": cfg.data.name,
        "run_dir": str(end.run_dir),
        "parameters": end.parameters,
        "exported_parameters": exported_counts(built),  # each hf/ model as transformers counts it
        "steps": p.step, "max_steps": trainer.max_steps,
        "effective_batch": cfg.trainer.batch_size * cfg.trainer.grad_accum * trainer.world, "world_size": trainer.world,
        "seq_len": cfg.data.seq_len,
        "tokens_seen": p.tokens, "words_seen": trainer.compute_axes().get("train/words"), "train_flops": p.flops, "final_train_loss": end.last.get("loss"),
        "initial_val": p.first_val or {}, "final_val": end.final_val, "train_time_s": p.elapsed,
        "tokens_per_s": p.tokens / p.elapsed if p.elapsed else 0.0,
        "padding": padding_shares(p),
        "device": str(trainer.device), "precision": trainer.precision, "threads": trainer.threads.as_dict(), "data_stats": built.data.stats(),
        "loggers": list(logger.active), "wandb_mode": logger.mode, "wandb_group": end.group, "skipped_steps": p.skipped,
        "resume_changes": trainer.checkpointer.changes,  # settings changed on resume: key, before, after, step
    }
    summary["headline"] = list(built.objective.headline)  # the validation metrics the table shows
    if verdict := built.objective.verdict(end.final_val or {}):  # ELECTRA: did the discriminator beat a constant?
        summary["verdict"] = verdict
    if v.unigram_entropy is not None:
        summary["unigram_entropy"] = v.unigram_entropy
    if v.probes is not None:
        pc = cfg.probes
        summary["probes"] = {"pairs": v.probes.counts(), "scorers": v.probes.scorers, "split": pc.split,
                             "seed": pc.seed, "words": [pc.min_words, pc.max_words],
                             "initial": p.first_probes or {}, "final": end.final_probes}
    if end.suites:  # the full suites: mean over paradigms, per phenomenon, per paradigm (BLiMP's report)
        summary["suites"] = v.suites.report(end.suites)
    if trainer.budget is not None:  # what ended the run, and how much of it was used
        b = trainer.budget
        used = {"steps": p.step, "tokens": p.tokens, "flops": p.flops, "minutes": p.elapsed / 60}[b.kind]
        summary["budget"] = {"kind": b.kind, "amount": b.amount, "used": used, "complete": trainer.finished()}
    if end.downstream is not None:  # summary["downstream"] and summary["downstream_tasks"][task]
        store_downstream(summary, end.downstream)
    if end.own is not None:  # the objective's own evaluation (Transformer-XL: what the memory buys, and how fast)
        summary[end.own.key] = end.own.value
    if end.presets is not None:  # presets counted beside this run (ALBERT's Table 2: its large vs BERT's)
        summary["preset_parameters"] = end.presets
    if end.crossover is not None:  # every snapshot probed and fine-tuned
        summary["crossover"] = end.crossover
    if end.exported:
        summary["hf_export"] = end.hf_export
    summary["wall_time_s"] = clock.total()  # data, evaluation, export included
    # where this invocation's time went (training: the loop's steps, all invocations of a resumed run; validation:
    # the loop's and the objective's own evaluation at the end)
    summary["time_s"] = {"data": clock.seconds("data"), "training": p.elapsed,
                         "validation_probes": v.seconds + clock.seconds("validation_probes"),
                         "finetuning": clock.seconds("finetuning"), "export": clock.seconds("export"),
                         "total": summary["wall_time_s"]}
    return summary


def compute_axes(summary: dict[str, Any]) -> dict[str, Any]:
    """The compute axes of a finished run (train/tokens, train/flops, train/words) from its summary, for the records
    written after training, so they too can be placed on a compute axis."""
    axes = {"train/tokens": summary.get("tokens_seen"), "train/flops": summary.get("train_flops"),
            "train/words": summary.get("words_seen")}
    return {k: v for k, v in axes.items() if v is not None}


def log_results(logger: Any, end: RunEnd, step: int, summary: dict[str, Any]) -> None:
    """Log the results after training at the run's last step, with its compute axes: the downstream scores, the
    objective's metrics and the full suites."""
    axes = compute_axes(summary)
    if end.downstream is not None:
        logger.log({**downstream_metrics(end.downstream), **axes}, step=step)
    if end.own is not None:
        logger.log({**end.own.metrics, **axes}, step=step)
    if end.suites:  # the full suites (the records during training hold the per-paradigm subsample, under suite/)
        logger.log({**{f"suite_full/{k}": v for k, v in end.suites.items()}, **axes}, step=step)


def print_summary(summary: dict[str, Any], cfg: DictConfig, end: RunEnd) -> None:
    """The end of a run on the console: the summary table, how to fine-tune later (when it did not), the objective's
    own table and the presets' sizes."""
    console.print(report_table(summary))
    for name, report in (summary.get("suites") or {}).items():
        console.print(suite_table(name, report))
    if end.finished and not downstream_enabled(cfg):
        console.print(finetune_hint(end.run_dir), highlight=False, soft_wrap=True)
    if end.own is not None and end.own.table is not None:
        console.print(end.own.table)
    if "preset_parameters" in summary:
        counts = ", ".join(f"{n} {c / 1e6:.1f}M" for n, c in summary["preset_parameters"].items())
        console.print(f"parameters of the presets (encoder and masked-LM head): {counts}; this run "
                      f"{summary['parameters']['total']:,}", highlight=False, soft_wrap=True)


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
    """The objective's headline metrics (every one for a summary written before it had them) at step 0 -> the end;
    the rest are in summary.json."""
    first, final = s.get("initial_val") or {}, s.get("final_val") or {}
    keys = s.get("headline") or list(final)
    out = []
    for k in keys:
        if k == "unigram_gap" or k not in final:
            continue
        v = final[k]
        out.append(f"{k} {_num(first[k])} -> {_num(v)}" if k in first else f"{k} {_num(v)}")
    return ", ".join(out)


def _downstream_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    tasks = s.get("downstream_tasks") or ({s["downstream"]["task"]: s["downstream"]} if s.get("downstream") else {})
    rows = []
    for name, d in tasks.items():
        if name == "glue":  # its columns and average, as glue_line prints them
            rows.append(("downstream glue", glue_line(d).split(": ", 1)[1]))
            continue
        m = d.get("metric", "accuracy")
        cell = f"pretrained {d[f'{m}_mean']:.3f} +/- {d[f'{m}_std']:.3f}" + (f" ({m})" if m != "accuracy" else "")
        for b, r in beside(d).items():
            if f"{m}_mean" not in r:
                continue
            cell += f" | {b.replace('_', ' ')} {r[f'{m}_mean']:.3f}"
            if r.get(f"{m}_std"):
                cell += f" +/- {r[f'{m}_std']:.3f}"
        if d.get("baselines_source"):
            cell += f" (baselines {d['baselines_source']})"
        chance = d.get("chance") or {}
        best = chance.get("best_constant_accuracy", chance.get("majority_accuracy"))
        rows.append((f"downstream {name}", cell + (f", chance {best:.3f}" if best is not None else "")))
    return rows


def report_table(s: dict[str, Any]) -> Table:
    """The end-of-run table: validation, unigram gap, probes, downstream, cost, time and files; one screen."""
    table = Table(title=f"run summary: {s.get('name', '')}", show_header=False, expand=False)
    table.add_column("what", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    if s.get("final_val"):
        table.add_row("validation", _validation_cell(s))
    if s.get("verdict"):
        table.add_row(s["verdict"].get("what", "verdict"), s["verdict"]["text"])
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
    for name, report in (s.get("suites") or {}).items():
        table.add_row(f"suite {name}", suite_line(report))
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
        words = f" ({_num(s['words_seen'])} words)" if s.get("words_seen") else ""
        cost += (f", {s['steps']:,} steps, {_num(s.get('tokens_seen', 0))} tokens{words}, "
                 f"{s.get('train_flops', 0):.2e} FLOPs, {s.get('tokens_per_s', 0):,.0f} tokens/s")
    if pad := s.get("padding"):  # the padding computed (token-wise layers, attention), and as right-padded rows
        attention = pad.get("attention", pad.get("computed", 0.0))  # "computed": summaries before unpadding
        token_wise = f"token-wise {pad['token_wise']:.1%}, " if "token_wise" in pad else ""
        cost += f", padding {token_wise}attention {attention:.1%} (padded rows: {pad['padded_layout']:.1%})"
    table.add_row("cost", cost)
    if s.get("time_s"):
        table.add_row("time (s)", ", ".join(f"{k.replace('_', ' ')} {v:,.0f}" for k, v in s["time_s"].items()))
    run_dir = Path(s.get("run_dir", "."))
    files = [str(run_dir / SUMMARY), METRICS]
    if s.get("hf_export"):
        files.append(Path(s["hf_export"]).name + "/")
    table.add_row("files", ", ".join(files))
    return table
