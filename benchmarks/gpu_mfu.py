"""GPU training throughput and model FLOPs utilisation (MFU) of bert_base MLM in bf16, ours versus transformers.

One training step = forward + backward + AdamW step under bf16 autocast (as the trainer runs on CUDA), on one
random MLM batch (15% of positions labelled), from identical weights: the models, batch, optimizer and step come
from `train_throughput.py`, imported, not copied. Ours and transformers' BertForMaskedLM (sdpa attention) are
timed in interleaved rounds in one process; the median tokens/s over the rounds is reported per implementation.

Why MFU: tokens/s alone does not say how far from the card's limit a run is. The model FLOPs of a step are
`runner.models.flops.train_flops` (3 x the forward's matmuls, the count the runner's compute budgets use), the same
useful work for both implementations: transformers' MLM head also runs on the unlabelled positions, work that is
executed but not counted. MFU = achieved model FLOP/s / the card's dense (non-sparse) bf16 tensor-core peak.

    python benchmarks/gpu_mfu.py                                    # bert_base, batch 128 x 128, bf16, CUDA
    python benchmarks/gpu_mfu.py --seq-len 512 --batch-size 32 --json mfu.json
    python benchmarks/gpu_mfu.py --device cpu --dtype fp32 --models bert_tiny --batch-size 4 --steps 1 \\
        --warmup 1 --rounds 1 --peak-tflops 1                      # CPU smoke run (seconds)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # train_throughput lives beside this file (it puts the repository on sys.path)

import torch
import train_throughput as tt

from runner.models.flops import train_flops

# Dense (non-sparse) bf16 tensor-core peaks in TFLOP/s, with FP32 accumulate, from NVIDIA's product datasheets
# (the "BF16 Tensor Core" row; the datasheets print the 2:4-sparsity figure, twice the dense one, with an
# asterisk) and, for the RTX 4090, the Ada Lovelace architecture whitepaper (appendix table: "Peak BF16 Tensor
# TFLOPS with FP32 Accumulate" 165.2/330.4). First match wins, so variants precede their family name. Left out
# on purpose: A10G (an AWS part with no NVIDIA datasheet), Blackwell (B200/GB200: per-GPU figures differ by
# system), and other cards whose published dense bf16 figure we could not confirm; use --peak-tflops for them.
PEAKS: tuple[tuple[str, float, str], ...] = (
    (r"H100\s+NVL", 835.5, "H100 NVL datasheet: 1,671 sparse"),
    (r"H100\s+PCIe", 756.5, "H100 PCIe datasheet: 1,513 sparse"),
    (r"H100\b.*(SXM|HBM3)", 989.4, "H100 SXM datasheet: 1,979 sparse"),  # "NVIDIA H100 80GB HBM3" is the SXM
    (r"H200\s+NVL", 835.5, "H200 NVL datasheet: 1,671 sparse"),
    (r"GH200|H200", 989.4, "H200 SXM / GH200 datasheets: 1,979 sparse"),
    (r"\bA100\b", 312.0, "A100 datasheet (SXM and PCIe): 624 sparse"),
    (r"\bA30\b", 165.0, "A30 datasheet: 330 sparse"),
    (r"\bA40\b", 149.7, "A40 datasheet: 299.4 sparse"),
    (r"\bA10\b", 125.0, "A10 datasheet: 250 sparse"),  # \b: not A100, not A10G
    (r"\bL40S\b", 362.05, "L40S datasheet: 733 sparse"),
    (r"\bL40\b", 181.05, "L40 datasheet: 362.1 sparse"),
    (r"\bL4\b", 121.0, "L4 datasheet: 242 sparse"),
    (r"RTX\s+4090$", 165.2, "Ada whitepaper, RTX 4090: 330.4 sparse"),  # $: not the 4090 D or the laptop part
)
# Encoder presets (Transformer-XL's are language models, not BertForMaskedLM-shaped).
MODELS = sorted(p.stem for p in (tt.ROOT / "conf" / "model").glob("*.yaml") if not p.stem.startswith("txl"))


def lookup_peak(device_name: str) -> tuple[float, str] | None:
    """(dense bf16 TFLOP/s, source) of the first PEAKS pattern found in the device name, else None. A MIG
    instance ("... MIG 3g.40gb") has a fraction of the card's SMs, so its name matches nothing."""
    if re.search(r"\bMIG\b", device_name):
        return None
    for pattern, tflops, source in PEAKS:
        if re.search(pattern, device_name.strip(), flags=re.IGNORECASE):
            return tflops, source
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="bert_base",
                   help="comma-separated presets from conf/model/ (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=128, help="sequences per step (default: %(default)s)")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per sequence (default: %(default)s)")
    p.add_argument("--steps", type=int, default=30,
                   help="timed steps per implementation per round (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved measurement rounds (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=10,
                   help="untimed steps per implementation first (default: %(default)s)")
    p.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16",
                   help="bf16 autocast (as the trainer on CUDA) or fp32 (default: %(default)s)")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (cpu: smoke runs) (default: %(default)s)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="peak TFLOP/s to divide by, overriding the built-in dense bf16 table (needed for unknown "
                        "cards, --dtype fp32 and CPUs)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's default)")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and batch (default: %(default)s)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    for name in ("batch_size", "seq_len", "steps", "rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if args.peak_tflops is not None and not args.peak_tflops > 0:
        p.error("--peak-tflops must be > 0")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    try:
        args.device = torch.device(args.device)
    except RuntimeError:
        p.error(f"--device {args.device!r} is not a torch device (cuda, cuda:N or cpu)")
    if args.device.type not in ("cuda", "cpu"):
        p.error(f"--device {args.device} is not supported: use cuda, cuda:N or cpu")
    if args.device.type == "cuda":
        if not torch.cuda.is_available():
            p.error("no CUDA device here: pass --device cpu for a smoke run")
        if args.device.index is None:  # torch.cuda.set_device needs an index
            args.device = torch.device("cuda", torch.cuda.current_device())
        if args.device.index >= torch.cuda.device_count():
            p.error(f"--device {args.device}: only {torch.cuda.device_count()} CUDA device(s)")
        if args.dtype == "bf16" and not torch.cuda.get_device_capability(args.device) >= (8, 0):
            p.error(f"{torch.cuda.get_device_name(args.device)} has no bf16 tensor cores: use --dtype fp32")
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not args.models:
        p.error("--models is empty")
    for m in args.models:
        if m not in MODELS:
            p.error(f"unknown model {m!r}: choose from {', '.join(MODELS)}")
    args.configs = {m: tt.model_config(m) for m in args.models}
    for m, c in args.configs.items():
        if args.seq_len > c.max_seq_len:
            p.error(f"--seq-len {args.seq_len} exceeds {m}'s {c.max_seq_len} positions")
    return args


def resolve_peak(args: argparse.Namespace, name: str) -> tuple[float | None, str]:
    """Peak TFLOP/s and where it came from; None (MFU n/a) with the reason when there is none to use."""
    if args.peak_tflops is not None:
        return args.peak_tflops, "--peak-tflops"
    if args.dtype != "bf16":
        return None, "the built-in table holds dense bf16 peaks only: pass --peak-tflops X for MFU in fp32"
    found = lookup_peak(name) if args.device.type == "cuda" else None  # a CPU is never a card in the table
    if found is None:
        return None, f"{name!r} is not in the dense bf16 peak table: pass --peak-tflops X for MFU"
    return found[0], f"dense bf16, {found[1]}"


def resident_bytes(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Bytes held between steps by one implementation: parameters, gradients and optimizer state."""
    seen, total = set(), 0
    tensors = [t for p in module.parameters() for t in (p, p.grad) if t is not None]
    tensors += [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    for t in tensors:
        key = (t.untyped_storage().data_ptr(), t.device)
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


def bench_model(name: str, config, args: argparse.Namespace, peak: float | None, log) -> dict:
    """Warm up, then time both implementations in interleaved rounds (alternating who goes first, so that clocks
    and a shared card affect both alike); medians, model FLOP/s, MFU against `peak` and peak memory per one."""
    device, bs, T = args.device, args.batch_size, args.seq_len
    ours, theirs = tt.build_models(config, args.seed, device)
    batch = tt.make_batch(config, bs, T, device, args.seed)
    labelled = int(batch["labels"].ne(tt.IGNORE).sum())
    norms = {"mlm": labelled}
    parity = tt.check_parity(ours, theirs, batch, batch, norms)
    dtype = torch.bfloat16 if args.dtype == "bf16" else None
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext
    runners = [tt.Runner("ours", ours, lambda: ours(batch, norms)[0], autocast),
               tt.Runner("transformers", theirs, lambda: theirs(**batch).loss, autocast)]
    flops = train_flops(config, bs, T, labelled)  # model FLOPs of one step, the same for both
    unlabelled_head = train_flops(config, bs, T, bs * T) - flops  # transformers' extra, executed, uncounted
    tokens = bs * T * args.steps
    log(f"[bold]{name}[/]: L{config.num_layers}/H{config.hidden_size}/{config.num_heads} heads/FFN "
        f"{config.intermediate_size}, vocab {config.vocab_size}; batch {bs}x{T}, {labelled} labelled positions; "
        f"{flops / 1e12:.4g} model TFLOP/step (transformers' head on the unlabelled positions adds "
        f"{unlabelled_head / 1e12:.4g}, uncounted); eval-mode loss |ours - transformers| = {parity:.2e}")
    for r in runners:
        for _ in range(args.warmup):
            r.step()
    tt.sync(device)
    seconds = {r.name: [] for r in runners}
    peak_mem = {r.name: 0 for r in runners}
    for k in range(args.rounds):
        for r in (runners if k % 2 == 0 else runners[::-1]):
            if device.type == "cuda":
                other = next(o for o in runners if o is not r)
                torch.cuda.reset_peak_memory_stats(device)
            seconds[r.name].append(r.timed(args.steps, device))
            if device.type == "cuda":  # what this implementation would need alone: less the other's resident
                alone = torch.cuda.max_memory_allocated(device) - resident_bytes(other.module, other.optimizer)
                peak_mem[r.name] = max(peak_mem[r.name], alone)
        log(f"  round {k + 1}/{args.rounds}: " + ", ".join(
            f"{n} {tokens / s[-1]:,.0f} tok/s" for n, s in seconds.items())
            + f" (ratio {seconds['transformers'][-1] / seconds['ours'][-1]:.2f}x)")
    impls = {}
    for r in runners:
        tps = statistics.median(tokens / s for s in seconds[r.name])
        achieved = flops * tps / (bs * T) / 1e12
        impls[r.name] = {
            "params": tt.count(r.module), "tokens_per_s": tps,
            "tokens_per_s_rounds": [tokens / s for s in seconds[r.name]],
            "seconds_rounds": seconds[r.name], "achieved_tflops": achieved,
            "mfu": achieved / peak if peak else None,
            "peak_memory_bytes": peak_mem[r.name] if device.type == "cuda" else None, "final_loss": r.last_loss}
    result = {"model": name, "batch_size": bs, "seq_len": T, "steps_per_round": args.steps, "rounds": args.rounds,
              "warmup": args.warmup, "labelled_positions": labelled, "flops_per_step": flops,
              "transformers_unlabelled_head_flops_per_step": unlabelled_head,
              "attn_implementation": theirs.config._attn_implementation, "eval_loss_abs_diff": parity,
              "implementations": impls,
              "ratio": impls["ours"]["tokens_per_s"] / impls["transformers"]["tokens_per_s"]}
    del runners, ours, theirs, batch
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def tflops_str(x: float) -> str:
    """One decimal for GPU-sized figures, three significant digits for CPU smoke runs' small ones."""
    return f"{x:,.1f}" if x >= 10 else f"{x:.3g}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.type == "cuda":
        torch.cuda.set_device(args.device)
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped or captured: rich's 80 columns would squeeze the table
        console = Console(width=max(console.width, 120))
    info = tt.machine(args)
    name = info.get("gpu") or info["cpu"]
    peak, peak_note = resolve_peak(args, name)
    console.print(f"device: {name} ({args.device}) | torch {info['torch']} | transformers {info['transformers']} | "
                  f"{'bf16 autocast' if args.dtype == 'bf16' else 'fp32'}")
    console.print(f"peak: {peak:,.1f} TFLOP/s ({peak_note})" if peak else f"peak: n/a ({peak_note})")
    t0 = time.perf_counter()
    results = [bench_model(m, args.configs[m], args, peak, console.print) for m in args.models]
    wall = time.perf_counter() - t0

    table = Table(title=f"{name}, {args.dtype}: fwd + bwd + AdamW step, median of {args.rounds} interleaved rounds "
                        f"x {args.steps} steps")
    for col in ("model", "implementation", "batch", "tokens/s", "model TFLOP/s", "MFU", "peak memory",
                "ours/theirs"):
        table.add_column(col, justify="left" if col in ("model", "implementation") else "right")
    for r in results:
        for impl, v in r["implementations"].items():
            mem = f"{v['peak_memory_bytes'] / 2**30:.2f} GiB" if v["peak_memory_bytes"] is not None else "n/a"
            ratio = ""
            if impl == "ours":
                colour = "green" if r["ratio"] >= 1.5 else "yellow" if r["ratio"] >= 1.0 else "red"
                ratio = f"[{colour}]{r['ratio']:.2f}x[/]"
            table.add_row(r["model"], f"{impl} ({r['attn_implementation']})" if impl == "transformers" else impl,
                          f"{r['batch_size']}x{r['seq_len']}", f"{v['tokens_per_s']:,.0f}",
                          tflops_str(v["achieved_tflops"]), f"{100 * v['mfu']:.1f}%" if v["mfu"] is not None else "n/a",
                          mem, ratio)
    console.print(table)
    console.print(f"model FLOPs = runner.models.flops.train_flops (MLM head on labelled positions) for both; transformers "
                  f"also runs its head on the unlabelled positions (uncounted). Peak memory = "
                  f"torch.cuda.max_memory_allocated during its steps less the other model's parameters, gradients "
                  f"and AdamW state. Wall time {wall:.1f}s.")
    if peak is None:
        console.print(f"MFU n/a: {peak_note}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        skip = {"configs"}
        args_out = {k: (str(v) if isinstance(v, (Path, torch.device)) else v) for k, v in vars(args).items()
                    if k not in skip}
        args.json.write_text(json.dumps({"machine": info, "device_name": name, "args": args_out,
                                         "peak_tflops": peak, "peak_note": peak_note, "wall_s": wall,
                                         "results": results}, indent=2))
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
