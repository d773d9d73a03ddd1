"""Tests for runner.data.corpus: the bundled wiki corpus, sentence splitting, article splits.
This file holds the tests that train or start a process; the others: tests/unit/test_corpus.py."""
from __future__ import annotations

import subprocess
import sys


def test_wiki_corpus_path_does_not_import_package():
    # A fresh interpreter: this test process may have imported anything by now.
    code = ("import sys; from runner.data.corpus import load_wiki; load_wiki(); "
            "assert not any(m.startswith('ovos') for m in sys.modules), 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
