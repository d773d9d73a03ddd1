"""runner.reporting.compare --html: the self-contained comparison.html, from fake run dirs (no training); a headless Chromium
loads it where Debian's chromium is installed.
The tests of this file that train or start a process: tests/integration/test_html_report.py."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from runner.reporting.compare import compare
from runner.reporting.collect import flops_at, run_row
from runner.config.errors import ConfigError
from runner.reporting.html_report import HTML_FILE, embed_json, run_curves, sort_value, write_html
from tests.conftest import run_main
from tests.unit import test_compare
from tests.unit.test_compare import make_run, probes, summary


suited = test_compare.suited  # a fixture: runs with minimal-pair suites and a transformers model's evaluation dir


T0 = 1_764_000_000.0  # unix seconds of a run's first record


BERT_METRICS = [
    {"step": 0, "time": T0, "val/mlm_loss": 10.0, "probe/overall": 0.5, "probe/overall_lo": 0.44,
     "probe/overall_hi": 0.56, "probe/swap": 0.52, "probe/swap_lo": 0.4, "probe/swap_hi": 0.6},
    {"step": 10, "time": T0 + 5, "train/loss": 8.0, "train/lr": 1e-4, "train/tokens": 1000, "train/flops": 1e12,
     "train/tokens_per_s": 200.0},
    {"step": 15, "time": T0 + 9, "val/mlm_loss": 7.0, "probe/overall": 0.58, "probe/overall_lo": 0.52,
     "probe/overall_hi": 0.64, "probe/swap": 0.6, "probe/swap_lo": 0.5, "probe/swap_hi": 0.7},
    {"step": 20, "time": T0 + 10, "train/loss": 6.5, "train/lr": 5e-5, "train/tokens": 2000, "train/flops": 2e12,
     "train/tokens_per_s": 210.0, "train/note": "text is no curve", "train/finite": True},
    {"step": 25, "time": T0 + 14, "val/mlm_loss": 5.5, "probe/overall": 0.62, "probe/overall_lo": 0.56,
     "probe/overall_hi": 0.68, "probe/swap": 0.7, "probe/swap_lo": 0.62, "probe/swap_hi": 0.77,
     "downstream/accuracy_mean": 0.71},
]


BERT_CURVES = {"val/mlm_loss", "probe/overall", "probe/swap", "train/loss", "train/lr", "train/tokens",
               "train/flops", "train/tokens_per_s", "downstream/accuracy_mean"}


# the same config run again: its losses a little higher, so both lines show
BERT_AGAIN = [{k: v + 0.3 if k in ("val/mlm_loss", "train/loss") else v for k, v in r.items()} for r in BERT_METRICS]


ELECTRA_CURVES = {"val/mlm_loss", "val/disc_loss", "train/loss", "train/flops"}


def topic(acc: float, std: float) -> dict:
    """A downstream result with both baselines and chance, as runner.evaluation.downstream writes it into summary.json."""
    return {"task": "wiki_topic", "accuracy_mean": acc, "accuracy_std": std, "f1_mean": acc - 0.1, "f1_std": std,
            "baselines": {"random_init": {"accuracy_mean": 0.42, "accuracy_std": 0.05},
                          "bow_logreg": {"accuracy_mean": 0.58, "accuracy_std": 0.0}},
            "chance": {"majority_label": "History", "majority_accuracy": 0.2, "uniform_accuracy": 0.09}}


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Two finished runs sharing a name (the same config twice), an ELECTRA run with a second probe scorer, a
    torn last line and a NaN, a failed and an incomplete job."""
    root = tmp_path / "multirun" / "2025-01-01_00-00-00"
    bert_probes = probes(["pll"], {"swap": 150, "replace": 150},
                         {"swap": 0.7, "swap_lo": 0.62, "swap_hi": 0.77, "replace": 0.54, "replace_lo": 0.46,
                          "replace_hi": 0.62, "overall": 0.62, "overall_lo": 0.56, "overall_hi": 0.68})
    for job, acc, metrics in (("0_bert_mlm", 0.71, BERT_METRICS), ("1_bert_mlm", 0.69, BERT_AGAIN)):
        make_run(root, job, "bert", "mlm", metrics=metrics,
                 summary=summary("bert", "mlm", {"mlm_loss": 5.5, "unigram_gap": 1.5}, tokens_seen=2500,
                                 probes=bert_probes, downstream=topic(acc, 0.02),
                                 downstream_tasks={"wiki_topic": topic(acc, 0.02)}))
    electra = [{"step": 0, "val/mlm_loss": 9.0, "val/disc_loss": 0.7},
               {"step": 25, "train/loss": 5.0, "train/flops": float("nan")},  # json.dumps writes NaN; JSON has none
               {"step": 25, "train/flops": 2.4e12, "val/mlm_loss": 6.0, "val/disc_loss": 0.3}]
    d = make_run(root, "2_electra_rtd", "electra", "rtd", metrics=electra, summary=summary(
        "electra", "rtd", {"mlm_loss": 6.0}, probes=probes(["disc", "generator"], {"swap": 100},
                                                          {"swap": 0.6, "overall": 0.6, "generator/overall": 0.55})))
    with (d / "metrics.jsonl").open("a") as f:
        f.write('{"step": 30, "train/lo')  # killed mid-write
    make_run(root, "3_roberta_mlm", "roberta", "mlm", log="error: data.seq_len=600 exceeds model.max_position=512\n")
    make_run(root, "4_txl_clm", "txl", "clm", checkpoint=True, metrics=[{"step": 0, "val/lm_loss": 9.5}])
    return root


