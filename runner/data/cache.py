"""On-disk cache helpers: crash-safe writes, content keys, and loading that runs no code from a file.

Every file this runner reads back is data only: torch files load with torch.load(weights_only=True) (tensors and plain
values; a file naming any other function or class is refused before anything in it runs), and atomic_save refuses to
write what that load would refuse; arrays load with numpy's allow_pickle=False; the rest is JSON."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import pathlib
import pickle
import re
import shutil
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Any, TypeVar

import torch

from runner.config.errors import ConfigError, TrainingError

ENV_VAR = "BERTLAB_CACHE"

T = TypeVar("T")


class WriteFailed(TrainingError):
    """A file that could not be written (a full disk, a quota, a read-only directory): one line naming it, what it
    needed and the free space; nothing partial is left under its name, and the file it would have replaced is intact.
    `path`: the file; the sites that know how to carry on add it (runner/store/checkpoint.py: how to resume)."""

    def __init__(self, path: pathlib.Path, error: BaseException, needed: int | None, then: str = ""):
        self.path, self.needed = pathlib.Path(path), needed
        where = next((p for p in (self.path, *self.path.parents) if p.exists()), pathlib.Path("/"))
        free = shutil.disk_usage(where).free
        full = getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or isinstance(error, RuntimeError)
        why = "no space left on the device" if full else first_line(error)
        need = f"it needed {size_text(needed)}, " if needed else ""
        self.error = error
        then = f"; {then}" if then else ""
        super().__init__(f"could not write {self.path} ({why}): {need}{size_text(free)} free there; nothing partial "
                         f"was left{then}")


    def saying(self, what: str) -> WriteFailed:
        """The same failure, saying what to do next (how to resume, how to export again)."""
        return WriteFailed(self.path, self.error, self.needed, what)


def size_text(n: int) -> str:
    """Bytes for a person: 1.2 MB, 3.4 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def write_error(e: BaseException) -> bool:
    """Whether an exception is a failed write: an OSError, or torch.save's RuntimeError when its zip writer's file
    stops taking bytes ("unexpected pos ...", "PytorchStreamWriter failed ...")."""
    return isinstance(e, OSError) or (isinstance(e, RuntimeError) and
                                      any(s in str(e) for s in ("unexpected pos", "PytorchStreamWriter", "file write")))


def tensor_bytes(obj: Any) -> int:
    """The bytes of the tensors in a nest of dicts, lists and tuples: what torch.save of it needs, about."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


@contextlib.contextmanager
def _atomic_file(path: pathlib.Path, needed: int | None = None) -> Iterator[IO[bytes]]:
    """Yield a temp file next to `path`; on success fsync and rename it over `path`, else delete it. A failed write
    (a full disk) is a WriteFailed naming `path` and the `needed` bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same directory so os.replace is a rename within one filesystem, hence atomic.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w+b") as f:  # readable too: atomic_save checks what it wrote before the rename
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        # BaseException too: a Ctrl-C mid-write must not leave temp litter behind.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if write_error(e):
            raise WriteFailed(path, e, needed) from e
        raise


def atomic_write_bytes(data: bytes, path: pathlib.Path | str) -> None:
    """Write bytes to `path` so readers see either the old file or the complete new one."""
    with _atomic_file(pathlib.Path(path), len(data)) as f:
        f.write(data)


@contextlib.contextmanager
def appending(path: pathlib.Path | str, needed: int | None = None, newline: str | None = None) -> Iterator[IO[str]]:
    """Open a text file to append to it; a failed write (a full disk) cuts the file back to what it held before
    (no half-written record) and is a WriteFailed."""
    path = pathlib.Path(path)
    before = path.stat().st_size if path.exists() else None
    try:
        with path.open("a", newline=newline) as f:
            yield f
    except OSError as e:
        with contextlib.suppress(OSError):
            if before is None:
                path.unlink()
            else:
                os.truncate(path, before)
        raise WriteFailed(path, e, needed) from e


def atomic_save(obj: Any, path: pathlib.Path | str) -> None:
    """torch.save `obj` to `path` atomically (temp file, fsync, os.replace); makes parent dirs. An object that
    load_safely could not read back (a numpy array, an OmegaConf container, any class) is a TypeError naming what it
    holds, and nothing is written: a file that saves is a file that loads. A failed write: WriteFailed."""
    with _atomic_file(pathlib.Path(path), tensor_bytes(obj)) as f:
        torch.save(obj, f)
        f.flush()
        f.seek(0)
        # Read statically from the pickle just written (nothing is unpickled), against torch's own allow-list.
        if unsafe := sorted(torch.serialization.get_unsafe_globals_in_checkpoint(f)):
            raise TypeError(f"not saving {path}: it would hold {', '.join(unsafe)}, which "
                            "torch.load(weights_only=True) refuses; store tensors and plain values (numpy -> "
                            "torch.from_numpy or .item(), OmegaConf -> OmegaConf.to_container)")


