"""Nothing the runner loads executes code: checkpoints, crossover snapshots and cache entries whose unpickling would
run something are refused in one line before it runs; a checkpoint of the older format is converted once and resumes.
The tests of this file that train or start a process: tests/integration/test_safe_loading.py."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from runner.store import checkpoint
from runner.engine import legacy as convert
from runner.config.errors import TrainingError
from tests.conftest import TINY, make_cfg


class RunsCode:
    """Unpickling this runs a shell command that creates `sentinel`: what a crafted checkpoint does."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return os.system, (f"touch {self.sentinel}",)


class TouchesFile:
    """Unpickling this creates `sentinel` through a method, not a shell (another kind of crafted pickle)."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return Path.touch, (Path(self.sentinel),)


def test_an_unsafe_checkpoint_is_not_skipped_for_an_older_one_and_the_old_pickle_format_is_refused_too(tmp_path):
    sentinel = tmp_path / "pwned"
    checkpoint.save(tmp_path, {"step": 1, "w": torch.ones(3)}, keep=3)
    checkpoint.save(tmp_path, {"step": 2, "w": torch.ones(3)}, keep=3)
    newest = checkpoint.step_files(tmp_path)[0]  # last.pt is the same file
    torch.save({"step": 2, "x": TouchesFile(sentinel)}, newest, _use_new_zipfile_serialization=False)  # rewritten
    with pytest.raises(TrainingError, match=r"last.pt was not loaded: it names \S*getattr"):
        checkpoint.load(tmp_path)
    assert not sentinel.exists()
    newest.write_bytes(b"\0garbage" * 100)  # damage, not foreign content: the previous checkpoint is used
    assert checkpoint.load(tmp_path)["step"] == 1


def test_a_crossover_snapshot_that_would_run_code_is_refused(tmp_path):
    from runner.evaluation.crossover import evaluate_snapshots

    sentinel = tmp_path / "pwned"
    (tmp_path / "snapshots").mkdir()
    torch.save({"module": {}, "step": 1, "flops": 1e9, "tokens": 8, "thresholds": [1e9], "x": RunsCode(sentinel)},
               tmp_path / "snapshots" / "flops-1e+09.pt")
    built = type("Built", (), {"module": torch.nn.Module()})()
    built.module.encoder = built.module.objective = torch.nn.Identity()
    with pytest.raises(TrainingError, match=rf"flops-1e\+09.pt was not loaded: .*python -m runner.convert {tmp_path}`"):
        evaluate_snapshots(make_cfg(*TINY), built, tmp_path, None, torch.device("cpu"), {})
    assert not sentinel.exists()


def test_the_converter_runs_nothing_unless_trusted_and_never_writes_what_would_not_load(tmp_path):
    sentinel = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"step": 1, "x": RunsCode(sentinel)}, evil)
    with pytest.raises(TrainingError, match="posix.system.*not converted.*--trust"):
        convert.convert(evil)
    assert not sentinel.exists() and evil.read_bytes()  # left as it was
    assert convert.main([str(evil)]) == 2
    mine = tmp_path / "mine.pt"  # a file of one's own with what an OmegaConf-era script stored: needs --trust
    torch.save({"config": OmegaConf.create({"lr": 1e-3, "layers": [1, 2]}), "out": Path("/x"), "n": np.int64(3)}, mine)
    with pytest.raises(TrainingError, match="omegaconf"):
        convert.convert(mine)
    assert convert.convert(mine, trust=True)[0].startswith(f"converted {mine}")
    assert torch.load(mine, weights_only=True) == {"config": {"lr": 1e-3, "layers": [1, 2]}, "out": "/x", "n": 3}
    odd = tmp_path / "odd.pt"
    torch.save({"step": 1, "gen": np.random.default_rng(0)}, odd)
    with pytest.raises(TrainingError, match=r"state.gen holds a numpy.random.*Generator.*nothing was rewritten"):
        convert.convert(odd, trust=True)


def test_save_refuses_state_that_would_not_load_safely_and_keeps_the_previous_file(tmp_path):
    checkpoint.save(tmp_path, {"step": 1})
    with pytest.raises(TypeError, match=r"not saving .*step-00000002.pt: it would hold numpy"):
        checkpoint.save(tmp_path, {"step": 2, "loss": np.float64(1.0)})
    assert checkpoint.load(tmp_path) == {"step": 1}
    assert not list((tmp_path / "checkpoints").glob(".*")), "no temporary file left"


def test_an_init_from_bin_that_would_run_code_is_a_one_line_config_error(tmp_path):
    """model.init_from=<dir> with a pytorch_model.bin (a pickle) holding more than tensors: refused, nothing runs."""
    from runner.config.errors import ConfigError
    from runner.hf.mapping import _read_weights

    sentinel = tmp_path / "ran"
    torch.save({"w": torch.zeros(2), "x": TouchesFile(sentinel)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ConfigError, match="pytorch_model.bin was not loaded") as e:
        _read_weights(tmp_path)
    assert "\n" not in str(e.value) and not sentinel.exists()
