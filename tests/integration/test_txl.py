"""Transformer-XL: relative attention against a plain O(n^2) reference, memory semantics, cached evaluation
against the explicit long-context computation, adaptive softmax, and the original code's parameter counts.
This file holds the tests that train or start a process; the others: tests/unit/test_txl.py."""
from __future__ import annotations

import torch

from runner.models.txl import TransformerXL
from runner.objectives.clm import CausalLM
from tests.unit.test_txl import SPECIALS, tiny


def test_copy_task_is_solved_with_memory_and_not_without():
    """Each row is a random sequence of 8 symbols followed by a marker and the same 8 symbols; segments are 9
    tokens, so the copy's source lies in the previous segment: only the memory can carry it."""
    torch.manual_seed(0)
    vocab, L = 20, 8
    results = {}
    for mem_len in (0, 9):
        torch.manual_seed(0)
        c = tiny(vocab_size=vocab, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, mem_len=mem_len)
        m, o = TransformerXL(c), CausalLM.create(c, SPECIALS, vocab)
        opt = torch.optim.Adam([*m.parameters(), *o.parameters()], lr=3e-3)
        g = torch.Generator().manual_seed(1)
        for step in range(300):
            src = torch.randint(4, vocab, (32, L), generator=g)
            rows = torch.cat([src, torch.full((32, 1), 3), src, torch.full((32, 1), 3)], 1)  # (32, 18)
            memory, loss = None, 0.0
            for s in (0, 9):
                x, y = rows[:, s:s + 9], torch.cat([rows, rows[:, :1]], 1)[:, s + 1:s + 10]
                h, memory = m(x, memory, mem_len=mem_len)
                if s == 9:  # the copy segment: predict symbols 2..8 of the copy from symbol 1 onwards
                    loss = o.token_nll(m, h[:, :L - 1], y[:, :L - 1]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        results[mem_len] = float(loss.detach())
    assert results[9] < 0.1, results
    assert results[0] > 2.0, results  # ~log(16) = 2.77: without memory the copy is a guess
