// Deterministic global sums of fp32 arrays, accumulated in double.
//
//   sum_f32:          out = sum_i x_i
//   sum_squares_f32:  out = sum_i x_i^2      (e.g. the global gradient norm^2)
// Two passes, no atomics: a grid whose size depends on n only (at most
// kReduceBlocks blocks) writes one partial per block to `scratch`, then one
// block adds the partials in order and writes *out (device, double).
// Each thread strides through the array in a fixed pattern, so the result is
// the same bits on every run with the same n.
#pragma once

#include "kernels/cuda/common.cuh"

namespace muongpt::gpu {

constexpr int kReduceBlocks = 512;

// doubles of scratch the reductions need.
inline size_t reduce_scratch_doubles() { return kReduceBlocks; }

void sum_f32(double* out, const float* x, size_t n, double* scratch, cudaStream_t stream);
void sum_squares_f32(double* out, const float* x, size_t n, double* scratch, cudaStream_t stream);

}  // namespace muongpt::gpu
