"""Every file of every config group composes and builds; model presets are architectures that name one recipe
(conf/recipe/); each group's schema checks its own values (runner/config/schema.py `check()`).

What "composes and builds" means in test_every_config_file_composes_and_builds, one case per file of conf/<group>/
(found by glob, so a new file is a new case), each composed with that choice plus trainer.max_steps=0,
logger.mode=disabled, trainer.device=cpu and data.max_docs=DOCS:

- the choice alone (`model=bert_large`, `optimizer=lamb`, `recipe@_global_=albert`, `experiment=bert_base_paper`),
  with the one companion a choice cannot do without: objective=clm with model=txl (a causal LM needs the
  Transformer-XL family), recipe@_global_=R with a model preset that names recipe R (the recipe is part of the
  preset's defaults). Experiments that sweep (hydra.sweeper.params: bert_improvements, pretraining_pays) give one
  case per swept value (model=bert, ..., model=txl); the others are single runs, composed as they are.
- then runner.config.checks.validate on that composition (every group's check() and the checks spanning groups), and
  runner.build.build as `python -m runner ... trainer.max_steps=0` runs it: the objective's checks, the data (corpus
  read, tokenizer trained, splits tokenized, in the session's cache), the encoder and the objective; then the
  optimizer and its schedule are instantiated on the module.
- models above SMALL parameters (the paper sizes: bert_small .. bert_large, roberta_base, albert_base ..,
  electra_base, txl_wt103_*, txl_enwik8_*) build their encoder and objective on the meta device (shapes: no memory,
  no init cost); their data is real. The word table (runner/data/words.py, a lookup on the tokenizer's vocabulary
  that the objective keeps on the CPU) is still made on the CPU.
- data groups that need the network or local paths (data=text, jsonl, enwik8: data.paths; hub, wikipedia,
  wikitext103: the Hugging Face Hub) are validated as composed, then built from a small local stand-in made from the
  bundled wiki summaries, every other key of the group kept: a directory of .txt files (text), one blank-line
  separated .txt file (enwik8), a .jsonl file (jsonl), a save_to_disk dataset for data.hub.name (hub, wikipedia;
  wikitext103's in WikiText's " = Title = " line format; a saved dataset is read whole, so wikipedia's streaming
  is not exercised). The experiments that use those groups (txl_wt103_base_paper, txl_enwik8_base_paper) get the
  same stand-ins.
- compositions whose objective is distill (objective=distill, model=distil, distilbert, experiment=distil) distil
  from a finished TINY model=bert run (the session's `bert_teacher`), standing in for the teacher objective.teach
  would train first: those cases need a trained run, so they are tests/integration/test_configs.py's.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from runner.config.errors import ConfigError
from runner.config.schema import (BudgetConfig, CrossoverConfig, DataConfig, EvalConfig, LambConfig, LoggerConfig,
                           OptimizerConfig, ProbeConfig, TrainerConfig, with_defaults)
from runner.build import validate
from runner.evaluation.checks import check_probes, check_task
from tests.conftest import make_cfg
from tests.unit import config_cases
from tests.unit.config_cases import (CONF, GROUPS, SWEEPS, cases, compose_with_hydra,
                                     composes_and_builds, needs_teacher, options, preset_recipes, sweep_params)

stand_ins = config_cases.stand_ins  # a fixture

@pytest.mark.parametrize("overrides", [c for c in cases() if not needs_teacher(c)])
def test_every_config_file_composes_and_builds(overrides, stand_ins, monkeypatch):
    composes_and_builds(overrides, stand_ins, monkeypatch)


def test_every_group_directory_is_a_group_with_cases():
    """A new directory under conf/ is picked up (and must compose); the variant group is gone."""
    assert {"model", "objective", "optimizer", "data", "trainer", "eval", "logger", "recipe",
            "experiment"} <= set(GROUPS)
    assert "variant" not in GROUPS


# ---- model presets and recipes ----------------------------------------------------------------------------------

# Recorded from the configs before conf/recipe/ existed (then: `model=P`, and `experiment=E variant=X`), as
# (model.name, objective choice, objective.name, optimizer.name, optimizer.lr, data.format, trainer.grad_accum,
# trainer.batch_size). The one intended change: model=roberta carries what variant=roberta added (RoBERTa's
# FULL-SENTENCES, 4x batch through accumulation, lr 3e-3); before, model=roberta composed to (..., 0.002, None, 1, 64).
PRESETS = {
    "albert": ("albert", "mlm_sop", "mlm_sop", "lamb_cpu", 0.01, None, 1, 64),
    "albert_base": ("albert_base", "mlm_sop", "mlm_sop", "lamb", 0.00176, None, 1, 64),
    "albert_large": ("albert_large", "mlm_sop", "mlm_sop", "lamb", 0.00176, None, 1, 64),
    "albert_xlarge": ("albert_xlarge", "mlm_sop", "mlm_sop", "lamb", 0.00176, None, 1, 64),
    "albert_xxlarge": ("albert_xxlarge", "mlm_sop", "mlm_sop", "lamb", 0.00176, None, 1, 64),
    "bert": ("bert", "mlm_nsp", "mlm_nsp", "adamw_cpu", 0.002, None, 1, 64),
    "bert_base": ("bert_base", "mlm_nsp", "mlm_nsp", "adamw_cpu", 0.002, None, 1, 64),
    "bert_large": ("bert_large", "mlm_nsp", "mlm_nsp", "adamw_cpu", 0.002, None, 1, 64),
    "bert_medium": ("bert_medium", "mlm_nsp", "mlm_nsp", "adamw_cpu", 0.002, None, 1, 64),
    "bert_mini": ("bert_mini", "mlm_nsp", "mlm_nsp", "adamw_cpu", 0.002, None, 1, 64),
    "bert_small": ("bert_small", "mlm_nsp", "mlm_nsp", "adamw_cpu", 0.002, None, 1, 64),
    "bert_tiny": ("bert_tiny", "mlm_nsp", "mlm_nsp", "adamw_cpu", 0.002, None, 1, 64),
    # added with distillation (issue 18): DistilBERT's recipe (conf/recipe/distil.yaml)
    "distil": ("distil", "distill", "distill", "adamw_cpu", 0.002, "full_sentences", 1, 64),
    "distilbert": ("distilbert", "distill", "distill", "adamw_cpu", 0.002, "full_sentences", 1, 64),
    # added with XLNet (issue 18): permutation LM on contiguous streams (conf/recipe/xlnet.yaml)
    "xlnet": ("xlnet", "plm", "plm", "adamw_cpu", 0.002, None, 1, 64),
    "xlnet_base": ("xlnet_base", "plm", "plm", "adamw_cpu", 0.002, None, 1, 64),
    "xlnet_large": ("xlnet_large", "plm", "plm", "adamw_cpu", 0.002, None, 1, 64),
    "electra": ("electra", "rtd_cpu", "rtd", "adamw_electra_cpu", 0.001, None, 1, 64),
    "electra_base": ("electra_base", "rtd_base", "rtd", "adamw_electra_cpu", 0.001, None, 1, 64),
    # added with issue 29: ELECTRA's BERT-style encoder at CPU size (model=electra: the same on a modern encoder)
    "electra_bert": ("electra_bert", "rtd_cpu", "rtd", "adamw_electra_cpu", 0.001, None, 1, 64),
    "electra_large": ("electra_large", "rtd_large", "rtd", "adamw_electra_cpu", 0.001, None, 1, 64),
    "electra_small": ("electra_small", "rtd", "rtd", "adamw_electra_cpu", 0.001, None, 1, 64),
    "modernbert": ("modernbert", "mlm", "mlm", "adamw_modernbert_cpu", 0.002, "full_sentences", 1, 64),
    "modernbert_base": ("modernbert_base", "mlm", "mlm", "adamw_modernbert", 0.0008, "full_sentences", 1, 64),
    "modernbert_large": ("modernbert_large", "mlm", "mlm", "adamw_modernbert", 0.0005, "full_sentences", 1, 64),
    "roberta": ("roberta", "mlm", "mlm", "adamw_roberta_cpu", 0.003, "full_sentences", 4, 64),
    "roberta_base": ("roberta_base", "mlm", "mlm", "adamw_roberta_cpu", 0.002, None, 1, 64),
    "roberta_large": ("roberta_large", "mlm", "mlm", "adamw_roberta_cpu", 0.002, None, 1, 64),
    "txl": ("txl", "clm", "clm", "adam_txl", 0.00025, None, 1, 64),
    "txl_enwik8_base": ("txl_enwik8_base", "clm", "clm", "adam_txl", 0.00025, None, 1, 64),
    "txl_enwik8_large": ("txl_enwik8_large", "clm", "clm", "adam_txl", 0.00025, None, 1, 64),
    "txl_wt103_base": ("txl_wt103_base", "clm", "clm", "adam_txl", 0.00025, None, 1, 64),
    "txl_wt103_large": ("txl_wt103_large", "clm", "clm", "adam_txl", 0.00025, None, 1, 64),
}
# `experiment=E variant=X` before, for both sweep experiments alike: now `experiment=E model=X`
VARIANTS = {
    "bert": ("bert", "mlm_nsp", "mlm_nsp", "adamw_cpu", 0.002, None, 1, 64),
    "roberta": ("roberta", "mlm", "mlm", "adamw_roberta_cpu", 0.003, "full_sentences", 4, 64),
    "albert": ("albert", "mlm_sop", "mlm_sop", "lamb_cpu", 0.01, None, 1, 64),
    "electra": ("electra", "rtd_cpu", "rtd", "adamw_electra_cpu", 0.001, None, 1, 64),
    "txl": ("txl", "clm", "clm", "adam_txl", 0.00025, None, 1, 64),
    "modernbert": ("modernbert", "mlm", "mlm", "adamw_modernbert_cpu", 0.002, "full_sentences", 1, 64),
    "xlnet": ("xlnet", "plm", "plm", "adamw_cpu", 0.002, None, 1, 64),  # joined bert_improvements with issue 18
}
# the paper experiments, plus data.seq_len, trainer.max_steps and data.name
EXPERIMENTS = {
    "distil": ("distil", "distill", "distill", "adamw_cpu", 0.002, "full_sentences", 1, 64, 64, 1500, "wiki"),
    "albert_base_paper": ("albert_base", "mlm_sop", "mlm_sop", "lamb", 0.00176, "sop_pair", 64, 64, 512, 125000,
                          "wiki"),
    "bert_base_paper": ("bert_base", "mlm_nsp", "mlm_nsp", "adamw", 0.0001, "segment_pair", 8, 32, 512, 1000000,
                        "wiki"),
    "electra_base_paper": ("electra_base", "rtd_base", "rtd", "adamw", 0.0002, "full_sentences", 8, 32, 512, 766000,
                           "wiki"),
    "electra_large_paper": ("electra_large", "rtd_large", "rtd", "adamw", 0.0002, "full_sentences", 64, 32, 512,
                            400000, "wiki"),
    "electra_small_paper": ("electra_small", "rtd", "rtd", "adamw", 0.0005, "full_sentences", 1, 128, 128, 1000000,
                            "wiki"),
    "roberta_base_paper": ("roberta_base", "mlm", "mlm", "adamw_roberta", 0.0006, "full_sentences", 256, 32, 512,
                           500000, "wiki"),
    "txl_enwik8_base_paper": ("txl_enwik8_base", "clm", "clm", "adam_txl", 0.00025, None, 1, 22, 512, 400000,
                              "enwik8"),
    "txl_wt103_base_paper": ("txl_wt103_base", "clm", "clm", "adam_txl", 0.00025, None, 1, 60, 150, 200000,
                             "wikitext103"),
}


def key_values(*overrides: str) -> tuple:
    c = compose_with_hydra(*overrides)
    return (c.model.name, c.hydra.runtime.choices.objective, c.objective.name, c.optimizer.name, c.optimizer.lr,
            c.data.format, c.trainer.grad_accum, c.trainer.batch_size)


def test_model_presets_compose_to_their_recipes_as_before():
    assert set(PRESETS) == set(options("model"))
    assert {m: key_values(f"model={m}") for m in PRESETS} == PRESETS


@pytest.mark.parametrize("experiment", ["bert_improvements", "pretraining_pays"])
def test_family_sweeps_compose_each_job_as_the_variants_did(experiment):
    families = SWEEPS[experiment]
    assert sweep_params(experiment) == {"model": families}
    assert {f: key_values(f"experiment={experiment}", f"model={f}") for f in families} == \
        {f: VARIANTS[f] for f in families}


def test_paper_experiments_compose_as_before():
    assert set(EXPERIMENTS) == {e for e in options("experiment") if not sweep_params(e)}
    for name, expected in EXPERIMENTS.items():
        c = compose_with_hydra(f"experiment={name}")
        assert (*key_values(f"experiment={name}"), c.data.seq_len, c.trainer.max_steps, c.data.name) == expected, name


def test_model_presets_are_architecture_and_at_most_one_recipe_line():
    """No preset picks an objective or optimizer itself, or sets another group's keys: its recipe does."""
    for name in options("model"):
        text = (CONF / "model" / f"{name}.yaml").read_text()
        node = yaml.safe_load(text)
        defaults = [str(d) for d in node.get("defaults", [])]
        assert sum("recipe" in d for d in defaults) <= 1, name
        assert not any(g in d for d in defaults for g in ("objective", "optimizer", "data", "trainer")), name
        assert "@package" not in text, name
    assert all(preset_recipes().values())  # every preset trains by a recipe


