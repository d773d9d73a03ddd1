"""Data-pipeline throughput: ours against what a user would pick instead (transformers + datasets).

1. Tokenization (tokens/s) of the wiki train split: `runner.data.token_corpus.tokenize_documents` (sentence split,
   one batched Rust call) vs `datasets.Dataset.map(tokenizer, batched=True)` with the same tokenizer wrapped
   as transformers' PreTrainedTokenizerFast.
2. Loader (batches/s) at seq_len 128 and 512 with dynamic MLM masking: our index-addressed `Batches` +
   `MaskedLM.prepare` vs a torch DataLoader over a `datasets` dataset with transformers'
   DataCollatorForLanguageModeling (padding + 80/10/10 masking), same batch size, same examples.

Both are measured in one process, alternating, and the ratio ours / theirs is printed. Compare the loader
figure with the training steps/s of benchmarks/train_throughput.py: the loader must never be the bottleneck.

    python benchmarks/data_throughput.py                 # full wiki train split, seq 128 and 512
    python benchmarks/data_throughput.py --max-docs 500 --batches 20   # smoke run
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-docs", type=int, default=None, help="articles of the wiki corpus (default: all)")
    p.add_argument("--seq-lens", default="128,512")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=100, help="timed batches per loader per round")
    p.add_argument("--rounds", type=int, default=3)
    return p.parse_args()


def tokenization(docs, tok, rounds: int) -> tuple[float, float]:
    """Median tokens/s of ours and of datasets.map with transformers' fast tokenizer."""
    import datasets
    from transformers import PreTrainedTokenizerFast

    from runner.data.token_corpus import tokenize_documents

    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    ds = datasets.Dataset.from_dict({"text": [d.text for d in docs]})
    ours, theirs = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        n = tokenize_documents(tok, docs).num_tokens
        ours.append(n / (time.perf_counter() - t))
        t = time.perf_counter()
        out = ds.map(lambda b: fast(b["text"], add_special_tokens=False), batched=True, remove_columns=["text"],
                     load_from_cache_file=False, keep_in_memory=True)
        m = sum(len(x) for x in out["input_ids"])
        theirs.append(m / (time.perf_counter() - t))
    return statistics.median(ours), statistics.median(theirs)


def loaders(examples, objective, tok, batch_size: int, batches: int, rounds: int) -> tuple[float, float]:
    """Median batches/s of our Batches + dynamic masking (tokens read from the memory-mapped cache per batch)
    and of DataLoader + DataCollatorForLanguageModeling over the same examples held by a datasets.Dataset."""
    import datasets
    from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerFast

    from runner.data.batches import Batches

    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", mask_token="<mask>")
    ours_b = Batches(examples, batch_size, seed=0, prepare=objective.prepare)
    full = examples.tensors()
    rows = [ids[m].tolist() for ids, m in zip(full["input_ids"], full["attention_mask"])]
    ds = datasets.Dataset.from_dict({"input_ids": rows})
    collator = DataCollatorForLanguageModeling(fast, mlm_probability=0.15)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, collate_fn=collator)
    ours, theirs = [], []
    for r in range(rounds):
        t = time.perf_counter()
        for i in range(batches):
            ours_b.get(r * batches + i)
        ours.append(batches / (time.perf_counter() - t))
        it, t = iter(loader), time.perf_counter()
        for _ in range(batches):
            try:
                next(it)
            except StopIteration:
                it = iter(loader)
                next(it)
        theirs.append(batches / (time.perf_counter() - t))
    return statistics.median(ours), statistics.median(theirs)


def main() -> None:
    args = parse_args()
    import datasets
    from hydra import compose, initialize_config_dir

    from runner.build import build
    from runner.build import register

    register()
    datasets.disable_progress_bars()
    console = Console()
    table = Table(title="data pipeline throughput (median of interleaved rounds)")
    for col in ("what", "ours", "transformers + datasets", "ratio"):
        table.add_column(col, justify="right" if col != "what" else "left")
    first = True
    for seq_len in [int(s) for s in args.seq_lens.split(",")]:
        overrides = ["model=roberta", f"data.seq_len={seq_len}", "trainer.max_steps=0", "logger.mode=disabled"]
        if args.max_docs:
            overrides.append(f"data.max_docs={args.max_docs}")
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("config", overrides=overrides)
        built = build(cfg)
        if first:
            from runner.data.sources import load_documents

            docs = load_documents(cfg.data)[0][: args.max_docs]
            o, t = tokenization(docs, built.data.tokenizer, args.rounds)
            table.add_row("tokenization, tokens/s", f"{o:,.0f}", f"{t:,.0f}", f"{o / t:.2f}x")
            first = False
        examples = built.data.examples("train", 1, 0)
        o, t = loaders(examples, built.objective, built.data.tokenizer, args.batch_size, args.batches, args.rounds)
        table.add_row(f"loader, batches/s ({args.batch_size} x {seq_len}, dynamic MLM)", f"{o:,.1f}", f"{t:,.1f}",
                      f"{o / t:.2f}x")
    console.print(table)
    console.print(f"torch threads {torch.get_num_threads()}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
