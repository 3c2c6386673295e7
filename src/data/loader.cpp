#include "data/loader.h"

#include <algorithm>
#include <limits>

#include "util/error.h"
#include "util/fs.h"

namespace muongpt {

void document_ids(const int32_t* tokens, int n_seq, int seq_len, int32_t* doc_ids) {
  for (int s = 0; s < n_seq; ++s) {
    int32_t id = 0;
    for (int t = 0; t < seq_len; ++t) {
      const size_t i = static_cast<size_t>(s) * seq_len + t;
      id += tokens[i] == kEndOfText;
      doc_ids[i] = id;
    }
  }
}

TrainLoader::TrainLoader(const std::string& pattern, const std::string& key, const BatchGeometry& geometry,
                         int vocab_size, const Packing& packing, GeometryAt geometry_at)
    : files_(glob_files(pattern)),
      key_(key),
      geo_(geometry),
      geometry_at_(std::move(geometry_at)),
      packing_(packing),
      vocab_size_(vocab_size) {
  if (files_.empty()) fail(key_, ": no files match \"", pattern, "\"");
  // Validate every shard's header up front: a foreign file fails now, not hours in.
  bool any_fits = false;
  for (const auto& f : files_) {
    sizes_.push_back(static_cast<int64_t>(read_shard_token_count(f)));
    any_fits |= sizes_.back() >= geo_.global_tokens() + 1;
  }
  if (!any_fits)
    fail(key_, ": no shard matching \"", pattern, "\" holds one global batch of ", geo_.global_tokens(),
         " tokens (+1 target); use more data or a smaller batch.global_tokens");
  skip_to_fitting_shard();
}

const Shard& TrainLoader::shard(int index) {
  if (loaded_index_ != index) {
    loaded_ = std::make_unique<Shard>(files_[index]);
    check_token_ids(*loaded_, vocab_size_);
    loaded_index_ = index;
  }
  return *loaded_;
}

void TrainLoader::skip_to_fitting_shard() {
  // Move forward (wrapping) until the global batch at pos_ fits in its shard.
  const int64_t need = geometry().global_tokens() + 1;
  for (size_t tries = 0; tries <= files_.size(); ++tries) {
    if (pos_.offset + need <= sizes_[pos_.shard]) return;
    pos_.offset = 0;
    pos_.shard += 1;
    if (pos_.shard == static_cast<int>(files_.size())) {
      pos_.shard = 0;
      pos_.epoch += 1;
    }
  }
  MUONGPT_CHECK(false, "no shard fits a global batch");
}

void TrainLoader::set_position(const LoaderPosition& pos) {
  if (pos.shard < 0 || pos.shard >= static_cast<int>(files_.size()) || pos.offset < 0)
    fail(key_, ": cannot resume at shard ", pos.shard, " offset ", pos.offset, ": only ", files_.size(),
         " shards match (did the data change since the checkpoint?)");
  pos_ = pos;
  skip_to_fitting_shard();
}

StepBatch TrainLoader::next() {
  StepBatch batch;
  next(batch);
  return batch;
}

void TrainLoader::next(StepBatch& batch) {
  if (packing_.bos_aligned) return next_bos_aligned(batch);
  const BatchGeometry geo = geometry();
  batch.position = pos_;
  batch.geometry = geo;
  const Shard& s = shard(pos_.shard);
  const int B = geo.micro_batch, T = geo.seq_len;
  const size_t per_micro = static_cast<size_t>(B) * T;
  batch.inputs.resize(per_micro * geo.grad_accum);
  batch.targets.resize(per_micro * geo.grad_accum);
  for (int m = 0; m < geo.grad_accum; ++m) {
    const int64_t start = pos_.offset + static_cast<int64_t>(m * geo.world + geo.rank) * B * T;
    const uint16_t* src = s.tokens() + start;
    int32_t* in = batch.inputs.data() + m * per_micro;
    int32_t* tg = batch.targets.data() + m * per_micro;
    for (size_t i = 0; i < per_micro; ++i) {
      in[i] = src[i];
      tg[i] = src[i + 1];
    }
  }
  pos_.offset += geo.global_tokens();
  pos_.step += 1;
  skip_to_fitting_shard();
  batch.doc_ids.resize(batch.inputs.size());
  document_ids(batch.inputs.data(), geo.grad_accum * B, T, batch.doc_ids.data());
}

int64_t TrainLoader::pack_step(const BatchGeometry& geo, int index, int64_t offset, std::vector<uint16_t>& packed) {
  const Shard& s = shard(index);
  const int64_t n = static_cast<int64_t>(s.size());
  const uint16_t* tok = s.tokens();
  const size_t row = static_cast<size_t>(geo.seq_len) + 1;
  const int64_t max_doc = packing_.max_doc_len > 0 ? packing_.max_doc_len : std::numeric_limits<int64_t>::max();
  packed.assign(static_cast<size_t>(geo.global_sequences()) * row, 0);
  int64_t pos = offset;
  for (int64_t seq = 0; seq < geo.global_sequences(); ++seq) {
    while (pos < n && tok[pos] != kEndOfText) ++pos;  // the next document start
    if (pos >= n) return -1;
    uint16_t* out = packed.data() + static_cast<size_t>(seq) * row;
    size_t filled = 0;
    while (filled < row) {
      if (pos >= n) return -1;  // the shard ends inside this sequence
      // One document: from its <|endoftext|> to the next one (or the shard's end).
      int64_t end = pos + 1;
      while (end < n && tok[end] != kEndOfText) ++end;
      if (end >= n && filled + (end - pos) < row) return -1;  // the shard ends inside this sequence
      const int64_t take = std::min<int64_t>({end - pos, max_doc, static_cast<int64_t>(row - filled)});
      std::copy(tok + pos, tok + pos + take, out + filled);
      filled += static_cast<size_t>(take);
      pos = end;  // the rest of a cut document is skipped
    }
  }
  return pos;
}

void TrainLoader::next_bos_aligned(StepBatch& batch) {
  std::vector<uint16_t> packed;
  const BatchGeometry geo = geometry();
  for (size_t tries = 0; tries <= files_.size(); ++tries) {
    const int64_t after = pack_step(geo, pos_.shard, pos_.offset, packed);
    if (after >= 0) {
      batch.position = pos_;
      batch.geometry = geo;
      const int B = geo.micro_batch, T = geo.seq_len;
      const size_t per_micro = static_cast<size_t>(B) * T, row = static_cast<size_t>(T) + 1;
      batch.inputs.resize(per_micro * geo.grad_accum);
      batch.targets.resize(per_micro * geo.grad_accum);
      for (int m = 0; m < geo.grad_accum; ++m)
        for (int b = 0; b < B; ++b) {
          const size_t seq = static_cast<size_t>(m * geo.world + geo.rank) * B + b;
          const uint16_t* src = packed.data() + seq * row;
          int32_t* in = batch.inputs.data() + m * per_micro + static_cast<size_t>(b) * T;
          int32_t* tg = batch.targets.data() + m * per_micro + static_cast<size_t>(b) * T;
          for (int t = 0; t < T; ++t) {
            in[t] = src[t];
            tg[t] = src[t + 1];
          }
        }
      batch.doc_ids.resize(batch.inputs.size());
      document_ids(batch.inputs.data(), geo.grad_accum * B, T, batch.doc_ids.data());
      pos_.offset = after;
      pos_.step += 1;
      return;
    }
    // This shard cannot hold the step from here: the next one, from its start.
    pos_.offset = 0;
    pos_.shard += 1;
    if (pos_.shard == static_cast<int>(files_.size())) {
      pos_.shard = 0;
      pos_.epoch += 1;
    }
  }
  fail(key_, ": no shard holds one BOS-aligned global batch of ", geo.global_sequences(), " sequences of ",
       geo.seq_len, " tokens (data.bos_aligned); use more data or a smaller batch.global_tokens");
}

// ---------------------------------------------------------------------------

PrefetchingLoader::PrefetchingLoader(std::unique_ptr<TrainLoader> loader, bool pin_memory)
    : loader_(std::move(loader)), slots_{StepBatch(pin_memory), StepBatch(pin_memory)} {
  resume_ = loader_->position();
  start_fetch();
}

PrefetchingLoader::~PrefetchingLoader() {
  if (worker_.joinable()) worker_.join();
}

bool PrefetchingLoader::pinned() const {
  const auto& in = slots_[0].inputs;
  return !in.empty() && host_memory::is_pinned(in.data());
}

void PrefetchingLoader::start_fetch() {
  has_pending_ = true;
  error_ = nullptr;
  worker_ = std::thread([this, slot = &slots_[filling_]] {
    try {
      loader_->next(*slot);
    } catch (...) {
      error_ = std::current_exception();
    }
  });
}

void PrefetchingLoader::wait_fetch() {
  worker_.join();
  has_pending_ = false;
  if (error_) std::rethrow_exception(error_);
}

const StepBatch& PrefetchingLoader::next() {
  wait_fetch();
  const int ready = filling_;
  resume_ = loader_->position();  // the batch after this one
  filling_ = 1 - filling_;        // the worker now fills the other slot
  start_fetch();
  return slots_[ready];
}

void PrefetchingLoader::set_position(const LoaderPosition& pos) {
  if (has_pending_) {
    try {
      wait_fetch();
    } catch (...) {  // the old prefetch no longer matters
    }
  }
  loader_->set_position(pos);
  resume_ = loader_->position();
  start_fetch();
}

// ---------------------------------------------------------------------------

ValSet::ValSet(const std::string& pattern, const std::string& key, int64_t val_tokens, int seq_len, int vocab_size)
    : seq_len_(seq_len), num_sequences_(static_cast<int>((val_tokens + seq_len - 1) / seq_len)) {
  const auto files = glob_files(pattern);
  if (files.empty()) fail(key, ": no files match \"", pattern, "\"");
  const size_t need = static_cast<size_t>(val_tokens) + 1;
  tokens_.reserve(need);
  for (const auto& f : files) {
    if (tokens_.size() >= need) break;
    Shard s(f);
    check_token_ids(s, vocab_size);
    const size_t take = std::min(need - tokens_.size(), s.size());
    tokens_.insert(tokens_.end(), s.tokens(), s.tokens() + take);
  }
  if (tokens_.size() < need)
    fail(key, ": the val shards matching \"", pattern, "\" hold ", tokens_.size(), " tokens but data.val_tokens = ",
         val_tokens, " needs ", need, " (one extra for the last target)");
}

int ValSet::sequence_length(int i) const {
  return static_cast<int>(std::min<int64_t>(seq_len_, num_tokens() - static_cast<int64_t>(i) * seq_len_));
}

void ValSet::sequences(int first, int count, std::vector<int32_t>& inputs, std::vector<int32_t>& targets) const {
  const int len = sequence_length(first);
  MUONGPT_CHECK(count >= 1 && first + count <= num_sequences_ && sequence_length(first + count - 1) == len);
  const size_t n = static_cast<size_t>(count) * len;
  inputs.resize(n);
  targets.resize(n);
  const size_t start = static_cast<size_t>(first) * seq_len_;
  for (size_t i = 0; i < n; ++i) {
    inputs[i] = tokens_[start + i];
    targets[i] = tokens_[start + i + 1];
  }
}

std::vector<ValSet::Piece> ValSet::pieces(int len, const Chunking& chunking) {
  MUONGPT_CHECK(len >= 1 && chunking.max_len >= 1 && chunking.align >= 1);
  if (len <= chunking.max_len) return {{0, len, 0}};
  MUONGPT_CHECK(chunking.context >= 0 && chunking.context < chunking.max_len);
  std::vector<Piece> out;
  int scored = 0;  // the first position not scored yet
  while (scored < len) {
    int begin = std::max(0, scored - chunking.context);
    begin -= begin % chunking.align;
    const int end = std::min(len, begin + chunking.max_len);
    MUONGPT_CHECK(end > scored);  // context + align - 1 < max_len, checked by the caller
    out.push_back({begin, end, scored});
    scored = end;
  }
  return out;
}

double ValSet::loss_sum(int first, int count, int max_batch, const Chunking& chunking, const Forward& forward) const {
  struct Job {
    int seq;
    Piece piece;
  };
  std::vector<Job> jobs;
  for (int i = first; i < first + count; ++i)
    for (const Piece& p : pieces(sequence_length(i), chunking)) jobs.push_back({i, p});

  std::vector<int32_t> seq_in, seq_tg, seq_doc, inputs, targets, doc_ids;
  std::vector<float> losses;
  int doc_seq = -1;  // the sequence seq_doc holds
  double sum = 0;
  for (size_t j = 0; j < jobs.size();) {
    const int len = jobs[j].piece.end - jobs[j].piece.begin;
    size_t n = 1;  // consecutive jobs of the same length batch together
    while (j + n < jobs.size() && static_cast<int>(n) < max_batch &&
           jobs[j + n].piece.end - jobs[j + n].piece.begin == len)
      ++n;
    inputs.resize(n * len);
    targets.resize(n * len);
    doc_ids.resize(n * len);
    for (size_t r = 0; r < n; ++r) {
      const Job& job = jobs[j + r];
      if (doc_seq != job.seq) {  // ids over the whole sequence, so chunks keep its documents
        sequences(job.seq, 1, seq_in, seq_tg);
        seq_doc.resize(seq_in.size());
        document_ids(seq_in.data(), 1, static_cast<int>(seq_in.size()), seq_doc.data());
        doc_seq = job.seq;
      }
      std::copy_n(seq_in.begin() + job.piece.begin, len, inputs.begin() + r * len);
      std::copy_n(seq_tg.begin() + job.piece.begin, len, targets.begin() + r * len);
      std::copy_n(seq_doc.begin() + job.piece.begin, len, doc_ids.begin() + r * len);
    }
    losses.assign(n * len, 0.0f);
    forward(inputs.data(), targets.data(), doc_ids.data(), static_cast<int>(n), len, losses);
    MUONGPT_CHECK(losses.size() == n * len);
    for (size_t r = 0; r < n; ++r) {
      const Piece& p = jobs[j + r].piece;
      for (int t = p.scored_from - p.begin; t < len; ++t) sum += losses[r * len + t];
    }
    j += n;
  }
  return sum;
}

std::pair<int, int> ValSet::rank_range(int rank, int world) const {
  const int64_t n = num_sequences_;
  const int begin = static_cast<int>(n * rank / world);
  const int end = static_cast<int>(n * (rank + 1) / world);
  return {begin, end - begin};
}

}  // namespace muongpt
