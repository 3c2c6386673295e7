// Training and validation batches from token shards.
//
// Training order (deterministic, the speedrun's slicing made independent of
// the world size): shards are read in sorted order; a global batch is the
// next G = grad_accum * world * B * T tokens of the current shard (plus one
// for the last target). Micro-step m of rank r reads the contiguous slice
//   [base + (m*world + r)*B*T, ... + B*T + 1)
// whose sequence i is inputs = slice[i*T, i*T+T), targets = inputs shifted by
// one. After the step base advances by G; when the next global batch would
// not fit, the loader moves to the next shard (wrapping to the first, which
// starts a new epoch). The tokens of one step are therefore the same for any
// split of G into world x grad_accum. Under a batch-size schedule (GeometryAt,
// batch.stages) step s's batch has the G and T of its stage, read from where
// the previous step's ended.
//
// BOS-aligned packing (optional, Packing::bos_aligned): the step's
// G / T sequences are built one after another from the shard, each starting
// at an <|endoftext|> token: whole documents (each cut to max_doc_len tokens
// when that is set) are appended until T + 1 tokens are filled; the document
// that does not fit is cut there and the next sequence starts at the next
// document start after it. Sequence s of the step goes to rank r, micro-step m
// and row b with s = (m*world + r)*B + b, as in the contiguous mode, so a
// step's tokens again do not depend on the world size. A step that would run
// past the end of its shard moves to the next shard.
//
// Document ids (StepBatch::doc_ids): per sequence, the number of
// <|endoftext|> tokens at or before each position, so a document's tokens,
// including the <|endoftext|> that opens it, share one id.
//
// Validation: the first val_tokens tokens of the val shards (concatenated),
// cut into sequences of T tokens, each with its next-token targets; when T does
// not divide val_tokens the last sequence holds the val_tokens % T tokens left
// (so a run reads the record's exact validation tokens whatever its seq_len).
// Rank r evaluates a contiguous block of sequences; the summed losses are
// reduced, so the value is the same for every world size.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "data/shard.h"
#include "util/host_buffer.h"

namespace muongpt {

struct LoaderPosition {
  int shard = 0;        // index into the sorted shard list
  int64_t offset = 0;   // token offset of the next global batch in that shard
  int64_t epoch = 0;    // completed passes over all shards
  int64_t step = 0;     // the optimizer step whose batch is read next (picks its geometry)
};

struct BatchGeometry {
  int micro_batch = 1;  // sequences per micro-step per rank
  int seq_len = 1;
  int grad_accum = 1;
  int rank = 0;
  int world = 1;
  int64_t global_tokens() const { return static_cast<int64_t>(grad_accum) * world * micro_batch * seq_len; }
  int64_t global_sequences() const { return static_cast<int64_t>(grad_accum) * world * micro_batch; }
};

// The geometry of step s's batch, for batch-size schedules (batch.stages);
// empty = the loader's one geometry for every step.
using GeometryAt = std::function<BatchGeometry(int64_t step)>;

struct Packing {
  bool bos_aligned = false;  // every sequence starts at a document start
  int max_doc_len = 0;       // with bos_aligned: cut documents to this many tokens (0 = no limit)
};

// Per sequence of n_seq x seq_len tokens: doc_ids[i] = number of
// <|endoftext|> tokens in the sequence at positions <= i.
void document_ids(const int32_t* tokens, int n_seq, int seq_len, int32_t* doc_ids);

// Inputs and targets of one optimizer step for one rank: grad_accum
// micro-batches of (micro_batch x seq_len) int32 token ids.
// The buffers are page-locked when the batch was made with pin = true and
// the machine has a GPU (util/host_buffer.h), ordinary memory otherwise.
struct StepBatch {
  explicit StepBatch(bool pin = false)
      : inputs(HostAllocator<int32_t>(pin)), targets(HostAllocator<int32_t>(pin)), doc_ids(HostAllocator<int32_t>(pin)) {}
  HostVector<int32_t> inputs;
  HostVector<int32_t> targets;
  HostVector<int32_t> doc_ids;  // document id per input token (see document_ids)
  LoaderPosition position;  // where this batch was read from
  BatchGeometry geometry;   // its shape: grad_accum micro-batches of micro_batch x seq_len tokens
};

class TrainLoader {
 public:
  // `pattern` and `key` are for error messages (e.g. "data.train_pattern").
  // With `geometry_at` each step's batch has the geometry it gives for the
  // step (LoaderPosition::step); `geometry` is then the largest of them,
  // which some shard must hold.
  TrainLoader(const std::string& pattern, const std::string& key, const BatchGeometry& geometry, int vocab_size,
              const Packing& packing = {}, GeometryAt geometry_at = {});

