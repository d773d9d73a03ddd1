"""benchmarks/trainer_modes.py on a tiny config: every requested mode measured through the real Trainer, the
precision each ran in, the ratio against fp32, and the validation loss of the same model. Never asserts wall time.
The tests of this file that train or start a process: tests/integration/test_trainer_modes.py."""
from __future__ import annotations

import pytest

from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def modes():
    return load_benchmark("trainer_modes")


def test_unknown_mode_is_a_one_line_error(modes, capsys):
    with pytest.raises(SystemExit) as e:
        modes.main(["--modes", "fp8"])
    assert e.value.code == 2
    assert "--modes: unknown fp8" in capsys.readouterr().err
