"""`python -m runner.finetune <run_dir>`: a finished run fine-tuned later, its scores written into its summary.json
and metrics.jsonl; bad input is one line and exit code 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY, copy_run, run_main

pytestmark = pytest.mark.slow


def finetune_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "runner.finetune", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def one_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, r.stdout + r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    return errors[0]


RUN = [*TINY, "data.max_docs=1500", "trainer.max_steps=4", "eval.downstream=false", "trainer.export_hf=false"]


@pytest.fixture
def finished(finished_run, tmp_path) -> Path:
    """A copy of the session's finished `python -m runner RUN` run: fine-tuning writes into it."""
    r = finished_run.result(*RUN)
    assert r.returncode == 0, r.stdout + r.stderr
    run = finished_run(*RUN)
    assert "downstream" not in json.loads((run / "summary.json").read_text())
    return copy_run(run, tmp_path / "run")


def finetune(*args: str) -> subprocess.CompletedProcess:
    """`python -m runner.finetune ARGS`, in this process."""
    from runner.finetune import main

    return run_main(main, *args)


def test_finetune_writes_the_scores_into_the_runs_summary(finished):
    r = finetune(finished, "eval.seeds=1", "eval.epochs=1", "eval.seq_len=32")
    assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads((finished / "summary.json").read_text())
    d = s["downstream"]
    assert d["task"] == "wiki_topic" and len(d["per_seed"]) == 1 and 0.0 <= d["accuracy_mean"] <= 1.0
    assert s["downstream_tasks"] == {"wiki_topic": d}
    assert d["baselines_source"] in ("computed", "cached") and set(d["baselines"]) == {"random_init", "bow_logreg"}
    assert d["settings"]["epochs"] == 1 and d["settings"]["seq_len"] == 32
    assert s["steps"] == 4 and s["final_val"]  # the rest of the summary stands
    last = json.loads((finished / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 4 and last["downstream/accuracy_mean"] == d["accuracy_mean"]
    assert "downstream wiki_topic: accuracy" in r.stderr and "wiki_topic pretrained lr 0.0001 seed 1/1 (seed 0)" in r.stderr
    assert [g["lr"] for g in d["grid"]] == [1e-4, 3e-4] and d["lr"] in (1e-4, 3e-4)  # chosen on dev
    assert "linear_probe" in d and "score_feature" not in d  # the model's own score is for acceptability tasks
    # another task joins downstream_tasks; the run's downstream stays its first task
    r = finetune(finished, "eval.task=wiki_acceptability", "eval.seeds=1", "eval.epochs=1", "eval.seq_len=64")
    assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads((finished / "summary.json").read_text())
    assert s["downstream"] == d and set(s["downstream_tasks"]) == {"wiki_topic", "wiki_acceptability"}
    a = s["downstream_tasks"]["wiki_acceptability"]
    assert a["labels"] == ["acceptable", "corrupted"] and a["sizes"]["train"] > 50
    assert a["chance"]["best_constant_accuracy"] == 0.5  # balanced subsets: a constant answer is at chance
    f = a["score_feature"]  # the model's own score as a one-feature classifier, beside the fine-tuning
    assert f["scorer"] == "pll" and f["normalisation"] in ("per_token", "slor") and 0 <= f["accuracy_mean"] <= 1
    assert set(f["dev_accuracy_by_normalisation"]) == {"per_token", "slor"}
    last = json.loads((finished / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 4 and last["downstream/wiki_acceptability/accuracy_mean"] == a["accuracy_mean"]
    assert last["downstream/wiki_acceptability/score_feature_accuracy_mean"] == f["accuracy_mean"]


def test_glue_every_task_over_five_seeds_reported_as_papers_do(finished, tmp_path):
    """eval.task=glue on a GLUE-format directory written here: each task fine-tuned under one recipe over 5 seeds,
    scored on its dev set by its own metric, the average over every column but WNLI, in the summary."""
    from tests.glue_fixture import write_glue

    glue = write_glue(tmp_path / "glue")
    r = finetune(finished, "eval.task=glue", f"eval.path={glue}", "eval.glue.epochs=2", "eval.glue.lr=1e-3",
                 "eval.glue.seq_len=32")
    assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads((finished / "summary.json").read_text())
    g = s["downstream_tasks"]["glue"]
    assert s["downstream"] == g  # the run's first downstream task
    cols = ["CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI-m", "MNLI-mm", "QNLI", "RTE", "WNLI"]
    assert list(g["columns"]) == cols and g["complete"] and g["averaged"] == cols[:-1]
    assert g["recipe"]["seeds"] == 5 and g["recipe"]["epochs"] == 2
    for col, c in g["columns"].items():
        assert len(c["per_seed"]) == 5 and c["median"] == sorted(c["per_seed"])[2]
        assert c["spread"] == pytest.approx(max(c["per_seed"]) - min(c["per_seed"]))
    assert g["columns"]["CoLA"]["metric"] == "mcc" and g["columns"]["STS-B"]["metric"] == "spearman"
    assert g["columns"]["MRPC"]["metric"] == "binary_f1" and g["columns"]["MNLI-mm"]["metric"] == "mismatched/accuracy"
    assert g["average"] == pytest.approx(sum(g["columns"][c]["median"] for c in cols[:-1]) / 9)
    assert len(g["average_per_seed"]) == 5
    stsb = g["tasks"]["stsb"]
    assert stsb["settings"]["select"] == "last" and all(p["best_epoch"] == 2 for p in stsb["per_seed"])
    assert stsb["sizes"]["test"] == stsb["sizes"]["dev"] == 24  # reported on the official dev set
    last = json.loads((finished / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["downstream/glue/average"] == g["average"] and "downstream/glue/STS-B" in last
    assert "downstream glue: average" in r.stderr
    # a malformed file stops it in one line naming the file, before any fine-tuning
    (glue / "QNLI" / "dev.tsv").write_text("index\tquestion\tsentence\tlabel\n0\ta\tb\tmaybe\n")
    r = finetune(finished, "eval.task=glue", f"eval.path={glue}")
    assert r.returncode == 2 and "QNLI/dev.tsv:2: label 'maybe'" in r.stderr and "pretrained" not in r.stderr


def test_bad_input_is_one_line_and_exit_2(finished_run, tmp_path, capsys):
    from runner.finetune import main

    assert finished_run.result(*RUN).returncode == 0
    finished_run = finished_run(*RUN)  # the session's run, read only: each input fails before anything is written
    # a real `python -m runner.finetune` process: its exit status is main()'s
    assert "eval.sedes is not a key of eval" in one_error(finetune_cli(finished_run, "eval.sedes=2"))

    def error(*args: str) -> str:  # the same, in-process: each fails before building anything
        capsys.readouterr()
        assert main([str(a) for a in args]) == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), lines
        return lines[0]
    assert "eval.seeds=abc" in error(finished_run, "eval.seeds=abc")
    assert "model.hidden_size" in error(finished_run, "model.hidden_size=3")
    assert "eval.task='glue_x'" in error(finished_run, "eval.task=glue_x")
    assert "is not a run directory" in error(tmp_path)
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text((finished_run / ".hydra" / "config.yaml").read_text())
    assert "has no checkpoint" in error(tmp_path)
