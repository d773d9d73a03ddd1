"""Reading run directories for the reports (runner.reporting.compare's tables and plots, the HTML report, the live
watch, runner.reporting.tb_replay): a job's error from its log, one comparison row per run (or per transformers
model's evaluation directory), its curves, and the rows' formatted table columns. Which directories are runs and
where their files are: runner/store/layout.py."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from runner.evaluation.downstream.metrics import beside
from runner.store import checkpoint, layout

# Raw fields of one row, in CSV order; the rich and markdown tables show formatted columns (table_columns).
# Besides these, a row has probe_<kind> for each probe kind (before probe_overall), probe_<scorer>_overall for a
# second scorer (ELECTRA's generator), per minimal-pair suite suite_<name> (the first scorer's mean over paradigms),
# suite_<name>_scorer and suite_<name>_<scorer> for the others, and downstream/<task>/<key> for each downstream task
# (fields()).
FIELDS = ["run", "job", "model", "objective", "data", "overrides", "parameters", "train_flops", "tokens_seen",
          "words_seen", "steps", "val_metric", "val_loss", "unigram_entropy", "unigram_gap", "verdict_learned",
          "verdict_margin", "probe_scorer",
          "probe_overall", "probe_overall_lo", "probe_overall_hi", "downstream_task", "accuracy_mean", "accuracy_std",
          "f1_mean", "f1_std", "random_init_accuracy", "bow_accuracy", "tokens_per_s", "wall_time_s", "time_data_s",
          "time_training_s", "time_validation_probes_s", "time_finetuning_s", "time_export_s", "status", "error",
          "path"]
TIMES = ("data", "training", "validation_probes", "finetuning", "export")  # summary.json's time_s, as time_<k>_s
TASK_KEYS = ("accuracy_mean", "accuracy_std", "f1_mean", "f1_std")  # downstream/<task>/<key>, and each baseline's
CHANCE = 0.5  # a minimal pair is two sentences: guessing passes half
SUITE_OVERALL = re.compile(r"^suite/([^/]+)/overall$")  # a record's suite headline on its per-paradigm subsample


def log_error(run_dir: Path) -> str:
    """The job's last `error: ...` line (our CLI), else the exception line of its last traceback, from its logs."""
    logs = layout.job_logs(run_dir)
    lines = [ln.rstrip() for log in logs for ln in log.read_text(errors="replace").splitlines()]
    errors = [m.group(1) for ln in lines if (m := re.search(r"\berror:\s*(.+)", ln))]
    if errors:
        return errors[-1]
    tb = [i for i, ln in enumerate(lines) if ln.startswith("Traceback")]
    if tb:  # the exception line is the last unindented line after the traceback header
        tail = [ln for ln in lines[tb[-1] + 1:] if ln and not ln[0].isspace()]
        return tail[-1] if tail else lines[tb[-1]]
    # `python -m runner` prints its `error:` line to the terminal, so an empty log is the common case
    return "no summary.json and no error in the job's log (see the sweep's terminal output)"


def pick_metric(values: dict, prefix: str = "") -> str | None:
    """The comparable validation loss: MLM loss (ELECTRA: the generator's; distillation: the student's), else the
    causal LM loss, else the permutation LM's (XLNet)."""
    return next((k for k in ("mlm_loss", "lm_loss", "plm_loss") if f"{prefix}{k}" in values), None)


def distinct_overrides(runs: list[Path]) -> dict[Path, str]:
    """Each run's command-line overrides minus those all runs share (evaluation dirs have none): what the sweep
    varied."""
    ovr = {r: layout.saved_overrides(r) or [] for r in runs}
    trained = [set(v) for r, v in ovr.items() if layout.is_run(r)]
    common = set.intersection(*trained) if len(trained) > 1 else set()
    return {r: " ".join(o for o in v if o not in common) for r, v in ovr.items()}


def probe_kinds(probes: dict) -> list[str]:
    """The corruption kinds of a summary's probes: probes.pairs, else the plain keys of probes.final."""
    if isinstance(probes.get("pairs"), dict) and probes["pairs"]:
        return [str(k) for k in probes["pairs"]]
    final = probes.get("final") or {}
    return [k for k in final if "/" not in k and k != "overall" and not k.endswith(("_lo", "_hi", "_norm"))]


