"""Checks of values that have the right type but do not fit together; each failure is one line naming the
keys and the fix, raised before any data or model is built."""
from __future__ import annotations

import torch

from runner.errors import ConfigError
from runner.logging import MODES
from runner.models.config import SHARES


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate(cfg) -> None:
    """Raise ConfigError on the first inconsistent setting."""
    m, d, t, o = cfg.model, cfg.data, cfg.trainer, cfg.optimizer
    _need(m.family in ("bert", "roberta", "albert", "electra"),
          f"model.family={m.family!r} must be 'bert', 'roberta', 'albert' or 'electra'")
    _need(m.share in SHARES, f"model.share={m.share!r} must be one of {', '.join(SHARES)} (ALBERT section 3.1)")
    _need(m.embedding_size is None or m.embedding_size >= 1,
          f"model.embedding_size={m.embedding_size} must be >= 1, or null for embeddings as wide as hidden_size")
    _need(m.tokenizer in ("wordpiece", "bpe", "unigram"),
          f"model.tokenizer={m.tokenizer!r} must be 'wordpiece', 'bpe' or 'unigram'")
    for key in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "vocab_size",
                "max_position_embeddings", "type_vocab_size"):
        _need(m[key] >= 1, f"model.{key}={m[key]} must be >= 1")
    _need(m.hidden_size % m.num_heads == 0,
          f"model.hidden_size={m.hidden_size} is not divisible by model.num_heads={m.num_heads}; "
          "pick heads that divide the hidden size (e.g. hidden_size/64)")
    for key in ("hidden_dropout", "attention_dropout"):
        _need(0.0 <= m[key] < 1.0, f"model.{key}={m[key]} must lie in [0, 1)")
    offset = 2 if m.family == "roberta" else 0  # RoBERTa's positions start after the padding index
    _need(d.seq_len <= m.max_position_embeddings - offset,
          f"data.seq_len={d.seq_len} exceeds model.max_position_embeddings={m.max_position_embeddings}"
          f"{' minus RoBERTa offset 2' if offset else ''}; lower data.seq_len or raise model.max_position_embeddings")
    _need(d.seq_len >= 8, f"data.seq_len={d.seq_len} is too short; use at least 8")
    _need(0.0 <= d.val_fraction < 1 and 0.0 <= d.test_fraction < 1 and d.val_fraction + d.test_fraction < 1,
          f"data.val_fraction={d.val_fraction} + data.test_fraction={d.test_fraction} must lie in [0, 1)")
    _need(d.max_docs is None or d.max_docs >= 2, f"data.max_docs={d.max_docs} must be >= 2 or null")
    _need(o.lr > 0, f"optimizer.lr={o.lr} must be > 0")
    _need(len(o.betas) == 2 and all(0.0 <= b < 1.0 for b in o.betas),
          f"optimizer.betas={list(o.betas)} must be two numbers in [0, 1)")
    _need(o.weight_decay >= 0, f"optimizer.weight_decay={o.weight_decay} must be >= 0")
    _need(o.eps > 0, f"optimizer.eps={o.eps} must be > 0")
    _need(0.0 <= o.warmup_fraction <= 1.0, f"optimizer.warmup_fraction={o.warmup_fraction} must lie in [0, 1]")
    _need(o.warmup_steps is None or o.warmup_steps >= 0, f"optimizer.warmup_steps={o.warmup_steps} must be >= 0")
    _need(t.max_steps >= 0, f"trainer.max_steps={t.max_steps} must be >= 0")
    for key in ("batch_size", "grad_accum", "log_every", "eval_every", "eval_batches", "checkpoint_every"):
        _need(t[key] >= 1, f"trainer.{key}={t[key]} must be >= 1")
    _need(t.num_workers >= 0, f"trainer.num_workers={t.num_workers} must be >= 0 (0 builds batches in-process)")
    _need(t.grad_clip >= 0, f"trainer.grad_clip={t.grad_clip} must be >= 0 (0 disables clipping)")
    _need(t.precision in ("auto", "bf16", "fp32"), f"trainer.precision={t.precision!r} must be auto, bf16 or fp32")
    _need(cfg.logger.mode in MODES, f"logger.mode={cfg.logger.mode!r} must be one of {', '.join(MODES)}")
    resolve_device(t.device)


def resolve_device(name: str) -> torch.device:
    """The device for trainer.device ('auto': CUDA if present, else CPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"trainer.device={name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    _need(dev.type != "cuda" or torch.cuda.is_available(),
          f"trainer.device={name!r} but CUDA is not available here; use trainer.device=auto or cpu")
    _need(dev.type != "mps" or torch.backends.mps.is_available(),
          f"trainer.device={name!r} but MPS is not available here; use trainer.device=auto or cpu")
    return dev
