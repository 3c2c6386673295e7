// Typed configuration: model, data, batch, schedule, optimizer groups, trainer.
//
// Each struct lists its fields once, in visit(): the same list drives reading
// from JSON (with type checks and unknown-key errors that name the file and
// the key path), writing the resolved config back to JSON, and the generated
// reference table in the README (`muongpt info --config-reference`).
//
//   v(key, field, "description")                  any scalar, string or list
//   v(key, field, "description", {"a", "b"})      a string restricted to choices
//   v(key, nested_struct, "description")          a JSON object
//   v(key, vector_of_structs, "description")      a JSON array of objects
#pragma once

#include <algorithm>
#include <array>
#include <optional>
#include <string>
#include <vector>

namespace muongpt {

struct InitConfig {
  double std = 0.02;               // normal init of linear weights
  double embed_std = 0.02;         // normal init of embeddings (and the tied head)
  std::string linear = "normal";   // "normal" or "uniform"
  double uniform_gain = 1.0;       // uniform bound = gain / sqrt(fan_in)
  bool scale_proj_by_depth = false;  // output projections: std / sqrt(2 * n_layer)
  bool zero_proj = false;          // zero-init attention and MLP output projections
  bool zero_head = false;          // zero-init an untied lm_head
  double skip_weight = 1.0;        // initial U-net skip weights
  double backout_lambda = 0.5;     // initial backout coefficient (model.backout_layer)
  std::vector<double> x0_lambdas = {1.0, 0.0};  // initial (l0, l1) of the x0 shortcut

  template <class V>
  void visit(V& v) {
    v("std", std, "standard deviation of normal-initialised linear weights");
    v("embed_std", embed_std, "standard deviation of token/position embeddings (and a tied head)");
    v("linear", linear, "initialisation of linear weights", {"normal", "uniform"});
    v("uniform_gain", uniform_gain, "uniform init bound is gain/sqrt(fan_in) (1.0 = PyTorch default)");
    v("scale_proj_by_depth", scale_proj_by_depth, "divide output-projection init by sqrt(2*n_layer) (GPT-2)");
    v("zero_proj", zero_proj, "zero-initialise attention and MLP output projections");
    v("zero_head", zero_head, "zero-initialise the lm_head (untied only)");
    v("skip_weight", skip_weight, "initial value of the U-net skip weights (record #32 on: -1.5 under a sigmoid gate)");
    v("backout_lambda", backout_lambda, "initial value of backout.lambda (model.backout_layer; record #40: 0.5)");
    v("x0_lambdas", x0_lambdas,
      "initial [l0, l1] of every block's x0 shortcut x = l0*x + l1*x0 (blocks.*.x0_lambdas; record #45 on: "
      "[1.1, 0.0])");
  }
};

struct ModelConfig {
  int vocab_size = 50257;
  int padded_vocab_size = 50304;
  int n_layer = 4;
  int n_head = 4;
  int d_model = 128;
  int mlp_hidden = 0;  // 0 = 4 * d_model
  int max_seq_len = 1024;
  std::string pos_embedding = "rope";
  double rope_base = 10000.0;
  std::string rope_frequencies = "standard";
  std::string norm = "rmsnorm";
  bool norm_weight = false;
  double norm_eps = 1e-6;
  bool embed_norm = false;
  std::string qkv = "fused";
  bool bias = false;
  bool qk_norm = false;
  std::string qk_norm_position = "before_rope";
  std::optional<double> attn_scale;
  std::string activation = "relu2";
  bool tie_embeddings = true;
  double logit_softcap = 0.0;
  bool mask_padded_logits = false;
  double attn_residual_scale = 1.0;
  bool value_residual = false;
  int value_embeds = 0;                 // value-embedding tables (Vp, C)
  std::vector<int> value_embed_layers;  // table of each layer, -1 = none
  std::string value_mix = "lerp";
  bool x0_shortcut = false;
  bool unet_skips = false;
  std::string unet_skip_gate = "none";
  int unet_skip_blocks = 0;  // decoder blocks that take a skip, from the middle; 0 = all n_layer/2
  std::vector<int> unet_skip_layers;  // the decoder blocks that take a skip; [] = per unet_skip_blocks
  int smear_gate_dims = 0;  // smear the previous token's embedding in, gated from the first K channels; 0 = none
  std::vector<int> attention_free_layers;  // blocks with only the MLP
  std::vector<int> mlp_free_layers;        // blocks with only the attention
  int attn_gate_dims = 0;                  // attention output gate from the first K input channels; 0 = none
  int backout_layer = -1;  // the final norm reads x_L - lambda * (state after this block); -1 = none
  std::vector<int> attn_window;  // per layer; empty = full causal everywhere
  int window_block = 0;          // 0 = token-exact windows
  std::string window_counts = "keys";
  bool document_mask = false;
  std::string attention_kernel = "auto";  // CUDA backend only
  InitConfig init;

