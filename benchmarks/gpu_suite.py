"""The GPU suite's Python side (benchmarks/gpu_suite.sh is the driver): the preflight, a train_throughput.py entry
that can pick torch.compile's backend, and the aggregation of every part's output into suite.json and suite.md.

    python benchmarks/gpu_suite.py machine OUT/machine.json [--require-cuda]
    python benchmarks/gpu_suite.py throughput [--compile-backend eager] -- <train_throughput.py arguments>
    python benchmarks/gpu_suite.py aggregate OUT [--peak-tflops X] [--smoke] [--wall-s S]

The driver writes one line per part to OUT/parts.jsonl (part, kind, rc, seconds, budget_s, output, log; rc null:
skipped); `aggregate` reads them with each part's output (train_throughput.py's and gpu_mfu.py's JSON, the
bert_improvements sweep directory) and writes OUT/suite.json (machine, each part's status, seconds and results)
and OUT/suite.md (tables for docs/performance.md). It exits 1 when any part is not ok.

MFU of a throughput row: model FLOPs per real token from `runner.models.flops.train_flops` (as gpu_mfu.py counts them: 3 x
the forward's matmuls, the MLM head on the labelled positions only) over the batch's real tokens, attention taken
over the examples' mean length (padding and the transformers head's unlabelled positions are executed, not
counted), times tokens/s, over the peak of gpu_mfu.py's dense bf16 table (`resolve_peak`).
"""
from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # train_throughput and gpu_mfu live beside this file (they put the repo on sys.path)

import gpu_mfu  # noqa: E402
import torch  # noqa: E402
import train_throughput as tt  # noqa: E402

from runner.models.flops import train_flops  # noqa: E402

ROOT = tt.ROOT
IMPLS = (("ours", "tokens_per_s_ours"), ("ours_packed", "tokens_per_s_ours_packed"),
         ("transformers", "tokens_per_s_transformers"))
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


# ------------------------------------------------------------------------------------------------------- machine

def git_state() -> dict[str, Any]:
    """The checkout's commit and whether tracked files differ from it (None where there is no git repository)."""
    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def nvidia_smi() -> list[dict[str, str]] | None:
    """Per GPU: name, driver, memory, power limit, max SM clock and MIG mode from nvidia-smi (None without it)."""
    keys = ("name", "driver_version", "memory.total", "power.limit", "clocks.max.sm", "mig.mode.current")
    try:
        r = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(keys)}", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        return None
    return [dict(zip(keys, (v.strip() for v in line.split(",")))) for line in r.stdout.splitlines() if line.strip()]


def machine_info() -> dict[str, Any]:
    """train_throughput.machine's fields (CPU, torch, transformers, python, the GPU's name) and more: CUDA and
    cuDNN versions, CPU count, every visible GPU's capability and memory, nvidia-smi's view, the git commit."""
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    info = tt.machine(SimpleNamespace(device=device, dtype="bf16" if cuda else "fp32"))
    info.pop("dtype")
    info.update(date_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                cpu_count=os.cpu_count(), cuda_available=cuda, cuda=torch.version.cuda,
                cudnn=torch.backends.cudnn.version() if cuda else None, git=git_state())
    if cuda:
        info["gpus"] = []
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info["gpus"].append({"name": p.name, "capability": f"{p.major}.{p.minor}",
                                 "memory_gib": round(p.total_memory / 2**30, 1),
                                 "multiprocessors": p.multi_processor_count})
        info["nvidia_smi"] = nvidia_smi()
    return info


def cmd_machine(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gpu_suite.py machine", description="write the machine's description as JSON")
    p.add_argument("json", type=Path)
    p.add_argument("--require-cuda", action="store_true", help="exit 2 (after writing the JSON) without a CUDA device")
    args = p.parse_args(argv)
    info = machine_info()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(info, indent=2))
    print(json.dumps(info, indent=2))
    if args.require_cuda and not info["cuda_available"]:
        print("no CUDA device here: the GPU suite needs one (bash benchmarks/gpu_suite.sh --smoke runs on a CPU)",
              file=sys.stderr)
        return 2
    return 0


# ---------------------------------------------------------------------------------------------------- throughput

