"""runner.reporting.compare: the run comparison table, files and plots, from fake run dirs (no training).
The tests of this file that train or start a process: tests/integration/test_compare.py."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from runner.config.errors import ConfigError
from runner.reporting import compare as compare_module
from runner.reporting.compare import compare, rich_table
from runner.reporting.collect import loss_curve, probe_curve, suite_curves
from runner.store.layout import find_runs, is_evaluation
from tests.conftest import run_main


ROOT = Path(__file__).resolve().parents[2]


PNG = b"\x89PNG\r\n\x1a\n"


def make_run(root: Path, job: str, model: str, objective: str, *, summary: dict | None = None,
             metrics: list[dict] = (), log: str = "", checkpoint: bool = False, group: str | None = None) -> Path:
    """A Hydra job dir as `python -m runner` leaves it: .hydra/, metrics.jsonl, the job log, maybe summary.json."""
    d = root / job
    (d / ".hydra").mkdir(parents=True)
    cfg = {"model": {"name": model}, "objective": {"name": objective}, "data": {"name": "wiki"},
           "logger": {"mode": "offline", "project": "bertlab", "entity": None, "group": group, "tags": []}}
    (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model={model}", f"objective={objective}",
                                                                 "trainer.max_steps=25"]))
    (d / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    (d / "__main__.log").write_text(log)
    if checkpoint:
        (d / "checkpoints").mkdir()
        (d / "checkpoints" / "last.pt").write_bytes(b"x")
    if summary is not None:
        (d / "summary.json").write_text(json.dumps(summary))
    return d


def summary(model: str, objective: str, final_val: dict, **extra) -> dict:
    """The summary.json keys runner.engine.loop.run writes that the comparison reads."""
    return {"name": f"{model}-{objective}-wiki", "model": model, "objective": objective, "data": "wiki",
            "parameters": {"embeddings": 1, "total": 4_433_468}, "steps": 25, "tokens_seen": 15_217,
            "train_flops": 2.5e12, "final_val": final_val, "tokens_per_s": 3503.6, "wall_time_s": 12.36, **extra}


@pytest.fixture
def multirun(tmp_path: Path) -> Path:
    """A multirun dir: an MLM run with downstream results, a causal LM run, a failed and an incomplete job."""
    root = tmp_path / "multirun" / "2025-01-01_00-00-00"
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    mlm = [{"step": 0, "val/mlm_loss": 10.0},
           {"step": 10, "train/loss": 8.0, "train/flops": 1e12},
           {"step": 15, "val/mlm_loss": 7.0},
           {"step": 20, "train/loss": 6.5, "train/flops": 2e12},
           {"step": 25, "val/mlm_loss": 5.5}]  # the final eval comes after the last train/flops log
    ds = {"task": "sst2", "accuracy_mean": 0.8, "accuracy_std": 0.02, "f1_mean": 0.79, "f1_std": 0.03, "seeds": 3}
    make_run(root, "0_bert_mlm", "bert", "mlm", metrics=mlm,
             summary=summary("bert", "mlm", {"mlm_loss": 5.5, "mlm_accuracy": 0.2}, downstream=ds))
    clm = [{"step": 0, "val/lm_loss": 9.0}, {"step": 25, "train/flops": 3e12}, {"step": 25, "val/lm_loss": 4.0}]
    make_run(root, "1_txl_clm", "txl", "clm", metrics=clm,
             summary=summary("txl", "clm", {"lm_loss": 4.0, "perplexity": 54.6}, train_flops=3e12))
    make_run(root, "2_roberta_mlm", "roberta", "mlm",
             log="[2025-01-01][runner][INFO] - start\nerror: first problem\nerror: data.seq_len=600 exceeds "
                 "model.max_position=512 [set data.seq_len<=512]\n")
    make_run(root, "10_electra_rtd", "electra", "rtd", checkpoint=True, metrics=[{"step": 0, "val/mlm_loss": 9.5}],
             log="Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n    f()\n"
                 "torch.OutOfMemoryError: CUDA out of memory\n")
    return root


def test_rows_keep_failed_jobs_with_their_errors_in_job_order(multirun):
    rows = compare([multirun])
    assert [r["job"] for r in rows] == ["0_bert_mlm", "1_txl_clm", "2_roberta_mlm", "10_electra_rtd"]
    assert [r["status"] for r in rows] == ["finished", "finished", "failed", "incomplete"]
    bert, txl, roberta, electra = rows
    assert (bert["run"], bert["parameters"], bert["train_flops"], bert["tokens_seen"]) == \
        ("bert-mlm-wiki", 4_433_468, 2.5e12, 15_217)
    assert (bert["val_metric"], bert["val_loss"]) == ("mlm_loss", 5.5)
    assert (bert["downstream_task"], bert["accuracy_mean"], bert["accuracy_std"], bert["f1_mean"]) == \
        ("sst2", 0.8, 0.02, 0.79)
    assert (txl["val_metric"], txl["val_loss"], txl["accuracy_mean"]) == ("lm_loss", 4.0, None)
    assert roberta["error"] == "data.seq_len=600 exceeds model.max_position=512 [set data.seq_len<=512]"
    assert (roberta["model"], roberta["objective"], roberta["val_loss"]) == ("roberta", "mlm", None)
    assert electra["error"] == "torch.OutOfMemoryError: CUDA out of memory"
    assert bert["overrides"] == "model=bert objective=mlm"  # trainer.max_steps=25 is shared by all runs


def test_validation_loss_is_placed_at_the_flops_of_its_step(multirun):
    bert = compare([multirun])[0]
    metric, flops, loss = loss_curve(bert)
    # step 0 -> 0, step 15 interpolated between steps 10 and 20, step 25 from summary.json's train_flops
    assert (metric, flops, loss) == ("mlm_loss", [0.0, 1.5e12, 2.5e12], [10.0, 7.0, 5.5])
    electra = compare([multirun])[3]
    assert loss_curve(electra) == ("mlm_loss", [0.0], [9.5])  # no summary: metric found in metrics.jsonl


def test_writes_csv_markdown_and_plots_into_the_multirun_dir(multirun):
    compare([multirun])
    with (multirun / "comparison.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [r["status"] for r in table] == ["finished", "finished", "failed", "incomplete"]
    assert float(table[0]["val_loss"]) == 5.5 and table[1]["val_metric"] == "lm_loss"
    assert "exceeds model.max_position=512" in table[2]["error"] and table[2]["parameters"] == ""
    md = (multirun / "comparison.md").read_text().splitlines()
    assert md[0].startswith("| run | model | objective |") and len(md) == 2 + 4
    # runs from before probes, the unigram gap and downstream_tasks: no such columns, primary task from downstream
    assert md[0] == ("| run | model | objective | overrides | params | train FLOPs | val loss | sst2 acc ± std | "
                     "sst2 rand / BoW | tokens/s, wall | status |")
    assert "| 5.5000 (mlm_loss) | 0.800 ± 0.020 | - | 3.5k, 12.4 s | finished |" in md[2]
    assert "| 4.0000 (lm_loss) | - | - |" in md[3]
    assert "| failed: data.seq_len=600 exceeds" in md[4] and "| incomplete: torch.OutOfMemoryError" in md[5]
    assert table[0]["downstream/sst2/accuracy_mean"] == "0.8" and table[1]["downstream/sst2/accuracy_mean"] == ""
    assert all(t["probe_overall"] == t["unigram_gap"] == t["time_training_s"] == "" for t in table)
    assert not (multirun / "probes_vs_flops.png").exists()  # no run logged probe/overall
    for png in ("val_loss_vs_flops.png", "downstream_vs_flops.png"):
        data = (multirun / png).read_bytes()
        assert data[:8] == PNG and len(data) > 5000, png


def test_run_dirs_given_directly_write_to_out_without_a_downstream_plot(multirun, tmp_path):
    out = tmp_path / "report"
    rows = compare([multirun / "1_txl_clm", multirun / "2_roberta_mlm"], out=out)
    assert [r["job"] for r in rows] == ["1_txl_clm", "2_roberta_mlm"]
    assert sorted(p.name for p in out.iterdir()) == ["comparison.csv", "comparison.md", "val_loss_vs_flops.png"]
    assert not (multirun / "comparison.csv").exists()
    quiet = make_run(multirun, "3_bert_mlm", "bert", "mlm")  # killed, or its error went to the terminal only
    assert compare([quiet], out=out)[0]["error"].startswith("no summary.json and no error in the job's log")


def probes(scorers: list[str], pairs: dict[str, int], final: dict[str, float]) -> dict:
    """summary.json's probes: pairs per corruption kind, the objective's scorers, flat metrics at step 0 and the end."""
    return {"pairs": pairs, "scorers": scorers, "initial": {"overall": 0.5}, "final": final}


def task(name: str, acc: float, std: float, rand: float | None = None, bow: float | None = None) -> dict:
    """A downstream result as runner.evaluation.downstream.classifier returns it (baselines when given)."""
    base = {} if rand is None else {"random_init": {"accuracy_mean": rand}, "bow_logreg": {"accuracy_mean": bow}}
    return {"task": name, "accuracy_mean": acc, "accuracy_std": std, "f1_mean": acc - 0.01, "f1_std": std,
            "baselines": base}


@pytest.fixture
def probed(tmp_path: Path) -> Path:
    """A sweep of runs with the newer summary keys (probes, unigram gap, downstream_tasks, time_s) and one without."""
    root = tmp_path / "probed"
    metrics = [{"step": 0, "val/mlm_loss": 10.0, "val/unigram_gap": -3.0, "probe/overall": 0.5,
                "probe/overall_lo": 0.44, "probe/overall_hi": 0.56},
               {"step": 10, "train/loss": 8.0, "train/flops": 1e12},
               {"step": 15, "val/mlm_loss": 7.0, "probe/overall": 0.58, "probe/overall_lo": 0.52,
                "probe/overall_hi": 0.64},
               {"step": 20, "train/loss": 6.5, "train/flops": 2e12},
               {"step": 25, "val/mlm_loss": 5.5, "probe/overall": 0.62, "probe/overall_lo": 0.56,
                "probe/overall_hi": 0.68}]  # the final validation comes after the last train/flops log
    topic, accept = task("wiki_topic", 0.71, 0.012, 0.52, 0.66), task("wiki_acceptability", 0.61, 0.02, 0.5, 0.51)
    bert = probes(["pll"], {"swap": 150, "replace": 150},
                  {"swap": 0.70, "swap_lo": 0.62, "swap_hi": 0.77, "swap_norm": 0.69, "replace": 0.54,
                   "replace_lo": 0.46, "replace_hi": 0.62, "replace_norm": 0.55, "overall": 0.62, "overall_lo": 0.56,
                   "overall_hi": 0.68, "overall_norm": 0.61})
    make_run(root, "0_bert_mlm", "bert", "mlm", metrics=metrics,
             summary=summary("bert", "mlm", {"mlm_loss": 5.5, "unigram_gap": 1.5}, unigram_entropy=7.0, probes=bert,
                             downstream=topic, downstream_tasks={"wiki_topic": topic, "wiki_acceptability": accept},
                             time_s={"data": 1.0, "training": 9.0, "validation_probes": 2.0, "finetuning": 0.3,
                                     "export": 0.06, "total": 12.36}))
    electra = probes(["disc", "generator"], {"swap": 100, "delete": 100},  # kinds from probes.pairs, not a fixed list
                     {"swap": 0.66, "swap_lo": 0.56, "swap_hi": 0.74, "delete": 0.58, "delete_lo": 0.48,
                      "delete_hi": 0.67, "overall": 0.62, "overall_lo": 0.55, "overall_hi": 0.68,
                      "generator/swap": 0.6, "generator/delete": 0.5, "generator/overall": 0.55})
    only = task("wiki_acceptability", 0.59, 0.01)
    make_run(root, "1_electra_rtd", "electra", "rtd", metrics=[{"step": 25, "val/mlm_loss": 6.0}],
             summary=summary("electra", "rtd", {"mlm_loss": 6.0, "disc_loss": 0.3, "unigram_gap": -0.25},
                             unigram_entropy=5.75, probes=electra, downstream=only,
                             downstream_tasks={"wiki_acceptability": only},
                             verdict={"what": "discriminator", "learned": False, "margin": 0.021, "auc": 0.55,
                                      "text": "the discriminator did NOT beat its constant baseline"}))
    make_run(root, "2_roberta_mlm", "roberta", "mlm", metrics=[{"step": 25, "val/mlm_loss": 5.7}],  # an older run
             summary=summary("roberta", "mlm", {"mlm_loss": 5.7}, downstream=task("wiki_topic", 0.69, 0.015)))
    return root


def test_probe_gap_and_per_task_columns_with_dashes_for_runs_without_them(probed):
    rows = compare([probed])
    with (probed / "comparison.csv").open() as f:
        reader = csv.DictReader(f)
        header, (bert, electra, roberta) = reader.fieldnames, list(reader)
    assert header[header.index("val_loss"):header.index("downstream_task")] == \
        ["val_loss", "unigram_entropy", "unigram_gap", "verdict_learned", "verdict_margin", "probe_scorer", "probe_swap", "probe_replace", "probe_delete",
         "probe_overall", "probe_overall_lo", "probe_overall_hi", "probe_generator_overall"]
    assert (bert["unigram_gap"], bert["probe_scorer"], bert["probe_swap"], bert["probe_replace"],
            bert["probe_delete"]) == ("1.5", "pll", "0.7", "0.54", "")
    assert (bert["probe_overall"], bert["probe_overall_lo"], bert["probe_overall_hi"]) == ("0.62", "0.56", "0.68")
    assert (electra["unigram_gap"], electra["probe_scorer"], electra["probe_delete"],
            electra["probe_generator_overall"]) == ("-0.25", "disc", "0.58", "0.55")
    assert roberta["probe_overall"] == roberta["unigram_gap"] == roberta["probe_scorer"] == ""
    assert (electra["verdict_learned"], electra["verdict_margin"], bert["verdict_learned"]) == ("False", "0.021", "")
    assert (bert["downstream/wiki_acceptability/accuracy_mean"], bert["downstream/wiki_topic/accuracy_mean"],
            bert["downstream/wiki_topic/bow_logreg_accuracy_mean"]) == ("0.61", "0.71", "0.66")
    assert (roberta["downstream/wiki_topic/accuracy_mean"], roberta["downstream/wiki_acceptability/accuracy_mean"]) \
        == ("0.69", "")  # summary.json's downstream alone: before downstream_tasks existed
    assert (bert["accuracy_mean"], electra["downstream_task"]) == ("0.71", "wiki_acceptability")  # the primary task
    assert (bert["time_training_s"], bert["time_validation_probes_s"], roberta["time_training_s"]) == ("9.0", "2.0", "")
    md = (probed / "comparison.md").read_text().splitlines()
    assert md[0] == ("| run | model | objective | overrides | params | train FLOPs | val mlm_loss | context gap | "
                     "vs const. | probe swap | probe replace | probe delete | probe overall | scorer | wiki_topic acc ± std | "
                     "wiki_topic rand / BoW | wiki_acceptability acc ± std | wiki_acceptability rand / BoW | "
                     "tokens/s, wall | status |")
    assert md[2].endswith("| 5.5000 | +1.500 | - | 0.70 | 0.54 | - | 0.62 [0.56, 0.68] | pll | 0.710 ± 0.012 | "
                          "0.520 / 0.660 | 0.610 ± 0.020 | 0.500 / 0.510 | 3.5k, 12.4 s | finished |")
    assert md[3].endswith("| 6.0000 | -0.250 | NO -2% | 0.66 | - | 0.58 | 0.62 [0.55, 0.68] | disc | - | - | "
                          "0.590 ± 0.010 | - | 3.5k, 12.4 s | finished |")
    assert md[4].endswith("| 5.7000 | - | - | - | - | - | - | - | 0.690 ± 0.015 | - | - | - | 3.5k, 12.4 s | finished |")
    # the console: within 200 columns, each task a column of two lines (acc ± std over rand / BoW), nothing cut
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(rich_table(rows))
    text = console.export_text()
    assert max(map(len, text.splitlines())) <= 200
    for cell in ("0.62 [0.56, 0.68]", "0.62 [0.55, 0.68]", "+1.500", "-0.250", "0.710 ± 0.012", "0.520 / 0.660",
                 "0.590 ± 0.010", "wiki_topic", "acceptability", "pll", "disc", "chance 0.50", "electra-rtd-wiki",
                 "roberta-mlm-wiki", "model=electra", "finished"):  # text columns not folded to slivers
        assert cell in text, cell


def test_probe_accuracy_is_placed_at_the_flops_of_its_step_and_plotted(probed, tmp_path):
    bert = compare([probed])[0]
    # step 0 -> 0, step 15 interpolated between the train/flops logs of steps 10 and 20, step 25 from summary.json
    assert probe_curve(bert) == ([0.0, 1.5e12, 2.5e12], [0.5, 0.58, 0.62], [0.44, 0.52, 0.56], [0.56, 0.64, 0.68])
    data = (probed / "probes_vs_flops.png").read_bytes()
    assert data[:8] == PNG and len(data) > 5000
    out = tmp_path / "no_probe_metrics"  # summary.json has probes, metrics.jsonl no probe/overall: no plot
    compare([probed / "1_electra_rtd", probed / "2_roberta_mlm"], out=out)
    assert (out / "comparison.csv").exists() and not (out / "probes_vs_flops.png").exists()
    assert probe_curve(compare([probed / "1_electra_rtd"], out=out)[0]) == ([], [], [], [])
    compare([probed / "0_bert_mlm", probed / "2_roberta_mlm"], out=out)  # one scorer: named in the header
    assert "| context gap | probe swap | probe replace | probe overall (pll) | wiki_topic acc ± std |" in \
        (out / "comparison.md").read_text().splitlines()[0]


def cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m runner.compare ARGS`, in this process."""
    from runner.compare import main

    return run_main(main, *args, columns=320)  # wide enough that no cell folds


