"""Batches as a pure function of (seed, step, micro-batch, rank): a resumed run sees exactly the batches,
and draws exactly the dynamic masks, that an uninterrupted run would; ranks of a distributed run see disjoint
slices of one shared stream; DataLoader workers can fetch them in any order."""
from __future__ import annotations

import hashlib
from typing import Any, Callable

import torch

Batch = dict[str, torch.Tensor]


def to_device(batch: Batch, device: torch.device) -> Batch:
    """The batch's tensors on device (non-blocking from pinned memory)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def widen(batch: Batch) -> Batch:
    """The compact stored dtypes widened to the int64 the model takes (boolean masks stay boolean)."""
    return {k: v if k == "special_tokens_mask" else v.long() for k, v in batch.items()}


def cut(batch: Batch) -> Batch:
    """Drop trailing columns that are padding in every row (short sentence pairs need not cost full length)."""
    length = int(batch["attention_mask"].sum(1).max())
    return {k: v[:, :length] if v.dim() == 2 else v for k, v in batch.items()}


def trim(batch: Batch) -> Batch:
    """cut() the padding columns and widen the compact stored dtypes."""
    return widen(cut(batch))


class TensorExamples:
    """Examples already held as (N, ...) tensors, with the ExampleSet interface (len, rows)."""

    def __init__(self, tensors: Batch):
        self.tensors = tensors

    def __len__(self) -> int:
        return int(self.tensors["input_ids"].shape[0])

    def rows(self, idx: torch.Tensor) -> Batch:
        """The examples at idx."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        return {k: v.index_select(0, idx) for k, v in self.tensors.items()}


class Batches:
    """Epoch-wise shuffled batches over a fixed example set (an ExampleSet reading its rows' tokens on demand, or
    a dict of tensors). prepare() runs per batch (dynamic masking) or, with static=True, per example with a
    generator seeded by the example's index, so each example (each dupe-factor copy) keeps one set of masks for
    the whole run, as BERT's pre-masked data, without storing masked copies.

    With world_size W, rank r's batch `index` is the global batch index * W + r of the single-process stream
    (same permutations, same masks), so the W ranks' batches at one index are disjoint and together form the
    single-process batch `index` of size W * batch_size."""

    def __init__(self, examples: Any, batch_size: int, seed: int,
                 prepare: Callable[[Batch, torch.Generator], Batch] | None = None, rank: int = 0,
                 world_size: int = 1, static: bool = False, layout: Callable[[Batch], Batch] | None = None):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size} (check RANK and WORLD_SIZE)")
        self.examples = TensorExamples(examples) if isinstance(examples, dict) else examples
        self.batch_size, self.seed, self.prepare, self.static = batch_size, seed, prepare, static
        self.layout = layout  # applied last, to the prepared batch (packing: runner/data/packing.py)
        self.rank, self.world_size = rank, world_size
        self.size = len(self.examples)
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms[epoch] = torch.randperm(self.size, generator=g)
        return self._perms[epoch]

    def get(self, index: int) -> Batch:
        """This rank's index-th batch of the run (index = step * grad_accum + micro)."""
        batch = self.padded(index)
        return batch if self.layout is None else self.layout(batch)

    def padded(self, index: int) -> Batch:
        """The index-th batch as right-padded rows, one example each."""
        # The global batch number is unique per (index, rank) and equals index when W = 1, so the stream (and
        # every mask) of a single process is unchanged and ranks never share a mask generator.
        g_index = index * self.world_size + self.rank
        pos = torch.arange(g_index * self.batch_size, (g_index + 1) * self.batch_size)
        epochs = pos // self.size
        idx = torch.cat([self._perm(int(e))[pos[epochs == e] % self.size] for e in epochs.unique()])
        rows = self.examples.rows(idx)
        if self.prepare is None:
            return trim(rows)
        if self.static:  # each row at full width, so its masks never depend on the rows it is batched with
            rows = widen(rows)
            parts = [self.prepare({k: v[r:r + 1] for k, v in rows.items()}, static_generator(self.seed, int(e)))
                     for r, e in enumerate(idx.tolist())]
            return cut({k: torch.cat([p[k] for p in parts]) for k in parts[0]})
        g = torch.Generator().manual_seed(self.seed * 7_919 + g_index * 104_729 + 1)
        return self.prepare(trim(rows), g)

    def epoch_of(self, index: int) -> float:
        """Passes over the example set completed, by all ranks together, once every rank has had batch `index`."""
        return (index + 1) * self.batch_size * self.world_size / self.size


def static_generator(seed: int, example: int) -> torch.Generator:
    """The generator of one example's static masks: a function of the run seed and the example index only."""
    # Hashed to 32 bits: torch's CPU generator (mt19937) keeps only the low 32 bits of a seed.
    digest = hashlib.blake2b(f"static:{seed}:{example}".encode(), digest_size=4).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little"))


class IndexedBatches(torch.utils.data.Dataset):
    """A map-style view for a DataLoader: item i is batches.get(i), so workers may fetch in any order."""

    def __init__(self, batches: Batches):
        self.batches = batches

    def __getitem__(self, index: int) -> Batch:
        return self.batches.get(index)


def _one_thread(worker_id: int) -> None:
    """Workers build batches one each; torch's default threads per worker would oversubscribe the cores."""
    torch.set_num_threads(1)


def batch_loader(batches: Batches, start: int, end: int, num_workers: int) -> torch.utils.data.DataLoader:
    """A DataLoader prefetching batches start .. end - 1 in num_workers background processes."""
    # Its own generator: a DataLoader draws its workers' base seed from it, which would otherwise advance the
    # global RNG and so change every later dropout draw (batches need no seed: they are a function of the index).
    return torch.utils.data.DataLoader(IndexedBatches(batches), batch_size=None, sampler=range(start, end),
                                       num_workers=num_workers, persistent_workers=True, prefetch_factor=2,
                                       worker_init_fn=_one_thread, generator=torch.Generator().manual_seed(0))
