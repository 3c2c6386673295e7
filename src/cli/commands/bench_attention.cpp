// bench --attention: speed of attention forward and forward+backward on random
// inputs, over causal sequence lengths (batch = --tokens / seq_len), sliding
// windows on the longest sequence, and a document mask (random document
// lengths, optionally with a window: --doc-window) on the longest sequence.
// --window-block b makes every window count whole b-token blocks
// (model.window_block; the speedrun's masks from record #16 on). Prints a
// table, then one JSON line per case.
//
// FLOP convention (docs/attention.md): forward = 4 * head_dim * heads * pairs,
// where pairs counts the allowed (query, key) pairs of the mask exactly, summed
// over the batch (the QK^T and PV matmuls, 2 FLOPs per multiply-add);
// forward+backward = 3.5 x forward (the backward's five matmuls are 2.5x the
// forward, as FlashAttention reports; the recomputation of P is not credited).
// scripts/bench/attention_torch.py builds the same cases (the same document
// lengths too) and counts the same way.
//
// Devices (select_device decides auto): cuda runs kernels/cuda's attention in
// bf16 (src/backend/cuda/attention_bench.cu); cpu runs the fp32 reference of
// kernels/cpu/attention.h, which stores the (B, H, T, T) probabilities, so its
// defaults are small.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "backend/device.h"
#include "cli/commands/bench_modes.h"
#include "kernels/cpu/attention.h"
#include "util/error.h"
#include "util/format.h"
#include "util/rng.h"

#if MUONGPT_HAVE_CUDA
#include "backend/cuda/attention_bench.h"
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

