"""Batches as a pure function of (seed, step, micro-batch): a resumed run sees exactly the batches,
and draws exactly the dynamic masks, that an uninterrupted run would."""
from __future__ import annotations

from typing import Callable

import torch

Batch = dict[str, torch.Tensor]


def trim(batch: Batch) -> Batch:
    """Drop trailing columns that are padding in every row (short sentence pairs need not cost full length),
    and widen the compact stored dtypes to the int64 the model takes (boolean masks stay boolean)."""
    length = int(batch["attention_mask"].sum(1).max())
    out = {}
    for k, v in batch.items():
        v = v[:, :length] if v.dim() == 2 else v
        out[k] = v if k == "special_tokens_mask" else v.long()
    return out


class Batches:
    """Epoch-wise shuffled batches over a fixed example set; prepare() runs per batch (dynamic masking)."""

    def __init__(self, examples: Batch, batch_size: int, seed: int,
                 prepare: Callable[[Batch, torch.Generator], Batch] | None = None):
        self.examples, self.batch_size, self.seed, self.prepare = examples, batch_size, seed, prepare
        self.size = int(examples["input_ids"].shape[0])
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms[epoch] = torch.randperm(self.size, generator=g)
        return self._perms[epoch]

    def get(self, index: int) -> Batch:
        """The index-th batch of the run (index = step * grad_accum + micro)."""
        pos = torch.arange(index * self.batch_size, (index + 1) * self.batch_size)
        epochs = pos // self.size
        idx = torch.cat([self._perm(int(e))[pos[epochs == e] % self.size] for e in epochs.unique()])
        batch = trim({k: v.index_select(0, idx) for k, v in self.examples.items()})
        if self.prepare is not None:
            g = torch.Generator().manual_seed(self.seed * 7_919 + index * 104_729 + 1)
            batch = self.prepare(batch, g)
        return batch

    def epoch_of(self, index: int) -> float:
        """Passes over the example set completed by batch `index`."""
        return (index + 1) * self.batch_size / self.size
