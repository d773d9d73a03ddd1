"""One run end to end, in order: the downstream tasks loaded before any work, the trainer (resumed when asked), the
logger, the loop, the final validation, then the work after training (fine-tuning, the objective's own report,
crossover snapshots, the export), each phase timed, and summary.json (runner/reporting/summary.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from runner.build import Built, parameter_counts, preset_parameters
from runner.data.unigram import unigram_entropy
from runner.data.words import words_per_token
from runner.engine import distributed
from runner.engine.lock import resuming
from runner.engine.loop import Trainer
from runner.engine.state import run_config
from runner.evaluation.after_training import downstream_eval, prepare_downstream
from runner.evaluation.crossover import crossover_tasks_of, evaluate_snapshots
from runner.evaluation.probes.accuracy import build_probes
from runner.evaluation.probes.suite_scoring import build_suite_probes
from runner.hf.export import export_run
from runner.reporting.logger import NullLogger, RunLogger, run_tags
from runner.reporting.summary import PhaseClock, RunEnd, log_results, print_summary, run_summary
from runner.store.names import run_names


def run(cfg: DictConfig, built: Built, run_dir: Path) -> dict[str, Any]:
    """Train (or, with trainer.max_steps=0, only build) and write the run's summary."""
    clock = PhaseClock(data=built.seconds)  # the build's time counts as data
    main = distributed.is_main()  # ranks > 0 train and evaluate, and write nothing
    training = cfg.trainer.max_steps > 0
    # the downstream task is loaded before any training: a bad eval.task or an unreachable dataset stops the run now
    task = prepare_downstream(cfg, built) if main and training else None
    crossover_tasks = crossover_tasks_of(cfg, built) if main and training else {}
    trainer = Trainer(cfg, built, run_dir)
    config = run_config(cfg)
    resumed = resume_or_start(cfg, trainer, run_dir, config)
    group, name = run_names(cfg, run_dir)  # dashboards group runs by model and objective (sweeps: by sweep)
    logger = RunLogger(cfg.logger, run_dir, config, name, run_tags(cfg, bool(trainer.checkpointer.changes)),
                       resume_step=trainer.step if resumed else None, group=group) if main else NullLogger()
    if training:
        with clock.phase("data"):
            add_context_and_probes(cfg, built, trainer)
    last = fit(trainer, logger) if training else {}
    final_val, final_probes = trainer.validate.at(trainer.step) if training else ({}, {})
    if trainer.parallel.sharded:  # FSDP: gather the shards (every rank takes part) into one module on rank 0
        built.module = trainer.module = trainer.parallel.unsharded()
    if not main:  # no collective follows training: leave rank 0 to the end-of-run work
        distributed.shutdown(barrier=False)
        return {"name": name, "rank": distributed.rank(), "steps": trainer.step, "final_val": final_val}
    end = RunEnd(run_dir, name, group, last, final_val, final_probes, finished=bool(final_val) and trainer.finished(),
                 parameters=parameter_counts(built.module), presets=presets_of(cfg))
    with clock.phase("validation_probes"):  # the full suites (validation scored their per-paradigm subsample)
        if final_val:
            end.suites = trainer.validate.full_suites()
    with clock.phase("finetuning"):
        if task is not None and end.finished:
            end.downstream = downstream_eval(cfg, built, trainer.device, task)
    with clock.phase("validation_probes"):
        if final_val:
            end.own = objective_report(cfg, built, trainer, end)
    if crossover_tasks and end.finished:  # every snapshot probed and fine-tuned (the baselines come from the cache)
        with clock.phase("finetuning"):
            end.crossover = evaluate_snapshots(cfg, built, run_dir, trainer.validate.probes, trainer.device,
                                               crossover_tasks)["crossovers"]
    with clock.phase("export"):
        if cfg.trainer.export_hf and training and trainer.finished():
            end.exported, end.hf_export = True, export_run(built, run_dir)
    summary = run_summary(cfg, built, trainer, logger, clock, end)
    log_results(logger, end, trainer.progress.step, summary)
    logger.finish(summary)
    distributed.shutdown(barrier=False)
    print_summary(summary, cfg, end)
    return summary


def resume_or_start(cfg: DictConfig, trainer: Trainer, run_dir: Path, config: dict[str, Any]) -> bool:
    """Record the run's config in its checkpoints (a resume lists what changed since) and continue from the run
    directory's checkpoint when the run resumes (runner/engine/lock.py resuming); whether it did."""
    trainer.checkpointer.track(config)
    resumed = resuming(cfg, run_dir)
    if resumed:
        trainer.restore()
    return resumed


def add_context_and_probes(cfg: DictConfig, built: Built, trainer: Trainer) -> None:
    """Give the validation what a context-blind model reaches (the unigram entropy), the minimal pairs and suites,
    and the records the corpus words per token (train/words)."""
    v, train, specials = trainer.validate, built.data.splits["train"], built.data.specials
    v.unigram_entropy = unigram_entropy(train, specials.num_special)
    v.probes = build_probes(cfg, built.data)
    v.suites = build_suite_probes(cfg, built.data)
    trainer.words_per_token = words_per_token(train, built.data.tokenizer, specials.num_special)


def fit(trainer: Trainer, logger: Any) -> dict[str, Any]:
    """Train; the last training record. A failure closes the logger's backends (W&B marks the run failed)."""
    try:
        return trainer.fit(logger)
    except BaseException:
        logger.abort()
        raise


def objective_report(cfg: DictConfig, built: Built, trainer: Trainer, end: RunEnd) -> Any:
    """The objective's own evaluation at the end (Transformer-XL: what the memory buys), or None."""
    results = {"final_val": end.final_val, "final_probes": end.final_probes, "downstream": end.downstream,
               "val_batches": trainer.feed.val}
    return built.objective.final_report(built.module.encoder, built.data, cfg, trainer.device, trainer.amp.autocast,
                                        results)


def presets_of(cfg: DictConfig) -> dict[str, int] | None:
    """The parameters of model.report_presets (ALBERT's Table 2: its large vs BERT's), None when none are named."""
    return {n: preset_parameters(n) for n in cfg.model.report_presets} if cfg.model.report_presets else None