namespace muongpt {

namespace {

// What the command line gave (an Option's count() tells whether it was given).
struct AttentionArgs {
  bool enabled = false;
  std::string seq_lens, windows, kernel = "auto";
  int heads = 0, head_dim = 0, doc_len = 0, doc_window = 0, window_block = 0;
  int64_t tokens = 0;
  CLI::Option *seq_lens_opt = nullptr, *windows_opt = nullptr, *heads_opt = nullptr, *head_dim_opt = nullptr,
              *tokens_opt = nullptr, *doc_len_opt = nullptr, *kernel_opt = nullptr, *doc_window_opt = nullptr,
              *window_block_opt = nullptr;
};

// The resolved settings of one run.
struct Settings {
  std::vector<int> seq_lens, windows;
  std::string kernel;  // GPU only: auto | cuda_cores | tensor_cores
  int heads = 0, head_dim = 0, doc_len = 0, doc_window = 0, window_block = 0;
  int64_t tokens = 0;
};

struct Case {
  int batch = 1, seq_len = 0, window = 0;  // window 0 = full causal
  int window_block = 0;                    // 0 = token window; else whole blocks of this many tokens
  std::vector<int> doc_lengths;            // of one row; empty = no document mask
  int64_t pairs = 0;                       // allowed (query, key) pairs over the whole batch
};

struct Timing {
  double ms_fwd = 0, ms_fwd_bwd = 0;
  int64_t nonfinite = 0;
};

// Allowed (query, key) pairs of one row of T tokens, counted query by query
// with the rule of cpu::AttentionMask: query t sees keys j <= t of its own
// document (doc_lengths, empty = one document) that its window leaves: t - j < w,
// or with blocks of b tokens floor(t/b) - floor(j/b) < w/b (w = 0: no window).
int64_t row_pairs(int T, int window, int block, const std::vector<int>& doc_lengths) {
  const std::vector<int> docs = doc_lengths.empty() ? std::vector<int>{T} : doc_lengths;
  int64_t pairs = 0;
  int doc_start = 0;
  for (int L : docs) {
    for (int t = doc_start; t < doc_start + L; ++t) {
      int64_t first = doc_start;
      if (window > 0)
        first = std::max<int64_t>(first, block > 0 ? (static_cast<int64_t>(t / block) - (window / block - 1)) * block
                                                   : static_cast<int64_t>(t) - window + 1);
      pairs += t - first + 1;
    }
    doc_start += L;
  }
  return pairs;
}

// Random document lengths filling T: each 1 + (SplitMix64 draw mod (2*mean - 1)),
// mean about `mean`, the last cut to fit. attention_torch.py draws the same.
std::vector<int> document_lengths(int T, int mean, uint64_t seed) {
  Rng rng(seed);
  const uint64_t span = 2 * static_cast<uint64_t>(mean) - 1;
  std::vector<int> lengths;
  for (int t = 0; t < T;) {
    const int L = static_cast<int>(std::min<uint64_t>(1 + rng.next_u64() % span, static_cast<uint64_t>(T - t)));
    lengths.push_back(L);
    t += L;
  }
  return lengths;
}

constexpr uint64_t kDocumentSeed = 1;

Case make_case(int batch, int T, int window, int window_block, int doc_len) {
  Case c;
  c.batch = batch;
  c.seq_len = T;
  c.window = window;
  c.window_block = window > 0 ? window_block : 0;
  if (doc_len > 0) c.doc_lengths = document_lengths(T, doc_len, kDocumentSeed);
  c.pairs = row_pairs(T, c.window, c.window_block, c.doc_lengths) * batch;
  return c;
}

// (batch * T) document ids of a case, or empty.
std::vector<int32_t> document_ids(const Case& c) {
  std::vector<int32_t> ids;
  if (c.doc_lengths.empty()) return ids;
  ids.reserve(static_cast<size_t>(c.batch) * c.seq_len);
  for (int b = 0; b < c.batch; ++b)
    for (size_t d = 0; d < c.doc_lengths.size(); ++d) ids.insert(ids.end(), c.doc_lengths[d], static_cast<int32_t>(d));
  return ids;
}

std::vector<Case> build_cases(const Settings& s) {
  std::vector<Case> cases;
  for (int T : s.seq_lens)
    cases.push_back(make_case(static_cast<int>(std::max<int64_t>(1, s.tokens / T)), T, 0, 0, 0));
  const int longest = *std::max_element(s.seq_lens.begin(), s.seq_lens.end());
  for (int w : s.windows) cases.push_back(make_case(1, longest, w, s.window_block, 0));
  cases.push_back(make_case(1, longest, s.doc_window, s.window_block, s.doc_len));
  return cases;
}

// The fp32 reference: forward (which stores P) then backward, each timed.
Timing time_cpu(const Case& c, int H, int D, int steps, int warmup) {
  using Clock = std::chrono::steady_clock;
  const int B = c.batch, T = c.seq_len;
  const size_t n = static_cast<size_t>(B) * T * H * D;
  Rng rng(7);
  auto normal = [&rng](size_t count) {
    std::vector<float> x(count);
    for (float& e : x) e = static_cast<float>(rng.normal());
    return x;
  };
  const std::vector<float> q = normal(n), k = normal(n), v = normal(n), dout = normal(n);
  std::vector<float> out(n), dq(n), dk(n), dv(n), probs(static_cast<size_t>(B) * H * T * T);
  const std::vector<int32_t> ids = document_ids(c);
  const cpu::AttentionMask mask{c.window, ids.empty() ? nullptr : ids.data(), c.window_block};
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  double fwd_ms = 0, all_ms = 0;
  for (int i = 0; i < warmup + steps; ++i) {
    const auto t0 = Clock::now();
    cpu::attention_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), B, T, H, D, scale, mask);
    const auto t1 = Clock::now();
    cpu::attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), probs.data(), q.data(), k.data(), v.data(), B,
                            T, H, D, scale, mask);
    const auto t2 = Clock::now();
    if (i < warmup) continue;
    fwd_ms += std::chrono::duration<double, std::milli>(t1 - t0).count();
    all_ms += std::chrono::duration<double, std::milli>(t2 - t0).count();
  }
  Timing t;
  t.ms_fwd = fwd_ms / steps;
  t.ms_fwd_bwd = all_ms / steps;
  for (const std::vector<float>* x : {&out, &dq, &dk, &dv})
    for (float e : *x) t.nonfinite += std::isfinite(e) ? 0 : 1;
  return t;
}

