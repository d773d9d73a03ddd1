"""test_every_config_file_composes_and_builds (tests/unit/test_configs.py) for the compositions whose objective is
distill: they distil from a finished TINY model=bert run, the session's `bert_teacher`."""
from __future__ import annotations

import pytest

from tests.unit import test_configs as unit
from tests.unit.test_configs import cases, composes_and_builds, needs_teacher

stand_ins = unit.stand_ins  # the unit tier's fixture, shared


@pytest.mark.parametrize("overrides", [c for c in cases() if needs_teacher(c)])
def test_every_config_file_composes_and_builds(overrides, stand_ins, monkeypatch, bert_teacher):
    composes_and_builds(overrides, stand_ins, monkeypatch, bert_teacher)
