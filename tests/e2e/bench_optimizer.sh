# bench --optimizer on the CPU (configs/tiny.json): the JSON last line has every
# field, the times are positive and add up, the FLOP count is the formula's,
# --dump-shapes writes the shapes the PyTorch baseline reads, bad options give
# clear errors. Where python3 has torch, the PyTorch baseline runs on the same
# shapes. (The GPU path runs in a GPU session: scripts/bench/optimizer_compare.sh.)
source "$(dirname "$0")/lib/common.sh"

"$BIN" bench --optimizer --config configs/tiny.json --device cpu --steps 2 --warmup 1 > "$WORK/cpu.txt" 2>&1
check "bench --optimizer runs on the CPU" test $? -eq 0
tail -1 "$WORK/cpu.txt" > "$WORK/cpu.json"
check "a readable table precedes the JSON" grep -q "Muon groups" "$WORK/cpu.txt"
check "JSON: every field, positive times, Muon + AdamW <= the step" python3 - "$WORK/cpu.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
need = ["device", "config", "muon_ms", "adamw_ms", "optimizer_ms", "ns_ms", "ns_flops", "ns_tflops",
        "peak_tflops", "fraction_of_step", "muon_params", "adamw_params", "groups"]
missing = [k for k in need if k not in j]
assert not missing, missing
assert j["device"] == "cpu" and j["config"] == "configs/tiny.json", j
for k in ("muon_ms", "adamw_ms", "ns_ms", "ns_flops", "ns_tflops", "optimizer_ms"):
    assert isinstance(j[k], (int, float)) and j[k] > 0, (k, j[k])
assert j["muon_ms"] + j["adamw_ms"] <= j["optimizer_ms"] * 1.02 + 1e-6, j
assert j["peak_tflops"] is None and j["fraction_of_step"] is None, j
PY
# tiny: 4 layers, d 64, MLP 256, fused qkv -> per layer 3 + 1 blocks of 64x64, fc 256x64, proj 64x256
# (16 + 8 blocks);
# NS FLOPs per block and iteration 4 r^2 c + 2 r^3 with r = 64, 5 iterations
check "Newton-Schulz FLOPs and parameter counts of tiny" python3 - "$WORK/cpu.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
r = 64
flops = 16 * 5 * (4 * r * r * 64 + 2 * r ** 3) + 8 * 5 * (4 * r * r * 256 + 2 * r ** 3)
assert j["ns_flops"] == flops, (j["ns_flops"], flops)
assert j["muon_blocks"] == 24, j["muon_blocks"]
assert j["muon_params"] == 4 * (4 * 64 * 64 + 2 * 256 * 64), j["muon_params"]
assert sum(g["params"] for g in j["groups"]) == j["muon_params"] + j["adamw_params"], j["groups"]
assert abs(j["ns_tflops"] - j["ns_flops"] / (j["ns_ms"] * 1e-3) / 1e12) < 1e-9 * j["ns_tflops"], j
PY

"$BIN" bench --optimizer --config configs/tiny.json --device cpu --steps 1 --warmup 0 --step-ms 500 \
  > "$WORK/step.txt" 2>&1
check "--step-ms gives the fraction of the training step" python3 -c "
import json; j = json.loads(open('$WORK/step.txt').read().strip().splitlines()[-1])
assert j['step_ms'] == 500 and abs(j['fraction_of_step'] - j['optimizer_ms'] / 500) < 1e-12, j
assert abs(j['muon_fraction_of_step'] - j['muon_ms'] / 500) < 1e-12, j"

"$BIN" bench --optimizer --config configs/tiny.json --dump-shapes "$WORK/shapes.json" > "$WORK/dump.txt" 2>&1
check "--dump-shapes writes every parameter with its group and Muon blocks" python3 - "$WORK/shapes.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
ps = j["params"]
muon = [p for p in ps if p["type"] == "muon"]
assert len(muon) == 16 and all(len(p["shape"]) == 2 for p in muon), muon
qkv = [p for p in muon if p["name"].endswith("attn.qkv.weight")]
assert len(qkv) == 4 and all(p["blocks"] == [[64, 64]] * 3 for p in qkv), qkv
assert sum(len(p["blocks"]) for p in muon) == 24
assert any(p["type"] == "adamw" and p["name"] == "tok_embed" for p in ps), ps
PY

expect_error "--optimizer needs a config" "--config FILE is required" "$BIN" bench --optimizer --device cpu
expect_error "--step-ms needs --optimizer" "--step-ms requires --optimizer" \
  "$BIN" bench --config configs/tiny.json --step-ms 100
expect_error "--step-ms must be positive" "--step-ms" "$BIN" bench --optimizer --config configs/tiny.json --step-ms -3
expect_error "--steps must be positive" "--steps" "$BIN" bench --optimizer --config configs/tiny.json --steps 0
expect_error "unwritable --dump-shapes" "cannot write" \
  "$BIN" bench --optimizer --config configs/tiny.json --dump-shapes "$WORK/no/such/dir/shapes.json"
expect_error "a config whose Muon group takes a vector" "blocks.0.norm1" "$BIN" bench --optimizer --device cpu \
  --config configs/tiny.json --set 'optim.groups.0.params=["blocks.*"]' --set model.norm_weight=true
if ! nvidia-smi -L > /dev/null 2>&1; then
  expect_error "--device cuda without a GPU" "use --device cpu" \
    "$BIN" bench --optimizer --config configs/tiny.json --device cuda
fi

# --- the PyTorch baseline on the same shapes, where torch is installed (CI has none)
if python3 -c "import torch" > /dev/null 2>&1; then
  python3 scripts/bench/optimizer_torch.py --shapes-json "$WORK/shapes.json" --device cpu --steps 1 --warmup 0 \
    --skip-unbatched > "$WORK/torch.txt" 2>&1
  check "optimizer_torch.py runs on the CPU" test $? -eq 0
  tail -1 "$WORK/torch.txt" > "$WORK/torch.json"
  check "torch JSON: fields, the same shapes as muongpt" python3 - "$WORK/torch.json" "$WORK/cpu.json" <<'PY'
import json, sys
t, ours = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
for k in ("torch_muon_ms", "speedrun_muon_ms", "speedrun_batched_muon_ms", "adamw_ms", "device"):
    assert k in t, k
assert t["device"] == "cpu" and t["adamw_ms"] > 0 and t["speedrun_batched_muon_ms"] > 0, t
assert t["torch_muon_ms"] is None or t["torch_muon_ms"] > 0, t
assert (t["muon_params"], t["adamw_params"], t["ns_flops"]) == \
    (ours["muon_params"], ours["adamw_params"], ours["ns_flops"]), (t, ours)
PY
  expect_error "optimizer_torch.py without shapes" "give --shapes-json FILE or --config FILE" \
    python3 scripts/bench/optimizer_torch.py --device cpu
else
  echo "note: python3 has no torch here; skipped the PyTorch baseline (scripts/bench/optimizer_torch.py)"
fi
finish
