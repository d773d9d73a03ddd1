"""Causal language modelling over contiguous streams with Transformer-XL's memory (Dai et al. 2019).

Batches come from runner/data/lm_stream.py: each row continues its own stream in the next step, so the memory
a row carries is the hidden states of the text right before it. The objective keeps one memory per stream slot
(each gradient-accumulation micro-batch owns its rows; evaluation has its own slot) with the stream position where
it ended; a batch whose rows do not start there (an epoch wrap, a fresh evaluation) starts with no memory.
The memory is part of the objective's state_dict, so a checkpoint resumes with the context it had.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from runner.data.tokenizer import SpecialIds
from runner.models.adaptive import AdaptiveSoftmax
from runner.models.config import EncoderConfig
from runner.objectives.base import Objective, Stats, require

RESETS = ("stream", "document")
EVAL_SLOT = -1  # the memory slot of evaluation batches; training slots are micro-batch indices 0 .. grad_accum-1


@dataclass
class SlotMemory:
    """One stream slot's memory: per layer (B, M, H), where its rows ended, and document ids (reset=document)."""

    layers: list[torch.Tensor]
    next_positions: torch.Tensor  # (B,) stream position right after the memory
    seps_seen: torch.Tensor  # (B,) separators read so far: the document id of the next token
    doc_ids: torch.Tensor  # (B, M) document id of each memory position


