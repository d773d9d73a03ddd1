"""Unpadding (runner/models/unpadded.py): every token-wise layer of the encoder (embeddings, norms, the QKV, output
and feed-forward projections) and ELECTRA's per-token head run on the real tokens alone, in right-padded rows,
packed rows and fine-tuning batches; only attention's scores see the rows' padding. The reference is the computation
on every position (the encoder before unpadding, forced here by `Unpadded.of` answering None): the same hidden
states at the real tokens and the same losses (fp32, 1e-5), for each of the packing tests' families, objectives and
options."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from runner.build import build
from runner.data.packing import pack, unpack
from runner.engine.feeds import build_feed
from runner.evaluation.downstream.classifier import Classifier, batch_of
from runner.evaluation.downstream.tasks import Example
from runner.models.encoder import Encoder
from runner.models.heads import DiscriminatorHead
from runner.models.unpadded import Unpadded
from tests.conftest import TINY, make_cfg
from tests.unit.test_packing import CASE_IDS, CASES, SHORT, loss_of

# the BERT segment-pair rows of issue 30: rows full enough that packing saves none, padding left in each
SEGMENT_PAIR = ["model=bert", "objective=mlm_nsp", "data.format=segment_pair", "data.seq_len=128"]
TOKEN_WISE = (nn.Linear, nn.Embedding, nn.LayerNorm, nn.RMSNorm)


def layouts(overrides: list[str]):
    """The built run and its first batch as right-padded rows and packed."""
    cfg = make_cfg(*TINY, *SHORT, *overrides, "trainer.max_steps=0")
    built = build(cfg)
    padded = build_feed(built, cfg).batches.padded(0)
    packed = pack(padded, cfg.data.pack_width or cfg.data.seq_len, built.data.specials.pad, always=True)
    return built, {"padded": padded, "packed": packed}


def rows_seen(module: nn.Module, run) -> list[tuple[str, int]]:
    """(module name, rows of its input) for every token-wise layer of every encoder inside `module` and of ELECTRA's
    discriminator head, while `run()` runs."""
    seen: list[tuple[str, int]] = []
    hooks = []
    for owner_name, owner in module.named_modules():
        if not isinstance(owner, (Encoder, DiscriminatorHead)):
            continue
        for name, m in owner.named_modules():
            if isinstance(m, TOKEN_WISE):
                rows = (lambda x: x.numel()) if isinstance(m, nn.Embedding) else (lambda x: x[..., 0].numel())
                hooks.append(m.register_forward_pre_hook(
                    lambda _, args, n=f"{owner_name}.{name}", r=rows: seen.append((n, r(args[0])))))
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.mark.parametrize("overrides", [*CASES, SEGMENT_PAIR], ids=[*CASE_IDS, "bert-segment-pair"])
def test_every_token_wise_layer_computes_the_real_tokens_only(overrides):
    built, batches = layouts(overrides)
    for layout, batch in batches.items():
        real = int(batch["attention_mask"].sum())
        assert real < batch["input_ids"].numel(), layout  # the rows hold padding to leave out
        seen = rows_seen(built.module, lambda: loss_of(built, batch))
        assert seen and {rows for _, rows in seen} == {real}, (layout, [s for s in seen if s[1] != real][:5])
        if "model=electra" in overrides:  # the generator's encoder and the discriminator's head too
            assert any(".disc_head." in n for n, _ in seen) and any("generator" in n for n, _ in seen)


def test_fine_tuning_batches_compute_the_real_tokens_only():
    cfg = make_cfg(*TINY, *SHORT, "model=modernbert", "trainer.max_steps=0")
    model = Classifier(build(cfg).module.encoder, 3, "mean").eval()
    examples = [Example(ids=[2, *range(10, 10 + n), 3], token_types=None, label=n % 3) for n in (3, 17, 1, 8, 30)]
    for packing in (False, True):
        batch = batch_of(model, examples, 0, 80, torch.device("cpu"), packing=packing)
        with torch.no_grad():
            seen = rows_seen(model, lambda: model.classify(batch))
        assert {rows for _, rows in seen} == {sum(len(e.ids) for e in examples)}, packing


def outputs(built, layout: str, batch):
    """The encoder's hidden states in the padded layout (eval mode), and the training loss and stats of a batch."""
    built.module.encoder.eval()
    with torch.no_grad():
        h = built.module.encoder.encode_batch(batch)
    built.module.train()
    return (h if layout == "padded" else unpack(h, batch)), *loss_of(built, batch)


@pytest.mark.parametrize("overrides", [*CASES, SEGMENT_PAIR], ids=[*CASE_IDS, "bert-segment-pair"])
def test_unpadded_outputs_equal_the_computation_on_every_position(overrides, monkeypatch):
    built, batches = layouts(overrides)
    for layout, batch in batches.items():
        h, loss, stats = outputs(built, layout, batch)
        with monkeypatch.context() as m:  # the reference: every position computed, padding included
            m.setattr(Unpadded, "of", classmethod(lambda cls, mask: None))
            h_ref, loss_ref, stats_ref = outputs(built, layout, batch)
        real = unpack(batch["attention_mask"], batch).bool() if layout == "packed" else batch["attention_mask"].bool()
        torch.testing.assert_close(h[real], h_ref[real], rtol=1e-5, atol=1e-5, msg=layout)
        assert h[~real].eq(0).all()  # padding positions hold zeros: nothing was computed there
        torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-5, msg=layout)
        for key in stats_ref:
            torch.testing.assert_close(stats[key].float(), stats_ref[key].float(), rtol=1e-5, atol=1e-4, msg=key)


