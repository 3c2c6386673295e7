# scripts/download_fineweb.py: argument handling only. The download itself
# needs network access and huggingface_hub, which CI does not have; --help,
# --dry-run and every usage error must work without either.
source "$(dirname "$0")/lib/common.sh"
S=scripts/download_fineweb.py

check "--help works without huggingface_hub and names the datasets" \
  bash -c "python3 $S --help | grep -q 'kjj0/fineweb10B-gpt2' && python3 $S --help | grep -q finewebedu10B"
expect_error "N is required" "the following arguments are required: N" python3 $S
expect_error "N must be a number" "N must be a whole number" python3 $S three
expect_error "N below 1" "between 1 and 103 for fineweb10B" python3 $S 0
expect_error "N above the 103 shards of fineweb10B" "between 1 and 103 for fineweb10B" python3 $S 104
expect_error "N above the 99 shards of finewebedu10B" "between 1 and 99 for finewebedu10B" \
  python3 $S 100 --dataset finewebedu10B
expect_error "unknown dataset" "invalid choice: 'fineweb5B'" python3 $S 1 --dataset fineweb5B

python3 $S 3 --dry-run --dir "$WORK/fw" > "$WORK/dry.txt"
check "--dry-run lists the val shard and train shards 1..N" \
  diff <(grep '^  ' "$WORK/dry.txt" | tr -d ' ') <(printf '%s\n' fineweb_val_000000.bin fineweb_train_00000{1,2,3}.bin)
check "--dry-run names the repository and the directory" grep -q "kjj0/fineweb10B-gpt2 into $WORK/fw" "$WORK/dry.txt"
check "--dry-run writes nothing" test ! -e "$WORK/fw"
python3 $S 1030 --dataset fineweb100B --dry-run > "$WORK/dry100.txt"
check "fineweb100B: 1030 train shards from kjj0/fineweb100B-gpt2" \
  bash -c "grep -q 'fineweb_train_001030.bin' '$WORK/dry100.txt' && grep -q kjj0/fineweb100B-gpt2 '$WORK/dry100.txt' && [ \$(grep -c '^  ' '$WORK/dry100.txt') -eq 1031 ]"
python3 $S 2 --dataset finewebedu10B --dry-run > "$WORK/dryedu.txt"
check "finewebedu10B uses the finewebedu_ file prefix" grep -q "finewebedu_train_000002.bin" "$WORK/dryedu.txt"
if ! python3 -c "import huggingface_hub" 2>/dev/null; then
  expect_error "without huggingface_hub: a clear message, nothing created" "pip install huggingface_hub" \
    python3 $S 1 --dir "$WORK/nohub"
  check "nothing created without huggingface_hub" test ! -e "$WORK/nohub"
fi
finish
