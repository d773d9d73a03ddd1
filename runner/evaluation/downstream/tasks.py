"""Labelled downstream tasks: train / dev / test lists of examples (token ids, label, token types) and label names.

- `wiki_topic`: the topic of each article of the bundled wiki corpus's held-out *test* split (the articles
  pretraining never saw, data.test_fraction), split by a hash of the title into fixed train/dev/test subsets.
- `wiki_acceptability`: sentences of the same held-out documents, each either as written or with two adjacent
  words swapped (by a hash of the sentence), to tell apart: word order, which bag-of-words cannot see.
- `glue_<name>` (sst2, mrpc, cola, qnli, rte, wnli, qqp, mnli): GLUE from the Hugging Face hub
  (`nyu-mll/glue`) or a local directory (GLUE's tsv files, or a `save_to_disk` dataset). GLUE's test labels are
  hidden, so by default a fixed part of the official train split (chosen by a hash of the text, `test_fraction`,
  10%) is held out as test, the rest trains, and the official validation split is dev (model selection); the
  test numbers are then untouched by model selection but are not the published dev numbers.
  `test_from="dev"` reports on the official validation split instead (comparable with published dev scores,
  but the same set also selects the epoch, so slightly optimistic).
"""
from __future__ import annotations

import csv
import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

from tokenizers import Tokenizer

from runner.data.tokenizer import SpecialIds, encode_sentences
from runner.config.errors import ConfigError
from runner.evaluation.probes.pairs import corrupt, held_out_sentences, join_words, words_of
from runner.data.hub import force_offline, offline_wanted, hub_reachable

EXCLUDED_TOPICS = ("Uncategorized", "")  # the wiki corpus's catch-all and missing topics (load_wiki's default)
SUBSET_SALT = "bertlab-downstream"  # a salt of its own: the subsets do not follow the pretraining split's hash


class Example(NamedTuple):
    """One input: token ids with specials ([CLS] ... [SEP]), its label index, and token types for pairs."""

    ids: tuple[int, ...]
    label: int
    token_types: tuple[int, ...] | None = None


@dataclass
class Task:
    """A classification task: label names and fixed train / dev / test examples."""

    name: str
    labels: list[str]
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    pad_id: int = 0
    num_special: int = 0  # ids below this are special tokens (left out of bag-of-words features)
    pairs: bool = False
    notes: dict[str, Any] = field(default_factory=dict)  # how the subsets were chosen

    def sizes(self) -> dict[str, int]:
        """Examples per subset and the number of labels."""
        return {"train": len(self.train), "dev": len(self.dev), "test": len(self.test), "labels": len(self.labels)}


