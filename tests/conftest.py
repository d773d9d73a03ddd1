"""Shared fixtures: compose the real config and shrink it with overrides (lightning-hydra-template style); run the
command line in this process (cli) or as a real process (run_cli); one session-wide factory of finished runs
(finished_run), with copy_run for a test that changes one. tests/README.md describes the tiers."""
from __future__ import annotations

import collections
import contextlib
import copy
import fcntl
import gc
import hashlib
import importlib.util
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from unittest import mock

import pytest
from hydra import compose, initialize_config_dir

from runner.build import register

ROOT = Path(__file__).resolve().parents[1]
register()
# Python's default collector thresholds (700, 10, 10) made the cyclic GC a sixth of the suite's time (Hydra's
# compositions make many short-lived cycles): collect young objects every 10,000 allocations instead of 700. The same
# peak memory; only when cyclic garbage is freed changes, which no test checks. Processes a test starts keep the
# defaults.
gc.set_threshold(10_000, 20, 10)
WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ... under pytest -n N; None in a plain session
if WORKER is not None:  # N workers share the cores: one thread each (in every process a test starts too)
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

# A model and corpus small enough for 2 CPU cores; every test composes the real config, then shrinks it.
TINY = ["model.num_layers=1", "model.hidden_size=32", "model.num_heads=2", "model.intermediate_size=64",
        "model.vocab_size=1000", "data.max_docs=300", "data.seq_len=64", "trainer.batch_size=8",
        "trainer.eval_batches=2", "trainer.grad_accum=1", "logger.mode=disabled", "eval.downstream=false"]


# Files whose tests start long real processes (the bash GPU suite's smoke run, submitit sweeps, torchrun): collected
# first, so that `make test`'s xdist workers (--dist loadfile: a file stays on one worker) start them early and end
# together, not with one of them still running a minute-long test
FIRST = ("integration/test_gpu_suite.py", "integration/test_sweep.py", "integration/test_distributed.py")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        path = item.nodeid.split("::")[0]
        return next((i for i, f in enumerate(FIRST) if path.endswith(f)), len(FIRST))

    items.sort(key=rank)  # stable: every other order stays as collected


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory) -> Path:
    """One tokenizer/data cache for the whole session (each xdist worker its own), never the user's home cache."""
    path = tmp_path_factory.mktemp("bertlab-cache")
    os.environ["BERTLAB_CACHE"] = str(path)
    os.environ["WANDB_SILENT"] = "true"
    os.environ.pop("WANDB_API_KEY", None)
    return path


_composed: collections.OrderedDict[tuple[str, ...], object] = collections.OrderedDict()


def make_cfg(*overrides: str):
    """Compose conf/config.yaml with overrides, as `python -m runner` does. Each distinct list of overrides is composed
    once (Hydra takes ~0.1 s a composition, and the suite asks for the same ones thousands of times); every call gets
    its own deep copy to change."""
    key = tuple(overrides)
    if key not in _composed:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            _composed[key] = compose("config", overrides=list(overrides))
        if len(_composed) > 512:  # the oldest first: a module's tests ask for theirs close together
            _composed.popitem(last=False)
    _composed.move_to_end(key)
    return copy.deepcopy(_composed[key])


