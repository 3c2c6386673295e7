#!/usr/bin/env bash
# Data-parallel training across two (or more) machines with MPI, one process
# per GPU. Every machine needs the same repository path, the same build and the
# data (a shared filesystem, or copies at the same path); rank 0 (the first
# host) writes the run directory.
#
#   scripts/launch/two_nodes.sh HOSTFILE --config configs/speedrun/11_unet.json [train options...]
#
# HOSTFILE lists one machine per line with its process count, e.g.
#   node-a slots=8
#   node-b slots=8
# Network settings (set before calling; the defaults suit InfiniBand clusters):
#   NCCL_IB_HCA          which InfiniBand adapters NCCL uses (e.g. mlx5_0,mlx5_1,...; default: all)
#   NCCL_SOCKET_IFNAME   the Ethernet interface for NCCL's bootstrap and socket fallback (e.g. eth0)
#   NCCL_IB_DISABLE      0 to use InfiniBand (default), 1 to force TCP sockets
#   NCCL_NET_GDR_LEVEL   GPUDirect RDMA distance (e.g. PHB or 2); lets NICs read GPU memory directly
#   NCCL_DEBUG=INFO      prints the transport NCCL chose (check for "NET/IB" and "GDRDMA")
#   MPI_IFACE            the interface OpenMPI's own TCP traffic uses (default: NCCL_SOCKET_IFNAME)
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
hostfile=$1
shift
[ -f "$hostfile" ] || { echo "two_nodes.sh: hostfile $hostfile not found" >&2; exit 1; }
bin=${MUONGPT_BIN:-build/muongpt}
[ -x "$bin" ] || { echo "two_nodes.sh: $bin not found; run scripts/build.sh first (on every node)" >&2; exit 1; }
np=$(awk '/^[^#]/ { for (i = 1; i <= NF; ++i) if ($i ~ /^slots=/) { sub("slots=", "", $i); n += $i } } END { print n + 0 }' "$hostfile")
[ "$np" -gt 0 ] || { echo "two_nodes.sh: no slots=N entries in $hostfile" >&2; exit 1; }
export NCCL_IB_DISABLE=${NCCL_IB_DISABLE:-0}
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
mca=()
iface=${MPI_IFACE:-${NCCL_SOCKET_IFNAME:-}}
[ -n "$iface" ] && mca=(--mca btl_tcp_if_include "$iface" --mca oob_tcp_if_include "$iface")
env_flags=()
for v in $(env | grep -oE '^(NCCL_[A-Z_]+|OMP_NUM_THREADS|MUONGPT_[A-Z_]+|OMPI_ALLOW_[A-Z_]+)'); do env_flags+=(-x "$v"); done
exec mpirun -np "$np" --hostfile "$hostfile" --bind-to none "${mca[@]}" "${env_flags[@]}" \
  "$(realpath "$bin")" train "$@"
