"""Minimal-pair suites from files in BLiMP's format (Warstadt et al. 2020, TACL): one JSON object per line with
`sentence_good`, `sentence_bad`, `UID` (the paradigm) and `linguistics_term` (the phenomenon); `field`, `pairID`
and any other field are kept or ignored. BLiMP's `data/` folder as published, BabyLM's filtered BLiMP and its
supplement, and a user's own pairs all read the same way.

A path in probes.suites is one suite: a .jsonl file, or a directory whose *.jsonl files (sorted by name) it holds.
A suite is named after the path (a file: its stem; a directory: its name, or its parent's when it is called `data`
as BLiMP's is), and reported as the field reports BLiMP: the mean of its paradigms' accuracies (not of its pairs),
per phenomenon the mean of that phenomenon's paradigms, and per paradigm. A paradigm of BLiMP's counts under the
phenomenon the paper gives it (its 12: the data files call two argument_structure paradigms "s-selection").

The project ships no suite's sentences: BLiMP is at https://github.com/alexwarstadt/blimp (CC BY 4.0, `data/`)."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from runner.config.errors import ConfigError
from runner.evaluation.probes.published import known_identical, paper_phenomenon

REQUIRED = ("sentence_good", "sentence_bad", "UID", "linguistics_term")
GENERIC_DIRS = ("data",)  # a directory so named is named after its parent (BLiMP's data/ -> blimp)
BLIMP_URL = "https://github.com/alexwarstadt/blimp"


@dataclass(frozen=True)
class SuitePair:
    """A grammatical sentence and its ungrammatical twin, with the paradigm and phenomenon it tests."""

    good: str
    bad: str
    paradigm: str  # BLiMP's UID
    phenomenon: str  # BLiMP's linguistics_term
    pair_id: str  # BLiMP's pairID (else the line number)


@dataclass(frozen=True)
class Suite:
    """A named suite's pairs, in file order."""

    name: str
    path: str
    pairs: tuple[SuitePair, ...]

    @property
    def paradigms(self) -> list[str]:
        """Its paradigms in first-seen order."""
        return list(dict.fromkeys(p.paradigm for p in self.pairs))

    def phenomenon_of(self) -> dict[str, str]:
        """paradigm -> its phenomenon."""
        return {p.paradigm: p.phenomenon for p in self.pairs}

    def sample(self, per_paradigm: int | None, seed: int) -> "Suite":
        """The same suite with at most per_paradigm pairs of each paradigm (None: all), drawn by a seeded shuffle of
        each paradigm's pairs: a function of (the files, per_paradigm, seed) only, so every run of a comparison
        scores the same pairs. The pairs keep their file order."""
        if per_paradigm is None:
            return self
        keep: set[int] = set()
        by_paradigm: dict[str, list[int]] = {}
        for i, p in enumerate(self.pairs):
            by_paradigm.setdefault(p.paradigm, []).append(i)
        for paradigm, idx in by_paradigm.items():
            rng = random.Random(f"{seed}-{paradigm}")
            chosen = list(idx)
            rng.shuffle(chosen)
            keep.update(chosen[:per_paradigm])
        return Suite(self.name, self.path, tuple(p for i, p in enumerate(self.pairs) if i in keep))


def suite_name(path: Path) -> str:
    """The suite's name: a file's stem; a directory's name, or its parent's when it is a generic one (data/)."""
    path = path.resolve()
    if path.is_file():
        return path.stem
    if path.name in GENERIC_DIRS and path.parent.name:
        return path.parent.name
    return path.name


def _files(path: Path, key: str) -> list[Path]:
    if not path.exists():
        raise ConfigError(f"{key}: {path} does not exist; point it at a .jsonl file or a directory of them in BLiMP's "
                          f"format (BLiMP: {BLIMP_URL}, its data/ folder)")
    if path.is_file():
        return [path]
    files = sorted(path.glob("*.jsonl"))
    if not files:
        raise ConfigError(f"{key}: {path} holds no .jsonl file; point it at BLiMP's data/ folder or your own pairs "
                          "(one JSON object per line: sentence_good, sentence_bad, UID, linguistics_term)")
    return files


def read_pairs(file: Path) -> list[SuitePair]:
    """One .jsonl file's pairs; a ConfigError naming the file and line for an empty file, a line that is not a JSON
    object, a missing or empty field, or a pair whose two sentences are the same."""
    out: list[SuitePair] = []
    with open(file, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{file}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{where}: not a JSON object ({e.msg}); each line holds one pair in BLiMP's "
                                  "format") from None
            if not isinstance(row, dict):
                raise ConfigError(f"{where}: not a JSON object; each line holds one pair in BLiMP's format")
            missing = [k for k in REQUIRED if not isinstance(row.get(k), str) or not row[k].strip()]
            if missing:
                raise ConfigError(f"{where}: no {', '.join(missing)}; each pair needs {', '.join(REQUIRED)} "
                                  "(strings; other fields are ignored)")
            good, bad = row["sentence_good"].strip(), row["sentence_bad"].strip()
            if good == bad and str(row.get("pairID")) not in known_identical().get(row["UID"].strip(), ()):
                raise ConfigError(f"{where}: sentence_good and sentence_bad are the same ({good!r}); a minimal pair "
                                  "must differ (only BLiMP's 7 published such pairs are kept, scored as a tie: wrong)")
            uid = row["UID"].strip()  # a BLiMP paradigm counts under the paper's phenomenon (its 12)
            out.append(SuitePair(good, bad, uid, paper_phenomenon(uid) or row["linguistics_term"].strip(),
                                 str(row.get("pairID", n))))
    if not out:
        raise ConfigError(f"{file}: empty; a suite file holds one pair per line in BLiMP's format")
    return out


@lru_cache(maxsize=16)
def _read_suite(path: str, stamp: tuple, key: str) -> Suite:
    pairs = [p for file in _files(Path(path), key) for p in read_pairs(file)]
    return Suite(suite_name(Path(path)), path, tuple(pairs))


def _stamp(path: Path) -> tuple:
    """What changes when the files do (so a cached read is never stale)."""
    files = [path] if path.is_file() else sorted(path.glob("*.jsonl")) if path.is_dir() else []
    return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)


def read_suites(paths: Sequence[str], key: str = "probes.suites") -> list[Suite]:
    """The suites at paths (files or directories), each read once per content; a ConfigError naming the path, file
    or line when one cannot be used, or when two paths give suites of the same name."""
    suites: list[Suite] = []
    for raw in paths:
        path = Path(str(raw)).expanduser()
        suite = _read_suite(str(path.resolve()), _stamp(path) if path.exists() else (), key)
        if any(s.name == suite.name for s in suites):
            raise ConfigError(f"{key}: two suites are named {suite.name!r} ({raw} and an earlier path); a suite is "
                              "named after its file or directory, so rename one")
        suites.append(suite)
    return suites
