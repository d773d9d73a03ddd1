"""On-disk cache helpers: crash-safe writes and content keys."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any, TypeVar

import torch

ENV_VAR = "BERTLAB_CACHE"

T = TypeVar("T")


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


@contextlib.contextmanager
def file_lock(path: pathlib.Path | str) -> Iterator[None]:
    """Hold an exclusive fcntl.flock on `path` (created if missing) for the duration of the block."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The lock file is never deleted: unlinking it while another process waits on it would let a third
    # process lock a new inode, and two builders would run at once.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel if this process dies
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _fsync_path(path: pathlib.Path) -> None:
    """fsync a file or directory by path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cached_dir(path: pathlib.Path | str, build: Callable[[pathlib.Path], None],
               load: Callable[[pathlib.Path], T]) -> T:
    """Load directory `path` if present, else build it once across processes and load it.

    `build(tmp)` fills an empty temporary directory; it is renamed to `path` only once complete, so the
    directory existing means it is complete. An exclusive lock on `<path>.lock` makes a second process wait for
    the first builder and then read its result instead of building again."""
    path = pathlib.Path(path)
    if not path.is_dir():  # fast path without the lock: the rename makes existence mean complete
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path.with_name(path.name + ".lock")):
            if not path.is_dir():  # re-check: another process may have built it while we waited
                # Temp dirs for this name left by a killed builder: nobody else can be writing them while
                # we hold the lock.
                for stale in path.parent.glob(f".{path.name}.*.tmp"):
                    shutil.rmtree(stale, ignore_errors=True)
                tmp = pathlib.Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
                try:
                    build(tmp)
                    for f in tmp.iterdir():  # data on disk before the rename makes it visible
                        _fsync_path(f)
                    _fsync_path(tmp)
                    os.replace(tmp, path)
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
                _fsync_path(path.parent)  # persist the rename itself
    return load(path)


def key(*parts: Any) -> str:
    """A short (12 hex chars) stable sha1 of repr(parts), for cache file names."""
    return hashlib.sha1(repr(parts).encode("utf-8")).hexdigest()[:12]
