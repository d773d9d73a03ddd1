"""Checks of values that have the right type but do not fit together; each failure is one line naming the
keys and the fix, raised before any data or model is built."""
from __future__ import annotations

import torch

from runner.budget import budget_of
from runner.errors import ConfigError
from runner.logging import MODES
from runner.models.config import SHARES
from runner.probes.pairs import check_settings as check_probes


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate(cfg) -> None:
    """Raise ConfigError on the first inconsistent setting."""
    m, d, t, o = cfg.model, cfg.data, cfg.trainer, cfg.optimizer
    _need(m.family in ("bert", "roberta", "albert", "electra", "txl"),
          f"model.family={m.family!r} must be 'bert', 'roberta', 'albert', 'electra' or 'txl'")
    _need(m.share in SHARES, f"model.share={m.share!r} must be one of {', '.join(SHARES)} (ALBERT section 3.1)")
    _need(m.embedding_size is None or m.embedding_size >= 1,
          f"model.embedding_size={m.embedding_size} must be >= 1, or null for embeddings as wide as hidden_size")
    _need(m.tokenizer in ("wordpiece", "bpe", "unigram", "word", "char"),
          f"model.tokenizer={m.tokenizer!r} must be 'wordpiece', 'bpe', 'unigram', 'word' or 'char'")
    _need(cfg.optimizer.get("decay", "linear") in ("linear", "cosine"),
          f"optimizer.decay={cfg.optimizer.get('decay')!r} must be linear or cosine")
    txl(m, d)
    for key in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "vocab_size",
                "max_position_embeddings", "type_vocab_size"):
        _need(m[key] >= 1, f"model.{key}={m[key]} must be >= 1")
    _need(m.hidden_size % m.num_heads == 0,
          f"model.hidden_size={m.hidden_size} is not divisible by model.num_heads={m.num_heads}; "
          "pick heads that divide the hidden size (e.g. hidden_size/64)")
    for key in ("hidden_dropout", "attention_dropout"):
        _need(0.0 <= m[key] < 1.0, f"model.{key}={m[key]} must lie in [0, 1)")
    offset = 2 if m.family == "roberta" else 0  # RoBERTa's positions start after the padding index
    _need(m.family == "txl" or d.seq_len <= m.max_position_embeddings - offset,  # txl: relative positions only
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
    for key in ("batch_size", "grad_accum", "log_every", "eval_every", "eval_batches", "checkpoint_every",
                "keep_checkpoints"):
        _need(t[key] >= 1, f"trainer.{key}={t[key]} must be >= 1")
    _need(t.num_workers >= 0, f"trainer.num_workers={t.num_workers} must be >= 0 (0 builds batches in-process)")
    _need(t.grad_clip >= 0, f"trainer.grad_clip={t.grad_clip} must be >= 0 (0 disables clipping)")
    _need(t.nonfinite in ("stop", "skip"), f"trainer.nonfinite={t.nonfinite!r} must be stop or skip")
    _need(t.max_skipped_steps >= 1, f"trainer.max_skipped_steps={t.max_skipped_steps} must be >= 1")
    distributed_settings(t)
    budget = budget_of(t.get("budget"))  # one of steps, tokens, flops, minutes, positive
    _need(budget is None or budget.kind != "minutes" or o.warmup_steps is None,
          f"optimizer.warmup_steps={o.warmup_steps} counts steps, but trainer.budget.minutes has no step count; "
          "use optimizer.warmup_fraction (a share of the time)")
    _need(cfg.logger.mode in MODES, f"logger.mode={cfg.logger.mode!r} must be one of {', '.join(MODES)}")
    if (p := cfg.get("probes")) is not None and p.enabled:
        check_probes(p)
    if (x := cfg.get("crossover")) is not None and x.enabled:
        from runner.crossover import check_settings as check_crossover
        check_crossover(cfg)
    if (e := cfg.get("eval")) is not None and e.downstream is not False:  # on, or auto (on in a multirun):
        eval_settings(cfg)  # checked now, not after the pretraining it follows

def eval_settings(cfg) -> None:
    """The eval group: the task, its path and the fine-tuning settings (checked whenever downstream evaluation may
    run, and by python -m runner.finetune)."""
    from pathlib import Path

    from runner.downstream.tasks import task_names, unknown_task

    e = cfg.eval
    why = unknown_task(str(e.task))
    _need(why is None, f"eval.task={e.task!r}: {why}; use eval.task={task_names()}")
    if e.path is not None:
        p = Path(str(e.path)).expanduser()
        _need(p.is_dir(), f"eval.path={str(e.path)!r} is not a directory; pass a directory of GLUE's tsv files "
              "(train.tsv, dev.tsv) or a save_to_disk dataset, or drop eval.path to read the Hub")
    _need(e.pooling in ("auto", "cls", "mean", "last"),
          f"eval.pooling={e.pooling!r} must be auto, cls, mean or last")
    causal = cfg.model.family == "txl" and not cfg.model.get("bidirectional", False)
    _need(not (causal and e.pooling == "cls"), "eval.pooling=cls on a causal Transformer-XL sees only the first "
          "token; use eval.pooling=last or mean")
    for key in ("seeds", "epochs", "batch_size"):
        _need(e[key] >= 1, f"eval.{key}={e[key]} must be >= 1")
    _need(e.seq_len >= 5, f"eval.seq_len={e.seq_len} must be >= 5 ([CLS] A [SEP] B [SEP])")
    _need(e.lr > 0, f"eval.lr={e.lr} must be > 0")


def distributed_settings(t) -> None:
    """trainer.precision, strategy, compile and resume, and the torchrun launch they run under."""
    import os
    import shutil

    from runner import distributed
    from runner.parallel import STRATEGIES
    from runner.precision import PRECISIONS

    _need(t.precision in PRECISIONS, f"trainer.precision={t.precision!r} must be {', '.join(PRECISIONS)}")
    _need(t.strategy in STRATEGIES, f"trainer.strategy={t.strategy!r} must be {' or '.join(STRATEGIES)}")
    _need(t.resume in (True, False, "auto"), f"trainer.resume={t.resume!r} must be true, false or auto")
    device = resolve_device(t.device)
    if t.precision == "bf16" and device.type == "cuda":
        _need(torch.cuda.is_bf16_supported(), f"trainer.precision=bf16 but {torch.cuda.get_device_name(device)} has "
              "no bf16; use trainer.precision=fp16 (loss scaling) or auto")
    _need(not (t.compile and device.type == "cpu" and not any(map(shutil.which, ("c++", "g++", "clang++")))),
          "trainer.compile=true on the CPU needs a C++ compiler (torch inductor), and none is on PATH; install one "
          "(e.g. g++) or drop trainer.compile")
    if distributed.launched() and device.type == "cuda":
        local, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        _need(local < gpus or gpus == 1, f"torchrun started local rank {local} but this node has {gpus} GPUs; use "
              f"--nproc_per_node={gpus} or fewer")


def txl(m, d) -> None:
    """Transformer-XL keys: memory and evaluation lengths, adaptive softmax cutoffs."""
    if m.family != "txl":
        _need(m.mem_len == 0, f"model.mem_len={m.mem_len} is Transformer-XL's segment-level recurrence, which "
              f"model.family={m.family} (a bidirectional encoder) does not implement; use model=txl (or a txl_* "
              "preset) with objective=clm, or model.mem_len=0 (README: memory on a bidirectional encoder)")
        _need(not m.cutoffs, f"model.cutoffs={list(m.cutoffs)} (adaptive softmax) exist only for model.family=txl; "
              "set model.cutoffs=[]")
        return
    _need(m.mem_len >= 0, f"model.mem_len={m.mem_len} must be >= 0 (0: no memory)")
    for key in ("eval_tgt_len", "eval_mem_len", "clamp_len"):
        _need(m[key] is None or m[key] >= (1 if key == "eval_tgt_len" else 0),
              f"model.{key}={m[key]} must be {'>= 1' if key == 'eval_tgt_len' else '>= 0'} or null")
    cuts = list(m.cutoffs)
    _need(all(a < b for a, b in zip([0, *cuts], [*cuts, m.vocab_size])),
          f"model.cutoffs={cuts} must increase strictly between 0 and model.vocab_size={m.vocab_size}; "
          "e.g. [20000, 40000, 200000] for WikiText-103's 267,735 words")
    _need(m.div_val >= 1, f"model.div_val={m.div_val} must be >= 1 (1: every cluster as wide as the embeddings)")
    width = m.embedding_size or m.hidden_size
    _need(m.div_val == 1 or width // m.div_val ** len(cuts) >= 1,
          f"model.div_val={m.div_val} makes the last of {len(cuts) + 1} clusters 0 wide (embedding width {width}); "
          "lower model.div_val or use fewer model.cutoffs")
    _need(m.share == "none", f"model.share={m.share} is not implemented for model.family=txl; use model.share=none")
    _need(m.init_from is None, f"model.init_from={m.init_from!r}: transformers has no Transformer-XL class to load "
          "from (TransfoXL was removed in transformers 5); drop model.init_from")


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