  int hidden() const { return mlp_hidden > 0 ? mlp_hidden : 4 * d_model; }
  int head_dim() const { return d_model / n_head; }
  // Sliding-window size of layer l in tokens (0 = full causal).
  // window_counts "previous" adds the query's own token (FlashAttention's window_size = (w, 0)).
  int window(int layer) const { return window_in(attn_window, layer); }
  // The same for per-layer windows `windows` given as model.attn_window.
  int window_in(const std::vector<int>& windows, int layer) const {
    if (windows.empty()) return 0;
    const int w = windows.size() == 1 ? windows[0] : windows[static_cast<size_t>(layer)];
    return w > 0 && window_counts == "previous" ? w + 1 : w;
  }
  double softmax_scale() const;
  // False for the blocks listed in attention_free_layers (no attention
  // sublayer, no attention parameters).
  bool has_attention(int layer) const;
  // False for the blocks listed in mlp_free_layers (no MLP sublayer, no MLP parameters).
  bool has_mlp(int layer) const;
  // A block with neither sublayer (in both lists) is skipped whole: no x0
  // shortcut, no U-net skip, no parameters (record #35's first block).
  bool is_skipped(int layer) const { return !has_attention(layer) && !has_mlp(layer); }
  // How many earlier tokens one position's logits can depend on under the
  // per-layer windows `windows` (as model.attn_window): the sum over the
  // attention blocks of (keys a query sees - 1), plus one for the smear.
  // -1 when unbounded (an attention block without a window).
  long long lookback_tokens(const std::vector<int>& windows) const;
  // Whether block `layer` starts with the x0 shortcut (x0_shortcut, not skipped).
  bool has_x0_mix(int layer) const { return x0_shortcut && !is_skipped(layer); }
  // Value-embedding table that layer mixes into its V, or -1.
  int value_embed_table(int layer) const;
  // U-net skips: the residual-stream boundary (the state after encoder block
  // enc - 1 - i, enc = n_layer / 2) whose state decoder block `layer` = enc + i
  // adds, or -1 (no skips, or an encoder block).
  int unet_skip_source(int layer) const;
  // Logits the softmax covers: vocab_size with mask_padded_logits, else all padded rows.
  int softmax_vocab() const { return mask_padded_logits ? vocab_size : padded_vocab_size; }
  // Whether layer owns value-mix lambdas (attn.value_lambda): every attention
  // layer under weighted mixing, those whose V has a source (value residual or
  // a value embedding) under lerp.
  bool has_value_lambda(int layer) const;
  // How attention block `layer` mixes V, v = a * v_raw + c * source, with a and
  // c constants or its value lambdas l0, l1 (the one rule both models follow):
  //   no attn.value_lambda   v = v_raw                      a = 1, c = 0, no source
  //   lerp                   v = (1 - l0) v_raw + l0 s      s = layer 0's v_raw (value residual)
  //                                                         or the layer's value-embedding table
  //   weighted               v = l0 v_raw + l1 s            without a source: v = l0 v_raw
  struct ValueMixPlan {
    enum class Coef { one, zero, lambda0, one_minus_lambda0, lambda1 };
    bool learned = false;        // the layer has attn.value_lambda
    bool first_layer_v = false;  // the source is layer 0's v_raw
    int table = -1;              // the source is this value-embedding table
    Coef a = Coef::one, c = Coef::zero;
    bool has_source() const { return first_layer_v || table >= 0; }
  };
  ValueMixPlan value_mix_plan(int layer) const;

