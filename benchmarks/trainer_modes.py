"""What trainer.precision and trainer.compile buy: training tokens/s of the runner's own Trainer in each mode, against
fp32 eager, on the same config, weights and batches, in one process.

Each mode builds the run afresh (same seed: same weights, same batch order), takes --warmup untimed steps (where
torch.compile compiles; their time is reported as "first steps s") and then --steps timed optimizer steps through
`Trainer.train_step` (accumulation, clipping, loss scaling, the optimizer: everything but logging and checkpoints).
The validation loss after the timed steps shows that the mode trains the same model, not only a faster one.

    python benchmarks/trainer_modes.py                                    # model=bert objective=mlm, CPU modes
    python benchmarks/trainer_modes.py --modes fp32,compile --steps 10    # fewer modes
    python benchmarks/trainer_modes.py --overrides model=bert_base data.seq_len=128 trainer.batch_size=64 \\
        --modes fp32,bf16,fp16,compile,compile+bf16 --device cuda         # on a GPU
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without `pip install -e .`

import torch  # noqa: E402

# mode -> trainer overrides
MODES = {"fp32": ["trainer.precision=fp32"], "bf16": ["trainer.precision=bf16"], "fp16": ["trainer.precision=fp16"],
         "compile": ["trainer.precision=fp32", "trainer.compile=true"],
         "compile+bf16": ["trainer.precision=bf16", "trainer.compile=true"]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", default="fp32,bf16,fp16,compile", help=f"comma-separated, of {', '.join(MODES)}")
    p.add_argument("--overrides", nargs="*", default=["model=bert", "objective=mlm", "data.seq_len=128",
                                                      "trainer.batch_size=32"],
                   help="runner overrides for every mode (default: %(default)s)")
    p.add_argument("--steps", type=int, default=30, help="timed optimizer steps per mode (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation) (default: %(default)s)")
    p.add_argument("--device", default="auto", help="trainer.device: auto, cpu, cuda, cuda:N (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown := [m for m in args.modes if m not in MODES]:
        p.error(f"--modes: unknown {', '.join(unknown)}; choose from {', '.join(MODES)}")
    if args.steps < 1 or args.warmup < 1:
        p.error("--steps and --warmup must be >= 1 (the first steps hold compilation, never timed)")
    return args


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from runner.build import register

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def measure(mode: str, args: argparse.Namespace) -> dict:
    """One mode: build, warm up, time --steps steps, evaluate."""
    from runner.build import build
    from runner.engine.loop import Trainer

    cfg = compose([*args.overrides, *MODES[mode], f"trainer.device={args.device}", "logger.mode=disabled",
                   f"trainer.max_steps={args.warmup + args.steps}"])
    built = build(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, built, Path(tmp))
        sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
        start = time.perf_counter()
        for _ in range(args.warmup):
            trainer.train_step()
        sync()
        first = time.perf_counter() - start
        tokens, start = 0, time.perf_counter()
        for _ in range(args.steps):
            tokens += trainer.train_step()["batch_tokens"]
        sync()
        seconds = time.perf_counter() - start
        val = trainer.validate.evaluate()
        trainer.feed.close()
    key = next(k for k in val if k.endswith("_loss"))
    return {"mode": mode, "precision": trainer.precision, "compile": bool(cfg.trainer.compile),
            "tokens_per_s": tokens / seconds, "seconds": seconds, "first_steps_s": first, "val_loss": val[key],
            "val_metric": key, "tokens": tokens}


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(stderr=True)
    results = []
    for mode in args.modes:
        console.print(f"measuring {mode} ...", highlight=False)
        results.append(measure(mode, args))
    base = next((r["tokens_per_s"] for r in results if r["mode"] == "fp32"), results[0]["tokens_per_s"])
    table = Table(title=f"Trainer modes: {' '.join(args.overrides)}; {args.steps} timed steps after {args.warmup}")
    for col in ("mode", "tokens/s", "vs fp32", "first steps s", results[0]["val_metric"]):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for r in results:
        r["ratio_vs_fp32"] = r["tokens_per_s"] / base
        table.add_row(r["mode"], f"{r['tokens_per_s']:,.0f}", f"{r['ratio_vs_fp32']:.2f}x", f"{r['first_steps_s']:.1f}",
                      f"{r['val_loss']:.4f}")
    console.print(table)
    device = "cuda: " + torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else \
        f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    console.print(f"torch {torch.__version__}; {device}", highlight=False)
    if args.json:
        args.json.write_text(json.dumps({"device": device, "torch": torch.__version__, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