def test_cli_prints_the_table_and_rejects_paths_without_runs(multirun, tmp_path):
    ok = cli(str(multirun))
    assert ok.returncode == 0, ok.stderr
    assert "failed" in ok.stdout and "incomplete" in ok.stdout and "CUDA out of memory" in ok.stdout
    missing = cli(str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: {tmp_path / 'nope'}: no such file or directory"
    (tmp_path / "empty").mkdir()
    empty = cli(str(multirun), str(tmp_path / "empty"))
    assert empty.returncode == 2 and str(tmp_path / "empty") in empty.stderr
    assert len(empty.stderr.strip().splitlines()) == 1 and not (tmp_path / "empty" / "comparison.csv").exists()


BLIMP = {"anaphor_gender_agreement": "anaphor_agreement", "anaphor_number_agreement": "anaphor_agreement",
         "regular_plural_subject_verb_agreement_1": "subject_verb_agreement"}  # three of BLiMP's paradigms


def suite_report(scores: dict[str, list[float]], paradigms: dict[str, str] = BLIMP, path: str = "blimp") -> dict:
    """One suite in summary.json: per scorer its accuracy per paradigm (in paradigms' order); overall the mean over
    paradigms, a phenomenon's the mean over its paradigms."""
    def mean(xs: list[float]) -> float:
        return round(sum(xs) / len(xs), 6)

    terms = list(dict.fromkeys(paradigms.values()))
    acc = {s: dict(zip(paradigms, v)) for s, v in scores.items()}
    return {"path": path, "pairs": 100 * len(paradigms), "paradigm_count": len(paradigms), "pairs_per_paradigm": None,
            "seed": 0, "scorers": list(scores), "unk_share": 0.0,
            "overall": {s: mean(list(a.values())) for s, a in acc.items()},
            "phenomena": {t: {s: mean([a[p] for p, pt in paradigms.items() if pt == t]) for s, a in acc.items()}
                          for t in terms},
            "paradigms": {p: {"phenomenon": t, **{s: a[p] for s, a in acc.items()}} for p, t in paradigms.items()}}


def evaluation_dir(root: Path, name: str, suites: dict) -> Path:
    """A transformers model's directory as `python -m runner.evaluate MODEL --out DIR` leaves it: summary.json only."""
    d = root / name
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps(
        {"name": name, "model": "BertForMaskedLM", "kind": "transformers masked_lm", "model_dir": f"/models/{name}",
         "parameters": {"total": 109_514_298}, "device": "cpu", "suites": suites}))
    return d