def downstream_tasks(s: dict) -> dict[str, dict]:
    """Every downstream result of a summary by task, the primary one (summary["downstream"]) first; a summary
    written before downstream_tasks existed has only "downstream"."""
    tasks = {str(k): v for k, v in (s.get("downstream_tasks") or {}).items() if isinstance(v, dict)}
    ds = s.get("downstream")
    if isinstance(ds, dict) and ds:
        primary = str(ds.get("task") or "downstream")
        tasks = {primary: tasks.get(primary, ds), **tasks}
    return tasks


def suite_reports(s: dict) -> dict[str, dict]:
    """summary.json's minimal-pair suite reports by suite name ({} without suites)."""
    suites = s.get("suites")
    return {str(k): v for k, v in suites.items() if isinstance(v, dict)} if isinstance(suites, dict) else {}


def add_suites(row: dict[str, Any], s: dict) -> None:
    """Set suite_<name> (the first scorer's overall), suite_<name>_scorer, suite_<name>_<other> and _suites."""
    for name, report in suite_reports(s).items():
        overall = report.get("overall") if isinstance(report.get("overall"), dict) else {}
        scorers = [str(x) for x in report.get("scorers") or overall]
        row["_suites"][name] = scorers[1:]
        row.update({f"suite_{name}": overall.get(scorers[0]) if scorers else None,
                    f"suite_{name}_scorer": scorers[0] if scorers else None})
        row.update({f"suite_{name}_{other}": overall.get(other) for other in scorers[1:]})


def run_row(run_dir: Path, overrides: str = "") -> dict[str, Any]:
    """One table row from a run dir: summary.json when finished, else its config and the error from its log; from a
    transformers model's evaluation dir its name, architecture, parameters and suites (status "evaluated").
    Keys starting with "_" (the probe kinds, suites and downstream tasks the row has) are for the tables, not the
    CSV."""
    cfg = layout.saved_config(run_dir) or {}
    row: dict[str, Any] = dict.fromkeys(FIELDS)
    row.update(run=run_dir.name, job=run_dir.name, path=str(run_dir), overrides=overrides,
               model=(cfg.get("model") or {}).get("name"), objective=(cfg.get("objective") or {}).get("name"),
               data=(cfg.get("data") or {}).get("name"), _kinds=[], _tasks=[], _suites={})
    s = layout.read_summary(run_dir)
    if not layout.is_run(run_dir) and layout.is_evaluation(run_dir) and isinstance(s, dict):
        row.update(run=s.get("name") or run_dir.name, model=s.get("model"), status="evaluated",
                   parameters=(s.get("parameters") or {}).get("total"))
        add_suites(row, s)
        return row
    if s is None:
        has_ckpt = bool(checkpoint.saved_files(run_dir))
        row.update(status="incomplete" if has_ckpt else "failed", error=log_error(run_dir))
        return row
    final = s.get("final_val") or {}
    metric = pick_metric(final)
    ds = s.get("downstream") if isinstance(s.get("downstream"), dict) else {}
    row.update({k: s[k] for k in ("model", "objective", "data", "train_flops", "tokens_seen", "words_seen", "steps",
                                  "tokens_per_s", "wall_time_s", "unigram_entropy") if k in s})
    row.update({k: ds.get(k) for k in ("accuracy_mean", "accuracy_std", "f1_mean", "f1_std")})
    base = ds.get("baselines") or {}  # what the same fine-tuning gives without pretraining, and bag-of-words
    row.update(random_init_accuracy=(base.get("random_init") or {}).get("accuracy_mean"),
               bow_accuracy=(base.get("bow_logreg") or {}).get("accuracy_mean"))
    row.update(run=s.get("name") or run_dir.name, parameters=(s.get("parameters") or {}).get("total"),
               val_metric=metric, val_loss=final.get(metric) if metric else None, downstream_task=ds.get("task"),
               unigram_gap=final.get("unigram_gap"), status="finished")
    verdict = s.get("verdict") if isinstance(s.get("verdict"), dict) else {}  # ELECTRA: the discriminator's check
    row.update(verdict_learned=verdict.get("learned"), verdict_margin=verdict.get("margin"),
               _verdict_what=verdict.get("what"))
    times = s.get("time_s") if isinstance(s.get("time_s"), dict) else {}
    row.update({f"time_{k}_s": times.get(k) for k in TIMES})
    probes = s.get("probes") if isinstance(s.get("probes"), dict) else {}
    if probes.get("final"):  # accuracy on minimal pairs by the objective's first scorer; a second one prefixed
        p, scorers = probes["final"], [str(x) for x in probes.get("scorers") or []]
        row["_kinds"] = probe_kinds(probes)
        row.update({f"probe_{k}": p.get(k) for k in row["_kinds"]})
        row.update(probe_scorer=scorers[0] if scorers else None, probe_overall=p.get("overall"),
                   probe_overall_lo=p.get("overall_lo"), probe_overall_hi=p.get("overall_hi"))
        row.update({f"probe_{other}_overall": p.get(f"{other}/overall") for other in scorers[1:]})
    add_suites(row, s)
    for task, result in downstream_tasks(s).items():  # downstream/<task>/..., as W&B logs a task besides the first
        if task == "glue":  # GLUE as papers report it: each column's median over seeds, and the average
            row["_glue"] = list(result.get("columns") or {})
            row.update({f"glue/{c}": v.get("median") for c, v in (result.get("columns") or {}).items()})
            row.update({"glue/average": result.get("average"), "glue/complete": result.get("complete")})
            continue
        row["_tasks"].append(task)
        row.update({f"downstream/{task}/{k}": result.get(k) for k in TASK_KEYS})
        for name, b in beside(result).items():
            row[f"downstream/{task}/{name}_accuracy_mean"] = (b or {}).get("accuracy_mean")
        row[f"downstream/{task}/chance"] = (result.get("chance") or {}).get("best_constant_accuracy")
    return row


