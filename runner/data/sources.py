"""Corpus sources of the `data` group: the bundled wiki summaries, local plain text, local JSON lines.

`open_documents(cfg)` returns the corpus as a DocumentSource read lazily, pass by pass, with a fingerprint for
cache keys and a report of what each pass read and skipped. Bad input is either a one-line ConfigError naming the file (and line) and the fix, or a skip
counted in the report: nothing is dropped silently."""
from __future__ import annotations

import codecs
import glob as globlib
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from runner.data.corpus import CorpusError, Document, file_fingerprint, load_wiki, wiki_corpus_path
from runner.config.errors import ConfigError
from runner.data.hub import hub_documents, open_dataset

SOURCES = ("wiki", "text", "jsonl", "hub")
DOC_BOUNDARIES = ("file", "blank_line")
ENCODING_ERRORS = ("strict", "replace", "skip")
BAD_LINES = ("error", "skip")
DEFAULT_GLOBS = {"text": "**/*.txt", "jsonl": "**/*.jsonl"}
DEFAULT_TOPIC = "Uncategorized"  # as the wiki loader labels articles without a topic
LOADER_VERSION = 1  # bump when local files are read into different documents, so cached tokens are rebuilt
_MAGIC = re.compile(r"[*?[]")  # glob metacharacters: such a path entry is a pattern

REPORT_KEYS = ("files_matched", "files_read", "bytes_read", "documents", "skipped_empty_files",
               "skipped_empty_documents", "skipped_duplicate_documents", "skipped_undecodable_files",
               "replaced_decode_errors", "blank_lines", "bad_json_lines")


