"""Which torch kernel should packed rows use? Forward + backward time of one attention call over the same examples:

- padded: one example per row, padding keys masked (SDPA with a (B, 1, 1, T) mask), the reference layout;
- packed, SDPA: the examples packed into fewer rows (runner/data/packing.py), a (R, 1, T, T) document mask, which
  is what the encoder runs (runner/models/encoder.py);
- packed, FlexAttention: the same rows with a block mask from the sequence ids (torch.nn.attention.flex_attention,
  compiled), which skips blocks no query of a block may see; on CPU torch has no FlexAttention backward (reported,
  not run), on CUDA it is timed;
- unpadded, varlen: the real tokens alone (N, heads, d), each example attended as it is by torch's variable-length
  kernel (torch.nn.attention.varlen, flash attention), with the encoder's own cu_seqlens
  (runner/models/unpadded.py): what the encoder runs on CUDA in half precision. CUDA and bf16 only.

Time per real token, side by side in one process, interleaved rounds, with the ratio to padded SDPA. Example lengths
come from the bundled corpus (data.format=full_sentences at --seq-len), as in train_throughput.py.

    python benchmarks/attention_kernels.py                                   # CPU, 32 examples x 128
    python benchmarks/attention_kernels.py --device cuda --dtype bf16 --batch-size 256 --seq-len 512
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
for p in (ROOT, HERE):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import train_throughput as tt  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=32, help="examples (default: %(default)s)")
    p.add_argument("--seq-len", type=int, default=128, help="row width (default: %(default)s)")
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="timed calls per kernel per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    args.device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                               else "cpu" if args.device == "auto" else args.device)
    return args


def layouts(lengths: list[int], seq_len: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The padded key mask (B, T) and the packed batch's keys for the same examples."""
    from runner.data.packing import pack

    T = max(lengths)
    real = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    packed = pack({"input_ids": real.long(), "attention_mask": real}, seq_len, 0)
    return real, packed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dev, dtype = args.device, torch.bfloat16 if args.dtype == "bf16" else torch.float32
    lengths = tt.wiki_lengths(args.seq_len, args.batch_size, args.seed)
    real, packed = layouts(lengths, args.seq_len)
    seq = packed["sequence_ids"].to(dev)
    B, T = real.shape
    R, Tp = seq.shape
    h, d = args.heads, args.head_dim
    g = torch.Generator(device="cpu").manual_seed(args.seed)

    def qkv(rows: int, width: int) -> list[torch.Tensor]:
        return [torch.randn(rows, h, width, d, generator=g).to(dev, dtype).requires_grad_() for _ in range(3)]

    padded_in, packed_in = qkv(B, T), qkv(R, Tp)
    pad_mask = real.to(dev)[:, None, None, :]
    doc_mask = seq[:, None, :, None].eq(seq[:, None, None, :])
    kernels = {"padded sdpa": lambda: F.scaled_dot_product_attention(*padded_in, attn_mask=pad_mask),
               "packed sdpa": lambda: F.scaled_dot_product_attention(*packed_in, attn_mask=doc_mask)}
    notes = {}
    if dev.type == "cuda":
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        block = create_block_mask(lambda b, hh, q, k: seq[b, q] == seq[b, k], R, None, Tp, Tp, device=dev)
        flex = torch.compile(flex_attention)
        kernels["packed flex"] = lambda: flex(*packed_in, block_mask=block)
    else:
        notes["packed flex"] = "not run: torch has no FlexAttention backward on CPU"
    from runner.models.unpadded import Unpadded, Varlen, sequence_bounds, varlen_kernel

    kernel = varlen_kernel()
    if dev.type == "cuda" and dtype == torch.bfloat16 and kernel is not None:
        layout = Unpadded.of(packed["attention_mask"].to(dev))
        cu, longest = sequence_bounds(layout, seq)
        varlen = Varlen(cu, longest, (-1, -1), kernel)
        flat_in = [torch.randn(layout.tokens.numel(), h, d, generator=g).to(dev, dtype).requires_grad_()
                   for _ in range(3)]
        kernels["unpadded varlen"] = lambda: varlen.attend(*flat_in)
    else:
        notes["unpadded varlen"] = "not run: the variable-length kernel needs CUDA and --dtype bf16"

    def call(f) -> None:
        f().float().sum().backward()

    for f in kernels.values():  # warm up (and compile flex)
        for _ in range(2):
            call(f)
    seconds: dict[str, list[float]] = {k: [] for k in kernels}
    for r in range(args.rounds):
        for name in (list(kernels) if r % 2 == 0 else list(kernels)[::-1]):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                call(kernels[name])
            if dev.type == "cuda":
                torch.cuda.synchronize()
            seconds[name].append((time.perf_counter() - t0) / args.steps)
    tokens = sum(lengths)
    med = {k: statistics.median(v) for k, v in seconds.items()}
    base = med["padded sdpa"]
    print(f"{B} examples of {tokens / B:.0f} tokens on average: padded {B}x{T} "
          f"({1 - tokens / real.numel():.0%} padding), packed {R}x{Tp} ({1 - tokens / seq.numel():.0%}); "
          f"{h} heads x {d}, {args.dtype}, {dev}")
    print(f"{'kernel':<16} {'ms / call':>10} {'us / token':>11} {'vs padded':>10}")
    for k, s in med.items():
        print(f"{k:<16} {s * 1e3:>10.2f} {s / tokens * 1e6:>11.3f} {base / s:>9.2f}x")
    for k, why in notes.items():
        print(f"{k:<16} {why}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"examples": B, "tokens": tokens, "padded_shape": [B, T],
                                         "packed_shape": [R, Tp], "seconds": med, "notes": notes,
                                         "device": str(dev), "dtype": args.dtype}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