def test_recipes_pick_objective_and_optimizer_and_each_serves_a_preset():
    used = set(preset_recipes().values())
    for name in options("recipe"):
        text = (CONF / "recipe" / f"{name}.yaml").read_text()
        assert text.startswith("# @package _global_\n"), name
        node = yaml.safe_load(text)
        overrides = [next(iter(d)) for d in node["defaults"] if isinstance(d, dict)]
        assert overrides == ["override /objective", "override /optimizer"], name
        assert set(node) - {"defaults"} <= {"data", "trainer", "optimizer", "objective"}, name
        assert name in used, f"recipe {name} is named by no model preset"


def test_command_line_wins_over_the_recipe():
    c = make_cfg("model=electra", "objective=mlm", "optimizer=adamw")
    assert (c.model.name, c.objective.name, c.optimizer.name, c.optimizer.lr) == ("electra", "mlm", "adamw", 5e-4)
    c = make_cfg("model=roberta", "optimizer.lr=1e-3", "trainer.grad_accum=2", "data.format=doc_sentences")
    assert (c.optimizer.lr, c.trainer.grad_accum, c.data.format) == (1e-3, 2, "doc_sentences")
    c = make_cfg("model=roberta", "recipe@_global_=bert")  # another family's recipe on this architecture
    assert (c.model.name, c.objective.name, c.optimizer.name, c.trainer.grad_accum) == ("roberta", "mlm_nsp",
                                                                                         "adamw_cpu", 1)
    c = make_cfg("experiment=roberta_base_paper", "model=roberta")  # an experiment's values win over the recipe's
    assert (c.optimizer.name, c.optimizer.lr, c.trainer.grad_accum) == ("adamw_roberta", 6e-4, 256)


