# Data parallelism over MPI ranks on the CPU backend (host memory).
# Bound: the losses of N ranks equal the single-process run with the same
# global batch up to fp32 reduction order; we require 1e-5 relative over the
# 6 steps (observed: about 2.5e-7).
source "$(dirname "$0")/../e2e/lib/common.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
MPIRUN=(mpirun --oversubscribe --bind-to none)
# micro_batch 1 x seq 32: 384 tokens per step divide over 1, 2, 3 and 4 ranks
DP=("${SMALL[@]}" --set batch.micro_batch=1 --set batch.global_tokens=384)

"$BIN" train "${DP[@]}" --out "$WORK/single" > "$WORK/single.log" 2>&1
check "single-process baseline runs" test $? -eq 0

same_losses() {  # same_losses DIR [tolerance]
  python3 - "$WORK/single/metrics.jsonl" "$1/metrics.jsonl" "${2:-1e-5}" <<'PY'
import json, sys
def load(p):
    return [(r["step"], r.get("train_loss", r.get("val_loss"))) for r in map(json.loads, open(p))]
a, b, tol = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
assert [s for s, _ in a] == [s for s, _ in b], (a, b)
worst = max(abs(x - y) / abs(x) for (_, x), (_, y) in zip(a, b))
print(f"    max relative difference {worst:.2e}")
assert worst <= tol
PY
}

for setup in "2 0 replicated" "2 1 owner" "3 1 zero1" "3 0 owner" "4 1 owner" "4 1 zero1"; do
  set -- $setup
  dir="$WORK/np$1_zero$2_$3"
  "${MPIRUN[@]}" -np "$1" "$BIN" train "${DP[@]}" --set dist.zero_stage=$2 --set dist.muon=$3 --out "$dir" \
    > "$dir.log" 2>&1
  check "$1 ranks, zero_stage $2, muon $3: runs" test $? -eq 0
  check "$1 ranks, zero_stage $2, muon $3: losses equal the single process" same_losses "$dir"
done

# A checkpoint written by 2 ranks with sharded state resumes on 3 ranks and on 1.
R="$WORK/resume"
"${MPIRUN[@]}" -np 2 "$BIN" train "${DP[@]}" --set dist.zero_stage=1 --set dist.muon=zero1 --out "$R" \
  --stop-at-step 3 > "$R.log" 2>&1
check "2 ranks stop at step 3" test -f "$R/ckpt_00000003.bin"
cp -r "$R" "$R.single"
"${MPIRUN[@]}" -np 3 "$BIN" train "${DP[@]}" --set dist.zero_stage=1 --set dist.muon=owner --out "$R" --resume \
  > "$R.resumed.log" 2>&1
check "resume on 3 ranks (other sharding) runs" test $? -eq 0
check "resume on 3 ranks continues the single-process losses" same_losses "$R"
"$BIN" train "${DP[@]}" --out "$R.single" --resume > "$R.single.log" 2>&1
check "resume on 1 process runs" test $? -eq 0
check "resume on 1 process continues the single-process losses" same_losses "$R.single"

# The default config runs unchanged on 2 ranks.
"${MPIRUN[@]}" -np 2 "$BIN" train --config configs/tiny.json --out "$WORK/tiny_np2" > "$WORK/tiny_np2.log" 2>&1
check "configs/tiny.json runs under mpirun -np 2" test $? -eq 0
check "and reports 2 ranks" grep -q "MPI, 2 ranks" "$WORK/tiny_np2.log"
finish
