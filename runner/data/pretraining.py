"""The pretraining data a run needs: corpus, split, tokenizer, tokenized splits and fixed-length examples,
each cached on disk so a second run starts training within seconds."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from runner.data import cache
from runner.data.corpus import file_fingerprint, split_documents
from runner.data.examples import pack_contiguous, pack_full_sentences, pair_tensors, sentence_pairs, single_tensors
from runner.data.sources import load_documents
from runner.data.tokenized import TokenizedCorpus, tokenize_documents
from runner.data.tokenizer import SpecialIds, load_or_train_tokenizer, special_ids
from runner.errors import ConfigError

PACKINGS = ("full_sentences", "contiguous")
EXAMPLES_FORMAT = 2  # bump when the stored example tensors change, so old caches are not read


@dataclass
class PretrainingData:
    """Builds (or loads from cache) everything between the raw corpus and batches of examples."""

    tokenizer: Tokenizer
    specials: SpecialIds
    splits: dict[str, TokenizedCorpus]
    seq_len: int
    pairs: bool
    packing: str
    short_seq_prob: float
    cache_dir: Path
    key: str
    corpus_report: dict[str, Any] = field(default_factory=dict)  # files read, documents, skips (sources.py)

    def examples(self, split: str, copies: int, seed: int, random_next_prob: float = 0.5) -> dict[str, torch.Tensor]:
        """Fixed-length examples of a split, `copies` times (BERT's dupe factor; pairs are redrawn per copy)."""
        path = self.cache_dir / "examples" / f"{self.key}-{split}-{self.packing}-p{int(self.pairs)}-" \
                                             f"{cache.key(EXAMPLES_FORMAT, self.seq_len, copies, seed, random_next_prob, self.short_seq_prob)}.pt"
        return cache.cached(path, lambda: self._build(split, copies, seed, random_next_prob))

    def _build(self, split: str, copies: int, seed: int, random_next_prob: float) -> dict[str, torch.Tensor]:
        corpus, max_tokens = self.splits[split], self.seq_len - (3 if self.pairs else 2)
        if self.pairs:
            parts = [pair_tensors(sentence_pairs(corpus, max_tokens, self.short_seq_prob, random_next_prob,
                                                 random.Random(seed * 1000 + c)), self.seq_len, self.specials)
                     for c in range(copies)]
            return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        pack = pack_full_sentences if self.packing == "full_sentences" else pack_contiguous
        one = single_tensors(pack(corpus, max_tokens, self.specials.sep), self.seq_len, self.specials)
        return {k: v.repeat(copies, *([1] * (v.dim() - 1))) for k, v in one.items()}

    def stats(self) -> dict[str, Any]:
        """Sizes of the splits and the corpus report (under "corpus"), for the run summary."""
        out: dict[str, Any] = {"vocab_size": self.tokenizer.get_vocab_size()}
        for name, c in self.splits.items():
            out[f"{name}_docs"], out[f"{name}_tokens"] = c.num_docs, c.num_tokens
        out["corpus"] = dict(self.corpus_report)
        return out


def build_data(cfg, *, tokenizer_kind: str, vocab_size: int, lowercase: bool, pairs: bool,
               tokenizer_path: str | None = None) -> PretrainingData:
    """Load the corpus named by the data config, split it by article, train or load the tokenizer."""
    if cfg.packing not in PACKINGS:
        raise ConfigError(f"data.packing={cfg.packing!r} must be one of {', '.join(PACKINGS)}")
    docs, fingerprint, report = load_documents(cfg)  # ConfigError on bad input; skips counted in report
    if cfg.max_docs is not None:
        docs = docs[:cfg.max_docs]
    report["documents_used"] = len(docs)  # after data.max_docs
    splits = split_documents(docs, cfg.val_fraction, cfg.test_fraction)
    if not splits["train"] or not splits["validation"]:
        sizes = f"train {len(splits['train'])}, validation {len(splits['validation'])}"
        if report["source"] == "wiki":
            raise ConfigError(f"data: {len(docs)} articles leave an empty train or validation split ({sizes}); "
                              "raise data.max_docs or data.val_fraction")
        more = " or data.doc_boundary=blank_line" if cfg.get("doc_boundary") == "file" and report["source"] == "text" \
            else ""
        raise ConfigError(f"data.paths={list(cfg.paths)}: {len(docs)} documents leave an empty train or validation "
                          f"split ({sizes}); fix: add documents (more files{more}), raise data.val_fraction, "
                          f"or raise data.max_docs")
    root = cache.cache_root(cfg.cache_dir)
    corpus_key = cache.key(fingerprint, cfg.max_docs, cfg.val_fraction, cfg.test_fraction)
    if tokenizer_path:
        tok = Tokenizer.from_file(tokenizer_path)
        tok_key = cache.key(file_fingerprint(tokenizer_path))
    else:
        tok = load_or_train_tokenizer(tokenizer_kind, lambda: (d.text for d in splits["train"]), vocab_size,
                                      lowercase, root, corpus_key)
        tok_key = cache.key(tokenizer_kind, vocab_size, lowercase)
    key = f"{corpus_key}-{tok_key}"
    tokenized = {name: cache.cached(root / "tokenized" / f"{key}-{name}.pt",
                                    lambda docs=docs_: tokenize_documents(tok, docs))
                 for name, docs_ in splits.items() if docs_}
    return PretrainingData(tokenizer=tok, specials=special_ids(tok, tokenizer_kind), splits=tokenized,
                           seq_len=cfg.seq_len, pairs=pairs, packing=cfg.packing,
                           short_seq_prob=cfg.short_seq_prob, cache_dir=root, key=key, corpus_report=report)