  template <class V>
  void visit(V& v) {
    v("vocab_size", vocab_size, "tokenizer vocabulary size (GPT-2: 50257)");
    v("padded_vocab_size", padded_vocab_size, "rows of the embedding/head, >= vocab_size (speedrun: 50304)");
    v("n_layer", n_layer, "number of transformer blocks");
    v("n_head", n_head, "attention heads per block; must divide d_model");
    v("d_model", d_model, "width of the residual stream");
    v("mlp_hidden", mlp_hidden, "MLP hidden width; 0 means 4*d_model");
    v("max_seq_len", max_seq_len, "longest sequence the model accepts (rows of a learned position table)");
    v("pos_embedding", pos_embedding, "position information", {"rope", "learned", "none"});
    v("rope_base", rope_base, "RoPE base frequency");
    v("rope_frequencies", rope_frequencies,
      "RoPE frequencies: standard = base^(-2i/D) for the D/2 pairs; half_truncated = (1/base)^(k/(D/4-1)) for "
      "the first D/4 pairs and 0 (no rotation) for the rest (record #17 on, with rope_base 1024)",
      {"standard", "half_truncated"});
    v("norm", norm, "normalisation layer", {"rmsnorm", "layernorm"});
    v("norm_weight", norm_weight, "RMSNorm with a learned gain (LayerNorm always has weight and bias)");
    v("norm_eps", norm_eps, "epsilon inside the norm's square root");
    v("embed_norm", embed_norm, "normalise the token embedding before the first block");
    v("qkv", qkv, "one fused (3d x d) q/k/v matrix or three separate ones", {"fused", "separate"});
    v("bias", bias, "biases on all linear layers except the head (GPT-2)");
    v("qk_norm", qk_norm, "RMS-normalise q and k per head (no weight)");
    v("qk_norm_position", qk_norm_position, "QK-norm before or after RoPE", {"before_rope", "after_rope"});
    v("attn_scale", attn_scale, "softmax scale; null means 1/sqrt(head_dim) (speedrun later used 0.12)");
    v("activation", activation, "MLP nonlinearity (gelu = tanh approximation)", {"gelu", "relu2"});
    v("tie_embeddings", tie_embeddings, "share the token embedding with the lm_head");
    v("logit_softcap", logit_softcap, "logits = c*tanh(logits/c); 0 disables");
    v("mask_padded_logits", mask_padded_logits,
      "exclude padded vocabulary columns from the softmax (llm.c); false = softmax over all (speedrun)");
    v("attn_residual_scale", attn_residual_scale, "multiplier on the attention branch before the residual add");
    v("value_residual", value_residual, "mix the first block's V into every block's V (see value_mix)");
    v("value_embeds", value_embeds,
      "number of value-embedding tables (padded_vocab_size x d_model, params value_embeds.K); a layer mixes "
      "its table's row for each token into V (see value_mix; record #14 on)");
    v("value_embed_layers", value_embed_layers,
      "table each layer mixes into V, -1 = none, one entry per layer; [] means layer l uses table l (needs "
      "value_embeds = n_layer). Record #15: [0,1,2,3,4,5,5,4,3,2,1,0]; #17: [0,1,2,-1,-1,-1,-1,-1,-1,0,1,2]");
    v("value_mix", value_mix,
      "how V and its source s (value residual or embedding) mix: lerp = (1-l)*v + l*s with one learned l "
      "(init 0.5; records #9-#14), weighted = l0*v + l1*s with two (init 0.5, 0.5; #15 on; a layer without a "
      "source keeps l0*v)",
      {"lerp", "weighted"});
    v("x0_shortcut", x0_shortcut, "each block starts with x = l0*x + l1*x0 (x0 = first-block input)");
    v("unet_skips", unet_skips, "U-net: decoder block i adds w_i * (output of encoder block L/2-1-i)");
    v("unet_skip_blocks", unet_skip_blocks,
      "how many decoder blocks, from the middle on, add a skip (record #35: 5 of 6, the last block none); "
      "0 = all n_layer/2");
    v("unet_skip_layers", unet_skip_layers,
      "the decoder blocks (n_layer/2 <= l < n_layer) that add their U-net skip, each the state its mirror rule "
      "gives (block n_layer/2 + i adds the output of block n_layer/2 - 1 - i, weight skip_weights[i]); [] = the "
      "first unet_skip_blocks of them. Record #45 on: [7] (one skip, block 4's output into block 7)");
    v("unet_skip_gate", unet_skip_gate,
      "none = the skip is added times its weight w; sigmoid = times sigmoid(w) (record #32 on, init.skip_weight -1.5)",
      {"none", "sigmoid"});
    v("smear_gate_dims", smear_gate_dims,
      "smear (record #34): each token's embedding e_t gets lambda*sigmoid(e_t[:K] . w)*e_{t-1} added before the "
      "embedding norm (smear.gate.weight (1, K) and smear.lambda, both zero-initialised); 0 = none (#34 on: 12)");
    v("attention_free_layers", attention_free_layers,
      "blocks without an attention sublayer (only the MLP; record #17 drops layer 7's)");
    v("mlp_free_layers", mlp_free_layers,
      "blocks without an MLP sublayer (record #30 drops layer 0's); a block also in attention_free_layers is "
      "skipped whole, its x0 shortcut and U-net skip too (record #35's block 0)");
    v("attn_gate_dims", attn_gate_dims,
      "attention output gate (record #28): head h's output at token n is scaled by sigmoid(x[n,:K] . W_h), x = the "
      "attention input, W (n_head, K) zero-initialised (blocks.*.attn.gate.weight); 0 = none (#28 on: 12)");
    v("backout_layer", backout_layer,
      "backout (record #40): the final norm reads x_L - lambda * x_b, x_b the residual stream after block b = "
      "backout_layer and x_L the last block's output (backout.lambda, one scalar, init.backout_lambda); -1 = none "
      "(#40 on: 8)");
    v("attn_window", attn_window,
      "sliding attention window in tokens: [] = full causal, [w] = every layer, or one entry per layer (0 = full)");
    v("window_block", window_block,
      "0 = a query sees the previous w tokens; b > 0 = windows count whole b-token blocks: query t sees key j "
      "when floor(t/b) - floor(j/b) < w/b (record #16 on: 128); windows must be multiples of b");
    v("window_counts", window_counts,
      "what a token window w counts: keys = w keys including the query's own (t - j < w; FlexAttention records), "
      "previous = the query and the w tokens before it (t - j <= w; FlashAttention's window_size = (w, 0), records "
      "#29 on); needs window_block 0",
      {"keys", "previous"});
    v("document_mask", document_mask,
      "tokens attend only within their own document (each document starts at its end-of-text token, id 50256)");
    v("attention_kernel", attention_kernel,
      "attention implementation of the CUDA backend (the CPU ignores it): tensor_cores (mma.sync, head dim 64 or "
      "128), cuda_cores (fp32, any head dim), auto (tensor cores where they apply once verified on a GPU, else "
      "CUDA cores)",
      {"auto", "cuda_cores", "tensor_cores"});
    v("init", init, "parameter initialisation");
  }
};

// What a model's attention uses in the following forwards; the trainer sets
// it every step from the schedule (attention_settings_at, optim/schedule.h).
struct AttentionSettings {
  std::vector<int> windows;        // as model.attn_window (0 = full causal)
  double scale = 0.0;              // softmax scale
  std::vector<double> rope_freqs;  // angular frequency of each of the head_dim/2 RoPE pairs; empty without RoPE
};

// Throws Error unless `windows` is a valid model.attn_window for `model`
// (empty, one entry, or one per layer; every entry >= 0).
void check_attention_windows(const ModelConfig& model, const std::vector<int>& windows);

struct DataConfig {
  std::string train_pattern = "data/tiny/train_*.bin";
  std::string val_pattern = "data/tiny/val_*.bin";
  long long val_tokens = 65536;
  int val_seq_len = 0;  // 0 = batch.seq_len
  bool bos_aligned = false;
  int max_doc_len = 0;

