"""What the loop, the objectives, evaluation and fine-tuning ask of an encoder, whatever its family.

A family is a subclass of `EncoderModule` in its own file under runner/models/ that names the `model.family`
values it serves and its config class; runner/models/registry.py finds it there. Nothing outside the family's
file tests which family it is."""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from runner.models.config import EncoderConfig


class EncoderModule(nn.Module):
    """An encoder: token ids in, hidden states (B, T, H) out."""

    families: ClassVar[tuple[str, ...]] = ()  # model.family values this class serves
    config_class: ClassVar[type] = EncoderConfig  # the schema of its `model` group node
    # how the loop feeds it: "examples" (independent sequences, runner/data/batches.py) or "streams" (contiguous
    # rows that continue step to step, read with a memory: runner/data/lm_stream.py)
    feed: ClassVar[str] = "examples"
    # whether it reads packed rows (several examples per row, attention kept within each: runner/data/packing.py)
    packs: ClassVar[bool] = False
    # whether its token-wise layers (embeddings, projections, feed-forwards, norms) run on the real tokens alone,
    # padding taken out (runner/models/unpadded.py); False: on every position of the rows
    unpads: ClassVar[bool] = False
    # whether forward takes perm_mask and target_mapping and returns a query stream that never sees its own
    # position's content (XLNet's two-stream attention: objective=plm)
    two_stream: ClassVar[bool] = False
    config: EncoderConfig

    @property
    def causal(self) -> bool:
        """Whether a token sees only the ones before it."""
        return self.config.causal

    def encode_rows(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
                    attention_mask: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, T, H) of independent right-padded rows (no memory, padding keys blocked): what
        fine-tuning and the probes read."""
        raise NotImplementedError

    def encode_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Hidden states (B, T, H) of one of the loop's batches (its feed's layout; packed rows pass each token's
        position and sequence index)."""
        packed = {k: batch[k] for k in ("position_ids", "sequence_ids")} if "sequence_ids" in batch else {}
        return self(batch["input_ids"], batch.get("token_type_ids"), batch.get("attention_mask"), **packed)

    def forward_flops(self, sequences: int, seq_len: int) -> float:
        """Forward matmul FLOPs of the encoder over `sequences` rows of seq_len tokens (runner/models/flops.py)."""
        raise NotImplementedError

    def batch_flops(self, batch: dict[str, torch.Tensor]) -> float:
        """Forward matmul FLOPs of the encoder over one of the loop's batches: forward_flops of its rows."""
        B, T = batch["input_ids"].shape
        return self.forward_flops(B, T)

    def shard_blocks(self) -> list[nn.Module]:
        """The transformer blocks FSDP may shard one by one (blocks shared across layers stay with the root)."""
        return []

    def rank_state(self) -> Any:
        """State each data-parallel rank keeps for its own rows between steps (a recurrent model's memories),
        saved per rank in checkpoints; None: none."""
        return None

    def load_rank_state(self, state: Any) -> None:
        """Restore rank_state(); None (a checkpoint from another world size): start without it."""
