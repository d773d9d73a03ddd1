"""End to end through `python -m runner`: W&B offline logging, transformers export and re-import.
The tests of this file that train or start a process: tests/integration/test_e2e.py."""
from __future__ import annotations

import pytest

from runner.reporting.logger import resolve_mode
from tests.conftest import cli


pytestmark = pytest.mark.slow


transformers = pytest.importorskip("transformers")


def test_online_without_credentials_falls_back_to_offline(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    (tmp_path / "netrc").write_text("")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert resolve_mode("online") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode("online") == "online"


def test_export_of_a_non_run_directory_fails_cleanly(tmp_path):
    r = cli(f"export={tmp_path}", run_dir=tmp_path / "job")
    assert r.returncode == 2 and "not a run directory" in r.stderr and "Traceback" not in r.stderr