class CausalLM(Objective):
    """Next-token prediction with an adaptive (or full) softmax tied to the model's adaptive embeddings."""

    streams = True  # the loop feeds contiguous-stream batches (StreamBatches), not example sets

    def __init__(self, model_config: EncoderConfig, specials: SpecialIds, token_vocab_size: int, name: str = "clm",
                 reset: str = "stream", compare_tokens: int = 256, word_table: Any = None):
        super().__init__(model_config, name)
        require(reset in RESETS, f"objective.reset={reset!r} must be one of {', '.join(RESETS)}")
        require(compare_tokens >= 0, f"objective.compare_tokens={compare_tokens} must be >= 0 (0 skips the "
                "memory / sliding-window comparison)")
        self.reset, self.compare_tokens, self.sep = reset, compare_tokens, specials.sep
        self.char_level = model_config.tokenizer == "char"  # bits per character instead of per token
        self.lm_head = AdaptiveSoftmax(model_config)
        self.memory: dict[int, SlotMemory] = {}
        self.use_memory = True  # False: every segment alone (the comparison's "no memory" evaluation)

    @classmethod
    def check(cls, config: EncoderConfig, name: str) -> None:
        """Causal LM needs the Transformer-XL decoder (the BERT-family encoders attend both ways)."""
        require(config.family == "txl", f"objective={name} trains a causal decoder, but model.family="
                f"{config.family} is a bidirectional encoder; use model=txl (or another txl_* preset), or a masked "
                "objective (mlm, rtd) with this model")

    # ---- settings --------------------------------------------------------------------------------------------
    def lengths(self) -> dict[str, Any]:
        """Memory length, clamp and same_length of the current mode: training's, or evaluation's (the paper
        evaluates with a longer memory, clamped distances and same-length attention)."""
        c = self.config
        if self.training:
            return {"mem_len": c.mem_len, "clamp_len": None, "same_length": False}
        mem = c.eval_mem_len if c.eval_mem_len is not None else c.mem_len
        return {"mem_len": mem if self.use_memory else 0, "clamp_len": c.clamp_len, "same_length": c.same_length}

    # ---- memory ----------------------------------------------------------------------------------------------
    def slot_memory(self, slot: int, positions: torch.Tensor) -> SlotMemory | None:
        """The slot's memory if its rows ended exactly where these rows start, else None (a new stream)."""
        mem = self.memory.get(slot)
        if mem is None or not self.use_memory or not torch.equal(mem.next_positions, positions):
            return None
        return mem

    def document_ids(self, input_ids: torch.Tensor, prev: SlotMemory | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Document id (B, T) of each token (separators end a document, as WT103's <eos>) and the running
        separator count (B,) after the segment."""
        is_sep = input_ids.eq(self.sep).long()
        base = prev.seps_seen if prev is not None else torch.zeros(input_ids.shape[0], dtype=torch.long,
                                                                   device=input_ids.device)
        ids = base[:, None] + is_sep.cumsum(1) - is_sep  # (B, T): separators before t, the token's own excluded
        return ids, base + is_sep.sum(1)

    def hidden(self, encoder: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Run the model on a batch with its slot's memory, store the new memory, return hidden states (B, T, H)."""
        x = batch["input_ids"]
        slot = int(batch["slot"]) if "slot" in batch else (0 if self.training else EVAL_SLOT)
        positions = batch["positions"]
        prev = self.slot_memory(slot, positions)
        settings = self.lengths()
        doc, seps = self.document_ids(x, prev)
        block = None
        if self.reset == "document":  # no query sees another document's keys, in the segment or the memory
            keys = doc if prev is None else torch.cat([prev.doc_ids, doc], dim=1)  # (B, K)
            block = keys[:, None, :] != doc[:, :, None]  # (B, T, K)
        h, layers = encoder(x, prev.layers if prev is not None else None, **settings, block=block)
        if settings["mem_len"] > 0:
            keys = doc if prev is None else torch.cat([prev.doc_ids, doc], dim=1)
            self.memory[slot] = SlotMemory(layers, positions + x.shape[1], seps, keys[:, -settings["mem_len"]:])
        else:
            self.memory.pop(slot, None)
        return h

    def reset_memory(self) -> None:
        """Forget every slot's memory."""
        self.memory.clear()

    # ---- loss ------------------------------------------------------------------------------------------------
    def normalizers(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The loss is a mean over every predicted token of the (accumulated) batch."""
        return {"lm": torch.tensor(batch["labels"].numel())}

    def token_nll(self, encoder: nn.Module, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood (B, T) of labels (B, T) given hidden states (B, T, H)."""
        flat = hidden.reshape(-1, hidden.shape[-1])  # (B*T, H)
        return self.lm_head.nll(flat, labels.reshape(-1), encoder.embeddings).view(labels.shape)

    def loss(self, encoder: nn.Module, batch: dict[str, torch.Tensor],
             norms: dict[str, Any]) -> tuple[torch.Tensor, Stats]:
        """Summed next-token NLL over the batch, normalised by the accumulated token count."""
        nll = self.token_nll(encoder, self.hidden(encoder, batch), batch["labels"])
        total = nll.sum()
        stats = {"lm_nll_sum": total.detach().double(), "lm_count": torch.tensor(nll.numel(), dtype=torch.float64)}
        return total / max(float(norms["lm"]), 1.0), stats

    def metrics(self, stats: Stats) -> dict[str, float]:
        """Mean NLL (nats per token), perplexity, and bits per character for character-level vocabularies."""
        return lm_metrics(float(stats["lm_nll_sum"]), float(stats["lm_count"]), self.char_level)

    def get_extra_state(self) -> dict[str, Any]:
        """The training slots' memories, saved with the checkpoint so a resumed run keeps its context."""
        return {slot: vars(m) for slot, m in self.memory.items() if slot != EVAL_SLOT}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore get_extra_state()'s memories, on the device of this module's parameters."""
        device = self.lm_head.bias.device
        self.memory = {int(slot): SlotMemory(layers=[t.to(device) for t in m["layers"]],
                                             **{k: m[k].to(device) for k in ("next_positions", "seps_seen",
                                                                              "doc_ids")})
                       for slot, m in (state or {}).items()}


def lm_metrics(nll_sum: float, count: float, char_level: bool) -> dict[str, float]:
    """lm_loss (nats per token), perplexity, and bpc (bits per character) when tokens are characters."""
    loss = nll_sum / max(count, 1.0)
    out = {"lm_loss": loss, "perplexity": math.exp(min(loss, 50.0))}
    if char_level:
        out["bpc"] = loss / math.log(2)
    return out
