# Helpers for the end-to-end tests. Each test script is called as
#   bash tests/e2e/<name>.sh <path to muongpt> <scratch directory>
# from the repository root, and ends with "N passed, N failed".
set -u
BIN=$(realpath "$1")
WORK=$2
rm -rf "$WORK"
mkdir -p "$WORK"
PASSED=0
FAILED=0

pass() { PASSED=$((PASSED + 1)); echo "ok: $1"; }
failed() { FAILED=$((FAILED + 1)); echo "FAIL: $1"; }

# check DESCRIPTION COMMAND...: passes when the command succeeds
check() {
  local desc=$1
  shift
  if "$@"; then pass "$desc"; else failed "$desc"; fi
}

# expect_error DESCRIPTION EXPECTED_TEXT COMMAND...: the command must fail and
# print EXPECTED_TEXT (fixed string) on stderr or stdout.
expect_error() {
  local desc=$1 expected=$2
  shift 2
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ $rc -ne 0 ] && grep -qF -- "$expected" <<<"$out"; then
    pass "$desc"
  else
    failed "$desc (exit $rc, expected to see: $expected)"
    echo "$out" | tail -5 | sed 's/^/    | /'
  fi
}

# json_get FILE EXPRESSION: evaluates a Python expression on the parsed JSON (as j)
json_get() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }

finish() {
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}

# A small, fast variant of the default config for end-to-end runs.
SMALL=(--config configs/tiny.json
  --set model.n_layer=2 --set model.d_model=32 --set model.n_head=2
  --set batch.seq_len=32 --set batch.micro_batch=4 --set batch.global_tokens=256
  --set data.val_tokens=2048 --set train.steps=6 --set train.eval_every=3 --set train.checkpoint_every=3
  --set train.log_every=1)
