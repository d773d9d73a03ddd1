"""Transformer-XL through the runner: objective=clm on contiguous streams, the memory across steps and checkpoints,
the three-way evaluation, presets, and one-line errors for combinations that cannot work.
The tests of this file that train or start a process: tests/integration/test_txl_run.py."""
from __future__ import annotations

import json

import pytest
import torch

from runner.build import build
from runner.data.tokenizer import SpecialIds
from runner.config.errors import ConfigError
from runner.models.txl import TXLConfig, TransformerXL
from runner.objectives.clm import CausalLM
from runner.engine.optim import build_adamw
from runner.engine.loop import Trainer
from tests.conftest import make_cfg, cli


# A Transformer-XL small enough for 2 CPU cores, on the real wiki data
TXL_TINY = ["model=txl", "model.num_layers=1", "model.hidden_size=32", "model.num_heads=2",
            "model.intermediate_size=64", "model.vocab_size=1000", "model.cutoffs=[200,500]", "model.mem_len=16",
            "model.eval_tgt_len=16", "model.eval_mem_len=32", "data.max_docs=300", "data.seq_len=16",
            "trainer.batch_size=4", "trainer.eval_batches=4", "logger.mode=disabled", "eval.downstream=false"]


def test_micro_batches_keep_separate_memories(tmp_path):
    cfg = make_cfg(*TXL_TINY, "trainer.grad_accum=2")
    trainer = Trainer(cfg, build(cfg), tmp_path)
    trainer.accumulate()
    memory = trainer.built.module.encoder.memory
    assert set(memory) == {0, 1}
    assert not torch.equal(memory[0].next_positions, memory[1].next_positions)  # disjoint rows
    first = trainer.feed.get(2)  # step 1, micro 0 continues micro 0's rows of step 0
    assert torch.equal(first["positions"], memory[0].next_positions)


def tiny_stream_model(mem_len: int):
    """A one-layer Transformer-XL with its causal LM objective (no dropout) and a (2, 4) batch at slot 0."""
    c = TXLConfig(family="txl", vocab_size=30, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                  mem_len=mem_len, hidden_dropout=0.0, attention_dropout=0.0, tokenizer="word")
    specials = SpecialIds(pad=0, unk=1, cls=2, sep=2, mask=3, num_special=4)
    torch.manual_seed(0)
    model, obj = TransformerXL(c), CausalLM.create(c, specials, 30)
    x = torch.randint(4, 30, (2, 4))
    return model, obj, {"input_ids": x, "positions": torch.tensor([0, 100]), "slot": torch.tensor(0)}


def test_memory_restarts_when_rows_do_not_continue():
    model, obj, batch = tiny_stream_model(mem_len=4)
    alone = obj.hidden(model, batch)
    after = obj.hidden(model, {**batch, "positions": torch.tensor([4, 104])})  # continues: memory used
    again = obj.hidden(model, {**batch, "positions": torch.tensor([50, 150])})  # a jump: starts fresh
    assert not torch.allclose(after, alone)
    torch.testing.assert_close(again, alone)


def test_only_the_rows_that_do_not_continue_restart_their_memory():
    model, obj, batch = tiny_stream_model(mem_len=8)
    alone = obj.hidden(model, batch)
    continued = obj.hidden(model, {**batch, "positions": torch.tensor([4, 104])})
    mixed = obj.hidden(model, {**batch, "positions": torch.tensor([8, 0])})  # row 1 wraps to a new stream
    assert not torch.allclose(mixed[0], alone[0])  # row 0 still reads its memory
    torch.testing.assert_close(mixed[1], alone[1])  # row 1 sees none of the stream it left
    after = obj.hidden(model, {**batch, "positions": torch.tensor([12, 4])})  # row 1: only its new stream's past
    model.reset_memory()
    obj.hidden(model, {**batch, "positions": torch.tensor([0, 0])})
    fresh = obj.hidden(model, {**batch, "positions": torch.tensor([4, 4])})
    torch.testing.assert_close(after[1], fresh[1])
    assert not torch.allclose(continued, alone)


