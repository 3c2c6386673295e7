# bench --attention on the CPU (the fp32 reference): the table and one JSON
# line per case with every field, positive rates, exact allowed-pair counts,
# FLOPs that follow the stated convention, the same cases and pair counts as
# the PyTorch baseline script, and clear errors for bad options. When python3
# can import torch, the baseline script itself is smoke-tested on the CPU.
# (The GPU path runs in scripts/gpu/session.sh bench.)
source "$(dirname "$0")/lib/common.sh"
REPO=$(pwd)

# --- a tiny run on T=8, batch 1 (windows and the document mask run on the longest sequence):
# causal 8*9/2 = 36 pairs, window 3: 1 + 2 + 3*6 = 21.
"$BIN" bench --attention --device cpu --seq-lens 8 --windows 3 --heads 2 --head-dim 4 --tokens 8 --doc-len 3 \
  --steps 2 --warmup 1 > "$WORK/tiny.txt" 2>&1
check "bench --attention --device cpu runs (tiny)" test $? -eq 0
grep '^{' "$WORK/tiny.txt" > "$WORK/tiny.jsonl"
check "tiny: three JSON lines (causal, window 3, document mask)" test "$(wc -l < "$WORK/tiny.jsonl")" -eq 3
check "tiny: the convention is stated" grep -q "forward+backward = 3.5 x forward" "$WORK/tiny.txt"
check "tiny: causal T=8 has 36 pairs, window 3 on T=8 has 21" python3 - "$WORK/tiny.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
causal, window, docs = rows
assert (causal["seq_len"], causal["window"], causal["doc_mask"], causal["batch"], causal["pairs"]) == (8, 0, False, 1, 36), causal
assert (window["seq_len"], window["window"], window["doc_mask"], window["batch"], window["pairs"]) == (8, 3, False, 1, 21), window
assert docs["doc_mask"] is True and docs["window"] == 0 and docs["documents"] >= 2, docs
assert 8 <= docs["pairs"] < 36, docs
PY

# --- the default CPU cases (small sizes; well under 20 s)
start=$(date +%s)
"$BIN" bench --attention --device cpu --steps 2 --warmup 1 > "$WORK/default.txt" 2>&1
check "bench --attention --device cpu runs with its defaults" test $? -eq 0
check "default cases, 2 timed runs each, took under 20 s (took $(( $(date +%s) - start )) s)" test $(( $(date +%s) - start )) -lt 20
grep '^{' "$WORK/default.txt" > "$WORK/default.jsonl"
check "defaults: 3 causal + 2 window + 1 document case" test "$(wc -l < "$WORK/default.jsonl")" -eq 6
check "defaults: a table row per case before the JSON" test \
  "$(grep -cE '^ +[0-9]+ +[0-9]+ +(-|[0-9]+) +[0-9]+ +[0-9]+ ' "$WORK/default.txt")" -eq 6
check "defaults: every field, positive rates, FLOPs by the convention, exact pairs" python3 - "$WORK/default.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
need = {"seq_len", "window", "doc_mask", "batch", "heads", "head_dim", "device", "tflops_fwd", "tflops_fwd_bwd",
        "ms_fwd", "ms_fwd_bwd", "pairs", "backend", "dtype", "documents", "flops_fwd"}
def pairs(L, w):
    return L * (L + 1) // 2 if w <= 0 or w >= L else w * (w + 1) // 2 + (L - w) * w
for r in rows:
    assert need <= set(r), (need - set(r), r)
    assert r["device"].startswith("cpu") and r["backend"] == "muongpt" and r["dtype"] == "fp32", r
    assert (r["heads"], r["head_dim"]) == (4, 64), r
    assert r["tflops_fwd"] > 0 and r["tflops_fwd_bwd"] > 0 and 0 < r["ms_fwd"] < r["ms_fwd_bwd"], r
    assert r["flops_fwd"] == 4 * r["head_dim"] * r["heads"] * r["pairs"], r
    fwd = r["flops_fwd"] / (r["ms_fwd"] * 1e-3) / 1e12
    fwd_bwd = 3.5 * r["flops_fwd"] / (r["ms_fwd_bwd"] * 1e-3) / 1e12
    assert abs(r["tflops_fwd"] - fwd) <= 1e-9 * fwd and abs(r["tflops_fwd_bwd"] - fwd_bwd) <= 1e-9 * fwd_bwd, r
    if not r["doc_mask"]:
        assert r["pairs"] == r["batch"] * pairs(r["seq_len"], r["window"]), r
assert [(r["seq_len"], r["batch"], r["window"], r["doc_mask"]) for r in rows] == [
    (128, 8, 0, False), (256, 4, 0, False), (512, 2, 0, False), (512, 1, 32, False), (512, 1, 64, False),
    (512, 1, 0, True)], rows
PY

# --- the PyTorch script builds the same cases (same random document lengths), without torch
check "attention_torch.py --list-cases matches muongpt's cases and pair counts" python3 - "$WORK/default.jsonl" \
  "$REPO/scripts/bench/attention_torch.py" <<'PY'
import json, subprocess, sys
ours = [json.loads(l) for l in open(sys.argv[1])]
out = subprocess.run([sys.executable, sys.argv[2], "--list-cases", "--device", "cpu"], check=True,
                     capture_output=True, text=True).stdout
theirs = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
fields = ("seq_len", "window", "doc_mask", "documents", "batch", "pairs")
assert [[r[f] for f in fields] for r in ours] == [[r[f] for f in fields] for r in theirs], (ours, theirs)
PY

# --- block windows (--window-block) and a windowed document case (--doc-window), as the speedrun's masks
"$BIN" bench --attention --device cpu --seq-lens 64 --windows 8,16 --heads 2 --head-dim 4 --tokens 64 --doc-len 9 \
  --doc-window 16 --window-block 4 --steps 1 --warmup 0 > "$WORK/block.txt" 2>&1
