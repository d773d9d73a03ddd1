"""data.packing=true: each micro-batch's examples packed into fewer rows, attention kept within each example. The
padded layout is the reference: the same hidden states, logits and losses (fp32, 1e-5), the same training run, exact
resume (tests/integration/test_train.py) and accumulation, and the padding share before and after in the summary.
The tests of this file that train or start a process: tests/integration/test_packing.py."""
from __future__ import annotations

import pytest
import torch
import torch._dynamo as dynamo

from runner.build import build
from runner.data.packing import first_fit, layout_counts, pack, unpack
from runner.evaluation.downstream.classifier import Classifier, batch_of
from runner.evaluation.downstream.tasks import Example
from runner.config.errors import ConfigError
from runner.engine.feeds import build_feed
from runner.engine.parallel import capture_data_dependent_ops
from runner.engine.loop import Trainer
from tests.conftest import TINY, make_cfg


# short examples (documents end inside a row), no dropout: padded and packed must agree
SHORT = ["data.format=doc_sentences", "data.seq_len=256", "model.hidden_dropout=0", "model.attention_dropout=0"]


def padded_rows() -> dict[str, torch.Tensor]:
    """Three right-padded examples of 5, 2 and 4 tokens, width 6, with a per-example label."""
    ids = torch.tensor([[2, 11, 12, 13, 3, 0], [2, 3, 0, 0, 0, 0], [2, 21, 22, 3, 0, 0]])
    return {"input_ids": ids, "attention_mask": ids.ne(0), "labels": torch.where(ids == 12, 12, -100),
            "special_tokens_mask": ids.lt(4), "next_sentence_label": torch.tensor([1, 0, 1])}


def test_first_fit_places_the_longest_first_and_fills_rows():
    assert first_fit([5, 2, 3], 6) == [0, 1, 1]  # 5 opens row 0; 3 does not fit beside it; 2 joins the 3
    assert first_fit([3, 3, 3, 3], 6) == [0, 0, 1, 1]
    assert first_fit([6, 1, 6], 6) == [0, 2, 1]
    with pytest.raises(ValueError, match="does not fit"):
        first_fit([7], 6)


def test_pack_keeps_every_token_with_its_position_and_sequence():
    batch = padded_rows()
    packed = pack(batch, 6, pad_id=0)
    assert packed["input_ids"].shape == (2, 6)  # 11 tokens in two rows of 6 instead of three of 5
    assert packed["attention_mask"].sum() == 11
    for key in ("input_ids", "attention_mask", "labels", "special_tokens_mask"):
        back = unpack(packed[key], packed, fill=0)
        width = back.shape[1]
        real = batch["attention_mask"][:, :width]
        assert torch.equal(back[real], batch[key][:, :width][real]), key
    assert torch.equal(packed["next_sentence_label"], batch["next_sentence_label"])  # per example: in order
    assert torch.equal(packed["lengths"], torch.tensor([5, 2, 4]))
    flat = packed["input_ids"].reshape(-1)
    assert flat[packed["starts"]].eq(2).all()  # every start is a [CLS]
    pos, seq = packed["position_ids"].reshape(-1), packed["sequence_ids"].reshape(-1)
    assert pos[packed["starts"]].eq(0).all()
    assert (seq == 0).sum() == 1 and packed["labels"].reshape(-1)[seq == 0].eq(-100).all()
    assert packed["special_tokens_mask"].reshape(-1)[seq == 0].all() and flat[seq == 0].eq(0).all()
    assert layout_counts(packed) == (11, 12, 15) and layout_counts(batch) == (11, 18, 18)


def loss_of(built, batch):
    norms = {k: float(v) for k, v in built.objective.normalizers(batch).items()}
    torch.manual_seed(0)
    return built.module(batch, norms)


# every family, objective and option the packed layout serves (tests/unit/test_unpadding.py reuses them)
CASES = [
    ["model=bert", "objective=mlm"],  # learned positions, post-norm
    ["model=roberta"],  # padding-aware positions from pad_id + 1
    ["model=bert", "objective=mlm_nsp", "data.format=sentence_pair"],  # the pair head on each example's [CLS]
    ["model=albert", "objective=mlm_sop", "data.format=sop_pair"],  # factorised embeddings, shared layers
    ["model=electra"],  # generator and discriminator both read the packed rows
    ["model=modernbert"],  # rotary positions per sequence, GeGLU, pre-norm, sliding windows
    ["model=bert", "objective=mlm", "model.position=alibi", "model.local_window=16", "model.global_every=2"],
    ["model=roberta", "data.pack_width=600"],  # rows wider than the position table: positions are per sequence
    ["model=modernbert", "data.pack_width=512"],
]
CASE_IDS = ["bert", "roberta", "bert-nsp", "albert-sop", "electra", "modernbert", "alibi-window", "roberta-wide",
            "modernbert-wide"]