class _ReplaceCounter:
    """A codecs error handler that replaces like errors='replace' and counts the replacements."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, err: UnicodeError) -> tuple[str, int]:
        """One U+FFFD per invalid sequence, as the built-in 'replace' handler does."""
        if not isinstance(err, UnicodeDecodeError):
            raise err
        self.count += 1
        return "\ufffd", err.end


_REPLACED = _ReplaceCounter()
_REPLACE_HANDLER = "bertlab.count_replace"
codecs.register_error(_REPLACE_HANDLER, _REPLACED)


class _Undecodable(Exception):
    """Bytes of a file that are not UTF-8, at an absolute byte offset (and line)."""

    def __init__(self, offset: int, line: int, reason: str):
        super().__init__(offset, line, reason)
        self.offset, self.line, self.reason = offset, line, reason


def _opt(cfg: Any, key: str, default: Any) -> Any:
    """cfg.key, or `default` where the key is absent (a run's saved config.yaml predating the key)."""
    return getattr(cfg, key, default)


def new_report(source: str) -> dict[str, Any]:
    """A report with every counter at zero, so summaries of different runs have the same keys."""
    return {"source": source, **{k: 0 for k in REPORT_KEYS}}


class DocumentSource:
    """The corpus a data config names, read lazily: each iteration is one pass over it, counting into a fresh
    report (`.report`). Local files are read one at a time (a file's documents are held together, so a skipped
    undecodable file contributes nothing); hub rows one row at a time. A pass that yields no document raises
    the one-line ConfigError saying why."""

    def __init__(self, name: str, fingerprint: str, read: Callable[[dict[str, Any]], Iterable[Document]],
                 empty: Callable[[dict[str, Any]], str], preset: dict[str, Any] | None = None,
                 size: int | None = None):
        self.name, self.fingerprint, self._read, self._empty = name, fingerprint, read, empty
        self.size = size  # bytes of the files read (None: unknown, hub rows), which tell a large corpus in advance
        self._preset = preset or {}  # report fields known before reading (files matched)
        self.report = self._fresh()

    def _fresh(self) -> dict[str, Any]:
        return {**new_report(self.name), **self._preset}

    def __iter__(self) -> Iterator[Document]:
        report = self.report = self._fresh()
        for doc in self._read(report):
            report["documents"] += 1
            yield doc
        if not report["documents"]:
            raise ConfigError(self._empty(report))


def open_documents(cfg: Any) -> DocumentSource:
    """The lazily read corpus of a data config; the config and the paths are checked now, the text when read."""
    source = _opt(cfg, "source", "wiki")
    if source not in SOURCES:
        raise ConfigError(f"data.source={source!r} must be one of {', '.join(SOURCES)}; "
                          f"fix: data=wiki|wiki_fr|wiki_es|text|jsonl|hub")
    encoding_errors, boundary, bad_lines = (_opt(cfg, "encoding_errors", "strict"), _opt(cfg, "doc_boundary", "file"),
                                            _opt(cfg, "bad_lines", "error"))
    for key, value, choices in (("encoding_errors", encoding_errors, ENCODING_ERRORS),
                                ("doc_boundary", boundary, DOC_BOUNDARIES), ("bad_lines", bad_lines, BAD_LINES)):
        if value not in choices:  # checked before any file is touched
            raise ConfigError(f"data.{key}={value!r} must be one of {', '.join(choices)}; fix: data.{key}={choices[0]}")
    paths = list(_opt(cfg, "paths", None) or [])
    if source == "wiki":
        if paths:  # a wiki run that silently ignored data.paths would train on the wrong corpus
            raise ConfigError(f"data.paths={paths} is read only by data=text or data=jsonl, not data.source=wiki; "
                              f"fix: add data=text (or data=jsonl), or drop data.paths")
        return _open_wiki(cfg)
    if source == "hub":
        return _open_hub(cfg)
    if _opt(cfg, "path", None):
        raise ConfigError(f"data.path={cfg.path!r} is a wiki-format JSON file, not read by data.source={source}; "
                          f"fix: list local files in data.paths=[...] instead")
    if not paths:
        raise ConfigError(f"data.source={source} needs data.paths: files, directories or glob patterns; "
                          f"fix: data.paths=[path/to/corpus]")
    pattern = _opt(cfg, "glob", None) or DEFAULT_GLOBS[source]
    files = resolve_paths(paths, pattern)
    root = Path(os.path.commonpath([str(f.parent) for f in files]))
    if source == "text":
        options: tuple = (boundary,)
        read_file = lambda f, rel, report: _text_documents(f, rel, boundary, encoding_errors, report)  # noqa: E731
    else:
        fields = (_opt(cfg, "text_field", "text"), _opt(cfg, "title_field", None), _opt(cfg, "topic_field", None))
        options = (*fields, bad_lines)
        read_file = lambda f, rel, report: _jsonl_documents(f, rel, *fields, bad_lines, encoding_errors,  # noqa: E731
                                                            report)

    def read(report: dict[str, Any]) -> Iterator[Document]:
        for f in files:
            yield from read_file(f, f.relative_to(root).as_posix(), report)

    def empty(report: dict[str, Any]) -> str:
        return (f"data.paths={paths}: no documents left in {len(files)} file(s) after filtering ({_skips(report)}); "
                f"fix: point data.paths at non-empty {'UTF-8 text' if source == 'text' else 'JSON-lines'} files")

    fingerprint = local_fingerprint(files, root, (source, *options, encoding_errors))
    return DocumentSource(source, fingerprint, read, empty, {"files_matched": len(files)},
                          sum(f.stat().st_size for f in files))


def load_documents(cfg: Any) -> tuple[list[Document], str, dict[str, Any]]:
    """Every document of the corpus at once (small corpora, tests), its fingerprint, and the report of the pass."""
    src = open_documents(cfg)
    docs = list(src)
    return docs, src.fingerprint, src.report


def _open_hub(cfg: Any) -> DocumentSource:
    """Documents from a Hugging Face `datasets` dataset (runner/data/hub.py), read row by row."""

    rows, fingerprint = open_dataset(cfg.hub, cfg.max_docs)  # fails fast offline, before any pass
    return DocumentSource("hub", fingerprint, lambda report: hub_documents(rows, cfg.hub, cfg.max_docs, report),
                          lambda report: f"data.hub.name={cfg.hub.name}: no documents with text in column "
                                         f"{cfg.hub.text_field!r} ({_skips(report)}); set data.hub.text_field")


def _skips(report: dict[str, Any]) -> str:
    """The non-zero skip counters of a report, for error messages."""
    parts = [f"{k}={v}" for k, v in report.items()
             if v and (k.startswith("skipped_") or k in ("bad_json_lines", "blank_lines"))]
    return ", ".join(parts) or "nothing skipped"


def _open_wiki(cfg: Any) -> DocumentSource:
    """The bundled summaries of data.lang, or the wiki-format JSON at data.path (one JSON file, read whole)."""
    try:
        path = Path(cfg.path).expanduser() if _opt(cfg, "path", None) else wiki_corpus_path(cfg.lang)
    except CorpusError as e:
        raise ConfigError(str(e)) from e
    if not path.is_file():
        raise ConfigError(f"data.path={str(path)!r}: no such file; fix: give a summaries JSON file in the wiki "
                          "format, or drop data.path to use the bundled corpus")
    fingerprint = file_fingerprint(path)  # the file's content hash, as before this module existed

    def read(report: dict[str, Any]) -> list[Document]:
        try:
            docs = load_wiki(path, report=report)
        except CorpusError as e:
            raise ConfigError(str(e)) from e
        report.update(files_read=1, bytes_read=path.stat().st_size)
        return docs

    return DocumentSource("wiki", fingerprint, read, lambda report: f"wiki corpus {path} holds no article with text; "
                          "fix: point data.path at a summaries JSON with extracts", {"files_matched": 1})


def resolve_paths(paths: list[str], pattern: str) -> list[Path]:
    """Files named by data.paths (files, directories searched with `pattern`, glob patterns): sorted, unique."""
    found: set[Path] = set()
    for entry in paths:
        p = Path(str(entry)).expanduser()
        if p.is_file():
            found.add(p.resolve())
        elif p.is_dir():
            hits = [h.resolve() for h in sorted(p.glob(pattern)) if h.is_file()]
            if not hits:
                raise ConfigError(f"data.paths: directory {str(p)!r} has no files matching data.glob={pattern!r}; "
                                  f"fix: add such files or set data.glob (e.g. data.glob='**/*')")
            found.update(hits)
        elif p.exists():
            raise ConfigError(f"data.paths: {str(p)!r} is neither a file nor a directory; fix: remove it from data.paths")
        elif _MAGIC.search(str(entry)):
            hits = [Path(h).resolve() for h in globlib.glob(str(p), recursive=True) if os.path.isfile(h)]
            if not hits:
                raise ConfigError(f"data.paths: pattern {str(entry)!r} matches no files (cwd {os.getcwd()}); "
                                  f"fix: correct the pattern or pass the directory")
            found.update(hits)
        else:
            raise ConfigError(f"data.paths: {str(entry)!r} does not exist (cwd {os.getcwd()}); "
                              f"fix: pass an existing file, directory or glob pattern")
    return sorted(found)


def local_fingerprint(files: list[Path], root: Path, options: tuple = ()) -> str:
    """sha256 over (relative path, size, mtime_ns) of every file plus the reading options: no file is read."""
    # Stat instead of hashing content so that a multi-GB corpus costs no read; an edit changes mtime.
    h = hashlib.sha256(repr((LOADER_VERSION, options)).encode("utf-8"))
    for f in files:
        st = f.stat()
        h.update(repr((f.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns)).encode("utf-8"))
    return h.hexdigest()[:16]


def _decode(raw: bytes, errors: str, offset: int, line: int) -> str:
    """UTF-8 text of `raw` (which starts at byte `offset`, line `line` of its file) under data.encoding_errors."""
    if errors == "replace":
        return raw.decode("utf-8", _REPLACE_HANDLER)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Undecodable(offset + e.start, line + raw.count(b"\n", 0, e.start), e.reason) from None


def _undecodable(path: Path, err: _Undecodable, report: dict[str, Any], errors: str) -> None:
    """Count a file skipped for bytes that are not UTF-8, or raise the one-line error (strict)."""
    if errors == "skip":
        report["skipped_undecodable_files"] += 1
        return
    raise ConfigError(f"{path}: byte {err.offset} (line {err.line}) is not UTF-8 ({err.reason}); fix: convert the "
                      f"file to UTF-8, or set data.encoding_errors=replace (decode as U+FFFD) or "
                      f"data.encoding_errors=skip (skip such files)")


_READ_BLOCK = 1 << 20  # bytes read and decoded at once by _lines (then completed to the end of a line)


def _lines(f: BinaryIO, errors: str) -> Iterator[tuple[int, str]]:
    """(line number, decoded line without its newline) of a binary file, streamed a block of lines at a time.

    A block is decoded in one call, which is several times faster than a call per line; a block with bytes that
    are not UTF-8 (strict) is decoded again line by line, so the lines before the bad one still come first and the
    error names its byte and line exactly as reading line by line would."""
    number = offset = 0
    while block := f.read(_READ_BLOCK):
        if not block.endswith(b"\n"):
            block += f.readline()  # whole lines only: no UTF-8 sequence contains 0x0A, so they decode apart
        try:
            texts = _decode(block, errors, offset, number + 1).split("\n")
        except _Undecodable:
            texts = None
        if texts is None:
            for raw in io.BytesIO(block):  # line by line, as iterating the file splits it
                number += 1
                text = _decode(raw, errors, offset, number)
                offset += len(raw)
                yield number, (text.lstrip("\ufeff") if number == 1 else text).rstrip("\r\n")
            continue
        if block.endswith(b"\n"):
            texts.pop()  # the empty text after the last line break
        offset += len(block)
        for text in texts:
            number += 1
            yield number, (text.lstrip("\ufeff") if number == 1 else text).rstrip("\r")  # a BOM is not text


def _text_documents(path: Path, rel: str, boundary: str, errors: str, report: dict[str, Any]) -> list[Document]:
    """Documents of one plain-text file: the whole file, or blocks separated by blank lines (titled rel#k)."""
    before = _REPLACED.count
    docs: list[Document] = []
    try:
        with open(path, "rb") as f:
            if boundary == "file":
                raw = f.read()  # the file is one document, so it is held whole anyway
                text = _decode(raw, errors, 0, 1).lstrip("\ufeff").strip()
                if text:
                    docs.append(Document(title=rel, topic=DEFAULT_TOPIC, text=text))
            else:
                block: list[str] = []
                for _, line in _lines(f, errors):
                    if line.strip():
                        block.append(line)
                    elif block:  # one or more blank lines end a document
                        docs.append(Document(f"{rel}#{len(docs) + 1}", DEFAULT_TOPIC, "\n".join(block).strip()))
                        block = []
                if block:
                    docs.append(Document(f"{rel}#{len(docs) + 1}", DEFAULT_TOPIC, "\n".join(block).strip()))
    except _Undecodable as e:
        _undecodable(path, e, report, errors)
        return []
    if not docs:
        report["skipped_empty_files"] += 1  # only whitespace (a blank_line block is never whitespace-only)
    return _finish_file(path, docs, report, before)


def _finish_file(path: Path, docs: list[Document], report: dict[str, Any], replaced_before: int) -> list[Document]:
    """Count a file that was read to its end (empty if it gave no documents and no skips)."""
    report["replaced_decode_errors"] += _REPLACED.count - replaced_before
    report["bytes_read"] += path.stat().st_size
    report["files_read"] += 1
    return docs


def _jsonl_documents(path: Path, rel: str, text_field: str, title_field: str | None, topic_field: str | None,
                     bad_lines: str, errors: str, report: dict[str, Any]) -> list[Document]:
    """Documents of one JSON-lines file: one per line, text from `text_field`, title path#line by default."""
    before, skipped_before = _REPLACED.count, report["skipped_empty_documents"] + report["bad_json_lines"]
    docs: list[Document] = []
    blank = 0
    try:
        with open(path, "rb") as f:
            for number, line in _lines(f, errors):
                if not line.strip():
                    blank += 1
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    _bad_line(path, number, f"is not valid JSON ({e.msg} at column {e.colno})", bad_lines, report)
                    continue
                problem = _record_problem(record, text_field, title_field)
                if problem:
                    _bad_line(path, number, problem, bad_lines, report)
                    continue
                text = record[text_field].strip()
                if not text:
                    report["skipped_empty_documents"] += 1
                    continue
                title = str(record[title_field]) if title_field else f"{rel}#{number}"
                topic = record.get(topic_field) if topic_field else None
                docs.append(Document(title=title, topic=str(topic) if topic not in (None, "") else DEFAULT_TOPIC,
                                     text=text))
    except _Undecodable as e:
        _undecodable(path, e, report, errors)
        return []
    report["blank_lines"] += blank
    if not docs and report["skipped_empty_documents"] + report["bad_json_lines"] == skipped_before:
        report["skipped_empty_files"] += 1  # no records at all: only whitespace
    return _finish_file(path, docs, report, before)


def _record_problem(record: Any, text_field: str, title_field: str | None) -> str | None:
    """Why a parsed JSON line cannot be a document, or None."""
    if not isinstance(record, dict):
        return f"is a JSON {type(record).__name__}, not an object"
    if not isinstance(record.get(text_field), str):
        what = "lacks" if text_field not in record else f"has a non-string ({type(record[text_field]).__name__})"
        return f"{what} text field {text_field!r} (data.text_field)"
    if title_field and not isinstance(record.get(title_field), (str, int)):
        return f"lacks a string title field {title_field!r} (data.title_field)"
    return None


def _bad_line(path: Path, number: int, problem: str, bad_lines: str, report: dict[str, Any]) -> None:
    """Count a bad JSON line (data.bad_lines=skip) or raise the one-line error naming file:line."""
    if bad_lines == "skip":
        report["bad_json_lines"] += 1
        return
    raise ConfigError(f"{path}:{number}: line {problem}; fix: repair the line, set data.text_field/data.title_field "
                      f"to the record's keys, or set data.bad_lines=skip to skip and count such lines")