  template <class V>
  void visit(V& v) {
    v("train_pattern", train_pattern, "glob of training shards (read in sorted order)");
    v("val_pattern", val_pattern, "glob of validation shards");
    v("val_tokens", val_tokens, "evaluate on the first N tokens of the val shards, in sequences of data.val_seq_len (the last one shorter when it does not divide N)");
    v("val_seq_len", val_seq_len,
      "tokens per validation sequence (0 = batch.seq_len); longer than batch.seq_len needs RoPE or no positions and "
      "a window on every attention layer: each sequence is then evaluated in overlapping chunks of batch.seq_len, "
      "exact up to rounding (docs/attention.md)");
    v("bos_aligned", bos_aligned,
      "every training sequence starts at a document start; documents are packed and the one that does not fit "
      "is cut (the rest of it is skipped)");
    v("max_doc_len", max_doc_len, "with bos_aligned: cut each document to at most this many tokens (0 = no limit)");
  }
};

// One stage of a batch-size schedule (batch.stages).
struct BatchStageConfig {
  long long global_tokens = 0;
  int seq_len = 0;

  template <class V>
  void visit(V& v) {
    v("global_tokens", global_tokens, "tokens per optimizer step over all ranks in this stage");
    v("seq_len", seq_len, "tokens per sequence in this stage (at most batch.seq_len)");
  }
};

struct BatchConfig {
  long long global_tokens = 8192;
  int micro_batch = 8;
  int seq_len = 128;
  std::vector<BatchStageConfig> stages;

  template <class V>
  void visit(V& v) {
    v("global_tokens", global_tokens, "tokens per optimizer step over all ranks");
    v("micro_batch", micro_batch, "sequences per forward/backward on one rank");
    v("seq_len", seq_len, "tokens per sequence");
    v("stages", stages,
      "batch-size schedule (record #46): K stages [{global_tokens, seq_len}, ...]; step s < N = train.steps - "
      "schedule.extension_steps trains with stage floor(K*s/N), the extension steps with global_tokens and "
      "seq_len above, which also size the buffers (every stage's seq_len <= seq_len) and the validation chunks; "
      "[] = one batch for every step");
  }
};

// Attention-window warmup (speedrun record #13): every layer with a window
// W > 0 in model.attn_window starts at `start` tokens and grows linearly to W
// over `steps` steps, rounded down to a multiple of `multiple`:
//   w(step) = multiple * floor((start + min(step/steps, 1) * (W - start)) / multiple)
// (or to the nearest multiple). With layers = "proportional" only the largest
// window W_max follows that rule, n = w(step)/multiple multiples, and a layer
// whose final window is W gets multiple * max(1, floor(n * W / W_max)): record
// #20's long/short windows, the short ones always half the long, rounded down.
// Layers with window 0 stay full causal. start = 0 turns the warmup off.
struct WindowWarmupConfig {
  int start = 0;
  int multiple = 64;
  int steps = 0;
  std::string rounding = "down";
  std::string layers = "independent";