  // Reads the batch at the current position and advances past it; the
  // second form fills `out`, reusing its buffers.
  StepBatch next();
  void next(StepBatch& out);

  LoaderPosition position() const { return pos_; }
  void set_position(const LoaderPosition& pos);
  const std::vector<std::string>& files() const { return files_; }

 private:
  const Shard& shard(int index);
  // The geometry of the batch at pos_.
  BatchGeometry geometry() const { return geometry_at_ ? geometry_at_(pos_.step) : geo_; }
  void skip_to_fitting_shard();
  // BOS-aligned mode: the step's sequences (global_sequences x (seq_len+1)
  // tokens) packed from shard `index` starting at `offset`; returns the
  // offset after them, or -1 when the shard ends first.
  int64_t pack_step(const BatchGeometry& geo, int index, int64_t offset, std::vector<uint16_t>& packed);
  void next_bos_aligned(StepBatch& batch);

  std::vector<std::string> files_;
  std::vector<int64_t> sizes_;  // tokens per shard
  std::string key_;
  BatchGeometry geo_;
  GeometryAt geometry_at_;
  Packing packing_;
  int vocab_size_;
  LoaderPosition pos_;
  int loaded_index_ = -1;
  std::unique_ptr<Shard> loaded_;
};

// Reads the next step's batch on a background thread while the current step
// computes (double buffering: two batches, one being filled while the other
// is used; with pin_memory both are page-locked, see StepBatch). The position
// of the batch handed out last is what a checkpoint must store to resume
// exactly.
class PrefetchingLoader {
 public:
  explicit PrefetchingLoader(std::unique_ptr<TrainLoader> loader, bool pin_memory = false);
  ~PrefetchingLoader();
  PrefetchingLoader(const PrefetchingLoader&) = delete;
  PrefetchingLoader& operator=(const PrefetchingLoader&) = delete;

  // The next batch; valid until the following call to next() or set_position().
  const StepBatch& next();
  // Whether the batch buffers are page-locked.
  bool pinned() const;
  // Position to resume from after the batches handed out so far.
  LoaderPosition resume_position() const { return resume_; }
  void set_position(const LoaderPosition& pos);

 private:
  void start_fetch();
  void wait_fetch();

  std::unique_ptr<TrainLoader> loader_;
  std::thread worker_;
  StepBatch slots_[2];
  int filling_ = 0;  // the slot the worker writes
  std::exception_ptr error_;
  bool has_pending_ = false;
  LoaderPosition resume_;
};

class ValSet {
 public:
  ValSet(const std::string& pattern, const std::string& key, int64_t val_tokens, int seq_len, int vocab_size);

  int num_sequences() const { return num_sequences_; }
  int64_t num_tokens() const { return static_cast<int64_t>(tokens_.size()) - 1; }
  int seq_len() const { return seq_len_; }
  int sequence_length(int i) const;  // seq_len, or what is left for the last sequence
  // Sequences [first, first + count) of equal length as inputs/targets (count x that length).
  void sequences(int first, int count, std::vector<int32_t>& inputs, std::vector<int32_t>& targets) const;
  // The contiguous block of sequences rank `rank` of `world` evaluates.
  std::pair<int, int> rank_range(int rank, int world) const;

  // How sequences longer than the model's buffers are evaluated: in chunks
  // of at most max_len tokens. Each chunk after the first starts `context`
  // tokens before the first position it scores (rounded down to a multiple of
  // `align`), so every scored position sees all the earlier tokens its logits
  // can depend on (ModelConfig::lookback_tokens) with the masks it would have
  // in the whole sequence (document ids come from the whole sequence; block
  // windows from chunk starts on block boundaries).
  struct Chunking {
    int max_len = 0;   // the model's sequence buffers
    int context = 0;   // < max_len
    int align = 1;     // chunk starts are multiples of this
  };
  // forward(inputs, targets, doc_ids, n, len, losses): fills losses with the
  // n x len per-token losses.
  using Forward = std::function<void(const int32_t* inputs, const int32_t* targets, const int32_t* doc_ids, int n,
                                     int len, std::vector<float>& losses)>;
  // Sum of the token losses of sequences [first, first + count): pieces of
  // equal length run at most max_batch at a time; a sequence longer than
  // chunking.max_len runs in chunks that each score only their new positions.
  double loss_sum(int first, int count, int max_batch, const Chunking& chunking, const Forward& forward) const;
  // The chunks, as (begin, end, first scored position) within a sequence of len tokens.
  struct Piece {
    int begin, end, scored_from;
  };
  static std::vector<Piece> pieces(int len, const Chunking& chunking);

 private:
  std::vector<uint16_t> tokens_;  // val_tokens + 1
  int seq_len_;
  int num_sequences_;
};

}  // namespace muongpt
