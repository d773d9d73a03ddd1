"""Batches for causal language modelling over contiguous streams, as Transformer-XL's LMOrderedIterator (Dai et al.
2019, kimiyoung/transformer-xl data_utils.py): the split's token stream is cut into R equal rows and each batch
row reads the next segment of its own row, so a model's memory (the previous segment's hidden states) holds the
real context of the tokens it predicts. As runner.data.batches.Batches, a batch is a pure function of its index
and rank, so resumed runs and DataLoader workers see exactly the batches of an uninterrupted run."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from runner.data.stream import TokenStream

Batch = dict[str, torch.Tensor]

EVAL_SLOT = -1  # the memory slot of evaluation batches; training slots are micro-batch indices 0 .. grad_accum-1


def stream_rows(stream: TokenStream, rows: int, length: int | None = None) -> np.ndarray:
    """The first `rows` * n tokens as (rows, n) int64, n = `length` or stream.length // rows (remainder dropped)."""
    n = stream.length // rows if length is None else int(length)
    if rows * n > stream.length:
        raise ValueError(f"{rows} rows of {n} tokens need {rows * n} tokens; the stream has {stream.length}")
    return stream.tokens(0, rows * n).astype(np.int64).reshape(rows, n)  # (rows, n)


class StreamBatches:
    """Segments of T tokens (with T shifted next-token labels) of R = batch_size * grad_accum * world_size
    contiguous rows of a token stream; batch `index` of a rank holds the same segment of its own batch_size rows."""

    def __init__(self, stream: TokenStream, batch_size: int, tgt_len: int, *, grad_accum: int = 1,
                 rank: int = 0, world_size: int = 1, max_segments: int | None = None, what: str = "train",
                 prepare: Callable[[Batch, torch.Generator], Batch] | None = None, num_special: int = 0,
                 seed: int = 0, stride: int | None = None):
        """prepare (a masked objective's masking) runs on every batch with a generator of (seed, index, rank),
        after special_tokens_mask (ids < num_special) is added, so resumed runs draw the same masks. stride: tokens
        between a row's consecutive segments (null: tgt_len; XLNet's reuse_len makes segments overlap)."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size} (check RANK and WORLD_SIZE)")
        if batch_size < 1 or tgt_len < 1 or grad_accum < 1:
            raise ValueError(f"trainer.batch_size ({batch_size}), data.seq_len ({tgt_len}) and trainer.grad_accum "
                             f"({grad_accum}) must be at least 1")
        self.stream, self.batch_size, self.tgt_len = stream, int(batch_size), int(tgt_len)
        self.grad_accum, self.rank, self.world_size = int(grad_accum), int(rank), int(world_size)
        self.rows = self.batch_size * self.grad_accum * self.world_size  # R: every row is read by exactly one slot
        self.row_len = stream.length // self.rows  # n: the remainder (< R tokens) is dropped, as LMOrderedIterator
        # A segment needs T + 1 tokens (its labels run one past its inputs), so the last row token only ever
        # serves as a label; the partial tail segment is dropped so every batch has the same (B, T) shape.
        self.stride = int(stride or tgt_len)
        segments = (self.row_len - 1 - self.tgt_len) // self.stride + 1 if self.row_len > self.tgt_len else 0
        if segments == 0:
            fix = "lower trainer.batch_size"
            fix += ", trainer.grad_accum" if self.grad_accum > 1 else ""
            raise ValueError(
                f"the {what} split has {stream.length} tokens, too few for {self.rows} rows "
                f"(trainer.batch_size {self.batch_size} x trainer.grad_accum {self.grad_accum} x {self.world_size} "
                f"ranks) of segments of {self.tgt_len}+1 tokens; {fix} or data.seq_len, or use more documents "
                f"(data.max_docs)")
        if max_segments is not None and max_segments < 1:
            raise ValueError(f"max_segments must be at least 1, got {max_segments}")
        self.segments = segments if max_segments is None else min(segments, int(max_segments))  # S
        self._offsets = np.arange(self.tgt_len + 1, dtype=np.int64)  # (T + 1,) inputs and the final label
        self.prepare, self.num_special, self.seed = prepare, int(num_special), int(seed)

    def __len__(self) -> int:
        """S: segments per row, i.e. optimizer steps per epoch."""
        return self.segments

    def segment(self, index: int) -> tuple[int, int]:
        """(epoch, k) of batch `index`: the pass over the rows and the segment k of each row it reads."""
        step = index // self.grad_accum
        return step // self.segments, step % self.segments

    def first_rows(self, index: int) -> np.ndarray:
        """(B,) global row numbers read by this rank at batch `index`."""
        micro = index % self.grad_accum
        first = (micro * self.world_size + self.rank) * self.batch_size  # ranks of one micro-batch are adjacent
        return np.arange(first, first + self.batch_size, dtype=np.int64)

    def get(self, index: int) -> Batch:
        """This rank's index-th batch (index = step * grad_accum + micro): segment k = step % S of its rows."""
        _, k = self.segment(index)
        starts = self.first_rows(index) * self.row_len + k * self.stride  # (B,) stream position of input 0
        # One vectorised read: B calls of tokens() pay a Python round trip (and an np.insert) per row; measured on
        # a 20M-token stream, at() took 0.07 ms against 0.18 (B 16, T 128), 0.8 against 2.8 (B 256, T 128), and
        # 0.9 against 0.7 (B 64, T 512), all far below a training step.
        ids = self.stream.at(starts[:, None] + self._offsets).astype(np.int64)  # (B, T + 1)
        ids = torch.from_numpy(ids)
        batch = {
            "input_ids": ids[:, :-1].contiguous(),  # (B, T)
            "labels": ids[:, 1:].contiguous(),  # (B, T): the next token of each input
            "attention_mask": torch.ones(self.batch_size, self.tgt_len, dtype=torch.long),  # (B, T) no padding
            # (B,) where each row's segment starts: memory ending at positions - 1 is this row's immediate past.
            "positions": torch.from_numpy(starts),
            # which micro-batch's rows these are: a model keeps one memory per slot (runner/objectives/clm.py)
            "slot": torch.tensor(index % self.grad_accum),
        }
        if self.prepare is None:
            return batch
        batch["special_tokens_mask"] = batch["input_ids"] < self.num_special  # (B, T) never masked
        g = torch.Generator().manual_seed(self.seed * 7_919 + (index * self.world_size + self.rank) * 104_729 + 1)
        return self.prepare(batch, g)

    def epoch_of(self, index: int) -> float:
        """Passes over the rows' tokens completed, by all ranks and micro-batches together, after batch `index`."""
        # An epoch is S steps of grad_accum micro-batches; every rank advances in lockstep.
        return (index + 1) / (self.grad_accum * self.segments)


