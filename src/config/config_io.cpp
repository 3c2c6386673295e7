#include "config/config_io.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <sstream>
#include <type_traits>

#include "util/error.h"
#include "util/fs.h"

namespace muongpt {

using nlohmann::json;

namespace {

template <class T>
struct IsVector : std::false_type {};
template <class T>
struct IsVector<std::vector<T>> : std::true_type {};

std::string describe(const json& j) {
  std::string text = j.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return str(j.type_name(), " ", text);
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// ---------------------------------------------------------------------------
// Writer: struct -> JSON
// ---------------------------------------------------------------------------
class JsonWriter {
 public:
  explicit JsonWriter(json& out) : out_(out) { out_ = json::object(); }

  template <class T>
  void operator()(const char* key, const T& field, const char* /*desc*/) {
    out_[key] = to_json(field);
  }
  void operator()(const char* key, const std::string& field, const char* desc,
                  std::initializer_list<const char*> /*choices*/) {
    (*this)(key, field, desc);
  }

  template <class T>
  static json to_json(const T& value) {
    if constexpr (IsVector<T>::value) {
      json arr = json::array();
      for (const auto& element : value) arr.push_back(to_json(element));
      return arr;
    } else if constexpr (std::is_same_v<T, std::optional<double>>) {
      return value ? json(*value) : json(nullptr);
    } else if constexpr (requires { const_cast<T&>(value).visit(std::declval<JsonWriter&>()); }) {
      json obj;
      JsonWriter writer(obj);
      const_cast<T&>(value).visit(writer);
      return obj;
    } else {
      return json(value);
    }
  }

 private:
  json& out_;
};

// ---------------------------------------------------------------------------
// Reader: JSON -> struct, with type checks and unknown-key detection
// ---------------------------------------------------------------------------
class JsonReader {
 public:
  JsonReader(const json& obj, std::string path, const std::string& source)
      : obj_(obj), path_(std::move(path)), source_(source) {}

  template <class T>
  void operator()(const char* key, T& field, const char* /*desc*/) {
    seen_.insert(key);
    auto it = obj_.find(key);
    if (it == obj_.end()) return;
    read(*it, field, child(key));
  }

  void operator()(const char* key, std::string& field, const char* desc,
                  std::initializer_list<const char*> choices) {
    (*this)(key, field, desc);
    for (const char* choice : choices)
      if (field == choice) return;
    std::string list;
    for (const char* choice : choices) list += str(list.empty() ? "" : ", ", "\"", choice, "\"");
    fail("config ", source_, ": ", child(key), ": \"", field, "\" is not one of ", list);
  }

  void finish() const {
    for (auto it = obj_.begin(); it != obj_.end(); ++it) {
      if (seen_.count(it.key())) continue;
      std::string best;
      size_t best_distance = 3;
      for (const auto& known : seen_) {
        const size_t d = edit_distance(it.key(), known);
        if (d < best_distance) best_distance = d, best = known;
      }
      fail("config ", source_, ": unknown key ", child(it.key()),
           best.empty() ? std::string() : str(" (did you mean ", child(best), "?)"));
    }
  }

 private:
  std::string child(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

  [[noreturn]] void type_error(const std::string& path, const char* expected, const json& got) const {
    fail("config ", source_, ": ", path, ": expected ", expected, ", got ", describe(got));
  }

  template <class T>
  void read(const json& j, T& out, const std::string& path) const {
    if constexpr (std::is_same_v<T, bool>) {
      if (!j.is_boolean()) type_error(path, "true or false", j);
      out = j.get<bool>();
    } else if constexpr (std::is_integral_v<T>) {
      double value;
      if (j.is_number_integer()) {
        if (j.is_number_unsigned()) {
          const auto u = j.get<unsigned long long>();
          if (u > static_cast<unsigned long long>(std::numeric_limits<T>::max()))
            fail("config ", source_, ": ", path, ": ", u, " is too large");
          out = static_cast<T>(u);
          return;
        }
        value = static_cast<double>(j.get<long long>());
      } else if (j.is_number_float() && std::floor(j.get<double>()) == j.get<double>()) {
        value = j.get<double>();
      } else {
        type_error(path, "an integer", j);
      }
      if (value < static_cast<double>(std::numeric_limits<T>::lowest()) ||
          value > static_cast<double>(std::numeric_limits<T>::max()))
        fail("config ", source_, ": ", path, ": ", j.dump(), " is out of range");
      out = static_cast<T>(value);
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!j.is_number()) type_error(path, "a number", j);
      out = j.get<T>();
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (!j.is_string()) type_error(path, "a string", j);
      out = j.get<std::string>();
    } else if constexpr (std::is_same_v<T, std::optional<double>>) {
      if (j.is_null()) {
        out.reset();
      } else {
        if (!j.is_number()) type_error(path, "a number or null", j);
        out = j.get<double>();
      }
    } else if constexpr (IsVector<T>::value) {
      if (!j.is_array()) type_error(path, "an array", j);
      out.clear();
      out.resize(j.size());
      for (size_t i = 0; i < j.size(); ++i) read(j[i], out[i], str(path, "[", i, "]"));
    } else {
      if (!j.is_object()) type_error(path, "an object", j);
      JsonReader reader(j, path, source_);
      out.visit(reader);
      reader.finish();
    }
  }

  const json& obj_;
  std::string path_;
  const std::string& source_;
  std::set<std::string> seen_;
};

// ---------------------------------------------------------------------------
// Reference table
// ---------------------------------------------------------------------------
class DocWriter {
 public:
  DocWriter(std::string path, std::vector<std::string>& rows, std::set<std::string>& emitted)
      : path_(std::move(path)), rows_(rows), emitted_(emitted) {}

  template <class T>
  void operator()(const char* key, T& field, const char* desc) {
    emit(key, field, desc, "");
  }
  void operator()(const char* key, std::string& field, const char* desc,
                  std::initializer_list<const char*> choices) {
    std::string list;
    for (const char* c : choices) list += str(list.empty() ? "" : " \\| ", "`", c, "`");
    emit(key, field, desc, list);
  }

 private:
  template <class T>
  void emit(const char* key, T& field, const char* desc, const std::string& choices) {
    const std::string path = path_.empty() ? key : path_ + "." + key;
    if constexpr (IsVector<T>::value && requires(typename T::value_type& e, DocWriter& d) { e.visit(d); }) {
      using Element = typename T::value_type;
      std::vector<Element> examples;
      if constexpr (requires { Element::doc_variants(); })
        examples = Element::doc_variants();  // one row set per variant (optim.groups: adamw, muon)
      else
        examples = {Element{}};
      for (Element example : examples) {
        DocWriter nested(path + "[]", rows_, emitted_);
        example.visit(nested);
      }
    } else if constexpr (requires(T& t, DocWriter& d) { t.visit(d); }) {
      DocWriter nested(path, rows_, emitted_);
      field.visit(nested);
    } else {
      if (!emitted_.insert(path).second) return;
      const std::string type = choices.empty() ? type_name<T>() : choices;
      std::string def = JsonWriter::to_json(field).dump();
      rows_.push_back(str("| `", path, "` | ", type, " | `", def, "` | ", desc, " |"));
    }
  }

  template <class T>
  static std::string type_name() {
    if constexpr (std::is_same_v<T, bool>) return "bool";
    else if constexpr (std::is_integral_v<T>) return "integer";
    else if constexpr (std::is_floating_point_v<T>) return "number";
    else if constexpr (std::is_same_v<T, std::string>) return "string";
    else if constexpr (std::is_same_v<T, std::optional<double>>) return "number or null";
    else return "array";
  }

  std::string path_;
  std::vector<std::string>& rows_;
  std::set<std::string>& emitted_;
};

[[noreturn]] void invalid(const std::string& source, const std::string& key, const std::string& message) {
  fail("config ", source, ": ", key, ": ", message);
}

// Glob-style match where '*' matches any run of characters (dots included).
bool glob_match(const char* pattern, const char* text) {
  if (*pattern == '\0') return *text == '\0';
  if (*pattern == '*') {
    for (const char* t = text;; ++t) {
      if (glob_match(pattern + 1, t)) return true;
      if (*t == '\0') return false;
    }
  }
  return *text != '\0' && (*pattern == '?' || *pattern == *text) && glob_match(pattern + 1, text + 1);
}

}  // namespace

bool name_matches(const std::string& pattern, const std::string& name) {
  return glob_match(pattern.c_str(), name.c_str());
}

std::vector<int> WindowStagesConfig::window_sequence() const {
  std::vector<int> all = windows;
  if (all.empty()) return all;
  if (extension_window > 0) all.push_back(extension_window);
  all.push_back(final_eval > 0 ? final_eval : all.back());
  return all;
}

std::vector<int> WindowStagesConfig::distinct_windows() const {
  std::vector<int> used;
  for (int w : window_sequence())
    if (std::find(used.begin(), used.end(), w) == used.end()) used.push_back(w);
  return used;
}

double ModelConfig::softmax_scale() const {
  return attn_scale ? *attn_scale : 1.0 / std::sqrt(static_cast<double>(head_dim()));
}

bool ModelConfig::has_mlp(int layer) const {
  return std::find(mlp_free_layers.begin(), mlp_free_layers.end(), layer) == mlp_free_layers.end();
}

bool ModelConfig::has_attention(int layer) const {
  return std::find(attention_free_layers.begin(), attention_free_layers.end(), layer) == attention_free_layers.end();
}

long long ModelConfig::lookback_tokens(const std::vector<int>& windows) const {
  long long total = smear_gate_dims > 0 ? 1 : 0;
  for (int l = 0; l < n_layer; ++l) {
    if (!has_attention(l)) continue;
    const int keys = window_in(windows, l);
    if (keys <= 0) return -1;
    total += keys - 1;
  }
  return total;
}

int ModelConfig::value_embed_table(int layer) const {
  if (value_embeds <= 0) return -1;
  if (value_embed_layers.empty()) return layer < value_embeds ? layer : -1;
  return value_embed_layers.at(static_cast<size_t>(layer));
}

int ModelConfig::unet_skip_source(int layer) const {
  if (!unet_skips || is_skipped(layer)) return -1;
  const int enc = n_layer / 2, i = layer - enc;  // i: decoder index
  if (i < 0 || i >= enc) return -1;
  if (!unet_skip_layers.empty()) {
    if (std::find(unet_skip_layers.begin(), unet_skip_layers.end(), layer) == unet_skip_layers.end()) return -1;
  } else if (unet_skip_blocks > 0 && i >= unet_skip_blocks) {
    return -1;
  }
  return enc - i;
}

bool ModelConfig::has_value_lambda(int layer) const {
  if (!has_attention(layer)) return false;
  if (value_mix == "weighted") return value_residual || value_embeds > 0;
  return value_residual || value_embed_table(layer) >= 0;  // lerp: only where V has a source
}

ModelConfig::ValueMixPlan ModelConfig::value_mix_plan(int layer) const {
  using Coef = ValueMixPlan::Coef;
  ValueMixPlan plan;
  if (!has_value_lambda(layer)) return plan;  // v = v_raw
  plan.learned = true;
  plan.first_layer_v = value_residual;
  if (!value_residual) plan.table = value_embed_table(layer);
  if (value_mix == "weighted") {
    plan.a = Coef::lambda0;
    plan.c = plan.has_source() ? Coef::lambda1 : Coef::zero;
  } else {  // lerp: has_value_lambda only where V has a source
    plan.a = Coef::one_minus_lambda0;
    plan.c = Coef::lambda0;
  }
  return plan;
}

void check_attention_windows(const ModelConfig& model, const std::vector<int>& windows) {
  if (!windows.empty() && windows.size() != 1 && windows.size() != static_cast<size_t>(model.n_layer))
    fail("has ", windows.size(), " entries; give 1 (all layers) or model.n_layer = ", model.n_layer);
  for (size_t l = 0; l < windows.size(); ++l) {
    if (windows[l] < 0) fail("entry ", l, " is ", windows[l], "; windows must be >= 0 (0 = full causal)");
    if (model.window_block > 0 && windows[l] % model.window_block != 0)
      fail("entry ", l, " is ", windows[l], ", not a multiple of model.window_block = ", model.window_block,
           " (block windows count whole blocks)");
  }
}

std::vector<std::array<double, 3>> NewtonSchulzConfig::table() const {
  std::vector<std::array<double, 3>> base;
  if (coefficients == "quintic") {
    base = {{3.4445, -4.7750, 2.0315}};
  } else if (coefficients == "polar_express") {
    // Polar Express (Amsel et al. 2025) as used by the speedrun, safety 1.02.
    base = {{8.156554524902461, -22.48329292557795, 15.878769915207462},
            {4.042929935166739, -2.808917465908714, 0.5000178451051316},
            {3.8916678022926607, -2.772484153217685, 0.5060648178503393},
            {3.285753657755655, -2.3681294933425376, 0.46449024233003106},
            {2.3465413258596377, -1.7097828382687081, 0.42323551169305323}};
  } else {
    for (const auto& row : custom) base.push_back({row.at(0), row.at(1), row.at(2)});
  }
  std::vector<std::array<double, 3>> out;
  for (int i = 0; i < steps; ++i) out.push_back(base[std::min<size_t>(i, base.size() - 1)]);
  return out;
}

std::vector<OptimGroupConfig> OptimGroupConfig::doc_variants() {
  OptimGroupConfig adamw, muon;
  adamw.type = "adamw";
  muon.type = "muon";
  return {adamw, muon};
}

void apply_override(json& doc, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    fail("--set ", assignment, ": expected key.path=value");
  const std::string key = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) value = text;  // bare words are strings

