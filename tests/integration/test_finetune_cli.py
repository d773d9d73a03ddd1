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
    assert "downstream wiki_topic: accuracy" in r.stderr and "wiki_topic pretrained seed 1/1 (seed 0)" in r.stderr
    # another task joins downstream_tasks; the run's downstream stays its first task
    r = finetune(finished, "eval.task=wiki_acceptability", "eval.seeds=1", "eval.epochs=1", "eval.seq_len=64")
    assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads((finished / "summary.json").read_text())
    assert s["downstream"] == d and set(s["downstream_tasks"]) == {"wiki_topic", "wiki_acceptability"}
    a = s["downstream_tasks"]["wiki_acceptability"]
    assert a["labels"] == ["acceptable", "corrupted"] and a["sizes"]["train"] > 50
    last = json.loads((finished / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 4 and last["downstream/wiki_acceptability/accuracy_mean"] == a["accuracy_mean"]


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
