"""Transformer-XL's Table 9 on our code: evaluation tokens/s with the memory against the vanilla sliding window.

Cached (Dai et al. 2019): segments of --tgt-len tokens, each attending to the cached hidden states of the M = L - T
tokens before it (runner.objectives.long_context.cached_nll). Sliding window (Al-Rfou et al. 2018): every predicted token gets its
own window of the last L tokens, recomputed from scratch (runner.objectives.long_context.sliding_nll). Both run in one process on
the same model and validation rows; perplexities are taken on the same target tokens (the last ones of each row,
so every attention length predicts the same tokens). The model is composed from conf/ (model=txl data=wiki) and
trained briefly, or loaded from a finished run with --run.

    python benchmarks/txl_eval_speed.py                                  # train 200 steps, L = 64 .. 512
    python benchmarks/txl_eval_speed.py --train-steps 0 --lengths 64,128 --sliding-tokens 32   # smoke run
    python benchmarks/txl_eval_speed.py --run outputs/runs/<run> --device cuda --lengths 800,1800,2800,3800

On a CPU another process keeps busy, pass --threads 1: torch's threads otherwise wait for each other at every op.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without `pip install -e .`

import torch  # noqa: E402

PAPER = {800: 363, 1800: 773, 2800: 1409, 3800: 1874}  # Table 9: how much slower Al-Rfou et al. is (enwik8, 1 GPU)
LENGTHS = {"cpu": "64,128,256,512", "cuda": "800,1800,2800,3800"}
# A short run on 2 CPU cores: a smaller batch and a higher lr than the preset's (32, 2.5e-4), so 200 steps take
# minutes and leave perplexities well below the untrained ~16k; --overrides come after these and win.
BASE = ["model=txl", "data=wiki", "logger.mode=disabled", "trainer.batch_size=16", "optimizer.lr=1e-3"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; --lengths defaults by device (the paper's lengths on CUDA)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--overrides", nargs="*", default=[],
                   help=f"Hydra overrides after {' '.join(BASE)} (ignored with --run)")
    p.add_argument("--run", type=Path, default=None, help="a finished run directory: its config and last.pt")
    p.add_argument("--train-steps", type=int, default=200, help="training steps first; 0: random weights")
    p.add_argument("--lengths", default=None, help=f"attention lengths L (default: {LENGTHS})")
    p.add_argument("--tgt-len", type=int, default=32, help="segment length T; memory M = L - T (default: %(default)s)")
    p.add_argument("--rows", type=int, default=2, help="validation rows R (default: %(default)s)")
    p.add_argument("--sliding-tokens", type=int, default=128, help="tokens the sliding window predicts")
    p.add_argument("--window-batch-tokens", type=int, default=16384,
                   help="sliding windows per forward = this // L, so long windows fit memory (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=1, help="timed runs of each, best kept (default: %(default)s)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    a = p.parse_args(argv)
    a.device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available()
                            else "cpu" if a.device == "auto" else a.device)
    a.lengths = sorted(int(x) for x in (a.lengths or LENGTHS[a.device.type]).split(","))
    if min(a.tgt_len, a.rows, a.sliding_tokens, a.repeats) < 1 or a.train_steps < 0:
        p.error("--tgt-len, --rows, --sliding-tokens and --repeats must be >= 1, --train-steps >= 0")
    if a.lengths[0] < a.tgt_len:
        p.error(f"every attention length must be >= --tgt-len {a.tgt_len} (memory L - T >= 0)")
    return a


def load_model(args: argparse.Namespace) -> tuple[Any, str]:
    """The built run (runner.build.Built) on args.device, trained or loaded, and where its weights come from."""
    from omegaconf import OmegaConf

    from runner.store import checkpoint
    from runner.build import build
    from runner.build import register

    register()  # the typed schemas build() validates against
    if args.run is not None:  # as runner/__main__.py export_run_dir rebuilds a run
        cfg = OmegaConf.load(args.run / ".hydra" / "config.yaml")
        cfg.trainer.max_steps = 0
        built = build(cfg)
        built.module.load_state_dict(checkpoint.load(args.run)["module"])
        built.module.to(args.device)
        return built, f"checkpoint {args.run}"
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*BASE, f"trainer.device={args.device}",
                                           f"trainer.max_steps={max(args.train_steps, 1)}", *args.overrides])
    built = build(cfg)
    if args.train_steps == 0:
        built.module.to(args.device)
        return built, "random weights (--train-steps 0): perplexities mean nothing"
    from runner.engine.loop import Trainer

    with tempfile.TemporaryDirectory() as tmp:  # the trainer wants a run directory; nothing is kept
        trainer = Trainer(cfg, built, Path(tmp))
        start = time.perf_counter()
        while trainer.step < args.train_steps:
            out = trainer.train_step()
            if trainer.step % 50 == 0 or trainer.step == args.train_steps:
                print(f"  train step {trainer.step}/{args.train_steps}: loss {out['loss']:.3f}", flush=True)
        trainer.feed.close()
    return built, (f"trained {args.train_steps} steps of {cfg.trainer.batch_size}x{cfg.data.seq_len} tokens "
                   f"({time.perf_counter() - start:.0f}s)")


def machine(args: argparse.Namespace) -> dict[str, Any]:
    """CPU model, cores, torch threads and device name."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):  # platform.processor() is often empty on Linux
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), cpu)
    name = torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else "cpu"
    return {"cpu": cpu, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": name,
            "torch": torch.__version__}