@pytest.fixture
def suited(tmp_path: Path) -> Path:
    """A sweep of a BERT run that logged BLiMP's subsample at each validation (and a custom suite), an ELECTRA run
    with BLiMP in its summary only, and beside it outputs/evaluations/bert-base-uncased."""
    root = tmp_path / "suited"
    metrics = [{"step": 0, "val/mlm_loss": 10.0, "suite/blimp/overall": 0.5, "suite/blimp/pll/overall": 0.5,
                "suite/blimp/pll/phenomenon/anaphor_agreement": 0.5, "suite/blimp/pll/paradigm/x": 0.5,
                "suite/blimp/pairs": 30, "train/tokens": 0, "train/flops": 0, "train/words": 0},
               {"step": 10, "train/loss": 8.0, "train/tokens": 5000, "train/flops": 1e12, "train/words": 4000},
               {"step": 15, "val/mlm_loss": 7.0, "suite/blimp/overall": 0.55, "suite/mine/overall": 0.52},
               {"step": 20, "train/loss": 6.5, "train/tokens": 10000, "train/flops": 2e12, "train/words": 8000},
               {"step": 25, "val/mlm_loss": 5.5, "suite/blimp/overall": 0.6},  # after the last train/words: words_seen
               {"step": 25, "suite_full/blimp/overall": 0.6, "suite_full/blimp/pll/overall": 0.6}]
    suites = {"blimp": suite_report({"pll": [0.6, 0.8, 0.4], "pll_word_l2r": [0.5, 0.7, 0.9]}),
              "mine": suite_report({"pll": [0.55, 0.65]}, {"p1": "x", "p2": "y"}, "mine.jsonl")}
    make_run(root, "0_bert_mlm", "bert", "mlm", metrics=metrics,
             summary=summary("bert", "mlm", {"mlm_loss": 5.5}, words_seen=12_000, suites=suites))
    electra = suite_report({"disc": [0.7, 0.7, 0.7], "generator": [0.6, 0.6, 0.9], "generator_word_l2r": [0.5] * 3})
    make_run(root, "1_electra_rtd", "electra", "rtd", metrics=[{"step": 25, "val/mlm_loss": 6.0}],
             summary=summary("electra", "rtd", {"mlm_loss": 6.0}, suites={"blimp": electra}))
    evaluation_dir(tmp_path / "evaluations", "bert-base-uncased",
                   {"blimp": suite_report({"pll": [0.9, 0.85, 0.95], "pll_word_l2r": [0.8, 0.8, 0.8]})})
    return root


