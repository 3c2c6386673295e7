#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite (CTest). GPU tests skip with a
# visible message when no GPU is present; MPI tests run ranks on this machine.
#   scripts/test.sh                 everything
#   scripts/test.sh -L cpu          only one label (cpu, e2e, mpi, gpu), any ctest arguments
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
# OpenMPI refuses to start as root without these (CI runs as root).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Tests run in parallel and share the cores: OpenMP threads that spin while
# waiting would steal them from each other (10x slower runs); sleeping waits do not.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
ctest --test-dir build --output-on-failure -j "$(nproc)" "$@"