def test_document_reset_hides_the_previous_document():
    c = TXLConfig(family="txl", vocab_size=30, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                      mem_len=6, hidden_dropout=0.0, attention_dropout=0.0, tokenizer="word")
    specials = SpecialIds(pad=0, unk=1, cls=2, sep=2, mask=3, num_special=4)
    torch.manual_seed(0)
    model = TransformerXL(c)
    a = torch.tensor([[5, 6, 7, 2, 8, 9], [5, 6, 7, 8, 9, 10]])
    b = torch.tensor([[11, 12, 13, 2, 8, 9], [11, 12, 13, 8, 9, 10]])  # another first document
    outs = {}
    for reset in ("stream", "document"):
        obj = CausalLM.create(c, specials, 30, reset=reset)
        ha = obj.hidden(model, {"input_ids": a, "positions": torch.tensor([0, 0]), "slot": torch.tensor(0)})
        model.reset_memory()
        hb = obj.hidden(model, {"input_ids": b, "positions": torch.tensor([0, 0]), "slot": torch.tensor(0)})
        outs[reset] = (ha, hb)
    ha, hb = outs["document"]
    torch.testing.assert_close(ha[0, 4:], hb[0, 4:])  # after the separator: only its own document counts
    assert not torch.allclose(ha[1, 4:], hb[1, 4:])  # no separator in row 1: one document throughout
    ha, hb = outs["stream"]
    assert not torch.allclose(ha[0, 4:], hb[0, 4:])  # reset=stream reads across documents, as the original


@pytest.mark.slow
@pytest.mark.parametrize("preset,count", [("txl_wt103_base", 151_107_538), ("txl_enwik8_base", 41_055_436)])
def test_max_steps_zero_shows_the_original_parameter_counts(tmp_path, preset, count):
    r = cli(f"model={preset}", "trainer.max_steps=0", "data.max_docs=200", "logger.mode=disabled",
                run_dir=tmp_path / "run")
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["parameters"]["total"] == count
    assert f"{count:,}" in r.stdout + r.stderr  # the summary table


@pytest.mark.parametrize("overrides,needle", [
    (["model=bert", "objective=clm"], "objective=clm trains a causal decoder"),
    (["model=txl", "objective=mlm"], "model.family=txl is a causal decoder"),
    (["model=txl", "objective=mlm", "model.bidirectional=true"], "model.cutoffs=[2000, 6000]"),
    (["model=txl", "objective=mlm", "model.bidirectional=true", "model.cutoffs=[]", "objective.masking=static"],
     "objective.masking=dynamic"),
    (["model=txl", "objective=rtd", "model.bidirectional=true", "model.cutoffs=[]"], "objective=rtd needs"),
    (["model=txl", "model.bidirectional=true"], "model.bidirectional=true lets every token see"),
    (["model=txl", "model.cutoffs=[500,100]"], "model.cutoffs=[500, 100]"),
    (["model=txl", "model.div_val=64"], "model.div_val=64"),
    (["model=txl", "objective.reset=sometimes"], "objective.reset='sometimes'"),
    (["model=txl", "optimizer.decay=step"], "optimizer.decay='step'"),
])
def test_combinations_that_cannot_work_fail_with_one_line(overrides, needle):
    cfg = make_cfg(*overrides, "data.max_docs=50", "logger.mode=disabled")
    with pytest.raises(ConfigError, match=None) as e:
        build(cfg)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_transformer_xl_keys_are_not_keys_of_other_families():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="model.mem_len"):  # TXLConfig's, not EncoderConfig's
        make_cfg("model=bert", "model.mem_len=8")


def test_too_short_train_split_names_the_keys(tmp_path):
    r = cli(*TXL_TINY, "trainer.batch_size=512", "data.seq_len=512", "trainer.max_steps=1",
                run_dir=tmp_path / "run")
    assert r.returncode != 0 and "Traceback" not in r.stderr + r.stdout
    assert "trainer.batch_size" in r.stdout + r.stderr


def test_cosine_decay_anneals_to_the_floor():
    opt, sched = build_adamw(torch.nn.Linear(2, 2), max_steps=100, lr=1.0, betas=[0.9, 0.999], eps=1e-8,
                             weight_decay=0.0, warmup_steps=0, min_lr_ratio=0.1, decay="cosine")
    lrs = []
    for _ in range(101):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1.0) and lrs[50] == pytest.approx(0.55) and lrs[100] == pytest.approx(0.1)
