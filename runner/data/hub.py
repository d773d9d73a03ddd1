"""Hugging Face `datasets` as a corpus source: a Hub dataset by name, config and split, or a dataset saved
locally with `save_to_disk` / a local data directory. Offline, a dataset that is not cached fails in seconds
with one line saying how to get it (instead of minutes of retries)."""
from __future__ import annotations

import itertools
import os
import re
import socket
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import urlparse

from runner.data.corpus import Document
from runner.config.errors import ConfigError

DOC_BOUNDARIES = ("row", "wikitext")  # one document per row | WikiText's " = Title = " article headings
_HEADING = re.compile(r"^ = ([^=].*?) = $")  # a top-level WikiText heading; " = = Section = = " is not one


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub endpoint accepts a TCP connection within `timeout` seconds."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout).close()
        return True
    except OSError:
        return False


def force_offline() -> None:
    """Make datasets and huggingface_hub read only their local caches (they read these flags at call time)."""
    import datasets
    import huggingface_hub.constants as hub_constants

    datasets.config.HF_HUB_OFFLINE = True
    hub_constants.HF_HUB_OFFLINE = True


def offline_wanted() -> bool:
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes")
               for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))


def open_dataset(h: Any, max_docs: int | None):
    """The rows of the configured split, and a fingerprint of them for cache keys."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        raise ConfigError("data.source=hub needs the datasets package: pip install datasets") from None
    if not h.name:
        raise ConfigError("data.source=hub needs data.hub.name: a Hub dataset (e.g. wikitext) or a local directory")
    local = Path(h.name).expanduser()
    if local.is_dir() and ((local / "state.json").is_file() or (local / "dataset_dict.json").is_file()):
        ds = datasets.load_from_disk(str(local))  # written by Dataset.save_to_disk
        if isinstance(ds, datasets.DatasetDict):
            if h.split not in ds:
                raise ConfigError(f"data.hub.split={h.split!r} is not in {local} (splits: {', '.join(ds)}); "
                                  f"set data.hub.split to one of them")
            ds = ds[h.split]
        return ds, f"disk:{ds._fingerprint}"
    if not local.is_dir() and (offline_wanted() or not hub_reachable()):
        force_offline()  # only the local cache can answer: don't wait through minutes of retries
    try:
        ds = datasets.load_dataset(h.name, h.config, split=h.split, streaming=h.streaming, revision=h.revision)
    except (ConnectionError, FileNotFoundError, ValueError) as e:
        what = f"{h.name}" + (f" ({h.config})" if h.config else "")
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"data.hub.name={what} split {h.split!r} could not be loaded: not in the local datasets cache and the Hub "
            f"is unreachable, or no such dataset/config/split ({first}); fix: on a machine with network run "
            f"`python -c \"import datasets; datasets.load_dataset({h.name!r}, {h.config!r})\"` and copy "
            f"~/.cache/huggingface (or set HF_HOME), or save it with save_to_disk and pass that directory") from None
    if h.streaming:
        return ds, f"stream:{h.name}:{h.config}:{h.split}:{h.revision}:{max_docs}"
    return ds, f"hub:{ds._fingerprint}"


def hub_documents(rows: Iterable[dict], h: Any, max_docs: int | None, report: dict[str, Any]) -> Iterator[Document]:
    """Documents from dataset rows, read one row at a time: one per row, or WikiText articles grouped under their
    headings. At most max_docs."""
    if h.doc_boundary not in DOC_BOUNDARIES:
        raise ConfigError(f"data.hub.doc_boundary={h.doc_boundary!r} must be one of {', '.join(DOC_BOUNDARIES)}")
    return itertools.islice(_documents(rows, h, report), max_docs)


def _documents(rows: Iterable[dict], h: Any, report: dict[str, Any]) -> Iterator[Document]:
    title, lines = None, []
    for i, row in enumerate(rows):
        if h.text_field not in row:
            raise ConfigError(f"data.hub.text_field={h.text_field!r} is not a column of {h.name} "
                              f"(columns: {', '.join(row)}); set data.hub.text_field")
        text = row[h.text_field] or ""
        if h.doc_boundary == "wikitext":
            m = _HEADING.match(text.rstrip("\n"))
            if m:
                if title is not None:  # the previous article ends at this heading
                    yield from _article(title, lines, report)
                title, lines = m.group(1).strip(), []
            elif title is not None:
                lines.append(text)
            continue
        if not text.strip():
            report["skipped_empty_documents"] += 1
            continue
        name = str(row[h.title_field]) if h.title_field and row.get(h.title_field) else f"{h.name}:{h.split}:{i}"
        yield Document(title=name, topic="", text=text)
    if title is not None:
        yield from _article(title, lines, report)


def _article(title: str, lines: list[str], report: dict[str, Any]) -> Iterator[Document]:
    """A WikiText article from its lines, or a counted skip when it has no text."""
    text = "".join(lines).strip()
    if text:
        yield Document(title=title, topic="", text=text)
    else:
        report["skipped_empty_documents"] += 1