class UnsafePickle(TrainingError):
    """A torch file that load_safely refused: unpickling it would call functions or classes outside torch's
    weights_only allow-list, which can run any code."""

    def __init__(self, path: pathlib.Path, names: list[str], fix: str):
        self.path, self.names = path, names
        named = ", ".join(names) or "functions or classes"
        super().__init__(f"{path} was not loaded: it names {named} outside torch's weights_only allow-list "
                         "(unpickling such a file can run any code; bertlab loads only tensors and plain values); "
                         f"{fix}")


def load_safely(path: pathlib.Path | str, fix: str = "delete it") -> Any:
    """torch.load(path) with weights_only=True onto the CPU. A file naming other globals raises UnsafePickle (one
    line, ending with `fix`) before any of them runs; a corrupt one raises as torch.load does."""
    path = pathlib.Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        names = unsafe_globals(path) or refused_globals(e)
        if names or "unsupported global" in str(e).lower():
            raise UnsafePickle(path, names, fix) from e
        # weights_only's unpickler reports garbage the same way: a corrupt file, not an unsafe one; keep what it
        # found, not the advice to load it with weights_only=False that precedes it
        found = re.search(r"WeightsUnpickler error:\s*(.+)", str(e))
        raise pickle.UnpicklingError(f"not a torch checkpoint ({found.group(1) if found else first_line(e)})") from e


def unsafe_globals(path: pathlib.Path) -> list[str]:
    """The globals outside torch's weights_only allow-list that a torch file names, read without unpickling it;
    [] for a file that cannot be read that way (torch's older non-zip format, garbage)."""
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - not a zip checkpoint: refused_globals reads torch's refusal instead
        return []


def refused_globals(error: Exception) -> list[str]:
    """The globals a weights_only refusal names (the first one it met: torch stops there)."""
    return sorted({m.rstrip(".") for m in re.findall(r"\bGLOBAL ([A-Za-z_][\w.]*)", str(error))})


