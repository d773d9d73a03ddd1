#!/usr/bin/env bash
# The GPU suite (issue 17): on one CUDA card (sized for an H200 with 16 CPU cores) in at most 8 minutes of wall time,
#   - training throughput of bert_base and modernbert_base, ours (padded and packed) against transformers, bf16,
#     eager and compiled (benchmarks/train_throughput.py), with MFU per row (benchmarks/gpu_suite.py);
#   - MFU, model TFLOP/s and peak memory on full-length rows (benchmarks/gpu_mfu.py);
#   - a short experiment=bert_improvements (seven families at equal FLOPs) through python -m runner, bf16, no W&B.
# Every part runs under its own `timeout`, one after the other; a part that fails or times out is recorded and the
# suite goes on. benchmarks/gpu_suite.py then writes OUT/suite.json and OUT/suite.md (tables for
# docs/performance.md). The exit status is 0 when every part is ok, 1 otherwise (the files are written either way).
#
#   bash benchmarks/gpu_suite.sh [OUT_DIR]           # on the GPU machine (OUT_DIR, else $OUT, else
#                                                    # outputs/gpu_suite/<timestamp>)
#   bash benchmarks/gpu_suite.sh --smoke [OUT_DIR]   # the same parts at toy sizes on the CPU, fp32 (~1 minute)
#
# Environment: PYTHON (default .venv/bin/python if it exists, else python3; it needs torch with CUDA, transformers
# and this package's dependencies), SUITE_PEAK_TFLOPS (the card's dense bf16 peak when it is not in gpu_mfu.py's
# table), SUITE_IMPROVEMENTS_ARGS (extra overrides for the bert_improvements part, e.g. "trainer.budget.flops=4e12"),
# SUITE_KEEP_CHECKPOINTS=1 (keep the bert_improvements runs' checkpoints/, deleted by default to keep OUT small).
set -u -o pipefail