def test_suite_columns_in_rows_csv_markdown_and_console(suited):
    rows = compare([suited])
    bert, electra = rows
    assert (bert["suite_blimp"], bert["suite_blimp_scorer"], bert["suite_blimp_pll_word_l2r"]) == (0.6, "pll", 0.7)
    assert (bert["suite_mine"], bert["suite_mine_scorer"], bert["words_seen"]) == (0.6, "pll", 12_000)
    assert (electra["suite_blimp"], electra["suite_blimp_scorer"], electra["suite_blimp_generator"],
            electra["suite_blimp_generator_word_l2r"], electra.get("suite_mine")) == (0.7, "disc", 0.7, 0.5, None)
    with (suited / "comparison.csv").open() as f:
        reader = csv.DictReader(f)
        header, (b, e) = reader.fieldnames, list(reader)
    assert header[header.index("tokens_seen") + 1] == "words_seen" and b["words_seen"] == "12000"
    assert header[header.index("probe_overall_hi") + 1:header.index("downstream_task")] == \
        ["suite_blimp", "suite_blimp_scorer", "suite_blimp_pll_word_l2r", "suite_blimp_generator",
         "suite_blimp_generator_word_l2r", "suite_mine", "suite_mine_scorer"]
    assert (b["suite_blimp"], b["suite_blimp_generator"], e["suite_blimp_scorer"], e["suite_mine"]) == \
        ("0.6", "", "disc", "")
    md = (suited / "comparison.md").read_text().splitlines()
    assert md[0] == ("| run | model | objective | overrides | params | train FLOPs | val mlm_loss | suite blimp | "
                     "suite blimp pll_word_l2r | suite blimp generator | suite blimp generator_word_l2r | "
                     "suite mine (pll) | tokens/s, wall | status |")  # blimp's scorers differ: in the cells
    assert "| 5.5000 | 0.600 (pll) | 0.700 | - | - | 0.600 |" in md[2]
    assert "| 6.0000 | 0.700 (disc) | - | 0.700 | 0.500 | - |" in md[3]
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(rich_table(rows))
    text = console.export_text()
    assert max(map(len, text.splitlines())) <= 160
    assert "0.600" in text and "(disc)" in text and "generator" not in text  # the headline only
    assert "ties count as wrong" in text


