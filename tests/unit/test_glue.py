"""GLUE as papers report it (issue 28): every task read from a directory laid out as GLUE's download (fixtures
written here: tests/glue_fixture.py), each task's own metric, and the average without WNLI."""
from __future__ import annotations

import math
import random

import pytest

from runner.config.errors import ConfigError
from runner.evaluation.downstream.glue import GLUE, glue_report, glue_suite, glue_task
from runner.evaluation.downstream.metrics import (best_constant, macro_f1, main_metric, matthews, pearson, ranks,
                                                  score_run, spearman, summarize)
from runner.evaluation.downstream.tasks import Example, Task
from tests.glue_fixture import write_glue, write_tsv
from tests.unit.test_downstream import tok  # noqa: F401 - the module's tokenizer fixture


def test_matthews_by_hand_and_at_its_edges():
    # tp 2, tn 1, fp 1, fn 1: (2*1 - 1*1) / sqrt(3*3*2*2) = 1/6
    assert matthews([1, 1, 1, 0, 0], [1, 1, 0, 1, 0]) == pytest.approx(1 / 6)
    assert matthews([0, 1, 0, 1], [0, 1, 0, 1]) == 1.0 and matthews([0, 1, 0, 1], [1, 0, 1, 0]) == -1.0
    assert matthews([0, 1, 1], [1, 1, 1]) == 0.0  # a constant answer: 0, as scikit-learn says


