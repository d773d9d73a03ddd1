"""The command line: composition, typed schemas, one-line errors for bad input.
This file holds the tests that train or start a process; the others: tests/unit/test_cli.py."""
from __future__ import annotations

from tests.conftest import run_cli


def test_help_lists_groups():
    r = run_cli("--help")
    assert r.returncode == 0
    for group in ("model:", "objective:", "data:", "optimizer:", "trainer:", "logger:"):
        assert group in r.stdout
    assert "bert_base" in r.stdout and "trainer.max_steps" in r.stdout
