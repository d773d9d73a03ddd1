"""On-disk cache helpers: crash-safe writes and content keys."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

import torch

ENV_VAR = "BERTLAB_CACHE"


@contextlib.contextmanager
def _atomic_file(path: pathlib.Path) -> Iterator[IO[bytes]]:
    """Yield a temp file next to `path`; on success fsync and rename it over `path`, else delete it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same directory so os.replace is a rename within one filesystem, hence atomic.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # BaseException too: a Ctrl-C mid-write must not leave temp litter behind.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(data: bytes, path: pathlib.Path | str) -> None:
    """Write bytes to `path` so readers see either the old file or the complete new one."""
    with _atomic_file(pathlib.Path(path)) as f:
        f.write(data)


def atomic_save(obj: Any, path: pathlib.Path | str) -> None:
    """torch.save `obj` to `path` atomically (temp file, fsync, os.replace); makes parent dirs."""
    with _atomic_file(pathlib.Path(path)) as f:
        torch.save(obj, f)


def cache_root(cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """The cache directory: `cache_dir`, else $BERTLAB_CACHE, else ~/.cache/bertlab."""
    if cache_dir:
        return pathlib.Path(cache_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path("~/.cache/bertlab").expanduser()


def cached(path: pathlib.Path, build: Callable[[], Any]) -> Any:
    """Load `path` if it exists, else build, save atomically, and return the object."""
    path = pathlib.Path(path)
    if path.exists():
        try:
            # weights_only=False: caches hold our own dataclasses, written by this code only.
            return torch.load(path, weights_only=False)
        except Exception as e:
            first = (str(e).splitlines() or [""])[0]  # torch's unpickling errors span lines
            raise RuntimeError(f"cache file {path} is unreadable ({type(e).__name__}: {first}); "
                               f"delete it to rebuild") from e
    obj = build()
    atomic_save(obj, path)
    return obj


def key(*parts: Any) -> str:
    """A short (12 hex chars) stable sha1 of repr(parts), for cache file names."""
    return hashlib.sha1(repr(parts).encode("utf-8")).hexdigest()[:12]
