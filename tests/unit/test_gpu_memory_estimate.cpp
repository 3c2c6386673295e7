// The GPU model's memory plan, measured on the host (GptCuda::device_bytes):
// what `muongpt info` prints and what the out-of-memory error compares with
// the GPU's free memory. Only in CUDA builds; it needs no GPU.
#if MUONGPT_HAVE_CUDA
#include "backend/cuda/gpt_cuda.h"
#include "config/config_io.h"
#include "model/params.h"
#include "test_support.h"

using namespace muongpt;
using namespace muongpt::test;

TEST_CASE("the GPU memory plan holds the parameters and grows linearly with the batch", "[gpu_memory][estimate]") {
  const Config cfg = load_config(source_path("configs/tiny.json"));
  const ModelConfig& m = cfg.model;
  const double P = static_cast<double>(ParamTable(m).total());
  const int T = cfg.batch.seq_len;
  const double one = static_cast<double>(GptCuda::device_bytes(m, 1, T));
  const double two = static_cast<double>(GptCuda::device_bytes(m, 2, T));
  const double four = static_cast<double>(GptCuda::device_bytes(m, 4, T));
  // fp32 master + fp32 gradients + bf16 copy
  REQUIRE(one > 10.0 * P);
  // per sequence at least the bf16 logits (T x padded vocab) and the residual stream of every layer
  const double per_sequence = four - two;
  REQUIRE(per_sequence / 2 >= 2.0 * T * m.padded_vocab_size + 2.0 * T * m.d_model * m.n_layer);
  // linear in the batch up to the 256-byte alignment of each buffer
  REQUIRE(std::abs((two - one) - per_sequence / 2) <= 256.0 * 200);
  // and in the sequence length for the same tokens (attention keeps no T x T matrix)
  const double long_seq = static_cast<double>(GptCuda::device_bytes(m, 1, 2 * T));
  REQUIRE(std::abs(long_seq - two) <= 0.01 * two);
  require_error([&] { GptCuda::device_bytes(m, 0, T); }, {"batch 0x", "is empty"});
}

TEST_CASE("the 64K-token speedrun records fit an 80 GB GPU at one sequence per micro-batch", "[gpu_memory][estimate]") {
  const Config cfg = load_config(source_path("configs/speedrun/12_flexattention.json"));
  const double bytes = static_cast<double>(GptCuda::device_bytes(cfg.model, cfg.batch.micro_batch, cfg.batch.seq_len));
  REQUIRE(bytes > 10.0 * ParamTable(cfg.model).total());
  REQUIRE(bytes < 70e9);
}
#endif
