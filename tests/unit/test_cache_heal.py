"""Caches that check and heal themselves (runner/data/cache.py cached_dir): every entry records its files' sizes and
checksums; one found truncated, deleted or corrupted at open is rebuilt once under the lock with one warning naming
it, and only an entry still unreadable after its rebuild is an error. Each kind of cache: a generic entry, the
trained tokenizer, the tokenized splits (the downstream baselines: tests/unit/test_baseline_cache.py). Two processes
on one damaged entry: tests/integration/test_cache_heal.py."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from runner.config.errors import TrainingError

from runner.data.cache import MANIFEST, cached_dir
from runner.data.tokenizer import load_or_train_tokenizer, tokenizer_cache_path


def entry(tmp_path: Path, builds: list[int]):
    """A two-file entry whose build counts its calls; load reads both files back."""
    def build(tmp: Path) -> None:
        builds.append(1)
        (tmp / "a.txt").write_text("alpha " * 100)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.bin").write_bytes(bytes(range(256)) * 40)

    def load(path: Path) -> tuple[str, bytes]:
        return (path / "a.txt").read_text(), (path / "sub" / "b.bin").read_bytes()
    return lambda: cached_dir(tmp_path / "entry", build, load)


def truncate(f: Path) -> None:
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def corrupt(f: Path) -> None:
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF  # the same size, one byte changed
    f.write_bytes(bytes(data))


def delete(f: Path) -> None:
    f.unlink()


DAMAGE = {"truncated": (truncate, "has .* bytes, .* were written"), "corrupted": (corrupt, "does not hold what was written \\(checksum\\)"),
          "deleted": (delete, "is missing")}



@pytest.mark.parametrize("kind", list(DAMAGE))
@pytest.mark.parametrize("name", ["a.txt", "sub/b.bin"])
def test_a_damaged_entry_is_rebuilt_once_with_one_warning(tmp_path, kind, name):
    builds: list[int] = []
    open_entry = entry(tmp_path, builds)
    first = open_entry()
    manifest = json.loads((tmp_path / "entry" / MANIFEST).read_text())
    assert set(manifest) == {"a.txt", "sub/b.bin"} and manifest["a.txt"]["size"] == 600
    damage, said = DAMAGE[kind]
    damage(tmp_path / "entry" / name)
    with pytest.warns(UserWarning, match=f"cache .*entry is damaged \\({name} {said}\\); rebuilding it") as caught:
        assert open_entry() == first
    assert len(caught) == 1 and len(builds) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # healed: no warning, no build
        assert open_entry() == first
    assert len(builds) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # nothing left aside


def test_an_entry_without_a_manifest_is_read_as_before(tmp_path):
    builds: list[int] = []
    open_entry = entry(tmp_path, builds)
    first = open_entry()
    (tmp_path / "entry" / MANIFEST).unlink()  # written before manifests existed: not checked, still read
    assert open_entry() == first and len(builds) == 1


def test_an_entry_load_cannot_read_is_rebuilt_and_a_second_failure_is_one_error(tmp_path):
    builds: list[int] = []

    def build(tmp: Path) -> None:
        builds.append(1)
        (tmp / "x.json").write_text("{}")

    def load(path: Path) -> dict:
        data = json.loads((path / "x.json").read_text())
        if len(builds) < 3:
            raise ValueError("not what this version reads")
        return data

    with pytest.raises(TrainingError, match=r"cache .*entry is unreadable \(ValueError: not what this version "
                                            r"reads\) even as just built; delete .*entry to rebuild it"):
        cached_dir(tmp_path / "entry", build, load)  # just built and unreadable: an error, not a loop of builds
    assert len(builds) == 1
    builds.clear()
    with pytest.warns(UserWarning, match="rebuilding it"):
        with pytest.raises(TrainingError, match="even as just built"):
            cached_dir(tmp_path / "entry", build, load)  # found unreadable: rebuilt once, then an error
    assert len(builds) == 1


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_the_tokenizer_cache_heals(tmp_path, kind):
    texts = ["the city was founded in 1990 by the river", "a second sentence about the city"] * 50
    trained: list[int] = []

    def texts_fn():
        trained.append(1)
        return iter(texts)

    first = load_or_train_tokenizer("wordpiece", texts_fn, 200, True, tmp_path, "abc")
    path = tokenizer_cache_path(tmp_path, "wordpiece", 200, True, "abc")
    DAMAGE[kind][0](path)
    with pytest.warns(UserWarning, match=f"{path.parent} is damaged .*tokenizer.json .*rebuilding it"):
        again = load_or_train_tokenizer("wordpiece", texts_fn, 200, True, tmp_path, "abc")
    assert again.to_str() == first.to_str() and len(trained) == 2


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_the_tokenized_splits_heal(tmp_path, kind):
    from omegaconf import OmegaConf

    from runner.data.pretraining import build_data
    from tests.conftest import TINY, make_cfg

    cfg = make_cfg(*TINY, "model=bert", f"data.cache_dir={tmp_path}")
    data = OmegaConf.to_container(cfg.data)

    def built():
        return build_data(OmegaConf.create(data), tokenizer_kind="wordpiece", vocab_size=1000, lowercase=True,
                          pairs=False, objective="mlm")
    first = built().splits["train"].ids.tolist()  # read before the damage: a truncated memory map faults
    tokens = sorted(tmp_path.glob("tokenized/*/train/*"))
    target = max(tokens, key=lambda p: p.stat().st_size)  # the token ids
    DAMAGE[kind][0](target)
    with pytest.warns(UserWarning, match=f"is damaged \\(train/{target.name} .*rebuilding it"):
        again = built()
    assert again.splits["train"].ids.tolist() == first
