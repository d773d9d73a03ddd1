"""test_every_config_file_composes_and_builds (tests/unit/test_configs.py) for the compositions whose objective is
distill: they distil from a finished TINY model=bert run, the session's `bert_teacher`."""
from __future__ import annotations

import pytest

from tests.unit import config_cases
from tests.unit.config_cases import cases, composes_and_builds, needs_teacher

stand_ins = config_cases.stand_ins  # a fixture


@pytest.mark.parametrize("overrides", [c for c in cases() if needs_teacher(c)])
def test_every_config_file_composes_and_builds(overrides, stand_ins, monkeypatch, bert_teacher):
    composes_and_builds(overrides, stand_ins, monkeypatch, bert_teacher)