  template <class V>
  void visit(V& v) {
    v("start", start, "window of every windowed layer at step 0 in tokens; 0 = no warmup (windows fixed)");
    v("multiple", multiple, "windows are rounded to a multiple of this many tokens");
    v("rounding", rounding,
      "down = multiple*floor(w/multiple) (record #13), nearest = multiple*floor(w/multiple + 1/2) (#16 on)",
      {"down", "nearest"});
    v("steps", steps, "steps over which the windows grow from start to model.attn_window; 0 = train.steps");
    v("layers", layers,
      "independent = every windowed layer grows from start to its own model.attn_window; proportional = the "
      "largest window follows the schedule (n multiples) and a layer with final window W gets "
      "multiple*max(1, floor(n*W/W_max)) (records #20 on: short windows half the long one, whole blocks)",
      {"independent", "proportional"});
  }
};

// Stepped attention windows (records #29 on): training is cut into K equal
// stages, K = len(windows); step s < N (N = the scheduled steps) runs stage
// floor(K * s / (N + 1)) (or floor(K * s / N), stage_divisor), the extension
// steps extension_window (when set) and the evaluation after the last step
// final_eval. In a stage the
// largest layer of model.attn_window sees windows[k] tokens, and a layer whose
// model.attn_window entry is W gets b * max(1, floor(n * W / W_max)) with
// n = windows[k] / b and b = multiple (0: model.window_block, or 1 when that
// is 0): model.attn_window gives each layer's share (records: long layers
// 2W, short layers W).
// Window-dependent attention (record #31), for the windows in order of first
// use w_0, w_1, ... (the stages, then final_eval):
//   scale(w_0) = model.attn_scale; scale(w_j) = scale(w_{j-1}) * (1 + scale_log_factor * ln(w_j / w_{j-1}))
//   YaRN (arXiv 2309.00071): at each change of window w -> w', every RoPE pair's angular
//   frequency f becomes f * (r + g * (1 - r)) with r = w / w' and g = clamp((w f / (2 pi) - alpha) / (beta - alpha), 0, 1):
//   pairs that turn less than alpha times over the old window are interpolated, more than beta kept.
struct WindowStagesConfig {
  std::vector<int> windows;
  int multiple = 0;
  std::string stage_divisor = "steps_plus_one";
  int extension_window = 0;
  int final_eval = 0;
  std::vector<int> final_eval_windows;
  double scale_log_factor = 0.0;
  bool yarn = false;
  double yarn_alpha = 1.0;
  double yarn_beta = 32.0;

  template <class V>
  void visit(V& v) {
    v("windows", windows,
      "largest layer's window in tokens in each of K equal stages of training (records #29 on); [] = off; other "
      "windowed layers keep their model.attn_window share in whole multiples (see multiple)");
    v("multiple", multiple,
      "unit of the shares: a layer gets multiple*max(1, floor(n*W/W_max)), n = stage window / multiple (records "
      "#29 on: 128, short windows (ws // 2) blocks); 0 = model.window_block, or 1 token");
    v("stage_divisor", stage_divisor,
      "training step s (of N scheduled steps) runs stage floor(K*s/(N+1)) (steps_plus_one, records #29-#41) or "
      "floor(K*s/N) (steps, records #42 on)",
      {"steps_plus_one", "steps"});
    v("extension_window", extension_window,
      "largest layer's window during the schedule.extension_steps, a stage of its own (YaRN and scale follow it; "
      "records #42 on: 1,664); 0 = the extension steps stay in the last stage");
    v("final_eval", final_eval, "largest layer's window at the evaluation after the last step (record #31: longer "
                                "than training's); 0 = the window of the last step");
    v("final_eval_windows", final_eval_windows,
      "per layer, a window for the evaluation after the last step that replaces the rule's (0 = keep it); the scale "
      "and YaRN still follow final_eval (records #33 on: the long layers' 2,560 tokens); [] = none");
    v("scale_log_factor", scale_log_factor,
      "attention scale per window: model.attn_scale at the first, times (1 + f*ln(w_new/w_old)) at each new window "
      "(record #31: 0.2); 0 = constant");
    v("yarn", yarn, "rescale RoPE frequencies at each window change (YaRN, record #31); needs rope");
    v("yarn_alpha", yarn_alpha, "YaRN: pairs with fewer turns than this over the old window are fully interpolated");
    v("yarn_beta", yarn_beta, "YaRN: pairs with more turns than this over the old window keep their frequency");
  }
  bool enabled() const { return !windows.empty(); }
  int share_unit(int window_block) const { return multiple > 0 ? multiple : std::max(1, window_block); }
  // The largest layer's window in order: the K stages, the extension window
  // (when set), then the evaluation after the last step.
  std::vector<int> window_sequence() const;
  // The windows in order of first use (window_sequence), each once.
  std::vector<int> distinct_windows() const;
};

// A step change of the wsd schedule's peak (schedule.peak_changes).
struct LrPeakChange {
  double after = 0.0;
  double peak = 1.0;

