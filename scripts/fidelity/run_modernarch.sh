#!/usr/bin/env bash
# Fidelity run: modded-nanogpt record #5 ("ModernArch") in PyTorch vs muongpt, same data, same
# hyperparameters, the record's schedule compressed to a short run, loss curves compared.
#
#   scripts/fidelity/run_modernarch.sh [STAGE...]        (default: all)
#     check     prerequisites only (peer script, binary, torch + CUDA, data, GPU)
#     record    the patched record script: torchrun --standalone --nproc_per_node=1 (torch.compile: ~4 min)
#     ours      build-gpu/muongpt train --config configs/speedrun/05_modernarch.json --device cuda --set ...
#     compare   scripts/fidelity/compare_curves.py -> records/<UTC date>_modernarch_fidelity/
#     all       check record ours compare, under one deadline (DEADLINE_S, default 590 s)
#
# Settings, the same for both engines (the record's other hyperparameters unchanged): STEPS=200
# optimizer steps of 65,536 tokens (64 sequences x 1,024, no accumulation, one GPU), linear
# warmdown over the last round(1450/5100 * STEPS) = 57 steps (muongpt: schedule.cooldown_frac =
# 57/200), validation every 25 steps on the first 131,072 tokens of data/tiny/val_000000.bin,
# training on data/tiny/train_000000.bin.
#
# Prerequisites on the GPU machine:
#   - peers/modernarch/train_gpt2.py: extract it where the modded-nanogpt snapshot is
#     (python3 scripts/fidelity/extract_record.py --source <log or repo>); peers/ is git-ignored,
#     so name it in the device call's carry (carry: ["peers"]);
#   - build-gpu/muongpt: scripts/gpu/session.sh build;
#   (muongpt checkpoints every 25 steps: an ours stage cut by its timeout continues from there when
#   run again; OURS_FRESH=1 starts over)
#   - python3 with torch (CUDA) and numpy; matplotlib is optional (without it the plot is skipped;
#     rerun compare_curves.py with --meta on the files that come back).
#
# Each call of the device tool may run 10 minutes: torch.compile takes about 4 of them, so run the
# stages in two calls unless muongpt is known to be fast:
#   scripts/fidelity/run_modernarch.sh check record
#   scripts/fidelity/run_modernarch.sh ours compare
# The runs live in runs/fidelity_modernarch/ (ignored; it survives between calls while the
# machine stays warm, with the inductor cache); logs, metrics and the comparison are copied to
# ${OUT:-gpu_out}/fidelity/.
#
# Environment: OUT, FIDELITY_WORK (runs/fidelity_modernarch), MUONGPT_BIN (build-gpu/muongpt),
# PYTHON (python3), FIDELITY_RECORDS_DIR (records), STEPS (200), RECORD_TIMEOUT / OURS_TIMEOUT (570 s), COMPARE_TIMEOUT (120 s),
# DEADLINE_S (590 for `all`, none otherwise: stage timeouts are cut to what is left of it),
# ALIGN_DATA_ORDER=1 (patch out the record's train_loader.reset(): both engines then see batch k at
# step k; see docs/speedrun.md "Fidelity run").
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
REPO=$(pwd)
OUT=${OUT:-gpu_out}
FID_OUT="$OUT/fidelity"
WORK=${FIDELITY_WORK:-runs/fidelity_modernarch}
case "$WORK" in /*) ;; *) WORK="$REPO/$WORK" ;; esac
BIN=${MUONGPT_BIN:-build-gpu/muongpt}
PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-200}
RECORD_TIMEOUT=${RECORD_TIMEOUT:-570}
OURS_TIMEOUT=${OURS_TIMEOUT:-570}
COMPARE_TIMEOUT=${COMPARE_TIMEOUT:-120}
ALIGN_DATA_ORDER=${ALIGN_DATA_ORDER:-0}
PEERS_DIR=${PEERS_DIR:-peers}  # the extracted peer script (git-ignored)
PEER_SCRIPT=$PEERS_DIR/modernarch/train_gpt2.py
PATCHED=$PEERS_DIR/modernarch/train_gpt2_fidelity.py
CONFIG=configs/speedrun/05_modernarch.json
TRAIN_BIN=data/tiny/train_000000.bin
VAL_BIN=data/tiny/val_000000.bin
BATCH_TOKENS=65536
MICRO_BATCH=64
SEQ_LEN=1024
VAL_EVERY=25
VAL_TOKENS=131072
WARMDOWN=$(( (1450 * STEPS * 2 + 5100) / (5100 * 2) ))   # round(1450/5100 * STEPS): 57 for 200
COOLDOWN_FRAC=$("$PYTHON" -c "print(repr($WARMDOWN / $STEPS))" 2>/dev/null || echo "")

mkdir -p "$FID_OUT" "$WORK"
START=$(date +%s)
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(all)
if [ "${stages[*]}" = "all" ]; then
  stages=(check record ours compare)
  DEADLINE_S=${DEADLINE_S:-590}
fi
DEADLINE_S=${DEADLINE_S:-0}

log() { echo "== $(date -u +%H:%M:%S) fidelity: $*" | tee -a "$FID_OUT/fidelity.log"; }
die() { log "ERROR: $*"; exit 2; }

# stage_timeout WANTED RESERVE: WANTED, cut to what is left of DEADLINE_S minus RESERVE seconds
stage_timeout() {
  local want=$1 reserve=$2
  if [ "$DEADLINE_S" -gt 0 ]; then
    local left=$(( DEADLINE_S - ($(date +%s) - START) - reserve ))
    [ "$left" -lt "$want" ] && want=$left
  fi
  [ "$want" -lt 10 ] && want=10
  echo "$want"
}

# move a previous run directory aside (muongpt never overwrites a run; keep one previous attempt)
set_aside() {
  local d=$1
  if [ -e "$d" ]; then
    rm -rf "$d.prev"
    mv "$d" "$d.prev"
  fi
}

write_meta() {
  local device commit
  device=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | paste -sd ';' -)
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo "")
  if [ -n "$commit" ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    commit="$commit + uncommitted changes"
  fi
  "$PYTHON" - "$FID_OUT/meta.json" "$WORK" "${device:-}" "$commit" "$STEPS" "$ALIGN_DATA_ORDER" <<'PY'
import json, os, sys
path, work, device, commit, steps, align = sys.argv[1:]
def read(p):
    try:
        return open(p).read().strip()
    except OSError:
        return ""
notes = []
for name in ("record", "ours"):
    rc = read(os.path.join(work, name + "_rc.txt"))
    if rc:
        notes.append(f"{name} exit status {rc}" + (" (timeout)" if rc in ("124", "137") else ""))
notes.append("data order: " + ("aligned (record script patched with --align-data-order)" if align == "1"
                               else "as in the record (its step N uses the batch of muongpt's step N-1)"))
meta = {"record_cmd": read(os.path.join(work, "record_command.txt")),
        "ours_cmd": read(os.path.join(work, "ours_command.txt")),
        "device_name": device or None, "commit": commit or None, "steps": int(steps), "notes": notes,
        "date": __import__("datetime").datetime.now(__import__("datetime").timezone.utc).strftime("%Y-%m-%d")}
json.dump(meta, open(path, "w"), indent=2)
PY
}

do_check() {
  log "check (repo $REPO, work dir $WORK, out $FID_OUT)"
  local ok=1
  if [ ! -f "$PEER_SCRIPT" ]; then
    log "MISSING $PEER_SCRIPT: extract it with 'python3 scripts/fidelity/extract_record.py --source <record log or"
    log "  modded-nanogpt checkout/git dir>' and pass peers/ to the GPU machine (device call: carry [\"peers\"]);"
    log "  peers/ is git-ignored on purpose (peer code is never committed)"
    ok=0
  fi
  for f in "$TRAIN_BIN" "$VAL_BIN" "$CONFIG"; do [ -f "$f" ] || { log "MISSING $f"; ok=0; }; done
  if [ -x "$BIN" ]; then log "binary: $BIN"; else log "MISSING $BIN: build it with scripts/gpu/session.sh build"; ok=0; fi
  [ -n "$COOLDOWN_FRAC" ] || { log "MISSING $PYTHON"; ok=0; }
  "$PYTHON" - <<'PY' 2>&1 | tee -a "$FID_OUT/fidelity.log" || ok=0
import sys
try:
    import numpy, torch
except ImportError as e:
    sys.exit(f"python: {e} (the record script needs torch and numpy)")
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, numpy {numpy.__version__}, "
      f"cuda available: {torch.cuda.is_available()}"
      + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
try:
    import matplotlib
    print(f"matplotlib {matplotlib.__version__}")
except ImportError:
    print("matplotlib: not installed (plot.png will be skipped; rerun compare_curves.py elsewhere)")
sys.exit(0 if torch.cuda.is_available() else "torch sees no CUDA device")
PY
  if command -v torchrun > /dev/null; then log "torchrun: $(command -v torchrun)"; else log "torchrun not on PATH: using $PYTHON -m torch.distributed.run"; fi
  nvidia-smi > "$FID_OUT/nvidia-smi.txt" 2>&1 || log "nvidia-smi failed"
  log "settings: $STEPS steps x $BATCH_TOKENS tokens ($MICRO_BATCH x $SEQ_LEN), warmdown $WARMDOWN (cooldown_frac $COOLDOWN_FRAC), val every $VAL_EVERY on $VAL_TOKENS tokens, align data order: $ALIGN_DATA_ORDER"
  [ $ok = 1 ] || die "prerequisites missing (see above)"
  log "check ok"
}

do_record() {
  [ -f "$PEER_SCRIPT" ] || die "$PEER_SCRIPT missing: run scripts/fidelity/extract_record.py --source ... on a machine with the modded-nanogpt snapshot, then carry peers/ to this machine (it is git-ignored)"
  local align=()
  [ "$ALIGN_DATA_ORDER" = 1 ] && align=(--align-data-order)
  local patch_cmd=("$PYTHON" scripts/fidelity/extract_record.py --from-script "$PEER_SCRIPT"
    --train-bin "$REPO/$TRAIN_BIN" --val-bin "$REPO/$VAL_BIN" --steps "$STEPS" --warmdown "$WARMDOWN"
    --batch-tokens "$BATCH_TOKENS" --device-batch "$MICRO_BATCH" --seq-len "$SEQ_LEN" --val-every "$VAL_EVERY"
    --val-tokens "$VAL_TOKENS" "${align[@]}")
  log "patch: ${patch_cmd[*]}"
  "${patch_cmd[@]}" 2>&1 | tee -a "$FID_OUT/fidelity.log"
  [ "${PIPESTATUS[0]}" = 0 ] || die "patching the record script failed"
  local dir="$WORK/record" t launcher
  set_aside "$dir"
  rm -f "$WORK/record_rc.txt"
  mkdir -p "$dir" "$WORK/inductor_cache"
  if command -v torchrun > /dev/null; then launcher=(torchrun); else launcher=("$PYTHON" -m torch.distributed.run); fi
  t=$(stage_timeout "$RECORD_TIMEOUT" 150)
  local cmd=(timeout -k 20 "$t" "${launcher[@]}" --standalone --nproc_per_node=1 "$REPO/$PATCHED")
  printf '%s\n' "${patch_cmd[*]}" "cd $dir && ${cmd[*]}" > "$WORK/record_command.txt"
  log "record: ${cmd[*]} (in $dir; first step after torch.compile, ~4 min)"
  local t0
  t0=$(date +%s)
  # the script writes its log to ./logs/<run id>.txt (source code first, then the run): run it in $dir
  (cd "$dir" && TORCHINDUCTOR_CACHE_DIR="$WORK/inductor_cache" PYTHONUNBUFFERED=1 "${cmd[@]}") > "$dir/stdout.log" 2>&1
  local rc=$?
  echo "$rc" > "$WORK/record_rc.txt"
  # the log without the peer's source code: from "Running pytorch" on (versions, nvidia-smi, step lines)
  local logfile
  logfile=$(ls -t "$dir"/logs/*.txt 2>/dev/null | head -1)
  if [ -n "$logfile" ]; then
    awk '/^Running pytorch/{p=1} p' "$logfile" > "$dir/record_log.txt"
  else
    grep -E "step:[0-9]+/[0-9]+ (train|val)_loss:" "$dir/stdout.log" > "$dir/record_log.txt"
  fi
  mkdir -p "$FID_OUT/record"
  cp "$dir/stdout.log" "$dir/record_log.txt" "$WORK/record_command.txt" "$WORK/record_rc.txt" "$FID_OUT/record/"
  log "record rc=$rc ($(( $(date +%s) - t0 )) s): $(grep -c 'train_loss:' "$dir/record_log.txt") train steps logged; last lines:"
  grep -E "(train|val)_loss:" "$dir/record_log.txt" | tail -3 | tee -a "$FID_OUT/fidelity.log"
  [ "$rc" = 0 ] || { log "record failed; tail of its output:"; tail -30 "$dir/stdout.log" | tee -a "$FID_OUT/fidelity.log"; }
  write_meta
  return 0
}

do_ours() {
  [ -x "$BIN" ] || die "$BIN missing: build it with scripts/gpu/session.sh build"
  local dir="$WORK/ours" t cmd
  rm -f "$WORK/ours_rc.txt"
  t=$(stage_timeout "$OURS_TIMEOUT" 30)
  # A run cut by a timeout continues from its newest checkpoint (every 25 steps) on the next call,
  # unless OURS_FRESH=1; a finished run (summary.json) is set aside and started again.
  if [ "${OURS_FRESH:-0}" != 1 ] && [ -f "$dir/metrics.jsonl" ] && [ ! -f "$dir/summary.json" ] &&
     compgen -G "$dir/ckpt_*.bin" > /dev/null; then
    cmd=(timeout -k 20 "$t" "$BIN" train --device cuda --out "$dir" --resume)
    echo "${cmd[*]}" >> "$WORK/ours_command.txt"
    log "ours: resuming the unfinished run: ${cmd[*]}"
  else
    set_aside "$dir"
    cmd=(timeout -k 20 "$t" "$BIN" train --config "$CONFIG" --device cuda --out "$dir"
      --set "train.steps=$STEPS" --set "train.eval_every=$VAL_EVERY"
      --set "batch.global_tokens=$BATCH_TOKENS" --set "batch.micro_batch=$MICRO_BATCH" --set "batch.seq_len=$SEQ_LEN"
      --set "data.train_pattern=$TRAIN_BIN" --set "data.val_pattern=$VAL_BIN" --set "data.val_tokens=$VAL_TOKENS"
      --set "schedule.cooldown_frac=$COOLDOWN_FRAC" --set "train.checkpoint_every=$VAL_EVERY"
      --set "train.keep_checkpoints=1")
    echo "${cmd[*]}" > "$WORK/ours_command.txt"
    : > "$WORK/ours_stdout.log"
    log "ours: ${cmd[*]}"
  fi
  local t0
  t0=$(date +%s)
  mkdir -p "$dir"
  "${cmd[@]}" >> "$WORK/ours_stdout.log" 2>&1
  local rc=$?
  echo "$rc" > "$WORK/ours_rc.txt"
  mkdir -p "$FID_OUT/ours"
  for f in metrics.jsonl summary.json config.json; do [ -f "$dir/$f" ] && cp "$dir/$f" "$FID_OUT/ours/"; done
  cp "$WORK/ours_stdout.log" "$WORK/ours_command.txt" "$WORK/ours_rc.txt" "$FID_OUT/ours/"
  log "ours rc=$rc ($(( $(date +%s) - t0 )) s); last lines:"
  grep -E "^step " "$WORK/ours_stdout.log" | tail -3 | tee -a "$FID_OUT/fidelity.log"
  if [ "$rc" != 0 ]; then
    log "muongpt failed or was cut; tail of its output:"
    tail -30 "$WORK/ours_stdout.log" | tee -a "$FID_OUT/fidelity.log"
    [ "$rc" = 124 ] || [ "$rc" = 137 ] && log "timeout: run the ours stage again to continue from the newest checkpoint"
  fi
  write_meta
  return 0
}

do_compare() {
  [ -s "$WORK/record/record_log.txt" ] || die "no record log ($WORK/record/record_log.txt): run the record stage first (same machine session)"
  [ -s "$WORK/ours/metrics.jsonl" ] || die "no muongpt metrics ($WORK/ours/metrics.jsonl): run the ours stage first"
  write_meta
  local date out t
  date=$(date -u +%F)
  out="${FIDELITY_RECORDS_DIR:-records}/${date}_modernarch_fidelity"
  t=$(stage_timeout "$COMPARE_TIMEOUT" 0)
  log "compare -> $out"
  timeout "$t" "$PYTHON" scripts/fidelity/compare_curves.py --record-log "$WORK/record/record_log.txt" \
    --ours "$WORK/ours" --out "$out" --meta "$FID_OUT/meta.json" --date "$date" 2>&1 | tee -a "$FID_OUT/fidelity.log"
  local rc=${PIPESTATUS[0]}
  mkdir -p "$FID_OUT/records"
  [ -d "$out" ] && cp -r "$out" "$FID_OUT/records/"
  log "compare rc=$rc; results in $FID_OUT/records/${date}_modernarch_fidelity/ (copy to records/ in the repository)"
  [ -f "$out/summary.md" ] && sed -n '/^## Train loss/,/^## Known/p' "$out/summary.md"
  return "$rc"
}

rc=0
for s in "${stages[@]}"; do
  case "$s" in
    check) do_check || rc=$? ;;
    record) do_record || rc=$? ;;
    ours) do_ours || rc=$? ;;
    compare) do_compare || rc=$? ;;
    *) die "unknown stage '$s' (check | record | ours | compare | all)" ;;
  esac
done
log "done in $(( $(date +%s) - START )) s"
exit $rc
