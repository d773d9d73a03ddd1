"""The command line: composition, typed schemas, one-line errors for bad input.
The tests of this file that train or start a process: tests/integration/test_cli.py."""
from __future__ import annotations

import json
import re

import pytest
from hydra.errors import ConfigCompositionException

from runner.config.errors import ConfigError
from runner.build import validate
from tests.conftest import TINY, make_cfg, cli


def test_family_presets_pick_their_paper_recipe():
    bert, roberta = make_cfg("model=bert_base"), make_cfg("model=roberta_base")
    assert (bert.objective.name, bert.objective.masking, bert.optimizer.betas[1]) == ("mlm_nsp", "static", 0.999)
    assert (roberta.objective.name, roberta.objective.masking, roberta.optimizer.betas[1]) == ("mlm", "dynamic", 0.98)
    # a command-line choice wins over the preset's recipe
    assert make_cfg("model=bert", "objective=mlm").objective.name == "mlm"


@pytest.mark.parametrize("override,key", [("model.hiden_size=3", "hiden_size"), ("optimizer.lr=abc", "optimizer.lr"),
                                          ("trainer.max_steps=1.5", "trainer.max_steps")])
def test_typos_and_wrong_types_fail_at_compose(override, key):
    with pytest.raises(ConfigCompositionException, match=key.replace(".", r"\.")):
        make_cfg(override)


@pytest.mark.parametrize("overrides,needle", [
    (["model.hidden_size=100", "model.num_heads=3"], "model.num_heads=3"),
    (["optimizer.lr=-1"], "optimizer.lr=-1"),
    (["data.seq_len=1000"], "data.seq_len=1000"),
    (["model=roberta", "objective=mlm_nsp"], "model.type_vocab_size"),
    (["logger.mode=sometimes"], "logger.mode"),
    (["trainer.grad_accum=0"], "trainer.grad_accum"),
])
def test_inconsistent_values_exit_with_one_line(tmp_path, overrides, needle):
    r = cli(*overrides, "logger.mode=disabled" if "logger" not in overrides[0] else "trainer.max_steps=0",
                run_dir=tmp_path / "run")
    assert r.returncode != 0
    assert needle in r.stderr + r.stdout
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert needle in (tmp_path / "run" / "__main__.log").read_text()  # for runner.reporting.compare's failed-job column


def test_typo_on_command_line_names_the_key(tmp_path):
    r = cli("model.hiden_size=3", run_dir=tmp_path / "run")
    assert r.returncode != 0 and "hiden_size" in r.stderr


def test_max_steps_zero_builds_and_writes_summary(tmp_path):
    r = cli(*TINY, "trainer.max_steps=0", run_dir=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 0 and summary["parameters"]["total"] > 0
    assert summary["parameters"]["total"] == sum(v for k, v in summary["parameters"].items() if k != "total")
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("experiment,steps,batch", [("bert_base_paper", 1_000_000, 256),
                                                    ("roberta_base_paper", 500_000, 8192),
                                                    ("txl_wt103_base_paper", 200_000, 60),
                                                    ("txl_enwik8_base_paper", 400_000, 22)])
def test_paper_recipes_compose(experiment, steps, batch):
    cfg = make_cfg(f"experiment={experiment}")
    validate(cfg)
    assert cfg.trainer.max_steps == steps
    assert cfg.trainer.batch_size * cfg.trainer.grad_accum == batch


def test_bad_objective_value_exits_with_one_line(tmp_path):
    r = cli(*TINY, "objective.span=foo", "trainer.max_steps=0", run_dir=tmp_path / "run")
    assert r.returncode == 2
    assert "objective.span" in r.stderr and "Traceback" not in r.stderr + r.stdout


def test_bad_betas_fail_before_any_work():
    with pytest.raises(ConfigError, match=r"optimizer.betas=\[0.9, 1.5\]"):
        validate(make_cfg("optimizer.betas=[0.9,1.5]"))


@pytest.mark.parametrize("override, message", [
    ("trainer.strategy=zero3", "trainer.strategy='zero3' must be ddp or fsdp"),
    ("trainer.precision=fp8", "trainer.precision='fp8' must be auto, bf16, fp16, fp32"),
    ("trainer.resume=sometimes", "trainer.resume='sometimes' must be true, false or auto"),
])
def test_bad_distributed_settings_fail_before_any_work(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(make_cfg(override))


def test_torchrun_with_more_ranks_than_gpus_is_a_one_line_error(monkeypatch):
    """A node with 2 GPUs cannot give local rank 3 its own: said before the process group or model exist."""
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 2)
    with pytest.raises(ConfigError, match="local rank 3 but this node has 2 GPUs; use --nproc_per_node=2"):
        validate(make_cfg("trainer.device=cuda", "trainer.precision=fp32"))
