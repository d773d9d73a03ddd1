"""logger.backends: W&B, TensorBoard and CSV receive the same keys as metrics.jsonl; W&B gets the FLOPs and tokens
step metrics and a flat config; a failing backend leaves the others and the run intact; a resumed run's
TensorBoard events and CSV rows follow its checkpoint.
The tests of this file that train or start a process: tests/integration/test_log_backends.py."""
from __future__ import annotations

import pytest

from runner.config.errors import ConfigError
from runner.build import validate
from tests.conftest import TINY, make_cfg


pytestmark = pytest.mark.slow


@pytest.mark.parametrize("value, message", [
    ("[wandb,mlflow]", "'mlflow' is not a backend"),
    ("[csv,csv]", "names one twice"),
])
def test_bad_backends_are_one_line_errors(value, message):
    with pytest.raises(ConfigError, match=message):
        validate(make_cfg(*TINY, f"logger.backends={value}"))


def test_logger_local_writes_tensorboard_and_csv_without_wandb():
    cfg = make_cfg("logger=local")
    assert list(cfg.logger.backends) == ["tensorboard", "csv"] and cfg.logger.mode == "disabled"
