"""`python -m runner [group=option ...] [key=value ...]`: compose, validate, build, train, summarise."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
import torch
from hydra import compose
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from runner.build import build, objective_options, encoder_config, register
# the console's module, not the Console: a submitit launcher pickles this file's functions (it runs as __main__)
# by value with the globals they name, and a Console holds a lock that cannot be pickled
from runner.config import console as terminal
from runner.config.errors import ConfigError, TrainingError
from runner.engine import distributed, threads
from runner.engine.distributed import hydra_args
from runner.engine import lock as rundir
from runner.engine.preemption import Preempted
from runner.engine.state import refuse_early
from runner.fit import command_line_refusal, default_choice
from runner.hf.export import export_run, unsupported
from runner.run import run
from runner.store.layout import SUMMARY, open_run, write_config
from runner.store.names import is_multirun, job_names
from runner.sweeps.jobs import metric_value, optimised_by_sweeper

try:
    register()
except ConfigError as e:  # a BERTLAB_PLUGINS entry that is not a module: one line, before Hydra starts
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Entry point; returns sweep.metric from the run's summary (default downstream.accuracy_mean): what a sweeper
    such as Optuna optimises. In a multirun a failing job is logged and the sweep goes on (runner.sweeps.jobs)."""
    hc = HydraConfig.get()
    try:
        return job(cfg, hc)
    except Preempted as e:  # a clean stop: checkpoint written; exit 128 + signal, as a process killed by it
        terminal.console.print(f"[yellow]stopped:[/] {e}", highlight=False, soft_wrap=True)
        log_to_job_file(f"error: stopped by {e}")
        if not is_multirun(hc):
            sys.exit(128 + e.signum)
        if optimised_by_sweeper(hc):
            raise
        return None
    except (ConfigError, TrainingError) as e:
        terminal.console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        log_to_job_file(f"error: {e}")
        if not is_multirun(hc):
            sys.exit(2)
        if optimised_by_sweeper(hc):
            raise  # the sweeper records a failed trial and goes on
        return None
    except Exception as e:  # noqa: BLE001 - a crash in one sweep job must not stop the others
        if not is_multirun(hc):
            raise
        terminal.console.print(f"[bold red]error:[/] job crashed: {type(e).__name__}: {e}", highlight=False,
                               soft_wrap=True)
        logging.getLogger("runner").exception("error: %s: %s", type(e).__name__, e)
        if optimised_by_sweeper(hc):
            raise
        return None


def job(cfg: DictConfig, hc) -> float | None:
    """One run (or export) under Hydra; the sweep's value, or None."""
    if cfg.export:  # it writes hf/ into the exported run: not while another process trains there
        with rundir.owned(Path(cfg.export), resume=True):
            print(export_run_dir(Path(cfg.export)))
        return None
    run_dir = Path(hc.runtime.output_dir)
    if is_multirun(hc):  # jobs a parallel launcher runs at once share the cores (runner/engine/threads.py)
        os.environ[threads.PARALLEL_ENV] = str(threads.parallel_jobs(hc.launcher, hc.sweeper))
    distributed.from_submitit()  # hydra.launcher.tasks_per_node > 1: this task is one rank
    cfg.logger.group, cfg.logger.name = job_names(hc, run_dir, cfg.logger.group, cfg.logger.name)
    # a single run took it in RunDirCallback.on_run_start; multirun and submitit jobs take it here
    with rundir.owned(run_dir, rundir.resuming(cfg)):
        if rundir.resuming(cfg):  # a resume that changes what the run is: refused before any data or model
            refuse_early(cfg, run_dir)
        run_prerequisite(cfg)
        summary = run(cfg, build(cfg), run_dir)
    value = metric_value(summary, cfg.sweep.metric)
    if value is None and optimised_by_sweeper(hc) and cfg.trainer.max_steps > 0:
        raise TrainingError(f"sweep.metric={cfg.sweep.metric} is not in {run_dir / SUMMARY} (downstream "
                            "evaluation off or skipped?); pick one it has, e.g. sweep.metric=final_val.mlm_loss")
    return value


def run_prerequisite(cfg: DictConfig) -> None:
    """Train the run this one's objective needs first (distillation's teacher, objective.teach) into its directory,
    resuming it if it stopped; nothing when there is none or it has finished."""
    cls, options = objective_options(cfg.objective, encoder_config(cfg))
    need = cls.prerequisite(options)
    if need is None:
        return
    where, overrides = Path(need[0]), [*need[1], f"logger.mode={cfg.logger.mode}", "trainer.resume=auto"]
    # its own run directory, owned while it trains: a student started beside this one waits, then finds it done
    with rundir.owned(where, resume=True, wait=True):
        if cls.prerequisite(options) is None:
            return
        terminal.console.print(f"objective={options.name}: training the run it needs first in {where}: "
                               f"{' '.join(need[1])}", highlight=False, soft_wrap=True)
        first = compose("config", overrides=overrides)
        write_config(where, first)  # a run directory, as Hydra writes one
        run(first, build(first), where)


def log_to_job_file(message: str) -> None:
    """Write message to Hydra's job log (<run>/__main__.log) only, so `python -m runner.compare` can say why a sweep
    job failed; the console already showed it."""
    record = logging.makeLogRecord({"name": "runner", "levelno": logging.ERROR, "levelname": "ERROR", "msg": message})
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def export_run_dir(src: Path) -> str:
    """Rebuild a finished run from its saved config and write its last checkpoint as src/hf."""
    run = open_run(src, "export")
    cfg = run.config  # a run made before newer keys existed still exports
    cfg.trainer.max_steps = 0
    built = build(cfg)
    if (why := unsupported(built)) is not None:
        raise ConfigError(f"export={str(src)!r}: {why}")
    built.module.load_state_dict(run.module_state())
    torch.set_grad_enabled(False)
    return export_run(built, run.path) or "transformers is not installed"


def start() -> None:
    """What `python -m runner` runs: the refusals that come before Hydra composes, then the Hydra app."""
    # a recipe's objective keys on another objective: bertlab's one line, before Hydra fails composing them
    if why := command_line_refusal(sys.argv[1:], default_choice("model")):
        print(f"error: {why}", file=sys.stderr)
        sys.exit(2)
    sys.argv += hydra_args(sys.argv[1:])  # torchrun: one run directory for all ranks, Hydra's files from rank 0
    main()


if __name__ == "__main__":
    start()
