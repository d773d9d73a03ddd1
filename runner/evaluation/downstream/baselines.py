"""The baselines' cache: random-init fine-tuning and bag-of-words logistic regression depend on the task and its
examples, the encoder's shape, the fine-tuning settings and seeds, the device type and torch's version, but not on
the pretrained weights. So every run with the same shape (every job of a learning-rate sweep, a run fine-tuned
again later) reuses the first one's numbers: one JSON file per key under <data cache>/baselines/.

The key hashes: the task's name, a sha1 of every example (ids, label, token types, subset) and of its labels,
pad id and special-token count (the tokenizer shows in the ids); the encoder's config as a dict (the fields of its
dataclass, less `name` and `init_from`, which do not change the architecture: every shape field stays, dropout
and initializer range too, as they change the random-init runs); the fine-tuning settings and seeds; the baselines
asked for; the device type; torch's major.minor version; and FORMAT, bumped when the baselines' code changes."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from runner.data import cache
from runner.evaluation.downstream.tasks import Task

FORMAT = "baselines-v2"  # v2: the protocol of issue 28 (LP-FT, pooling auto = mean without a pair task)
NOT_SHAPE = ("name", "init_from")  # config fields that leave the architecture as it is


def task_fingerprint(task: Task) -> str:
    """sha1 of a task's labels, pad id, special-token count and every example of every subset."""
    h = hashlib.sha1()
    h.update(repr((task.name, list(task.labels), task.pad_id, task.num_special, task.pairs)).encode())
    for subset in ("train", "dev", "test"):
        h.update(f"|{subset}|{len(getattr(task, subset))}|".encode())
        for ex in getattr(task, subset):
            h.update(repr((tuple(ex.ids), int(ex.label), None if ex.token_types is None else tuple(ex.token_types)))
                     .encode())
    return h.hexdigest()


def encoder_shape(encoder_or_config: Any) -> dict[str, Any] | None:
    """The encoder's config as a dict (its dataclass fields less NOT_SHAPE) with the encoder's class name, or None
    when it has no dataclass config (then nothing is cached)."""
    config = getattr(encoder_or_config, "config", encoder_or_config)
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        return None
    shape = {k: v for k, v in dataclasses.asdict(config).items() if k not in NOT_SHAPE}
    if config is not encoder_or_config:
        shape["class"] = type(encoder_or_config).__name__
    return shape


def baseline_inputs(task: Task, shape: dict[str, Any], settings: dict[str, Any], seeds: Sequence[int],
                    device: torch.device | str, baselines: Sequence[str]) -> dict[str, Any]:
    """Everything the baselines' numbers depend on (what the key hashes, stored next to them)."""
    return {"format": FORMAT, "task": task.name, "examples_sha1": task_fingerprint(task), "sizes": task.sizes(),
            "encoder": shape, "settings": {k: settings[k] for k in sorted(settings) if k not in ("seeds", "device")},
            "seeds": [int(s) for s in seeds], "baselines": sorted(baselines), "device_type": torch.device(device).type,
            "torch": ".".join(torch.__version__.split("+")[0].split(".")[:2])}


def baseline_key(inputs: dict[str, Any]) -> str:
    """The cache key of baseline_inputs(...) (runner.data.cache.key)."""
    return cache.key(json.dumps(inputs, sort_keys=True, default=str))


def cache_dir(data_cache_dir: Any = None) -> Path:
    """Where the baselines live: <data cache root>/baselines."""
    return cache.cache_root(data_cache_dir) / "baselines"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())["baselines"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:  # torn or foreign: computed again and overwritten
        warnings.warn(f"baseline cache {path} is unreadable ({type(e).__name__}: {e}); computing the baselines again",
                      stacklevel=3)
        return None


def cached_baselines(directory: str | Path, key: str, inputs: dict[str, Any],
                     compute: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """(baselines, "cached" | "computed"): <directory>/<key>.json when present, else compute() written there
    atomically. An exclusive lock on <key>.json.lock makes a concurrent job with the same key wait for the first
    one's numbers instead of computing them again. A cache that cannot be written is a warning, not an error."""
    path = Path(directory) / f"{key}.json"
    if (hit := _read(path)) is not None:
        return hit, "cached"
    try:
        lock = cache.file_lock(path.with_name(path.name + ".lock"))
        lock.__enter__()
    except OSError as e:  # a read-only cache directory: compute without sharing
        warnings.warn(f"baseline cache {directory} is not writable ({e}); computing the baselines", stacklevel=2)
        return json.loads(json.dumps(compute())), "computed"
    try:
        if (hit := _read(path)) is not None:  # another job computed them while this one waited
            return hit, "cached"
        out = json.loads(json.dumps(compute()))  # as a reader will see them: lists, not tuples
        try:
            cache.atomic_write_bytes(json.dumps({"key": key, "inputs": inputs, "baselines": out},
                                                indent=1).encode(), path)
        except OSError as e:
            warnings.warn(f"could not write the baseline cache {path} ({e})", stacklevel=2)
        return out, "computed"
    finally:
        lock.__exit__(None, None, None)
