# muongpt prepare through the binary: stdin, the summary and its JSON line,
# the progress line only on request (clean logs in CI), errors with exit code
# 1 and file:line, --val, and the bundled data/tiny (consistent with its
# manifest; rebuilt byte for byte when the shared corpora are present).
source "$(dirname "$0")/lib/common.sh"

# shard_tokens FILE: the tokens of a shard, one per line
shard_tokens() {
  python3 -c "
import struct, sys
d = open(sys.argv[1], 'rb').read()
n = struct.unpack('<3i', d[:12])[2]
print('\n'.join(map(str, struct.unpack('<%dH' % n, d[1024:1024 + 2 * n]))))" "$1"
}

# the bundled data set (rebuilt at the end, when the corpora are present)
check "data/tiny: the manifest's token counts match the shards" python3 - <<'PY'
import json, struct
m = json.load(open("data/tiny/manifest.json"))
for split in ("train", "val"):
    for s in m[split]["shards"]:
        d = open("data/tiny/" + s["file"], "rb").read()
        n = struct.unpack("<3i", d[:12])[2]
        assert n == s["tokens"] and len(d) == 1024 + 2 * n, s
        assert struct.unpack("<%dH" % n, d[1024:]).count(50256) == s["documents"], s
assert m["val"]["documents"] > 0 and m["train"]["documents"] > 0
PY

# A muongpt built without PCRE2 (the GPU machine) cannot encode: it must say
# so clearly; the rest of this test then does not apply.
printf 'x' > "$WORK/probe.txt"
if "$BIN" prepare "$WORK/probe.txt" --dry-run 2>&1 | grep -q "built without the PCRE2 headers"; then
  pass "without PCRE2, prepare reports that it cannot encode"
  echo "skip: this muongpt has no encoder (built without PCRE2); prepare not tested further"
  finish
  exit $?
fi

check "--help lists the flags" bash -c "'$BIN' prepare --help | grep -q -- --val-fraction && '$BIN' prepare --help | grep -q -- --on-error"

printf 'Hello world' | "$BIN" prepare - --out "$WORK/stdin" > "$WORK/stdin.out" 2> "$WORK/stdin.err"
check "stdin: one document, <|endoftext|> first" test "$(shard_tokens "$WORK/stdin/train_000000.bin" | xargs)" = "50256 15496 995"
check "the last line of stdout is JSON with the counts" \
  bash -c "tail -1 '$WORK/stdin.out' | python3 -c 'import json,sys; j=json.load(sys.stdin); assert j[\"documents\"]==1 and j[\"train_tokens\"]==3 and j[\"val_tokens\"]==0, j'"
check "no progress line when stderr is not a terminal" bash -c "! grep -q 'MB/s' '$WORK/stdin.err'"
check "a note when there is no validation split" grep -q "no validation split" "$WORK/stdin.err"
check "manifest.json names the input, the tokenizer and the shard" test \
  "$(json_get "$WORK/stdin/manifest.json" 'j["inputs"][0]["kind"], j["tokenizer"]["name"], j["train"]["shards"][0]["tokens"]')" = "stdin gpt2 3"
printf 'Hello world' | "$BIN" prepare - --out "$WORK/progress" --progress > /dev/null 2> "$WORK/progress.err"
check "--progress shows bytes, tokens and MB/s" grep -q "MB (100%), 3 tokens, .* MB/s" "$WORK/progress.err"

mkdir -p "$WORK/in/sub"
printf 'first file' > "$WORK/in/a.txt"
printf 'second file' > "$WORK/in/sub/b.md"
printf '{"text": "held out"}\n{"text": "also held out"}\n' > "$WORK/val.jsonl"
"$BIN" prepare "$WORK/in" --val "$WORK/val.jsonl" --out "$WORK/split" --shard-tokens 4 > "$WORK/split.out"
check "--val: its inputs form the val split" \
  test "$(json_get "$WORK/split/manifest.json" 'j["val"]["documents"], j["train"]["documents"]')" = "2 2"
check "shards of --shard-tokens tokens" bash -c "ls '$WORK/split' | grep -c '^train_' | grep -qx 2 && ls '$WORK/split' | grep -qx val_000001.bin"
"$BIN" info --data "$WORK/split/*.bin" > "$WORK/info.txt"
check "info --data reads the shards: 4 documents" grep -q "4 documents" "$WORK/info.txt"
check "the output is the same with --threads 1" bash -c "
  '$BIN' prepare '$WORK/in' --val '$WORK/val.jsonl' --out '$WORK/split1' --shard-tokens 4 --threads 1 > /dev/null &&
  for f in '$WORK'/split/*.bin; do cmp \"\$f\" '$WORK'/split1/\$(basename \"\$f\") || exit 1; done"

printf '{"text": "ok"}\n{"text": broken}\n' > "$WORK/bad.jsonl"
expect_error "bad JSON line: file and line" "error: $WORK/bad.jsonl:2: invalid JSON" \
  "$BIN" prepare "$WORK/bad.jsonl" --out "$WORK/bad"
"$BIN" prepare "$WORK/bad.jsonl" --out "$WORK/bad" > /dev/null 2>&1
check "exit code 1" test $? -eq 1
check "nothing left behind" bash -c "[ -z \"\$(ls -A '$WORK/bad' 2>/dev/null)\" ]"
"$BIN" prepare "$WORK/bad.jsonl" --out "$WORK/skip" --on-error skip > "$WORK/skip.out" 2> "$WORK/skip.err"
check "--on-error skip: a warning and a count" \
  bash -c "grep -q 'warning: .*bad.jsonl:2' '$WORK/skip.err' && tail -1 '$WORK/skip.out' | grep -q '\"skipped_documents\":1'"
expect_error "existing data set needs --overwrite" "pass --overwrite" "$BIN" prepare "$WORK/in" --out "$WORK/split"
expect_error "bad --on-error value" "--on-error" "$BIN" prepare "$WORK/in" --out "$WORK/x" --on-error ignore
expect_error "missing input" "input $WORK/none.txt: no such file or directory" "$BIN" prepare "$WORK/none.txt" --out "$WORK/x"

if [ -d ../shared/data/corpora/sotu ]; then
  scripts/make_tiny_data.sh --bin "$BIN" --out "$WORK/tiny" > /dev/null
  check "data/tiny is exactly what scripts/make_tiny_data.sh makes" \
    bash -c "cmp data/tiny/train_000000.bin '$WORK/tiny/train_000000.bin' && cmp data/tiny/val_000000.bin '$WORK/tiny/val_000000.bin'"
else
  echo "skip: ../shared/data/corpora not found; data/tiny not rebuilt"
fi
finish
