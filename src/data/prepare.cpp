// `muongpt prepare` (see prepare.h for the pipeline and its guarantees).
#include "data/prepare.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <numeric>

#include <nlohmann/json.hpp>

#include "data/shard.h"
#include "data/tokenizer.h"
#include "util/error.h"
#include "util/format.h"
#include "util/fs.h"

namespace muongpt {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint64_t kBatchBytes = 32ull << 20;
constexpr size_t kBatchDocuments = 1 << 16;
constexpr size_t kMaxReportedErrors = 100;  // kept in the manifest
constexpr size_t kMaxPrintedErrors = 20;    // printed as warnings

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

void validate(const PrepareOptions& o) {
  if (o.inputs.empty() && o.val_inputs.empty()) fail("prepare: no INPUT given (files, directories, .jsonl files or -)");
  if (o.out_dir.empty() && !o.dry_run) fail("prepare: --out DIR is required (or --dry-run)");
  if (!(o.val_fraction >= 0 && o.val_fraction < 1))
    fail("prepare: --val-fraction ", o.val_fraction, " is outside [0, 1)");
  if (o.val_fraction > 0 && !o.val_inputs.empty())
    fail("prepare: --val-fraction and --val cannot be combined (choose one way to make the validation split)");
  if (o.shard_tokens < 1 || o.shard_tokens > static_cast<uint64_t>(INT32_MAX))
    fail("prepare: --shard-tokens ", o.shard_tokens, " is outside 1..", INT32_MAX, " (the shard header is int32)");
  if (o.threads < 0) fail("prepare: --threads ", o.threads, " must be >= 1 (0 or omitted: all cores)");
  if (!Tokenizer::encoder_available())
    fail("prepare: this muongpt was built without the PCRE2 headers, so it cannot encode text; "
         "install PCRE2 (Debian: libpcre2-dev) and rebuild");
}

// Existing shards or manifest in DIR: an error, or removed with --overwrite.
void prepare_output_dir(const PrepareOptions& o) {
  const std::string dir = o.out_dir;
  std::error_code ec;
  if (fs::exists(dir) && !fs::is_directory(dir)) fail("prepare: --out ", dir, " exists and is not a directory");
  fs::create_directories(dir, ec);
  if (ec) fail("prepare: --out ", dir, ": cannot create the directory: ", ec.message());
  std::vector<std::string> old;
  for (const char* pattern : {"/train_*.bin", "/val_*.bin", "/manifest.json"})
    for (const auto& f : glob_files(dir + pattern)) old.push_back(f);
  if (!old.empty() && !o.overwrite)
    fail("prepare: --out ", dir, " already holds a data set (", old.front(), old.size() > 1 ? " and more" : "",
         "); pass --overwrite to replace it");
  for (const char* pattern : {"/train_*.bin.tmp", "/val_*.bin.tmp", "/manifest.json.tmp"})
    for (const auto& f : glob_files(dir + pattern)) old.push_back(f);  // left by a killed run
  for (const auto& f : old)
    if (!fs::remove(f, ec) && ec) fail("prepare: cannot remove ", f, ": ", ec.message());
}

// The shards of one split: a buffer of up to shard_tokens tokens, written
// out whenever it fills.
class ShardSink {
 public:
  ShardSink(std::string split, const PrepareOptions& o, std::vector<std::string>& written)
      : split_(std::move(split)), dir_(o.out_dir), capacity_(o.shard_tokens), dry_run_(o.dry_run), written_(written) {}

  void add_document(const std::vector<int>& tokens, uint64_t text_bytes) {
    ++summary_.documents;
    summary_.text_bytes += text_bytes;
    ++current_documents_;
    push(&kEot, 1);
    push(tokens.data(), tokens.size());
  }

  // Writes the last, partial shard.
  void finish() {
    if (!buffer_.empty()) flush();
  }

  const SplitSummary& summary() const { return summary_; }

 private:
  static constexpr int kEot = kEndOfText;

  void push(const int* tokens, size_t n) {
    while (n > 0) {
      const size_t take = std::min<size_t>(n, capacity_ - buffer_.size());
      for (size_t i = 0; i < take; ++i) buffer_.push_back(static_cast<uint16_t>(tokens[i]));
      tokens += take;
      n -= take;
      if (buffer_.size() == capacity_) flush();
    }
  }

  void flush() {
    const std::string name = shard_file_name(split_, summary_.shards.size());
    if (!dry_run_) {
      const std::string path = dir_ + "/" + name;
      write_shard(path, buffer_);
      written_.push_back(path);
    }
    summary_.shards.push_back({name, buffer_.size(), current_documents_});
    summary_.tokens += buffer_.size();
    buffer_.clear();
    current_documents_ = 0;
  }

