"""Minimal-pair suites in a run and in `python -m runner.evaluate`: a run with probes.suites writes the mean over
paradigms, per phenomenon and per paradigm to summary.json and its records (the subsample during training, every pair
at the end, train/words in every record); the evaluation of a run and of its own hf/ export agree paradigm by
paradigm; a bad suite file stops the run in one line before any training."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.evaluate import main as evaluate_main
from tests.conftest import ROOT, TINY, cli, copy_run, run_main

pytestmark = pytest.mark.slow

FIXTURES = ROOT / "tests" / "fixtures" / "minimal_pairs"
SUITES = f"probes.suites=[{FIXTURES / 'data'},{FIXTURES / 'own_pairs.jsonl'}]"
RUN = [*TINY, "trainer.max_steps=20", "trainer.eval_every=10", "probes.pairs=10", SUITES, "probes.suite_pairs=2"]


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("model", ["bert", "electra"])
def test_a_run_reports_its_suites_as_blimp_is_reported(finished_run, model):
    args = [f"model={model}", *RUN]
    r = finished_run.result(*args)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    run = finished_run(*args)
    s = json.loads((run / "summary.json").read_text())
    first = {"bert": "pll", "electra": "disc"}[model]
    report = s["suites"]["minimal_pairs"]
    assert report["pairs"] == 18 and report["paradigm_count"] == 3 and report["scorers"][0] == first
    if model == "electra":
        assert report["scorers"] == ["disc", "generator", "generator_word_l2r"]
    assert report["overall"][first] == pytest.approx(
        sum(p[first] for p in report["paradigms"].values()) / 3), "the mean over paradigms"
    assert set(report["phenomena"]) == {"anaphor_agreement", "determiner_noun_agreement", "subject_verb_agreement"}
    assert s["suites"]["own_pairs"]["paradigms"]["my_npi"]["phenomenon"] == "npi"
    assert s["words_seen"] > 0
    recs = records(run)
    axes = [x for x in recs if "train/tokens" in x]
    assert axes and all("train/words" in x and x["train/words"] <= x["train/tokens"] for x in axes), \
        "every record with the compute axes carries the words seen"
    during = [x for x in recs if "suite/minimal_pairs/overall" in x]
    assert len(during) == 3 and all(x["suite/minimal_pairs/pairs"] == 6 for x in during), "steps 0, 10, 20: 2 each"
    end = [x for x in recs if "suite_full/minimal_pairs/overall" in x]
    assert len(end) == 1 and end[0]["suite_full/minimal_pairs/pairs"] == 18
    assert end[0][f"suite_full/minimal_pairs/{first}/paradigm/anaphor_number_agreement"] == \
        report["paradigms"]["anaphor_number_agreement"][first]
    assert "accuracy per phenomenon" in r.stdout + r.stderr and "published 5-gram" in r.stdout + r.stderr


@pytest.mark.parametrize("model", ["bert", "electra_bert"])  # electra_bert: ELECTRA's encoder transformers holds
def test_evaluate_gives_a_run_and_its_hf_export_the_same_paradigm_scores(finished_run, tmp_path, model):
    args = [f"model={model}", *RUN]
    assert finished_run.result(*args).returncode == 0
    run = copy_run(finished_run(*args), tmp_path / "run")
    before = json.loads((run / "summary.json").read_text())
    r = run_main(evaluate_main, run, SUITES, "probes.suite_final_pairs=4", "trainer.device=cpu")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    shown = r.stdout + r.stderr  # the console
    assert "accuracy per phenomenon" in shown and f"wrote {run / 'summary.json'}" in shown
    ours = json.loads((run / "summary.json").read_text())["suites"]["minimal_pairs"]
    assert ours["pairs"] == 12, "suite_final_pairs=4 of each paradigm's 6"
    assert before["steps"] == json.loads((run / "summary.json").read_text())["steps"], "the rest is kept"
    assert any("suite_full/minimal_pairs/overall" in x and x["suite_full/minimal_pairs/pairs"] == 12
               for x in records(run))
    out = tmp_path / "hf_report"
    r = run_main(evaluate_main, run / "hf", SUITES, "probes.suite_final_pairs=4", "--out", out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    theirs = json.loads((out / "summary.json").read_text())
    assert theirs["kind"] == {"bert": "transformers masked_lm",
                              "electra_bert": "transformers electra_discriminator"}[model]
    t = theirs["suites"]["minimal_pairs"]
    assert set(t["scorers"]) <= set(ours["scorers"]) and t["pairs"] == 12
    for uid, scores in t["paradigms"].items():
        for scorer in t["scorers"]:
            assert abs(scores[scorer] - ours["paradigms"][uid][scorer]) <= 0.01, (uid, scorer)


def test_a_bad_suite_file_stops_the_run_in_one_line_before_training(tmp_path):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text(json.dumps({"sentence_good": "A cat sleeps.", "sentence_bad": "A cat sleep.", "UID": "p"}) + "\n")
    r = cli("model=bert", *TINY, "trainer.max_steps=5", f"probes.suites=[{bad}]", run_dir=tmp_path / "run")
    assert r.returncode != 0
    errors = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(errors) == 1 and f"{bad}:1: no linguistics_term" in errors[0], r.stderr
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "metrics.jsonl").exists()


def test_the_evaluate_command_refuses_a_directory_that_is_neither(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "runner.evaluate", str(tmp_path), SUITES], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = [x for x in (r.stdout + r.stderr).splitlines() if x.strip()]
    assert len(lines) == 1 and "neither a bertlab run" in lines[0]