std::vector<int> parse_list(const std::string& text, const char* option) {
  std::vector<int> values;
  size_t at = 0;
  while (true) {
    const size_t comma = text.find(',', at);
    const std::string item = text.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    size_t used = 0;
    long value = 0;
    try {
      value = std::stol(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || value < INT32_MIN || value > INT32_MAX)
      fail("bench --attention: ", option, " expects comma-separated integers, got \"", text, "\"");
    values.push_back(static_cast<int>(value));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return values;
}

Settings resolve(const AttentionArgs& a, bool gpu) {
  Settings s;
  auto given = [](const CLI::Option* o) { return o && o->count() > 0; };
  s.seq_lens = given(a.seq_lens_opt) ? parse_list(a.seq_lens, "--seq-lens")
               : gpu ? std::vector<int>{1024, 2048, 4096, 8192, 16384, 32768, 65536}
                     : std::vector<int>{128, 256, 512};
  s.windows = given(a.windows_opt) ? parse_list(a.windows, "--windows")
              : gpu ? std::vector<int>{128, 256, 512, 1024, 2048}
                    : std::vector<int>{32, 64};
  s.heads = given(a.heads_opt) ? a.heads : gpu ? 16 : 4;
  s.head_dim = given(a.head_dim_opt) ? a.head_dim : gpu ? 128 : 64;
  s.tokens = given(a.tokens_opt) ? a.tokens : gpu ? 131072 : 1024;
  s.doc_len = given(a.doc_len_opt) ? a.doc_len : gpu ? 2048 : 64;
  for (int T : s.seq_lens)
    if (T <= 0) fail("bench --attention: --seq-lens must be positive, got ", T);
  for (int w : s.windows)
    if (w <= 0) fail("bench --attention: --windows must be positive (the causal cases run anyway), got ", w);
  if (s.heads <= 0) fail("bench --attention: --heads must be positive, got ", s.heads);
  if (s.head_dim < 2 || s.head_dim > 128 || s.head_dim % 2 != 0)
    fail("bench --attention: --head-dim must be even and in [2, 128] (the CUDA kernel's range), got ", s.head_dim);
  if (s.tokens <= 0) fail("bench --attention: --tokens must be positive, got ", s.tokens);
  if (s.doc_len <= 0) fail("bench --attention: --doc-len must be positive, got ", s.doc_len);
  s.doc_window = given(a.doc_window_opt) ? a.doc_window : 0;
  s.window_block = given(a.window_block_opt) ? a.window_block : 0;
  if (s.doc_window < 0) fail("bench --attention: --doc-window must be >= 0 (0 = none), got ", s.doc_window);
  if (s.window_block < 0)
    fail("bench --attention: --window-block must be >= 0 (0 = token windows), got ", s.window_block);
  if (s.window_block > 0) {
    std::vector<int> all = s.windows;
    if (s.doc_window > 0) all.push_back(s.doc_window);
    for (int w : all)
      if (w % s.window_block != 0)
        fail("bench --attention: window ", w, " is not a multiple of --window-block ", s.window_block,
             " (block windows count whole blocks)");
  }
  s.kernel = a.kernel;
  if (s.kernel == "tensor_cores" && s.head_dim != 64 && s.head_dim != 128)
    fail("bench --attention: --attention-kernel tensor_cores needs --head-dim 64 or 128, got ", s.head_dim);
  return s;
}

void run(const AttentionArgs& args, const std::string& requested_device, int steps, int warmup) {
  const std::string device = select_device(requested_device, /*verbose=*/false);
  const bool gpu = device == "cuda";
  const Settings s = resolve(args, gpu);
  const std::vector<Case> cases = build_cases(s);
  const int H = s.heads, D = s.head_dim;

  std::string device_name, dtype;
  if (gpu) {
#if MUONGPT_HAVE_CUDA
    device_name = attention_bench_gpu_name();
#endif
    dtype = "bf16";
  } else {
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    device_name = str("cpu (", threads, " threads)");
    dtype = "fp32";
    for (const Case& c : cases) {  // the reference stores P: refuse sizes that cannot fit
      const double bytes = 4.0 * c.batch * H * static_cast<double>(c.seq_len) * c.seq_len;
      if (bytes > 8e9)
        fail("bench --attention --device cpu: seq_len ", c.seq_len, " x batch ", c.batch, " x ", H,
             " heads needs ", format_bytes(bytes),
             " for the reference's probability matrix; use smaller --seq-lens, --tokens or --heads");
    }
  }

  const std::string kernel = gpu ? s.kernel : "cpu_reference";
  std::printf("bench --attention on %s: %s, heads %d, head dim %d, %d timed runs after %d warmup (%s)\n",
              device_name.c_str(), dtype.c_str(), H, D, steps, warmup,
              gpu ? ("kernels/cuda/attention.cuh, kernel " + kernel).c_str()
                  : "fp32 reference, kernels/cpu/attention.h");
  std::printf("FLOPs: forward = 4 * head_dim * heads * allowed query-key pairs (exact for the mask); "
              "forward+backward = 3.5 x forward (no credit for recomputation)\n");
  if (s.window_block > 0)
    std::printf("windows count whole %d-token blocks: query t sees key j when floor(t/%d) - floor(j/%d) < w/%d\n",
                s.window_block, s.window_block, s.window_block, s.window_block);
  std::printf("%8s %7s %5s %6s %14s %11s %11s %11s %11s\n", "seq_len", "window", "docs", "batch", "pairs", "fwd ms",
              "fwd+bwd ms", "TFLOP/s fwd", "TFLOP/s f+b");
  std::fflush(stdout);

  std::vector<nlohmann::json> lines;
  for (const Case& c : cases) {
    Timing t;
    if (gpu) {
#if MUONGPT_HAVE_CUDA
      const GpuAttentionTiming g =
          time_attention_gpu(c.batch, c.seq_len, H, D, c.window, c.window_block, document_ids(c), s.kernel, steps,
                             warmup);
      t = {g.ms_fwd, g.ms_fwd_bwd, g.nonfinite};
#endif
    } else {
      t = time_cpu(c, H, D, steps, warmup);
    }
    if (t.nonfinite > 0)
      fail("bench --attention: ", t.nonfinite, " NaN/inf values in the outputs or gradients at seq_len ", c.seq_len,
           ", window ", c.window, c.doc_lengths.empty() ? "" : ", document mask", "; not reporting a speed");
    const double flops_fwd = 4.0 * D * H * static_cast<double>(c.pairs);
    const double tf_fwd = flops_fwd / (t.ms_fwd * 1e-3) / 1e12;
    const double tf_fwd_bwd = 3.5 * flops_fwd / (t.ms_fwd_bwd * 1e-3) / 1e12;
    const std::string docs = c.doc_lengths.empty() ? "-" : std::to_string(c.doc_lengths.size());
    std::printf("%8d %7d %5s %6d %14lld %11.3f %11.3f %11.4f %11.4f\n", c.seq_len, c.window, docs.c_str(), c.batch,
                static_cast<long long>(c.pairs), t.ms_fwd, t.ms_fwd_bwd, tf_fwd, tf_fwd_bwd);
    std::fflush(stdout);
    lines.push_back({{"backend", "muongpt"},
                     {"seq_len", c.seq_len},
                     {"window", c.window},
                     {"window_block", c.window_block},
                     {"doc_mask", !c.doc_lengths.empty()},
                     {"documents", c.doc_lengths.empty() ? 1 : static_cast<int>(c.doc_lengths.size())},
                     {"batch", c.batch},
                     {"heads", H},
                     {"head_dim", D},
                     {"device", device_name},
                     {"dtype", dtype},
                     {"kernel", kernel},
                     {"pairs", c.pairs},
                     {"flops_fwd", flops_fwd},
                     {"ms_fwd", t.ms_fwd},
                     {"ms_fwd_bwd", t.ms_fwd_bwd},
                     {"tflops_fwd", tf_fwd},
                     {"tflops_fwd_bwd", tf_fwd_bwd},
                     {"steps", steps},
                     {"warmup", warmup}});
  }
  for (const nlohmann::json& j : lines) std::printf("%s\n", j.dump().c_str());
}

}  // namespace

BenchMode add_attention_bench(CLI::App* bench) {
  auto a = std::make_shared<AttentionArgs>();
  bench->add_flag("--attention", a->enabled,
                  "attention forward and forward+backward TFLOP/s: causal over --seq-lens, sliding --windows and a "
                  "document mask on the longest sequence (table, then one JSON line per case; docs/attention.md)");
  a->seq_lens_opt = bench->add_option("--seq-lens", a->seq_lens,
                                      "with --attention: causal sequence lengths, comma-separated "
                                      "(default 1024,...,65536 on the GPU; 128,256,512 on the CPU)");
  a->windows_opt = bench->add_option("--windows", a->windows,
                                     "with --attention: sliding windows, run on the longest sequence "
                                     "(default 128,...,2048 on the GPU; 32,64 on the CPU)");
  a->heads_opt = bench->add_option("--heads", a->heads, "with --attention: heads (default 16 on the GPU, 4 on the CPU)");
  a->head_dim_opt =
      bench->add_option("--head-dim", a->head_dim, "with --attention: head dim, even, <= 128 (default 128 GPU, 64 CPU)");
  a->tokens_opt = bench->add_option("--tokens", a->tokens,
                                    "with --attention: batch x seq_len of each causal case "
                                    "(default 131072 on the GPU, 1024 on the CPU)");
  a->doc_len_opt = bench->add_option("--doc-len", a->doc_len,
                                     "with --attention: mean document length of the document-masked case "
                                     "(default 2048 on the GPU, 64 on the CPU)");
  a->kernel_opt = bench->add_option("--attention-kernel", a->kernel,
                                    "with --attention on the GPU: auto | cuda_cores | tensor_cores (default auto, "
                                    "as model.attention_kernel)")
                      ->check(CLI::IsMember({"auto", "cuda_cores", "tensor_cores"}));
  a->doc_window_opt = bench->add_option("--doc-window", a->doc_window,
                                        "with --attention: a sliding window for the document-masked case too, as in "
                                        "the speedrun's packed sequences (default 0 = none)");
  a->window_block_opt = bench->add_option("--window-block", a->window_block,
                                          "with --attention: windows count whole blocks of this many tokens, as "
                                          "model.window_block (the speedrun: 128; default 0 = token windows)");
  return [a](const RunOptions& options, int steps, int warmup) {
    if (!a->enabled) {
      for (const CLI::Option* o : {a->seq_lens_opt, a->windows_opt, a->heads_opt, a->head_dim_opt, a->tokens_opt,
                                   a->doc_len_opt, a->kernel_opt, a->doc_window_opt, a->window_block_opt})
        if (o->count() > 0) fail("bench: ", o->get_name(), " only applies with --attention");
      return false;
    }
    run(*a, options.device, steps, warmup);
    return true;
  };
}

}  // namespace muongpt