def cmd_throughput(argv: list[str]) -> int:
    """train_throughput.main(argv after --), torch.compile given --compile-backend's backend (default: inductor);
    the backend is recorded in the JSON's args.compile_backend."""
    backend = None
    if argv[:1] == ["--compile-backend"]:
        if len(argv) < 2:
            raise SystemExit("gpu_suite.py throughput: --compile-backend needs a value")
        backend, argv = argv[1], argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    args = tt.parse_args(argv)  # errors out here, before any work
    if backend is not None:
        torch.compile = functools.partial(torch.compile, backend=backend)  # train_throughput calls torch.compile(m)
    rc = tt.main(argv)
    if rc == 0 and args.json is not None and args.json.is_file():
        data = json.loads(args.json.read_text())
        data["args"]["compile_backend"] = (backend or "inductor") if args.compile else None
        args.json.write_text(json.dumps(data, indent=2))
    return rc


# ----------------------------------------------------------------------------------------------------- aggregate

def read_parts(out: Path) -> list[dict[str, Any]]:
    """OUT/parts.jsonl: one record per part, in the order they ran."""
    path = out / "parts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def log_error(out: Path, log: str | None, limit: int = 300) -> str:
    """The last error-looking line of a part's log (a traceback's last line, `error:`), else its last line."""
    if not log or not (out / log).is_file():
        return "no log"
    lines = [ANSI.sub("", x).strip() for x in (out / log).read_text(errors="replace").splitlines()]
    lines = [x for x in lines if x]
    if not lines:
        return "empty log"
    hits = [x for x in lines if re.search(r"(Error|Exception|error:|Traceback)", x) and not x.startswith("Traceback")]
    return (hits or lines)[-1][:limit]


@functools.lru_cache(maxsize=None)
def model_config(name: str):
    return tt.model_config(name)


def resolve_peak(peak_tflops: float | None, dtype: str, device: str, name: str) -> tuple[float | None, str]:
    """gpu_mfu.resolve_peak for a run's dtype, device and device name."""
    return gpu_mfu.resolve_peak(SimpleNamespace(peak_tflops=peak_tflops, dtype=dtype, device=torch.device(device)),
                                name)


def flops_per_real_token(config, r: dict[str, Any]) -> float:
    """Model FLOPs per real token of a train_throughput row's step: train_flops over its batch_size examples of
    the mean real length (the attention over that length), the MLM head on the labelled positions."""
    bs = r["batch_size"]
    return train_flops(config, bs, r["real_tokens"] / bs, r["labelled_positions"]) / r["real_tokens"]


def throughput_rows(data: dict[str, Any], peak_tflops: float | None) -> list[dict[str, Any]]:
    """One row per model of a train_throughput.py JSON, with model TFLOP/s and MFU per implementation."""
    a, m = data["args"], data["machine"]
    name = m.get("gpu") or m["cpu"]
    peak, note = resolve_peak(peak_tflops, a["dtype"], a["device"], name)
    rows = []
    for r in data["results"]:
        per_token = flops_per_real_token(model_config(r["model"]), r)
        row = {k: r.get(k) for k in (
            "model", "compiled", "batch_size", "seq_len", "lengths", "real_tokens", "labelled_positions",
            "padding_padded", "padding_packed", "tokens_per_s_ours", "tokens_per_s_ours_packed",
            "tokens_per_s_transformers", "ratio", "ratio_packed", "packed_vs_padded", "best_ratio",
            "eval_loss_abs_diff", "attn_implementation", "steps_per_round", "rounds", "warmup")}
        row.update(mode="compiled" if r.get("compiled") else "eager", compile_backend=a.get("compile_backend"),
                   device=a["device"], device_name=name, dtype=a["dtype"], flops_per_real_token=per_token,
                   peak_tflops=peak, peak_note=note)
        for impl, key in IMPLS:
            tps = r.get(key)
            achieved = None if tps is None else tps * per_token / 1e12
            row[f"achieved_tflops_{impl}"] = achieved
            row[f"mfu_{impl}"] = achieved / peak if achieved is not None and peak else None
        rows.append(row)
    return rows


