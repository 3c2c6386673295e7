#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "backend/device.h"
#include "config/config_io.h"
#include "kernels/cpu/reduce.h"
#include "optim/schedule.h"
#include "train/checkpoint.h"
#include "train/metrics.h"
#include "util/error.h"
#include "util/format.h"
#include "util/fs.h"

namespace muongpt {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// The geometry of a global batch of `shape` on rank `rank` of `world`.
BatchGeometry geometry_of(const BatchConfig& batch, int rank, int world, const BatchShape& shape) {
  BatchGeometry g;
  g.micro_batch = batch.micro_batch;
  g.seq_len = shape.seq_len;
  g.rank = rank;
  g.world = world;
  g.grad_accum = static_cast<int>(shape.global_tokens / (static_cast<int64_t>(g.micro_batch) * g.seq_len * world));
  return g;
}

BatchGeometry make_geometry(const Config& cfg, const Comm& comm) {
  return geometry_of(cfg.batch, comm.rank(), comm.world(), {cfg.batch.global_tokens, cfg.batch.seq_len});
}

// The train loader: with batch.stages each step's batch has its stage's
// geometry, and the largest global batch must fit in a shard.
std::unique_ptr<TrainLoader> make_train_loader(const Config& cfg, const Comm& comm) {
  const Packing packing{cfg.data.bos_aligned, cfg.data.max_doc_len};
  BatchGeometry largest = make_geometry(cfg, comm);
  if (cfg.batch.stages.empty())
    return std::make_unique<TrainLoader>(cfg.data.train_pattern, "data.train_pattern", largest, cfg.model.vocab_size,
                                         packing);
  for (const BatchStageConfig& st : cfg.batch.stages) {
    const BatchGeometry g = geometry_of(cfg.batch, comm.rank(), comm.world(), {st.global_tokens, st.seq_len});
    if (g.global_tokens() > largest.global_tokens()) largest = g;
  }
  GeometryAt geometry_at = [batch = cfg.batch, schedule = cfg.schedule, steps = cfg.train.steps, rank = comm.rank(),
                            world = comm.world()](int64_t step) {
    const int s = static_cast<int>(std::min<int64_t>(step, steps));
    return geometry_of(batch, rank, world, batch_at(batch, schedule, s, steps));
  };
  return std::make_unique<TrainLoader>(cfg.data.train_pattern, "data.train_pattern", largest, cfg.model.vocab_size,
                                       packing, std::move(geometry_at));
}

}  // namespace

Trainer::Trainer(const Config& cfg, const std::string& source, Comm& comm, const std::string& device)
    : cfg_(cfg),
      source_(source),
      comm_(comm),
      geometry_(make_geometry(cfg, comm)),
      model_(make_model_backend(device, cfg.model, cfg.batch.micro_batch, cfg.batch.seq_len)),
      optimizer_(model_->table(), cfg.optim, cfg.schedule, cfg.train.steps, source, cfg.dist, &comm,
                 cfg.model.n_head) {
  comm_.set_timeout(cfg.dist.timeout_s);
  // On the GPU the optimizer stays on the device: over several ranks the
  // gradients are reduced with NCCL (all-reduced with replicated state,
  // reduced into each owner with dist.zero_stage = 1 / dist.muon = owner).
  // Diagnostics and dist.gpu_gradients = host use the host optimizer, and so
  // do the runs make_device_step() declines: several ranks without NCCL, or
  // dist.muon = zero1 with several ranks.
  const bool host_gradients = comm.world() > 1 && cfg.dist.gpu_gradients == "host";
  if (cfg.optim.diagnostics_every == 0 && !host_gradients)
    device_step_ = model_->make_device_step(cfg.optim, cfg.schedule, cfg.train.steps, source, comm, cfg.dist);
  init_params<float>(model_->table(), model_->params().data(), cfg.train.seed);
  model_->params_to_device();
  loader_ = std::make_unique<PrefetchingLoader>(make_train_loader(cfg, comm), /*pin_memory=*/device == "cuda");
  if (cfg.data.val_tokens > 0) {
    val_ = std::make_unique<ValSet>(cfg.data.val_pattern, "data.val_pattern", cfg.data.val_tokens, cfg.val_seq_len(),
                                    cfg.model.vocab_size);
    for (int at : {0, cfg.train.steps})  // windows only grow: the first and the final evaluation bound them
      val_chunking(cfg, attention_windows_at(cfg.model, cfg.schedule, at, cfg.train.steps));
  }
}

