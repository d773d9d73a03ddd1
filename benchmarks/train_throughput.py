"""Training throughput (tokens/s) of our encoder + MLM objective versus transformers' BertForMaskedLM (for a
modernbert* preset: ModernBertForMaskedLM).

One training step = forward + backward + AdamW step, on the same random batch, from identical weights
(`runner.hf.mapping.build_hf_model` copies ours into transformers' model). Measurements are interleaved
in rounds (ours/theirs, alternating which goes first) so that a noisy machine affects both alike; the
median tokens/s over the rounds is reported per implementation, with the ratio ours / transformers.

Our MLM head runs only on the labelled positions (MosaicBERT/cramming); transformers' computes logits
over all positions. That is part of what is compared: an end-to-end MLM training step.

The batch's examples have the lengths of the runner's own examples (--lengths wiki: the bundled corpus in
data.format=full_sentences at --seq-len, the runner's default), padded to the longest as transformers'
collators do; tokens/s counts real tokens. Ours runs twice: on those padded rows, and packed
(data.packing=true: runner/data/packing.py, the same examples in fewer rows, attention kept within each); eager,
ours packed runs a third time with every position computed ("every position": unpadding off, what the encoder did
before runner/models/unpadded.py took the token-wise layers off the padding), the gain of unpadding side by side.
--lengths full: every example at full length (no padding; packing then changes nothing and is not run).
--compile: every implementation under torch.compile (inductor), warmed up before timing.

    python benchmarks/train_throughput.py                       # bert_small and bert_base, defaults
    python benchmarks/train_throughput.py --models bert_small --steps 2 --warmup 1 --rounds 1
    python benchmarks/train_throughput.py --models modernbert_base  # ours against ModernBertForMaskedLM
    python benchmarks/train_throughput.py --lengths full            # full rows, no padding (the old batch)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without `pip install -e .`

import torch  # noqa: E402

# Per-model default batch sizes: chosen so that the default run finishes in minutes on 2 CPU cores.
DEFAULT_BATCH = {"bert_tiny": 32, "bert_mini": 32, "bert_small": 16, "bert_medium": 8, "bert_base": 8,
                 "bert_large": 4, "modernbert": 32, "modernbert_base": 8, "modernbert_large": 4}
IGNORE = -100
MASK_ID, FIRST_REGULAR_ID = 4, 5  # SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4, num_special=5)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="bert_small,bert_base",
                   help="comma-separated presets from conf/model/ (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"sequences per step (default per model: {DEFAULT_BATCH}, else 8)")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per sequence (default: %(default)s)")
    p.add_argument("--steps", type=int, default=2, help="timed steps per implementation per round (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per implementation first (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's default)")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32",
                   help="fp32, or bf16 autocast (CUDA only) (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:N")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and batch (default: %(default)s)")
    p.add_argument("--lengths", choices=("wiki", "full"), default="wiki",
                   help="example lengths: the bundled corpus's full_sentences examples, or all --seq-len "
                        "(default: %(default)s)")
    p.add_argument("--compile", action="store_true", help="torch.compile every implementation (inductor)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    args.device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                               else "cpu" if args.device == "auto" else args.device)
    if args.dtype == "bf16" and args.device.type != "cuda":
        p.error("--dtype bf16 (autocast) is only used on CUDA; on CPU measure fp32")
    for name in ("seq_len", "steps", "rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    return args


def model_config(name: str):
    """Our EncoderConfig for a preset, composed from conf/ exactly as `python -m runner model=NAME` does."""
    from hydra import compose, initialize_config_dir

    from runner.build import encoder_config
    from runner.build import register

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={name}"])
    return encoder_config(cfg)


def wiki_lengths(seq_len: int, count: int, seed: int) -> list[int]:
    """Lengths (special tokens included) of `count` examples drawn from the bundled corpus's training examples in
    data.format=full_sentences at seq_len, as `python -m runner model=bert data=wiki` builds them (cached)."""
    from hydra import compose, initialize_config_dir

    from runner.build import encoder_config
    from runner.data.pretraining import build_data
    from runner.build import register

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["model=bert", "objective=mlm", "data.format=full_sentences",
                                           f"data.seq_len={seq_len}"])
    c = encoder_config(cfg)
    data = build_data(cfg.data, tokenizer_kind=c.tokenizer, vocab_size=c.vocab_size, lowercase=c.lowercase,
                      pairs=False, objective="mlm")
    lengths = data.examples("train", 1, 0).lengths()
    pick = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed))[:count]
    return [int(lengths[i]) for i in pick]


def make_batch(config, batch_size: int, seq_len: int, device: torch.device, seed: int,
               lengths: list[int] | None = None) -> dict[str, torch.Tensor]:
    """Random ids in [5, vocab) between [CLS] and [SEP], right-padded to the longest of `lengths` (None: all
    seq_len, no padding); 15% of the real non-special positions labelled, 80% of those replaced by [MASK]."""
    g = torch.Generator().manual_seed(seed)
    lengths = lengths or [seq_len] * batch_size
    T = max(lengths)
    real = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)
    ids = torch.randint(FIRST_REGULAR_ID, config.vocab_size, (batch_size, T), generator=g)
    ids[:, 0] = 2  # [CLS]
    ids[torch.arange(batch_size), torch.tensor(lengths) - 1] = 3  # [SEP]
    ids = ids.masked_fill(~real, 0)  # [PAD]
    special = ids.lt(FIRST_REGULAR_ID)
    selected = (torch.rand(batch_size, T, generator=g) < 0.15) & ~special
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE))
    masked = selected & (torch.rand(batch_size, T, generator=g) < 0.8)
    input_ids = torch.where(masked, torch.full_like(ids, MASK_ID), ids)
    batch = {"input_ids": input_ids, "token_type_ids": torch.zeros_like(ids),
             "attention_mask": real.long(), "labels": labels}
    return {k: v.to(device) for k, v in batch.items()}


def build_models(config, seed: int, device: torch.device):
    """Our Pretrainer (encoder + MaskedLM) and transformers' *ForMaskedLM of the family with the same weights."""
    from runner.build import Pretrainer
    from runner.data.tokenizer import SpecialIds
    from runner.models.encoder import Encoder
    from runner.hf.mapping import build_hf_model
    from runner.objectives.mlm import MaskedLM

    specials = SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=MASK_ID, num_special=FIRST_REGULAR_ID)
    torch.manual_seed(seed)
    ours = Pretrainer(Encoder(config), MaskedLM.create(config, specials, config.vocab_size, masking="dynamic"))
    theirs = build_hf_model(ours, config, nsp=False)
    theirs.set_attn_implementation("sdpa")  # its best standard path (also transformers 5's default)
    return ours.to(device).train(), theirs.to(device).train()