def mfu_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model and implementation of a gpu_mfu.py JSON."""
    rows = []
    for r in data["results"]:
        for impl, v in r["implementations"].items():
            rows.append({"model": r["model"], "implementation": impl, "batch_size": r["batch_size"],
                         "seq_len": r["seq_len"], "attn_implementation": r["attn_implementation"],
                         "flops_per_step": r["flops_per_step"], "tokens_per_s": v["tokens_per_s"],
                         "achieved_tflops": v["achieved_tflops"], "mfu": v["mfu"],
                         "peak_memory_bytes": v["peak_memory_bytes"], "params": v["params"],
                         "ratio": r["ratio"] if impl == "ours" else None, "device_name": data["device_name"],
                         "dtype": data["args"]["dtype"], "peak_tflops": data["peak_tflops"],
                         "peak_note": data["peak_note"]})
    return rows


def improvement_rows(sweep: Path) -> list[dict[str, Any]]:
    """runner.reporting.compare's row for each job of the sweep (finished, incomplete or failed), with the device and
    precision it ran on."""
    from runner.reporting.collect import distinct_overrides, run_row
    from runner.store.layout import find_runs
    from runner.config.errors import ConfigError

    try:
        runs = find_runs([sweep])
    except ConfigError:
        return []
    overrides = distinct_overrides(runs)
    rows = []
    for run in runs:
        row = run_row(run, overrides[run])
        try:
            s = json.loads((run / "summary.json").read_text())
        except (OSError, json.JSONDecodeError):
            s = {}
        row.update(device=s.get("device"), precision=s.get("precision"), final_val=s.get("final_val"),
                   time_s=s.get("time_s"))
        rows.append(row)
    return rows


def collect(out: Path, p: dict[str, Any], peak_tflops: float | None) -> dict[str, Any]:
    """One part's entry in suite.json: status, seconds, budget, rc, log, error and results."""
    entry = {"kind": p["kind"], "status": "ok", "rc": p["rc"], "seconds": p["seconds"], "budget_s": p["budget_s"],
             "log": p.get("log"), "output": p.get("output"), "error": None, "results": None}
    if p["rc"] is None:
        entry.update(status="skipped", error=p.get("skipped") or "not run")
        return entry
    if p["rc"] in (124, 137):
        entry.update(status="timeout", error=f"timed out after {p['budget_s']} s")
    elif p["rc"] != 0:
        entry.update(status="failed", error=f"exit {p['rc']}: {log_error(out, p.get('log'))}")
    target = out / p["output"]
    try:
        if p["kind"] == "machine":
            entry["results"] = json.loads(target.read_text())
        elif p["kind"] == "throughput":
            entry["results"] = throughput_rows(json.loads(target.read_text()), peak_tflops)
        elif p["kind"] == "mfu":
            entry["results"] = mfu_rows(json.loads(target.read_text()))
        elif p["kind"] == "improvements":
            entry["results"] = improvement_rows(target)
            if not entry["results"]:
                raise FileNotFoundError(f"no run directories in {target}")
            unfinished = [r["run"] for r in entry["results"] if r["status"] != "finished"]
            if unfinished and entry["status"] == "ok":
                entry.update(status="failed", error="not finished: " + ", ".join(map(str, unfinished)))
            elif entry["status"] == "timeout":
                done = len(entry["results"]) - len(unfinished)
                entry["error"] += f"; {done} of {len(entry['results'])} runs started had finished"
        else:
            raise ValueError(f"unknown part kind {p['kind']!r}")
    except Exception as e:  # noqa: BLE001 - one part's unreadable output must not lose the others'
        if entry["status"] == "ok":
            entry.update(status="failed", error=f"no results: {type(e).__name__}: {e}")
    return entry


def aggregate(out: Path, peak_tflops: float | None = None, smoke: bool = False) -> dict[str, Any]:
    """suite.json's content from OUT's parts."""
    parts = {p["part"]: collect(out, p, peak_tflops) for p in read_parts(out)}
    machine = (parts.get("machine") or {}).get("results") or {}
    bad = [n for n, e in parts.items() if e["status"] != "ok"]
    return {"suite": "gpu_suite", "mode": "smoke" if smoke else "gpu", "out_dir": str(out),
            "command": "bash benchmarks/gpu_suite.sh" + (" --smoke" if smoke else ""),
            "status": "ok" if parts and not bad else "failed", "not_ok": bad, "wall_s": None,
            "parts_seconds": round(sum(e["seconds"] or 0 for e in parts.values()), 1),
            "machine": machine, "parts": parts}


# ------------------------------------------------------------------------------------------------------ markdown

def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    """A markdown table; align: one l or r per column."""
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731 - a pipe would split a cell
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return ["| " + " | ".join(map(esc, header)) + " |", rule, *("| " + " | ".join(map(esc, r)) + " |" for r in rows)]