  std::string split_, dir_;
  size_t capacity_;
  bool dry_run_;
  std::vector<std::string>& written_;
  std::vector<uint16_t> buffer_;
  uint64_t current_documents_ = 0;
  SplitSummary summary_;
};

// "prepare: 12.3/45.6 MB (27%), 2.90M tokens, 8.1 MB/s, ETA 4s" on stderr,
// rewritten in place at most 5 times a second.
class Progress {
 public:
  Progress(bool enabled, uint64_t total_bytes) : enabled_(enabled), total_(total_bytes) {}

  void update(uint64_t bytes, uint64_t tokens, bool final = false) {
    if (!enabled_) return;
    const double t = seconds_since(start_);
    if (!final && t - last_ < 0.2) return;
    last_ = t;
    const double rate = t > 0 ? bytes / t : 0;
    const std::string eta =
        total_ > 0 && rate > 0 && !final ? ", ETA " + format_duration((total_ - std::min(bytes, total_)) / rate) : "";
    std::fprintf(stderr, "\rprepare: %.1f/%.1f MB (%.0f%%), %s tokens, %.1f MB/s%s   ", bytes / 1e6, total_ / 1e6,
                 total_ ? 100.0 * bytes / total_ : 100.0, format_count(static_cast<double>(tokens)).c_str(), rate / 1e6,
                 eta.c_str());
    if (final) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  bool enabled_;
  uint64_t total_;
  Clock::time_point start_ = Clock::now();
  double last_ = -1;
};

// Per INPUT argument: what it contributed (for the manifest).
struct InputStats {
  std::string path, kind, split;
  uint64_t files = 0, documents = 0, bytes = 0, skipped = 0;
};

class Run {
 public:
  explicit Run(const PrepareOptions& o)
      : o_(o),
        tokenizer_(Tokenizer::load(o.tokenizer_dir.empty() ? default_tokenizer_dir() : o.tokenizer_dir)),
        train_("train", o, written_),
        val_("val", o, written_) {}

  PrepareSummary run();

 private:
  std::vector<InputArgument> arguments() const;
  void count_sources();
  void encode_batch(std::vector<Document>& batch);
  void consume(const Document& doc, const std::vector<int>& tokens);
  void handle_error(const Document& doc);
  void write_manifest(const PrepareSummary& s) const;