def main(argv: list[str] | None = None) -> int:
    """Build or load the model, time both evaluations at every attention length, print and save the table."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from rich.console import Console
    from rich.table import Table

    from runner.build import parameter_counts
    from runner.data.lm_stream import stream_rows
    from runner.data.stream import TokenStream
    from runner.objectives.long_context import cached_nll, sliding_nll, timed

    console, info = Console(), machine(args)
    built, origin = load_model(args)
    model, objective, c = built.module.encoder, built.objective, built.config
    if c.family != "txl" or getattr(c, "bidirectional", False):
        raise SystemExit(f"model {c.name} is not a causal Transformer-XL: nothing to predict left to right")
    built.module.eval()  # no dropout; forward() is pure (memory in, memory out): slot memories stay untouched
    T, R, L_max = args.tgt_len, args.rows, args.lengths[-1]
    k = math.ceil(args.sliding_tokens / R)  # targets per row: the last k positions, reachable by every window
    N = math.ceil((L_max + k) / T) * T  # whole segments only, so every cached forward has the same shape
    stream = TokenStream(built.data.splits["validation"], built.data.specials.sep)
    rows = torch.from_numpy(stream_rows(stream, R, N + 1)).to(args.device)  # (R, N + 1)
    grid = torch.stack(torch.meshgrid(torch.arange(R), torch.arange(N - k, N), indexing="ij"), -1)
    targets = grid.reshape(-1, 2)[:args.sliding_tokens].to(args.device)  # (S, 2): (row, input position t)
    n_params = parameter_counts(built.module)["total"]
    console.print(f"machine: {info['cpu']} | {info['cpus']} CPUs | torch threads {info['torch_threads']} | "
                  f"device {info['device']} | torch {info['torch']}", highlight=False)
    console.print(f"model: {c.name} L{c.num_layers}/H{c.hidden_size}/{c.num_heads} heads, {n_params:,} parameters, "
                  f"{origin}; rows {R}x{N} tokens, segment {T}, {targets.shape[0]} sliding targets", highlight=False)
    results = []
    with torch.no_grad():
        for L in args.lengths:
            M, batch = L - T, max(1, args.window_batch_tokens // L)

            def cached() -> torch.Tensor:
                return cached_nll(model, objective, rows, T, M, c.clamp_len, c.same_length)

            def sliding(t: torch.Tensor = targets) -> torch.Tensor:
                return sliding_nll(model, objective, rows, L, t, batch_size=batch, clamp_len=c.clamp_len)

            cached(), sliding(targets[:batch])  # warm-up: allocator, kernels, at the timed shapes
            nll_c, s_c = timed(cached, args.device, args.repeats)
            nll_s, s_s = timed(sliding, args.device, args.repeats)
            same = nll_c[targets[:, 0], targets[:, 1]]  # the cached NLL of exactly the sliding window's tokens
            r = {"attention_length": L, "mem_len": M, "tgt_len": T, "cached_tokens": nll_c.numel(),
                 "sliding_tokens": nll_s.numel(), "sliding_batch": batch, "cached_s": s_c, "sliding_s": s_s,
                 "cached_tokens_per_s": nll_c.numel() / s_c, "sliding_tokens_per_s": nll_s.numel() / s_s,
                 "ppl_cached": math.exp(float(same.mean())), "ppl_sliding": math.exp(float(nll_s.mean())),
                 "paper_speedup": PAPER.get(L)}
            r["speedup"] = r["cached_tokens_per_s"] / r["sliding_tokens_per_s"]
            results.append(r)
            console.print(f"  L {L}: cached {r['cached_tokens_per_s']:,.0f} tok/s, sliding "
                          f"{r['sliding_tokens_per_s']:,.1f} tok/s ({r['speedup']:.1f}x)", highlight=False)
    table = Table(title="Transformer-XL evaluation speed: memory vs sliding window (Dai et al. 2019, Table 9)")
    for col in ("attention length", "memory", "cached tok/s", "sliding tok/s", "speed-up", "ppl cached",
                "ppl sliding", "paper speed-up"):
        table.add_column(col, justify="right")
    for r in results:
        paper = f"{r['paper_speedup']:,}x" if r["paper_speedup"] else "-"
        table.add_row(f"{r['attention_length']:,}", f"{r['mem_len']:,}", f"{r['cached_tokens_per_s']:,.0f}",
                      f"{r['sliding_tokens_per_s']:,.{1 if r['sliding_tokens_per_s'] < 100 else 0}f}",
                      f"{r['speedup']:,.1f}x", f"{r['ppl_cached']:.2f}", f"{r['ppl_sliding']:.2f}", paper)
    table.caption = (f"cached over {R}x{N} tokens, sliding over {targets.shape[0]} of them; perplexities on the "
                     f"same {targets.shape[0]} tokens; fp32, best of {args.repeats}")
    console.print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        flat = {name: str(v) if isinstance(v, (Path, torch.device)) else v for name, v in vars(args).items()}
        model_info = {"name": c.name, "parameters": n_params, "weights": origin}
        args.json.write_text(json.dumps({"machine": info, "model": model_info, "args": flat, "results": results},
                                        indent=2))
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
