"""Nothing the runner loads executes code: checkpoints, crossover snapshots and cache entries whose unpickling would
run something are refused in one line before it runs; a checkpoint of the older format is converted once and resumes.
This file holds the tests that train or start a process; the others: tests/unit/test_safe_loading.py."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from runner.store import checkpoint
from runner.engine import legacy as convert
from runner.data import cache
from runner.config.errors import TrainingError
from tests.conftest import TINY, cli, copy_run
from tests.unit.test_safe_loading import RunsCode, TouchesFile


@pytest.fixture(scope="module")
def trained(finished_run) -> tuple[Path, list[str]]:
    """A TINY bert run stopped at step 2 of 4 (checkpoint, .hydra/config.yaml; the session's, shared: tests change
    copies of it), its data cache its own; the overrides that resume it."""
    overrides = [*TINY, "model=bert", "trainer.max_steps=4", "trainer.eval_every=100", "trainer.export_hf=false",
                 "probes.enabled=false", f"data.cache_dir={finished_run.root / 'safe_loading-cache'}"]
    r = finished_run.result(*overrides, "trainer.stop_after=2")
    assert r.returncode == 0, r.stderr[-3000:]
    return finished_run(*overrides, "trainer.stop_after=2"), overrides


def own_cache(overrides: list[str]) -> Path:
    """The run's own data cache (data.cache_dir)."""
    return Path(next(o for o in overrides if o.startswith("data.cache_dir=")).split("=", 1)[1])


def assert_one_line_error(r, *needles: str) -> str:
    """The command failed with one `error:` line holding every needle, and no traceback or Hydra hint."""
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-2000:]
    assert "Traceback" not in out and "HYDRA_FULL_ERROR" not in out, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out[-3000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def test_a_checkpoint_that_would_run_code_is_refused_on_resume_and_export(trained, tmp_path):
    run_dir, overrides = trained
    target = copy_run(run_dir, tmp_path / "run")
    sentinel = tmp_path / "pwned"
    last = checkpoint.checkpoint_path(target)
    last.unlink()  # the step files stay as they were: none of them may be used in its place
    torch.save({"step": 2, "module": {}, "x": RunsCode(sentinel)}, last)
    r = cli(*overrides, "trainer.resume=true", run_dir=target)
    assert_one_line_error(r, str(last), "posix.system", f"python -m runner.convert {target}")
    r = cli(f"export={target}", run_dir=tmp_path / "export_out")
    assert_one_line_error(r, str(last), "posix.system")
    assert not sentinel.exists() and not (target / "hf").exists()


def test_a_data_cache_entry_that_would_run_code_is_never_loaded_and_is_rebuilt(trained, tmp_path):
    run_dir, overrides = trained
    shared = tmp_path / "shared_cache"  # a cache directory someone else can write to
    own = [o for o in overrides if not o.startswith("data.cache_dir=")]
    shutil.copytree(own_cache(overrides), shared)
    sentinel = tmp_path / "pwned"
    offsets = sorted(shared.glob("tokenized/*/train/sent_offsets.npy"))
    assert offsets
    entry_dir = offsets[0].parents[1]

    def tamper() -> None:
        for f in offsets:  # an object array: its elements are pickles
            np.save(f, np.array([RunsCode(sentinel), 1], dtype=object), allow_pickle=True)

    tamper()  # the entry's manifest no longer matches: rebuilt (runner/data/cache.py), the file never read
    r = cli(*own, f"data.cache_dir={shared}", "trainer.max_steps=0", run_dir=tmp_path / "run")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert f"cache {entry_dir} is damaged (train/sent_offsets.npy has " in r.stderr and "rebuilding it" in r.stderr
    tamper()
    (entry_dir / ".manifest.json").unlink()  # as an entry from before manifests, or one whose manifest was forged
    r = cli(*own, f"data.cache_dir={shared}", "trainer.max_steps=0", run_dir=tmp_path / "run2")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert f"cache {entry_dir} is damaged (" in r.stderr and "Python objects in dtype" in r.stderr  # numpy refused
    for f in offsets:
        assert np.load(f, allow_pickle=False).dtype == np.int64  # rebuilt: integers again
    entry = tmp_path / "entry.pt"  # runner.data.cache.cached's files: torch.load with weights_only=True
    torch.save(TouchesFile(sentinel), entry)
    with pytest.raises(TrainingError, match="entry.pt was not loaded: .*delete it to rebuild"):
        cache.cached(entry, lambda: pytest.fail("rebuilt over a file it did not read"))
    assert not sentinel.exists()


def test_an_old_format_checkpoint_fails_in_one_line_then_resumes_once_converted(trained, tmp_path):
    """Numpy values (an older evaluation's float64 metrics, a numpy RNG state) are what weights_only refuses in a
    checkpoint otherwise like today's: the resume names the converter, which rewrites it without running the file."""
    run_dir, overrides = trained
    target = copy_run(run_dir, tmp_path / "run")
    step = checkpoint.step_files(target)[0]
    state = torch.load(step, weights_only=True)
    state["elapsed"] = np.float64(state["elapsed"])
    state["first_val"] = {"mlm_loss": np.float64(6.9), "mlm_accuracy": np.float32(0.0)}
    state["rng"]["cpu"] = state["rng"]["cpu"].numpy()
    torch.save(state, step)  # as the old code wrote it: plain torch.save, last.pt still its hard link
    r = cli(*overrides, "trainer.resume=true", run_dir=target)
    assert_one_line_error(r, str(checkpoint.checkpoint_path(target)), "numpy",
                          f"python -m runner.convert {target}")
    lines = convert.convert(target)
    assert lines[0].startswith(f"converted {step} (and last.pt, the same file)") and "numpy.ndarray" in lines[0]
    assert convert.convert(target) == [f"already safe: {step}"]  # once is enough
    assert os.path.samefile(checkpoint.checkpoint_path(target), step)
    converted = torch.load(step, weights_only=True)
    assert converted["first_val"] == {"mlm_loss": 6.9, "mlm_accuracy": 0.0}
    assert torch.equal(converted["rng"]["cpu"], torch.from_numpy(state["rng"]["cpu"]))
    exporting = [o.replace("export_hf=false", "export_hf=true") for o in overrides]
    r = cli(*exporting, "trainer.resume=true", run_dir=target)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    final = checkpoint.load(target)
    assert final["step"] == 4 and final["first_val"] == converted["first_val"]  # continued from the converted one
    hf = {p.name for p in (target / "hf").iterdir()}
    assert "model.safetensors" in hf and not {n for n in hf if n.endswith((".bin", ".pt", ".pkl"))}, hf