def suite_scorers(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Every suite of these rows, in order of appearance, with the other scorers (not the first) any row has."""
    out: dict[str, list[str]] = {}
    for r in rows:
        for name, others in r.get("_suites", {}).items():
            out[name] = list(dict.fromkeys([*out.get(name, []), *others]))
    return out


def fields(rows: list[dict[str, Any]]) -> list[str]:
    """The CSV (and W&B table) columns of these rows: FIELDS with each row's probe kinds, second scorers, suites
    (after the probes) and downstream tasks in their places."""
    extra = list(dict.fromkeys(k for r in rows for k in r if k not in FIELDS and not k.startswith("_")))
    kinds = [f"probe_{k}" for k in dict.fromkeys(k for r in rows for k in r.get("_kinds", []))]
    other = [k for k in extra if k.startswith("probe_") and k not in kinds]
    suites = [c for name, others in suite_scorers(rows).items()
              for c in (f"suite_{name}", f"suite_{name}_scorer", *(f"suite_{name}_{o}" for o in others))]
    tasks = [k for k in extra if k.startswith("downstream/")]
    rest = [k for k in extra if k not in kinds + other + suites + tasks]
    at = FIELDS.index
    return (FIELDS[:at("probe_overall")] + kinds + FIELDS[at("probe_overall"):at("downstream_task")] + other +
            suites + FIELDS[at("downstream_task"):at("tokens_per_s")] + tasks + FIELDS[at("tokens_per_s"):] + rest)


def flops_at(row: dict[str, Any], records: list[dict], steps: list[int], key: str = "train/flops",
             total: str = "train_flops") -> list[float]:
    """Training FLOPs (or another compute axis: key in the records, total in the row) at these steps: train/flops of
    the metrics.jsonl line at that step, else interpolated between the nearest logged steps (step 0: 0 FLOPs; the
    run's last step: summary.json's train_flops); past the last logged step, its FLOPs."""
    import numpy as np

    anchors = {0: 0.0, **{r["step"]: r[key] for r in records if r.get(key) is not None and "step" in r}}
    if row["steps"] is not None and row.get(total) is not None:  # the final eval may follow the last log
        anchors[row["steps"]] = row[total]
    known = sorted(anchors)
    return [float(f) for f in np.interp(steps, known, [anchors[s] for s in known])]  # clamps past the end: ffill


def loss_curve(row: dict[str, Any]) -> tuple[str | None, list[float], list[float]]:
    """(metric, FLOPs, val loss) per evaluation; FLOPs at an eval step interpolated from train/flops by step."""
    records = layout.read_metrics(Path(row["path"]))
    metric = row["val_metric"] or next((m for r in records if (m := pick_metric(r, "val/"))), None)
    points = [(r["step"], r[f"val/{metric}"]) for r in records if metric and f"val/{metric}" in r]
    return metric, flops_at(row, records, [s for s, _ in points]), [float(v) for _, v in points]


def probe_curve(row: dict[str, Any]) -> tuple[list[float], list[float], list[float], list[float]]:
    """(FLOPs, probe overall accuracy, Wilson lo, Wilson hi) per validation from metrics.jsonl's probe/overall*,
    FLOPs placed as loss_curve places them; a missing bound is NaN."""
    records = [r for r in layout.read_metrics(Path(row["path"])) if "step" in r]
    points = [r for r in records if r.get("probe/overall") is not None]
    bound = lambda r, k: float(r[k]) if r.get(k) is not None else float("nan")  # noqa: E731
    return (flops_at(row, records, [r["step"] for r in points]), [float(r["probe/overall"]) for r in points],
            [bound(r, "probe/overall_lo") for r in points], [bound(r, "probe/overall_hi") for r in points])


def suite_curves(row: dict[str, Any]) -> dict[str, tuple[list[float], list[float]]]:
    """Per suite, (corpus words, suite/<suite>/overall) at each validation, words placed by step as flops_at does."""
    records = [r for r in layout.read_metrics(Path(row["path"])) if "step" in r]
    names = dict.fromkeys(m.group(1) for r in records for k in r if (m := SUITE_OVERALL.match(k)))
    out = {}
    for name in names:
        points = [r for r in records if r.get(f"suite/{name}/overall") is not None]
        words = flops_at(row, records, [r["step"] for r in points], "train/words", "words_seen")
        out[name] = (words, [float(r[f"suite/{name}/overall"]) for r in points])
    return out


def _num(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _si(v: float | None) -> str:
    """15217 -> '15.2k', 1.1e8 -> '110M': counts at a glance."""
    if v is None:
        return "-"
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def _pm(mean: float | None, std: float | None) -> str:
    return "-" if mean is None else f"{mean:.3f} ± {std or 0:.3f}"


Column = tuple[str, Callable[[dict[str, Any]], str], bool]  # header, cell of a row, text (left, may fold)


def table_columns(rows: list[dict[str, Any]], stacked: bool = False) -> list[Column]:
    """The formatted columns of the rich and markdown tables. The context gap when any run has one; probe columns
    when any run has probes (one per corruption kind the runs have, then overall with its 95% interval, and the
    scorer: in the header when all runs share it, else its own column, under the accuracy when stacked); ELECTRA's
    discriminator against the constant predictor when any run has that verdict; per minimal-pair suite its first scorer's mean over paradigms
    (the scorer in the header when all rows share it) and, unless stacked, each other scorer's; an accuracy and a
    baselines column per downstream task any run has. Tokens, words, macro-F1 and the time split are in the CSV
    only. stacked (the console): a task's two columns, the loss and its metric, tokens/s and wall time each as one
    column of two lines, to fit the terminal's width."""
    sep = "\n" if stacked else " "
    metrics = {r["val_metric"] for r in rows if r["val_loss"] is not None}
    one_metric = metrics.pop() if len(metrics) == 1 else None  # named in the header, not in every cell

    def loss(r: dict[str, Any]) -> str:
        if r["val_loss"] is None:
            return "-"
        return f"{r['val_loss']:.4f}" if one_metric else f"{r['val_loss']:.4f}{sep}({r['val_metric']})"

    def params(r: dict[str, Any]) -> str:
        return "-" if r["parameters"] is None else f"{r['parameters'] / 1e6:.2f}M"

    def cost(r: dict[str, Any]) -> str:
        if r["tokens_per_s"] is None and r["wall_time_s"] is None:
            return "-"
        return f"{_si(r['tokens_per_s'])}{sep if stacked else ', '}{_duration(r['wall_time_s'])}"

    def status(r: dict[str, Any]) -> str:
        return f"{r['status']}: {r['error']}" if r["error"] else str(r["status"])

    cols: list[Column] = [("run", lambda r: str(r["run"]), True), ("model", lambda r: str(r["model"] or "-"), True),
                          ("objective", lambda r: str(r["objective"] or "-"), True),
                          ("overrides", lambda r: r["overrides"] or "-", True), ("params", params, False),
                          ("train FLOPs", lambda r: _num(r["train_flops"], ".3g"), False),
                          (f"val {one_metric}" if one_metric else "val loss", loss, False)]
    if any(r.get("unigram_gap") is not None for r in rows):  # nats below the unigram entropy: > 0 uses context
        cols.append(("context gap", lambda r: _num(r.get("unigram_gap"), "+.3f"), False))
    if any(r.get("verdict_learned") is not None for r in rows):  # ELECTRA's discriminator against a constant

        def verdict(r: dict[str, Any]) -> str:
            if r.get("verdict_learned") is None:
                return "-"
            return f"{'beat' if r['verdict_learned'] else 'NO'}{sep}{-r['verdict_margin']:+.0%}"

        cols.append(("vs const.", verdict, False))
    if any(r.get("probe_overall") is not None for r in rows):
        for kind in dict.fromkeys(k for r in rows for k in r.get("_kinds", [])):
            cols.append((f"probe {kind}", lambda r, k=kind: _num(r.get(f"probe_{k}"), ".2f"), False))

        def overall(r: dict[str, Any]) -> str:
            if r.get("probe_overall") is None:
                return "-"
            lo, hi = r.get("probe_overall_lo"), r.get("probe_overall_hi")
            return f"{r['probe_overall']:.2f}" + ("" if lo is None or hi is None else f" [{lo:.2f}, {hi:.2f}]")

        scorers = {r.get("probe_scorer") for r in rows if r.get("probe_overall") is not None}
        if len(scorers) == 1 and None not in scorers:
            cols.append((f"probe overall ({scorers.pop()})", overall, False))
        elif stacked:  # the scorer under the accuracy: one column fewer on the console
            cols.append(("probe overall (scorer)",
                         lambda r: overall(r) + (f"{sep}({r['probe_scorer']})" if r.get("probe_scorer") else ""), False))
        else:
            cols += [("probe overall", overall, False), ("scorer", lambda r: r.get("probe_scorer") or "-", True)]
    for name, others in suite_scorers(rows).items():
        cols += suite_columns(rows, name, [] if stacked else others, sep)
    for task in dict.fromkeys(t for r in rows for t in r.get("_tasks", [])):
        key = lambda r, k, t=task: r.get(f"downstream/{t}/{k}")  # noqa: E731

        def baselines(r: dict[str, Any], key=key) -> str:
            rand, bow = key(r, "random_init_accuracy_mean"), key(r, "bow_logreg_accuracy_mean")
            return "-" if rand is None and bow is None else f"{_num(rand, '.3f')} / {_num(bow, '.3f')}"

        def accuracy(r: dict[str, Any], key=key) -> str:
            return _pm(key(r, "accuracy_mean"), key(r, "accuracy_std"))

        def knows(r: dict[str, Any], key=key) -> str:
            probe, own = key(r, "linear_probe_accuracy_mean"), key(r, "score_feature_accuracy_mean")
            return "-" if probe is None and own is None else f"{_num(probe, '.3f')} / {_num(own, '.3f')}"

        if stacked:
            def both(r: dict[str, Any], a=accuracy, b=baselines) -> str:
                return "-" if a(r) == b(r) == "-" else f"{a(r)}\n{b(r)}"

            cols.append((f"{task}\nacc ± std\nrand / BoW", both, False))
        else:
            cols += [(f"{task} acc ± std", accuracy, False), (f"{task} rand / BoW", baselines, False)]
            if any(knows(r) != "-" for r in rows):
                cols.append((f"{task} probe / own score", knows, False))
    glue = list(dict.fromkeys(c for r in rows for c in r.get("_glue", [])))
    if glue:  # x100, as GLUE's papers print it
        def average(r: dict[str, Any]) -> str:
            v = r.get("glue/average")
            return "-" if v is None else f"{v * 100:.1f}" + ("" if r.get("glue/complete") else "*")

        cols.append(("GLUE avg" if not stacked else "GLUE\navg", average, False))
        if not stacked:
            cols += [(c, lambda r, c=c: "-" if r.get(f"glue/{c}") is None else f"{r[f'glue/{c}'] * 100:.1f}", False)
                     for c in glue]
    return cols + [("tokens/s\nwall" if stacked else "tokens/s, wall", cost, False), ("status", status, True)]


def suite_columns(rows: list[dict[str, Any]], name: str, others: list[str], sep: str) -> list[Column]:
    """A suite's headline column (its scorer in the header when all rows share it) and one per other scorer."""
    scorers = {r.get(f"suite_{name}_scorer") for r in rows if r.get(f"suite_{name}") is not None}
    shared = scorers.pop() if len(scorers) == 1 else None

    def headline(r: dict[str, Any]) -> str:
        v = r.get(f"suite_{name}")
        return "-" if v is None else f"{v:.3f}" if shared else f"{v:.3f}{sep}({r.get(f'suite_{name}_scorer')})"

    cols: list[Column] = [(f"suite {name} ({shared})" if shared else f"suite {name}", headline, False)]
    return cols + [(f"suite {name} {o}", lambda r, k=f"suite_{name}_{o}": _num(r.get(k), ".3f"), False)
                   for o in others]


def cells(row: dict[str, Any], columns: list[Column]) -> list[str]:
    """The formatted cells of one row, in the order of columns (table_columns)."""
    return [cell(row) for _, cell, _ in columns]


def shown_columns(rows: list[dict[str, Any]], stacked: bool = False) -> list[Column]:
    """table_columns without overrides where it repeats every run's name (sweep jobs are named by their overrides)."""
    return [c for c in table_columns(rows, stacked) if c[0] != "overrides" or any(r["overrides"] != r["run"]
                                                                                 for r in rows)]


def column_notes(columns: list[Column]) -> list[str]:
    """What the less obvious of these columns mean: the tables' caption."""
    names = [c[0] for c in columns]
    notes = []
    if "context gap" in names:
        notes.append("context gap: unigram entropy minus LM loss, nats (> 0: the model uses context)")
    if "vs const." in names:
        notes.append("vs const.: whether ELECTRA's discriminator beat predicting the replaced rate everywhere, and its "
                     "validation loss relative to that constant's (-5% needed)")
    if any(n.startswith("probe overall") for n in names):
        notes.append(f"probes: accuracy on minimal pairs, chance {CHANCE:.2f}, overall [95% Wilson interval]")
    if any(n.startswith("suite ") for n in names):
        notes.append(f"suite: accuracy on a minimal-pair suite, mean over its paradigms (BLiMP's overall), chance "
                     f"{CHANCE:.2f}, ties count as wrong")
    if any(n.endswith("rand / BoW") for n in names):
        notes.append("acc: the fine-tuning protocol (docs/evaluation.md), mean ± std over seeds; rand / BoW: the same "
                     "protocol from random init; bag-of-words logistic regression")
    if any(n.endswith("probe / own score") for n in names):
        notes.append("probe / own score: a linear probe of the frozen features; the model's own sentence score as "
                     "a one-feature classifier (acceptability tasks)")
    if any(n.startswith("GLUE") for n in names):
        notes.append("GLUE: dev scores x100, median over seeds under one recipe; avg without WNLI (the BERT paper's, "
                     "MNLI-m and -mm each counted); * not every task")
    return notes
