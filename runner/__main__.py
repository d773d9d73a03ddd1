"""`python -m runner [group=option ...] [key=value ...]`: compose, validate, build, train, summarise."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from runner.errors import ConfigError, TrainingError
from runner.schema import register

register()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Entry point; returns the final validation MLM loss, or LM loss for objective=clm (what sweepers minimise)."""
    from runner.build import build  # imported here so `--help` stays fast
    from runner.logging import console
    from runner.train import export_run, run

    try:
        if cfg.export:
            src = Path(cfg.export)
            print(export_run_dir(src, build, export_run))
            return None
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        summary = run(cfg, build(cfg), run_dir)
        return summary["final_val"].get("mlm_loss", summary["final_val"].get("lm_loss"))
    except (ConfigError, TrainingError) as e:
        console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        log_to_job_file(f"error: {e}")
        sys.exit(2)


def log_to_job_file(message: str) -> None:
    """Write message to Hydra's job log (<run>/__main__.log) only, so `python -m runner.compare` can say why a sweep
    job failed; the console already showed it."""
    record = logging.makeLogRecord({"name": "runner", "levelno": logging.ERROR, "levelname": "ERROR", "msg": message})
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def export_run_dir(src: Path, build, export_run) -> str:
    """Rebuild a finished run from its saved config and write its last checkpoint as src/hf."""
    import torch

    from runner import checkpoint

    cfg_file = src / ".hydra" / "config.yaml"
    if not cfg_file.is_file():
        raise ConfigError(f"export={str(src)!r} is not a run directory (no {cfg_file}); pass outputs/runs/<run>")
    cfg = OmegaConf.load(cfg_file)
    cfg.trainer.max_steps = 0
    built = build(cfg)
    from runner.models.hf import hf_unsupported

    if (why := hf_unsupported(built.config, hasattr(built.objective, "pair_head"))) is not None:
        raise ConfigError(f"export={str(src)!r}: {why}")
    state = checkpoint.load(src)
    built.module.load_state_dict(state["module"])
    torch.set_grad_enabled(False)
    return export_run(built, src) or "transformers is not installed"


if __name__ == "__main__":
    main()
