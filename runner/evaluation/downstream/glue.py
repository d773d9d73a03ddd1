"""GLUE (Wang et al. 2019): its nine tasks read from GLUE's tsv files, a `save_to_disk` dataset or the Hugging Face
Hub (`nyu-mll/glue`), tokenized with the run's tokenizer, and `eval.task=glue`: all of them under one recipe,
reported as papers report GLUE (glue_report: each task's own metric on dev, the median over seeds, the average
without WNLI).

`glue_<name>` alone (eval.task=glue_sst2) is one task in the protocol of protocol.py: GLUE's test labels are
hidden, so by default a fixed part of the official train split (chosen by a hash of the text, `test_fraction`,
10%) is held out as test, the rest trains, and the official validation split is dev (model selection).
`test_from="dev"` reports on the official validation split instead, as papers do (eval.task=glue does, with a
fixed recipe and no selection on it)."""
from __future__ import annotations

import csv
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tokenizers import Tokenizer

from runner.config.errors import ConfigError
from runner.data.hub import force_offline, hub_reachable, offline_wanted
from runner.data.tokenizer import SpecialIds, encode_sentences
from runner.evaluation.downstream.tasks import SUBSET_SALT, Example, Task, pair, single, subset_of


def glue_key(name: str) -> str:
    """A GLUE task's key from eval.task's spelling (glue_sst2, SST-2, sts-b)."""
    return name.removeprefix("glue_").replace("-", "").lower()


@dataclass(frozen=True)
class GlueSpec:
    """A GLUE task: its hub columns, label names, original tsv layout and directory, and how papers report it."""

    text_a: str
    text_b: str | None
    labels: tuple[str, ...]
    tsv_columns: tuple[int | str, int | str | None, int | str]  # text_a, text_b, label: names (header) or positions
    directory: str  # its folder in GLUE's download (download_glue_data.py)
    tsv_header: bool = True
    dev_file: str = "dev.tsv"
    dev_split: str = "validation"
    regression: bool = False  # STS-B: a similarity score from 0 to 5
    metrics: tuple[str, ...] = ()  # its own metrics besides accuracy and macro-F1 (metrics.score_run)
    # the numbers the BERT paper's Table 1 reports and averages: (column, metric key of the result)
    reported: tuple[tuple[str, str], ...] = ()
    extra_dev: tuple[str, str, str] | None = None  # another validation set: (name, tsv file, hub split)


GLUE: dict[str, GlueSpec] = {
    "cola": GlueSpec("sentence", None, ("unacceptable", "acceptable"), (3, None, 1), "CoLA", tsv_header=False,
                     metrics=("mcc",), reported=(("CoLA", "mcc"),)),
    "sst2": GlueSpec("sentence", None, ("negative", "positive"), ("sentence", None, "label"), "SST-2",
                     reported=(("SST-2", "accuracy"),)),
    "mrpc": GlueSpec("sentence1", "sentence2", ("not_equivalent", "equivalent"), (3, 4, 0), "MRPC",
                     metrics=("binary_f1",), reported=(("MRPC", "binary_f1"),)),
    "stsb": GlueSpec("sentence1", "sentence2", ("score",), ("sentence1", "sentence2", "score"), "STS-B",
                     regression=True, reported=(("STS-B", "spearman"),)),
    "qqp": GlueSpec("question1", "question2", ("not_duplicate", "duplicate"),
                    ("question1", "question2", "is_duplicate"), "QQP", metrics=("binary_f1",),
                    reported=(("QQP", "binary_f1"),)),
    "mnli": GlueSpec("premise", "hypothesis", ("entailment", "neutral", "contradiction"),
                     ("sentence1", "sentence2", "gold_label"), "MNLI", dev_file="dev_matched.tsv",
                     dev_split="validation_matched", reported=(("MNLI-m", "accuracy"), ("MNLI-mm", "mismatched/accuracy")),
                     extra_dev=("mismatched", "dev_mismatched.tsv", "validation_mismatched")),
    "qnli": GlueSpec("question", "sentence", ("entailment", "not_entailment"), ("question", "sentence", "label"),
                     "QNLI", reported=(("QNLI", "accuracy"),)),
    "rte": GlueSpec("sentence1", "sentence2", ("entailment", "not_entailment"), ("sentence1", "sentence2", "label"),
                    "RTE", reported=(("RTE", "accuracy"),)),
    "wnli": GlueSpec("sentence1", "sentence2", ("not_entailment", "entailment"), ("sentence1", "sentence2", "label"),
                     "WNLI", reported=(("WNLI", "accuracy"),)),
}
HUB_NAME = "nyu-mll/glue"