def test_an_evaluation_dir_is_compared_beside_runs(suited, tmp_path):
    evaluations = tmp_path / "evaluations"
    out = tmp_path / "report"
    for paths in ([suited / "0_bert_mlm", evaluations / "bert-base-uncased"], [suited / "0_bert_mlm", evaluations]):
        _, model = compare(paths, out=out, html=True)
        assert (model["run"], model["job"], model["model"], model["parameters"], model["status"]) == \
            ("bert-base-uncased", "bert-base-uncased", "BertForMaskedLM", 109_514_298, "evaluated")
        assert (model["suite_blimp"], model["suite_blimp_scorer"], model["suite_blimp_pll_word_l2r"]) == \
            (0.9, "pll", 0.8)
        assert all(model[k] is None for k in ("objective", "data", "train_flops", "tokens_seen", "words_seen",
                                              "steps", "val_loss", "probe_overall", "accuracy_mean", "error"))
        assert loss_curve(model) == (None, [], []) and suite_curves(model) == {}
    md = (out / "comparison.md").read_text().splitlines()
    assert md[3].startswith("| bert-base-uncased | BertForMaskedLM | - | - | 109.51M | - | - | 0.900 | 0.800 |")
    assert md[3].endswith("| - | evaluated |") and md[0].count("suite blimp") == 2  # "(pll)": shared by both
    assert {p.name for p in out.iterdir()} >= {"val_loss_vs_flops.png", "suites_vs_words.png", "comparison.html"}
    alone = tmp_path / "alone"  # no metrics.jsonl and no config: no plot, nothing crashes
    assert [r["status"] for r in compare([evaluations], out=alone, html=True)] == ["evaluated"]
    assert sorted(p.name for p in alone.iterdir()) == ["comparison.csv", "comparison.html", "comparison.md"]
    ok = cli(str(suited / "0_bert_mlm"), str(evaluations / "bert-base-uncased"), "--out", str(alone))
    assert ok.returncode == 0, ok.stderr
    assert "bert-base-uncased" in ok.stdout and "evaluated" in ok.stdout and "BertForMaskedLM" in ok.stdout
    with pytest.raises(ConfigError, match="no run directories"):  # runner.tensorboard: runs only
        find_runs([evaluations])
    not_one = evaluation_dir(tmp_path / "other", "x", {})
    (not_one / "summary.json").write_text(json.dumps({"name": "x", "kind": "a run's summary"}))
    assert not is_evaluation(not_one) and is_evaluation(evaluations / "bert-base-uncased")
    assert cli(str(not_one)).returncode == 2


