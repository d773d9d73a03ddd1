"""Downstream evaluation wired into a run: after pretraining, fine-tuning results land in summary.json, the
metrics log and the console; a corpus without labels skips it with a note.
The tests of this file that train or start a process: tests/integration/test_downstream_run.py."""
from __future__ import annotations

import pytest

from tests.conftest import TINY, make_cfg, cli


pytestmark = pytest.mark.slow


@pytest.mark.parametrize("overrides,key", [
    (["eval.pooling=max"], "eval.pooling='max'"), (["eval.epochs=0"], "eval.epochs=0"), (["eval.lr=0"], "eval.lr=0"),
    (["model=txl", "model.cutoffs=[]", "eval.pooling=cls"], "eval.pooling=cls on a causal"),
    (["eval.task=glue_nonexistent"], "eval.task='glue_nonexistent': unknown GLUE task"),
    (["eval.task=wiki_topics"], "eval.task='wiki_topics': unknown downstream task"),
    (["eval.task=glue_sst2", "eval.path=/nonexistent/glue"], "eval.path='/nonexistent/glue' is not a directory"),
    (["eval.lrs=[1e-4,-1]"], "every learning rate must be > 0"), (["eval.head=frozen"], "eval.head="),
    (["eval.task=glue", "eval.glue.epochs=10"], "eval.glue.epochs=10 must be 1 to 5"),
    (["eval.dropout=1.0"], "eval.dropout=1.0")])
def test_bad_downstream_settings_stop_before_pretraining(overrides, key):
    from runner.config.errors import ConfigError
    from runner.build import validate

    cfg = make_cfg(*TINY, "eval.downstream=true", *overrides)
    with pytest.raises(ConfigError, match=key.replace("(", r"\(")):
        validate(cfg)
    validate(make_cfg(*TINY, "eval.downstream=false", *overrides[:-1]))  # off: not checked


def test_eval_task_typo_fails_before_any_training(tmp_path):
    r = cli(*TINY, "eval.downstream=true", "eval.task=glue_nonexistent", "trainer.max_steps=4",
                run_dir=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "eval.task='glue_nonexistent'" in errors[0] and "glue_<" in errors[0]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "summary.json").exists()


def test_downstream_is_auto_on_in_multiruns_and_off_in_single_runs():
    from runner.evaluation.after_training import downstream_enabled, finetune_hint

    auto = make_cfg(*TINY, "eval.downstream=null")
    assert auto.eval.downstream is None
    assert downstream_enabled(auto, multirun=True) and not downstream_enabled(auto, multirun=False)
    assert not downstream_enabled(auto)  # no Hydra run here: a single run
    for value, on in (("true", True), ("false", False)):
        forced = make_cfg(*TINY, f"eval.downstream={value}")
        assert downstream_enabled(forced, multirun=True) is on and downstream_enabled(forced, multirun=False) is on
    assert finetune_hint("outputs/runs/x") == "fine-tune later: python -m runner.finetune outputs/runs/x"
    assert make_cfg().eval.downstream is None  # the default


def test_a_run_saved_before_the_protocol_fine_tunes_under_it():
    """A config.yaml written before eval.head existed carried the old protocol's eval.lr and eval.pooling (which
    fine-tuned below random init): today's protocol applies to it; a saved eval.head keeps its settings."""
    from omegaconf import OmegaConf

    from runner.store.layout import current

    old = current(OmegaConf.create({"eval": {"task": "wiki_acceptability", "lr": 5e-4, "pooling": "cls"}}))
    assert old.eval.lr is None and old.eval.pooling == "auto" and old.eval.head == "probe"
    assert list(old.eval.lrs) == [1e-4, 3e-4] and old.eval.task == "wiki_acceptability"
    new = current(OmegaConf.create({"eval": {"lr": 5e-5, "pooling": "cls", "head": "random"}}))
    assert (new.eval.lr, new.eval.pooling, new.eval.head) == (5e-5, "cls", "random")