def cache_root(cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """The cache directory: `cache_dir`, else $BERTLAB_CACHE, else ~/.cache/bertlab."""
    if cache_dir:
        return pathlib.Path(cache_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path("~/.cache/bertlab").expanduser()


def cached(path: pathlib.Path, build: Callable[[], Any]) -> Any:
    """Load `path` if it exists (load_safely: tensors and plain values only), else build, save atomically, and
    return the object. An unreadable or unsafe file is a one-line TrainingError: delete it to rebuild."""
    path = pathlib.Path(path)
    if path.exists():
        try:
            # A cache directory may be shared (a cluster's scratch space): what is in it is data, never code.
            return load_safely(path, fix="delete it to rebuild")
        except UnsafePickle:
            raise
        except Exception as e:  # noqa: BLE001 - truncated zip, bad pickle: rebuilding is the fix
            raise TrainingError(f"cache file {path} is unreadable ({type(e).__name__}: {first_line(e)}); "
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


MANIFEST = ".manifest.json"  # in a cache entry: each file's size and checksum, written last
WHOLE_FILE_CHECKSUM = 64 << 20  # files up to this size are checksummed whole; larger ones by their first and last MB
SAMPLE = 1 << 20


def file_check(path: pathlib.Path) -> dict[str, int]:
    """A file's size and CRC-32: of all of it up to WHOLE_FILE_CHECKSUM bytes, else of its first and last MB (a
    cheap check at every open: truncation and torn writes show in the size, flipped bytes in the sums)."""
    size = path.stat().st_size
    crc = 0
    with path.open("rb") as f:
        if size <= WHOLE_FILE_CHECKSUM:
            while chunk := f.read(8 << 20):
                crc = zlib.crc32(chunk, crc)
        else:
            crc = zlib.crc32(f.read(SAMPLE), crc)
            f.seek(size - SAMPLE)
            crc = zlib.crc32(f.read(SAMPLE), crc)
    return {"size": size, "crc32": crc}


def entry_files(root: pathlib.Path) -> list[pathlib.Path]:
    """Every file of a cache entry but its manifest, sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(root: pathlib.Path) -> None:
    """Record the size and checksum of every file of a built entry (before it is renamed into place)."""
    checks = {str(p.relative_to(root)): file_check(p) for p in entry_files(root)}
    atomic_write_bytes(json.dumps(checks, indent=0).encode(), root / MANIFEST)


def damage(root: pathlib.Path) -> str | None:
    """What is wrong with a cache entry against its manifest (a file missing, cut short, grown or changed), or None;
    an entry written before manifests existed is not checked."""
    try:
        checks = json.loads((root / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        return f"its manifest is unreadable: {first_line(e)}"
    for name, want in checks.items():
        f = root / name
        if not f.is_file():
            return f"{name} is missing"
        have = file_check(f)
        if have["size"] != want["size"]:
            return f"{name} has {have['size']:,} bytes, {want['size']:,} were written"
        if have["crc32"] != want["crc32"]:
            return f"{name} does not hold what was written (checksum)"
    return None


def _open(path: pathlib.Path, load: Callable[[pathlib.Path], T], check: bool = True) -> tuple[T | None, str | None]:
    """(what load(path) returns, None), or (None, what is wrong with the entry); `check`: against its manifest first
    (not for an entry this process has just built and checksummed)."""
    if check and (why := damage(path)) is not None:
        return None, why
    try:
        return load(path), None
    except (ConfigError, TrainingError):
        raise  # already one line, saying what to do
    except (OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError, RuntimeError) as e:
        # numpy refuses a pickled .npy (allow_pickle=False): a tampered entry reads as damaged too
        inner = re.sub(r";? ?delete it to rebuild$", "", first_line(e))
        return None, inner if type(e) is RuntimeError else f"{type(e).__name__}: {inner}"


def _build(path: pathlib.Path, build: Callable[[pathlib.Path], None], resumable: bool) -> None:
    """build() into a temporary directory (resumable: .<name>.partial), its manifest, then one rename to `path`."""
    # Temp dirs for this name left by a killed builder: nobody else can be writing them while we hold the lock.
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    if resumable:
        tmp = path.with_name(f".{path.name}.partial")
        tmp.mkdir(exist_ok=True)
    else:
        tmp = pathlib.Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        build(tmp)
        write_manifest(tmp)
        for f in tmp.iterdir():  # data on disk before the rename makes it visible
            _fsync_path(f)
        _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        if not resumable:
            shutil.rmtree(tmp, ignore_errors=True)
        if write_error(e) and not isinstance(e, WriteFailed):  # a full disk: one line, nothing half-built
            again = "it resumes where it stopped" if resumable else "it is built again"
            raise WriteFailed(path, e, None, f"free space and run again ({again})") from e
        raise
    _fsync_path(path.parent)  # persist the rename itself


def cached_dir(path: pathlib.Path | str, build: Callable[[pathlib.Path], None],
               load: Callable[[pathlib.Path], T], resumable: bool = False) -> T:
    """Load directory `path` if present, else build it once across processes and load it.

    `build(tmp)` fills an empty temporary directory; it is renamed to `path` only once complete (with a manifest of
    its files' sizes and checksums), so the directory existing means it is complete. An exclusive lock on
    `<path>.lock` makes a second process wait for the first builder and then read its result instead of building
    again. An entry found damaged at open (a file cut short, deleted or changed; or one load() cannot read) is
    rebuilt once, under the lock, with one warning naming it; a process that waited meanwhile reads the rebuilt one.
    Only an entry that is still unreadable after its rebuild is an error.

    resumable: `build` gets `.<name>.partial` instead, the same directory every time, which a build that fails or is
    killed leaves as it is: the next build finds there what the interrupted one wrote and carries on from it."""
    path = pathlib.Path(path)
    if path.is_dir():  # fast path without the lock: the rename makes existence mean complete
        out, why = _open(path, load)
        if why is None:
            return out
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_name(path.name + ".lock")):
        if path.is_dir():  # damaged, or built by another process while we waited
            out, why = _open(path, load)
            if why is None:
                return out
            warnings.warn(f"cache {path} is damaged ({why}); rebuilding it", stacklevel=2)
            aside = path.with_name(f".{path.name}.damaged-{os.getpid()}.tmp")
            os.replace(path, aside)  # out of the way at once; removed with the other stale temporary directories
            shutil.rmtree(aside, ignore_errors=True)
        _build(path, build, resumable)
    out, why = _open(path, load, check=False)  # its manifest was computed from these very files
    if why is not None:
        raise TrainingError(f"cache {path} is unreadable ({why}) even as just built; delete {path} to rebuild it, "
                            "and check the disk")
    return out


def first_line(error: BaseException) -> str:
    """An error's message up to its first line break (torch's and numpy's can span many)."""
    return (str(error).strip().splitlines() or [""])[0]


def key(*parts: Any) -> str:
    """A short (12 hex chars) stable sha1 of repr(parts), for cache file names."""
    return hashlib.sha1(repr(parts).encode("utf-8")).hexdigest()[:12]