def test_suites_plot_words_with_published_models_only_when_records_exist(suited, tmp_path, monkeypatch):
    bert = compare([suited])[0]
    # step 15 between the train/words logs of steps 10 and 20; step 25 from summary.json's words_seen
    assert suite_curves(bert) == {"blimp": ([0.0, 6000.0, 12000.0], [0.5, 0.55, 0.6]),
                                  "mine": ([6000.0], [0.52])}
    data = (suited / "suites_vs_words.png").read_bytes()
    assert data[:8] == PNG and len(data) > 5000
    axes = []
    real = compare_module._figure
    monkeypatch.setattr(compare_module, "_figure", lambda: axes.append(real()) or axes[-1])
    rows = compare([suited, tmp_path / "evaluations"], out=tmp_path / "published")
    assert rows[0]["overrides"] == "model=bert objective=mlm"  # the evaluation dir has none: not "shared" by all
    ax = axes[-1][1]  # the last figure drawn: the suites'
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "corpus words seen in training"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["bert-mlm-wiki blimp (pll)", "bert-mlm-wiki mine (pll)", "5-gram blimp 0.571 (published)",
                      "LSTM blimp 0.908 (published)", "Transformer-XL blimp 0.871 (published)",
                      "GPT-2 blimp 0.984 (published)", "bert-base-uncased blimp 0.900 (evaluated)", "chance (0.5)"]
    assert list(ax.get_lines()[0].get_xdata()) == [6000.0, 12000.0]  # step 0: no place on a log axis
    assert compare_module.plot_suites([r for r in rows if r["run"] != "bert-mlm-wiki"], tmp_path / "x.png") is None
    out = tmp_path / "no_suite_records"  # summary.json has suites, metrics.jsonl no suite/: no plot
    compare([suited / "1_electra_rtd", tmp_path / "evaluations"], out=out)
    assert (out / "comparison.csv").exists() and not (out / "suites_vs_words.png").exists()