check "bench --attention with --window-block 4 --doc-window 16 runs" test $? -eq 0
grep '^{' "$WORK/block.txt" > "$WORK/block.jsonl"
check "block windows: the rule is printed" grep -q "windows count whole 4-token blocks" "$WORK/block.txt"
check "block windows: pairs equal a brute-force count of the mask, the document case included" \
  python3 - "$WORK/block.jsonl" "$REPO/scripts/bench" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[2])
from attention_torch import document_lengths
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [(r["seq_len"], r["window"], r["window_block"], r["doc_mask"]) for r in rows] == [
    (64, 0, 0, False), (64, 8, 4, False), (64, 16, 4, False), (64, 16, 4, True)], rows
def brute(T, w, b, doc_ids):
    return sum(1 for t in range(T) for j in range(t + 1)
               if (w == 0 or t // b - j // b < w // b) and doc_ids[t] == doc_ids[j])
for r in rows:
    ids = [0] * 64
    if r["doc_mask"]:
        ids = [d for d, L in enumerate(document_lengths(64, 9)) for _ in range(L)]
        assert r["documents"] == max(ids) + 1, r
    assert r["pairs"] == brute(64, r["window"], max(r["window_block"], 1), ids), r
PY
check "attention_torch.py --list-cases matches with --window-block and --doc-window" python3 - "$WORK/block.jsonl" \
  "$REPO/scripts/bench/attention_torch.py" <<'PY'
import json, subprocess, sys
ours = [json.loads(l) for l in open(sys.argv[1])]
out = subprocess.run([sys.executable, sys.argv[2], "--list-cases", "--device", "cpu", "--seq-lens", "64", "--windows",
                      "8,16", "--tokens", "64", "--doc-len", "9", "--doc-window", "16", "--window-block", "4"],
                     check=True, capture_output=True, text=True).stdout
theirs = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
fields = ("seq_len", "window", "window_block", "doc_mask", "documents", "batch", "pairs")
assert [[r[f] for f in fields] for r in ours] == [[r[f] for f in fields] for r in theirs], (ours, theirs)
PY
expect_error "a window that is not whole blocks" "window 10 is not a multiple of --window-block 4" \
  "$BIN" bench --attention --device cpu --windows 8,10 --window-block 4
expect_error "negative document window" "--doc-window must be >= 0" "$BIN" bench --attention --device cpu --doc-window -1

# --- bad options
expect_error "odd head dim" "--head-dim must be even" "$BIN" bench --attention --device cpu --head-dim 3
expect_error "head dim above the kernel's 128" "--head-dim must be even and in [2, 128]" \
  "$BIN" bench --attention --device cpu --head-dim 256
expect_error "zero sequence length" "--seq-lens must be positive, got 0" "$BIN" bench --attention --device cpu --seq-lens 0
expect_error "non-numeric list" "--seq-lens expects comma-separated integers" \
  "$BIN" bench --attention --device cpu --seq-lens 8,x
expect_error "empty list item" "--windows expects comma-separated integers" \
  "$BIN" bench --attention --device cpu --windows 8,,16
expect_error "zero window" "--windows must be positive" "$BIN" bench --attention --device cpu --windows 0
expect_error "zero heads" "--heads must be positive" "$BIN" bench --attention --device cpu --heads 0
expect_error "negative tokens" "--tokens must be positive" "$BIN" bench --attention --device cpu --tokens -5
expect_error "zero document length" "--doc-len must be positive" "$BIN" bench --attention --device cpu --doc-len 0
expect_error "attention options need --attention" "--seq-lens only applies with --attention" \
  "$BIN" bench --config configs/tiny.json --device cpu --seq-lens 128
expect_error "too large for the CPU reference" "for the reference's probability matrix" \
  "$BIN" bench --attention --device cpu --seq-lens 65536 --tokens 65536

# --- the PyTorch baseline, where torch is installed (not in CI)
if python3 -c "import torch" 2>/dev/null; then
  python3 scripts/bench/attention_torch.py --device cpu --seq-lens 16,32 --windows 4 --heads 2 --head-dim 8 \
    --tokens 64 --doc-len 6 --steps 1 --warmup 1 > "$WORK/torch.txt" 2>&1
  check "attention_torch.py --device cpu runs" test $? -eq 0
  check "attention_torch.py: sdpa_math lines for every case, flex forward lines, fields as muongpt's" \
    python3 - "$WORK/torch.txt" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
math = [r for r in rows if r["backend"] == "sdpa_math"]
flex = [r for r in rows if r["backend"] == "flex_attention"]
assert [(r["seq_len"], r["window"], r["doc_mask"]) for r in math] == [
    (16, 0, False), (32, 0, False), (32, 4, False), (32, 0, True)], math
assert all(r["tflops_fwd"] > 0 and r["tflops_fwd_bwd"] > 0 for r in math), math
assert all(r["tflops_fwd"] > 0 and r["tflops_fwd_bwd"] is None for r in flex), flex
assert math[0]["pairs"] == 4 * 136 and math[2]["pairs"] == 10 + 28 * 4, math  # 4*5/2 + (32-4)*4
for r in rows:
    assert {"seq_len", "window", "doc_mask", "batch", "heads", "head_dim", "device", "tflops_fwd",
            "tflops_fwd_bwd", "ms_fwd", "ms_fwd_bwd", "pairs", "backend"} <= set(r), r
PY
  check "attention_torch.py prints a skip line for the CUDA-only backends" grep -q "^skip: sdpa_flash" "$WORK/torch.txt"
else
  echo "note: python3 cannot import torch here; attention_torch.py was not run (skipped, not failed)"
fi

finish