def machine_line(m: dict[str, Any]) -> str:
    if not m:
        return "machine: unknown (the preflight did not run)"
    gpus = m.get("gpus") or []
    smi = (m.get("nvidia_smi") or [{}])[0]
    gpu = (f"{gpus[0]['name']} ({gpus[0]['memory_gib']} GiB, sm {gpus[0]['capability']}"
           + (f", driver {smi['driver_version']}" if smi.get("driver_version") else "") + ")") if gpus else "no GPU"
    git = m.get("git") or {}
    commit = (git.get("commit") or "?")[:12] + (" (modified)" if git.get("dirty") else "")
    cuda = f" (CUDA {m['cuda']})" if m.get("cuda") else ""
    return (f"{gpu}; CPU {m.get('cpu')} x {m.get('cpu_count')}; torch {m.get('torch')}{cuda}, "
            f"transformers {m.get('transformers')}, python {m.get('python')}; commit {commit}; {m.get('date_utc')}")


def markdown(suite: dict[str, Any]) -> str:
    parts, m = suite["parts"], suite["machine"]
    smoke = suite["mode"] == "smoke"
    title = "GPU suite" + (": CPU smoke run (toy sizes, fp32; not GPU figures)" if smoke else
                           f": {((m.get('gpus') or [{}])[0]).get('name', 'unknown GPU')}")
    md = [f"# {title}", "", f"`{suite['command']}`: {machine_line(m)}. Status **{suite['status']}**"
          + (f", {suite['wall_s']:.0f} s in all" if suite.get("wall_s") else "") + ".", ""]

    md += ["## Parts", ""]
    md += _table(["part", "status", "seconds", "budget (s)", "note"],
                 [[n, e["status"], _num(e["seconds"], ".1f"), str(e["budget_s"]), e["error"] or ""]
                  for n, e in parts.items()], "llrrl")
    md.append("")

    rows = [r for e in parts.values() if e["kind"] == "throughput" for r in e["results"] or []]
    rows.sort(key=lambda r: (r["model"], r["mode"] != "eager"))
    md += ["## Training throughput: ours (padded, packed) and transformers", ""]
    if rows:
        r0 = rows[0]
        peaks = {(r["peak_tflops"], r["peak_note"]) for r in rows}
        peak_text = "; ".join(f"{p:,.1f} TFLOP/s ({n})" if p else f"n/a ({n})" for p, n in sorted(
            peaks, key=lambda x: (x[0] is None, x[0] or 0)))
        backends = sorted({r["compile_backend"] for r in rows if r["compile_backend"]})
        md += [f"{r0['device_name']}, {'bf16 autocast' if r0['dtype'] == 'bf16' else r0['dtype']}; one step = "
               f"forward + backward + AdamW; tokens/s counts real tokens, median of {r0['rounds']} interleaved rounds "
               f"x {r0['steps_per_round']} steps after {r0['warmup']} warmup steps (benchmarks/train_throughput.py, "
               f"--lengths {r0['lengths']}: the bundled corpus's examples, padded to the longest or packed). "
               f"Compiled: torch.compile, backend {', '.join(backends) or 'inductor'}. MFU: model FLOPs "
               "(runner.models.flops.train_flops over the real tokens, MLM head on the labelled positions) x tokens/s over "
               f"the peak: {peak_text}.", ""]
        md += _table(["model", "mode", "batch", "padding: padded > packed", "ours padded tok/s",
                      "ours packed tok/s", "transformers tok/s", "packed / padded", "ours / transformers",
                      "ours packed / transformers", "MFU ours padded", "MFU ours packed", "MFU transformers"],
                     [[r["model"], r["mode"], f"{r['batch_size']}x{r['seq_len']}",
                       f"{_pct(r['padding_padded'])} > {_pct(r['padding_packed'])}",
                       _num(r["tokens_per_s_ours"], ",.0f"), _num(r["tokens_per_s_ours_packed"], ",.0f"),
                       _num(r["tokens_per_s_transformers"], ",.0f"), _ratio(r["packed_vs_padded"]),
                       _ratio(r["ratio"]), _ratio(r["ratio_packed"]), _pct(r["mfu_ours"]),
                       _pct(r["mfu_ours_packed"]), _pct(r["mfu_transformers"])] for r in rows], "lll" + "r" * 10)
    missing = [n for n, e in parts.items() if e["kind"] == "throughput" and not e["results"]]
    if missing:
        md += ["", "No figures from: " + ", ".join(f"{n} ({parts[n]['status']})" for n in missing) + "."]
    md.append("")

    rows = [r for e in parts.values() if e["kind"] == "mfu" for r in e["results"] or []]
    md += ["## MFU and peak memory on full-length rows (benchmarks/gpu_mfu.py)", ""]
    if rows:
        r0 = rows[0]
        md += [f"{r0['device_name']}, {r0['dtype']}; no padding; model FLOPs as above; peak "
               + (f"{r0['peak_tflops']:,.1f} TFLOP/s ({r0['peak_note']})" if r0["peak_tflops"] else
                  f"n/a ({r0['peak_note']})") + ". Peak memory: torch.cuda.max_memory_allocated during the "
               "implementation's steps less the other model's parameters, gradients and AdamW state.", ""]
        md += _table(["model", "implementation", "batch", "tokens/s", "model TFLOP/s", "MFU", "peak memory",
                      "ours / transformers"],
                     [[r["model"], r["implementation"] + (f" ({r['attn_implementation']})"
                                                          if r["implementation"] == "transformers" else ""),
                       f"{r['batch_size']}x{r['seq_len']}", _num(r["tokens_per_s"], ",.0f"),
                       gpu_mfu.tflops_str(r["achieved_tflops"]), _pct(r["mfu"]),
                       "n/a" if r["peak_memory_bytes"] is None else f"{r['peak_memory_bytes'] / 2**30:.2f} GiB",
                       _ratio(r["ratio"])] for r in rows], "lll" + "r" * 5)
    else:
        md.append(f"No figures ({parts.get('mfu', {}).get('status', 'not run')}).")
    md.append("")

    e = parts.get("bert_improvements")
    rows = (e or {}).get("results") or []
    md += ["## experiment=bert_improvements", ""]
    if rows:
        from runner.reporting.collect import cells, table_columns

        devices = sorted({f"{r['device']}, {r['precision']}" for r in rows if r.get("device")})
        md += [f"`python -m runner {' '.join(improvement_overrides(suite))}` ({'; '.join(devices) or '?'}); "
               f"{len(rows)} jobs, status {e['status']}" + (f" ({e['error']})" if e["error"] else "")
               + f", {e['seconds']:.0f} s. Columns as runner.reporting.compare's comparison.md.", ""]
        columns = table_columns(rows)
        md += _table([c[0] for c in columns], [cells(r, columns) for r in rows], "l" * len(columns))
    else:
        md.append(f"No runs ({(e or {}).get('status', 'not run')}: {(e or {}).get('error')}).")
    return "\n".join(md).rstrip() + "\n"