SMOKE=0
if [[ "${1:-}" == "--smoke" ]]; then SMOKE=1; shift; fi
if [[ "${1:-}" == -* || $# -gt 1 ]]; then
  echo "usage: bash benchmarks/gpu_suite.sh [--smoke] [OUT_DIR]" >&2
  exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
OUT_DIR="${1:-${OUT:-outputs/gpu_suite/$(date +%Y-%m-%d_%H-%M-%S)}}"
mkdir -p "$OUT_DIR/logs" || exit 2
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 COLUMNS=160
# nothing here needs the network: no W&B, no Hub
export WANDB_MODE=disabled WANDB_SILENT=true HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1

# ---------------------------------------------------------------------------------------------------- the plan
# Per-part wall-time budgets in seconds (`timeout` each). GPU mode:
#   machine                          15  preflight: torch, CUDA, nvidia-smi, git commit (a few seconds)
#   throughput_eager_bert            35  bert_base, 128 x 128 (the bundled corpus's lengths, padded / packed), 3 warmup
#   throughput_eager_modernbert      35    + 3 x 10 timed steps of ours padded, ours packed and transformers (a few
#                                          seconds of steps; the rest is start-up: imports, CUDA context, the
#                                          corpus's lengths, building and copying the weights)
#   mfu                              35  gpu_mfu.py: both models, 128 x 128 full rows, 5 warmup + 3 x 20 steps each
#   throughput_compiled_bert         90  as eager, under torch.compile (inductor): three graphs to compile (ours
#   throughput_compiled_modernbert   90    padded, ours packed, transformers), most of the time; one process per
#                                          model and mode so that one slow compile or crash loses only its own row
#   bert_improvements               150  seven CPU-preset families at the experiment's 8e12 FLOPs each, bf16, no
#                                          fine-tuning (eval.downstream=false), no HF export; it gets whatever is
#                                          left before DEADLINE (150 s or more); if it times out, the runs that
#                                          finished are kept (sweep order: bert roberta albert electra txl modernbert)
#   aggregation (after the parts)   <20  suite.json and suite.md
# 450 s of budgets. No part starts past DEADLINE (458 s after the start) and a part's timeout is cut to what is left
# before it; the aggregation gets what is left of 476 s (+3 s kill grace): the suite ends within 8 minutes (480 s).
B_MACHINE=15 B_EAGER=35 B_MFU=35 B_COMPILED=90 B_IMPROVEMENTS=150
DEADLINE=458 TOTAL=476
KILL_GRACE=3  # seconds between timeout's SIGTERM (the runner checkpoints and stops) and SIGKILL
# The GPU parts' arguments (tests/test_gpu_suite.py composes IMPROVEMENTS_GPU against conf/ and sums the budgets)
TT_GPU=(--device cuda --dtype bf16 --batch-size 128 --seq-len 128 --lengths wiki --steps 10 --warmup 3 --rounds 3)
MFU_GPU=(--device cuda --dtype bf16 --models bert_base,modernbert_base --batch-size 128 --seq-len 128 --steps 20
         --warmup 5 --rounds 3)
IMPROVEMENTS_GPU=(experiment=bert_improvements logger.mode=disabled trainer.device=cuda trainer.precision=bf16
                  eval.downstream=false trainer.export_hf=false)
MODELS_GPU=(bert_base modernbert_base)
# --smoke: the same parts on the CPU in fp32 at toy sizes; the compiled parts trace with TorchDynamo and run the
# graphs with backend=eager (inductor's C++ compile of the toy models takes minutes on 2 cores)
TT_SMOKE=(--device cpu --dtype fp32 --batch-size 4 --seq-len 32 --lengths wiki --steps 1 --warmup 1 --rounds 1
          --threads 1)
MFU_SMOKE=(--device cpu --dtype fp32 --models bert_tiny,modernbert --batch-size 4 --seq-len 32 --steps 1 --warmup 1
           --rounds 1 --threads 1 --peak-tflops 1)
IMPROVEMENTS_SMOKE=(experiment=bert_improvements logger.mode=disabled trainer.device=cpu trainer.precision=fp32
                    trainer.budget.flops=null trainer.max_steps=2 data.max_docs=200 eval.downstream=false
                    trainer.eval_batches=1 probes.pairs=10 trainer.export_hf=false)
MODELS_SMOKE=(bert_tiny modernbert)

if (( SMOKE )); then
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  TT=("${TT_SMOKE[@]}") MFU=("${MFU_SMOKE[@]}") IMPROVEMENTS=("${IMPROVEMENTS_SMOKE[@]}") MODELS=("${MODELS_SMOKE[@]}")
  BACKEND=(--compile-backend eager) MACHINE=() PEAK=(--peak-tflops "${SUITE_PEAK_TFLOPS:-1}") MODE=(--smoke)
  # generous: a loaded 2-core machine; the smoke run takes about a minute
  B_MACHINE=60 B_EAGER=90 B_MFU=90 B_COMPILED=120 B_IMPROVEMENTS=180 DEADLINE=540 TOTAL=600
else
  PEAK=(${SUITE_PEAK_TFLOPS:+--peak-tflops "$SUITE_PEAK_TFLOPS"})  # none: gpu_mfu.py's table by the card's name
  TT=("${TT_GPU[@]}") MFU=("${MFU_GPU[@]}" "${PEAK[@]}") IMPROVEMENTS=("${IMPROVEMENTS_GPU[@]}")
  MODELS=("${MODELS_GPU[@]}") BACKEND=() MACHINE=(--require-cuda) MODE=()
fi
# shellcheck disable=SC2206  # word splitting wanted: extra overrides separated by spaces
IMPROVEMENTS+=(${SUITE_IMPROVEMENTS_ARGS:-} "hydra.sweep.dir=$OUT_DIR/bert_improvements")

# ---------------------------------------------------------------------------------------------------- the driver
START=$(date +%s.%N)
: > "$OUT_DIR/parts.jsonl"
elapsed() { awk -v a="$START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
left_of() { awk -v d="$1" -v e="$(elapsed)" 'BEGIN { printf "%d", d - e }'; }
say() { echo "[gpu_suite $(elapsed)s] $*"; }
ABORT=""  # set when the preflight finds no CUDA device: the later parts are skipped
RC=0      # the last part's exit status

# part NAME KIND BUDGET OUTPUT -- COMMAND...: COMMAND under timeout (its budget, cut to what is left before
# DEADLINE), output in logs/NAME.log, one line in parts.jsonl (rc null: not run)
part() {
  local name=$1 kind=$2 budget=$3 output=$4 log="logs/$1.log" left t0 secs why=""
  shift 5
  left=$(left_of "$DEADLINE")
  (( left < budget )) && budget=$left
  if [[ -n "$ABORT" ]]; then why=$ABORT; elif (( budget < 5 )); then why="no time left before the deadline"; fi
  if [[ -n "$why" ]]; then
    say "$name: skipped ($why)"
    printf '{"part": "%s", "kind": "%s", "rc": null, "seconds": 0, "budget_s": %d, "output": "%s", "skipped": "%s"}\n' \
      "$name" "$kind" "$budget" "$output" "$why" >> "$OUT_DIR/parts.jsonl"
    RC=""
    return
  fi
  say "$name (budget ${budget}s): $*"
  t0=$(date +%s.%N)
  timeout -k "$KILL_GRACE" "$budget" "$@" > "$OUT_DIR/$log" 2>&1
  RC=$?
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  say "$name: exit $RC in ${secs}s$( ((RC == 124 || RC == 137)) && echo ' (timed out)')"
  (( RC != 0 )) && tail -n 3 "$OUT_DIR/$log" | sed 's/^/    /'
  printf '{"part": "%s", "kind": "%s", "rc": %d, "seconds": %s, "budget_s": %d, "output": "%s", "log": "%s"}\n' \
    "$name" "$kind" "$RC" "$secs" "$budget" "$output" "$log" >> "$OUT_DIR/parts.jsonl"
}

say "$( ((SMOKE)) && echo 'CPU smoke run' || echo 'GPU run') -> $OUT_DIR ($PYTHON)"
part machine machine "$B_MACHINE" machine.json -- \
  "$PYTHON" benchmarks/gpu_suite.py machine "$OUT_DIR/machine.json" "${MACHINE[@]}"
[[ "$RC" == 0 ]] || ABORT="the preflight (machine) failed: see logs/machine.log"
# throughput MODE INDEX BUDGET: train_throughput.py (through gpu_suite.py) on MODELS[INDEX], eager or compiled
throughput() {
  local mode=$1 label=${MODELS_GPU[$2]%_base} pre=() extra=()  # label: bert, modernbert
  if [[ $mode == compiled ]]; then pre=("${BACKEND[@]}") extra=(--compile); fi
  part "throughput_${mode}_$label" throughput "$3" "throughput_${mode}_$label.json" -- \
    "$PYTHON" benchmarks/gpu_suite.py throughput "${pre[@]}" -- "${TT[@]}" "${extra[@]}" --models "${MODELS[$2]}" \
    --json "$OUT_DIR/throughput_${mode}_$label.json"
}
throughput eager 0 "$B_EAGER"
throughput eager 1 "$B_EAGER"
part mfu mfu "$B_MFU" mfu.json -- "$PYTHON" benchmarks/gpu_mfu.py "${MFU[@]}" --json "$OUT_DIR/mfu.json"
throughput compiled 0 "$B_COMPILED"
throughput compiled 1 "$B_COMPILED"
rest=$(left_of "$DEADLINE")  # the last part: its budget and whatever the others left unused
part bert_improvements improvements "$(( rest > B_IMPROVEMENTS ? rest : B_IMPROVEMENTS ))" bert_improvements -- \
  "$PYTHON" -m runner "${IMPROVEMENTS[@]}"
if [[ "${SUITE_KEEP_CHECKPOINTS:-0}" != 1 ]]; then
  rm -rf "$OUT_DIR"/bert_improvements/*/checkpoints  # tens of MB of toy weights; summary.json holds the results
fi

left=$(left_of "$TOTAL")
(( left < 10 )) && left=10
say "aggregating (limit ${left}s)"
timeout -k "$KILL_GRACE" "$left" "$PYTHON" benchmarks/gpu_suite.py aggregate "$OUT_DIR" --wall-s "$(elapsed)" \
  "${PEAK[@]}" "${MODE[@]}"
rc=$?
say "done: $OUT_DIR/suite.json, $OUT_DIR/suite.md (exit $rc)"
exit "$rc"
