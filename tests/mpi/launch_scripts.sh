# The documented launch scripts start a working multi-rank run: single_node.sh
# on 2 ranks, and two_nodes.sh with a hostfile (here one host with 2 slots,
# which exercises the hostfile path without a second machine).
source "$(dirname "$0")/../e2e/lib/common.sh"
export OMP_NUM_THREADS=1
final_loss() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['final_val_loss'])" "$1/summary.json"; }

MUONGPT_BIN="$BIN" scripts/launch/single_node.sh 2 "${SMALL[@]}" --out "$WORK/single" > "$WORK/single.log" 2>&1
check "single_node.sh 2 trains" test -f "$WORK/single/summary.json"
check "and reports 2 ranks" grep -q "2 ranks" "$WORK/single.log"

echo "localhost slots=2" > "$WORK/hostfile"
MUONGPT_BIN="$BIN" scripts/launch/two_nodes.sh "$WORK/hostfile" "${SMALL[@]}" --out "$WORK/hosts" > "$WORK/hosts.log" 2>&1
check "two_nodes.sh with a hostfile trains" test -f "$WORK/hosts/summary.json"
check "the two launches give the same final val loss" test "$(final_loss "$WORK/single")" = "$(final_loss "$WORK/hosts")"

expect_error "two_nodes.sh names a missing hostfile" "hostfile /nonexistent not found" \
  scripts/launch/two_nodes.sh /nonexistent "${SMALL[@]}"
check "slurm.sbatch is valid bash with its #SBATCH header" bash -c "bash -n scripts/launch/slurm.sbatch && grep -q '^#SBATCH --nodes=2' scripts/launch/slurm.sbatch"
finish
