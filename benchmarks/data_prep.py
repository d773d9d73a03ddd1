"""Data preparation as two jobs, timed apart: ours against the libraries a user would otherwise pick.

For each corpus size, a synthetic JSON-lines corpus (benchmarks/data_memory.py's shards of English-like sentences)
goes through each job in a fresh process (its wall time and peak resident memory, ru_maxrss):

1. tokenizer training (the `model=roberta` preset's byte-level BPE, its vocabulary size) on the same sample, the
   training split's documents:
   - ours: what `build_data` runs, the corpus reader's training-split documents into
     runner.data.tokenizer.train_tokenizer;
   - theirs: datasets.load_dataset("json") of those documents (written out beforehand, untimed) and tokenizers' own
     trainer fed by batches of the text column (Tokenizer.train_from_iterator with BpeTrainer and the length, the
     recipe of the tokenizers documentation).
2. tokenization with that tokenizer given (ours trained it: the same ids on both sides):
   - ours: `build_data` with data.tokenizer.path, streaming every split into memory-mapped arrays, data.num_proc
     workers;
   - theirs: datasets.load_dataset("json") and `.map` of the same fast tokenizer (PreTrainedTokenizerFast),
     batched, into datasets' Arrow cache, at its best settings on this machine: before the table, --tune-mb MB are
     tokenized at each num_proc and batch_size of a small grid, and the fastest pair is used for every size.

    python benchmarks/data_prep.py                    # 8 and 128 MB
    python benchmarks/data_prep.py --sizes 8,128,1024  # 1 GB too (minutes per side)
    python benchmarks/data_prep.py --repeat 3          # the fastest of 3 runs per side: a shared machine is noisy
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from omegaconf import OmegaConf
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

def training_sample(corpus: Path, out: Path) -> None:
    """The JSON lines of the documents ours trains its tokenizer on (the training split: split_of the title that the
    reader gives a line, <file>#<line>), as shards under `out`, so both trainers see the same sample."""
    sys.path.insert(0, str(ROOT))
    from runner.config.schema import DataConfig
    from runner.data.corpus import split_of

    val, test = DataConfig.val_fraction, DataConfig.test_fraction
    out.mkdir(parents=True, exist_ok=True)
    for shard in sorted(corpus.glob("*.jsonl")):
        with open(shard, encoding="utf-8") as f, open(out / shard.name, "w", encoding="utf-8") as w:
            w.writelines(line for number, line in enumerate(f, 1)
                         if split_of(f"{shard.name}#{number}", val, test) == "train")


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

# The clock and the peak stop before the tokens are counted (from the Arrow lists' lengths, no Python copy).
THEIRS_TOKENIZE = HF_TOKENIZED + r"""
seconds, peak_mb = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
import pyarrow.compute as pc
tokens = sum(pc.sum(pc.list_value_length(c)).as_py() or 0 for c in ds.data.column("input_ids").chunks)
print(json.dumps({{"seconds": seconds, "tokens": tokens, "peak_mb": peak_mb}}))
"""


# datasets.map settings tried before the table: (num_proc, batch_size); 1000 is datasets' default batch size
GRID = [(1, 1000), (2, 500), (2, 1000), (2, 2000), (2, 4000), (3, 1000)]


def tune_theirs(tmp: Path, mb: int, console: Console) -> tuple[int, int]:
    """The fastest (num_proc, batch_size) of GRID for datasets.map on an `mb` MB corpus (tokenizer: ours trains it)."""
    corpus, tok_file = tmp / f"tune{mb}", tmp / f"tune{mb}.json"
    make_corpus(corpus, mb)
    common = dict(root=str(ROOT), conf=str(ROOT / "conf"))
    child(OURS_TRAIN.format(**common, overrides=[*PRESET, f"data.paths=[{corpus}]", f"data.cache_dir={tmp / 'tune'}"],
                            out=str(tok_file)))
    seconds = {}
    for num_proc, batch_size in GRID:
        seconds[num_proc, batch_size] = child(THEIRS_TOKENIZE.format(
            tokenizer=str(tok_file), corpus=str(corpus), cache=str(tmp / f"hf_tune{num_proc}-{batch_size}"),
            num_proc=num_proc, batch_size=batch_size))["seconds"]
    best = min(seconds, key=seconds.get)
    console.print(f"datasets.map at {mb} MB: " + ", ".join(f"num_proc={n} batch_size={b}: {t:.1f} s"
                                                          for (n, b), t in seconds.items()) + f"; best {best}")
    return best


def best_of(repeat: int, what: str, console: Console, ours: Callable[[int], dict],
            theirs: Callable[[int], dict]) -> tuple[dict, dict]:
    """The fastest of `repeat` runs of each side, run in turn (ours, theirs, ours, ...) so that a slow spell of a
    shared machine falls on both; every run's seconds are printed."""
    runs: dict[str, list[dict]] = {"ours": [], "theirs": []}
    for i in range(repeat):
        runs["ours"].append(ours(i))
        runs["theirs"].append(theirs(i))
    console.print(f"{what}: " + "; ".join(f"{side} " + ", ".join(f"{r['seconds']:.1f}" for r in rs) + " s"
                                          for side, rs in runs.items()))
    return tuple(min(rs, key=lambda r: r["seconds"]) for rs in runs.values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="8,128", help="corpus sizes in MB, comma-separated")
    p.add_argument("--num-proc", type=int, default=os.cpu_count() or 1, help="ours: data.num_proc")
    p.add_argument("--tune-mb", type=int, default=32, help="corpus MB on which datasets.map's settings are chosen")
    p.add_argument("--repeat", type=int, default=1, help="runs per side and job, alternating; the fastest is shown")
    args = p.parse_args()
    console = Console()
    vocab = OmegaConf.load(ROOT / "conf" / "model" / "roberta.yaml").vocab_size  # what ours asks its trainer for
    with tempfile.TemporaryDirectory(prefix="bertlab-prep-") as tmp:
        their_proc, their_batch = tune_theirs(Path(tmp), args.tune_mb, console)
        table = Table(title="data preparation, two jobs apart (a fresh process each)",
                      caption="s: wall seconds; ratio: theirs / ours (> 1: ours faster); MB: peak RSS. theirs: "
                              "tokenizer training = tokenizers' BpeTrainer fed by datasets, on ours' training "
                              "sample; "
                              f"tokenization = datasets.map with the same fast tokenizer, num_proc={their_proc}, "
                              f"batch_size={their_batch} (ours: data.num_proc={args.num_proc})")
        for col in ("size", "job", "ours s", "theirs s", "ratio", "ours MB", "theirs MB"):
            table.add_column(col, justify="left" if col == "job" else "right", no_wrap=True)
        for mb in [int(s) for s in args.sizes.split(",")]:
            corpus, sample = Path(tmp) / f"corpus{mb}", Path(tmp) / f"sample{mb}"
            make_corpus(corpus, mb)
            training_sample(corpus, sample)
            common = dict(root=str(ROOT), conf=str(ROOT / "conf"))
            tok_file = Path(tmp) / f"tokenizer{mb}.json"
            scratch = lambda name, i: str(Path(tmp) / f"{name}{mb}" / str(i))  # noqa: E731  (a fresh cache each run)
            ours, theirs = best_of(
                args.repeat, f"{mb} MB training", console,
                lambda i: child(OURS_TRAIN.format(**common, out=str(tok_file), overrides=[
                    *PRESET, f"data.paths=[{corpus}]", f"data.cache_dir={scratch('train', i)}"])),
                lambda i: child(THEIRS_TRAIN.format(corpus=str(sample), cache=scratch("hf_train", i), vocab=vocab)))
            table.add_row(f"{mb} MB", "train tokenizer", f"{ours['seconds']:.1f}", f"{theirs['seconds']:.1f}",
                          f"{theirs['seconds'] / ours['seconds']:.2f}x", f"{ours['peak_mb']:,.0f}",
                          f"{theirs['peak_mb']:,.0f}")
            ours, theirs = best_of(
                args.repeat, f"{mb} MB tokenization", console,
                lambda i: child(OURS_TOKENIZE.format(**common, overrides=[
                    *PRESET, f"data.paths=[{corpus}]", f"data.cache_dir={scratch('tok', i)}",
                    f"data.tokenizer.path={tok_file}", f"data.num_proc={args.num_proc}"])),
                lambda i: child(THEIRS_TOKENIZE.format(tokenizer=str(tok_file), corpus=str(corpus),
                                                       cache=scratch("hf_tok", i), num_proc=their_proc,
                                                       batch_size=their_batch)))
            table.add_row(f"{mb} MB", f"tokenize ({ours['tokens'] / 1e6:.0f}M)", f"{ours['seconds']:.1f}",
                          f"{theirs['seconds']:.1f}", f"{theirs['seconds'] / ours['seconds']:.2f}x",
                          f"{ours['peak_mb']:,.0f}", f"{theirs['peak_mb']:,.0f}")
            if ours["tokens"] != theirs["tokens"]:  # the same tokenizer on the same text: the same tokens
                console.print(f"[yellow]note:[/] {mb} MB: ours {ours['tokens']:,} tokens, theirs {theirs['tokens']:,} "
                              "(ours adds [CLS]/[SEP] per sentence or document)")
            console.print(f"{mb} MB done")
            for d in (corpus, sample, *(Path(tmp) / f"{c}{mb}" for c in ("train", "hf_train", "tok", "hf_tok"))):
                shutil.rmtree(d, ignore_errors=True)  # 1 GB corpora and caches: keep the disk to what the next needs
        console.print(table)


if __name__ == "__main__":
    main()
