"""Tests for runner.data.sources: wiki/text/jsonl corpora, path rules, fingerprints, and every kind of bad input.
The tests of this file that train or start a process: tests/integration/test_sources.py."""
from __future__ import annotations

import json
import os
import random
import time

import pytest

from runner.data.corpus import file_fingerprint, split_sentences, wiki_corpus_path
from runner.data.pretraining import build_data
from runner.data.sources import load_documents
from runner.config.errors import ConfigError
from tests.conftest import make_cfg, cli


WORDS = ("river mountain city king queen music science history language ocean forest war peace trade "
         "bridge castle poet engine star planet garden winter summer market school").split()


def sentences(rng: random.Random, n: int) -> list[str]:
    """n generated sentences of 6 to 12 words, capitalised and full-stopped."""
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12))).capitalize() + "." for _ in range(n)]


def data_cfg(*overrides: str):
    """The composed data group, with overrides (full keys: data.x=...)."""
    return make_cfg(*overrides).data


def load(*overrides: str):
    """load_documents on the composed data group."""
    return load_documents(data_cfg(*overrides))


def error(*overrides: str) -> str:
    """The one-line ConfigError message that loading raises."""
    with pytest.raises(ConfigError) as ei:
        load(*overrides)
    msg = str(ei.value)
    assert "\n" not in msg and "fix:" in msg, msg
    return msg


@pytest.mark.parametrize("choice, lang, dupes", [("wiki", "en-us", 0), ("wiki_fr", "fr-fr", 4),
                                                 ("wiki_es", "es-es", 13)])
def test_wiki_languages(choice, lang, dupes):
    cfg = data_cfg(f"data={choice}")
    assert cfg.name == choice and cfg.lang == lang and cfg.source == "wiki"
    docs, fp, report = load_documents(cfg)
    assert len(docs) > 5000 and [d.title for d in docs] == sorted(d.title for d in docs)
    assert fp == file_fingerprint(wiki_corpus_path(lang))  # unchanged cache key for existing wiki caches
    # fr/es list redirects (same title and extract under two keys): one copy kept, the other counted
    assert report["documents"] == len(docs) and report["skipped_duplicate_documents"] == dupes


def test_text_one_document_per_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("Second file. Two sentences.\n")
    (tmp_path / "sub" / "a.txt").write_text("\ufeffNested file.\n\nStill the same document.\n")
    (tmp_path / "notes.md").write_text("Not matched by the default glob.")
    docs, _, report = load("data=text", f"data.paths=[{tmp_path}]")
    assert [d.title for d in docs] == ["b.txt", "sub/a.txt"]  # relative to the common root, sorted
    assert docs[1].text == "Nested file.\n\nStill the same document."  # BOM dropped
    assert docs[1].sentences() == ["Nested file.", "Still the same document."]
    assert report["files_matched"] == report["files_read"] == 2 and report["documents"] == 2


def test_text_blank_line_documents(tmp_path):
    f = tmp_path / "bert.txt"  # create_pretraining_data input: one sentence per line, blank lines between docs
    f.write_bytes(b"First doc line one.\r\nFirst doc line two.\r\n\r\n \t\n\nSecond doc.\n\n\n")
    (tmp_path / "one.txt").write_text("Only doc.")
    docs, _, report = load("data=text", f"data.paths=[{tmp_path}]", "data.doc_boundary=blank_line")
    assert [(d.title, d.text) for d in docs] == [
        ("bert.txt#1", "First doc line one.\nFirst doc line two."), ("bert.txt#2", "Second doc."),
        ("one.txt#1", "Only doc.")]
    assert report["documents"] == 3 and report["skipped_empty_documents"] == 0