def test_crossover_labels_rows_by_the_model_choice(tmp_path):
    from runner.evaluation.crossover import _model_choice

    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(
        {"hydra": {"runtime": {"choices": {"model": "roberta", "objective": "mlm"}}}}))
    assert _model_choice(tmp_path) == "roberta"
    assert _model_choice(tmp_path / "missing") is None


# ---- each group's own checks ------------------------------------------------------------------------------------

# values whose names only the evaluation layer knows (the config layer does not import what it configures)
OWN_CHECK = {"eval.task": lambda e: check_task(e.task, "eval.task"), "probes.kinds": check_probes,
             "probes.split": check_probes}


@pytest.mark.parametrize("override,message", [
    ("data.seq_len=4", "data.seq_len=4 is too short; use at least 8"),
    ("data.val_fraction=0.96", "data.val_fraction=0.96 + data.test_fraction=0.05 must lie in [0, 1)"),
    ("data.max_docs=1", "data.max_docs=1 must be >= 2 or null"),
    ("optimizer.decay=step", "optimizer.decay='step' must be linear, cosine or wsd"),
    ("optimizer.lr=0", "optimizer.lr=0.0 must be > 0"),
    ("optimizer.betas=[0.9,1.5]", "optimizer.betas=[0.9, 1.5] must be two numbers in [0, 1)"),
    ("optimizer.weight_decay=-1", "optimizer.weight_decay=-1.0 must be >= 0"),
    ("optimizer.eps=0", "optimizer.eps=0.0 must be > 0"),
    ("optimizer.warmup_fraction=2", "optimizer.warmup_fraction=2.0 must lie in [0, 1]"),
    ("optimizer.warmup_steps=-1", "optimizer.warmup_steps=-1 must be >= 0"),
    ("trainer.max_steps=-1", "trainer.max_steps=-1 must be >= 0"),
    ("trainer.eval_batches=0", "trainer.eval_batches=0 must be >= 1"),
    ("trainer.num_workers=-1", "trainer.num_workers=-1 must be >= 0"),
    ("trainer.grad_clip=-1", "trainer.grad_clip=-1.0 must be >= 0"),
    ("trainer.nonfinite=retry", "trainer.nonfinite='retry' must be stop or skip"),
    ("trainer.max_skipped_steps=0", "trainer.max_skipped_steps=0 must be >= 1"),
    ("trainer.budget.steps=0", "trainer.budget.steps=0 must be > 0"),
    ("logger.mode=loud", "logger.mode='loud' must be one of"),
    ("eval.pooling=max", "eval.pooling='max' must be auto, cls, mean or last"),
    ("eval.seeds=0", "eval.seeds=0 must be >= 1"),
    ("eval.seq_len=4", "eval.seq_len=4 must be >= 5"),
    ("eval.task=nope", "eval.task='nope': "),
    ("probes.kinds=[shuffle]", "probes.kinds=['shuffle']: each must be one of"),
    ("probes.pairs=0", "probes.pairs=0 must be >= 1"),
    ("probes.split=dev", "probes.split='dev' must be one of"),
    ("probes.min_words=2", "probes.min_words=2, probes.max_words=20: need 4 <= min_words <= max_words"),
])
def test_each_group_checks_its_own_values(override, message):
    cfg = make_cfg(override)
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        validate(cfg)
    group = override.split(".")[0]
    with pytest.raises(ConfigError):  # the group alone: its schema's own check, or the layer that knows the names
        OWN_CHECK.get(override.split("=")[0], lambda node: OmegaConf.to_object(node).check())(cfg[group])


