"""Shared fixtures: compose the real config and shrink it with overrides (lightning-hydra-template style)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from runner.build import register

ROOT = Path(__file__).resolve().parents[1]
register()

# A model and corpus small enough for 2 CPU cores; every test composes the real config, then shrinks it.
TINY = ["model.num_layers=1", "model.hidden_size=32", "model.num_heads=2", "model.intermediate_size=64",
        "model.vocab_size=1000", "data.max_docs=300", "data.seq_len=64", "trainer.batch_size=8",
        "trainer.eval_batches=2", "trainer.grad_accum=1", "logger.mode=disabled", "eval.downstream=false"]


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory) -> Path:
    """One tokenizer/data cache for the whole session, never the user's home cache."""
    path = tmp_path_factory.mktemp("bertlab-cache")
    os.environ["BERTLAB_CACHE"] = str(path)
    os.environ["WANDB_SILENT"] = "true"
    os.environ.pop("WANDB_API_KEY", None)
    return path


def make_cfg(*overrides: str):
    """Compose conf/config.yaml with overrides, as `python -m runner` does."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def run_cli(*args: str, run_dir: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m runner ARGS` in the repository, its output directory under run_dir."""
    extra = [f"hydra.run.dir={run_dir}"] if run_dir is not None else []
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "runner", *args, *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def load_benchmark(name: str):
    """benchmarks/<name>.py imported as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def bert_teacher(tmp_path_factory) -> Path:
    """A finished TINY model=bert masked-LM run (checkpoint, hf/ with its tokenizer): a teacher to distil from."""
    from runner.build import build
    from runner.run import run

    path = tmp_path_factory.mktemp("teacher")
    cfg = make_cfg(*TINY, "model=bert", "objective=mlm", "trainer.max_steps=30", "optimizer.lr=5e-3",
                   "trainer.eval_every=30")
    run(cfg, build(cfg), path)
    (path / ".hydra").mkdir(exist_ok=True)
    from omegaconf import OmegaConf

    OmegaConf.save(cfg, path / ".hydra" / "config.yaml")  # as Hydra writes it for a command-line run
    return path