  template <class V>
  void visit(V& v) {
    v("after", after, "the change applies from the first step with s/N > after (N = scheduled steps)");
    v("peak", peak, "lr factor from then on, and where the cooldown starts from");
  }
};

struct ScheduleConfig {
  std::string kind = "wsd";
  int warmup_steps = 0;
  int extension_steps = 0;
  std::string extension_lr = "hold";
  double cooldown_frac = 0.4;
  double final_lr_frac = 0.0;
  std::vector<LrPeakChange> peak_changes;
  WindowWarmupConfig window_warmup;
  WindowStagesConfig window_stages;

  template <class V>
  void visit(V& v) {
    v("kind", kind, "learning-rate shape after warmup", {"constant", "wsd", "cosine", "linear"});
    v("warmup_steps", warmup_steps, "linear warmup: factor (step+1)/warmup_steps for the first steps");
    v("extension_steps", extension_steps,
      "the last E of train.steps run at the schedules' final values: lr, window warmup and window stages are laid "
      "over train.steps - E (record #35: 1,640 + 40); the evaluation after the last step is unchanged");
    v("extension_lr", extension_lr,
      "the lr over the extension steps: hold = the schedule's final value; clamp = the speedrun's get_lr, whose "
      "x = min(0.9999, s/N) leaves the factor just above it (records #35-#40, #42 on); continue = the lr schedule "
      "spans all train.steps while the window schedules end at train.steps - E (record #41)",
      {"hold", "clamp", "continue"});
    v("cooldown_frac", cooldown_frac, "wsd: fraction of steps spent in the final linear cooldown");
    v("final_lr_frac", final_lr_frac, "lr factor reached at the last step (wsd, cosine, linear)");
    v("peak_changes", peak_changes,
      "wsd: the factor before the cooldown (1 by default) steps to peak once s/N > after, in increasing order of "
      "after; the cooldown then runs from the current peak: factor = peak*w + (1 - w)*final_lr_frac, w = (1 - "
      "s/N)/cooldown_frac (record #46: [{0.33, 1.51}, {0.66, 1.93}], (batch ratio)^0.6 with batch.stages)");
    v("window_warmup", window_warmup,
      "attention windows growing over training (record #13 on): w = start + min(step/steps,1)*(W - start), "
      "rounded to a multiple (see rounding), for each layer's model.attn_window W > 0");
    v("window_stages", window_stages,
      "attention windows in K equal stages (records #29 on), with a window-dependent attention scale and YaRN "
      "(record #31); excludes window_warmup");
  }
};

struct NewtonSchulzConfig {
  std::string coefficients = "quintic";
  int steps = 5;
  std::vector<std::vector<double>> custom;
  double norm_scale = 1.0;
  double norm_eps = 1e-7;

  template <class V>
  void visit(V& v) {
    v("coefficients", coefficients, "coefficient table: quintic (3.4445,-4.7750,2.0315), Polar Express, custom",
      {"quintic", "polar_express", "custom"});
    v("steps", steps, "iterations; quintic repeats its triple, polar_express has 5 (more repeat the last)");
    v("custom", custom, "custom table [[a,b,c], ...], one triple per iteration");
    v("norm_scale", norm_scale, "X0 = G / (norm_scale*||G||_F + norm_eps) (Polar Express uses 1.02)");
    v("norm_eps", norm_eps, "epsilon of the Frobenius normalisation");
  }
  std::vector<std::array<double, 3>> table() const;
};

// NorMuon (Li et al. 2025, arXiv 2510.05491; speedrun record 41): after
// Newton-Schulz, each row (or column) of O is divided by the root of an EMA of
// its mean square, then O is rescaled to its old Frobenius norm.
struct NorMuonConfig {
  bool enabled = false;
  double beta2 = 0.95;
  std::string axis = "auto";

