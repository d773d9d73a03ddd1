"""data.source=hub: datasets saved locally, WikiText grouping, and fail-fast offline errors.
The tests of this file that train or start a process: tests/integration/test_hub.py."""
from __future__ import annotations

import time

import pytest

from runner.data.hub import hub_documents
from runner.data.sources import load_documents, new_report, open_documents
from runner.config.errors import ConfigError
from tests.conftest import make_cfg


datasets = pytest.importorskip("datasets")


WORDS = "the river city music art history science king war land sea north south early modern people".split()


def sentences(i: int, n: int = 4) -> str:
    return " ".join(f"{WORDS[(i + k) % len(WORDS)].capitalize()} {WORDS[(i * 3 + k) % len(WORDS)]} "
                    f"{WORDS[(i * 7 + k) % len(WORDS)]} is {WORDS[k % len(WORDS)]}." for k in range(n))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small dataset saved with save_to_disk, as a user without network would bring one."""
    path = tmp_path_factory.mktemp("hub") / "ds"
    rows = {"text": [sentences(i) for i in range(120)] + [""], "title": [f"doc {i}" for i in range(121)]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(path))
    return path


def test_saved_dataset_loads_with_titles_and_counts_empty_rows(saved):
    cfg = make_cfg("data=hub", f"data.hub.name={saved}", "data.hub.title_field=title")
    docs, fingerprint, report = load_documents(cfg.data)
    assert len(docs) == 120 and docs[3].title == "doc 3"
    assert report["skipped_empty_documents"] == 1 and fingerprint.startswith("disk:")


def test_parquet_directory_loads_through_load_dataset(tmp_path):
    datasets.Dataset.from_dict({"body": [sentences(i) for i in range(30)]}).to_parquet(str(tmp_path / "train.parquet"))
    cfg = make_cfg("data=hub", f"data.hub.name={tmp_path}", "data.hub.text_field=body")
    docs, _, _ = load_documents(cfg.data)
    assert len(docs) == 30 and docs[0].title.endswith(":train:0")


def test_wikitext_rows_are_grouped_into_articles():
    rows = [{"text": t} for t in ["", " = Moon = \n", "", " The Moon orbits Earth . \n", " = = Orbit = = \n",
                                  " It is tidally locked . \n", " = Mars = \n", " Mars is red . \n", " = Empty = \n"]]
    h = make_cfg("data=wikitext103").data.hub
    report = new_report("hub")
    docs = list(hub_documents(rows, h, None, report))
    assert [d.title for d in docs] == ["Moon", "Mars"]
    assert "tidally locked" in docs[0].text and "= = Orbit = =" in docs[0].text
    assert report["skipped_empty_documents"] == 1


def test_uncached_hub_dataset_fails_fast_with_one_line(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_documents(make_cfg("data=wikitext103").data)
    assert time.perf_counter() - start < 30
    msg = str(info.value)
    assert "\n" not in msg and "data.hub.name=wikitext (wikitext-103-raw-v1)" in msg and "save_to_disk" in msg


def test_streaming_reads_the_whole_split_without_max_docs(tmp_path):
    d = tmp_path / "parquet"
    d.mkdir()
    datasets.Dataset.from_dict({"text": [sentences(i) for i in range(30)]}).to_parquet(str(d / "train.parquet"))
    cfg = make_cfg("data=hub", f"data.hub.name={d}", "data.hub.streaming=true", "data.max_docs=null")
    src = open_documents(cfg.data)
    assert src.fingerprint.startswith("stream:")
    first = next(iter(src))  # rows arrive one at a time from an IterableDataset
    assert first.text == sentences(0)
    assert len(list(src)) == 30 and src.report["documents"] == 30, "each pass reads the stream anew"