def unit_hash(key: str, salt: str = SUBSET_SALT) -> float:
    """A stable float in [0, 1) from `key` alone."""
    digest = hashlib.sha1((salt + key).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def subset_of(key: str, fractions: Sequence[float], names: Sequence[str] = ("train", "dev", "test"),
              salt: str = SUBSET_SALT) -> str:
    """The subset of an item by a hash of its key: names[i] with probability fractions[i] (fractions sum to 1)."""
    u, edge = unit_hash(key, salt), 0.0
    for name, frac in zip(names, fractions):
        edge += frac
        if u < edge:
            return name
    return names[-1]


def _check_fractions(fractions: Sequence[float], n: int) -> None:
    if len(fractions) != n or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be {n} non-negative numbers summing to 1, got {list(fractions)}")


def single(ids: Sequence[int], specials: SpecialIds, seq_len: int) -> tuple[int, ...]:
    """[CLS] + the first seq_len - 2 ids + [SEP]."""
    if seq_len < 3:
        raise ValueError(f"seq_len must be at least 3 ([CLS] x [SEP]), got {seq_len}")
    return (specials.cls, *[int(i) for i in ids[:seq_len - 2]], specials.sep)


def pair(a: Sequence[int], b: Sequence[int], specials: SpecialIds, seq_len: int) -> tuple[tuple[int, ...],
                                                                                        tuple[int, ...]]:
    """[CLS] A [SEP] B [SEP] and its token types (0 up to the first [SEP], 1 after), truncating the longer of A and
    B one token at a time until it fits seq_len (BERT's run_classifier `_truncate_seq_pair`)."""
    if seq_len < 5:
        raise ValueError(f"seq_len must be at least 5 for pairs, got {seq_len}")
    a, b = list(a), list(b)
    while len(a) + len(b) > seq_len - 3:
        (a if len(a) > len(b) else b).pop()
    ids = (specials.cls, *a, specials.sep, *b, specials.sep)
    return tuple(int(i) for i in ids), (0,) * (len(a) + 2) + (1,) * (len(b) + 1)


# ---- wiki_topic -----------------------------------------------------------------------------------------------

def wiki_topic(data: Any, seq_len: int = 128, fractions: Sequence[float] = (0.6, 0.2, 0.2),
               exclude: Iterable[str] = EXCLUDED_TOPICS, split: str = "test", salt: str = SUBSET_SALT) -> Task:
    """Topic classification on the held-out `split` (default: test) of a PretrainingData: one example per document
    with a topic not in `exclude`, its input [CLS] + the document's first seq_len - 2 tokens + [SEP]; the labels are
    the sorted topics present; the documents go to train/dev/test by a salted hash of the title (`fractions`), so
    the subsets are fixed whatever the order or number of other documents."""
    _check_fractions(fractions, 3)
    corpus, sp = data.splits[split], data.specials
    excluded = set(exclude)
    titles, topics = list(corpus.titles), list(corpus.topics)
    sent, docs = corpus.sent_offsets, corpus.doc_offsets
    rows: list[tuple[str, str, tuple[int, ...]]] = []
    for i in range(corpus.num_docs):
        topic = topics[i] or ""
        if topic in excluded:
            continue
        lo = int(sent[int(docs[i])])
        hi = min(int(sent[int(docs[i + 1])]), lo + seq_len - 2)
        ids = corpus.ids[lo:hi].tolist()
        rows.append((titles[i], topic, single(ids, sp, seq_len)))
    labels = sorted({t for _, t, _ in rows})
    index = {t: k for k, t in enumerate(labels)}
    out: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
    for title, topic, ids in rows:
        out[subset_of(title, fractions, salt=salt)].append(Example(ids, index[topic]))
    notes = {"source": f"pretraining data split {split!r} ({corpus.num_docs} documents)",
             "excluded_topics": sorted(excluded), "fractions": list(fractions), "subset_by": "sha1(salt + title)",
             "skipped_documents": corpus.num_docs - len(rows)}
    return Task("wiki_topic", labels, out["train"], out["dev"], out["test"], pad_id=sp.pad,
                num_special=sp.num_special, notes=notes)


# ---- wiki_acceptability ---------------------------------------------------------------------------------------

ACCEPTABILITY_SALT = "bertlab-acceptability"
ACCEPTABILITY_LABELS = ("acceptable", "corrupted")


def acceptability_rows(data_cfg: Any, split: str = "test", max_sentences: int = 4000, min_words: int = 6,
                       max_words: int = 30, salt: str = ACCEPTABILITY_SALT) -> list[tuple[str, str, int]]:
    """(original, text, label) for each distinct sentence of the held-out `split`'s documents (corpus order) that
    an adjacent-word swap can corrupt: by a salted hash of the sentence, text is the sentence as it is (label 0,
    acceptable) or with two adjacent words swapped (label 1, corrupted; runner.evaluation.probes.pairs.corrupt), so each
    sentence appears once and both classes have the same words. A sentence no swap can corrupt is left out of
    both classes (keeping it as acceptable only would tell the classes apart by the kind of sentence), and so is
    one that a training-split document holds too."""
    import random

    # a sentence that a pretraining document also holds (a stock phrase) was trained on: left out
    seen = {join_words(words_of(s)) for s in held_out_sentences(data_cfg, "train", 10**9, min_words=min_words,
                                                                   max_words=max_words)} if split != "train" else set()
    rows = []
    for sentence in held_out_sentences(data_cfg, split, max_sentences, min_words=min_words, max_words=max_words):
        words = words_of(sentence)
        original = join_words(words)  # one spacing for both classes
        if original in seen:
            continue
        seen.add(original)
        swapped = corrupt(words, "swap", random.Random(f"{salt}:{original}"))
        if swapped is None:
            continue
        label = int(unit_hash(original, salt + "/label") < 0.5)
        rows.append((original, join_words(swapped) if label else original, label))
    return rows


def wiki_acceptability(data: Any, data_cfg: Any, seq_len: int = 128, fractions: Sequence[float] = (0.6, 0.2, 0.2),
                       max_train: int = 600, max_eval: int = 300, split: str = "test", max_sentences: int = 4000,
                       min_words: int = 6, max_words: int = 30, salt: str = ACCEPTABILITY_SALT) -> Task:
    """Binary acceptability of held-out sentences of the run's corpus (the documents wiki_topic uses: the
    pretraining's `split`, never trained on): acceptable (as written) or corrupted (two adjacent words swapped),
    from acceptability_rows. Bag-of-words features cannot separate the classes (the same words); word order can.
    Subsets by a salted hash of the sentence (`fractions`), the first max_train training and max_eval dev and
    test sentences in corpus order; inputs [CLS] ids [SEP] with the run's tokenizer, sentences longer than
    seq_len - 2 tokens left out (truncation could cut the swap off)."""
    _check_fractions(fractions, 3)
    rows = acceptability_rows(data_cfg, split, max_sentences, min_words, max_words, salt)
    sp = data.specials
    ids = encode_sentences(data.tokenizer, [text for _, text, _ in rows]) if rows else []
    out: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
    caps = {"train": max_train, "dev": max_eval, "test": max_eval}
    too_long = 0
    for (original, _, label), x in zip(rows, ids):
        if len(x) > seq_len - 2:
            too_long += 1
            continue
        part = subset_of(original, fractions, salt=salt + "/subset")
        if len(out[part]) < caps[part]:
            out[part].append(Example(single(x, sp, seq_len), label))
    notes = {"source": f"sentences of the pretraining data's {split!r} split ({len(rows)} usable, {min_words}-"
                       f"{max_words} words)", "corruption": "two adjacent words swapped (runner.evaluation.probes.pairs)",
             "label_by": "sha1(salt + sentence) < 0.5", "subset_by": "sha1(salt + sentence)",
             "fractions": list(fractions), "caps": caps, "too_long": too_long}
    return Task("wiki_acceptability", list(ACCEPTABILITY_LABELS), out["train"], out["dev"], out["test"],
                pad_id=sp.pad, num_special=sp.num_special, notes=notes)


# ---- GLUE -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GlueSpec:
    """A GLUE classification task: its hub columns, label names and its original tsv layout."""

    text_a: str
    text_b: str | None
    labels: tuple[str, ...]
    tsv_columns: tuple[int | str, int | str | None, int | str]  # text_a, text_b, label: names (header) or positions
    tsv_header: bool = True
    dev_file: str = "dev.tsv"
    dev_split: str = "validation"


GLUE: dict[str, GlueSpec] = {
    "cola": GlueSpec("sentence", None, ("unacceptable", "acceptable"), (3, None, 1), tsv_header=False),
    "sst2": GlueSpec("sentence", None, ("negative", "positive"), ("sentence", None, "label")),
    "mrpc": GlueSpec("sentence1", "sentence2", ("not_equivalent", "equivalent"), (3, 4, 0)),
    "qqp": GlueSpec("question1", "question2", ("not_duplicate", "duplicate"),
                    ("question1", "question2", "is_duplicate")),
    "mnli": GlueSpec("premise", "hypothesis", ("entailment", "neutral", "contradiction"),
                     ("sentence1", "sentence2", "gold_label"), dev_file="dev_matched.tsv",
                     dev_split="validation_matched"),
    "qnli": GlueSpec("question", "sentence", ("entailment", "not_entailment"), ("question", "sentence", "label")),
    "rte": GlueSpec("sentence1", "sentence2", ("entailment", "not_entailment"), ("sentence1", "sentence2", "label")),
    "wnli": GlueSpec("sentence1", "sentence2", ("not_entailment", "entailment"), ("sentence1", "sentence2", "label")),
}
HUB_NAME = "nyu-mll/glue"


def _label(value: Any, labels: Sequence[str], where: str) -> int:
    """A label index from an int, a digit string or a label name."""
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
        out.append((a, b, _label(y, spec.labels, where)))
    return out


def _glue_rows(name: str, spec: GlueSpec, path: str | Path | None) -> tuple[list, list, str]:
    """(train rows, validation rows, source) from a local directory or the hub."""
    if path is not None:
        local = Path(path).expanduser()
        if not local.is_dir():
            raise ConfigError(f"GLUE {name}: {local} is not a directory (GLUE tsv files or a save_to_disk dataset)")
        if (local / "train.tsv").is_file():
            dev = local / spec.dev_file
            if not dev.is_file():
                raise ConfigError(f"GLUE {name}: {local} has train.tsv but no {spec.dev_file}")
            return read_glue_tsv(local / "train.tsv", spec), read_glue_tsv(dev, spec), f"tsv:{local}"
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


def _hub_rows(ds: Any, spec: GlueSpec, name: str) -> tuple[list, list]:
    for split in ("train", spec.dev_split):
        if split not in ds:
            raise ConfigError(f"GLUE {name}: the dataset has no {split!r} split (has {', '.join(ds)})")

    def rows(split: str) -> list:
        d = ds[split]
        b = d[spec.text_b] if spec.text_b else [None] * len(d)
        return [(x, y, _label(z, spec.labels, f"{name}/{split}")) for x, y, z in zip(d[spec.text_a], b, d["label"])]
    return rows("train"), rows(spec.dev_split)


def glue_task(name: str, tokenizer: Tokenizer, specials: SpecialIds, seq_len: int = 128,
              path: str | Path | None = None, test_from: str = "train", test_fraction: float = 0.1,
              max_train: int | None = None, salt: str = SUBSET_SALT) -> Task:
    """A GLUE classification task tokenized with the run's tokenizer: singles as [CLS] A [SEP], pairs as
    [CLS] A [SEP] B [SEP] with token types 0/1. `name` is sst2, mrpc, ... (a `glue_` prefix is accepted); `path` a
    local directory (GLUE tsv files or save_to_disk), else the hub. test_from="train": a fixed `test_fraction` of
    train (by a hash of the text) is the test set and the official validation split is dev; "dev": dev is also
    the test set. max_train keeps the first N training rows (quick runs)."""
    key = name.removeprefix("glue_").replace("-", "").lower()
    if key not in GLUE:
        extra = " (stsb is regression, not classification)" if key == "stsb" else ""
        raise ConfigError(f"unknown GLUE task {name!r}{extra}; one of {', '.join(GLUE)}")
    if test_from not in ("train", "dev"):
        raise ConfigError(f"test_from={test_from!r} must be 'train' or 'dev'")
    spec = GLUE[key]
    train_rows, dev_rows, source = _glue_rows(key, spec, path)
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
    return Task(f"glue_{key}", list(spec.labels), encode(train_rows), encode(dev_rows), encode(test_rows),
                pad_id=specials.pad, num_special=specials.num_special, pairs=spec.text_b is not None, notes=notes)


CORPUS_TASKS = ("wiki_topic", "wiki_acceptability")  # tasks made from the run's own corpus


def task_names() -> str:
    """The eval.task values, for messages."""
    return f"{', '.join(CORPUS_TASKS)} or glue_<{'|'.join(GLUE)}>"


def unknown_task(name: str) -> str | None:
    """Why `name` is not a downstream task (an eval.task value), or None when it is one."""
    if name in CORPUS_TASKS:
        return None
    if name.startswith("glue_"):
        key = name.removeprefix("glue_").replace("-", "").lower()
        if key in GLUE:
            return None
        extra = " (stsb is regression, not classification)" if key == "stsb" else ""
        return f"unknown GLUE task {name!r}{extra}"
    return f"unknown downstream task {name!r}"


def load_task(name: str, data: Any, seq_len: int = 128, path: str | Path | None = None, data_cfg: Any = None,
              **kwargs: Any) -> Task:
    """A task by name from a PretrainingData: "wiki_topic", "wiki_acceptability" (which reads the sentences
    through the data config, `data_cfg`: the run's cfg.data), or "glue_<name>" (from `path` or the hub)."""
    if (why := unknown_task(name)) is not None:
        raise ConfigError(f"{why}: {task_names()}")
    if name == "wiki_topic":
        return wiki_topic(data, seq_len, **kwargs)
    if name == "wiki_acceptability":
        if data_cfg is None:
            raise ValueError("wiki_acceptability reads the corpus's sentences: pass data_cfg (the run's cfg.data)")
        return wiki_acceptability(data, data_cfg, seq_len, **kwargs)
    return glue_task(name, data.tokenizer, data.specials, seq_len, path=path, **kwargs)
