"""Sequence packing: a batch of right-padded examples laid out as fewer, fuller rows (data.packing=true).

Each micro-batch keeps its examples, masks and labels; only the layout changes. Examples are placed whole into rows
of `width` tokens, first-fit by decreasing length (examples never split), and each token carries the index of its
example within the row (`sequence_ids`, 1-based; 0 for the padding left at row ends) and its position within its
example (`position_ids`). The encoder restricts attention to tokens of the same example (a block-diagonal document
mask), so every example is encoded exactly as it is alone in a padded row: the same logits and losses, computed on
a fraction of the padding (MosaicBERT's and ModernBERT's unpadding and packing).

Per-token keys (B, T) move with their tokens; per-example keys (B,) (pair labels) stay in example order, and
`starts` (B,) gives each example's first token as a flat index into the packed (R * width) positions (where a pair
head reads [CLS]), `lengths` (B,) its tokens."""
from __future__ import annotations

import torch

Batch = dict[str, torch.Tensor]

IGNORE = -100  # the objectives' "no label" (runner/objectives/masking.py)


def first_fit(lengths: list[int], width: int) -> list[int]:
    """The row of each example: examples in decreasing length (ties in order), each into the first row with room."""
    room: list[int] = []
    row = [0] * len(lengths)
    for e in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        n = lengths[e]
        if n > width:
            raise ValueError(f"an example of {n} tokens does not fit a packed row of {width}")
        for r, free in enumerate(room):
            if free >= n:
                break
        else:
            r = len(room)
            room.append(width)
        row[e], room[r] = r, room[r] - n
    return row


def pack(batch: Batch, width: int, pad_id: int, always: bool = False) -> Batch:
    """The batch's examples (right-padded rows, real tokens first: attention_mask) packed into rows of at most `width`
    tokens, trailing all-padding columns cut; see the module docstring for the keys it adds. When packing would save
    no row, the batch is returned as it is (unless `always`)."""
    mask = batch["attention_mask"].bool()  # (B, Tb)
    B, Tb = mask.shape
    lengths = mask.sum(1)  # (B,)
    dev = mask.device
    row = torch.tensor(first_fit(lengths.tolist(), max(width, Tb)), dtype=torch.long, device=dev)
    R = int(row.max()) + 1 if B else 0
    if R == B and not always:  # no row saved (full examples): the padded rows, without a document mask to build
        return batch
    # offset of each example in its row: the lengths of the examples placed in that row before it (example order)
    earlier = torch.ones(B, B, dtype=torch.bool, device=dev).tril(-1)  # (B, B): j < i
    same = row[:, None].eq(row[None, :]) & earlier  # (B, B): j < i, in the same row
    offset = (same.long() * lengths[None, :]).sum(1)  # (B,)
    T = int((offset + lengths).max()) if B else 0
    rank = same.sum(1) + 1  # 1-based index of the example within its row
    src = mask.reshape(-1).nonzero().squeeze(1)  # (N,) flat positions of real tokens, example-major
    example = src // Tb
    within = src % Tb  # position within its example (right padding: the real tokens come first)
    dest = row[example] * T + offset[example] + within  # (N,) flat positions in the packed (R, T) layout
    out: Batch = {}
    for key, v in batch.items():
        if v.dim() == 2 and v.shape == (B, Tb):
            fill = pad_id if key == "input_ids" else IGNORE if key == "labels" else \
                True if key == "special_tokens_mask" else 0
            packed = torch.full((R * T,), fill, dtype=v.dtype, device=dev)
            packed[dest] = v.reshape(-1)[src]
            out[key] = packed.view(R, T)
        else:
            out[key] = v
    positions = torch.zeros(R * T, dtype=torch.long, device=dev)
    positions[dest] = within
    sequences = torch.zeros(R * T, dtype=torch.long, device=dev)
    sequences[dest] = rank[example]
    out["position_ids"], out["sequence_ids"] = positions.view(R, T), sequences.view(R, T)
    out["starts"], out["lengths"] = row * T + offset, lengths
    return out


def first_tokens(hidden: torch.Tensor, starts: torch.Tensor | None) -> torch.Tensor:
    """Each example's first-token ([CLS]) hidden state (B, H), from padded (B, T, H) states (starts None) or packed
    (R, T, H) ones, whose examples start at the flat positions `starts` (B,)."""
    if starts is None:
        return hidden[:, 0]
    return hidden.reshape(-1, hidden.shape[-1]).index_select(0, starts)


def unpack(values: torch.Tensor, batch: Batch, fill: float = 0.0) -> torch.Tensor:
    """Per-token values (R, T, ...) of a packed batch back in the padded layout (B, max length, ...), `fill` at padding
    (the reference layout tests compare against)."""
    starts, lengths = batch["starts"], batch["lengths"]
    B, L = starts.shape[0], int(lengths.max())
    j = torch.arange(L, device=starts.device)
    valid = j[None, :] < lengths[:, None]  # (B, L)
    flat = values.reshape(-1, *values.shape[2:])
    idx = (starts[:, None] + j[None, :]).clamp(max=flat.shape[0] - 1)  # (B, L)
    out = flat[idx.reshape(-1)].view(B, L, *values.shape[2:])
    shape = valid.shape + (1,) * (values.dim() - 2)
    return torch.where(valid.view(shape), out, torch.full_like(out, fill))


def sequences(batch: Batch) -> int:
    """Examples in a batch: one per row when padded, `starts` of them when packed."""
    starts = batch.get("starts")
    return int(batch["input_ids"].shape[0]) if starts is None else int(starts.numel())


def real_tokens(batch: Batch) -> int:
    """The real (non-padding) tokens of a micro-batch."""
    mask = batch.get("attention_mask")
    return int(batch["input_ids"].numel()) if mask is None else int(mask.sum())


def layout_counts(batch: Batch) -> tuple[int, int, int]:
    """(real tokens, positions computed, positions the padded layout would compute) of a micro-batch."""
    real, computed = int(batch["attention_mask"].sum()), batch["input_ids"].numel()
    lengths = batch.get("lengths")
    padded = computed if lengths is None else int(lengths.numel() * lengths.max())
    return real, computed, padded