def test_crossover_settings_checked_when_enabled():
    on = ["crossover.enabled=true", "trainer.budget.flops=1e12"]
    validate(make_cfg(*on))
    with pytest.raises(ConfigError, match=r"set trainer\.budget\.flops"):  # spans groups: checked by validate
        validate(make_cfg("crossover.enabled=true"))
    with pytest.raises(ConfigError, match=r"crossover\.start_flops=0\.0 must be > 0"):
        validate(make_cfg(*on, "crossover.start_flops=0"))
    with pytest.raises(ConfigError, match=r"crossover\.tasks is empty"):
        validate(make_cfg(*on, "crossover.tasks=[]"))
    with pytest.raises(ConfigError, match=r"crossover\.tasks: 'nope'"):
        validate(make_cfg(*on, "crossover.tasks=[nope]"))
    validate(make_cfg("crossover.tasks=[]"))  # off: not checked
    validate(make_cfg("probes.enabled=false", "probes.pairs=0"))


def test_schema_checks_accept_their_defaults():
    for schema in (DataConfig, OptimizerConfig, LambConfig, TrainerConfig, BudgetConfig, EvalConfig, LoggerConfig,
                   ProbeConfig, CrossoverConfig):
        schema().check()
    with pytest.raises(ConfigError, match=r"set one budget"):
        BudgetConfig(steps=10, minutes=1.0).check()
    with pytest.raises(ConfigError, match=r"optimizer\.betas=\[0\.9\] must be two numbers"):
        LambConfig(betas=[0.9]).check()