def test_paths_files_globs_dirs_deduplicated(tmp_path):
    for rel in ("x/1.txt", "x/2.txt", "y/3.txt", "y/4.md", "y/deep/5.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(f"Doc {rel}.")
    docs, _, report = load("data=text", f"data.paths=[{tmp_path}/x/*.txt,{tmp_path}/x/1.txt,{tmp_path}/x]")
    assert [d.title for d in docs] == ["1.txt", "2.txt"] and report["files_matched"] == 2
    docs, _, _ = load("data=text", f"data.paths=[{tmp_path}/y]", "data.glob=**/*.md")
    assert [d.title for d in docs] == ["4.md", "deep/5.md"]
    docs, _, _ = load("data=text", f"data.paths=[{tmp_path}/**/*.md,{tmp_path}/y/3.txt]")
    assert [d.title for d in docs] == ["3.txt", "4.md", "deep/5.md"]


def test_jsonl_fields(tmp_path):
    f = tmp_path / "c.jsonl"
    rows = [{"text": "Alpha one.", "id": "a", "label": "T1"}, {"text": "Beta two.", "id": 7},
            {"text": "   ", "id": "empty"}]
    f.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n\n" + json.dumps(rows[2]) + "\n")
    docs, _, report = load("data=jsonl", f"data.paths=[{f}]")
    assert [(d.title, d.topic, d.text) for d in docs] == [("c.jsonl#1", "Uncategorized", "Alpha one."),
                                                         ("c.jsonl#2", "Uncategorized", "Beta two.")]
    assert report["skipped_empty_documents"] == 1 and report["blank_lines"] == 1
    docs, _, _ = load("data=jsonl", f"data.paths=[{f}]", "data.title_field=id", "data.topic_field=label")
    assert [(d.title, d.topic) for d in docs] == [("a", "T1"), ("7", "Uncategorized")]
    g = tmp_path / "body.jsonl"
    g.write_text(json.dumps({"body": "Gamma three."}) + "\n")
    docs, _, _ = load("data=jsonl", f"data.paths=[{g}]", "data.text_field=body")
    assert docs[0].text == "Gamma three."


def test_fingerprint_tracks_files_and_options(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("Some text.")
    args = ("data=text", f"data.paths=[{tmp_path}]")
    fp = load(*args)[1]
    assert load(*args)[1] == fp
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # an edit that keeps the size
    fp2 = load(*args)[1]
    assert fp2 != fp
    f.write_text("Some text, longer.")
    assert load(*args)[1] not in (fp, fp2)
    assert load(*args, "data.doc_boundary=blank_line")[1] != load(*args)[1]
    (tmp_path / "b.txt").write_text("New file.")
    assert load(*args)[1] != load("data=text", f"data.paths=[{f}]")[1]


def test_missing_paths_and_empty_matches(tmp_path):
    assert f"{tmp_path}/nope.txt" in error("data=text", f"data.paths=[{tmp_path}/nope.txt]")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.md").write_text("Markdown.")
    msg = error("data=text", f"data.paths=[{tmp_path}/d]")
    assert f"{tmp_path}/d" in msg and "**/*.txt" in msg and "data.glob" in msg
    assert f"{tmp_path}/d/*.rst" in error("data=text", f"data.paths=[{tmp_path}/d/*.rst]")
    assert "data.paths" in error("data=text")
    assert "data.paths" in error(f"data.paths=[{tmp_path}]")  # data=wiki would silently ignore them


@pytest.mark.parametrize("override, key", [("data.source=csv", "data.source"), ("data.doc_boundary=line", "doc_boundary"),
                                           ("data.encoding_errors=ignore", "encoding_errors"),
                                           ("data.bad_lines=warn", "bad_lines")])
def test_unknown_choices(tmp_path, override, key):
    (tmp_path / "a.txt").write_text("Text.")
    source = "data=jsonl" if "bad_lines" in override else "data=text"
    with pytest.raises(ConfigError, match=key):
        load(source, f"data.paths=[{tmp_path}]", override)


def test_empty_files_and_documents_are_counted(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.txt").write_text("  \n\t\n")
    (tmp_path / "real.txt").write_text("Real text.")
    _, _, report = load("data=text", f"data.paths=[{tmp_path}]")
    assert report["skipped_empty_files"] == 2 and report["documents"] == 1 and report["files_read"] == 3
    (tmp_path / "real.txt").unlink()
    msg = error("data=text", f"data.paths=[{tmp_path}]")
    assert "data.paths" in msg and "skipped_empty_files=2" in msg


@pytest.mark.parametrize("mode", ["file", "blank_line", "jsonl"])
def test_non_utf8(tmp_path, mode):
    good = b"Good line.\n" if mode != "jsonl" else b'{"text": "Good line."}\n'
    bad = b"Caf\xe9 au lait.\n" if mode != "jsonl" else b'{"text": "Caf\xe9 au lait."}\n'
    (tmp_path / "ok.txt").write_bytes(good)
    (tmp_path / "latin1.txt").write_bytes(good + bad)
    args = ("data=jsonl", "data.glob=*.txt") if mode == "jsonl" else ("data=text", f"data.doc_boundary={mode}")
    args = (*args, f"data.paths=[{tmp_path}]")
    msg = error(*args)
    offset = len(good) + bad.index(b"\xe9")
    assert f"{tmp_path}/latin1.txt" in msg and f"byte {offset} (line 2)" in msg
    assert "data.encoding_errors=replace" in msg and "data.encoding_errors=skip" in msg
    docs, _, report = load(*args, "data.encoding_errors=replace")
    assert report["replaced_decode_errors"] == 1 and any("Caf\ufffd au lait." in d.text for d in docs)
    docs, _, report = load(*args, "data.encoding_errors=skip")
    assert report["skipped_undecodable_files"] == 1 and len(docs) == 1 and "Caf" not in docs[0].text


def test_jsonl_bad_lines(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text('{"text": "Fine."}\n{"text": "cut off\n[1, 2]\n{"body": "no text key"}\n{"text": 5}\n')
    msg = error("data=jsonl", f"data.paths=[{f}]")
    assert f"{f}:2" in msg and "not valid JSON" in msg and "data.bad_lines=skip" in msg
    f.write_text('{"text": "Fine."}\n{"body": "no text key"}\n')
    msg = error("data=jsonl", f"data.paths=[{f}]")
    assert f"{f}:2" in msg and "'text'" in msg and "data.text_field" in msg
    f.write_text('{"text": "Fine."}\n{"text": "cut off\n[1, 2]\n{"body": "no text key"}\n{"text": 5}\n')
    docs, _, report = load("data=jsonl", f"data.paths=[{f}]", "data.bad_lines=skip")
    assert len(docs) == 1 and report["bad_json_lines"] == 4
    assert f"{f}:1" in error("data=jsonl", f"data.paths=[{f}]", "data.title_field=id")


def test_corpus_too_small_to_split_names_paths(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.txt").write_text(f"Document number {i}.")
    cfg = data_cfg("data=text", f"data.paths=[{tmp_path}]")
    with pytest.raises(ConfigError) as ei:
        build_data(cfg, tokenizer_kind="wordpiece", vocab_size=100, lowercase=True, pairs=False)
    msg = str(ei.value)
    assert "\n" not in msg and f"data.paths=['{tmp_path}']" in msg and "doc_boundary=blank_line" in msg


@pytest.mark.slow
def test_bad_path_exits_2_with_one_line(tmp_path):
    r = cli("data=text", f"data.paths=[{tmp_path}/missing]", "logger.mode=disabled", run_dir=tmp_path / "run")
    out = r.stdout + r.stderr
    assert r.returncode == 2 and f"{tmp_path}/missing" in out and "Traceback" not in out


def test_huge_single_line_is_linear(tmp_path):
    rng = random.Random(0)
    block = " ".join(sentences(rng, 2000)) + " "
    line = (block * (50_000_000 // len(block) + 1))[:50_000_000]
    (tmp_path / "huge.txt").write_text(line)  # ~50 MB, no newline at all
    started = time.perf_counter()
    docs, _, report = load("data=text", f"data.paths=[{tmp_path}]", "data.doc_boundary=blank_line")
    loaded = time.perf_counter() - started
    n = len(docs[0].sentences())
    elapsed = time.perf_counter() - started
    print(f"50 MB single line: load {loaded:.2f}s, split into {n} sentences {elapsed - loaded:.2f}s")
    assert report["documents"] == 1 and report["bytes_read"] == 50_000_000 and n > 500_000
    assert elapsed < 90  # quadratic splitting took hours here; linear is ~10 s on 2 shared cores


@pytest.mark.parametrize("text", ["." * 3_000_000, "x" * 3_000_000 + ". Next.", "Dr. " * 500_000, "?\u201d " * 500_000])
def test_split_sentences_pathological_lines_stay_fast(text):
    started = time.perf_counter()
    split_sentences(text)
    assert time.perf_counter() - started < 15  # seconds; each was quadratic before (runs of marks, long words)
