"""logger.backends: W&B, TensorBoard and CSV receive the same keys as metrics.jsonl; W&B gets the FLOPs and tokens
step metrics and a flat config; a failing backend leaves the others and the run intact; a resumed run's
TensorBoard events and CSV rows follow its checkpoint.
This file holds the tests that train or start a process; the others: tests/unit/test_log_backends.py."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from runner.build import build
from runner.run import run
from tests.conftest import TINY, make_cfg
from tests.wandb_records import history, records, run_info


pytestmark = pytest.mark.slow


BOOKKEEPING = {"step", "time"}  # metrics.jsonl's own keys besides the metrics


def jsonl(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]


def tensorboard_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} read back with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def csv_rows(run_dir: Path) -> list[dict]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


SHORT = [*TINY, "model=bert", "trainer.max_steps=6", "trainer.eval_every=3", "trainer.log_every=2",
         "trainer.export_hf=false"]


def train(run_dir: Path, *extra: str) -> dict:
    cfg = make_cfg(*SHORT, *extra)
    return run(cfg, build(cfg), run_dir)


@pytest.fixture(scope="module")
def all_backends(finished_run) -> tuple[Path, dict]:
    """The session's finished run logged to every backend (shared: read only), and its summary."""
    backends = [*SHORT, "logger.backends=[wandb,tensorboard,csv]", "logger.mode=offline"]
    r = finished_run.result(*backends)
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = finished_run(*backends)
    return run_dir, json.loads((run_dir / "summary.json").read_text())


def test_every_backend_receives_the_same_keys_and_values(all_backends):
    run_dir, summary = all_backends
    assert summary["loggers"] == ["wandb", "tensorboard", "csv"]
    lines = jsonl(run_dir)
    keys = set().union(*lines) - BOOKKEEPING
    assert {"train/loss", "train/flops", "train/tokens", "val/mlm_loss", "val/nsp_accuracy", "probe/overall"} <= keys

    scalars = tensorboard_scalars(run_dir)
    assert set(scalars) - {t for t in scalars if t.startswith("final/")} == keys
    for line in lines:  # each value at its step (TensorBoard stores float32)
        for k, v in line.items():
            if k not in BOOKKEEPING:
                assert any(s == line["step"] and math.isclose(x, v, rel_tol=1e-6, abs_tol=1e-6)
                           for s, x in scalars[k]), (k, line["step"])

    rows = csv_rows(run_dir)
    assert set(rows[0]) - {"step"} == keys and len(rows) == len(lines)
    for row, line in zip(rows, lines):
        assert int(row["step"]) == line["step"]
        assert {k: float(v) for k, v in row.items() if v != "" and k != "step"} == \
            {k: float(v) for k, v in line.items() if k not in BOOKKEEPING}

    (wandb_file,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    logged = set().union(*history(wandb_file)) - {"_step", "_runtime", "_timestamp"}
    assert logged == keys


def test_wandb_gets_compute_step_metrics_and_a_flat_config(all_backends):
    run_dir, _ = all_backends
    (wandb_file,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    metrics = [r.metric for r in records(wandb_file) if r.WhichOneof("record_type") == "metric"]
    defined = {m.name for m in metrics if m.name}
    assert {"train/flops", "train/tokens", "train/words"} <= defined
    on_flops = {m.glob_name for m in metrics if m.glob_name and m.step_metric == "train/flops"}
    assert on_flops == {"val/*", "probe/*", "suite/*", "suite_full/*", "downstream/*"}
    # every history row of an evaluation carries the FLOPs axis, so W&B can place it on that axis
    assert all("train/flops" in r for r in history(wandb_file) if any(k.startswith("val/") for k in r))
    config = {item.key for item in run_info(wandb_file).config.update}
    assert {"model.name", "optimizer.lr", "trainer.batch_size", "data.seq_len", "logger.backends"} <= config
    assert "model" not in config  # flat: runs can be grouped and filtered by any dotted key


def test_tensorboard_holds_the_config_and_hparams(all_backends):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run_dir, summary = all_backends
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    assert "config/text_summary" in acc.Tags()["tensors"]
    content = acc.PluginTagToContent("hparams")  # TensorBoard's HParams tab: runs compared by any config key
    assert set(content) == {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"}
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    assert {"model.name", "optimizer.lr", "seed"} <= set(start.session_start_info.hparams)
    final = tensorboard_scalars(run_dir)["final/val/mlm_loss"]
    assert final == [(6, pytest.approx(summary["final_val"]["mlm_loss"], rel=1e-6))]


@pytest.mark.parametrize("where", ["init", "log"])
def test_a_failing_backend_leaves_the_others_and_the_run_intact(tmp_path, monkeypatch, where):
    from runner.reporting import backends as log_backends

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    target = "__init__" if where == "init" else "log"
    monkeypatch.setattr(log_backends.TensorBoardBackend, target, broken)
    with pytest.warns(UserWarning, match="TensorBoard failed .*No space left"):
        summary = train(tmp_path, "logger.backends=[tensorboard,csv]")
    assert summary["steps"] == 6 and summary["loggers"] == ["csv"]
    lines = jsonl(tmp_path)
    assert [int(r["step"]) for r in csv_rows(tmp_path)] == [x["step"] for x in lines]
    assert [x["step"] for x in lines if "train/loss" in x] == [2, 4, 6]
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 6


def test_a_resumed_run_rewrites_what_followed_its_checkpoint_in_every_backend(tmp_path):
    common = ["logger.backends=[tensorboard,csv]", "trainer.log_every=1", "trainer.checkpoint_every=2"]
    train(tmp_path, *common, "trainer.stop_after=3")
    for f in ("last.pt", "step-00000003.pt"):  # as if killed after logging step 3, before its checkpoint
        (tmp_path / "checkpoints" / f).unlink()
    train(tmp_path, *common, "trainer.resume=true")  # from step 2: step 3 is logged again, once
    train_steps = [x["step"] for x in jsonl(tmp_path) if "train/loss" in x]
    assert train_steps == [1, 2, 3, 4, 5, 6]
    assert [int(r["step"]) for r in csv_rows(tmp_path) if r["train/loss"]] == train_steps
    assert [s for s, _ in tensorboard_scalars(tmp_path)["train/loss"]] == train_steps


def test_runs_logged_without_tensorboard_get_event_files_from_their_metrics(all_backends, tmp_path):
    """python -m runner.tensorboard: a run's metrics.jsonl replayed into <run>/tensorboard, the same scalars as the
    live backend wrote; never twice."""
    import shutil

    from runner.reporting.tb_replay import main

    src, _ = all_backends
    copy = tmp_path / "sweep" / "0_bert_mlm_nsp"
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("tensorboard", "wandb"))
    (copy / ".hydra").mkdir(exist_ok=True)  # as `python -m runner` leaves it (the session run made it so)
    (copy / ".hydra" / "config.yaml").write_text("model:\n  name: bert\noptimizer:\n  lr: 0.0005\n")
    main([str(tmp_path / "sweep")])
    live, replayed = tensorboard_scalars(src), tensorboard_scalars(copy)
    assert replayed.keys() == live.keys()
    assert all([s for s, _ in replayed[k]] == [s for s, _ in live[k]] for k in live)
    before = sorted(p.name for p in (copy / "tensorboard").iterdir())
    main([str(copy)])
    assert sorted(p.name for p in (copy / "tensorboard").iterdir()) == before