def test_pearson_and_spearman_by_hand():
    x, y = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 5.0, 9.0]
    mx, my = 2.5, 5.0
    num = sum((a - mx) * (b - my) for a, b in zip(x, y))
    den = math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))
    assert pearson(x, y) == pytest.approx(num / den)
    assert spearman(x, y) == 1.0  # monotone
    assert ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]  # ties share their average rank
    assert spearman([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert pearson([1.0, 1.0], [1.0, 2.0]) == 0.0


def test_each_task_scores_its_own_metric():
    cola = Task("glue_cola", ["u", "a"], [], [], [], metrics=("mcc",))
    r = score_run(cola, [1, 1, 0, 0], [1, 0, 0, 0])
    assert set(r) == {"accuracy", "f1", "mcc"} and main_metric(cola) == "mcc"
    mrpc = Task("glue_mrpc", ["n", "e"], [], [], [], metrics=("binary_f1",))
    r = score_run(mrpc, [1, 1, 0, 0], [1, 0, 1, 0])
    assert r["binary_f1"] == pytest.approx(0.5) and r["f1"] == pytest.approx(macro_f1([1, 1, 0, 0], [1, 0, 1, 0]))
    stsb = Task("glue_stsb", ["score"], [], [], [], regression=True)
    assert set(score_run(stsb, [0.0, 1.0, 5.0], [0.1, 2.0, 4.0])) == {"pearson", "spearman"}
    assert main_metric(stsb) == "spearman"


def test_summaries_give_median_and_spread():
    s = summarize([{"seed": 0, "accuracy": 0.5}, {"seed": 1, "accuracy": 0.9}, {"seed": 2, "accuracy": 0.6}])
    assert s["accuracy_median"] == 0.6 and s["accuracy_spread"] == pytest.approx(0.4)


def test_chance_is_the_best_constant_on_the_test_set():
    """The training majority can be the test minority; chance is the best constant answer where it is scored."""
    ex = lambda y: Example((2, 3), y)  # noqa: E731
    t = Task("t", ["a", "b"], [ex(1)] * 6 + [ex(0)] * 4, [ex(0)], [ex(0)] * 56 + [ex(1)] * 44)
    c = best_constant(t)
    assert c["best_constant_label"] == "a" and c["best_constant_accuracy"] == pytest.approx(0.56)
    assert c["majority_label"] == "b" and c["majority_accuracy"] == pytest.approx(0.44)


def test_every_task_of_a_glue_download(tmp_path, tok):  # noqa: F811
    tokenizer, sp = tok
    suite = glue_suite(tokenizer, sp, 32, write_glue(tmp_path / "glue"))
    assert list(suite.tasks) == list(GLUE) and suite.missing == {}
    stsb, mnli, cola = suite.tasks["stsb"], suite.tasks["mnli"], suite.tasks["cola"]
    assert stsb.regression and all(isinstance(e.label, float) for e in stsb.train) and stsb.pairs
    assert sorted({round(e.label / 2.5) for e in stsb.train}) == [0, 1, 2]
    assert set(mnli.extra_tests) == {"mismatched"} and len(mnli.extra_tests["mismatched"]) == 24
    assert cola.metrics == ("mcc",) and cola.acceptability and not cola.pairs
    for t in suite.tasks.values():  # GLUE is reported on its official dev sets: the test set is dev
        assert t.test == t.dev and len(t.train) == 48 and t.notes["test_from"] == "dev"
    # a missing folder is left out and said; none at all is an error
    part = glue_suite(tokenizer, sp, 32, tmp_path / "glue", names=["sst2", "rte"])
    assert list(part.tasks) == ["sst2", "rte"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no GLUE task found"):
        glue_suite(tokenizer, sp, 32, tmp_path / "empty")
    with pytest.raises(ConfigError, match="unknown GLUE task 'stsbb'"):
        glue_suite(tokenizer, sp, 32, tmp_path / "glue", names=["stsbb"])


def test_a_malformed_glue_file_is_one_line_naming_it(tmp_path, tok):  # noqa: F811
    tokenizer, sp = tok
    root = write_glue(tmp_path / "glue")
    bad = root / "STS-B" / "dev.tsv"
    lines = bad.read_text().splitlines()
    lines[3] = lines[3].rsplit("\t", 1)[0] + "\thigh"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as e:
        glue_suite(tokenizer, sp, 32, root)
    assert str(e.value) == f"{bad}:4: score 'high' is not a number" and "\n" not in str(e.value)
    write_tsv(root / "RTE" / "train.tsv", [["index", "sentence1", "label"], ["0", "a", "entailment"]])
    with pytest.raises(ConfigError, match=r"RTE/train.tsv: header .* lacks column"):
        glue_task("rte", tokenizer, sp, path=root / "RTE")


def fake_result(key: str, values: list[float]) -> dict:
    """A task's protocol result whose reported metric takes `values` over seeds."""
    runs = [{"seed": i} for i in range(len(values))]
    for col, metric in GLUE[key].reported:
        for r, v in zip(runs, values):
            r[metric] = v
    return summarize(runs)


def test_the_average_is_the_bert_papers_without_wnli():
    """BERT-base's Table 1 row comes back as its 79.6 average: nine numbers, MNLI-m and -mm each counted."""
    bert = {"mnli": (84.6, 83.4), "qqp": 71.2, "qnli": 90.5, "sst2": 93.5, "cola": 52.1, "stsb": 85.8, "mrpc": 88.9,
            "rte": 66.4, "wnli": 65.1}
    results = {}
    for key, v in bert.items():
        if key == "mnli":
            runs = [{"seed": 0, "accuracy": v[0] / 100, "mismatched/accuracy": v[1] / 100}]
            results[key] = summarize(runs)
        else:
            results[key] = fake_result(key, [v / 100])
    report = glue_report(results)
    assert report["complete"] and "WNLI" not in report["averaged"] and len(report["averaged"]) == 9
    assert round(report["average"] * 100, 1) == 79.6
    assert report["columns"]["MNLI-mm"]["median"] == pytest.approx(0.834)


def test_medians_and_spread_over_seeds_and_a_partial_average():
    rng = random.Random(0)
    results = {k: fake_result(k, [rng.random() for _ in range(5)]) for k in ("sst2", "rte", "wnli")}
    report = glue_report(results, {"cola": "no CoLA/"})
    assert not report["complete"] and report["missing"] == {"cola": "no CoLA/"}
    for col, key in (("SST-2", "sst2"), ("RTE", "rte")):
        v = sorted(r["accuracy"] for r in results[key]["per_seed"])
        assert report["columns"][col]["median"] == v[2] and report["columns"][col]["spread"] == v[4] - v[0]
    assert report["average"] == pytest.approx((report["columns"]["SST-2"]["median"] +
                                               report["columns"]["RTE"]["median"]) / 2)
    per_seed = [(a["accuracy"] + b["accuracy"]) / 2 for a, b in zip(results["sst2"]["per_seed"],
                                                                   results["rte"]["per_seed"])]
    assert report["average_per_seed"] == pytest.approx(per_seed)
    assert report["average_spread"] == pytest.approx(max(per_seed) - min(per_seed))


def test_comparison_and_html_show_glue_and_what_the_model_knows(tmp_path):
    """runner.compare: GLUE's average and per-task columns (x100), and per task the linear probe and the model's own
    score beside the fine-tuning; the HTML report draws GLUE per run and the best constant answer as chance."""
    from runner.reporting.compare import compare
    from runner.reporting.html_report import HTML_FILE
    from tests.unit.test_compare import make_run, summary
    from tests.unit.test_html_report import report_json

    rng = random.Random(1)
    results = {k: fake_result(k, [rng.random() for _ in range(5)]) for k in GLUE if k != "mnli"}
    results["mnli"] = summarize([{"seed": i, "accuracy": 0.5 + i / 100, "mismatched/accuracy": 0.6} for i in range(5)])
    glue = {**glue_report(results), "recipe": {"seeds": 5}}
    acc = {"task": "wiki_acceptability", "accuracy_mean": 0.61, "accuracy_std": 0.02, "f1_mean": 0.6, "f1_std": 0.02,
           "linear_probe": {"accuracy_mean": 0.56}, "score_feature": {"accuracy_mean": 0.62},
           "baselines": {"random_init": {"accuracy_mean": 0.52, "accuracy_std": 0.01}},
           "chance": {"best_constant_accuracy": 0.5, "majority_accuracy": 0.5}}
    s = summary("bert", "mlm", {"mlm_loss": 3.0}, downstream=glue, downstream_tasks={"glue": glue,
                                                                                  "wiki_acceptability": acc})
    run = make_run(tmp_path / "m", "0_bert_mlm", "bert", "mlm", summary=s)
    rows = compare([run], out=tmp_path / "out", html=True)
    assert rows[0]["glue/average"] == pytest.approx(glue["average"]) and rows[0]["glue/complete"]
    md = (tmp_path / "out" / "comparison.md").read_text()
    head = md.splitlines()[0]
    for col in ("GLUE avg", "CoLA", "STS-B", "MNLI-mm", "WNLI", "wiki_acceptability probe / own score"):
        assert f" {col} " in head, head
    assert f"| {glue['average'] * 100:.1f} |" in md and "| 0.560 / 0.620 |" in md
    data = report_json((tmp_path / "out" / HTML_FILE).read_text())
    bars = {b["id"]: b for b in data["bars"]}
    g = bars["glue"]["data"][0]
    assert g["x"][-1] == "average" and g["y"][-1] == pytest.approx(round(glue["average"] * 100, 4), abs=0.01)
    d = next(b for k, b in bars.items() if k.startswith("downstream"))
    assert [t["name"] for t in d["data"]][:4] == ["pretrained", "linear probe", "own score", "random init"]
    assert d["data"][-1]["name"] == "best constant answer 0.50"


def test_the_end_of_run_table_shows_glue_a_regression_and_the_protocols_arms():
    from rich.console import Console

    from runner.reporting.summary import report_table

    results = {k: fake_result(k, [0.5, 0.6, 0.7, 0.8, 0.9]) for k in ("sst2", "stsb", "rte", "wnli")}
    glue = {**glue_report(results), "recipe": {"seeds": 5}}
    stsb = {"task": "glue_stsb", "metric": "spearman", "spearman_mean": 0.81, "spearman_std": 0.02, "baselines": {},
            "chance": {}}
    acc = {"task": "wiki_acceptability", "metric": "accuracy", "accuracy_mean": 0.606, "accuracy_std": 0.031,
           "linear_probe": {"accuracy_mean": 0.562}, "score_feature": {"accuracy_mean": 0.62},
           "baselines": {"random_init": {"accuracy_mean": 0.51, "accuracy_std": 0.02}},
           "chance": {"best_constant_accuracy": 0.5, "majority_accuracy": 0.5}}
    console = Console(width=200, record=True)
    console.print(report_table({"name": "x", "downstream_tasks": {"glue": glue, "glue_stsb": stsb,
                                                                  "wiki_acceptability": acc}}))
    text = console.export_text()
    assert "average 70.0 over 3 columns (not all of GLUE)" in text and "SST-2 70.0" in text
    assert "pretrained 0.810 +/- 0.020 (spearman)" in text
    assert "pretrained 0.606 +/- 0.031 | linear probe 0.562 | score feature 0.620 | random init 0.510 +/- 0.020" \
           ", chance 0.500" in text
