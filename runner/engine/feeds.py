"""The loop's data: training micro-batches in order (built in-process, or prefetched by DataLoader workers when
trainer.num_workers > 0: the same batches either way) and the fixed, pre-masked validation batches. The feed
follows the encoder's declared `feed`: independent examples (runner/data/batches.py) or contiguous streams that
a recurrent model reads with its memory (runner/data/lm_stream.py). Its state is its position."""
from __future__ import annotations

import functools
from typing import Any

import torch

from runner.data.batches import Batch, Batches, batch_loader, trim
from runner.data.lm_stream import stream_batches
from runner.data.packing import pack
from runner.config.errors import ConfigError


class Feed:
    """Training batches by micro-batch index, the next one at `position`; validation batches in `val`."""

    def __init__(self, batches: Any, val: list[Batch], num_workers: int = 0):
        self.batches, self.val, self.num_workers = batches, val, num_workers
        self.position = 0  # the next micro-batch index the loop reads
        self.end: int | None = None  # the index past the last one the run reads (how far workers prefetch)
        self._stream: Any = None  # iterator of the DataLoader (it keeps the loader alive)
        self._next_index = 0

    def next(self) -> Batch:
        """The batch at `position`; moves on by one."""
        batch = self.get(self.position)
        self.position += 1
        return batch

    def get(self, index: int) -> Batch:
        """The index-th batch, from the background loader when num_workers > 0."""
        if self.num_workers == 0:
            return self.batches.get(index)
        end = max(self.end or 0, index + 1)
        if self._stream is None or index != self._next_index:  # first use, or a jump (resume): start there
            self.close()
            self._stream = iter(batch_loader(self.batches, index, end, self.num_workers))
        try:
            out = next(self._stream)
        except StopIteration:  # read past the planned end (micro-batches taken by hand): reopen from here
            self.close()
            return self.get(index)
        self._next_index = index + 1
        return out

    def epoch_of(self, index: int) -> float:
        """Passes over the training data completed after micro-batch `index`."""
        return self.batches.epoch_of(index)

    def close(self) -> None:
        """Stop the data loader's worker processes, if any are running."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream._shutdown_workers()  # persistent workers outlive the iterator otherwise, until GC

    def state_dict(self) -> dict[str, int]:
        """Where the feed is."""
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a saved position."""
        self.position = int(state["position"])


def build_feed(built: Any, cfg: Any, rank: int = 0, world: int = 1) -> Feed:
    """The feed of a built run for this rank: the encoder's kind, the objective's preparation (masking)."""
    t, obj = cfg.trainer, built.objective
    if built.module.encoder.feed == "streams":  # rows continue their streams step to step: the memory holds context
        try:
            train, val = stream_batches(built.data, obj, cfg, rank, world)
        except ValueError as e:  # a split too short for the rows: one line naming the keys
            raise ConfigError(str(e)) from None
        return Feed(train, val, t.num_workers)
    train = built.data.examples("train", obj.copies, cfg.seed, obj.random_next_prob)
    # Static (BERT): each copy of each example keeps one set of masks; dynamic (RoBERTa): new masks per batch.
    packs = cfg.data.get("packing") is not False and built.module.encoder.packs
    layout = packer(cfg, built.data.specials.pad) if packs else None
    batches = Batches(train, t.batch_size, cfg.seed, prepare=obj.prepare, rank=rank, world_size=world,
                      static=obj.static_masks, layout=layout)
    examples = built.data.examples("validation", 1, cfg.seed + 1, obj.random_next_prob)
    n_val = min(len(examples), t.eval_batches * t.batch_size)
    # Validation masks are drawn once, so every evaluation of every run with this seed scores the same task.
    prepared = obj.prepare(examples.rows(range(n_val)), torch.Generator().manual_seed(cfg.seed + 29))
    val = [trim({k: v[i:i + t.batch_size] for k, v in prepared.items()}) for i in range(0, n_val, t.batch_size)]
    return Feed(batches, val if layout is None else [layout(b) for b in val], t.num_workers)


def packer(cfg: Any, pad_id: int) -> Any:
    """data.packing (null or true on an encoder that reads examples): each batch's examples packed into rows of
    data.pack_width (null: data.seq_len) tokens (runner/data/packing.py)."""
    width = cfg.data.get("pack_width") or cfg.data.seq_len
    return functools.partial(pack, width=int(width), pad_id=pad_id)
