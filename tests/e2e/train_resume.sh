# Training writes the run directory; a resumed run (after --stop-at-step or
# after SIGKILL) continues bit for bit like the uninterrupted one; runs are
# never overwritten; eval and sample read the checkpoints.
source "$(dirname "$0")/lib/common.sh"

A=$WORK/full
"$BIN" train "${SMALL[@]}" --out "$A" > "$WORK/full.log" 2>&1
check "uninterrupted run succeeds" test $? -eq 0
for f in config.json metrics.jsonl summary.json ckpt_00000006.bin ckpt_00000003.bin; do
  check "run directory holds $f" test -f "$A/$f"
done
check "summary has final_val_loss" python3 -c "import json; v=json.load(open('$A/summary.json'))['final_val_loss']; assert v > 0"
check "metrics has train_loss for steps 1..6 and val_loss at 0, 3, 6" python3 - "$A/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["step"] for r in rows if "train_loss" in r] == [1, 2, 3, 4, 5, 6], rows
assert [r["step"] for r in rows if "val_loss" in r] == [0, 3, 6], rows
PY
check "resolved config.json loads again" "$BIN" info --config "$A/config.json" --set train.steps=1 >/dev/null
check "progress lines show loss, tok/s and ETA" grep -qE "step 6/6 \| loss [0-9.]+ \| lr .* tok/s \| .* ms \| ETA" "$WORK/full.log"

expect_error "a second run into the same directory is refused" "already holds a run" "$BIN" train "${SMALL[@]}" --out "$A"

# Interrupted on purpose after step 3, then resumed.
B=$WORK/stopped
"$BIN" train "${SMALL[@]}" --out "$B" --stop-at-step 3 > "$WORK/stopped.log" 2>&1
check "--stop-at-step exits cleanly" test $? -eq 0
check "--stop-at-step leaves no summary" test ! -f "$B/summary.json"
"$BIN" train "${SMALL[@]}" --out "$B" --resume > "$WORK/resumed.log" 2>&1
check "resume succeeds" test $? -eq 0
same_metrics() {
  python3 - "$1/metrics.jsonl" "$2/metrics.jsonl" <<'PY'
import json, sys
def load(p):
    return [(r["step"], r.get("train_loss"), r.get("val_loss")) for r in map(json.loads, open(p))]
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a == b, f"\n{a}\n!=\n{b}"
PY
}
check "resumed run's losses equal the uninterrupted run's bit for bit" same_metrics "$A" "$B"
check "resumed final checkpoint is byte-identical to the uninterrupted one" cmp -s "$A/ckpt_00000006.bin" "$B/ckpt_00000006.bin"

# Killed hard (SIGKILL) once a checkpoint exists, then resumed.
C=$WORK/killed
"$BIN" train "${SMALL[@]}" --out "$C" > "$WORK/killed.log" 2>&1 &
pid=$!
for _ in $(seq 600); do [ -f "$C/ckpt_00000003.bin" ] && break; sleep 0.05; done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
check "no temporary checkpoint survives as a checkpoint" python3 -c "
import glob,sys; sys.exit(any(not f.endswith('.bin') for f in glob.glob('$C/ckpt_*') if not f.endswith('.tmp')))"
"$BIN" train "${SMALL[@]}" --out "$C" --resume > "$WORK/killed_resumed.log" 2>&1
check "resume after SIGKILL succeeds" test $? -eq 0
check "resume after SIGKILL gives the same losses" same_metrics "$A" "$C"

# A damaged newest checkpoint is skipped on resume in favour of an older complete one.
D=$WORK/damaged
"$BIN" train "${SMALL[@]}" --out "$D" --stop-at-step 3 > /dev/null 2>&1
cp "$D/ckpt_00000003.bin" "$WORK/good.bin"
head -c 5000 "$WORK/good.bin" > "$D/ckpt_00000005.bin"
"$BIN" train "${SMALL[@]}" --out "$D" --resume > "$WORK/damaged.log" 2>&1
check "resume skips a truncated checkpoint" grep -q "skipping checkpoint .*ckpt_00000005.bin: truncated" "$WORK/damaged.log"
check "and continues from the complete one" same_metrics "$A" "$D"

# eval and sample read the checkpoints
"$BIN" eval --checkpoint "$A/ckpt_00000006.bin" > "$WORK/eval.log" 2>&1
check "eval succeeds" test $? -eq 0
check "eval reproduces the run's final val loss" python3 - "$WORK/eval.log" "$A/summary.json" <<'PY'
import json, sys
last = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
final = json.load(open(sys.argv[2]))["final_val_loss"]
assert abs(last["val_loss"] - final) < 1e-6 * final, (last, final)
PY
"$BIN" eval --checkpoint "$A/ckpt_00000006.bin" --tokens 1000 > "$WORK/eval_tail.log" 2>&1
check "eval of a token count that seq_len does not divide reads exactly those tokens" python3 - "$WORK/eval_tail.log" <<'PY'
import json, math, sys
last = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
assert last["tokens"] == 1000 and math.isfinite(last["val_loss"]), last
PY
# 128-token validation sequences under 8-token windows: in chunks of the run's 32 tokens (each
# re-reading the 14 tokens two layers of windows look back) as with 128-token buffers
WIN=(--set "model.attn_window=[8]" --set data.val_seq_len=128 --tokens 1024)
"$BIN" eval --checkpoint "$A/ckpt_00000006.bin" "${WIN[@]}" > "$WORK/eval_chunked.log" 2>&1
check "eval runs 128-token validation sequences in 32-token chunks" test $? -eq 0
"$BIN" eval --checkpoint "$A/ckpt_00000006.bin" "${WIN[@]}" --set batch.seq_len=128 --set batch.global_tokens=512 \
  > "$WORK/eval_whole.log" 2>&1
check "eval with 128-token buffers succeeds" test $? -eq 0
check "chunked and whole validation sequences give the same loss" python3 - "$WORK/eval_chunked.log" "$WORK/eval_whole.log" <<'PY'
import json, sys
a, b = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[1:])
assert a["tokens"] == b["tokens"] == 1024 and abs(a["val_loss"] - b["val_loss"]) < 1e-6 * b["val_loss"], (a, b)
PY
expect_error "long validation sequences need a window on every layer" "full causal" \
  "$BIN" eval --checkpoint "$A/ckpt_00000006.bin" --set data.val_seq_len=128
"$BIN" sample --checkpoint "$A/ckpt_00000006.bin" --tokens 8 --seed 1 > "$WORK/sample1.log" 2>&1
check "sample succeeds" test $? -eq 0
"$BIN" sample --checkpoint "$A/ckpt_00000006.bin" --tokens 8 --seed 1 > "$WORK/sample2.log" 2>&1
check "sampling with a seed is reproducible" cmp -s "$WORK/sample1.log" "$WORK/sample2.log"
"$BIN" sample --checkpoint "$A/ckpt_00000006.bin" --prompt "The Congress of the United" --tokens 8 --ids \
  > "$WORK/sample3.log" 2>&1
check "sample prints the text prompt it was given" grep -q "^The Congress of the United" "$WORK/sample3.log"
check "and with --ids the prompt's GPT-2 token ids" grep -q "^prompt ids: 50256 464 3162 286 262 1578$" "$WORK/sample3.log"
expect_error "a bad token id is refused" "is not a token id" \
  "$BIN" sample --checkpoint "$A/ckpt_00000006.bin" --prompt-ids 50256,99999
finish
