"""One run end to end: the downstream task loaded before any work, the trainer (resumed when asked), the logger,
the loop, the final validation, the objective's own report, fine-tuning, crossover snapshots, the export and
summary.json."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runner.store import checkpoint
from runner.store.names import run_names
from runner.engine import distributed
from runner.build import Built, parameter_counts, preset_parameters
from runner.evaluation.crossover import crossover_tasks_of, evaluate_snapshots
from runner.data.unigram import unigram_entropy
from runner.evaluation.after_training import (downstream_enabled, downstream_eval, downstream_metrics, finetune_hint,
                               prepare_downstream, store_downstream)
from runner.hf.export import export_run, exported_counts
from runner.config.console import console
from runner.reporting.logger import NullLogger, RunLogger
from runner.evaluation.probes.accuracy import build_probes
from runner.reporting.summary import report_table
from runner.engine.loop import Trainer


def padding_shares(p: Any) -> dict[str, Any]:
    """The share of the training positions computed that were padding (data.packing: packed rows), and the share the
    same batches would have had as right-padded rows, one example each; {} before any step, or for a run resumed from
    a checkpoint that did not count positions."""
    if not p.positions or p.positions < p.tokens:
        return {}
    return {"computed": round(1 - p.tokens / p.positions, 4),
            "padded_layout": round(1 - p.tokens / p.padded_positions, 4),
            "positions": p.positions, "padded_positions": p.padded_positions}


def run(cfg: DictConfig, built: Built, run_dir: Path) -> dict[str, Any]:
    """Train (or, with trainer.max_steps=0, only build) and write the run's summary."""
    started = time.perf_counter()
    main = distributed.is_main()  # ranks > 0 train and evaluate, and write nothing
    training = cfg.trainer.max_steps > 0
    # the downstream task is loaded before any training: a bad eval.task or an unreachable dataset stops the run now
    task = prepare_downstream(cfg, built) if main and training else None
    crossover_tasks = crossover_tasks_of(cfg, built) if main and training else {}
    trainer = Trainer(cfg, built, run_dir)
    # trainer.resume=auto: continue when the run directory has a checkpoint (a requeued job), else start; a submitit
    # job resumes that way by default (the job's directory holds a checkpoint only when this is a requeue)
    auto = cfg.trainer.resume == "auto" or (cfg.trainer.resume is False and distributed.in_submitit_job())
    resuming = cfg.trainer.resume is True or (auto and checkpoint.exists(run_dir))
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("hydra", None)
    trainer.checkpointer.track(config)  # checkpoints record it; a resume lists what changed since (runner/engine/state.py)
    if resuming:
        trainer.restore()
    m, o, d = cfg.model.name, cfg.objective.name, cfg.data.name
    group, name = run_names(cfg, run_dir)  # dashboards group runs by model and objective (sweeps: by sweep)
    tags = list(dict.fromkeys([m, o, d, cfg.model.family, f"masking={cfg.objective.get('masking', 'none')}",
                               *cfg.logger.tags, *(["resumed-with-changes"] if trainer.checkpointer.changes else [])]))
    logger = RunLogger(cfg.logger, run_dir, config, name, tags,
                       resume_step=trainer.step if resuming else None, group=group) if main else NullLogger()
    v = trainer.validate
    if training:  # what a context-blind model reaches, and the minimal pairs
        start = time.perf_counter()
        v.unigram_entropy = unigram_entropy(built.data.splits["train"], built.data.specials.num_special)
        v.probes = build_probes(cfg, built.data)
        built.seconds += time.perf_counter() - start
    try:
        last = trainer.fit(logger) if training else {}
    except BaseException:
        logger.abort()
        raise
    final_val, final_probes = v.at(trainer.step) if training else ({}, {})
    if trainer.parallel.sharded:  # FSDP: gather the shards (every rank takes part) into one module on rank 0
        built.module = trainer.module = trainer.parallel.unsharded()
    if not main:  # no collective follows training: leave rank 0 to the end-of-run work
        distributed.shutdown(barrier=False)
        return {"name": name, "rank": distributed.rank(), "steps": trainer.step, "final_val": final_val}
    start = time.perf_counter()
    finished = bool(final_val) and trainer.finished()
    downstream = downstream_eval(cfg, built, trainer.device, task) if task is not None and finished else None
    finetune_s = time.perf_counter() - start
    start = time.perf_counter()
    results = {"final_val": final_val, "final_probes": final_probes, "downstream": downstream,
               "val_batches": trainer.feed.val}
    own = built.objective.final_report(built.module.encoder, built.data, cfg, trainer.device, trainer.amp.autocast,
                                       results) if final_val else None
    v.seconds += time.perf_counter() - start
    p = trainer.progress
    summary = {
        "name": name, "model": m, "objective": o, "data": d, "run_dir": str(run_dir),
        "parameters": parameter_counts(built.module),
        "exported_parameters": exported_counts(built),  # each hf/ model as transformers counts it
        "steps": p.step, "max_steps": trainer.max_steps,
        "effective_batch": cfg.trainer.batch_size * cfg.trainer.grad_accum * trainer.world, "world_size": trainer.world,
        "seq_len": cfg.data.seq_len,
        "tokens_seen": p.tokens, "train_flops": p.flops, "final_train_loss": last.get("loss"),
        "initial_val": p.first_val or {}, "final_val": final_val, "train_time_s": p.elapsed,
        "tokens_per_s": p.tokens / p.elapsed if p.elapsed else 0.0,
        "padding": padding_shares(p),
        "device": str(trainer.device), "precision": trainer.precision, "data_stats": built.data.stats(),
        "loggers": list(logger.active), "wandb_mode": logger.mode, "wandb_group": group, "skipped_steps": p.skipped,
        "resume_changes": trainer.checkpointer.changes,  # settings changed on resume: key, before, after, step
    }
    if v.unigram_entropy is not None:
        summary["unigram_entropy"] = v.unigram_entropy
    if v.probes is not None:
        pc = cfg.probes
        summary["probes"] = {"pairs": v.probes.counts(), "scorers": v.probes.scorers, "split": pc.split,
                             "seed": pc.seed, "words": [pc.min_words, pc.max_words],
                             "initial": p.first_probes or {}, "final": final_probes}
    if trainer.budget is not None:  # what ended the run, and how much of it was used
        b = trainer.budget
        used = {"steps": p.step, "tokens": p.tokens, "flops": p.flops, "minutes": p.elapsed / 60}[b.kind]
        summary["budget"] = {"kind": b.kind, "amount": b.amount, "used": used, "complete": trainer.finished()}
    if downstream is not None:  # summary["downstream"] and summary["downstream_tasks"][task]
        store_downstream(summary, downstream)
        logger.log(downstream_metrics(downstream), step=p.step)
    if own is not None:  # the objective's own evaluation (Transformer-XL: what the memory buys, and how fast)
        summary[own.key] = own.value
        logger.log(own.metrics, step=p.step)
    if cfg.model.report_presets:  # presets counted beside this run (ALBERT's Table 2: its large vs BERT's)
        summary["preset_parameters"] = {n: preset_parameters(n) for n in cfg.model.report_presets}
    if crossover_tasks and finished:  # every snapshot probed and fine-tuned (the baselines come from the cache)
        start = time.perf_counter()
        summary["crossover"] = evaluate_snapshots(cfg, built, run_dir, v.probes, trainer.device,
                                                  crossover_tasks)["crossovers"]
        finetune_s += time.perf_counter() - start
    start = time.perf_counter()
    if cfg.trainer.export_hf and training and trainer.finished():
        summary["hf_export"] = export_run(built, run_dir)
    export_s = time.perf_counter() - start
    summary["wall_time_s"] = time.perf_counter() - started + built.seconds  # data, evaluation, export included
    # where this invocation's time went (training: the loop's steps, all invocations of a resumed run)
    summary["time_s"] = {"data": built.seconds, "training": p.elapsed, "validation_probes": v.seconds,
                         "finetuning": finetune_s, "export": export_s, "total": summary["wall_time_s"]}
    logger.finish(summary)
    distributed.shutdown(barrier=False)
    console.print(report_table(summary))
    if finished and not downstream_enabled(cfg):
        console.print(finetune_hint(run_dir), highlight=False, soft_wrap=True)
    if own is not None and own.table is not None:
        console.print(own.table)
    if "preset_parameters" in summary:
        counts = ", ".join(f"{n} {c / 1e6:.1f}M" for n, c in summary["preset_parameters"].items())
        console.print(f"parameters of the presets (encoder and masked-LM head): {counts}; this run {summary['parameters']['total']:,}",
                      highlight=False, soft_wrap=True)
    return summary