def test_wandb_table_has_the_suite_columns_and_evaluation_dirs_set_no_logging_mode(suited, tmp_path, monkeypatch):
    logged: dict = {}

    class Run:
        def log(self, data: dict) -> None:
            logged.update(data)

        def finish(self) -> None:
            logged["finished"] = True

    class Table:
        def __init__(self, columns: list, data: list, allow_mixed_types: bool) -> None:
            self.columns, self.data = columns, data

    fake = types.SimpleNamespace(Settings=lambda **kw: kw, Table=Table, Image=lambda path: path,
                                 init=lambda **kw: logged.update(init=kw) or Run())
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr("runner.reporting.logger.has_wandb_credentials", lambda: True)  # online would stay online
    compare([suited / "0_bert_mlm", tmp_path / "evaluations"], out=tmp_path / "report", wandb=True)
    assert logged["finished"] and logged["init"]["mode"] == "offline"  # the run's logger.mode, not a default online
    table = logged["comparison"]
    assert table.columns[table.columns.index("suite_blimp"):table.columns.index("downstream_task")] == \
        ["suite_blimp", "suite_blimp_scorer", "suite_blimp_pll_word_l2r", "suite_mine", "suite_mine_scorer"]
    column = lambda name: [row[table.columns.index(name)] for row in table.data]  # noqa: E731
    assert column("suite_blimp") == [0.6, 0.9] and column("status") == ["finished", "evaluated"]
    assert column("words_seen") == [12_000, None] and "suites_vs_words" in logged