void Trainer::check_finite_loss(double loss) const {
  if (!std::isfinite(loss))
    fail("training diverged: the loss is ", loss, " at step ", step_ + 1, " (lr factor ",
         lr_factor(cfg_.schedule, step_, cfg_.train.steps),
         "); lower the learning rates or enable optim.grad_clip. Checkpoints written so far are intact.");
}

StepStats Trainer::train_step() {
  StepStats s;
  const auto t_step = Clock::now();
  auto t = Clock::now();
  const StepBatch& batch = loader_->next();
  s.data_ms = ms_since(t);

  const BatchGeometry& geo = batch.geometry;  // this step's (batch.stages)
  const int B = geo.micro_batch, T = geo.seq_len;
  const size_t per_micro = static_cast<size_t>(B) * T;
  s.tokens = geo.global_tokens();
  const float loss_scale = 1.0f / static_cast<float>(s.tokens);
  s.attn_window = apply_attention_schedule(&s.attn_scale);
  model_->zero_grad();
  double loss_sum = 0;
  for (int m = 0; m < geo.grad_accum; ++m) {
    t = Clock::now();
    loss_sum += model_->forward(batch.inputs.data() + m * per_micro, batch.targets.data() + m * per_micro, B, T,
                               batch.doc_ids.data() + m * per_micro);
    if (device_step_)
      device_step_->observe_attention_logits();
    else
      optimizer_.observe_attention_logits(model_->max_attention_logits(), cfg_.model.n_head);  // QK-clip, diagnostics
    s.forward_ms += ms_since(t);
    t = Clock::now();
    if (device_step_ && m == geo.grad_accum - 1) device_step_->begin_last_backward();
    model_->backward(loss_scale);
    s.backward_ms += ms_since(t);
  }
  if (device_step_) {  // all-reduce, norm, clipping and the update on the device
    t = Clock::now();
    double loss = loss_sum / geo.grad_accum;
    comm_.allreduce_sum(&loss, 1, "train loss");
    s.train_loss = loss / comm_.world();
    device_step_->allreduce_grads();
    s.comm_ms = ms_since(t);
    check_finite_loss(s.train_loss);
    t = Clock::now();
    s.grad_norm = device_step_->clip_and_step(cfg_.optim.grad_clip, step_);
    s.lr_factor = lr_factor(cfg_.schedule, step_, cfg_.train.steps);
    s.optim_ms = ms_since(t);
    ++step_;
    s.step = step_;
    s.step_ms = ms_since(t_step);
    return s;
  }
  model_->grads_to_host();
  t = Clock::now();
  double loss = loss_sum / geo.grad_accum;
  comm_.allreduce_sum(&loss, 1, "train loss");
  s.train_loss = loss / comm_.world();
  auto& grads = model_->grads();
  comm_.allreduce_sum(grads.data(), grads.size(), "gradients");
  s.comm_ms = ms_since(t);
  check_finite_loss(s.train_loss);

  t = Clock::now();
  s.grad_norm = std::sqrt(cpu::deterministic_sum<double>(grads.size(), [&](size_t i) { return double(grads[i]) * grads[i]; }));
  if (cfg_.optim.grad_clip > 0 && s.grad_norm > cfg_.optim.grad_clip) {
    const float c = static_cast<float>(cfg_.optim.grad_clip / s.grad_norm);
    for (auto& x : grads) x *= c;
  }
  s.lr_factor = lr_factor(cfg_.schedule, step_, cfg_.train.steps);
  optimizer_.step(model_->params().data(), grads.data(), step_);
  model_->params_to_device();
  s.optim_ms = ms_since(t);
  ++step_;
  s.step = step_;
  s.step_ms = ms_since(t_step);
  return s;
}

