// muongpt info: the resolved config, the parameter table, FLOPs and memory;
// or statistics of token shards (--data); or the config reference.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "backend/device.h"
#include "cli/commands/commands.h"
#include "cli/commands/run_options.h"
#include "config/config_io.h"
#include "data/shard.h"
#include "model/estimate.h"
#if MUONGPT_HAVE_CUDA
#include "backend/cuda/gpt_cuda.h"
#endif
#include "model/params.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"
#include "train/trainer.h"
#include "util/error.h"
#include "util/format.h"
#include "util/fs.h"

namespace muongpt {

namespace {

// The per-layer windows, and under schedule.window_warmup those of the first,
// middle and last step, so that a config's schedule can be checked by eye.
void print_attention_windows(const Config& cfg) {
  const ModelConfig& m = cfg.model;
  if (m.attn_window.empty()) return;
  std::printf("%s%s tokens%s%s (0 = full causal)\n",
              cfg.schedule.window_stages.enabled() ? "window shares:         " : "attention windows:     ",
              format_list(m.attn_window).c_str(),
              m.window_block > 0 ? str(", whole ", m.window_block, "-token blocks").c_str() : "",
              m.document_mask ? ", inside documents" : "");
  if (m.window_counts == "previous") std::printf("                       (each query also sees itself: w + 1 keys)\n");
  const int steps = cfg.train.steps;
  const WindowStagesConfig& st = cfg.schedule.window_stages;
  if (st.enabled()) {  // one line per window the run uses: first step, windows, scale
    const std::vector<double> base = attention_settings_at(m, cfg.schedule, 0, steps).rope_freqs;
    std::vector<int> previous;
    for (int step = 0; step <= steps; ++step) {  // each change of windows, and the final evaluation
      const AttentionSettings a = attention_settings_at(m, cfg.schedule, step, steps);
      if (a.windows == previous && step < steps) continue;
      previous = a.windows;
      std::string yarn;  // how much YaRN has slowed the slowest rotating pair so far
      for (size_t i = base.size(); st.yarn && i-- > 0;)
        if (base[i] > 0) {
          yarn = str(", slowest RoPE pair x", a.rope_freqs[i] / base[i]);
          break;
        }
      std::printf("window stage:          %s %d: %s, attention scale %.6g%s\n",
                  step == steps ? "final eval, step" : "from step", step, format_list(a.windows).c_str(), a.scale,
                  yarn.c_str());
    }
    return;
  }
  const WindowWarmupConfig& ww = cfg.schedule.window_warmup;
  if (ww.start <= 0) return;
  std::string line;
  for (int step : {0, steps / 2, steps})
    line += str(step ? ", " : "", "step ", step, " ", format_list(attention_windows_at(m, cfg.schedule, step, steps)));
  std::printf("window warmup:         %s (rounding %s, layers %s)\n", line.c_str(), ww.rounding.c_str(),
              ww.layers.c_str());
}

// The training tokens, and under batch.stages the step each batch starts at.
void print_batches(const Config& cfg) {
  const int steps = cfg.train.steps;
  const long long total = tokens_before(cfg.batch, cfg.schedule, steps, steps);
  std::printf("training tokens:       %lld (%s) in %d steps\n", total, format_count(static_cast<double>(total)).c_str(),
              steps);
  if (cfg.batch.stages.empty()) return;
  std::string line;
  BatchShape previous;
  for (int step = 0; step < steps; ++step) {
    const BatchShape b = batch_at(cfg.batch, cfg.schedule, step, steps);
    if (step > 0 && b.global_tokens == previous.global_tokens && b.seq_len == previous.seq_len) continue;
    line += str(line.empty() ? "" : ", ", "from step ", step, ": ", b.global_tokens, " tokens in sequences of ",
                b.seq_len);
    previous = b;
  }
  std::printf("batch stages:          %s\n", line.c_str());
}

// The validation sequences, and for sequences longer than batch.seq_len the
// chunks of the final evaluation (the longest windows) and the work they add.
void print_validation(const Config& cfg) {
  const long long tokens = cfg.data.val_tokens;
  if (tokens <= 0) return;
  const int len = cfg.val_seq_len();
  const long long sequences = (tokens + len - 1) / len;
  std::printf("validation:            %lld tokens in %lld sequence%s of %d", tokens, sequences,
              sequences == 1 ? "" : "s", len);
  if (tokens % len) std::printf(" (the last %lld)", tokens % len);
  if (len <= cfg.batch.seq_len) {
    std::printf("\n");
    return;
  }
  const auto windows = attention_windows_at(cfg.model, cfg.schedule, cfg.train.steps, cfg.train.steps);
  const ValSet::Chunking plan = val_chunking(cfg, windows);
  long long forward_tokens = 0;
  for (long long i = 0; i < sequences; ++i) {
    const int n = static_cast<int>(std::min<long long>(len, tokens - i * len));
    for (const auto& piece : ValSet::pieces(n, plan)) forward_tokens += piece.end - piece.begin;
  }
  std::printf(", each in chunks of %d re-reading %d earlier tokens at the final evaluation (%lld tokens "
              "forward, %.2fx those scored)\n",
              plan.max_len, plan.context, forward_tokens, static_cast<double>(forward_tokens) / tokens);
}

void print_model_info(const RunOptions& o) {
  std::string source;
  Config cfg = resolve_run_config(o, source);
  if (o.seed) cfg.train.seed = *o.seed;
  validate_config(cfg, source, 1);
  std::printf("# resolved config (%s)\n%s\n\n", source.c_str(), config_to_json(cfg).dump(2).c_str());

  const ParamTable table(cfg.model);
  const auto groups = assign_groups(table, cfg.optim, source);
  std::printf("# parameters\n%-34s %-14s %12s  %-18s %s\n", "name", "shape", "numel", "role", "optimizer group");
  for (size_t i = 0; i < table.params().size(); ++i) {
    const auto& p = table.params()[i];
    const auto& g = cfg.optim.groups[groups.group_of_param[i]];
    std::printf("%-34s %-14s %12zu  %-18s %s (%s)\n", p.name.c_str(), p.shape_string().c_str(), p.numel,
                role_name(p.role), g.name.c_str(), g.type.c_str());
  }
  const ModelEstimate e = estimate_model(cfg);
  std::printf("\n# totals\n");
  std::printf("parameters:            %lld (%s), of which embeddings %s\n", static_cast<long long>(e.params),
              format_count(static_cast<double>(e.params)).c_str(),
              format_count(static_cast<double>(e.embedding_params)).c_str());
  std::printf("matmul parameters:     %s\n", format_count(static_cast<double>(e.matmul_params)).c_str());
  std::printf("FLOPs per token:       %.3g (forward+backward: 6*N_matmul %.3g + attention %.3g; %s)\n",
              e.flops_per_token, e.flops_per_token - e.attention_flops_per_token, e.attention_flops_per_token,
              cfg.model.attn_window.empty() ? "causal: 6*L*C*T" : "12*C*keys per layer, sliding windows");
  std::printf("FLOPs per step:        %.3g (%lld tokens%s)\n", e.flops_per_token * cfg.batch.global_tokens,
              static_cast<long long>(cfg.batch.global_tokens), cfg.batch.stages.empty() ? "" : ", the extension steps' batch");
  print_batches(cfg);
  print_attention_windows(cfg);
  print_validation(cfg);
  std::printf("memory (CPU, fp32):    params %.2f GB, grads %.2f GB, optimizer %.2f GB, activations %.2f GB, total %.2f GB\n",
              e.param_bytes / 1e9, e.grad_bytes / 1e9, e.optimizer_bytes / 1e9, e.activation_bytes / 1e9,
              e.total_bytes() / 1e9);
#if MUONGPT_HAVE_CUDA
  const double model_gpu = static_cast<double>(GptCuda::device_bytes(cfg.model, cfg.batch.micro_batch, cfg.batch.seq_len));
  std::printf("memory (GPU, bf16):    model %.2f GB (params fp32 + bf16, grads, activations for %d x %d tokens), "
              "optimizer state %.2f GB (fp32, replicated), total %.2f GB + workspaces\n",
              model_gpu / 1e9, cfg.batch.micro_batch, cfg.batch.seq_len, e.optimizer_bytes / 1e9,
              (model_gpu + e.optimizer_bytes) / 1e9);
#endif
  const DeviceReport dev = detect_devices();
  if (dev.gpus.empty())
    std::printf("devices:               CPU (%s)\n", dev.cuda_status.c_str());
  for (const auto& g : dev.gpus)
    std::printf("devices:               GPU %d: %s (sm_%d%d, %.1f GB)\n", g.index, g.name.c_str(), g.major, g.minor,
                g.memory_gb);
}

int print_data_info(const std::string& pattern) {
  const auto files = glob_files(pattern);
  if (files.empty()) fail("--data: no files match \"", pattern, "\"");
  std::printf("%-48s %14s %10s %7s %7s\n", "shard", "tokens", "documents", "min id", "max id");
  ShardStats total;
  total.min_id = 0xffff;
  int bad = 0;
  for (const auto& f : files) {
    try {
      Shard s(f);
      const ShardStats st = scan_tokens(s.tokens(), s.size());
      std::printf("%-48s %14llu %10llu %7u %7u\n", f.c_str(), static_cast<unsigned long long>(st.tokens),
                  static_cast<unsigned long long>(st.end_of_text), st.min_id, st.max_id);
      total.tokens += st.tokens;
      total.end_of_text += st.end_of_text;
      if (st.tokens) {
        total.min_id = std::min(total.min_id, st.min_id);
        total.max_id = std::max(total.max_id, st.max_id);
      }
    } catch (const Error& e) {
      std::printf("error: %s\n", e.what());
      ++bad;
    }
  }
  std::printf("total: %zu shards, %llu tokens, %llu documents (<|endoftext|>), token ids %u..%u\n",
              files.size() - bad, static_cast<unsigned long long>(total.tokens),
              static_cast<unsigned long long>(total.end_of_text), total.tokens ? total.min_id : 0, total.max_id);
  if (bad) fail(bad, " of ", files.size(), " files matching \"", pattern, "\" are not valid shards");
  return 0;
}

}  // namespace

void register_info(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  auto data = std::make_shared<std::string>();
  auto reference = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("info", "print a config's parameters, FLOPs and memory; shard statistics; config keys");
  add_config_options(cmd, *o, /*with_run_dir=*/false);
  cmd->add_option("--data", *data, "statistics of the token shards matching this glob");
  cmd->add_flag("--config-reference", *reference, "print every config key with type, default and description");
  cmd->callback([o, data, reference] {
    if (*reference) {
      std::printf("%s", config_reference_markdown().c_str());
    } else if (!data->empty()) {
      print_data_info(*data);
    } else {
      print_model_info(*o);
    }
  });
}

}  // namespace muongpt