def run_cli(*args: str, run_dir: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m runner ARGS` as a new process in the repository, its output directory under run_dir. Only
    where the process boundary is the point (exit by a signal, a second process, the lock, torchrun, --help):
    otherwise cli() runs the same command in this process, without 2-3 s of imports."""
    extra = [f"hydra.run.dir={run_dir}"] if run_dir is not None else []
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "runner", *args, *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """What Python prints for a warning: onto the (captured) stderr of cli()."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextlib.contextmanager
def _as_a_process(columns: int = 200):
    """The state a `python -m ...` command would start with and end with, restored afterwards: the working directory,
    Python's default warning filters printing to stderr, the logging handlers Hydra replaces, torch's threads and
    grad mode, consoles `columns` wide (COLUMNS), no Hydra instance, and no run directory left locked by this
    process."""
    import torch
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from runner.config import console as consoles
    from runner.engine import lock

    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in ("hydra", "runner"))]
    saved_loggers = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    held = set(getattr(lock, "_held", {}))
    threads, grad, cwd = torch.get_num_threads(), torch.is_grad_enabled(), os.getcwd()
    widths = [(c, c._width) for c in (consoles.console, consoles.stdout_console)]
    try:
        os.chdir(ROOT)
        for c, _ in widths:
            c.width = columns  # as COLUMNS=200 gives run_cli's process
        with warnings.catch_warnings():
            warnings.resetwarnings()  # Python's defaults, not pytest's recording of warnings
            for action, category in (("ignore", DeprecationWarning), ("ignore", PendingDeprecationWarning),
                                     ("ignore", ImportWarning), ("ignore", ResourceWarning)):
                warnings.simplefilter(action, category)
            warnings.showwarning = _show_warning
            yield
    finally:
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None
        held_now = getattr(lock, "_held", {})
        for key in set(held_now) - held:  # as the process's exit would: the flock dropped, the record left as it is
            os.close(held_now.pop(key))
        for lg, handlers, level, propagate in saved_loggers:
            for h in lg.handlers:
                if h not in handlers and isinstance(h, logging.FileHandler):
                    h.close()
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate
        for c, width in widths:
            c._width = width
        torch.set_num_threads(threads)
        torch.set_grad_enabled(grad)
        os.chdir(cwd)


def cli(*args: str, run_dir: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m runner ARGS` in this process: the same Hydra app, command line, run directory, files and exit code
    as run_cli, its stdout and stderr captured, without starting Python again."""
    import runner.__main__ as entry

    argv = ["runner", *args, *([f"hydra.run.dir={run_dir}"] if run_dir is not None else [])]
    out, err = io.StringIO(), io.StringIO()
    code: int = 0
    # HYDRA_MAIN_MODULE: Hydra finds conf/ next to runner/__main__.py, as for `python -m runner` (not as a package)
    with _as_a_process(), mock.patch.object(sys, "argv", list(argv)), \
            mock.patch.dict(os.environ, {"HYDRA_MAIN_MODULE": "__main__"}), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        try:
            entry.start()
        except SystemExit as e:  # as the interpreter turns it into an exit status
            if isinstance(e.code, int) or e.code is None:
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def run_main(main, *args: str, columns: int = 200) -> subprocess.CompletedProcess:
    """A command's main(argv) in this process, as `python -m <its module> ARGS` would run it: the exit code (main's
    return value or SystemExit's), stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with _as_a_process(columns), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args]) or 0
        except SystemExit as e:
            if isinstance(e.code, int) or e.code is None:
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
    return subprocess.CompletedProcess([getattr(main, "__module__", "main"), *args], code, out.getvalue(),
                                       err.getvalue())


def copy_run(src: Path, dst: Path) -> Path:
    """A copy of a run directory for a test that changes it; files hard-linked to each other in src (last.pt and its
    step file) are hard links in the copy too."""
    src, dst = Path(src), Path(dst)
    shutil.copytree(src, dst, symlinks=True)
    first: dict[tuple[int, int], Path] = {}
    for p in sorted(src.rglob("*")):
        if p.is_file() and not p.is_symlink() and (st := p.stat()).st_nlink > 1:
            copy = dst / p.relative_to(src)
            if (st.st_dev, st.st_ino) in first:
                copy.unlink()
                os.link(first[(st.st_dev, st.st_ino)], copy)
            else:
                first[(st.st_dev, st.st_ino)] = copy
    return dst


class FinishedRuns:
    """finished_run(*overrides): the directory of `python -m runner *overrides` run to its end (through cli(), in
    this process), made once per session for equal overrides and shared by every test that asks for it (all xdist
    workers share one, made by whichever asks first). Read it; a test that changes it works on copy_run() of it.
    finished_run.result(*overrides) is how that command ended (returncode, stdout, stderr)."""

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _paths(self, overrides: tuple[str, ...]) -> tuple[Path, Path]:
        key = hashlib.sha1("\0".join(overrides).encode()).hexdigest()[:12]
        return self.root / key, self.root / f"{key}.json"

    def __call__(self, *overrides: str) -> Path:
        run_dir, record = self._paths(overrides)
        with open(self.root / f"{run_dir.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another worker making the same run: wait for it
            if not record.is_file():
                r = cli(*overrides, run_dir=run_dir)
                record.write_text(json.dumps({"args": r.args, "returncode": r.returncode, "stdout": r.stdout,
                                              "stderr": r.stderr}))
        return run_dir

    def result(self, *overrides: str) -> subprocess.CompletedProcess:
        self(*overrides)
        return subprocess.CompletedProcess(**json.loads(self._paths(overrides)[1].read_text()))


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> FinishedRuns:
    """The session's factory of finished runs (FinishedRuns)."""
    base = tmp_path_factory.getbasetemp()
    return FinishedRuns((base.parent if WORKER is not None else base) / "finished_runs")


# conftest's bert_teacher: a TINY masked-LM BERT with hf/ and its tokenizer, a teacher to distil from
TEACHER = [*TINY, "model=bert", "objective=mlm", "trainer.max_steps=30", "optimizer.lr=5e-3", "trainer.eval_every=30"]


@pytest.fixture(scope="session")
def bert_teacher(finished_run) -> Path:
    """A finished TINY model=bert masked-LM run (checkpoint, hf/ with its tokenizer): a teacher to distil from."""
    r = finished_run.result(*TEACHER)
    assert r.returncode == 0, r.stderr[-3000:]
    return finished_run(*TEACHER)


def load_benchmark(name: str):
    """benchmarks/<name>.py imported as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