ValSet::Chunking val_chunking(const Config& cfg, const std::vector<int>& windows) {
  ValSet::Chunking c;
  c.max_len = cfg.batch.seq_len;
  c.align = std::max(1, cfg.model.window_block);
  const int len = cfg.val_seq_len();
  if (len <= c.max_len) return c;
  const long long lookback = cfg.model.lookback_tokens(windows);
  const std::string what = str("data.val_seq_len = ", len, " is longer than batch.seq_len = ", c.max_len,
                               ", so each validation sequence is evaluated in overlapping chunks of ", c.max_len,
                               " tokens");
  if (lookback < 0)
    fail(what, "; that needs a window on every attention layer, but the windows ", format_list(windows),
         " leave one full causal (set data.val_seq_len <= batch.seq_len)");
  if (lookback + c.align - 1 >= c.max_len)
    fail(what, "; the windows ", format_list(windows), " let a token depend on ", lookback,
         " earlier tokens, which leaves no room in a chunk (raise batch.seq_len or lower data.val_seq_len)");
  c.context = static_cast<int>(lookback);
  return c;
}

int Trainer::apply_attention_schedule(double* scale) {
  if (cfg_.schedule.window_warmup.start <= 0 && !cfg_.schedule.window_stages.enabled()) return -1;
  const AttentionSettings a = attention_settings_at(cfg_.model, cfg_.schedule, step_, cfg_.train.steps);
  model_->set_attention(a);
  if (scale) *scale = a.scale;
  return *std::max_element(a.windows.begin(), a.windows.end());
}

double Trainer::evaluate() {
  if (!val_) return NAN;
  apply_attention_schedule();  // the windows (scale, RoPE) of the step the model has reached
  const auto [first, count] = val_->rank_range(comm_.rank(), comm_.world());
  const auto windows = attention_windows_at(cfg_.model, cfg_.schedule, step_, cfg_.train.steps);
  double sum = val_->loss_sum(first, count, cfg_.batch.micro_batch, val_chunking(cfg_, windows),
                              [&](const int32_t* inputs, const int32_t* targets, const int32_t* doc_ids, int n,
                                  int len, std::vector<float>& losses) {
                                model_->forward(inputs, targets, n, len, doc_ids);
                                losses = model_->token_losses();
                              });
  comm_.allreduce_sum(&sum, 1, "val loss");
  return sum / static_cast<double>(val_->num_tokens());
}

std::string Trainer::save_checkpoint(const std::string& dir) {
  const std::string path = (fs::path(dir) / checkpoint_name(step_)).string();
  std::vector<std::pair<std::string, std::vector<float>>> state;  // gathered on rank 0
  if (device_step_) {
    model_->params_to_host();
    for (const std::string& name : device_step_->state_names()) state.emplace_back(name, device_step_->get_state(name));
  } else {
    optimizer_.gather_state(
        [&](const std::string& name, const std::vector<float>& full) { state.emplace_back(name, full); });
  }
  if (!comm_.is_root()) return path;
  std::vector<CheckpointTensor> tensors;
  for (const auto& spec : model_->table().params())
    tensors.push_back({spec.name, model_->params().data() + spec.offset, spec.numel});
  for (const auto& [name, full] : state) tensors.push_back({name, full.data(), full.size()});
  const LoaderPosition pos = loader_->resume_position();
  nlohmann::json header = {
      {"format", "muongpt checkpoint"},
      {"step", step_},
      {"tokens_seen", tokens_seen()},
      {"world_size", comm_.world()},
      {"loader", {{"shard", pos.shard}, {"offset", pos.offset}, {"epoch", pos.epoch}}},
      {"config", config_to_json(cfg_)},
  };
  muongpt::save_checkpoint(path, header, tensors);
  return path;
}

void Trainer::load_checkpoint(const std::string& path) {
  Checkpoint ckpt(path);
  for (const auto& spec : model_->table().params())
    ckpt.read(spec.name, model_->params().data() + spec.offset, spec.numel);
  model_->params_to_device();
  if (device_step_) {
    for (const std::string& name : device_step_->state_names()) {
      std::vector<float> values(optimizer_.state_numel(name));
      ckpt.read(name, values.data(), values.size());
      device_step_->set_state(name, values);
    }
  } else {
    optimizer_.load_state([&](const std::string& name, size_t first, size_t count, float* out) {
      ckpt.read_range(name, optimizer_.state_numel(name), first, count, out);
    });
  }
  const auto& h = ckpt.header();
  try {
    step_ = h.at("step").get<int>();
    LoaderPosition pos;
    pos.shard = h.at("loader").at("shard").get<int>();
    pos.offset = h.at("loader").at("offset").get<int64_t>();
    pos.epoch = h.at("loader").at("epoch").get<int64_t>();
    pos.step = step_;  // the next batch is that of the step after the checkpoint
    loader_->set_position(pos);
  } catch (const nlohmann::json::exception& e) {
    fail("checkpoint ", path, ": incomplete header: ", e.what());
  }
}

