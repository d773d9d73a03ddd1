"""Data preparation as two jobs, timed apart: ours against the libraries a user would otherwise pick.

For each corpus size, a synthetic JSON-lines corpus (benchmarks/data_memory.py's shards of English-like sentences)
goes through each job in a fresh process (its wall time and peak resident memory, ru_maxrss):

1. tokenizer training (the `model=roberta` preset's byte-level BPE, its vocabulary size):
   - ours: what `build_data` runs, the corpus reader's training-split documents into
     runner.data.tokenizer.train_tokenizer;
   - theirs: datasets.load_dataset("json") and tokenizers' own trainer fed by batches of the text column
     (Tokenizer.train_from_iterator with BpeTrainer, the recipe of the tokenizers documentation).
2. tokenization with that tokenizer given (ours trained it: the same ids on both sides):
   - ours: `build_data` with data.tokenizer.path, streaming every split into memory-mapped arrays, data.num_proc
     workers;
   - theirs: datasets.load_dataset("json") and `.map` of the same fast tokenizer (PreTrainedTokenizerFast),
     batched, num_proc workers, into datasets' Arrow cache.

Both sides use --num-proc workers (default: every core) for the second job; the first is what each library does.

    python benchmarks/data_prep.py                    # 8 and 128 MB
    python benchmarks/data_prep.py --sizes 8,128,1024  # 1 GB too (minutes per side)
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_memory import HF_TOKENIZED, ROOT, child, make_corpus  # noqa: E402  (a sibling script, not a package)

PRESET = ["model=roberta", "data=jsonl", "trainer.max_steps=0", "logger.mode=disabled"]

CONFIG = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
from hydra import compose, initialize_config_dir
from runner.build import register
register()
with initialize_config_dir(config_dir={conf!r}, version_base="1.3"):
    cfg = compose("config", overrides={overrides!r})
"""

OURS_TRAIN = CONFIG + r"""
from runner.data.corpus import split_of
from runner.data.sources import open_documents
from runner.data.tokenizer import train_tokenizer
t = time.perf_counter()
d, m = cfg.data, cfg.model
val, test = float(d.val_fraction), float(d.test_fraction)  # as build_data reads them: once
texts = (doc.text for doc in open_documents(d) if split_of(doc.title, val, test) == "train")
tok = train_tokenizer(m.tokenizer, texts, m.vocab_size, m.lowercase)
seconds = time.perf_counter() - t
tok.save({out!r})
print(json.dumps({{"seconds": seconds, "vocab": tok.get_vocab_size(),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

THEIRS_TRAIN = r"""
import json, resource, time, glob
import datasets
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
datasets.disable_progress_bars()
t = time.perf_counter()
ds = datasets.load_dataset("json", data_files=sorted(glob.glob({corpus!r} + "/*.jsonl")), split="train",
                           cache_dir={cache!r})
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size={vocab}, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
tok.train_from_iterator((ds[i:i + 1000]["text"] for i in range(0, len(ds), 1000)), trainer, length=len(ds))
print(json.dumps({{"seconds": time.perf_counter() - t, "vocab": tok.get_vocab_size(),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

OURS_TOKENIZE = CONFIG + r"""
from runner.data.pretraining import build_data
t = time.perf_counter()
data = build_data(cfg.data, tokenizer_kind=cfg.model.tokenizer, vocab_size=cfg.model.vocab_size,
                  lowercase=cfg.model.lowercase, pairs=False, objective="mlm")
tokens = sum(s.num_tokens for s in data.splits.values())
print(json.dumps({{"seconds": time.perf_counter() - t, "tokens": tokens,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

THEIRS_TOKENIZE = HF_TOKENIZED + r"""
tokens = sum(len(x) for b in ds.iter(batch_size=10_000) for x in b["input_ids"])
print(json.dumps({{"seconds": time.perf_counter() - t, "tokens": tokens,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="8,128", help="corpus sizes in MB, comma-separated")
    p.add_argument("--num-proc", type=int, default=os.cpu_count() or 1, help="tokenization workers, both sides")
    args = p.parse_args()
    console = Console()
    table = Table(title="data preparation, two jobs apart (a fresh process each)",
                  caption=f"s: wall seconds; ratio: theirs / ours (> 1: ours faster); MB: peak RSS. theirs: tokenizer training = tokenizers' BpeTrainer fed by "
                          f"datasets; tokenization = datasets.map with the same fast tokenizer, num_proc="
                          f"{args.num_proc} (ours: data.num_proc={args.num_proc})")
    for col in ("size", "job", "ours s", "theirs s", "ratio", "ours MB", "theirs MB"):
        table.add_column(col, justify="left" if col == "job" else "right", no_wrap=True)
    with tempfile.TemporaryDirectory(prefix="bertlab-prep-") as tmp:
        for mb in [int(s) for s in args.sizes.split(",")]:
            corpus = Path(tmp) / f"corpus{mb}"
            make_corpus(corpus, mb)
            common = dict(root=str(ROOT), conf=str(ROOT / "conf"))
            tok_file = Path(tmp) / f"tokenizer{mb}.json"
            train_overrides = [*PRESET, f"data.paths=[{corpus}]", f"data.cache_dir={Path(tmp) / f'train{mb}'}"]
            ours = child(OURS_TRAIN.format(**common, overrides=train_overrides, out=str(tok_file)))
            theirs = child(THEIRS_TRAIN.format(corpus=str(corpus), cache=str(Path(tmp) / f"hf_train{mb}"),
                                               vocab=ours["vocab"]))
            table.add_row(f"{mb} MB", "train tokenizer", f"{ours['seconds']:.1f}", f"{theirs['seconds']:.1f}",
                          f"{theirs['seconds'] / ours['seconds']:.2f}x", f"{ours['peak_mb']:,.0f}",
                          f"{theirs['peak_mb']:,.0f}")
            tok_overrides = [*PRESET, f"data.paths=[{corpus}]", f"data.cache_dir={Path(tmp) / f'tok{mb}'}",
                             f"data.tokenizer.path={tok_file}", f"data.num_proc={args.num_proc}"]
            ours = child(OURS_TOKENIZE.format(**common, overrides=tok_overrides))
            theirs = child(THEIRS_TOKENIZE.format(tokenizer=str(tok_file), corpus=str(corpus),
                                                  cache=str(Path(tmp) / f"hf_tok{mb}"), num_proc=args.num_proc))
            table.add_row(f"{mb} MB", f"tokenize ({ours['tokens'] / 1e6:.0f}M)", f"{ours['seconds']:.1f}",
                          f"{theirs['seconds']:.1f}", f"{theirs['seconds'] / ours['seconds']:.2f}x",
                          f"{ours['peak_mb']:,.0f}", f"{theirs['peak_mb']:,.0f}")
            if ours["tokens"] != theirs["tokens"]:  # the same tokenizer on the same text: the same tokens
                console.print(f"[yellow]note:[/] {mb} MB: ours {ours['tokens']:,} tokens, theirs {theirs['tokens']:,} "
                              "(ours adds [CLS]/[SEP] per sentence or document)")
            console.print(f"{mb} MB done")
    console.print(table)


if __name__ == "__main__":
    main()
