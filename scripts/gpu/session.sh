#!/usr/bin/env bash
# One GPU session in stages, for a machine lent for a short time (each stage
# fits in a 10-minute command). Everything is logged under $OUT (default
# gpu_out/), one file per stage, and each stage goes on after a failure so
# one bad kernel does not hide the others.
#   scripts/gpu/session.sh build        configure + build for this GPU (build-gpu/)
#   scripts/gpu/session.sh test         the GPU tests (muongpt_gpu_tests), one line per test case
#   scripts/gpu/session.sh train        tiny config on cuda vs cpu: losses side by side, determinism, resume
#   scripts/gpu/session.sh bench        step time of the speedrun configs (tensor-core and CUDA-core attention)
#   scripts/gpu/session.sh bench-attention   attention kernels vs PyTorch SDPA / FlexAttention
#   scripts/gpu/session.sh bench-attention-speedrun   the speedrun's own attention shape (records #16-#21:
#                                       64K packed tokens, 6 heads of 128, 128-token block windows, documents)
#   scripts/gpu/session.sh bench-optimizer   optimizer step vs PyTorch Muon (needs the bench stage's step time)
#   scripts/gpu/session.sh all          every stage in order
# Extra arguments after the stage go to the GPU test binary (e.g. a Catch2 tag: "[attention]").
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
BIN=build-gpu/muongpt
stage=${1:-all}
shift || true

log() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$OUT/session.log"; }

do_build() {
  log "build"
  nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
  local cap
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.')
  [ "$cap" = "90" ] && cap=90a
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$cap" \
    > "$OUT/build.log" 2>&1 &&
    cmake --build build-gpu -j "$(nproc)" >> "$OUT/build.log" 2>&1
  local rc=$?
  grep -E "error|warning" "$OUT/build.log" | head -50 > "$OUT/build_problems.txt"
  log "build rc=$rc"
  return $rc
}

do_test() {
  log "gpu tests"
  timeout 540 build-gpu/muongpt_gpu_tests --reporter console --durations yes "$@" > "$OUT/gpu_tests.log" 2>&1
  local rc=$?
  grep -E "^(PASSED|FAILED)|test cases|assertions|Completed in|s: " "$OUT/gpu_tests.log" | tail -60 > "$OUT/gpu_tests_summary.txt"
  log "gpu tests rc=$rc"
}

do_train() {
  log "train: tiny config, cuda vs cpu"
  local steps=30
  for dev in cpu cuda; do
    timeout 240 "$BIN" train --config configs/tiny.json --device "$dev" --out "$OUT/run_$dev" \
      --set train.steps=$steps > "$OUT/train_$dev.log" 2>&1
    log "train $dev rc=$?"
  done
  timeout 120 "$BIN" train --config configs/tiny.json --device cuda --out "$OUT/run_cuda2" \
    --set train.steps=$steps > "$OUT/train_cuda2.log" 2>&1
  timeout 120 "$BIN" train --config configs/tiny.json --device cuda --out "$OUT/run_cuda_resume" \
    --set train.steps=$steps --stop-at-step 10 > "$OUT/train_cuda_resume.log" 2>&1
  timeout 120 "$BIN" train --device cuda --out "$OUT/run_cuda_resume" --resume >> "$OUT/train_cuda_resume.log" 2>&1
  # two ranks sharing the GPU through the host communicator (MPI), and the host optimizer path
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 240 mpirun -np 2 --oversubscribe \
    "$BIN" train --config configs/tiny.json --device cuda --out "$OUT/run_cuda_2ranks" \
    --set train.steps=$steps --set dist.gpu_gradients=host > "$OUT/train_cuda_2ranks.log" 2>&1
  log "train cuda 2 ranks (host gradients) rc=$?"
  timeout 240 "$BIN" train --config configs/tiny.json --device cuda --out "$OUT/run_cuda_hostopt" \
    --set train.steps=$steps --set optim.diagnostics_every=10 > "$OUT/train_cuda_hostopt.log" 2>&1
  log "train cuda host optimizer rc=$?"
  python3 - "$OUT" <<'PY' > "$OUT/train_compare.txt" 2>&1
import json, sys, os
out = sys.argv[1]
def losses(run):
    path = os.path.join(out, run, "metrics.jsonl")
    if not os.path.exists(path): return {}
    rows = [json.loads(l) for l in open(path)]
    return {r["step"]: r["train_loss"] for r in rows if "train_loss" in r}
cpu, cuda, cuda2, res, two, hostopt = (losses(r) for r in (
    "run_cpu", "run_cuda", "run_cuda2", "run_cuda_resume", "run_cuda_2ranks", "run_cuda_hostopt"))
print("step  cpu        cuda       |diff|     2 ranks    host optimizer")
for s in sorted(cpu):
    if s in cuda:
        print(f"{s:4d}  {cpu[s]:.6f}  {cuda[s]:.6f}  {abs(cpu[s]-cuda[s]):.2e}  "
              f"{two.get(s, float('nan')):.6f}  {hostopt.get(s, float('nan')):.6f}")
print("deterministic (two cuda runs, same bits):", bool(cuda) and cuda == cuda2)
print("resume equals uninterrupted:", bool(res) and all(res.get(s) == cuda.get(s) for s in res))
PY
  log "train compare written"
}

