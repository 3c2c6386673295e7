# Bad command lines, configs, shards and checkpoints each give a clear error.
source "$(dirname "$0")/lib/common.sh"

expect_error "no subcommand" "A subcommand is required" "$BIN"
expect_error "unknown subcommand" "frobnicate" "$BIN" frobnicate
expect_error "unknown flag" "--bogus" "$BIN" train --bogus
expect_error "missing config file" "nonexistent.json" "$BIN" train --config nonexistent.json
expect_error "train without a config" "--config FILE is required" "$BIN" train
expect_error "bad device" "--device" "$BIN" train --config configs/tiny.json --device tpu
expect_error "unknown config key via --set" "unknown key model.n_layers (did you mean model.n_layer?)" \
  "$BIN" train --config configs/tiny.json --set model.n_layers=3 --out "$WORK/x"
expect_error "malformed --set" "expected key.path=value" "$BIN" train --config configs/tiny.json --set model.n_layer
expect_error "wrong type via --set" "model.n_head: expected an integer" \
  "$BIN" train --config configs/tiny.json --set model.n_head=many --out "$WORK/x"
expect_error "impossible shape" "model.n_head: 5 does not divide model.d_model" \
  "$BIN" train --config configs/tiny.json --set model.n_head=5 --out "$WORK/x"
expect_error "indivisible batch" "batch.global_tokens" \
  "$BIN" train --config configs/tiny.json --set batch.global_tokens=1000 --out "$WORK/x"
expect_error "missing data files" "data.train_pattern: no files match" \
  "$BIN" train --config configs/tiny.json --set data.train_pattern=/nonexistent/train_*.bin --out "$WORK/x"

printf '{"model": {"n_layer": 2,}}' > "$WORK/bad.json"
expect_error "invalid JSON names the file" "config $WORK/bad.json: invalid JSON" "$BIN" train --config "$WORK/bad.json"

# foreign and truncated shards
mkdir -p "$WORK/shards"
head -c 4096 /dev/urandom > "$WORK/shards/train_000000.bin"
expect_error "foreign shard" "bad magic" "$BIN" train --config configs/tiny.json \
  --set "data.train_pattern=$WORK/shards/train_*.bin" --out "$WORK/y"
expect_error "info --data reports the foreign file" "bad magic" "$BIN" info --data "$WORK/shards/*.bin"
python3 - "$WORK/shards/train_000000.bin" <<'PY'
import struct, sys
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<256i", 20240520, 1, 1000, *([0] * 253)))
    f.write(b"\0" * 500)  # 250 of the promised 1000 tokens
PY
expect_error "truncated shard" "truncated" "$BIN" info --data "$WORK/shards/*.bin"

# checkpoints
printf 'not a checkpoint at all' > "$WORK/ckpt_00000001.bin"
expect_error "foreign checkpoint" "not a muongpt checkpoint" "$BIN" eval --checkpoint "$WORK/ckpt_00000001.bin"
expect_error "missing checkpoint" "does not exist" "$BIN" eval --checkpoint "$WORK/none.bin"

# asking for the GPU where there is none says why and what to use instead
if ! nvidia-smi -L > /dev/null 2>&1; then
  expect_error "--device cuda without a GPU" "use --device cpu" "$BIN" train "${SMALL[@]}" --device cuda --out "$WORK/gpu"
fi
finish