@pytest.mark.parametrize("overrides", CASES, ids=CASE_IDS)
def test_packed_rows_give_the_padded_hidden_states_and_loss(overrides):
    cfg = make_cfg(*TINY, *SHORT, *overrides, "trainer.max_steps=0")
    built = build(cfg)
    padded = build_feed(built, cfg).batches.padded(0)
    packed = pack(padded, cfg.data.pack_width or cfg.data.seq_len, built.data.specials.pad)
    assert packed["input_ids"].shape[0] < padded["input_ids"].shape[0]  # fewer rows: examples share them
    encoder = built.module.encoder.eval()
    with torch.no_grad():
        h_pad, h_packed = encoder.encode_batch(padded), unpack(encoder.encode_batch(packed), packed)
    real = padded["attention_mask"].bool()[:, :h_packed.shape[1]]
    torch.testing.assert_close(h_packed[real], h_pad[:, :h_packed.shape[1]][real], rtol=1e-5, atol=1e-5)
    built.module.train()
    (loss_a, stats_a), (loss_b, stats_b) = loss_of(built, padded), loss_of(built, packed)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-5)
    for key in stats_a:  # counts equal, sums to float tolerance
        torch.testing.assert_close(stats_b[key].float(), stats_a[key].float(), rtol=1e-5, atol=1e-4, msg=key)


def test_the_packed_training_step_traces_as_one_graph():
    cfg = make_cfg(*TINY, *SHORT, "model=modernbert", "data.packing=true", "trainer.max_steps=0")
    built = build(cfg)
    batch = build_feed(built, cfg).get(0)
    assert "sequence_ids" in batch
    norms = {k: float(v) for k, v in built.objective.normalizers(batch).items()}
    capture_data_dependent_ops()
    dynamo.reset()
    explained = dynamo.explain(lambda b: built.module(b, norms)[0])(batch)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


def grads(tmp_path, batch: int, accum: int) -> dict[str, torch.Tensor]:
    # static masks: each example's masks do not depend on the micro-batch it is drawn in
    cfg = make_cfg(*TINY, *SHORT, "model=modernbert", "data.packing=true", "objective.masking=static",
                   "objective.dupe_factor=1", f"trainer.batch_size={batch}", f"trainer.grad_accum={accum}")
    trainer = Trainer(cfg, build(cfg), tmp_path)
    trainer.accumulate()
    return {n: p.grad.clone() for n, p in trainer.module.named_parameters() if p.grad is not None}


@pytest.mark.slow
def test_packed_accumulation_equals_the_large_batch(tmp_path):
    big, small = grads(tmp_path / "a", 8, 1), grads(tmp_path / "b", 4, 2)
    assert big.keys() == small.keys()
    for name in big:
        torch.testing.assert_close(small[name], big[name], rtol=1e-4, atol=1e-6, msg=name)


def test_packing_a_family_that_reads_streams_is_one_line():
    with pytest.raises(ConfigError, match="data.packing=true packs examples.*model.family=txl.*drop data.packing"):
        build(make_cfg("model=txl", "data.packing=true", "model.cutoffs=[]", "trainer.max_steps=0",
                       "logger.mode=disabled"))


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_fine_tuning_logits_are_the_same_packed(pooling):
    cfg = make_cfg(*TINY, *SHORT, "model=modernbert", "trainer.max_steps=0")
    encoder = build(cfg).module.encoder
    model = Classifier(encoder, 3, pooling).eval()
    examples = [Example(ids=[2, *range(10, 10 + n), 3], token_types=None, label=n % 3) for n in (3, 17, 1, 8, 30)]
    padded = batch_of(model, examples, 0, 80, torch.device("cpu"), packing=False)
    packed = batch_of(model, examples, 0, 80, torch.device("cpu"), packing=True)
    assert packed["input_ids"].shape[0] == 1 and "sequence_ids" in packed
    with torch.no_grad():
        torch.testing.assert_close(model.classify(packed), model.classify(padded), rtol=1e-5, atol=1e-5)