  const PrepareOptions& o_;
  Tokenizer tokenizer_;
  std::vector<std::string> written_;  // shards this run wrote, removed if it stops
  ShardSink train_, val_;
  std::vector<Source> sources_;
  std::vector<InputStats> inputs_;
  std::vector<Tokenizer::Session> sessions_;
  std::vector<std::vector<int>> tokens_;  // per document of the current batch
  std::vector<std::string> errors_;
  uint64_t total_bytes_ = 0, consumed_bytes_ = 0, done_bytes_ = 0, done_tokens_ = 0;
  uint64_t skipped_documents_ = 0, skipped_files_ = 0;
  double encode_seconds_ = 0;
  int threads_ = 1;
  std::unique_ptr<Progress> progress_;
};

std::vector<InputArgument> Run::arguments() const {
  std::vector<InputArgument> args;
  for (const auto& p : o_.val_inputs) args.push_back({p, true});
  for (const auto& p : o_.inputs) args.push_back({p, false});
  return args;
}

void Run::count_sources() {
  const auto args = arguments();
  for (const auto& a : args) {
    std::error_code ec;
    const char* kind = a.path == "-" ? "stdin" : fs::is_directory(a.path, ec) ? "directory" : "file";
    const char* split = a.val ? "val" : o_.val_fraction > 0 ? "train+val" : "train";
    inputs_.push_back({a.path, kind, split});
  }
  for (const auto& s : sources_) {
    ++inputs_[s.input].files;
    inputs_[s.input].bytes += s.bytes;
    total_bytes_ += s.bytes;
  }
}

// Parses and encodes the batch's documents in parallel, largest first, into
// tokens_ (same index as the batch).
void Run::encode_batch(std::vector<Document>& batch) {
  const auto start = Clock::now();
  tokens_.resize(batch.size());
  std::vector<size_t> order(batch.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return batch[a].input_bytes > batch[b].input_bytes; });
  std::atomic<uint64_t> bytes{done_bytes_}, tokens{done_tokens_};
  std::exception_ptr failure;
  const long n = static_cast<long>(batch.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_)
  for (long k = 0; k < n; ++k) {
    const size_t i = order[static_cast<size_t>(k)];
    Document& doc = batch[i];
    tokens_[i].clear();
    try {
      if (doc.json_line) doc.resolve(str(sources_[doc.source].path, ":", doc.line));
      if (doc.error.empty()) sessions_[static_cast<size_t>(omp_get_thread_num())].encode(doc.text, tokens_[i]);
    } catch (...) {
#pragma omp critical(prepare_failure)
      if (!failure) failure = std::current_exception();
    }
    bytes += doc.input_bytes;
    tokens += tokens_[i].size() + 1;
    if (omp_get_thread_num() == 0) progress_->update(bytes.load(), tokens.load());
  }
  if (failure) std::rethrow_exception(failure);
  done_bytes_ = bytes.load();
  done_tokens_ = tokens.load();
  encode_seconds_ += seconds_since(start);
}

void Run::handle_error(const Document& doc) {
  if (!o_.skip_errors) fail(doc.error, " (pass --on-error skip to skip bad input)");
  (doc.whole_file ? skipped_files_ : skipped_documents_) += 1;
  ++inputs_[sources_[doc.source].input].skipped;
  if (errors_.size() < kMaxReportedErrors) errors_.push_back(doc.error);
  if (errors_.size() <= kMaxPrintedErrors) std::fprintf(stderr, "%swarning: %s (skipped)\n", o_.progress ? "\n" : "", doc.error.c_str());
}

// In input order: the split decision and the shard append.
void Run::consume(const Document& doc, const std::vector<int>& tokens) {
  const Source& source = sources_[doc.source];
  const bool val = source.val || (o_.val_fraction > 0 && consumed_bytes_ < o_.val_fraction * total_bytes_);
  consumed_bytes_ += doc.input_bytes;
  if (!doc.error.empty()) return handle_error(doc);
  ++inputs_[source.input].documents;
  (val ? val_ : train_).add_document(tokens, doc.text.size());
}

PrepareSummary Run::run() {
  const auto start = Clock::now();
  sources_ = expand_inputs(arguments());
  count_sources();
  threads_ = o_.threads > 0 ? o_.threads : std::max(1, omp_get_max_threads());
  for (int t = 0; t < threads_; ++t) sessions_.push_back(tokenizer_.session());
  progress_ = std::make_unique<Progress>(o_.progress, total_bytes_);
  if (!o_.dry_run) prepare_output_dir(o_);

  try {
    DocumentReader reader(sources_);
    std::vector<Document> batch;
    while (reader.next_batch(batch, kBatchBytes, kBatchDocuments)) {
      encode_batch(batch);
      for (size_t i = 0; i < batch.size(); ++i) consume(batch[i], tokens_[i]);
    }
    val_.finish();
    train_.finish();
    progress_->update(done_bytes_, done_tokens_, true);
    PrepareSummary s{train_.summary(), val_.summary(), total_bytes_, skipped_documents_, skipped_files_,
                     seconds_since(start), encode_seconds_, threads_};
    if (!o_.dry_run) write_manifest(s);
    return s;
  } catch (const std::exception& e) {
    if (o_.progress) std::fprintf(stderr, "\n");
    std::error_code ec;
    for (const auto& f : written_) fs::remove(f, ec);
    if (written_.empty()) throw;
    fail(e.what(), "; removed the ", written_.size(), " shard(s) this run had written, no manifest written");
  }
}

nlohmann::ordered_json split_json(const SplitSummary& s) {
  nlohmann::ordered_json j;
  j["tokens"] = s.tokens;
  j["documents"] = s.documents;
  j["text_bytes"] = s.text_bytes;
  j["shards"] = nlohmann::ordered_json::array();
  for (const auto& r : s.shards) j["shards"].push_back({{"file", r.file}, {"tokens", r.tokens}, {"documents", r.documents}});
  return j;
}

void Run::write_manifest(const PrepareSummary& s) const {
  nlohmann::ordered_json j;
  j["format"] = "speedrun .bin shards: 256 x int32 header (20240520, 1, token count), then uint16 tokens; "
                "<|endoftext|> (50256) before every document";
  j["created_by"] = "muongpt " MUONGPT_VERSION;
  j["command"] = o_.command;
  j["tokenizer"] = {{"name", "gpt2"}, {"vocab_size", tokenizer_.vocab_size()}, {"eot_token", tokenizer_.eot_token()}};
  j["shard_tokens"] = o_.shard_tokens;
  j["val_split"] = !o_.val_inputs.empty() ? std::string("the documents of the --val inputs")
                   : o_.val_fraction > 0  ? str("leading documents covering ", o_.val_fraction, " of the input bytes")
                                          : std::string("none");
  j["tokens"] = s.train.tokens + s.val.tokens;
  j["documents"] = s.train.documents + s.val.documents;
  j["input_bytes"] = s.input_bytes;
  j["train"] = split_json(s.train);
  j["val"] = split_json(s.val);
  j["skipped"] = {{"documents", s.skipped_documents}, {"files", s.skipped_files}, {"errors", errors_}};
  j["inputs"] = nlohmann::ordered_json::array();
  for (const auto& in : inputs_)
    j["inputs"].push_back({{"path", in.path}, {"kind", in.kind}, {"split", in.split}, {"files", in.files},
                           {"documents", in.documents}, {"bytes", in.bytes}, {"skipped", in.skipped}});
  write_text_file_atomic(o_.out_dir + "/manifest.json", j.dump(2) + "\n");
}

}  // namespace

std::string shard_file_name(const std::string& split, size_t index) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "_%06zu.bin", index);
  return split + buf;
}

PrepareSummary prepare_shards(const PrepareOptions& options) {
  validate(options);
  Run run(options);
  return run.run();
}

}  // namespace muongpt