// ---------------------------------------------------------------------------

std::string select_device(const std::string& requested, bool verbose) {
  if (requested != "auto" && requested != "cpu" && requested != "cuda")
    fail("--device ", requested, ": expected auto, cpu or cuda");
  const DeviceReport report = detect_devices();
  if (requested == "cpu") return "cpu";
  if (requested == "cuda") {
    if (!report.cuda_built) fail("--device cuda: this build has no CUDA backend (", report.cuda_status, "); use --device cpu");
    if (report.gpus.empty()) fail("--device cuda: ", report.cuda_status, "; use --device cpu");
    const GpuInfo& gpu = report.gpus[0];
    if (gpu.major < 8)
      fail("--device cuda: ", gpu.name, " has compute capability ", gpu.major, ".", gpu.minor,
           "; the CUDA backend needs 8.0 or newer (bf16 tensor cores); use --device cpu");
    return "cuda";
  }
  // auto: one policy for every command (train, bench and its modes). The
  // GPU is chosen only once the CUDA backend has passed its GPU tests on real
  // hardware (kCudaBackendVerified); until then it is used when asked for.
  const bool usable = report.cuda_built && !report.gpus.empty() && report.gpus[0].major >= 8;
  if (usable && kCudaBackendVerified) return "cuda";
  if (verbose && !report.gpus.empty())
    std::printf("note: %s found; the CUDA backend is experimental (pass --device cuda to use it); running on the CPU\n",
                report.gpus[0].name.c_str());
  return "cpu";
}

Config resolve_run_config(const RunOptions& options, std::string& source) {
  if (!options.config_path.empty()) {
    source = options.config_path;
    if (!options.overrides.empty()) source += " (with --set overrides)";
    return load_config(options.config_path, options.overrides);
  }
  if (options.resume && !options.out_dir.empty()) {
    const std::string path = (fs::path(options.out_dir) / "config.json").string();
    if (!fs::exists(path)) fail("--resume without --config: ", path, " does not exist");
    source = path;
    return load_config(path, options.overrides);
  }
  fail("--config FILE is required (or --resume with --out DIR of an existing run)");
}

namespace {

std::string default_out_dir(const Config& cfg, const std::string& config_path) {
  std::string name = cfg.meta.name;
  if (name.empty()) name = fs::path(config_path.empty() ? "run" : config_path).stem().string();
  return (fs::path("runs") / name).string();
}

// Deletes all but the newest `keep` checkpoints.
void prune_checkpoints(const std::string& dir, int keep) {
  if (keep <= 0) return;
  const auto files = list_checkpoints(dir);
  for (size_t i = static_cast<size_t>(keep); i < files.size(); ++i) fs::remove(files[i]);
}

}  // namespace

