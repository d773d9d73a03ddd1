"""`python -m runner.convert RUN_DIR|FILE ... [--trust]`: rewrite, once, the checkpoints and crossover snapshots that
bertlab now refuses to load (runner/store/checkpoint.py loads with torch.load(weights_only=True): tensors and plain values).

Each refused file is loaded, its numpy arrays stored as tensors, numpy scalars as Python numbers, OmegaConf containers
as dicts and lists and paths as strings, and written back atomically in its place (a hard-linked last.pt follows its
step file). A file that already loads safely is left as it is. No backup is kept: the new file holds the same values,
and the old one is exactly what should no longer lie in a run directory.

Without --trust nothing in a file runs here either: a file is loaded with weights_only=True plus numpy's array,
scalar and dtype types (torch's allow-list mechanism), the only other types an older checkpoint could hold; a file
that names anything else is refused. --trust loads it with weights_only=False, which runs whatever the file contains:
only for a file you wrote yourself."""
from __future__ import annotations

import argparse
import collections
import contextlib
import os
import pathlib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from runner.engine.snapshots import saved_snapshots
from runner.store import checkpoint
from runner.data.cache import UnsafePickle, atomic_save, first_line, load_safely, unsafe_globals
from runner.config.errors import TrainingError

PLAIN = (torch.Tensor, torch.dtype, torch.device, torch.Size, str, bytes, int, float, bool, complex, type(None))


def old_format_globals() -> list[Any]:
    """numpy's array, scalar and dtype types for torch's weights_only allow-list, under the names numpy 2 and numpy 1
    pickle them with (numpy._core / numpy.core): reconstructing those runs no code from the file."""
    import numpy as np

    multiarray = (np._core if hasattr(np, "_core") else np.core).multiarray
    found: list[Any] = [np.ndarray, np.dtype, *(getattr(np.dtypes, n) for n in np.dtypes.__all__)]
    for name in ("_reconstruct", "scalar"):
        fn = getattr(multiarray, name)
        found += [(fn, f"numpy._core.multiarray.{name}"), (fn, f"numpy.core.multiarray.{name}")]
    return found


def run_files(target: Path) -> list[list[Path]]:
    """The torch files of a run directory (checkpoints, crossover snapshots) or the one file given, grouped by inode
    so that last.pt and the step file it links are converted once and stay one file."""
    target = Path(target)
    if target.is_file():
        return [[target]]
    if not target.is_dir():
        raise TrainingError(f"{target} is neither a run directory nor a checkpoint file")
    files = [*checkpoint.step_files(target), checkpoint.checkpoint_path(target), *saved_snapshots(target)]
    groups: dict[tuple[int, int], list[Path]] = {}
    for f in files:
        if f.is_file():
            st = f.stat()
            groups.setdefault((st.st_dev, st.st_ino), []).append(f)
    if not groups:
        raise TrainingError(f"{target} holds no checkpoints/*.pt or snapshots/flops-*.pt to convert")
    return list(groups.values())


def load_old(path: Path, trust: bool, target: Path) -> tuple[Any, list[str]]:
    """A refused file's content and the globals that had it refused; numpy's types only, unless trust."""
    names = unsafe_globals(path)
    if trust:
        return torch.load(path, map_location="cpu", weights_only=False), names
    fix = (f"no checkpoint bertlab wrote held those, so it was not converted; if you wrote it and trust it, "
           f"`python -m runner.convert {target} --trust` loads it with weights_only=False, which runs whatever it "
           "contains; otherwise delete it")
    with torch.serialization.safe_globals(old_format_globals()):
        return load_safely(path, fix=fix), names


def plain(value: Any, where: str = "state") -> Any:
    """`value` with what weights_only=True refuses replaced by equal plain values: numpy arrays as tensors, numpy
    scalars as Python numbers, OmegaConf containers as dicts and lists, paths as strings. Anything else is a
    TrainingError naming where it sits: a value with no plain form is not guessed at."""
    import numpy as np
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, np.ndarray):
        return _array(value, where)
    if isinstance(value, np.generic):  # before PLAIN: np.float64 and np.str_ are float and str subclasses
        return value.item()
    if isinstance(value, PLAIN):
        return value
    if isinstance(value, (DictConfig, ListConfig)):
        return plain(OmegaConf.to_container(value), where)
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if isinstance(value, Mapping):
        kind = collections.OrderedDict if isinstance(value, collections.OrderedDict) else dict  # both allowed
        return kind((plain(k, f"{where} key"), plain(v, f"{where}.{k}")) for k, v in value.items())
    if isinstance(value, (list, tuple)):  # a namedtuple becomes a tuple: its class would be refused
        items = [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise TrainingError(f"{where} holds a {type(value).__module__}.{type(value).__qualname__}, which has no plain "
                        "form to convert to; nothing was rewritten")


def _array(value: Any, where: str) -> Any:
    """A numpy array as a tensor of its dtype, or as (nested) plain lists where torch has no such dtype."""
    if value.dtype.kind in "biufc":
        with contextlib.suppress(TypeError):  # a dtype torch lacks: fall through to lists
            return torch.from_numpy(value.copy())  # a writable, contiguous copy: from_numpy shares memory
    return plain(value.tolist(), where)


def convert_group(paths: list[Path], trust: bool, target: Path) -> str:
    """Convert one file (and re-link its hard links); a line saying what was done."""
    path = paths[0]
    try:
        load_safely(path)
        return f"already safe: {path}"
    except UnsafePickle:
        pass
    except Exception as e:  # noqa: BLE001 - damage, not the format: conversion cannot help
        raise TrainingError(f"{path} is unreadable ({type(e).__name__}: {first_line(e)}); not converted") from e
    state, names = load_old(path, trust, target)
    try:
        atomic_save(plain(state), path)  # refuses anything weights_only=True could not read back
    except TypeError as e:
        raise TrainingError(f"{e}; {path} was left as it was") from e
    for other in paths[1:]:
        tmp = other.with_name(f".{other.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.link(path, tmp)
        os.replace(tmp, other)
    also = f" (and {', '.join(p.name for p in paths[1:])}, the same file)" if paths[1:] else ""
    held = f"; it held {', '.join(names)}" if names else ""
    return f"converted {path}{also} to tensors and plain values{held}; no backup kept"


def convert(target: Path, trust: bool = False) -> list[str]:
    """Convert every refused checkpoint and snapshot of a run directory (or one file); a line per file."""
    return [convert_group(group, trust, Path(target)) for group in run_files(Path(target))]


def main(argv: list[str] | None = None) -> int:
    """Command line: convert each run directory or file given; exit 2 with one line on the first failure."""
    parser = argparse.ArgumentParser(prog="python -m runner.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="+", type=Path, help="run directories (outputs/runs/...) or .pt files")
    parser.add_argument("--trust", action="store_true",
                        help="load with weights_only=False (runs whatever the file contains): only for your own files")
    args = parser.parse_args(argv)
    try:
        for target in args.targets:
            for line in convert(target, args.trust):
                print(line)
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
