#!/usr/bin/env bash
# muongpt's attention against PyTorch's on the same cases, side by side.
#
#   scripts/bench/attention_compare.sh [MUONGPT_BINARY] [ARGS...]
#
# Runs scripts/bench/attention_torch.py (sdpa_flash, sdpa_cudnn on the causal
# cases; compiled flex_attention on the window and document cases), then
# `muongpt bench --attention`, with the same ARGS (e.g. --seq-lens 1024,4096
# --windows 256 --heads 16 --head-dim 128 --tokens 131072 --doc-len 2048), and
# prints per case: forward+backward TFLOP/s of muongpt and of each torch
# backend, muongpt / best torch, and whether the goal holds (causal: >= the
# fastest SDPA backend; masked: > flex_attention). The same for the forward.
#
# Environment: DEVICE (cuda), STEPS (3), WARMUP (1), MUONGPT_ARGS (extra
# arguments for muongpt only, e.g. "--attention-kernel tensor_cores"), TORCH_TIMEOUT (180 s),
# MUONGPT_TIMEOUT (330 s), ATTN_OUT (a new temporary directory: both logs and the
# merged table land there). The defaults fit scripts/gpu/session.sh's budget:
# muongpt's fp32 CUDA-core kernel needs minutes for the 32K and 64K cases.
# A run cut off by its timeout still contributes the cases it finished.
set -u
cd "$(dirname "$0")/../.."
BIN=${1:-build/muongpt}
shift || true
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-3}
WARMUP=${WARMUP:-1}
ATTN_OUT=${ATTN_OUT:-$(mktemp -d /tmp/attention_compare.XXXXXX)}
mkdir -p "$ATTN_OUT"
[ -x "$BIN" ] || { echo "attention_compare.sh: $BIN is not an executable muongpt (pass its path first)" >&2; exit 2; }

echo "== attention_compare: device $DEVICE, steps $STEPS, warmup $WARMUP, args: $*, muongpt args: ${MUONGPT_ARGS:-}; logs in $ATTN_OUT"
if python3 -c "import torch" 2>/dev/null; then
  echo "== torch baseline (timeout ${TORCH_TIMEOUT:-180} s)"
  timeout "${TORCH_TIMEOUT:-180}" python3 scripts/bench/attention_torch.py --device "$DEVICE" --steps "$STEPS" \
    --warmup "$WARMUP" "$@" 2>&1 | tee "$ATTN_OUT/torch.log"
  echo "torch rc=${PIPESTATUS[0]}"
else
  echo "note: python3 cannot import torch here; only muongpt's numbers follow" | tee "$ATTN_OUT/torch.log"
fi
echo "== muongpt bench --attention (timeout ${MUONGPT_TIMEOUT:-330} s)"
# shellcheck disable=SC2086  # MUONGPT_ARGS is a list of words
timeout "${MUONGPT_TIMEOUT:-330}" "$BIN" bench --attention --device "$DEVICE" --steps "$STEPS" --warmup "$WARMUP" \
  ${MUONGPT_ARGS:-} "$@" 2>&1 | tee "$ATTN_OUT/muongpt.log"
echo "muongpt rc=${PIPESTATUS[0]}"

python3 - "$ATTN_OUT/muongpt.log" "$ATTN_OUT/torch.log" <<'PY' | tee "$ATTN_OUT/compare.txt"
import json, sys

def json_rows(path):
    rows = []
    for line in open(path, errors="replace"):
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
    return rows

ours = json_rows(sys.argv[1])
if not ours:  # cut off before its JSON block: read the table rows it printed as it went
    for line in open(sys.argv[1], errors="replace"):
        f = line.split()
        if len(f) == 9 and all(x == "-" or x.replace(".", "", 1).isdigit() for x in f) and f[0] != "-":
            ours.append({"backend": "muongpt", "seq_len": int(f[0]), "window": int(f[1]), "doc_mask": f[2] != "-",
                         "batch": int(f[3]), "pairs": int(f[4]), "ms_fwd": float(f[5]), "ms_fwd_bwd": float(f[6]),
                         "tflops_fwd": float(f[7]), "tflops_fwd_bwd": float(f[8])})
torch_rows = json_rows(sys.argv[2])
key = lambda r: (r["seq_len"], r["window"], bool(r["doc_mask"]), r.get("window_block", 0))
cases = []
for r in ours + torch_rows:
    if key(r) not in cases:
        cases.append(key(r))
backends = []
for r in torch_rows:
    if r["backend"] not in backends:
        backends.append(r["backend"])
table = {(key(r), r["backend"]): r for r in ours + torch_rows}

def cell(r, field):
    if r is None or r.get(field) is None:
        return "-"
    return f"{r[field]:.1f}" if r[field] >= 10 else f"{r[field]:.3g}"

for field, title in (("tflops_fwd_bwd", "forward+backward"), ("tflops_fwd", "forward")):
    print(f"\n{title} TFLOP/s (FLOPs: forward 4*D*H*allowed pairs, forward+backward 3.5x forward)")
    head = f"{'seq_len':>8} {'window':>7} {'docs':>5} {'muongpt':>9} " + " ".join(f"{b:>14}" for b in backends)
    print(head + f" {'ours/best':>10}  goal")
    for c in cases:
        mine = table.get((c, "muongpt"))
        theirs = {b: table.get((c, b)) for b in backends}
        line = f"{c[0]:>8} {c[1]:>7} {'yes' if c[2] else '-':>5} {cell(mine, field):>9} " + " ".join(
            f"{cell(theirs[b], field):>14}" for b in backends)
        best = max((r[field] for r in theirs.values() if r and r.get(field)), default=None)
        if mine is None or best is None:
            print(line + f" {'-':>10}  -")
            continue
        ratio = mine[field] / best
        masked = c[1] > 0 or c[2]
        goal = ("met" if ratio > 1 else "NOT met") if masked else ("met" if ratio >= 1 else "NOT met")
        print(line + f" {ratio:>10.2f}  {goal if field == 'tflops_fwd_bwd' else ''}")
print("\ngoal (forward+backward): causal >= the fastest SDPA backend; window/document > flex_attention")
PY