def stream_batches(data: Any, objective: Any, cfg: Any, rank: int = 0, world: int = 1) -> tuple[StreamBatches, list]:
    """The loop's batches for a Transformer-XL run: training rows over the train split (masked per batch when the
    objective masks, e.g. objective=mlm on a bidirectional backbone), and the validation segments in reading order
    under the evaluation memory slot (EVAL_SLOT). Raises ValueError when a split is too short for its rows."""
    t, m = cfg.trainer, cfg.model
    prepare = objective.prepare  # masks when the objective masks (mlm); the identity for a causal LM
    stride = cfg.objective.get("reuse_len") or None  # XLNet: the next segment starts after the reused context
    sep, n_special = data.specials.sep, data.specials.num_special
    train = StreamBatches(TokenStream(data.splits["train"], sep), t.batch_size, cfg.data.seq_len,
                          grad_accum=t.grad_accum, rank=rank, world_size=world, prepare=prepare,
                          num_special=n_special, seed=cfg.seed, stride=stride)
    val_stream = TokenStream(data.splits["validation"], sep)
    tgt = m.eval_tgt_len or cfg.data.seq_len
    # as many rows as the batch, or fewer on a small validation split (every row needs one segment + 1 token)
    rows = max(1, min(t.batch_size, (val_stream.length - 1) // tgt))
    # validation masks drawn once (seed + 29), as the example path does: every evaluation scores the same task
    val = StreamBatches(val_stream, rows, tgt, max_segments=t.eval_batches, what="validation", prepare=prepare,
                        num_special=n_special, seed=cfg.seed + 29, stride=stride)
    return train, [{**val.get(i), "slot": torch.tensor(EVAL_SLOT)} for i in range(len(val))]
