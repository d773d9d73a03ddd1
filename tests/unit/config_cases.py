"""The cases of tests/unit/test_configs.py's test_every_config_file_composes_and_builds (that module's docstring says
what they check) and what builds them: one module that both tiers import, so that the cases are composed once per
process (tests/integration/test_configs.py builds the cases that need a teacher run)."""
from __future__ import annotations

import contextlib
import functools
import json
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from runner.build import validate
from tests.conftest import ROOT, make_cfg

CONF = ROOT / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())
DOCS = 200  # articles per build: enough for every split at data.seq_len 512, small enough for 2 cores
SMALL = 20_000_000  # estimated parameters above which the encoder and objective are built on the meta device
COMMON = ["trainer.max_steps=0", "logger.mode=disabled", "trainer.device=cpu", f"data.max_docs={DOCS}"]
FAMILIES = ["bert", "roberta", "albert", "electra", "txl", "modernbert"]
SWEEPS = {"bert_improvements": [*FAMILIES, "xlnet"], "pretraining_pays": FAMILIES}  # each family sweep's models
# a causal LM needs the Transformer-XL family; permutation LM, XLNet's query stream
NEEDS = {"objective=clm": ["model=txl"], "objective=plm": ["model=xlnet"]}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@functools.lru_cache(maxsize=None)
def compose_with_hydra(*overrides: str):
    """The composition with its hydra node (runtime.choices, sweeper), as `--cfg hydra` prints it (read only)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


@functools.lru_cache(maxsize=1)
def preset_recipes() -> dict[str, str | None]:
    """Each model preset -> the recipe its defaults name (Hydra's choice recipe@_global_)."""
    return {m: compose_with_hydra(f"model={m}").hydra.runtime.choices.get("recipe@_global_") for m in options("model")}


def sweep_params(experiment: str) -> dict[str, list[str]]:
    """An experiment's hydra.sweeper.params, each as its list of values."""
    node = yaml.safe_load((CONF / "experiment" / f"{experiment}.yaml").read_text()) or {}
    params = ((node.get("hydra") or {}).get("sweeper") or {}).get("params") or {}
    return {str(k): [v.strip() for v in str(values).split(",")] for k, values in params.items()}


def cases() -> list:
    out = []
    for group in GROUPS:
        for name in options(group):
            choice = f"{group}={name}" if group != "recipe" else f"recipe@_global_={name}"
            if group == "recipe":
                users = [m for m, r in preset_recipes().items() if r == name]
                extra = [f"model={name if name in users else (users or ['bert'])[0]}"]
            else:
                extra = NEEDS.get(choice, [])
            swept = sweep_params(name) if group == "experiment" else {}
            for key, values in swept.items():
                out += [pytest.param([choice, f"{key}={v}"], id=f"{choice},{key}={v}") for v in values]
            if not swept:
                out.append(pytest.param([*extra, choice], id=choice))
    return out


@pytest.fixture(scope="session")
def stand_ins(tmp_path_factory) -> dict[str, list[str]]:
    """data.name -> the overrides that point a network or path-reading data group at a local corpus made from the
    bundled wiki summaries."""
    import datasets

    from runner.data.sources import load_documents

    docs, _, _ = load_documents(make_cfg("data=wiki", f"data.max_docs={DOCS}").data)
    root = tmp_path_factory.mktemp("corpora")
    (root / "text").mkdir()
    for i, d in enumerate(docs):
        (root / "text" / f"{i:04d}.txt").write_text(d.text + "\n")
    (root / "enwik8.txt").write_text("\n\n".join(d.text for d in docs) + "\n")
    (root / "corpus.jsonl").write_text("".join(json.dumps({"text": d.text, "title": d.title}) + "\n" for d in docs))
    datasets.Dataset.from_dict({"title": [d.title for d in docs], "text": [d.text for d in docs]}).save_to_disk(
        str(root / "articles"))
    lines = [line for d in docs for line in (f" = {d.title} = \n", f" {d.text}\n")]
    datasets.Dataset.from_dict({"text": lines}).save_to_disk(str(root / "wikitext"))
    return {"text": [f"data.paths=[{root / 'text'}]"], "enwik8": [f"data.paths=[{root / 'enwik8.txt'}]"],
            "jsonl": [f"data.paths=[{root / 'corpus.jsonl'}]"], "hub": [f"data.hub.name={root / 'articles'}"],
            "wikipedia": [f"data.hub.name={root / 'articles'}"], "wikitext103": [f"data.hub.name={root / 'wikitext'}"]}


def estimated_parameters(m) -> int:
    """Layers, embeddings and an output layer as wide as the vocabulary: enough to tell CPU presets from paper sizes."""
    width = m.get("embedding_size") or m.hidden_size
    return m.num_layers * (4 * m.hidden_size ** 2 + 2 * m.hidden_size * m.intermediate_size) + 2 * m.vocab_size * width


@contextlib.contextmanager
def model_on_meta(monkeypatch):
    """torch.device("meta") for everything built, but the word table, a CPU-side lookup of the data."""
    import runner.build
    import runner.data.words

    make_table = runner.data.words.continuation_table

    def table_on_cpu(*args, **kwargs):
        with torch.device("cpu"):
            return make_table(*args, **kwargs)

    monkeypatch.setattr(runner.data.words, "continuation_table", table_on_cpu)
    monkeypatch.setattr(runner.build, "continuation_table", table_on_cpu, raising=False)
    with torch.device("meta"):
        yield


def composes_and_builds(overrides: list[str], stand_ins: dict[str, list[str]], monkeypatch,
                        teacher: Path | None = None) -> None:
    """One case of test_every_config_file_composes_and_builds (the module docstring says what it checks)."""
    from runner.build import build

    cfg = make_cfg(*overrides, *COMMON)
    validate(cfg)  # as composed: a group that reads the network or local paths is checked before any stand-in
    if cfg.data.name in stand_ins:
        overrides = [*overrides, *stand_ins[cfg.data.name]]
    if cfg.objective.name == "distill":  # a finished teacher run stands in for the one objective.teach would train
        assert teacher is not None, "a case whose objective is distill needs the teacher: needs_teacher() names it"
        overrides = [*overrides, f"objective.teacher={teacher}", "objective.teach=[]"]
    cfg = make_cfg(*overrides, *COMMON)
    big = estimated_parameters(cfg.model) > SMALL
    with model_on_meta(monkeypatch) if big else contextlib.nullcontext():
        built = build(cfg)
        optimizer, scheduler = instantiate(cfg.optimizer)(module=built.module, max_steps=1)
    params = list(built.module.parameters())
    assert params and {p.device.type for p in params} == {"meta" if big else "cpu"}
    assert optimizer.param_groups and len(scheduler.get_last_lr()) == len(optimizer.param_groups)
    assert built.data.tokenizer.get_vocab_size() <= cfg.model.vocab_size


def needs_teacher(case) -> bool:
    """The cases whose objective is distill (objective=distill, model=distil, distilbert, experiment=distil,
    recipe@_global_=distil): their teacher is a finished run, so they are built in tests/integration/test_configs.py."""
    return "distil" in case.id