def _label(value: Any, labels: Sequence[str], where: str, regression: bool = False) -> int | float:
    """A label index from an int, a digit string or a label name; a regression's score as a float."""
    if regression:
        try:
            score = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: score {value!r} is not a number") from None
        if score != score:
            raise ConfigError(f"{where}: score {value!r} is not a number")
        return score
    if isinstance(value, str):
        v = value.strip()
        if v in labels:
            return labels.index(v)
        if v.lstrip("-").isdigit():
            value = int(v)
        else:
            raise ConfigError(f"{where}: label {value!r} is not one of {list(labels)} or an index")
    value = int(value)
    if not 0 <= value < len(labels):
        raise ConfigError(f"{where}: label {value} outside 0..{len(labels) - 1} (hidden test labels are -1)")
    return value


def read_glue_tsv(path: Path, spec: GlueSpec) -> list[tuple[str, str | None, int]]:
    """Rows (text_a, text_b, label) of a GLUE tsv file. A header row naming the hub columns (sentence, sentence1,
    question, ..., label) is read by name; otherwise GLUE's original layout for the task (CoLA has no header,
    MRPC's strings are columns 3 and 4, MNLI's gold_label, ...). Fields are unquoted, as GLUE writes them."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        return []
    head = [h.strip() for h in rows[0]]
    hub_cols = (spec.text_a, spec.text_b, "label")
    if all(c is None or c in head for c in hub_cols):
        cols, body = [None if c is None else head.index(c) for c in hub_cols], rows[1:]
    elif spec.tsv_header:
        missing = [c for c in spec.tsv_columns if isinstance(c, str) and c not in head]
        if missing:
            raise ConfigError(f"{path}: header {head} lacks column(s) {missing} (GLUE's layout) and the hub's "
                              f"{[c for c in hub_cols if c]}")
        cols = [head.index(c) if isinstance(c, str) else c for c in spec.tsv_columns]
        body = rows[1:]
    else:
        cols, body = list(spec.tsv_columns), rows
    out = []
    for n, r in enumerate(body, start=2 if body is not rows else 1):
        if not r or all(not x.strip() for x in r):
            continue
        where = f"{path}:{n}"
        try:
            a = r[cols[0]]
            b = r[cols[1]] if cols[1] is not None else None
            y = r[cols[2]]
        except IndexError:
            raise ConfigError(f"{where}: {len(r)} fields, expected column {max(c for c in cols if c is not None)}") \
                from None
        out.append((a, b, _label(y, spec.labels, where, spec.regression)))
    return out


def _glue_rows(name: str, spec: GlueSpec, path: str | Path | None) -> tuple[list, list, list | None, str]:
    """(train rows, validation rows, the extra validation set's rows or None, source) from a local directory or
    the hub."""
    if path is not None:
        local = Path(path).expanduser()
        if not local.is_dir():
            raise ConfigError(f"GLUE {name}: {local} is not a directory (GLUE tsv files or a save_to_disk dataset)")
        if (local / "train.tsv").is_file():
            dev = local / spec.dev_file
            if not dev.is_file():
                raise ConfigError(f"GLUE {name}: {local} has train.tsv but no {spec.dev_file}")
            extra = None
            if spec.extra_dev is not None and (local / spec.extra_dev[1]).is_file():
                extra = read_glue_tsv(local / spec.extra_dev[1], spec)
            return read_glue_tsv(local / "train.tsv", spec), read_glue_tsv(dev, spec), extra, f"tsv:{local}"
        if (local / "dataset_dict.json").is_file():
            import datasets
            ds = datasets.load_from_disk(str(local))
            return _hub_rows(ds, spec, name) + (f"disk:{local}",)
        raise ConfigError(f"GLUE {name}: {local} holds neither train.tsv + {spec.dev_file} nor a save_to_disk "
                          f"DatasetDict (dataset_dict.json)")
    import datasets

    if offline_wanted() or not hub_reachable():
        force_offline()  # the local datasets cache only: fail in seconds, not after minutes of retries
    try:
        ds = datasets.load_dataset(HUB_NAME, name)
    except (ConnectionError, FileNotFoundError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ConfigError(f"GLUE {name}: {HUB_NAME} ({name}) is not in the local datasets cache and the Hub is "
                          f"unreachable ({first}); fix: with network run `python -c \"import datasets; "
                          f"datasets.load_dataset('{HUB_NAME}', '{name}').save_to_disk('glue_{name}')\"` and pass "
                          f"that directory, or a directory of GLUE's tsv files") from None
    return _hub_rows(ds, spec, name) + (f"hub:{HUB_NAME}/{name}",)


def _hub_rows(ds: Any, spec: GlueSpec, name: str) -> tuple[list, list, list | None]:
    for split in ("train", spec.dev_split):
        if split not in ds:
            raise ConfigError(f"GLUE {name}: the dataset has no {split!r} split (has {', '.join(ds)})")

    def rows(split: str) -> list:
        d = ds[split]
        b = d[spec.text_b] if spec.text_b else [None] * len(d)
        return [(x, y, _label(z, spec.labels, f"{name}/{split}", spec.regression))
                for x, y, z in zip(d[spec.text_a], b, d["label"])]
    extra = rows(spec.extra_dev[2]) if spec.extra_dev is not None and spec.extra_dev[2] in ds else None
    return rows("train"), rows(spec.dev_split), extra


def glue_task(name: str, tokenizer: Tokenizer, specials: SpecialIds, seq_len: int = 128,
              path: str | Path | None = None, test_from: str = "train", test_fraction: float = 0.1,
              max_train: int | None = None, salt: str = SUBSET_SALT) -> Task:
    """A GLUE classification task tokenized with the run's tokenizer: singles as [CLS] A [SEP], pairs as
    [CLS] A [SEP] B [SEP] with token types 0/1. `name` is sst2, mrpc, ... (a `glue_` prefix is accepted); `path` a
    local directory (GLUE tsv files or save_to_disk), else the hub. test_from="train": a fixed `test_fraction` of
    train (by a hash of the text) is the test set and the official validation split is dev; "dev": dev is also
    the test set. max_train keeps the first N training rows (quick runs)."""
    key = glue_key(name)
    if key not in GLUE:
        raise ConfigError(f"unknown GLUE task {name!r}; one of {', '.join(GLUE)}")
    if test_from not in ("train", "dev"):
        raise ConfigError(f"test_from={test_from!r} must be 'train' or 'dev'")
    spec = GLUE[key]
    train_rows, dev_rows, extra_rows, source = _glue_rows(key, spec, path)
    if not train_rows or not dev_rows:
        raise ConfigError(f"GLUE {key}: empty train ({len(train_rows)}) or dev ({len(dev_rows)}) split in {source}")

    def encode(rows: list) -> list[Example]:
        texts = [r[0] for r in rows] + ([r[1] or "" for r in rows] if spec.text_b else [])
        ids = encode_sentences(tokenizer, texts) if texts else []
        out = []
        for i, (_, _, y) in enumerate(rows):
            if spec.text_b:
                x, t = pair(ids[i], ids[len(rows) + i], specials, seq_len)
                out.append(Example(x, y, t))
            else:
                out.append(Example(single(ids[i], specials, seq_len), y))
        return out

    notes: dict[str, Any] = {"source": source, "test_from": test_from}
    if test_from == "train":
        parts: dict[str, list] = {"train": [], "test": []}
        for r in train_rows:
            parts[subset_of(f"{r[0]}\t{r[1]}", (1 - test_fraction, test_fraction), ("train", "test"),
                            salt)].append(r)
        train_rows, test_rows = parts["train"], parts["test"]
        notes.update(test="a fixed part of the official train split (sha1 of the text)", test_fraction=test_fraction,
                     dev="the official validation split")
    else:
        test_rows = dev_rows
        notes.update(test="the official validation split (also dev: selection-biased)",
                     dev="the official validation split")
    if max_train is not None:
        train_rows = train_rows[:max_train]
    extra = {spec.extra_dev[0]: encode(extra_rows)} if spec.extra_dev is not None and extra_rows else {}
    return Task(f"glue_{key}", list(spec.labels), encode(train_rows), encode(dev_rows), encode(test_rows),
                pad_id=specials.pad, num_special=specials.num_special, pairs=spec.text_b is not None, notes=notes,
                regression=spec.regression, metrics=spec.metrics, extra_tests=extra, acceptability=key == "cola")




# ---- eval.task=glue: every task, one recipe, reported as papers report GLUE -----------------------------------

@dataclass
class GlueSuite:
    """GLUE's tasks loaded for eval.task=glue (by key, GLUE's order), and those not found (with why)."""

    tasks: dict[str, Task]
    missing: dict[str, str]
    source: str

    def sizes(self) -> dict[str, Any]:
        return {k: t.sizes() for k, t in self.tasks.items()}


def glue_suite(tokenizer: Tokenizer, specials: SpecialIds, seq_len: int = 128, path: str | Path | None = None,
               names: Sequence[str] = tuple(GLUE), max_train: int | None = None) -> GlueSuite:
    """Every GLUE task of `names` from `path` laid out as GLUE's download is (CoLA/, SST-2/, MRPC/, STS-B/, QQP/,
    MNLI/, QNLI/, RTE/, WNLI/, each of GLUE's tsv files or a save_to_disk dataset), or from the Hub (path None);
    dev is the official validation split and is what is reported. A folder that is missing is left out (listed in
    `missing`); one that is malformed is a ConfigError naming its file; none found at all is one too."""
    keys = []
    for n in names:
        k = glue_key(str(n))
        if k not in GLUE:
            raise ConfigError(f"eval.glue.tasks: unknown GLUE task {n!r}; one of {', '.join(GLUE)}")
        keys.append(k)
    tasks, missing = {}, {}
    root = Path(path).expanduser() if path is not None else None
    if root is not None and not root.is_dir():
        raise ConfigError(f"eval.path={str(path)!r} is not a directory; pass GLUE's download (CoLA/, SST-2/, ...)")
    for k in keys:
        where = None
        if root is not None:
            where = next((root / d for d in (GLUE[k].directory, k, f"glue_{k}") if (root / d).is_dir()), None)
            if where is None:
                missing[k] = f"no {GLUE[k].directory}/ in {root}"
                continue
        tasks[k] = glue_task(k, tokenizer, specials, seq_len, path=where, test_from="dev", max_train=max_train)
    if not tasks:
        raise ConfigError(f"eval.task=glue: no GLUE task found in {root} (expected folders "
                          f"{', '.join(GLUE[k].directory for k in keys)}, as GLUE's download lays them out)")
    return GlueSuite(tasks, missing, f"{root}" if root is not None else f"hub:{HUB_NAME}")


def reported_scores(key: str, result: dict[str, Any], stat: str = "median") -> dict[str, float]:
    """The numbers papers report for a task, by column (MNLI-m and MNLI-mm for MNLI): `stat` over seeds."""
    return {col: result[f"{metric}_{stat}"] for col, metric in GLUE[key].reported if f"{metric}_{stat}" in result}


def glue_report(results: dict[str, dict[str, Any]], missing: dict[str, str] | None = None) -> dict[str, Any]:
    """GLUE as its papers report it, from each task's protocol result (fine-tuned over the same seeds, scored on
    dev): per column (the BERT paper's Table 1: MNLI-m and -mm, QQP and MRPC F1, STS-B Spearman, CoLA Matthews,
    accuracy elsewhere) the median and spread over seeds; the average of the medians over every column but WNLI
    (the BERT paper's "Average", 79.6 for BERT-base: nine numbers, MNLI counted twice), and the same average per
    seed, with its median and spread. `complete`: every column but WNLI was measured."""
    columns: dict[str, dict[str, Any]] = {}
    for key, r in results.items():
        med, spread = reported_scores(key, r, "median"), reported_scores(key, r, "spread")
        for col, metric in GLUE[key].reported:
            if col in med:
                columns[col] = {"task": key, "metric": metric, "median": med[col], "spread": spread[col],
                                "per_seed": [s.get(metric) for s in r["per_seed"]]}
    averaged = [c for c in columns if c != "WNLI"]
    expected = [col for k, spec in GLUE.items() if k != "wnli" for col, _ in spec.reported]
    out: dict[str, Any] = {"task": "glue", "columns": columns, "averaged": averaged,
                           "complete": all(c in columns for c in expected), "missing": dict(missing or {})}
    if averaged:
        out["average"] = sum(columns[c]["median"] for c in averaged) / len(averaged)
        n = min(len(columns[c]["per_seed"]) for c in averaged)
        per_seed = [sum(columns[c]["per_seed"][i] for c in averaged) / len(averaged) for i in range(n)]
        if per_seed:
            out.update(average_per_seed=per_seed, average_median=statistics.median(per_seed),
                       average_spread=max(per_seed) - min(per_seed))
    return out
