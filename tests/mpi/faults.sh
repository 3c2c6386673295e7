# A rank that dies or hangs does not leave the others waiting forever.
source "$(dirname "$0")/../e2e/lib/common.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
MPIRUN=(mpirun --oversubscribe --bind-to none)
LONG=("${SMALL[@]}" --set batch.micro_batch=1 --set batch.global_tokens=384 --set train.steps=100000
      --set train.eval_every=0 --set dist.timeout_s=5)

ranks_of() { pgrep -f -- "--out $1" | while read -r p; do [ "$(cat /proc/$p/comm 2>/dev/null)" = muongpt ] && echo "$p"; done; }
wait_for_step() {  # wait_for_step DIR STEP: until metrics.jsonl has that step
  for _ in $(seq 600); do
    grep -q "\"step\":$2," "$1/metrics.jsonl" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
finished_within() {  # finished_within PID SECONDS
  for _ in $(seq $(($2 * 10))); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  return 1
}

# A rank killed outright: the launcher ends the job.
K="$WORK/killed"
"${MPIRUN[@]}" -np 2 "$BIN" train "${LONG[@]}" --out "$K" > "$K.log" 2>&1 &
job=$!
check "job reaches step 2" wait_for_step "$K" 2
victim=$(ranks_of "$K" | tail -1)
kill -9 "$victim"
check "after one rank is killed the job ends within 30 s" finished_within "$job" 30
wait "$job"
check "with a failure exit status" test $? -ne 0

# A rank that hangs (stopped): the others' watchdog names the collective.
H="$WORK/hung"
"${MPIRUN[@]}" -np 2 "$BIN" train "${LONG[@]}" --out "$H" > "$H.log" 2>&1 &
job=$!
check "job reaches step 2" wait_for_step "$H" 2
victim=$(ranks_of "$H" | tail -1)
kill -STOP "$victim"
check "after one rank hangs the job ends within 30 s (timeout 5 s)" finished_within "$job" 30
kill -9 "$victim" 2>/dev/null
wait "$job"
check "with a failure exit status" test $? -ne 0
check "the message names the collective and the timeout" grep -q "did not complete within 5 s (dist.timeout_s)" "$H.log"
for p in $(ranks_of "$H") $(ranks_of "$K"); do kill -9 "$p" 2>/dev/null; done
finish
