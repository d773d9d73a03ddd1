"""torchrun: 2 CPU ranks with gloo train exactly as one process with the same global batch; only rank 0 writes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY, cli

pytestmark = pytest.mark.slow

# no dropout: each rank draws its own dropout masks, which one process would draw in another order
SETUP = [*TINY, "model=roberta", "model.hidden_dropout=0", "model.attention_dropout=0", "trainer.max_steps=6",
         "trainer.log_every=1", "trainer.eval_every=3", "trainer.threads=1", "trainer.export_hf=false"]


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                           "-m", "runner", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_two_gloo_ranks_follow_the_single_process_loss_trajectory(tmp_path):
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    r = torchrun(*SETUP, "trainer.batch_size=4", f"hydra.run.dir={ddp}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # rank r's batch at step s is the single process's micro-batch s * 2 + r: grad_accum 2 is the same global batch
    r1 = cli(*SETUP, "trainer.batch_size=4", "trainer.grad_accum=2", run_dir=single)
    assert r1.returncode == 0, r1.stderr[-3000:]
    a, b = records(ddp), records(single)
    assert [x["step"] for x in a] == [x["step"] for x in b]  # rank 0 alone logged: no duplicate records
    losses = [(x["train/loss"], y["train/loss"]) for x, y in zip(a, b) if "train/loss" in x]
    assert len(losses) == 6
    for got, want in losses:
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    val = [(x["val/mlm_loss"], y["val/mlm_loss"]) for x, y in zip(a, b) if "val/mlm_loss" in x]
    assert len(val) == 3 and all(g == pytest.approx(w, rel=1e-5) for g, w in val)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (ddp, single))
    assert (sa["world_size"], sa["effective_batch"]) == (2, sb["effective_batch"]) == (2, 8)
    assert (sa["tokens_seen"], sa["train_flops"]) == (sb["tokens_seen"], sb["train_flops"])
    assert (ddp / "checkpoints" / "last.pt").is_file()


def test_a_two_rank_run_resumes_in_one_process(tmp_path):
    """Another world size continues from the same checkpoint: the same step, tokens and FLOPs so far."""
    r = torchrun(*SETUP, "trainer.batch_size=4", "trainer.stop_after=3", f"hydra.run.dir={tmp_path}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    from runner.store import checkpoint

    state = checkpoint.load(tmp_path)
    assert (state["step"], state["world_size"], len(state["rng_ranks"])) == (3, 2, 2)
    r1 = cli(*SETUP, "trainer.batch_size=8", "trainer.resume=true", run_dir=tmp_path)
    assert r1.returncode == 0, r1.stderr[-3000:]
    s = json.loads((tmp_path / "summary.json").read_text())
    assert (s["steps"], s["world_size"], s["effective_batch"]) == (6, 1, 8)
    assert s["tokens_seen"] > state["tokens"] and s["train_flops"] > state["flops"]


def test_fsdp_follows_the_single_process_loss_trajectory_and_resumes_in_one_process(tmp_path):
    """trainer.strategy=fsdp (FSDP2 fully_shard over 2 gloo ranks): the same losses as one process with the same
    global batch; its checkpoint (full tensors by name) continues in a single process, and the end of the run
    (final evaluation, hf/ export) works on the gathered model."""
    fsdp, single = tmp_path / "fsdp", tmp_path / "single"
    r = torchrun(*SETUP, "trainer.batch_size=4", "trainer.strategy=fsdp", "trainer.export_hf=true",
                 f"hydra.run.dir={fsdp}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r1 = cli(*SETUP, "trainer.batch_size=4", "trainer.grad_accum=2", "trainer.stop_after=3", run_dir=single)
    assert r1.returncode == 0, r1.stderr[-3000:]
    a, b = records(fsdp), records(single)
    losses = [(x["train/loss"], y["train/loss"]) for x, y in zip(a, b) if "train/loss" in x and "train/loss" in y]
    assert len(losses) == 3
    for got, want in losses:
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert (fsdp / "hf" / "model.safetensors").is_file()
    # resume the single-process run from the FSDP run's step-3 checkpoint: the same steps 4-6 as FSDP took
    from runner.store import checkpoint

    state = checkpoint.load(fsdp)
    assert (state["step"], state["world_size"], state["strategy"]) == (6, 2, "fsdp")
    assert all(not hasattr(v, "to_local") for v in state["module"].values())  # full tensors, not shards
    r2 = cli(*SETUP, "trainer.batch_size=4", "trainer.grad_accum=2", "trainer.resume=true", run_dir=single)
    assert r2.returncode == 0, r2.stderr[-3000:]
    c = records(single)
    late = [(x["train/loss"], y["train/loss"]) for x, y in zip(a, c) if x.get("step", 0) > 3 and "train/loss" in x]
    assert len(late) == 3 and all(g == pytest.approx(w, rel=1e-5, abs=1e-6) for g, w in late)


def test_two_rank_transformer_xl_resumes_with_each_ranks_memory(tmp_path):
    """Each rank's rows carry their own Transformer-XL memory; a 2-rank run stopped and resumed on 2 ranks ends
    with the same metrics as one that never stopped (rank 1's memory would be lost if only rank 0's were saved)."""
    txl = ["model=txl", "model.num_layers=1", "model.hidden_size=32", "model.num_heads=2", "model.intermediate_size=64",
           "model.vocab_size=1000", "model.cutoffs=[]", "model.mem_len=16", "model.hidden_dropout=0",
           "model.attention_dropout=0", "data.max_docs=300", "data.seq_len=16", "trainer.batch_size=2",
           "trainer.eval_batches=2", "trainer.max_steps=6", "trainer.log_every=1", "trainer.eval_every=3",
           "trainer.threads=1", "trainer.export_hf=false", "logger.mode=disabled", "eval.downstream=false",
           "objective.compare_tokens=0"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    r = torchrun(*txl, f"hydra.run.dir={whole}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = torchrun(*txl, "trainer.stop_after=3", f"hydra.run.dir={parts}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    from runner.store import checkpoint

    mem = checkpoint.load(parts)["memory_ranks"]
    assert len(mem) == 2 and not all(a.equal(b) for a, b in zip(mem[0][0]["layers"], mem[1][0]["layers"]))
    r = torchrun(*txl, "trainer.resume=true", f"hydra.run.dir={parts}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    a, b = records(whole), records(parts)
    want = [x for x in a if x["step"] > 3 and "train/loss" in x]
    got = [x for x in b if x["step"] > 3 and "train/loss" in x][-len(want):]
    assert [x["train/loss"] for x in got] == pytest.approx([x["train/loss"] for x in want], rel=1e-6)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (whole, parts))
    assert sb["final_val"] == pytest.approx(sa["final_val"], rel=1e-6)
