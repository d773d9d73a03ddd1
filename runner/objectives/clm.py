"""Causal language modelling over contiguous streams with Transformer-XL's memory (Dai et al. 2019).

Batches come from runner/data/lm_stream.py: each row continues its own stream in the next step, so the memory
a row carries is the hidden states of the text right before it. The model keeps the memories
(TransformerXL.encode_stream: one per stream slot, kept in checkpoints); this objective adds the adaptive softmax
tied to the model's adaptive embeddings and the next-token loss.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from runner.data.stream import TokenStream
from runner.data.tokenizer import SpecialIds
from runner.models.flops import adaptive_softmax_flops
from runner.data.lm_stream import stream_rows
from runner.objectives.long_context import compare_contexts, context_metrics, context_table, lm_metrics
from runner.models.adaptive import AdaptiveSoftmax
from runner.models.base import EncoderModule
from runner.models.config import EncoderConfig
from runner.objectives.base import Objective, ObjectiveConfig, Report, Stats
from runner.config.errors import require
from runner.objectives.scoring import device_of, per_token_sum, plain_hidden

RESETS = ("stream", "document")


@dataclass
class CLMConfig(ObjectiveConfig):
    """objective=clm: causal language modelling over contiguous streams with Transformer-XL's memory."""

    _target_: str = "runner.objectives.clm.CausalLM"
    name: str = "clm"
    # stream: the memory carries across documents, as the original over WikiText-103 and enwik8 (it restarts only
    # when a row's stream does, at an epoch wrap); document: no token attends across a document separator
    reset: str = "stream"
    # tokens of the final comparison predicted by the sliding-window evaluation (Al-Rfou et al.: one forward of the
    # whole window per token, so keep it small on a CPU); 0 skips the sliding window
    compare_tokens: int = 256

    def check(self) -> None:
        """The reset mode and the comparison's size."""
        require(self.reset in RESETS, f"objective.reset={self.reset!r} must be one of {', '.join(RESETS)}")
        require(self.compare_tokens >= 0, f"objective.compare_tokens={self.compare_tokens} must be >= 0 (0 skips "
                "the memory / sliding-window comparison)")


class CausalLM(Objective):
    """Next-token prediction with an adaptive (or full) softmax tied to the model's adaptive embeddings."""

    options_class = CLMConfig
    feeds = ("streams",)
    causal = True
    lm_metric = "lm_loss"

    def __init__(self, options: CLMConfig, model_config: EncoderConfig, specials: SpecialIds, token_vocab_size: int,
                 word_table: Any = None):
        super().__init__(options, model_config)
        self.reset, self.compare_tokens, self.sep = options.reset, options.compare_tokens, specials.sep
        self.char_level = model_config.tokenizer == "char"  # bits per character instead of per token
        self.lm_head = AdaptiveSoftmax(model_config)

    def hidden(self, encoder: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Hidden states (B, T, H) of a stream batch, read with (and updating) its slot's memory."""
        return encoder.encode_stream(batch, self.sep, document_reset=self.reset == "document")

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

    @property
    def headline(self) -> tuple[str, ...]:
        """The loss, and bits per character on character vocabularies (the papers' enwik8 figure)."""
        return ("lm_loss", "bpc") if self.char_level else ("lm_loss", "perplexity")

    def metrics(self, stats: Stats) -> dict[str, float]:
        """Mean NLL (nats per token), perplexity, and bits per character for character-level vocabularies."""
        return lm_metrics(float(stats["lm_nll_sum"]), float(stats["lm_count"]), self.char_level)

    def head_flops(self, batch: dict[str, torch.Tensor]) -> float:
        """The (adaptive) softmax over every token."""
        return batch["input_ids"].numel() * adaptive_softmax_flops(self.config)

    def final_report(self, encoder: EncoderModule, data: Any, cfg: Any, device: torch.device,
                     autocast: Any, results: dict[str, Any] | None = None) -> Report:
        """Transformer-XL section 4.3 / Table 9: evaluation on validation rows with memory, without, and by sliding
        window: what the memory buys, and how fast."""
        c, t = self.config, cfg.trainer
        tgt = c.eval_tgt_len or cfg.data.seq_len
        mem = c.eval_mem_len if c.eval_mem_len is not None else c.mem_len
        stream = TokenStream(data.splits["validation"], data.specials.sep)
        R = min(t.batch_size, 4)  # a few long rows: the memory matters more the longer a row runs
        n = min(stream.length // R - 1, t.eval_batches * tgt)
        rows = torch.from_numpy(stream_rows(stream, R, n + 1)).to(device)  # (R, n + 1)
        with autocast():
            context = compare_contexts(encoder, self, rows, tgt_len=tgt, mem_len=mem, clamp_len=c.clamp_len,
                                       same_length=c.same_length, sliding_tokens=self.compare_tokens)
        return Report("context_comparison", context, context_metrics(context), context_table(context))

    def sentence_scores(self, encoder: nn.Module, sentences: Sequence[Sequence[int]], specials: SpecialIds,
                        words: Sequence[Sequence[int | None]] | None = None,
                        first_only: bool = False) -> dict[str, torch.Tensor]:
        """Log-likelihood of each sentence read as a new document (after a separator), without memory."""
        def next_token_logp(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            hidden = plain_hidden(encoder, ids, mask)  # (B, T, H), causal
            nll = self.token_nll(encoder, hidden[:, :-1], ids[:, 1:])  # (B, T - 1): token t given those before
            return F.pad(-nll, (1, 0))  # (B, T): the separator itself is not scored
        return {"loglik": per_token_sum(device_of(encoder), next_token_logp, sentences, [self.sep], [], specials.pad)}