  template <class V>
  void visit(V& v) {
    v("enabled", enabled, "normalise the orthogonalised update per row/column by an EMA of its mean square");
    v("beta2", beta2, "EMA factor of the second moment (speedrun: 0.95 in record 41, 0.9 later)");
    v("axis", axis,
      "rows: one statistic per row (output neuron); cols: per column; auto: rows when rows >= cols, else cols "
      "(speedrun)",
      {"auto", "rows", "cols"});
  }
};

struct OptimGroupConfig {
  std::string name;
  std::string type = "adamw";
  std::vector<std::string> params;
  double lr = 1e-3;
  double weight_decay = 0.0;
  // AdamW
  std::vector<double> betas = {0.9, 0.95};
  double eps = 1e-8;
  int update_every = 1;  // update on every k-th step with the gradients summed over those k steps
  // Muon
  double momentum = 0.95;
  double momentum_warmup_start = 0.0;  // 0 = no warmup
  int momentum_warmup_steps = 0;
  int momentum_cooldown_steps = 0;        // 0 = no cooldown
  double momentum_cooldown_start = 0.0;   // 0 = momentum
  double momentum_cooldown_end = 0.85;
  bool nesterov = true;
  std::string momentum_form = "ema";
  std::string update_scale = "original";
  NewtonSchulzConfig ns;
  bool cautious_weight_decay = false;
  std::string weight_decay_schedule = "lr";
  NorMuonConfig normuon;
  std::string per_head = "none";
  int heads_per_block = 1;

  // One example of each type, for the generated config reference.
  static std::vector<OptimGroupConfig> doc_variants();

  template <class V>
  void visit(V& v) {
    v("name", name, "group name, used in logs and checkpoints");
    v("type", type, "optimizer", {"muon", "adamw"});
    v("params", params, "glob patterns of parameter names (see `muongpt info`); first matching group wins");
    v("lr", lr, "base learning rate (multiplied by the schedule)");
    v("weight_decay", weight_decay, "decoupled weight decay: w -= lr*wd*w");
    if (type == "adamw") {
      v("betas", betas, "AdamW (beta1, beta2)");
      v("eps", eps, "AdamW epsilon");
      v("update_every", update_every,
        "update on every k-th step (steps k-1, 2k-1, ...) with the gradients of those k steps summed, "
        "Adam's step count t advancing once per update; 1 = every step (speedrun record 39: 2)");
    } else {
      v("momentum", momentum, "Muon momentum");
      v("momentum_warmup_start", momentum_warmup_start, "momentum at step 0 (linear warmup); 0 disables");
      v("momentum_warmup_steps", momentum_warmup_steps, "steps of the momentum warmup");
      v("momentum_cooldown_steps", momentum_cooldown_steps,
        "C > 0: over the last C steps of the run (s > S = train.steps - C) the momentum falls linearly, "
        "start - (s - S)/C * (start - end) (speedrun record 39: 50; C > train.steps starts partway down); 0 disables");
      v("momentum_cooldown_start", momentum_cooldown_start, "momentum the cooldown falls from (0 = momentum)");
      v("momentum_cooldown_end", momentum_cooldown_end, "momentum the cooldown falls towards");
      v("nesterov", nesterov, "Nesterov momentum");
      v("momentum_form", momentum_form,
        "sum: buf=mu*buf+g, g+mu*buf (2024); ema: buf=lerp(buf,g,1-mu), lerp(g,buf,mu)", {"sum", "ema"});
      v("update_scale", update_scale,
        "original: sqrt(max(1,rows/cols)); match_rms_adamw: 0.2*sqrt(max(rows,cols)) (Moonlight); "
        "sqrt_max_dim: sqrt(max(rows,cols)) (Oct 2024); none",
        {"original", "match_rms_adamw", "sqrt_max_dim", "none"});
      v("ns", ns, "Newton-Schulz orthogonalisation");
      v("cautious_weight_decay", cautious_weight_decay,
        "decay only the elements where the update direction and the weight have the same sign, O*w >= 0 "
        "(Cautious WD, arXiv 2510.12402; speedrun record 43)");
      v("weight_decay_schedule", weight_decay_schedule,
        "lr: w -= lr*wd*w (decoupled, PyTorch/Moonlight); lr_squared: w -= (lr*scale)*(wd*lr)*w, the decay "
        "coefficient itself follows the lr schedule and is applied with the update's lr (speedrun CWD records)",
        {"lr", "lr_squared"});
      v("normuon", normuon, "NorMuon per-neuron normalisation of the orthogonalised update");
      v("per_head", per_head,
        "orthogonalise attention matrices one head block (head_dim x d_model) at a time: qk = q and k, "
        "qkv = q, k and v; none = whole matrices (fused qkv: its three blocks)",
        {"none", "qk", "qkv"});
      v("heads_per_block", heads_per_block, "heads in each separately orthogonalised block (speedrun record 80: 2)");
    }
  }
};

// QK-clip (Kimi K2's MuonClip, arXiv 2507.20534): after each step, every head
// whose largest pre-softmax attention logit S in the step's forward passes
// exceeded tau has its W_q rows scaled by (tau/S)^alpha and its W_k rows by
// (tau/S)^(1-alpha) (with biases), so that logit would now be tau.
struct QkClipConfig {
  bool enabled = false;
  double tau = 100.0;
  double alpha = 0.5;

