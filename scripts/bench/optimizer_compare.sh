#!/usr/bin/env bash
# muongpt's optimizer step against the PyTorch Muons on the same parameter
# shapes, in one go, printed side by side (last line: one JSON object).
#
#   scripts/bench/optimizer_compare.sh [BIN] [CONFIG] [DEVICE] [STEP_MS]
#     BIN      muongpt binary                  (default build/muongpt)
#     CONFIG   config                          (default configs/speedrun/04_muon.json, the 124M speedrun)
#     DEVICE   cuda | cpu                      (default cuda)
#     STEP_MS  full training step time in ms for the fraction; "measure" (default) runs
#              `BIN bench --config CONFIG` first when the config's data files exist, "none" skips it
#   env: STEPS (default 10), WARMUP (default 3), TORCH_ARGS (extra optimizer_torch.py options)
#
# The H100 run of the issue: scripts/bench/optimizer_compare.sh build/muongpt configs/speedrun/04_muon.json cuda
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-build/muongpt}
CONFIG=${2:-configs/speedrun/04_muon.json}
DEVICE=${3:-cuda}
STEP_MS=${4:-measure}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-3}
OUT=$(mktemp -d /tmp/optimizer_compare.XXXXXX)
echo "optimizer_compare: $BIN, $CONFIG, $DEVICE, $STEPS steps after $WARMUP warmup; logs in $OUT"

if [ "$STEP_MS" = measure ]; then
  STEP_MS=none
  echo "== muongpt bench (full training step, for the fraction)"
  if "$BIN" bench --config "$CONFIG" --device "$DEVICE" --steps 5 --warmup 2 > "$OUT/step.txt" 2>&1; then
    STEP_MS=$(tail -1 "$OUT/step.txt" | python3 -c "import json,sys; print(json.load(sys.stdin)['step_ms'])")
    echo "training step: $STEP_MS ms"
  else
    echo "note: the training step could not be timed (data files?), no fraction of step:"
    tail -2 "$OUT/step.txt" | sed 's/^/    | /'
  fi
fi
STEP_ARGS=()
[ "$STEP_MS" != none ] && STEP_ARGS=(--step-ms "$STEP_MS")

echo "== muongpt bench --optimizer"
"$BIN" bench --optimizer --config "$CONFIG" --device "$DEVICE" --steps "$STEPS" --warmup "$WARMUP" \
  "${STEP_ARGS[@]}" 2>&1 | tee "$OUT/ours.txt" || { echo "muongpt bench --optimizer failed"; exit 1; }
"$BIN" bench --optimizer --config "$CONFIG" --dump-shapes "$OUT/shapes.json" > /dev/null || exit 1

echo "== PyTorch (scripts/bench/optimizer_torch.py)"
# shellcheck disable=SC2086
python3 scripts/bench/optimizer_torch.py --shapes-json "$OUT/shapes.json" --device "$DEVICE" --steps "$STEPS" \
  --warmup "$WARMUP" ${TORCH_ARGS:-} 2>&1 | grep -v -e "Failed to initialize NumPy" -e "_conversion_method_template" \
  | tee "$OUT/torch.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "optimizer_torch.py failed"; exit 1; }

echo "== side by side"
python3 - "$OUT/ours.txt" "$OUT/torch.txt" <<'PY'
import json, sys
ours = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
torch = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
f = lambda x, d=3: "-" if x is None else f"{x:.{d}f}"
print(f"muongpt: {ours['device']} | torch {torch['torch']}: {torch['device']}")
print(f"{'':40s} {'Muon ms':>10s} {'AdamW ms':>10s} {'ours faster':>12s}")
print(f"{'muongpt':40s} {f(ours['muon_ms']):>10s} {f(ours['adamw_ms']):>10s} {'':>12s}")
speedups = {}
for key, name in (("torch_muon_ms", "torch.optim.Muon"),
                  ("speedrun_muon_ms", f"speedrun-style Muon ({torch.get('speedrun_ns_dtype', 'bfloat16')})"),
                  ("speedrun_batched_muon_ms", "speedrun-style Muon, batched")):
    t = torch.get(key)
    s = t / ours["muon_ms"] if t and ours["muon_ms"] > 0 else None
    speedups[key.replace("_ms", "_speedup")] = s
    print(f"{name:40s} {f(t):>10s} {'':>10s} {f(s, 2) + 'x' if s else '-':>12s}")
a = torch.get("adamw_ms")
print(f"{'torch.optim.AdamW':40s} {'':>10s} {f(a):>10s} "
      f"{f(a / ours['adamw_ms'], 2) + 'x' if a and ours['adamw_ms'] > 0 else '-':>12s}")
peak = ours.get("peak_tflops")
print(f"Newton-Schulz: {f(ours['ns_ms'])} ms, {ours['ns_tflops']:.3f} TFLOP/s"
      + (f" = {100 * ours['ns_tflops'] / peak:.1f}% of the measured bf16 peak {peak:.0f} TFLOP/s" if peak else ""))
frac = ours.get("muon_fraction_of_step")
if frac is not None:
    print(f"of the {ours['step_ms']:.1f} ms training step: Muon {100 * frac:.2f}% (goal <= 3%), "
          f"whole optimizer {100 * ours['fraction_of_step']:.2f}%")
known = [s for s in (speedups["torch_muon_speedup"], speedups["speedrun_muon_speedup"]) if s]
if known:
    print(f"goal >= 2x faster than the PyTorch Muons: {'met' if min(known) >= 2 else 'not met'} (min {min(known):.2f}x)")
print(json.dumps({"ours": ours, "torch": torch, **speedups}))
PY
