// `muongpt prepare`: text -> GPT-2 token shards + manifest.json.
//
// One pass, with the same output for any number of threads:
//   1. the INPUT arguments expand into sources (prepare_inputs.h): --val
//      arguments first, then the others;
//   2. documents are read in order, in batches of about 32 MB;
//   3. a batch's documents are parsed (JSON lines) and encoded in parallel,
//      largest first, one tokenizer session per thread;
//   4. in input order, each document appends <|endoftext|> and its tokens to
//      its split's current shard (documents may span shards); a full shard
//      (--shard-tokens) is written atomically as DIR/{train,val}_NNNNNN.bin;
//   5. the last partial shards, then DIR/manifest.json, are written.
// Validation split: the documents of --val inputs, or with --val-fraction F
// the leading documents (in input order) until they cover F of all input
// bytes (the document that crosses the mark is included), or none.
// Bad input (unreadable file, invalid JSON line, no "text") stops the run
// (--on-error stop) or is counted and skipped (--on-error skip). A run that
// stops removes the shards it wrote and writes no manifest; shards are never
// left half-written (temporary file + rename).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/prepare_inputs.h"

namespace muongpt {

struct PrepareOptions {
  std::vector<std::string> inputs;      // INPUT...
  std::vector<std::string> val_inputs;  // --val INPUT...
  std::string out_dir;                  // --out
  double val_fraction = 0;              // --val-fraction
  uint64_t shard_tokens = 100'000'000;  // --shard-tokens
  int threads = 0;                      // --threads; 0: all cores
  bool skip_errors = false;             // --on-error skip
  bool overwrite = false;               // --overwrite
  bool dry_run = false;                 // --dry-run: encode and count, write nothing
  bool progress = false;                // progress line on stderr
  std::string tokenizer_dir;            // --tokenizer; empty: data/gpt2
  std::string command;                  // recorded in the manifest
};

struct ShardRecord {
  std::string file;  // name inside the output directory
  uint64_t tokens = 0;
  uint64_t documents = 0;  // documents that start in this shard (= its <|endoftext|> count)
};

struct SplitSummary {
  uint64_t tokens = 0, documents = 0, text_bytes = 0;
  std::vector<ShardRecord> shards;
};

struct PrepareSummary {
  SplitSummary train, val;
  uint64_t input_bytes = 0;
  uint64_t skipped_documents = 0, skipped_files = 0;
  double seconds = 0;         // whole run
  double encode_seconds = 0;  // parsing + encoding only (the parallel part)
  int threads = 1;
};

// Validates the options (throws Error naming the flag) and runs.
PrepareSummary prepare_shards(const PrepareOptions& options);

// Shard file name: "train_000003.bin".
std::string shard_file_name(const std::string& split, size_t index);

}  // namespace muongpt