def report_json(page: str) -> dict:
    """The data embedded in the page, parsed strictly (NaN or Infinity would fail in the browser's JSON.parse)."""
    m = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', page, re.S)
    assert m, "no embedded data"
    return json.loads(m.group(1), parse_constant=lambda c: pytest.fail(f"{c} in the embedded JSON"))


class Resources(HTMLParser):
    """Every src/href of the page and the text of each inline script."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def test_page_is_self_contained_with_every_run_curve_and_result(sweep):
    rows = compare([sweep], html=True)
    page = (sweep / HTML_FILE).read_text()
    res = Resources()
    res.feed(page)
    assert res.urls == []  # no <script src>, <link href> or <a href>: nothing to fetch
    from plotly.offline import get_plotlyjs
    assert get_plotlyjs() in res.scripts  # plotly.js inlined whole
    own = page.replace(get_plotlyjs(), "")  # plotly.js's own strings name its website and map tile servers
    assert "http://" not in own and "https://" not in own and "//cdn" not in own
    assert "function sortBy" in own and '<table id="comparison" class="sortable">' in own

    data = report_json(page)
    labels = [r["label"] for r in data["runs"]]
    assert labels == ["bert-mlm-wiki (0_bert_mlm)", "bert-mlm-wiki (1_bert_mlm)", "electra-rtd-wiki",
                      "3_roberta_mlm (failed)", "4_txl_clm (incomplete)"]
    curves = {f["metric"]: f for f in data["curves"]}
    assert set(curves) == BERT_CURVES | ELECTRA_CURVES | {"val/lm_loss"}  # not step, time, _lo/_hi, text or flags
    assert [f["metric"] for f in data["curves"]][:3] == ["val/mlm_loss", "val/lm_loss", "val/disc_loss"]
    runs_of = lambda m: [t["meta"]["run"] for t in curves[m]["data"] if t.get("fill") is None]  # noqa: E731
    assert runs_of("val/mlm_loss") == [0, 1, 2] and runs_of("val/lm_loss") == [4]
    band = [t for t in curves["probe/swap"]["data"] if t.get("fill") == "toself"]
    assert [t["meta"]["run"] for t in band] == [0, 1]  # the _lo/_hi bounds as a band per run
    assert band[0]["y"] == [0.6, 0.7, 0.77, 0.62, 0.5, 0.4] and band[0]["meta"]["steps"] == [0, 15, 25, 25, 15, 0]
    assert [a["key"] for a in data["axes"]] == ["step", "tokens", "flops", "time"] and data["default_axis"] == "flops"

    probe, downstream = data["bars"]
    assert [t["name"] for t in probe["data"]] == ["swap", "replace", "overall", "overall (generator)", "chance 0.50"]
    overall = probe["data"][2]
    assert overall["y"] == [0.62, 0.62, 0.6] and overall["error_y"]["array"][0] == pytest.approx(0.06)
    assert [t["name"] for t in downstream["data"]] == ["pretrained", "random init", "bag-of-words",
                                                       "majority label 0.20"]
    assert downstream["data"][0]["y"] == [0.71, 0.69] and downstream["data"][0]["error_y"]["array"] == [0.02, 0.02]

    assert len(re.findall(r'<tr class="status-', page)) == len(rows) == 5
    assert '<tr class="status-failed">' in page and "data.seq_len=600 exceeds model.max_position=512" in page
    assert "5 runs:" in page and "3 finished" in page and "1 failed" in page and str(sweep) in page


def test_x_axes_place_each_step_by_tokens_flops_and_wall_clock(sweep):
    row = run_row(sweep / "0_bert_mlm")
    run = run_curves(row)
    assert run["curves"]["val/mlm_loss"] == {"steps": [0, 15, 25], "y": [10.0, 7.0, 5.5]}
    axes = run["axes"]
    # step 15 between the logs of steps 10 and 20; step 25 past the last log: summary.json's totals
    assert axes["tokens"] == {"0": 0, "10": 1000.0, "15": 1500.0, "20": 2000.0, "25": 2500.0}
    steps = [int(s) for s in axes["flops"]]
    assert list(axes["flops"].values()) == flops_at(row, BERT_METRICS, steps)
    assert axes["time"] == {"0": 0.0, "10": 5.0, "15": 9.0, "20": 10.0, "25": 14.0}
    electra = run_curves(run_row(sweep / "2_electra_rtd"))
    assert electra["curves"]["train/flops"] == {"steps": [25], "y": [2.4e12]}  # NaN skipped, torn line too
    assert electra["axes"]["tokens"] == {"0": 0, "25": 15217.0} and "time" not in electra["axes"]  # summary's total
    txl = run_curves(run_row(sweep / "4_txl_clm"))  # killed: no summary, nothing logged but the step-0 validation
    assert txl["axes"] == {"tokens": {"0": 0}, "flops": {"0": 0}}


@pytest.mark.parametrize("cell, value", [("4.43M", 4.43e6), ("2.5e+12", 2.5e12), ("5.5000 (mlm_loss)", 5.5),
                                         ("0.62 [0.56, 0.68]", 0.62), ("+1.500", 1.5), ("-0.250", -0.25),
                                         ("3.5k, 12.4 s", 3500.0), ("0.710 ± 0.012", 0.71), ("-", None),
                                         ("finished", None), ("12 min", 12.0)])
def test_numeric_cells_sort_by_their_leading_number(cell, value):
    assert sort_value(cell) == value


def test_embedded_json_cannot_close_its_script_and_bad_out_is_a_config_error(sweep, tmp_path):
    text = embed_json({"error": "</script><script>alert(1)</script><!--"})
    assert "<" not in text and json.loads(text)["error"].startswith("</script>")
    with pytest.raises(ConfigError, match="no runs"):
        write_html([], tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="not a directory"):
        write_html([run_row(sweep / "0_bert_mlm")], tmp_path / "file")


def test_cli_html_writes_the_page_next_to_the_runs(sweep):
    from runner.compare import main

    ok = run_main(main, str(sweep), "--html")  # python -m runner.compare SWEEP --html, in this process
    assert ok.returncode == 0, ok.stderr
    assert str(sweep / HTML_FILE) in ok.stderr.replace("\n", "")  # on the "wrote ..." line
    assert (sweep / HTML_FILE).stat().st_size > 1_000_000  # plotly.js inlined


def test_suite_bars_per_phenomenon_beside_published_models_for_blimp_only(suited, tmp_path):
    out = tmp_path / "report"
    compare([suited, tmp_path / "evaluations"], out=out, html=True)
    page = (out / HTML_FILE).read_text()
    data = report_json(page)
    bars = {f["id"]: f for f in data["bars"]}
    assert list(bars) == ["suite-0", "suite-1"]  # no probes, no downstream
    blimp, mine = bars["suite-0"], bars["suite-1"]
    assert blimp["layout"]["title"]["text"] == ("blimp: accuracy per phenomenon (mean of the phenomenon's paradigms; "
                                                "ties count as wrong)") and blimp["wide"]
    assert [t["name"] for t in blimp["data"]] == [
        "bert-mlm-wiki (pll)", "electra-rtd-wiki (disc)", "bert-base-uncased (evaluated) (pll)", "5-gram (published)",
        "LSTM (published)", "Transformer-XL (published)", "GPT-2 (published)", "chance 0.50"]
    assert all(t["x"] == ["anaphor_agreement", "subject_verb_agreement", "overall"] for t in blimp["data"][:-1])
    y = {t["name"]: t["y"] for t in blimp["data"]}
    assert y["bert-mlm-wiki (pll)"] == [0.7, 0.4, 0.6] and y["electra-rtd-wiki (disc)"] == [0.7, 0.7, 0.7]
    assert y["bert-base-uncased (evaluated) (pll)"] == [0.875, 0.95, 0.9]
    # BLiMP's published accuracies, the means over these three paradigms only
    assert y["5-gram (published)"] == [0.479, 0.755, 0.571] and y["GPT-2 (published)"] == [0.993, 0.967, 0.984333]
    assert [s["y0"] for s in blimp["layout"]["shapes"]] == [0.5]
    colors = [t["marker"]["color"] for t in blimp["data"][:3]]
    assert colors == [r["color"] for r in data["runs"]]  # each run in its curves' colour
    assert [t["name"] for t in mine["data"]] == ["bert-mlm-wiki (pll)", "chance 0.50"]  # a custom suite: no published
    assert mine["data"][0]["x"] == ["x", "y", "overall"] and mine["data"][0]["y"] == [0.55, 0.65, 0.6]

    curves = [f["metric"] for f in data["curves"] if f["group"] == "suite"]
    assert curves == ["suite/blimp/overall", "suite/mine/overall", "suite/blimp/pll/phenomenon/anaphor_agreement"]
    assert not any(f["metric"].startswith("suite_full/") for f in data["curves"])  # the full suites: the bars
    assert [a["key"] for a in data["axes"]] == ["step", "tokens", "words", "flops"]
    assert data["runs"][0]["axes"]["words"] == {"0": 0, "10": 4000.0, "15": 6000.0, "20": 8000.0, "25": 12000.0}
    assert "words" not in data["runs"][1]["axes"] and data["runs"][2]["axes"] == {"tokens": {}, "flops": {}}
    assert '<tr class="status-evaluated">' in page and "1 evaluated" in page
