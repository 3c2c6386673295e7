// Gradient buckets for overlapping the data-parallel gradient reduction with
// the backward pass: one contiguous range of the flat gradient buffer per
// transformer block (the parameters named blocks.L.*), which can be reduced as
// soon as the backward has finished that block (the model reports it through
// ModelBackend::set_layer_grads_hook), and the rest (embeddings, head, final
// norm, U-net skip weights), reduced after the backward.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "model/params.h"

namespace muongpt {

struct GradRange {
  size_t begin = 0, end = 0;  // [begin, end) of the flat buffer
  size_t size() const { return end - begin; }
};

struct GradBuckets {
  // layers[l]: the parameters of block l. Empty when some block's parameters
  // are not contiguous in the table (then everything is in `rest`).
  std::vector<GradRange> layers;
  // The complement of the layer ranges in [0, total), in order, adjacent
  // pieces merged.
  std::vector<GradRange> rest;
};

// Block index of a parameter name ("blocks.3.attn.proj.weight" -> 3), -1 when
// the name is not under blocks.
int block_of(const std::string& name);

GradBuckets plan_grad_buckets(const ParamTable& table, int n_layer);

}  // namespace muongpt
