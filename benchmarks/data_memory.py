"""Peak memory of the data pipeline as the corpus grows: ours against transformers + datasets, side by side.

For each corpus size, a synthetic JSON-lines corpus (shards of 8 MB of English-like sentences) goes from raw files
to 200 batches of 32 x 128 with dynamic MLM masking, in a fresh process per pipeline, and the process's peak
resident memory (ru_maxrss) is reported:

- ours: `build_data` (streaming pass: tokenizer training, tokenization into memory-mapped splits), examples as
  stream ranges, `Batches` with MaskedLM.prepare;
- theirs (what a user would pick): `datasets.load_dataset("json")` (Arrow, memory-mapped), `.map` tokenization with
  the same tokenizer through PreTrainedTokenizerFast, `.map` grouping into 128-token blocks, and a DataLoader with
  DataCollatorForLanguageModeling.

Both run single-process (data.num_proc=1; datasets' map without num_proc). Flat memory means the peak does not
grow with the corpus.

    python benchmarks/data_memory.py                      # 8, 32 and 128 MB
    python benchmarks/data_memory.py --sizes 4,8           # quick look
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
SHARD_MB = 8
WORDS = ("the of and in to a was is for on as with by he at from his that an which it were are also be this or "
         "had first one their its new after but who not they have her she two been other when there all during "
         "into school time may years more most only over city some world would where later up such used many "
         "can state about national out known university united then made through century river music war "
         "government including while under team those between early film north south against history").split()


def make_corpus(directory: Path, megabytes: int, seed: int = 0) -> None:
    """Shards of JSON lines {"title", "text"}: articles of 2 to 12 sentences of 6 to 20 words."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    article = 0
    for shard in range(max(1, megabytes // SHARD_MB)):
        size = 0
        with open(directory / f"shard{shard:04d}.jsonl", "w", encoding="utf-8") as f:
            while size < min(megabytes, SHARD_MB) * 1_000_000:
                text = " ".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 20))).capitalize() + "."
                                for _ in range(rng.randint(2, 12)))
                line = json.dumps({"title": f"article {article}", "text": text}) + "\n"
                f.write(line)
                size += len(line)
                article += 1


OURS = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
from hydra import compose, initialize_config_dir
from runner.build import register
from runner.build import build
from runner.data.batches import Batches
register()
t = time.perf_counter()
with initialize_config_dir(config_dir={conf!r}, version_base="1.3"):
    cfg = compose("config", overrides=["model=roberta", "data=jsonl", "data.paths=[{corpus}]", "data.num_proc=1",
                                       "data.cache_dir={cache}", "data.seq_len=128", "trainer.max_steps=0",
                                       "logger.mode=disabled"])
built = build(cfg)
ex = built.data.examples("train", 1, 0)
batches = Batches(ex, 32, 0, prepare=built.objective.prepare)
for i in range({batches}):
    batches.get(i)
print(json.dumps({{"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "tokens": built.data.splits["train"].num_tokens, "seconds": time.perf_counter() - t}}))
"""

# The reference side's first steps (data_prep.py's too): the JSON lines through datasets, tokenized by `.map` with the
# same fast tokenizer (num_proc=None: in this process; batch_size=1000: datasets' default)
HF_TOKENIZED = r"""
import json, resource, sys, time, glob
import datasets
from transformers import PreTrainedTokenizerFast
datasets.disable_progress_bars()
t = time.perf_counter()
tok = PreTrainedTokenizerFast(tokenizer_file={tokenizer!r}, pad_token="<pad>", mask_token="<mask>")
ds = datasets.load_dataset("json", data_files=sorted(glob.glob({corpus!r} + "/*.jsonl")), split="train",
                           cache_dir={cache!r})
ds = ds.map(lambda b: tok(b["text"], add_special_tokens=False), batched=True, batch_size={batch_size},
            remove_columns=ds.column_names, num_proc={num_proc})
"""

THEIRS = HF_TOKENIZED + r"""
import torch
from transformers import DataCollatorForLanguageModeling

def group(b, n=126):
    ids = [t for row in b["input_ids"] for t in row]
    blocks = [ids[i:i + n] for i in range(0, len(ids) - n + 1, n)]
    return {{"input_ids": [[tok.bos_token_id or 0] + x + [tok.eos_token_id or 2] for x in blocks]}}

ds = ds.map(group, batched=True, remove_columns=ds.column_names)
loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True,
                                     collate_fn=DataCollatorForLanguageModeling(tok, mlm_probability=0.15))
it = iter(loader)
for _ in range({batches}):
    next(it)
print(json.dumps({{"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": time.perf_counter() - t}}))
"""


def child(code: str) -> dict:
    """Run code in a fresh interpreter; its last stdout line is a JSON result."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="8,32,128", help="corpus sizes in MB, comma-separated")
    p.add_argument("--batches", type=int, default=200)
    args = p.parse_args()
    console = Console()
    table = Table(title="peak memory, raw JSON lines -> 32 x 128 MLM batches (fresh process each)")
    for col in ("corpus", "train tokens", "ours peak RSS", "transformers + datasets peak RSS", "ratio",
                "ours s (tokenizer training incl.)", "theirs s (same tokenizer given)"):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory(prefix="bertlab-mem-") as tmp:
        for mb in [int(s) for s in args.sizes.split(",")]:
            corpus, cache = Path(tmp) / f"corpus{mb}", Path(tmp) / f"cache{mb}"
            make_corpus(corpus, mb)
            t = time.perf_counter()
            ours = child(OURS.format(root=str(ROOT), conf=str(ROOT / "conf"), corpus=corpus, cache=cache,
                                     batches=args.batches))
            tokenizer = next(cache.glob("tokenizers/*/tokenizer.json"))  # ours trained it: same ids on both sides
            theirs = child(THEIRS.format(tokenizer=str(tokenizer), corpus=str(corpus), cache=str(cache / "hf"),
                                         batches=args.batches, num_proc=None, batch_size=1000))
            console.print(f"{mb} MB done in {time.perf_counter() - t:.0f} s")
            table.add_row(f"{mb} MB", f"{ours['tokens']:,}", f"{ours['peak_mb']:,.0f} MB",
                          f"{theirs['peak_mb']:,.0f} MB", f"{ours['peak_mb'] / theirs['peak_mb']:.2f}x",
                          f"{ours['seconds']:.0f}", f"{theirs['seconds']:.0f}")
    console.print(table)


if __name__ == "__main__":
    main()
