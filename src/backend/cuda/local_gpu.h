// The GPU of this process: the node-local rank (set by mpirun, srun or a
// launcher's LOCAL_RANK) modulo the number of visible GPUs, so that the ranks
// of a node spread over its GPUs.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdlib>

#include "kernels/cuda/common.cuh"
#include "util/error.h"

namespace muongpt {

inline int local_gpu_index() {
  int count = 0;
  CUDA_CHECK(cudaGetDeviceCount(&count));
  if (count == 0) fail("--device cuda: no CUDA device is visible");
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "LOCAL_RANK"})
    if (const char* v = std::getenv(var)) return std::atoi(v) % count;
  return 0;
}

}  // namespace muongpt