def make_optimizer(module: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW as the trainer builds it (decay on matrices only); fused on CUDA, the default loop on CPU."""
    from runner.engine.optim import param_groups

    fused = next(module.parameters()).is_cuda
    return torch.optim.AdamW(param_groups(module, 0.01), lr=1e-4, **({"fused": True} if fused else {}))


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())  # tied tensors counted once


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Runner:
    """One implementation's training step on a fixed batch."""

    def __init__(self, name: str, module: torch.nn.Module, loss_fn, autocast):
        self.name, self.module, self.loss_fn, self.autocast = name, module, loss_fn, autocast
        self.optimizer = make_optimizer(module)
        self.last_loss = float("nan")

    def step(self) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            loss = self.loss_fn()
        loss.backward()
        self.optimizer.step()
        return loss

    def timed(self, steps: int, device: torch.device) -> float:
        """Seconds for `steps` steps."""
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = self.step()
        sync(device)
        elapsed = time.perf_counter() - t0
        self.last_loss = float(loss.detach())
        return elapsed


def every_position(forward, batch, norms) -> torch.Tensor:
    """The loss with unpadding off: Unpadded.of answers None, so every token-wise layer computes every position of
    the rows, padding included (the encoder before runner/models/unpadded.py)."""
    from runner.models.unpadded import Unpadded

    of = Unpadded.__dict__["of"]
    Unpadded.of = classmethod(lambda cls, mask: None)
    try:
        return forward(batch, norms)[0]
    finally:
        Unpadded.of = of


def check_parity(ours, theirs, batch, hf_batch, norms) -> float:
    """|loss_ours - loss_theirs| in eval mode (no dropout) before training: same weights, same loss."""
    ours.eval(), theirs.eval()
    with torch.no_grad():
        a = ours(batch, norms)[0].float()
        b = theirs(**hf_batch).loss.float()
    ours.train(), theirs.train()
    return abs(float(a) - float(b))


def bench_model(name: str, args: argparse.Namespace, log) -> dict:
    config = model_config(name)
    bs = args.batch_size or DEFAULT_BATCH.get(name, 8)
    if args.seq_len > config.max_seq_len:
        raise SystemExit(f"--seq-len {args.seq_len} exceeds {name}'s {config.max_seq_len} positions")
    device = args.device
    ours, theirs = build_models(config, args.seed, device)
    lengths = wiki_lengths(args.seq_len, bs, args.seed) if args.lengths == "wiki" else None
    batch = make_batch(config, bs, args.seq_len, device, args.seed, lengths)
    norms = {"mlm": int(batch["labels"].ne(IGNORE).sum())}
    # what transformers' class takes: no segment ids where the model has no segment table (ModernBERT)
    hf_batch = {k: v for k, v in batch.items() if k != "token_type_ids" or config.type_vocab_size > 0}
    parity = check_parity(ours, theirs, batch, hf_batch, norms)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if args.dtype == "bf16" else \
        contextlib.nullcontext
    fwd_ours, fwd_theirs = (torch.compile(m) if args.compile else m for m in (ours, theirs))
    runners = [Runner("ours", ours, lambda: fwd_ours(batch, norms)[0], autocast),
               Runner("transformers", theirs, lambda: fwd_theirs(**hf_batch).loss, autocast)]
    real = int(batch["attention_mask"].sum())
    padded_positions = batch["input_ids"].numel()
    packed_positions = padded_positions
    if lengths is not None:  # the same examples packed: one more implementation, ours on fewer rows
        from runner.data.packing import pack

        packed = pack({k: v.cpu() for k, v in batch.items()}, args.seq_len, 0)
        packed = {k: v.to(device) for k, v in packed.items()}
        packed_positions = packed["input_ids"].numel()
        runners.insert(1, Runner("ours packed", ours, lambda: fwd_ours(packed, norms)[0], autocast))
        if not args.compile:  # a compiled graph would keep the unpadded path whatever the patch says
            runners.insert(2, Runner("every position", ours, lambda: every_position(fwd_ours, packed, norms),
                                     autocast))
    tokens = real * args.steps
    log(f"[bold]{name}[/]: L{config.num_layers}/H{config.hidden_size}/{config.num_heads} heads/FFN "
        f"{config.intermediate_size}, vocab {config.vocab_size}; {bs} examples of {real / bs:.0f} tokens on average "
        f"({1 - real / padded_positions:.0%} padding as padded rows, {1 - real / packed_positions:.0%} packed), "
        f"{norms['mlm']} labelled positions; eval-mode loss |ours - transformers| = {parity:.2e}"
        + (", compiled" if args.compile else ""))
    for r in runners:  # warmup (allocator, kernels, optimizer state)
        for _ in range(args.warmup):
            r.step()
    sync(device)
    seconds = {r.name: [] for r in runners}
    for k in range(args.rounds):
        for r in (runners if k % 2 == 0 else runners[::-1]):  # alternate who goes first
            seconds[r.name].append(r.timed(args.steps, device))
        best = "ours packed" if "ours packed" in seconds else "ours"
        log(f"  round {k + 1}/{args.rounds}: " + ", ".join(
            f"{n} {tokens / s[-1]:,.0f} tok/s" for n, s in seconds.items())
            + f" (ratio {seconds['transformers'][-1] / seconds[best][-1]:.2f}x)")
    tps = {n: [tokens / s for s in v] for n, v in seconds.items()}
    med = {n: statistics.median(v) for n, v in tps.items()}
    best = "ours packed" if "ours packed" in med else "ours"
    result = {
        "model": name, "batch_size": bs, "seq_len": args.seq_len, "steps_per_round": args.steps,
        "rounds": args.rounds, "warmup": args.warmup, "labelled_positions": norms["mlm"],
        "lengths": args.lengths, "compiled": args.compile, "real_tokens": real,
        "padding_padded": 1 - real / padded_positions, "padding_packed": 1 - real / packed_positions,
        "params_ours": count(ours), "params_transformers": count(theirs),
        "attn_implementation": theirs.config._attn_implementation, "eval_loss_abs_diff": parity,
        "tokens_per_s_rounds": tps, "seconds_rounds": seconds,
        "tokens_per_s_ours": med["ours"], "tokens_per_s_transformers": med["transformers"],
        "best_tokens_per_s_ours": max(tps["ours"]), "best_tokens_per_s_transformers": max(tps["transformers"]),
        "ratio": med["ours"] / med["transformers"],
        "tokens_per_s_ours_packed": med.get("ours packed"), "ratio_packed": med[best] / med["transformers"],
        "packed_vs_padded": med[best] / med["ours"],
        "tokens_per_s_every_position": med.get("every position"),
        "unpadding_gain": med[best] / med["every position"] if "every position" in med else None,
        "best_ratio": max(tps[best]) / max(tps["transformers"]),
        "final_loss": {r.name: r.last_loss for r in runners},
    }
    del runners, ours, theirs, batch, hf_batch, fwd_ours, fwd_theirs
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def machine(args: argparse.Namespace) -> dict:
    import transformers

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {"cpu": cpu, "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "transformers": transformers.__version__, "device": str(args.device), "dtype": args.dtype,
            "python": platform.python_version()}
    if args.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(args.device)
    return info


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 150))  # the table's 11 columns on one line
    info = machine(args)
    console.print(f"machine: {info['cpu']} | torch threads {info['torch_threads']} | torch {info['torch']} | "
                  f"transformers {info['transformers']} | device {info['device']}"
                  + (f" ({info['gpu']})" if "gpu" in info else "") + f" | {args.dtype}")
    t0 = time.perf_counter()
    results = [bench_model(name.strip(), args, console.print) for name in args.models.split(",") if name.strip()]
    wall = time.perf_counter() - t0

    attn = ", ".join(sorted({r["attn_implementation"] for r in results}))
    table = Table(title=f"Training tokens/s (real tokens; fwd + bwd + AdamW), median of {args.rounds} rounds x "
                        f"{args.steps} steps, {args.dtype}{', compiled' if args.compile else ''}, transformers {attn}; "
                        "ours/theirs: ours packed where packing applies")
    for col, just in (("model", "left"), ("batch", "right"), ("padding", "right"), ("ours padded", "right"),
                      ("ours packed", "right"), ("every position", "right"), ("transformers", "right"),
                      ("packed/padded", "right"), ("unpadding", "right"),
                      ("ours/theirs", "right"), ("of bests", "right")):
        table.add_column(col, justify=just, no_wrap=True)
    for r in results:
        ratio = r["ratio_packed"]
        colour = "green" if ratio >= 1.5 else "yellow" if ratio >= 1.0 else "red"
        packed = r["tokens_per_s_ours_packed"]
        every = "-" if r.get("tokens_per_s_every_position") is None else f"{r['tokens_per_s_every_position']:,.0f}"
        gain = "-" if r.get("unpadding_gain") is None else f"{r['unpadding_gain']:.2f}x"
        table.add_row(r["model"], f"{r['batch_size']}x{r['seq_len']}",
                      f"{r['padding_padded']:.0%}>{r['padding_packed']:.0%}", f"{r['tokens_per_s_ours']:,.0f}",
                      "-" if packed is None else f"{packed:,.0f}", every, f"{r['tokens_per_s_transformers']:,.0f}",
                      f"{r['packed_vs_padded']:.2f}x", gain, f"[{colour}]{ratio:.2f}x[/]", f"{r['best_ratio']:.2f}x")
    console.print(table)
    console.print(f"wall time {wall:.1f}s; ours runs the MLM head on labelled positions only, "
                  "transformers on all positions")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "args": {
            k: (str(v) if isinstance(v, (Path, torch.device)) else v) for k, v in vars(args).items()},
            "wall_s": wall, "results": results}, indent=2))
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