def test_checks_run_on_saved_and_untyped_configs():
    """A run's saved config.yaml is untyped; with_defaults types the groups with one schema, and validate types the
    rest (the optimizer, by its _target_) before their checks."""
    saved = OmegaConf.create(OmegaConf.to_container(make_cfg("optimizer=lamb", "trainer.budget.steps=5")))
    validate(with_defaults(saved))
    validate(saved)
    saved.optimizer.lr = -1.0
    with pytest.raises(ConfigError, match=r"^optimizer\.lr=-1\.0 must be > 0"):
        validate(with_defaults(saved))
    saved.optimizer.lr, saved.trainer.batch_size = 1e-3, 0
    with pytest.raises(ConfigError, match=r"^trainer\.batch_size=0 must be >= 1"):
        validate(saved)


def test_config_yaml_lists_recipe_groups_before_the_model():
    """The model's recipe overrides the objective and optimizer choices and sets data and trainer values: Hydra
    expands a defaults list from its end, so those groups must come before model (else "Could not override")."""
    defaults = [next(iter(d)) if isinstance(d, dict) else d
                for d in yaml.safe_load((CONF / "config.yaml").read_text())["defaults"]]
    assert defaults.index("objective") < defaults.index("optimizer") < defaults.index("model")
    assert max(defaults.index(g) for g in ("data", "trainer")) < defaults.index("model")
    assert defaults.index("model") < defaults.index("experiment")
    assert Path(CONF / "recipe").is_dir() and not (CONF / "variant").exists()