void run_training(const RunOptions& options) {
  std::unique_ptr<Comm> comm = make_comm();
  const bool root = comm->is_root();
  std::string source;
  Config cfg = resolve_run_config(options, source);
  if (options.seed) cfg.train.seed = *options.seed;
  validate_config(cfg, source, comm->world());
  check_data_files(cfg, source);
  const std::string device = select_device(options.device, root);
  const std::string out_dir = options.out_dir.empty() ? default_out_dir(cfg, options.config_path) : options.out_dir;

  // Never overwrite an earlier run unless asked to continue it.
  std::string resume_from;
  if (options.resume) {
    for (const auto& path : list_checkpoints(out_dir)) {
      try {
        Checkpoint probe(path);
        resume_from = path;
        break;
      } catch (const Error& e) {
        if (root) std::printf("warning: skipping %s\n", e.what());
      }
    }
    if (resume_from.empty() && root)
      std::printf("note: no complete checkpoint in %s: starting from step 0\n", out_dir.c_str());
  } else if (fs::exists(fs::path(out_dir) / "metrics.jsonl") || !list_checkpoints(out_dir).empty()) {
    fail("output directory ", out_dir, " already holds a run; pass --resume to continue it or --out for a new one");
  }

  if (root) {
    fs::create_directories(out_dir);
    write_text_file_atomic(fs::path(out_dir) / "config.json", config_to_json(cfg).dump(2) + "\n");
  }

  Trainer trainer(cfg, source, *comm, device);
  if (!resume_from.empty()) trainer.load_checkpoint(resume_from);
  const int start_step = trainer.step();
  MetricsLog metrics = root ? MetricsLog((fs::path(out_dir) / "metrics.jsonl").string(), resume_from.empty() ? -1 : start_step)
                            : MetricsLog();
  if (root) {
    const auto& m = cfg.model;
    std::printf("muongpt %s | %s | device %s | %s\n", MUONGPT_VERSION, source.c_str(), trainer.model().device().c_str(),
                comm->name().c_str());
    if (!cfg.meta.record.empty()) std::printf("record: %s\n", cfg.meta.record.c_str());
    if (device != "cpu")
      std::printf("optimizer: %s\n", trainer.optimizer_on_device()
                                         ? "on the GPU"
                                         : "on the host (optim.diagnostics_every > 0, dist.gpu_gradients = host, dist.muon = zero1 over several GPUs, or several ranks without NCCL)");
    std::printf("model: %d layers, d_model %d, %d heads, %s params | batch %lld tokens = %d x %d seq x %d accum x %d ranks\n",
                m.n_layer, m.d_model, m.n_head, format_count(static_cast<double>(trainer.model().table().total())).c_str(),
                static_cast<long long>(cfg.batch.global_tokens), cfg.batch.micro_batch, cfg.batch.seq_len,
                trainer.grad_accum(), comm->world());
    if (!cfg.batch.stages.empty())
      std::printf("batch stages: %zu over the %d scheduled steps, from %lld tokens in sequences of %d (muongpt info lists "
                  "them); the extension steps train the batch above\n",
                  cfg.batch.stages.size(), scheduled_steps(cfg.schedule, cfg.train.steps),
                  static_cast<long long>(cfg.batch.stages[0].global_tokens), cfg.batch.stages[0].seq_len);
    std::printf("run directory: %s%s\n", out_dir.c_str(),
                resume_from.empty() ? "" : str(" (resumed from ", resume_from, ", step ", start_step, ")").c_str());
    std::fflush(stdout);
  }

  const auto t_start = Clock::now();
  double train_seconds = 0;  // excludes evaluation and checkpointing
  double last_val = NAN, last_train = NAN;
  auto log_val = [&](double val) {
    last_val = val;
    if (!root) return;
    const double elapsed = std::chrono::duration<double>(Clock::now() - t_start).count();
    metrics.write({{"step", trainer.step()}, {"val_loss", val}, {"elapsed_s", elapsed}});
    std::printf("step %*d/%d | val loss %.4f\n", static_cast<int>(std::to_string(cfg.train.steps).size()),
                trainer.step(), cfg.train.steps, val);
    std::fflush(stdout);
  };
  int last_saved_step = -1;
  auto save = [&] {
    const std::string path = trainer.save_checkpoint(out_dir);
    last_saved_step = trainer.step();
    if (root) prune_checkpoints(out_dir, cfg.train.keep_checkpoints);
    return path;
  };

  if (start_step == 0 && cfg.train.eval_every > 0) log_val(trainer.evaluate());
  std::string last_checkpoint;
  const int width = static_cast<int>(std::to_string(cfg.train.steps).size());
  int timed_steps = 0;
  double timed_tokens = 0;  // tokens of the timed steps (batch.stages vary them)
  const double total_tokens = static_cast<double>(tokens_before(cfg.batch, cfg.schedule, cfg.train.steps, cfg.train.steps));
  while (trainer.step() < cfg.train.steps) {
    const StepStats s = trainer.train_step();
    last_train = s.train_loss;
    // The first step includes one-off costs (page faults, thread start-up); keep it out of the rate.
    if (trainer.step() > start_step + 1 || cfg.train.steps - start_step == 1) {
      train_seconds += s.step_ms / 1000.0;
      timed_tokens += static_cast<double>(s.tokens);
      ++timed_steps;
    }
    if (root) {
      const double tok_s = timed_steps ? timed_tokens / train_seconds : static_cast<double>(s.tokens) / (s.step_ms / 1000.0);
      const std::vector<double> lrs = trainer.optimizer().group_lrs(s.step - 1);
      nlohmann::json rec = {{"step", s.step},           {"train_loss", s.train_loss}, {"lr_factor", s.lr_factor},
                            {"grad_norm", s.grad_norm}, {"tokens", trainer.tokens_seen()},
                            {"step_ms", s.step_ms},     {"tokens_per_s", tok_s}};
      if (!cfg.batch.stages.empty()) rec["batch_tokens"] = s.tokens;
      if (s.attn_window >= 0) rec["attn_window"] = s.attn_window;
      if (cfg.schedule.window_stages.enabled()) rec["attn_scale"] = s.attn_scale;
      if (!trainer.optimizer_on_device()) {  // the device optimizer does not measure the update RMS
        nlohmann::json update_rms;
        const auto& groups = trainer.optimizer().config().groups;
        for (size_t g = 0; g < groups.size(); ++g) update_rms[groups[g].name] = trainer.optimizer().last_update_rms()[g];
        rec["update_rms"] = update_rms;
      }
      const OptimDiagnostics& diag = trainer.optimizer().diagnostics();
      if (diag.step == s.step - 1) rec["diagnostics"] = diag.to_json(cfg.optim);
      metrics.write(rec);
      if (s.step % cfg.train.log_every == 0 || s.step == cfg.train.steps) {
        const double eta = (total_tokens - static_cast<double>(trainer.tokens_seen())) / tok_s;
        std::printf("step %*d/%d | loss %.4f | lr %.2e | %s tok/s | %.0f ms | ETA %s\n", width, s.step,
                    cfg.train.steps, s.train_loss, lrs.empty() ? 0.0 : lrs[0],
                    format_count(tok_s).c_str(), s.step_ms, format_duration(eta).c_str());
        std::fflush(stdout);
      }
    }
    const bool last = trainer.step() == cfg.train.steps;
    if (last || (cfg.train.eval_every > 0 && trainer.step() % cfg.train.eval_every == 0)) log_val(trainer.evaluate());
    if (last || (cfg.train.checkpoint_every > 0 && trainer.step() % cfg.train.checkpoint_every == 0))
      last_checkpoint = save();
    if (!last && options.stop_at_step > 0 && trainer.step() == options.stop_at_step) {
      if (last_saved_step != trainer.step()) last_checkpoint = save();
      if (root)
        std::printf("stopped after step %d as asked (--stop-at-step); checkpoint %s; continue with --resume\n",
                    trainer.step(), last_checkpoint.c_str());
      return;
    }
  }
  if (start_step == cfg.train.steps) {  // resumed a finished run: still report its numbers
    last_val = trainer.evaluate();
    last_checkpoint = resume_from;
  }

  if (root) {
    const double tok_s = timed_steps ? timed_tokens / train_seconds : 0.0;
    nlohmann::json summary = {
        {"name", cfg.meta.name.empty() ? fs::path(out_dir).filename().string() : cfg.meta.name},
        {"steps", trainer.step()},
        {"tokens", trainer.tokens_seen()},
        {"final_val_loss", std::isnan(last_val) ? nlohmann::json(nullptr) : nlohmann::json(last_val)},
        {"final_train_loss", std::isnan(last_train) ? nlohmann::json(nullptr) : nlohmann::json(last_train)},
        {"train_seconds", train_seconds},
        {"tokens_per_s", tok_s},
        {"device", device},
        {"world_size", comm->world()},
        {"checkpoint", last_checkpoint},
        {"config", source},
    };
    if (cfg.meta.target_val_loss > 0) summary["target_val_loss"] = cfg.meta.target_val_loss;
    write_text_file_atomic(fs::path(out_dir) / "summary.json", summary.dump(2) + "\n");
    std::printf("done: %d steps, final val loss %.4f | log %s | checkpoint %s\n", trainer.step(), last_val,
                (fs::path(out_dir) / "metrics.jsonl").c_str(), last_checkpoint.c_str());
  }
}

}  // namespace muongpt