  json* node = &doc;
  std::stringstream parts(key);
  std::string part, walked;
  std::vector<std::string> path;
  while (std::getline(parts, part, '.')) path.push_back(part);
  for (size_t i = 0; i < path.size(); ++i) {
    const std::string& p = path[i];
    const std::string parent = walked;
    walked += (walked.empty() ? "" : ".") + p;
    const bool last = i + 1 == path.size();
    if (node->is_array()) {
      char* end = nullptr;
      const long index = std::strtol(p.c_str(), &end, 10);
      if (*end != '\0' || index < 0 || static_cast<size_t>(index) >= node->size())
        fail("--set ", assignment, ": ", walked, ": index out of range (array has ", node->size(), " elements)");
      node = &(*node)[static_cast<size_t>(index)];
    } else {
      if (node->is_null()) *node = json::object();  // a section the file leaves out
      if (!node->is_object()) fail("--set ", assignment, ": ", parent, " is not an object");
      node = &(*node)[p];
    }
    if (last) *node = value;
  }
}

Config config_from_json(const json& doc, const std::string& source) {
  if (!doc.is_object()) fail("config ", source, ": the top level must be a JSON object");
  Config cfg;
  JsonReader reader(doc, "", source);
  cfg.visit(reader);
  reader.finish();
  return cfg;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  const std::string text = read_text_file(path);
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::parse_error& e) {
    fail("config ", path, ": invalid JSON: ", e.what());
  }
  std::string source = path;
  for (const auto& assignment : overrides) {
    apply_override(doc, assignment);
    source = path + " (with --set overrides)";
  }
  return config_from_json(doc, source);
}