  template <class V>
  void visit(V& v) {
    v("enabled", enabled, "rescale W_q/W_k of heads whose max attention logit exceeded tau (needs qk_norm off)");
    v("tau", tau, "largest allowed pre-softmax attention logit (Kimi K2: 100)");
    v("alpha", alpha, "share of the clip applied to W_q: W_q *= g^alpha, W_k *= g^(1-alpha), g = tau/max");
  }
};

struct OptimConfig {
  std::vector<OptimGroupConfig> groups;
  double grad_clip = 0.0;
  QkClipConfig qk_clip;
  int diagnostics_every = 0;
  std::string diagnostics_param;

  template <class V>
  void visit(V& v) {
    v("groups", groups, "optimizer groups; every parameter must match exactly one");
    v("grad_clip", grad_clip, "clip the global gradient norm to this value; 0 disables");
    v("qk_clip", qk_clip, "QK-clip (MuonClip) of attention logits after each step");
    v("diagnostics_every", diagnostics_every,
      "every N steps add \"diagnostics\" to metrics.jsonl: update RMS per group, orthogonality error of one Muon "
      "matrix, max attention logit per layer; 0 = off");
    v("diagnostics_param", diagnostics_param,
      "Muon matrix whose orthogonality error (Frobenius norm of O O^T - I over sqrt(n), O its first "
      "orthogonalised block) is logged; empty = the first Muon matrix");
  }
};

struct TrainConfig {
  int steps = 200;
  unsigned long long seed = 1337;
  int eval_every = 50;
  int checkpoint_every = 0;
  int keep_checkpoints = 2;
  int log_every = 1;

  template <class V>
  void visit(V& v) {
    v("steps", steps, "optimizer steps");
    v("seed", seed, "seed of parameter initialisation (and sampling)");
    v("eval_every", eval_every, "validate every N steps (and at the end); 0 = only at the end");
    v("checkpoint_every", checkpoint_every, "checkpoint every N steps (and at the end); 0 = only at the end");
    v("keep_checkpoints", keep_checkpoints, "keep the newest N checkpoints; 0 keeps all");
    v("log_every", log_every, "print a progress line every N steps");
  }
};

struct DistConfig {
  int zero_stage = 0;
  std::string muon = "replicated";
  double timeout_s = 600.0;
  std::string gpu_gradients = "nccl";
  bool overlap_grads = true;

  template <class V>
  void visit(V& v) {
    v("zero_stage", zero_stage, "1: shard AdamW state across ranks (ZeRO-1), params all-gathered after the update; 0: replicate");
    v("muon", muon,
      "replicated: every rank runs Muon on every matrix; owner: each matrix's momentum and Newton-Schulz live on one "
      "rank, updated matrices are all-gathered (speedrun); zero1: momentum sharded by rows, the full matrix is "
      "gathered for Newton-Schulz, each rank updates its shard (Moonlight)",
      {"replicated", "owner", "zero1"});
    v("timeout_s", timeout_s, "abort with a message naming the collective when one takes longer than this");
    v("gpu_gradients", gpu_gradients,
      "GPU runs with several ranks: nccl: gradients summed on the devices, optimizer on the GPU; host: through the "
      "host communicator with the host optimizer (lets several ranks share one GPU, for tests)",
      {"nccl", "host"});
    v("overlap_grads", overlap_grads,
      "GPU runs with several ranks (nccl): all-reduce each block's gradients during the last micro-batch's backward "
      "(false: one all-reduce after the backward, for comparison)");
  }
};

struct MetaConfig {
  std::string name;
  std::string description;
  std::string record;
  double target_val_loss = 0.0;

  template <class V>
  void visit(V& v) {
    v("name", name, "short name of the run or record");
    v("description", description, "what this config reproduces");
    v("record", record, "published result being reproduced (time, hardware, source)");
    v("target_val_loss", target_val_loss, "val loss the record reached (0 = none)");
  }
};

struct Config {
  MetaConfig meta;
  ModelConfig model;
  DataConfig data;
  BatchConfig batch;
  ScheduleConfig schedule;
  OptimConfig optim;
  TrainConfig train;
  DistConfig dist;

  // Tokens per validation sequence: data.val_seq_len, or batch.seq_len when 0.
  int val_seq_len() const { return data.val_seq_len > 0 ? data.val_seq_len : batch.seq_len; }

  template <class V>
  void visit(V& v) {
    v("meta", meta, "description of the run");
    v("model", model, "architecture");
    v("data", data, "token shards");
    v("batch", batch, "batch geometry");
    v("schedule", schedule, "learning-rate schedule");
    v("optim", optim, "optimizers");
    v("train", train, "trainer");
    v("dist", dist, "data parallelism over several processes (mpirun)");
  }
};

}  // namespace muongpt
