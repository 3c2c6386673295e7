// muongpt prepare: text files, directories, JSON lines or stdin -> GPT-2 token
// shards in the speedrun's .bin format + manifest.json (see data/prepare.h).
// Prints a summary line, then a JSON object as the last line of stdout.
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands/commands.h"
#include "data/prepare.h"
#include "util/error.h"

namespace muongpt {

namespace {

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=./,:@%") ==
                        std::string::npos)
    return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The command as recorded in the manifest: everything that shapes the output,
// nothing that does not (--threads, --progress, --overwrite), so a data set's
// manifest is the same for any thread count.
std::string canonical_command(const PrepareOptions& o, const std::string& on_error) {
  std::string cmd = "muongpt prepare";
  for (const auto& in : o.inputs) cmd += " " + shell_quote(in);
  if (!o.val_inputs.empty()) {
    cmd += " --val";
    for (const auto& in : o.val_inputs) cmd += " " + shell_quote(in);
  }
  cmd += " --out " + shell_quote(o.out_dir);
  if (o.val_fraction > 0) cmd += " --val-fraction " + nlohmann::json(o.val_fraction).dump();
  cmd += " --shard-tokens " + std::to_string(o.shard_tokens);
  if (on_error != "stop") cmd += " --on-error " + on_error;
  if (!o.tokenizer_dir.empty()) cmd += " --tokenizer " + shell_quote(o.tokenizer_dir);
  return cmd;
}

void print_summary(const PrepareOptions& o, const PrepareSummary& s) {
  const uint64_t tokens = s.train.tokens + s.val.tokens, documents = s.train.documents + s.val.documents;
  const double mb_per_s = s.encode_seconds > 0 ? s.input_bytes / 1e6 / s.encode_seconds : 0;
  std::printf("prepare: %llu documents, %llu tokens: train %llu tokens in %zu shard(s), val %llu tokens in %zu shard(s)"
              "%s%s; %.2f s (encoding %.1f MB/s on %d thread(s))\n",
              static_cast<unsigned long long>(documents), static_cast<unsigned long long>(tokens),
              static_cast<unsigned long long>(s.train.tokens), s.train.shards.size(),
              static_cast<unsigned long long>(s.val.tokens), s.val.shards.size(),
              o.dry_run ? " (dry run, nothing written)" : (" -> " + o.out_dir).c_str(),
              s.skipped_documents + s.skipped_files ? str(", skipped ", s.skipped_documents, " document(s) and ",
                                                          s.skipped_files, " file(s)").c_str()
                                                    : "",
              s.seconds, mb_per_s, s.threads);
  if (s.val.tokens == 0 && !o.dry_run)
    std::fprintf(stderr, "note: no validation split (use --val-fraction F or --val INPUT...)\n");
  const nlohmann::json result = {
      {"documents", documents},          {"tokens", tokens},
      {"train_tokens", s.train.tokens},  {"val_tokens", s.val.tokens},
      {"train_shards", s.train.shards.size()}, {"val_shards", s.val.shards.size()},
      {"input_bytes", s.input_bytes},    {"skipped_documents", s.skipped_documents},
      {"skipped_files", s.skipped_files}, {"threads", s.threads},
      {"seconds", s.seconds},            {"encode_seconds", s.encode_seconds},
      {"encode_mb_per_s", mb_per_s},     {"out", o.dry_run ? std::string() : o.out_dir}};
  std::printf("%s\n", result.dump().c_str());
}

}  // namespace

void register_prepare(CLI::App& app) {
  struct Options {
    PrepareOptions prepare;
    std::string on_error = "stop";
    bool progress = false, no_progress = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "prepare",
      "tokenize text into .bin shards + manifest.json (last line: a JSON object). INPUT: text file (one document), "
      "directory (its .txt/.md/.jsonl files, recursed, sorted), FILE.jsonl (one document per line, field \"text\"), "
      "or - (stdin, one document)");
  auto& p = o->prepare;
  cmd->add_option("inputs", p.inputs, "inputs of the train split (and of the val split with --val-fraction)");
  cmd->add_option("--val", p.val_inputs, "inputs that form the val split (all following arguments up to the next flag)");
  cmd->add_option("--out,-o", p.out_dir, "output directory for train_NNNNNN.bin, val_NNNNNN.bin, manifest.json");
  cmd->add_option("--val-fraction", p.val_fraction,
                  "val split: the leading documents covering this fraction of the input bytes (default 0: none)");
  cmd->add_option("--shard-tokens", p.shard_tokens, "tokens per shard (default 100000000, as the speedrun's)");
  cmd->add_option("--threads,-j", p.threads, "encoding threads (default: all cores); the output does not depend on it");
  cmd->add_option("--on-error", o->on_error, "bad input (unreadable file, invalid JSON line): stop (default) or skip")
      ->check(CLI::IsMember({"stop", "skip"}));
  cmd->add_flag("--overwrite", p.overwrite, "replace the shards and manifest already in --out");
  cmd->add_flag("--dry-run", p.dry_run, "encode and count, write nothing");
  cmd->add_flag("--progress", o->progress, "show the progress line even when stderr is not a terminal");
  cmd->add_flag("--no-progress", o->no_progress, "never show the progress line");
  cmd->add_option("--tokenizer", p.tokenizer_dir, "directory with encoder.json and vocab.bpe (default: data/gpt2)");
  cmd->callback([o] {
    PrepareOptions& p = o->prepare;
    p.skip_errors = o->on_error == "skip";
    p.progress = !o->no_progress && (o->progress || ::isatty(STDERR_FILENO));
    p.command = canonical_command(p, o->on_error);
    print_summary(p, prepare_shards(p));
  });
}

}  // namespace muongpt
