# The fidelity-run tools (scripts/fidelity/): the curve comparison on
# fabricated logs of both engines (parsing, alignment, CSV, summary, plot when
# matplotlib is there) and the run script's refusal without the peer script.
source "$(dirname "$0")/lib/common.sh"

check "compare_curves.py --selftest passes" python3 scripts/fidelity/compare_curves.py --selftest
expect_error "run_modernarch.sh without peers/ says how to get the record script" "extract_record.py" \
  env PEERS_DIR="$WORK/no_peers" OUT="$WORK/out" bash scripts/fidelity/run_modernarch.sh record
finish
