# bench --comm: every collective the trainer uses gives the right result on
# 2 and 3 ranks (checked element by element inside the benchmark) and is
# reported with its bandwidth, for the config's buckets and a size sweep.
source "$(dirname "$0")/../e2e/lib/common.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
MPIRUN=(mpirun --oversubscribe --bind-to none)

for np in 2 3; do
  "${MPIRUN[@]}" -np $np "$BIN" bench --comm --config configs/tiny.json --steps 2 --warmup 1 --max-mb 1 \
    > "$WORK/np$np.log" 2>&1
  check "bench --comm on $np ranks succeeds" test $? -eq 0
  check "its JSON reports every op for every bucket, all verified, on $np ranks" python3 - "$WORK/np$np.log" $np <<'PY'
import json, sys
result = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
assert result["world_size"] == int(sys.argv[2]), result["world_size"]
rows = result["results"]
buckets = {r["bucket"] for r in rows}
assert {"one block's gradients", "token embedding", "lm_head", "all gradients", "sweep 1 MiB"} <= buckets, buckets
for b in buckets:
    assert sorted(r["op"] for r in rows if r["bucket"] == b) == ["allgather", "allreduce", "reduce_scatter"], b
for r in rows:
    assert r["verified"] and r["ms"] > 0 and r["busbw_gbs"] > 0, r
PY
done
finish