json config_to_json(const Config& cfg) { return JsonWriter::to_json(cfg); }

void validate_config(const Config& cfg, const std::string& source, int world_size) {
  const ModelConfig& m = cfg.model;
  auto positive = [&](const std::string& key, long long value) {
    if (value <= 0) invalid(source, key, str("must be positive, got ", value));
  };
  positive("model.vocab_size", m.vocab_size);
  positive("model.n_layer", m.n_layer);
  positive("model.n_head", m.n_head);
  positive("model.d_model", m.d_model);
  positive("model.max_seq_len", m.max_seq_len);
  if (m.mlp_hidden < 0) invalid(source, "model.mlp_hidden", "must be >= 0");
  if (m.vocab_size > 65536) invalid(source, "model.vocab_size", "shards store uint16 token ids: at most 65536");
  if (m.padded_vocab_size < m.vocab_size)
    invalid(source, "model.padded_vocab_size",
            str(m.padded_vocab_size, " is smaller than model.vocab_size = ", m.vocab_size));
  if (m.d_model % m.n_head != 0)
    invalid(source, "model.n_head", str(m.n_head, " does not divide model.d_model = ", m.d_model));
  if (m.pos_embedding == "rope" && m.head_dim() % 2 != 0)
    invalid(source, "model.pos_embedding", str("RoPE needs an even head dimension, got ", m.head_dim()));
  if (m.attention_kernel == "tensor_cores" && m.head_dim() != 64 && m.head_dim() != 128)
    invalid(source, "model.attention_kernel",
            str("tensor_cores needs a head dimension of 64 or 128, got ", m.head_dim(), " (use auto or cuda_cores)"));
  if (m.norm_eps <= 0) invalid(source, "model.norm_eps", "must be positive");
  if (m.logit_softcap < 0) invalid(source, "model.logit_softcap", "must be >= 0");
  if (m.attn_scale && *m.attn_scale <= 0) invalid(source, "model.attn_scale", "must be positive or null");
  if (m.unet_skips && m.n_layer < 2) invalid(source, "model.unet_skips", "needs at least 2 layers");
  if (m.pos_embedding == "rope" && m.rope_frequencies == "half_truncated" && (m.head_dim() % 4 != 0 || m.head_dim() < 8))
    invalid(source, "model.rope_frequencies",
            str("half_truncated needs a head dimension that is a multiple of 4 and at least 8, got ", m.head_dim()));
  for (size_t i = 0; i < m.attention_free_layers.size(); ++i) {
    const int l = m.attention_free_layers[i];
    if (l < 0 || l >= m.n_layer)
      invalid(source, str("model.attention_free_layers[", i, "]"),
              str(l, " is not a layer index (model.n_layer = ", m.n_layer, ")"));
  }
  for (size_t i = 0; i < m.mlp_free_layers.size(); ++i) {
    const int l = m.mlp_free_layers[i];
    if (l < 0 || l >= m.n_layer)
      invalid(source, str("model.mlp_free_layers[", i, "]"),
              str(l, " is not a layer index (model.n_layer = ", m.n_layer, ")"));
  }
  if (m.smear_gate_dims < 0 || m.smear_gate_dims > m.d_model)
    invalid(source, "model.smear_gate_dims", str(m.smear_gate_dims, " is outside [0, model.d_model = ", m.d_model, "]"));
  if (m.backout_layer < -1 || m.backout_layer > m.n_layer - 2)
    invalid(source, "model.backout_layer",
            str(m.backout_layer, " is outside [-1, n_layer - 2 = ", m.n_layer - 2,
                "] (-1 = none; the last block's own output cannot be backed out of itself)"));
  if (m.unet_skip_blocks < 0 || m.unet_skip_blocks > m.n_layer / 2)
    invalid(source, "model.unet_skip_blocks",
            str(m.unet_skip_blocks, " is outside [0, n_layer/2 = ", m.n_layer / 2, "] (0 = every decoder block)"));
  if (!m.unet_skip_layers.empty() && !m.unet_skips)
    invalid(source, "model.unet_skip_layers", "selects U-net skips, but model.unet_skips is off");
  if (!m.unet_skip_layers.empty() && m.unet_skip_blocks != 0)
    invalid(source, "model.unet_skip_layers",
            str("and model.unet_skip_blocks = ", m.unet_skip_blocks, " both choose the skips; set one of them"));
  for (size_t i = 0; i < m.unet_skip_layers.size(); ++i) {
    const int l = m.unet_skip_layers[i];
    const std::string key = str("model.unet_skip_layers[", i, "]");
    if (l < m.n_layer / 2 || l >= m.n_layer)
      invalid(source, key,
              str(l, " is not a decoder block in [n_layer/2 = ", m.n_layer / 2, ", n_layer = ", m.n_layer, ")"));
    if (std::count(m.unet_skip_layers.begin(), m.unet_skip_layers.end(), l) > 1)
      invalid(source, key, str(l, " is listed twice"));
    if (m.is_skipped(l))
      invalid(source, key, str("block ", l, " is skipped whole (attention- and MLP-free), so it takes no skip"));
  }
  if (m.init.x0_lambdas.size() != 2)
    invalid(source, "model.init.x0_lambdas",
            str("has ", m.init.x0_lambdas.size(), " entries; give two, [l0, l1] of x = l0*x + l1*x0"));
  if (m.unet_skip_gate != "none" && !m.unet_skips)
    invalid(source, "model.unet_skip_gate", "gates the U-net skips, but model.unet_skips is off");
  if (m.attn_gate_dims < 0 || m.attn_gate_dims > m.d_model)
    invalid(source, "model.attn_gate_dims", str(m.attn_gate_dims, " is outside [0, model.d_model = ", m.d_model, "]"));
  if (m.window_counts == "previous" && m.window_block != 0)
    invalid(source, "model.window_counts",
            str("previous counts tokens, so it needs model.window_block = 0 (got ", m.window_block, ")"));
  bool any_attention = false;
  for (int l = 0; l < m.n_layer; ++l) any_attention = any_attention || m.has_attention(l);
  if (!any_attention) invalid(source, "model.attention_free_layers", "lists every layer; at least one needs attention");
  if (m.value_residual && !m.has_attention(0))
    invalid(source, "model.value_residual", "needs attention in layer 0 (its V is the residual's source)");
  if (m.value_embeds < 0) invalid(source, "model.value_embeds", "must be >= 0 (0 = none)");
  if (m.value_embeds > 0 && m.value_residual)
    invalid(source, "model.value_embeds", "and model.value_residual both feed V; choose one");
  if (m.value_embeds == 0 && !m.value_embed_layers.empty())
    invalid(source, "model.value_embed_layers", "is set but model.value_embeds is 0");
  if (m.value_embeds > 0) {
    if (m.value_embed_layers.empty() && m.value_embeds != m.n_layer)
      invalid(source, "model.value_embed_layers",
              str("is empty (layer l uses table l), which needs model.value_embeds = model.n_layer = ", m.n_layer,
                  ", got ", m.value_embeds, "; list each layer's table"));
    if (!m.value_embed_layers.empty() && m.value_embed_layers.size() != static_cast<size_t>(m.n_layer))
      invalid(source, "model.value_embed_layers",
              str("has ", m.value_embed_layers.size(), " entries; give one per layer (model.n_layer = ", m.n_layer,
                  ")"));
    std::vector<bool> used(static_cast<size_t>(m.value_embeds), false);
    for (size_t l = 0; l < m.value_embed_layers.size(); ++l) {
      const int t = m.value_embed_layers[l];
      const std::string key = str("model.value_embed_layers[", l, "]");
      if (t < -1 || t >= m.value_embeds)
        invalid(source, key, str(t, " is not a table index in [0, ", m.value_embeds, ") or -1 (none)"));
      if (t >= 0) used[static_cast<size_t>(t)] = true;
    }
    for (int l = 0; l < m.n_layer; ++l)
      if (m.value_embed_table(l) >= 0 && !m.has_attention(l))
        invalid(source, m.value_embed_layers.empty() ? "model.value_embed_layers" : str("model.value_embed_layers[", l, "]"),
                str("gives layer ", l, " value-embedding table ", m.value_embed_table(l),
                    ", but that layer is in model.attention_free_layers and has no V to mix into"));
    for (int t = 0; t < m.value_embeds; ++t)
      if (!m.value_embed_layers.empty() && !used[static_cast<size_t>(t)])
        invalid(source, "model.value_embed_layers", str("no layer uses value-embedding table ", t));
  }
  if (m.window_block < 0) invalid(source, "model.window_block", "must be >= 0 (0 = token-exact windows)");
  try {
    check_attention_windows(m, m.attn_window);
  } catch (const Error& e) {
    invalid(source, "model.attn_window", e.what());
  }
  if (m.init.zero_head && m.tie_embeddings)
    invalid(source, "model.init.zero_head", "a tied head is the embedding and cannot be zero-initialised");

  const BatchConfig& b = cfg.batch;
  positive("batch.seq_len", b.seq_len);
  positive("batch.micro_batch", b.micro_batch);
  positive("batch.global_tokens", b.global_tokens);
  if (b.seq_len > m.max_seq_len)
    invalid(source, "batch.seq_len", str(b.seq_len, " exceeds model.max_seq_len = ", m.max_seq_len));
  const long long per_micro = static_cast<long long>(b.micro_batch) * b.seq_len * world_size;
  if (b.global_tokens % per_micro != 0)
    invalid(source, "batch.global_tokens",
            str(b.global_tokens, " is not divisible by micro_batch*seq_len*world_size = ", b.micro_batch, "*",
                b.seq_len, "*", world_size, " = ", per_micro));
  for (size_t i = 0; i < b.stages.size(); ++i) {
    const BatchStageConfig& st = b.stages[i];
    const std::string key = str("batch.stages[", i, "]");
    if (st.seq_len <= 0 || st.seq_len > b.seq_len)
      invalid(source, key + ".seq_len",
              str(st.seq_len, " is outside [1, batch.seq_len = ", b.seq_len, "] (batch.seq_len sizes the buffers)"));
    const long long stage_micro = static_cast<long long>(b.micro_batch) * st.seq_len * world_size;
    if (st.global_tokens <= 0 || st.global_tokens % stage_micro != 0)
      invalid(source, key + ".global_tokens",
              str(st.global_tokens, " is not a positive multiple of micro_batch*seq_len*world_size = ", b.micro_batch,
                  "*", st.seq_len, "*", world_size, " = ", stage_micro));
  }
  if (cfg.data.max_doc_len < 0) invalid(source, "data.max_doc_len", "must be >= 0 (0 = no limit)");
  if (cfg.data.max_doc_len > 0 && !cfg.data.bos_aligned)
    invalid(source, "data.max_doc_len", "only applies with data.bos_aligned = true");
  if (cfg.data.val_tokens < 0) invalid(source, "data.val_tokens", "must be >= 0");
  if (cfg.data.val_seq_len < 0) invalid(source, "data.val_seq_len", "must be >= 0 (0 = batch.seq_len)");
  if (cfg.data.val_seq_len > b.seq_len && m.pos_embedding == "learned")
    invalid(source, "data.val_seq_len",
            str(cfg.data.val_seq_len, " is longer than batch.seq_len = ", b.seq_len,
                ": such sequences are evaluated in overlapping chunks, which needs relative positions, but "
                "model.pos_embedding is \"learned\""));

  const TrainConfig& t = cfg.train;
  positive("train.steps", t.steps);
  if (t.eval_every < 0) invalid(source, "train.eval_every", "must be >= 0");
  if (t.checkpoint_every < 0) invalid(source, "train.checkpoint_every", "must be >= 0");
  if (t.keep_checkpoints < 0) invalid(source, "train.keep_checkpoints", "must be >= 0");
  if (t.log_every <= 0) invalid(source, "train.log_every", "must be positive");

  const ScheduleConfig& s = cfg.schedule;
  if (s.warmup_steps < 0) invalid(source, "schedule.warmup_steps", "must be >= 0");
  if (s.extension_steps < 0 || s.extension_steps >= t.steps)
    invalid(source, "schedule.extension_steps",
            str(s.extension_steps, " is outside [0, train.steps = ", t.steps, ") (the schedules need at least one step)"));
  if (s.extension_lr == "clamp" && s.kind != "wsd")
    invalid(source, "schedule.extension_lr", str("clamp is the speedrun's wsd rule; schedule.kind is ", s.kind));
  if (s.cooldown_frac < 0 || s.cooldown_frac > 1)
    invalid(source, "schedule.cooldown_frac", str(s.cooldown_frac, " is outside [0, 1]"));
  if (s.final_lr_frac < 0) invalid(source, "schedule.final_lr_frac", "must be >= 0");
  if (!s.peak_changes.empty() && s.kind != "wsd")
    invalid(source, "schedule.peak_changes", str("steps the wsd schedule's peak; schedule.kind is ", s.kind));
  for (size_t i = 0; i < s.peak_changes.size(); ++i) {
    const LrPeakChange& c = s.peak_changes[i];
    const std::string key = str("schedule.peak_changes[", i, "]");
    if (c.after < 0 || c.after >= 1) invalid(source, key + ".after", str(c.after, " is outside [0, 1)"));
    if (i > 0 && c.after <= s.peak_changes[i - 1].after)
      invalid(source, key + ".after",
              str(c.after, " is not after the previous change's ", s.peak_changes[i - 1].after, " (list them in order)"));
    if (c.peak <= 0) invalid(source, key + ".peak", str(c.peak, " must be positive"));
  }
  const WindowWarmupConfig& ww = s.window_warmup;
  if (ww.start < 0) invalid(source, "schedule.window_warmup.start", "must be >= 0 (0 = no warmup)");
  if (ww.steps < 0) invalid(source, "schedule.window_warmup.steps", "must be >= 0 (0 = train.steps)");
  if (ww.start > 0) {
    if (ww.multiple <= 0) invalid(source, "schedule.window_warmup.multiple", "must be positive");
    if (m.window_block > 0 && ww.multiple % m.window_block != 0)
      invalid(source, "schedule.window_warmup.multiple",
              str(ww.multiple, " is not a multiple of model.window_block = ", m.window_block,
                  " (every scheduled window must be whole blocks)"));
    const bool nearest = ww.rounding == "nearest";
    if (nearest ? 2 * ww.start < ww.multiple : ww.start < ww.multiple)
      invalid(source, "schedule.window_warmup.start",
              str(ww.start, " is smaller than ", nearest ? "half of " : "", "schedule.window_warmup.multiple = ",
                  ww.multiple, " (the first window would round to 0, which means full causal)"));
    bool any_window = false;
    const bool proportional = ww.layers == "proportional";
    const int longest = m.attn_window.empty() ? 0 : *std::max_element(m.attn_window.begin(), m.attn_window.end());
    for (size_t l = 0; l < m.attn_window.size(); ++l) {
      const int w = m.attn_window[l];
      if (w == 0) continue;
      any_window = true;
      const std::string key = str("model.attn_window[", l, "]");
      if ((!proportional || w == longest) && w < ww.start)
        invalid(source, key, str(w, " is smaller than schedule.window_warmup.start = ", ww.start,
                                 " (the warmup grows windows from start up to model.attn_window)"));
      if (w % ww.multiple != 0)
        invalid(source, key, str(w, " is not a multiple of schedule.window_warmup.multiple = ", ww.multiple));
    }
    if (!any_window)
      invalid(source, "schedule.window_warmup.start",
              "a window warmup needs model.attn_window with at least one window > 0 (the final sizes)");
  }

  const WindowStagesConfig& st = s.window_stages;
  if (!st.enabled()) {
    if (st.final_eval != 0 || st.extension_window != 0 || !st.final_eval_windows.empty() ||
        st.scale_log_factor != 0 || st.yarn)
      invalid(source, "schedule.window_stages.windows",
              "is empty, but final_eval, extension_window, final_eval_windows, scale_log_factor or yarn is set (they "
              "follow the stages' windows)");
  } else {
    if (ww.start > 0)
      invalid(source, "schedule.window_stages.windows",
              "cannot be combined with schedule.window_warmup (set window_warmup.start to 0)");
    if (st.multiple < 0) invalid(source, "schedule.window_stages.multiple", "must be >= 0 (0 = model.window_block)");
    if (st.multiple > 0 && m.window_block > 0 && st.multiple % m.window_block != 0)
      invalid(source, "schedule.window_stages.multiple",
              str(st.multiple, " is not a multiple of model.window_block = ", m.window_block));
    const int unit = st.share_unit(m.window_block);
    const auto check_window = [&](const std::string& key, int w) {
      if (w <= 0) invalid(source, key, str(w, " must be positive (a window in tokens)"));
      if (w % unit != 0)
        invalid(source, key, str(w, " is not a multiple of ", st.multiple > 0 ? "schedule.window_stages.multiple" : "model.window_block", " = ", unit));
    };
    for (size_t k = 0; k < st.windows.size(); ++k)
      check_window(str("schedule.window_stages.windows[", k, "]"), st.windows[k]);
    if (st.final_eval != 0) check_window("schedule.window_stages.final_eval", st.final_eval);
    if (st.extension_window != 0) {
      check_window("schedule.window_stages.extension_window", st.extension_window);
      if (s.extension_steps <= 0)
        invalid(source, "schedule.window_stages.extension_window",
                "is set, but schedule.extension_steps is 0 (it is the window of the extension steps)");
    }
    if (!st.final_eval_windows.empty() && st.final_eval_windows.size() != static_cast<size_t>(m.n_layer))
      invalid(source, "schedule.window_stages.final_eval_windows",
              str("has ", st.final_eval_windows.size(), " entries; it needs one per layer (model.n_layer = ", m.n_layer,
                  ") or none"));
    for (size_t l = 0; l < st.final_eval_windows.size(); ++l) {
      const int w = st.final_eval_windows[l];
      const std::string key = str("schedule.window_stages.final_eval_windows[", l, "]");
      if (w < 0) invalid(source, key, str(w, " must be >= 0 (0 = the rule's window)"));
      if (w > 0 && m.window_block > 0 && w % m.window_block != 0)
        invalid(source, key, str(w, " is not a multiple of model.window_block = ", m.window_block));
    }
    if (std::none_of(m.attn_window.begin(), m.attn_window.end(), [](int w) { return w > 0; }))
      invalid(source, "schedule.window_stages.windows",
              "needs model.attn_window with at least one window > 0 (the layers' shares)");
    if (st.yarn && m.pos_embedding != "rope")
      invalid(source, "schedule.window_stages.yarn", str("needs model.pos_embedding = rope, not ", m.pos_embedding));
    if (st.yarn && !(st.yarn_alpha < st.yarn_beta))
      invalid(source, "schedule.window_stages.yarn_beta",
              str(st.yarn_beta, " must be larger than yarn_alpha = ", st.yarn_alpha));
    const std::vector<int> used = st.distinct_windows();
    for (size_t j = 1; j < used.size(); ++j)
      if (!(1.0 + st.scale_log_factor * std::log(static_cast<double>(used[j]) / used[j - 1]) > 0))
        invalid(source, "schedule.window_stages.scale_log_factor",
                str(st.scale_log_factor, " turns the attention scale negative at the change from window ", used[j - 1],
                    " to ", used[j]));
  }

  if (cfg.dist.zero_stage != 0 && cfg.dist.zero_stage != 1)
    invalid(source, "dist.zero_stage", str(cfg.dist.zero_stage, " is not supported (0 or 1)"));
  if (cfg.dist.timeout_s <= 0) invalid(source, "dist.timeout_s", "must be positive");
  if (cfg.optim.groups.empty()) invalid(source, "optim.groups", "at least one optimizer group is required");
  if (cfg.optim.grad_clip < 0) invalid(source, "optim.grad_clip", "must be >= 0");
  std::set<std::string> names;
  for (size_t i = 0; i < cfg.optim.groups.size(); ++i) {
    const OptimGroupConfig& g = cfg.optim.groups[i];
    const std::string key = str("optim.groups[", i, "]");
    if (g.name.empty()) invalid(source, key + ".name", "every group needs a name");
    if (!names.insert(g.name).second) invalid(source, key + ".name", str("duplicate group name \"", g.name, "\""));
    if (g.params.empty()) invalid(source, key + ".params", "lists no parameter patterns");
    if (g.lr < 0) invalid(source, key + ".lr", "must be >= 0");
    if (g.weight_decay < 0) invalid(source, key + ".weight_decay", "must be >= 0");
    if (g.type == "adamw") {
      if (g.betas.size() != 2) invalid(source, key + ".betas", "must have two elements");
      for (double beta : g.betas)
        if (beta < 0 || beta >= 1) invalid(source, key + ".betas", str(beta, " is outside [0, 1)"));
      if (g.eps <= 0) invalid(source, key + ".eps", "must be positive");
      if (g.update_every < 1) invalid(source, key + ".update_every", str(g.update_every, " must be >= 1"));
    } else {
      if (g.momentum < 0 || g.momentum >= 1) invalid(source, key + ".momentum", "must be in [0, 1)");
      if (g.momentum_warmup_start < 0 || g.momentum_warmup_start >= 1)
        invalid(source, key + ".momentum_warmup_start", "must be in [0, 1)");
      if (g.momentum_warmup_steps < 0) invalid(source, key + ".momentum_warmup_steps", "must be >= 0");
      if (g.momentum_cooldown_steps < 0)
        invalid(source, key + ".momentum_cooldown_steps", str(g.momentum_cooldown_steps, " must be >= 0 (0 = none)"));
      if (g.momentum_cooldown_start < 0 || g.momentum_cooldown_start >= 1)
        invalid(source, key + ".momentum_cooldown_start", "must be in [0, 1) (0 = momentum)");
      if (g.momentum_cooldown_end < 0 || g.momentum_cooldown_end >= 1)
        invalid(source, key + ".momentum_cooldown_end", "must be in [0, 1)");
      if (g.ns.steps <= 0) invalid(source, key + ".ns.steps", "must be positive");
      if (g.ns.norm_scale <= 0) invalid(source, key + ".ns.norm_scale", "must be positive");
      if (g.ns.coefficients == "custom") {
        if (g.ns.custom.empty()) invalid(source, key + ".ns.custom", "is empty but ns.coefficients is \"custom\"");
        for (size_t r = 0; r < g.ns.custom.size(); ++r)
          if (g.ns.custom[r].size() != 3)
            invalid(source, str(key, ".ns.custom[", r, "]"), "must be a triple [a, b, c]");
      } else if (!g.ns.custom.empty()) {
        invalid(source, key + ".ns.custom", "is set but ns.coefficients is not \"custom\"");
      }
      if (g.normuon.beta2 < 0 || g.normuon.beta2 >= 1) invalid(source, key + ".normuon.beta2", "must be in [0, 1)");
      if (g.heads_per_block < 1) invalid(source, key + ".heads_per_block", "must be >= 1");
      if (g.per_head != "none" && cfg.model.n_head % g.heads_per_block != 0)
        invalid(source, key + ".heads_per_block",
                str(g.heads_per_block, " does not divide model.n_head = ", cfg.model.n_head));
    }
  }
  const QkClipConfig& qc = cfg.optim.qk_clip;
  if (qc.tau <= 0) invalid(source, "optim.qk_clip.tau", "must be positive");
  if (qc.alpha < 0 || qc.alpha > 1) invalid(source, "optim.qk_clip.alpha", "must be in [0, 1]");
  if (qc.enabled && cfg.model.qk_norm)
    invalid(source, "optim.qk_clip.enabled",
            "model.qk_norm RMS-normalises q and k per head, so rescaling W_q/W_k cannot lower the logits; "
            "QK-norm already bounds them (turn one of the two off)");
  if (cfg.optim.diagnostics_every < 0) invalid(source, "optim.diagnostics_every", "must be >= 0 (0 = off)");
}

void check_data_files(const Config& cfg, const std::string& source) {
  if (glob_files(cfg.data.train_pattern).empty())
    invalid(source, "data.train_pattern", str("no files match \"", cfg.data.train_pattern, "\""));
  if (cfg.data.val_tokens > 0 && glob_files(cfg.data.val_pattern).empty())
    invalid(source, "data.val_pattern", str("no files match \"", cfg.data.val_pattern, "\""));
}

std::string config_reference_markdown() {
  Config defaults;
  std::vector<std::string> rows;
  std::set<std::string> emitted;
  DocWriter writer("", rows, emitted);
  defaults.visit(writer);
  std::string out = "| key | type | default | description |\n|---|---|---|---|\n";
  for (const auto& row : rows) out += row + "\n";
  return out;
}

}  // namespace muongpt
