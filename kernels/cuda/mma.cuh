// Tensor-core primitive shared by the mma.sync kernels (attention_mma.cu,
// symmetric_matmul.cu): one warp-wide m16n8k16 multiply-accumulate, bf16
// inputs, fp32 accumulators. Fragment layouts (PTX ISA, "mma.m16n8k16"):
// a[4] holds the 16x16 A tile (row-major), b0/b1 the 16x8 B tile (column-
// major), c[4] the 16x8 accumulator tile; lane l owns rows l/4 and l/4 + 8.
#pragma once

#include <cstdint>

namespace muongpt::gpu {

// c += a b
__device__ __forceinline__ void mma_m16n8k16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

}  // namespace muongpt::gpu
