"""The pretraining data a run needs: corpus, split, tokenizer, tokenized splits and fixed-length examples,
each cached on disk so a second run starts training within seconds."""
from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from runner.data import cache
from runner.data.corpus import SPLITS, Document, file_fingerprint, split_of
from runner.data.examples import (FORMATS, LABEL_KEYS, NSP_FORMATS, PAIR_FORMATS, SINGLE_FORMATS, ExampleSet,
                                  build_example_set, default_format)
from runner.data.stream import TokenStream
from runner.data.sources import open_documents
from runner.data.token_corpus import TOKENIZED_FORMAT, TokenizedCorpus, load_tokenized, tokenize_splits
from runner.data.tokenizer import SpecialIds, load_or_train_tokenizer, load_tokenizer, special_ids
from runner.config.errors import ConfigError

EXAMPLES_FORMAT = 6  # bump when the stored example ranges change, so old caches are not read


@dataclass
class PretrainingData:
    """Builds (or loads from cache) everything between the raw corpus and batches of examples."""

    tokenizer: Tokenizer
    specials: SpecialIds
    splits: dict[str, TokenizedCorpus]
    seq_len: int
    format: str  # data.format, resolved: one of FORMATS (runner/data/examples.py)
    short_seq_prob: float
    cache_dir: Path
    key: str
    corpus_report: dict[str, Any] = field(default_factory=dict)  # files read, documents, skips (sources.py)
    example_stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # per split, once examples() ran
    configured_vocab_size: int | None = None  # model.vocab_size, for the vocabulary note in stats()
    tokenizer_source: str = "trained"  # or the tokenizer.json it was loaded from

    def examples(self, split: str, copies: int, seed: int, random_next_prob: float = 0.5) -> ExampleSet:
        """Fixed-length examples of a split in data.format, `copies` times (BERT's dupe factor; pairs are
        redrawn per copy), as stream ranges cached in memory-mapped .npy files: a few integers per example,
        whatever the corpus size. Their padding share is recorded for stats()."""
        rnp = random_next_prob if self.format in NSP_FORMATS else None  # formats without it share a cache
        short = self.short_seq_prob if self.format in ("segment_pair", "sop_pair") else None
        k = cache.key(EXAMPLES_FORMAT, self.seq_len, copies, seed, rnp, short)
        corpus = self.splits[split]

        def build(tmp: Path) -> None:
            ex = build_example_set(corpus, self.format, self.seq_len, self.specials, copies, seed,
                                   random_next_prob, self.short_seq_prob)
            if len(ex) == 0:
                raise ConfigError(f"data.format={self.format} builds no examples from the {split} split "
                                  f"({corpus.num_docs} documents); its documents are too short for sentence "
                                  "pairs: use more documents (data.max_docs) or another data.format")
            np.save(tmp / "ranges.npy", ex.ranges)
            if ex.labels is not None:
                np.save(tmp / "labels.npy", ex.labels)

        def load(path: Path) -> ExampleSet:
            labels = np.load(path / "labels.npy", mmap_mode="r") if (path / "labels.npy").is_file() else None
            return ExampleSet(TokenStream(corpus, self.specials.sep), np.load(path / "ranges.npy", mmap_mode="r"),
                              self.seq_len, self.specials, labels, LABEL_KEYS.get(self.format))

        ex = cache.cached_dir(self.cache_dir / "examples" / f"{self.key}-{split}-{self.format}-{k}", build, load)
        n, lengths = len(ex), ex.lengths()
        self.example_stats[split] = {"examples": n, "padding_fraction": round(ex.padding_fraction(), 4),
                                     "mean_tokens": round(float(lengths.sum()) / max(n, 1), 2)}
        return ex

    def vocab_stats(self) -> dict[str, Any]:
        """The tokenizer's size and source, model.vocab_size, and a note when the vocabulary is smaller
        (a small corpus trains fewer tokens than asked; the embedding keeps model.vocab_size rows)."""
        n, want = self.tokenizer.get_vocab_size(), self.configured_vocab_size
        out: dict[str, Any] = {"vocab_size": n, "tokenizer": self.tokenizer_source}
        if want is not None:
            out["configured_vocab_size"] = want
            if n < want:
                what = "trained vocabulary" if self.tokenizer_source == "trained" else \
                    f"tokenizer {self.tokenizer_source}"
                out["vocab_note"] = (f"{what} has {n:,} tokens, fewer than model.vocab_size={want}; "
                                     f"the model keeps {want} embedding rows")
        return out

    def stats(self) -> dict[str, Any]:
        """Sizes of the splits and the corpus report (under "corpus"), for the run summary."""
        out: dict[str, Any] = self.vocab_stats()
        for name, c in self.splits.items():
            out[f"{name}_docs"], out[f"{name}_tokens"] = c.num_docs, c.num_tokens
        out["corpus"] = dict(self.corpus_report)
        out["examples"] = {"format": self.format, **self.example_stats}  # padding share per split, per format
        return out


