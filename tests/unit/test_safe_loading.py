"""Nothing the runner loads executes code: checkpoints, crossover snapshots and cache entries whose unpickling would
run something are refused in one line before it runs; a checkpoint of the older format is converted once and resumes."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from runner.store import checkpoint
from runner.engine import legacy as convert
from runner.build import build
from runner.data import cache
from runner.config.errors import TrainingError
from runner.run import run
from tests.conftest import TINY, make_cfg, run_cli


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


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, list[str]]:
    """A TINY bert run stopped at step 2 of 4 (checkpoint, .hydra/config.yaml), its data cache its own; the
    overrides that resume it."""
    root = tmp_path_factory.mktemp("safe")
    overrides = [*TINY, "model=bert", "trainer.max_steps=4", "trainer.eval_every=100", "trainer.export_hf=false",
                 "probes.enabled=false", f"data.cache_dir={root / 'cache'}"]
    cfg = make_cfg(*overrides, "trainer.stop_after=2")
    run(cfg, build(cfg), root / "run")
    (root / "run" / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(cfg, root / "run" / ".hydra" / "config.yaml")  # as Hydra writes it: `export=` reads it
    return root / "run", overrides


def copy_run(src: Path, dst: Path) -> Path:
    """A copy of a run directory whose last.pt stays a hard link to its newest step file."""
    shutil.copytree(src, dst)
    last = checkpoint.checkpoint_path(dst)
    last.unlink()
    os.link(checkpoint.step_files(dst)[0], last)
    return dst


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
    r = run_cli(*overrides, "trainer.resume=true", run_dir=target)
    assert_one_line_error(r, str(last), "posix.system", f"python -m runner.convert {target}")
    r = run_cli(f"export={target}", run_dir=tmp_path / "export_out")
    assert_one_line_error(r, str(last), "posix.system")
    assert not sentinel.exists() and not (target / "hf").exists()


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


def test_a_data_cache_entry_that_would_run_code_is_refused_in_one_line(trained, tmp_path):
    run_dir, overrides = trained
    shared = tmp_path / "shared_cache"  # a cache directory someone else can write to
    own = [o for o in overrides if not o.startswith("data.cache_dir=")]
    shutil.copytree(run_dir.parent / "cache", shared)
    sentinel = tmp_path / "pwned"
    offsets = sorted(shared.glob("tokenized/*/train/sent_offsets.npy"))
    assert offsets
    for f in offsets:  # an object array: its elements are pickles
        np.save(f, np.array([RunsCode(sentinel), 1], dtype=object), allow_pickle=True)
    r = run_cli(*own, f"data.cache_dir={shared}", "trainer.max_steps=0", run_dir=tmp_path / "run")
    assert_one_line_error(r, f"cache {offsets[0].parents[1]} is unreadable", "Python objects in dtype",
                          f"delete {offsets[0].parents[1]} to rebuild it")
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
    r = run_cli(*overrides, "trainer.resume=true", run_dir=target)
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
    r = run_cli(*exporting, "trainer.resume=true", run_dir=target)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    final = checkpoint.load(target)
    assert final["step"] == 4 and final["first_val"] == converted["first_val"]  # continued from the converted one
    hf = {p.name for p in (target / "hf").iterdir()}
    assert "model.safetensors" in hf and not {n for n in hf if n.endswith((".bin", ".pt", ".pkl"))}, hf


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
