# The default config trains on the bundled data with falling loss, as the
# README's quick start promises.
source "$(dirname "$0")/lib/common.sh"

start=$(date +%s)
"$BIN" train --config configs/tiny.json --out "$WORK/tiny" > "$WORK/train.log" 2>&1
rc=$?
end=$(date +%s)
tail -4 "$WORK/train.log"
check "default config trains" test $rc -eq 0
check "val loss falls well below its start" python3 - "$WORK/tiny/metrics.jsonl" <<'PY'
import json, sys
vals = [r["val_loss"] for r in map(json.loads, open(sys.argv[1])) if "val_loss" in r]
print(f"    val loss {vals[0]:.3f} -> {vals[-1]:.3f}")
assert vals[-1] < vals[0] - 2.0, vals
PY
echo "    wall time $((end - start)) s"
finish