def check_format(cfg, pairs: bool, objective: str | None = None, labels: str | None = None) -> str:
    """data.format resolved (null: the objective's default) and checked against the objective: NSP trains on
    segment_pair or sentence_pair, SOP (objective=mlm_sop) on sop_pair, every other objective on single sequences.
    labels: the pair label key the objective reads (its `label_key`, one of LABEL_KEYS' values); None with pairs:
    next-sentence labels."""
    sop = pairs and labels == LABEL_KEYS["sop_pair"]  # sentence-order labels (ALBERT section 4.1), else NSP's
    fmt = cfg.get("format") or ("sop_pair" if sop else default_format(pairs))
    if fmt not in FORMATS:
        raise ConfigError(f"data.format={fmt!r} must be one of {', '.join(FORMATS)} (or null: the objective's "
                          "default)")
    name = objective or ("mlm_nsp" if pairs else "mlm")  # for the messages
    if sop:
        if fmt != "sop_pair":
            what = "next-sentence labels" if fmt in NSP_FORMATS else "single sequences"
            raise ConfigError(f"data.format={fmt} gives {what}, but objective={name} predicts sentence order; use "
                              "data.format=sop_pair (its default) with it, or objective=mlm_nsp for NSP")
        return fmt
    if pairs and fmt == "sop_pair":
        raise ConfigError(f"data.format=sop_pair gives sentence-order labels, but objective={name} predicts the "
                          "next sentence; use data.format=segment_pair or sentence_pair with it, or "
                          "objective=mlm_sop for sentence order")
    if pairs and fmt not in NSP_FORMATS:
        raise ConfigError(f"data.format={fmt} gives single sequences, but objective={name} needs sentence pairs; "
                          f"use data.format=segment_pair or sentence_pair, or an objective without NSP "
                          f"(objective=mlm)")
    if not pairs and fmt in PAIR_FORMATS:
        extra = " or objective=mlm_sop" if fmt == "sop_pair" else " or objective=mlm_nsp"
        raise ConfigError(f"data.format={fmt} builds sentence pairs, which objective={name} does not use; use "
                          f"data.format={'|'.join(SINGLE_FORMATS)}{extra}")
    return fmt


def empty_split_message(cfg, report: dict[str, Any], counts: dict[str, int]) -> str:
    """The one-line error for a corpus that leaves no training or no validation documents."""
    n, sizes = report["documents_used"], f"train {counts['train']}, validation {counts['validation']}"
    if report["source"] == "wiki":
        return (f"data: {n} articles leave an empty train or validation split ({sizes}); raise data.max_docs or "
                "data.val_fraction")
    more = " or data.doc_boundary=blank_line" if cfg.get("doc_boundary") == "file" and report["source"] == "text" \
        else ""
    return (f"data.paths={list(cfg.paths)}: {n} documents leave an empty train or validation split ({sizes}); fix: "
            f"add documents (more files{more}), raise data.val_fraction, or raise data.max_docs")


def build_data(cfg, *, tokenizer_kind: str, vocab_size: int, lowercase: bool, pairs: bool,
               tokenizer_path: str | None = None, objective: str | None = None,
               labels: str | None = None) -> PretrainingData:
    """Load the corpus named by the data config, split it by article, train or load the tokenizer (objective: its
    name, for messages; labels: the pair labels it reads, check_format)."""
    fmt = check_format(cfg, pairs, objective, labels)
    local = (cfg.get("tokenizer") or {}).get("path")  # data.tokenizer.path takes precedence over model.init_from's
    source = ("data.tokenizer.path", local) if local else \
        ("model.init_from", tokenizer_path) if tokenizer_path else None
    if source:  # a local tokenizer.json instead of a trained one, checked before the corpus is read
        tok, tok_file = load_tokenizer(source[1], tokenizer_kind, source[0])  # specials found by name
    corpus = open_documents(cfg)  # checks paths and options now; the text is read pass by pass

    def docs() -> Iterator[Document]:
        """One pass over the documents in use (the first data.max_docs)."""
        return itertools.islice(corpus, cfg.max_docs)

    # read once: a DictConfig's attribute access, per document, cost about a tenth of a tokenization pass
    val_fraction, test_fraction = float(cfg.val_fraction), float(cfg.test_fraction)

    def split(doc: Document) -> str:
        return split_of(doc.title, val_fraction, test_fraction)

    root = cache.cache_root(cfg.cache_dir)
    corpus_key = cache.key(corpus.fingerprint, cfg.max_docs, cfg.val_fraction, cfg.test_fraction)
    if source:
        tok_key, tok_source = cache.key(file_fingerprint(tok_file)), str(tok_file)  # keyed by content
    else:
        tok_source = "trained"
        tok = load_or_train_tokenizer(tokenizer_kind, lambda: (d.text for d in docs() if split(d) == "train"),
                                      vocab_size, lowercase, root, corpus_key)
        tok_key = cache.key(tokenizer_kind, vocab_size, lowercase)
    key = f"{corpus_key}-{tok_key}"

    def build(tmp: Path) -> None:
        size = corpus.size if cfg.max_docs is None else None  # a few documents of a large corpus are not large
        counts = tokenize_splits(docs(), split, SPLITS, tok, tmp, cfg.get("num_proc"), size)
        report = {**corpus.report, "documents_used": corpus.report["documents"]}  # read in this pass
        if not counts["train"] or not counts["validation"]:
            raise ConfigError(empty_split_message(cfg, report, counts))
        cache.atomic_write_bytes(json.dumps(report).encode("utf-8"), tmp / "report.json")

    def load(path: Path) -> tuple[dict[str, TokenizedCorpus], dict[str, Any]]:
        return ({name: load_tokenized(path / name) for name in SPLITS},
                json.loads((path / "report.json").read_text(encoding="utf-8")))

    # One streaming pass writes every split as memory-mapped arrays, once even when several runs start together;
    # later runs read the corpus report stored with them and never touch the text again. A pass interrupted half way
    # (killed, Ctrl-C) resumes where it stopped on the next run (tokenize_splits' progress record).
    splits, report = cache.cached_dir(root / "tokenized" / f"{key}-v{TOKENIZED_FORMAT}", build, load, resumable=True)
    return PretrainingData(tokenizer=tok, specials=special_ids(tok, tokenizer_kind), splits=splits,
                           seq_len=cfg.seq_len, format=fmt,
                           short_seq_prob=cfg.short_seq_prob, cache_dir=root, key=key, corpus_report=report,
                           configured_vocab_size=vocab_size, tokenizer_source=tok_source)
