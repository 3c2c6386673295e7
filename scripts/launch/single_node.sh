#!/usr/bin/env bash
# Data-parallel training on one machine: one process per GPU (or per CPU
# socket/core group on the CPU backend), started by MPI.
#
#   scripts/launch/single_node.sh NPROC --config configs/speedrun/05_modernarch.json [train options...]
#
# Rank 0 alone writes the run directory. The global batch (batch.global_tokens)
# is split across the ranks; gradient accumulation shrinks to match, so the
# tokens of every step, and the result up to reduction order, do not depend
# on NPROC. Set OMP_NUM_THREADS to the cores each rank may use.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
nproc_per_node=$1
shift
bin=${MUONGPT_BIN:-build/muongpt}
[ -x "$bin" ] || { echo "single_node.sh: $bin not found; run scripts/build.sh first" >&2; exit 1; }
# As root (containers), OpenMPI needs these two to start at all.
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / nproc_per_node > 0 ? $(nproc) / nproc_per_node : 1 ))}
exec mpirun -np "$nproc_per_node" --bind-to none -x OMP_NUM_THREADS "$bin" train "$@"