def test_the_layout_takes_and_pads_back():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    layout = Unpadded.of(mask)
    assert layout.tokens.tolist() == [0, 1, 3]
    values = torch.arange(6.0).view(2, 3, 1)
    taken = layout.take(values)
    assert taken.squeeze(1).tolist() == [0.0, 1.0, 3.0]
    assert layout.pad(taken).squeeze(2).tolist() == [[0.0, 1.0, 0.0], [3.0, 0.0, 0.0]]
    assert layout.take(torch.arange(3)[None]).tolist() == [0, 1, 0]  # a (1, T) row shared by every row
    assert Unpadded.of(torch.ones(2, 3)) is None and Unpadded.of(None) is None  # eager: nothing to take out


def reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, window_size=(-1, -1)):
    """The variable-length kernel's contract on the CPU: each sequence of (N, heads, d) attended alone, keys within
    window_size (left, right) of the query ((-1, -1): all)."""
    out = torch.empty_like(q)
    for a, b in zip(cu_q[:-1].tolist(), cu_q[1:].tolist()):
        pos = torch.arange(b - a)
        allowed = torch.ones(b - a, b - a, dtype=torch.bool)
        if window_size != (-1, -1):
            rel = pos[None, :] - pos[:, None]
            allowed = (rel >= -window_size[0]) & (rel <= window_size[1])
        y = torch.nn.functional.scaled_dot_product_attention(*(t[a:b].transpose(0, 1) for t in (q, k, v)),
                                                             attn_mask=allowed)
        out[a:b] = y.transpose(0, 1)
    return out


@pytest.mark.parametrize("overrides", [["model=modernbert", "model.num_layers=2"], ["model=bert", "objective=mlm"],
                                       ["model=electra", "model.num_layers=2"],
                                       ["model=modernbert", "model.num_layers=2", "data.pack_width=512"]],
                         ids=["modernbert", "bert", "electra", "modernbert-wide"])
def test_the_variable_length_path_gives_the_padded_attention(overrides, monkeypatch):
    """Where the device has a variable-length kernel (CUDA: the test below checks the real one), attention
    runs on the N tokens sequence by sequence; here the kernel's contract, computed by hand, stands in for it: the
    same hidden states and loss as the padded rows under their mask, in both layouts, windows included."""
    import runner.models.encoder as encoder_module

    built, batches = layouts(overrides)
    encoder = built.module.encoder
    for layout, batch in batches.items():
        h_ref, loss_ref, _ = outputs(built, layout, batch)
        calls = []
        with monkeypatch.context() as m:
            m.setattr(encoder_module, "kernel_runs_on", lambda x: True)
            m.setattr(encoder_module, "varlen_kernel",
                      lambda: lambda *a, **k: calls.append(k["window_size"]) or reference_varlen(*a, **k))
            h, loss, _ = outputs(built, layout, batch)
        c = encoder.config
        windows = {(-1, -1)} if c.local_window is None else {(-1, -1), (c.local_window // 2,) * 2}
        assert set(calls) == windows  # the kernel ran for every layer: global ones, and sliding windows
        real = unpack(batch["attention_mask"], batch).bool() if layout == "packed" else batch["attention_mask"].bool()
        torch.testing.assert_close(h[real], h_ref[real], rtol=1e-5, atol=1e-5, msg=layout)
        torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-5, msg=layout)


def test_sequence_bounds_of_padded_and_packed_rows():
    from runner.models.unpadded import sequence_bounds

    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    cu, longest = sequence_bounds(Unpadded.of(mask), None)
    assert cu.tolist() == [0, 3, 5] and longest == 3 and cu.dtype == torch.int32
    seq = torch.tensor([[1, 1, 2, 0], [1, 2, 2, 2]])  # packed: two examples per row
    cu, longest = sequence_bounds(Unpadded.of(seq.ne(0)), seq)
    assert cu.tolist() == [0, 2, 3, 4, 7] and longest == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the variable-length kernel needs CUDA")
@pytest.mark.parametrize("overrides", [["model=modernbert", "model.num_layers=2"], ["model=bert", "objective=mlm"]],
                         ids=["modernbert", "bert"])
def test_the_cuda_variable_length_kernel_gives_the_padded_attention(overrides, monkeypatch):
    """On CUDA in bf16 autocast: torch's own kernel against the padded rows under their mask (bf16 tolerance)."""
    import runner.models.encoder as encoder_module

    built, batches = layouts(overrides)
    encoder = built.module.encoder.cuda().eval()
    for layout, batch in batches.items():
        batch = {k: v.cuda() for k, v in batch.items()}
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            h = encoder.encode_batch(batch).float()
            with monkeypatch.context() as m:
                m.setattr(encoder_module, "varlen_kernel", lambda: None)
                h_ref = encoder.encode_batch(batch).float()
        real = batch["attention_mask"].bool()
        torch.testing.assert_close(h[real], h_ref[real], rtol=2e-2, atol=2e-2, msg=layout)