def improvement_overrides(suite: dict[str, Any]) -> list[str]:
    """The overrides the bert_improvements part ran with (from its sweep's multirun.yaml), less the sweep dir."""
    import yaml

    path = Path(suite["out_dir"]) / "bert_improvements" / "multirun.yaml"
    try:
        task = yaml.safe_load(path.read_text())["hydra"]["overrides"]["task"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return ["experiment=bert_improvements", "..."]
    return [str(o) for o in task]


def cmd_aggregate(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gpu_suite.py aggregate", description="write OUT/suite.json and OUT/suite.md")
    p.add_argument("out", type=Path)
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="peak TFLOP/s for MFU (default: gpu_mfu.py's dense bf16 table for the card)")
    p.add_argument("--smoke", action="store_true", help="the parts ran as the CPU smoke run")
    p.add_argument("--wall-s", type=float, default=None, help="the driver's seconds so far (the aggregation's added)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    suite = aggregate(args.out.resolve(), args.peak_tflops, args.smoke)
    if args.wall_s is not None:
        suite["wall_s"] = round(args.wall_s + time.perf_counter() - t0, 1)
    (args.out / "suite.json").write_text(json.dumps(suite, indent=2, default=_json_default))  # first: the record
    text = markdown(suite)
    (args.out / "suite.md").write_text(text)
    print(text)
    return 0 if suite["status"] == "ok" else 1


def _json_default(v: Any) -> Any:
    return str(v)  # a Path or a torch.device in a row


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"machine": cmd_machine, "throughput": cmd_throughput, "aggregate": cmd_aggregate}
    if not argv or argv[0] not in commands:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
