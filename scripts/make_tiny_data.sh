#!/usr/bin/env bash
# Rebuilds data/tiny/, the bundled data set the default config trains on, with
# muongpt prepare itself:
#   train: the State of the Union addresses before 2000 (1790-1999)
#   val:   the addresses from 2000 on (2000-2021 in the shared corpus)
# one shard each (GPT-2 tokens, <|endoftext|> before every address), plus
# data/tiny/manifest.json.
#
#   scripts/make_tiny_data.sh [--bin build/muongpt] [--corpora ../shared/data/corpora] [--out data/tiny]
#
# --corpora is the project's shared corpora folder; CI and developer machines
# have it at ../shared/data/corpora beside the repository root (the default).
# Paths are relative to the repository root, where the script runs; they are
# recorded as given in the manifest. The output is the same on every machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/muongpt
corpora=../shared/data/corpora
out=data/tiny
while [ $# -gt 0 ]; do
  case $1 in
    --bin) bin=$2; shift 2 ;;
    --corpora) corpora=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "make_tiny_data.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "make_tiny_data.sh: $bin not found; build first (scripts/build.sh) or pass --bin" >&2; exit 1; }
[ -d "$corpora/sotu" ] || { echo "make_tiny_data.sh: $corpora/sotu not found; pass --corpora DIR" >&2; exit 1; }

train=()
val=()
for f in "$corpora"/sotu/*.txt; do  # YEAR_NAME_PARTY.txt, in year order
  year=$(basename "$f")
  year=${year%%_*}
  if [ "$year" -lt 2000 ]; then train+=("$f"); else val+=("$f"); fi
done
echo "make_tiny_data.sh: ${#train[@]} addresses for train, ${#val[@]} for val -> $out"
"$bin" prepare "${train[@]}" --val "${val[@]}" --out "$out" --overwrite --no-progress