do_bench() {
  log "bench: speedrun step time"
  for cfg in configs/speedrun/05_modernarch.json configs/speedrun/11_unet.json; do
    name=$(basename "$cfg" .json)
    # the bundled shards (1.9M tokens) hold three 524,288-token steps; the speed does not depend on the text
    for kernel in tensor_cores cuda_cores; do
      timeout 120 "$BIN" bench --config "$cfg" --device cuda --steps 5 --warmup 2 \
        --set 'data.train_pattern=data/tiny/train_*.bin' --set model.attention_kernel=$kernel \
        > "$OUT/bench_${name}_$kernel.log" 2>&1
      log "bench $name $kernel rc=$?"
    done
  done
  # kept in build-gpu/ (it survives between device calls; $OUT does not) for bench-optimizer
  tail -1 "$OUT/bench_05_modernarch_tensor_cores.log" 2>/dev/null |
    python3 -c "import json,sys; print(json.load(sys.stdin)['step_ms'])" > build-gpu/step_ms_05.txt 2>/dev/null ||
    rm -f build-gpu/step_ms_05.txt
}

do_bench_attention() {
  log "bench: attention (tensor cores vs torch)"
  ATTN_OUT="$OUT/attention" MUONGPT_ARGS="--attention-kernel tensor_cores" timeout 420 \
    scripts/bench/attention_compare.sh "$BIN" > "$OUT/bench_attention.log" 2>&1
  log "bench attention rc=$?"
  log "bench: attention (CUDA cores, short sequences only)"
  timeout 120 "$BIN" bench --attention --device cuda --attention-kernel cuda_cores --seq-lens 1024,4096 \
    --windows 256 --steps 2 --warmup 1 > "$OUT/bench_attention_cuda_cores.log" 2>&1
  log "bench attention cuda cores rc=$?"
}

do_bench_attention_speedrun() {
  log "bench: attention, the speedrun's shape (block windows, documents) vs FlexAttention"
  ATTN_OUT="$OUT/attention_speedrun" MUONGPT_ARGS="--attention-kernel tensor_cores" timeout 420 \
    scripts/bench/attention_compare.sh "$BIN" --seq-lens 65536 --tokens 65536 --heads 6 --head-dim 128 \
    --windows 128,896,1792 --window-block 128 --doc-window 1792 --doc-len 1024 \
    > "$OUT/bench_attention_speedrun.log" 2>&1
  log "bench attention speedrun rc=$?"
}

do_bench_optimizer() {
  log "bench: optimizer"
  # the step time for the optimizer's share comes from the bench stage (05_modernarch, tensor cores)
  local step_ms
  step_ms=$(cat build-gpu/step_ms_05.txt 2>/dev/null || echo none)
  timeout 400 scripts/bench/optimizer_compare.sh "$BIN" configs/speedrun/05_modernarch.json cuda "$step_ms" \
    > "$OUT/bench_optimizer.log" 2>&1
  log "bench optimizer rc=$?"
}

case "$stage" in
  build) do_build ;;
  test) do_test "$@" ;;
  train) do_train ;;
  bench) do_bench ;;
  bench-attention) do_bench_attention ;;
  bench-attention-speedrun) do_bench_attention_speedrun ;;
  bench-optimizer) do_bench_optimizer ;;
  all) do_build && { do_test "$@"; do_train; do_bench; do_bench_attention; do_bench_attention_speedrun; do_bench_optimizer; } ;;
  *) echo "unknown stage '$stage' (build, test, train, bench, bench-attention, bench-attention-speedrun, bench-optimizer, all)" >&2; exit 2 ;;
esac
