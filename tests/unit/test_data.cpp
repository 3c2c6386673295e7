// Shards and the loaders: format checks, slicing across world sizes, resume.
#include <fstream>
#include <map>
#include <set>

#include "data/loader.h"
#include "data/shard.h"
#include "test_support.h"

using namespace muongpt;
using namespace muongpt::test;

namespace {

// Shards whose token i (globally numbered across shards) is i % 50000, so
// every position is identifiable.
std::string make_shards(const std::string& name, const std::vector<size_t>& sizes, size_t first_value = 0) {
  const auto dir = scratch_dir(name);
  size_t value = first_value;
  for (size_t s = 0; s < sizes.size(); ++s) {
    std::vector<uint16_t> tokens(sizes[s]);
    for (auto& t : tokens) t = static_cast<uint16_t>(value++ % 50000);
    char file[32];
    std::snprintf(file, sizeof(file), "train_%06zu.bin", s);
    write_shard((dir / file).string(), tokens);
  }
  return (dir / "train_*.bin").string();
}

}  // namespace

TEST_CASE("shard round trip and statistics", "[data][shard]") {
  const auto dir = scratch_dir("shard");
  const std::string path = (dir / "a.bin").string();
  const std::vector<uint16_t> tokens = {50256, 10, 20, 50256, 7};
  write_shard(path, tokens);
  REQUIRE(read_shard_token_count(path) == 5);
  Shard s(path);
  REQUIRE(std::vector<uint16_t>(s.tokens(), s.tokens() + s.size()) == tokens);
  const ShardStats st = scan_tokens(s.tokens(), s.size());
  REQUIRE(st.end_of_text == 2);
  REQUIRE(st.min_id == 7);
  REQUIRE(st.max_id == 50256);
  require_error([&] { check_token_ids(s, 50000); }, {path, "token id 50256", "position 0", "vocab_size 50000"});
  REQUIRE(!std::filesystem::exists(path + ".tmp"));
}

TEST_CASE("foreign and damaged shards give clear errors", "[data][shard]") {
  const auto dir = scratch_dir("badshard");
  const std::string good = (dir / "good.bin").string();
  write_shard(good, std::vector<uint16_t>(100, 3));
  auto bytes = [&] {
    std::ifstream in(good, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(in), {});
  }();
  auto write = [&](const std::string& name, const std::vector<char>& b) {
    const std::string p = (dir / name).string();
    std::ofstream(p, std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
    return p;
  };
  auto truncated = bytes;
  truncated.resize(bytes.size() - 10);
  require_error([&] { read_shard_token_count(write("trunc.bin", truncated)); }, {"trunc.bin", "truncated"});
  auto odd = bytes;
  odd.push_back(0);
  require_error([&] { read_shard_token_count(write("odd.bin", odd)); }, {"odd.bin", "odd number of body bytes"});
  auto magic = bytes;
  magic[0] = 1;
  require_error([&] { read_shard_token_count(write("magic.bin", magic)); }, {"magic.bin", "bad magic", "20240520"});
  auto version = bytes;
  version[4] = 7;
  require_error([&] { read_shard_token_count(write("version.bin", version)); }, {"version.bin", "unsupported version 7"});
  require_error([&] { read_shard_token_count(write("tiny.bin", {'a', 'b'})); }, {"tiny.bin", "shorter than"});
  auto extra = bytes;
  extra.push_back(0);
  extra.push_back(0);
  require_error([&] { read_shard_token_count(write("extra.bin", extra)); }, {"extra.bin", "trailing data"});
}

TEST_CASE("every rank reads a disjoint contiguous part, the same tokens for any world size", "[data][loader]") {
  const int B = 2, T = 8;
  const int64_t global = 96;  // tokens per step
  const std::string pattern = make_shards("slicing", {1000, 700, 500});
  auto tokens_of_steps = [&](int world, int steps) {
    // multiset of (step, token) over all ranks and micro-steps
    std::vector<std::multiset<int>> per_step(steps);
    for (int rank = 0; rank < world; ++rank) {
      BatchGeometry g{B, T, static_cast<int>(global / (B * T * world)), rank, world};
      TrainLoader loader(pattern, "data.train_pattern", g, 50257);
      for (int s = 0; s < steps; ++s) {
        const StepBatch b = loader.next();
        REQUIRE(b.inputs.size() == size_t(g.grad_accum) * B * T);
        for (size_t i = 0; i < b.inputs.size(); ++i) {
          REQUIRE(b.targets[i] == (b.inputs[i] + 1) % 50000);  // next-token targets
          per_step[s].insert(b.inputs[i]);
        }
      }
    }
    return per_step;
  };
  const int steps = 30;  // crosses both shard boundaries and wraps around
  const auto one = tokens_of_steps(1, steps);
  for (int world : {2, 3, 6}) {
    INFO("world " << world);
    REQUIRE(tokens_of_steps(world, steps) == one);
  }
  // each step covers each of its tokens exactly once, contiguous within a shard
  for (int s = 0; s < steps; ++s) {
    REQUIRE(one[s].size() == size_t(global));
    std::set<int> unique(one[s].begin(), one[s].end());
    REQUIRE(unique.size() == size_t(global));
    REQUIRE(*unique.rbegin() - *unique.begin() == global - 1);
  }
  // shard 0 holds 1000 tokens: 10 batches of 96 (+1) fit, then shard 1 starts at token 1000
  REQUIRE(*one[9].begin() == 864);
  REQUIRE(*one[10].begin() == 1000);
  REQUIRE(*one[16].begin() == 1000 + 6 * 96);  // 700 tokens hold 7 batches
  REQUIRE(*one[17].begin() == 1700);           // shard 2 (500 tokens: 5 batches)
  REQUIRE(*one[22].begin() == 0);              // wrapped to shard 0: a new epoch
}

TEST_CASE("world sizes 1, 2, 3 and 8 cover each token of an epoch exactly once", "[data][loader]") {
  const int B = 1, T = 2, global = 48;
  const std::string pattern = make_shards("cover", {global * 10 + 1});
  for (int world : {1, 2, 3, 8}) {
    INFO("world " << world);
    std::multiset<int> seen;
    for (int rank = 0; rank < world; ++rank) {
      BatchGeometry g{B, T, global / (B * T * world), rank, world};
      TrainLoader loader(pattern, "data.train_pattern", g, 50257);
      for (int s = 0; s < 10; ++s)
        for (int32_t t : loader.next().inputs) seen.insert(t);
    }
    REQUIRE(seen.size() == 480);
    REQUIRE(std::set<int>(seen.begin(), seen.end()).size() == 480);
  }
}

TEST_CASE("the loader resumes mid-shard and across shard boundaries", "[data][loader]") {
  const std::string pattern = make_shards("resume", {300, 200});
  BatchGeometry g{2, 5, 2, 0, 1};
  TrainLoader reference(pattern, "data.train_pattern", g, 50257);
  std::vector<StepBatch> all;
  for (int s = 0; s < 12; ++s) all.push_back(reference.next());
  for (int stop : {1, 6, 7, 11}) {
    INFO("resume after " << stop << " steps");
    TrainLoader first(pattern, "data.train_pattern", g, 50257);
    for (int s = 0; s < stop; ++s) first.next();
    PrefetchingLoader resumed(std::make_unique<TrainLoader>(pattern, "data.train_pattern", g, 50257));
    resumed.next();  // advance somewhere else first, then jump
    resumed.set_position(first.position());
    for (int s = stop; s < 12; ++s) REQUIRE(resumed.next().inputs == all[s].inputs);
  }
  // the prefetching loader reports where to resume after the batches handed out
  PrefetchingLoader p(std::make_unique<TrainLoader>(pattern, "data.train_pattern", g, 50257));
  p.next();
  p.next();
  TrainLoader check(pattern, "data.train_pattern", g, 50257);
  check.set_position(p.resume_position());
  REQUIRE(check.next().inputs == all[2].inputs);
}

TEST_CASE("loader errors: no files, too-small shards, out-of-vocabulary ids", "[data][loader]") {
  BatchGeometry g{2, 8, 1, 0, 1};
  require_error([&] { TrainLoader("/nonexistent/*.bin", "data.train_pattern", g, 50257); },
                {"data.train_pattern", "no files match"});
  const std::string small = make_shards("small", {10});
  require_error([&] { TrainLoader(small, "data.train_pattern", g, 50257); },
                {"data.train_pattern", "one global batch of 16 tokens"});
  const std::string big_ids = make_shards("ids", {100}, 40000);
  TrainLoader loader(big_ids, "data.train_pattern", g, 40010);
  require_error([&] { loader.next(); }, {"token id", "outside the model's vocabulary"});
}

TEST_CASE("the validation set is the first val_tokens tokens, split across ranks", "[data][val]") {
  const std::string pattern = make_shards("val", {50, 100});
  ValSet val(pattern, "data.val_pattern", 120, 10, 50257);  // spans both shards
  REQUIRE(val.num_sequences() == 12);
  std::vector<int32_t> in, tg;
  val.sequences(4, 2, in, tg);
  REQUIRE(in.front() == 40);
  REQUIRE(in.back() == 59);
  REQUIRE(tg.back() == 60);
  for (int world : {1, 2, 5}) {
    int covered = 0, next = 0;
    for (int r = 0; r < world; ++r) {
      auto [first, count] = val.rank_range(r, world);
      REQUIRE(first == next);
      next += count;
      covered += count;
    }
    REQUIRE(covered == 12);
  }
  require_error([&] { ValSet(pattern, "data.val_pattern", 150, 10, 50257); },
                {"data.val_pattern", "hold 150 tokens", "needs 151"});
}

TEST_CASE("a validation set that seq_len does not divide ends in one shorter sequence", "[data][val]") {
  const std::string pattern = make_shards("val_tail", {50, 100});
  ValSet val(pattern, "data.val_pattern", 107, 10, 50257);  // 10 sequences of 10 tokens + one of 7
  REQUIRE(val.num_sequences() == 11);
  REQUIRE(val.num_tokens() == 107);
  REQUIRE(val.sequence_length(9) == 10);
  REQUIRE(val.sequence_length(10) == 7);
  std::vector<int32_t> in, tg;
  val.sequences(10, 1, in, tg);
  REQUIRE(in.size() == 7);
  REQUIRE(in.front() == 100);
  REQUIRE(tg.back() == 107);
  // loss_sum: batches of at most 4 equal-length sequences, the sum of the
  // token losses. With "loss" = the input id, the sum is the sum of every
  // evaluated input id.
  ValSet::Chunking whole;
  whole.max_len = 10;
  for (int world : {1, 2, 3}) {
    double total = 0;
    std::vector<std::pair<int, int>> shapes;
    for (int r = 0; r < world; ++r) {
      const auto [first, count] = val.rank_range(r, world);
      total += val.loss_sum(first, count, 4, whole,
                            [&](const int32_t* inputs, const int32_t* targets, const int32_t* doc_ids, int n, int len,
                                std::vector<float>& losses) {
                              shapes.emplace_back(n, len);
                              for (int i = 0; i < n * len; ++i) {
                                REQUIRE(targets[i] == inputs[i] + 1);  // the shards count up
                                REQUIRE(doc_ids[i] >= 0);
                                losses[i] = static_cast<float>(inputs[i]);
                              }
                            });
    }
    INFO("world " << world);
    REQUIRE(total == Approx(106.0 * 107 / 2));  // ids 0..106
    REQUIRE(shapes.back() == std::pair<int, int>{1, 7});  // the short sequence runs alone
    for (size_t i = 0; i + 1 < shapes.size(); ++i) REQUIRE(shapes[i].second == 10);
  }
}

namespace {

// One shard of documents with the given lengths (each opened by
// <|endoftext|>, then distinct increasing ids).
std::string make_document_shard(const std::string& name, const std::vector<int>& doc_lengths) {
  const auto dir = scratch_dir(name);
  std::vector<uint16_t> tokens;
  uint16_t value = 1;
  for (int len : doc_lengths) {
    tokens.push_back(kEndOfText);
    for (int i = 1; i < len; ++i) tokens.push_back(value++);
  }
  write_shard((dir / "train_000000.bin").string(), tokens);
  return (dir / "train_*.bin").string();
}

}  // namespace

TEST_CASE("document ids count the <|endoftext|> tokens up to each position", "[data][loader]") {
  const int32_t E = kEndOfText;
  const std::vector<int32_t> tokens = {E, 5, 6, E, 7, /*second sequence*/ 8, 9, E, E, 3};
  std::vector<int32_t> ids(tokens.size());
  document_ids(tokens.data(), 2, 5, ids.data());
  REQUIRE(ids == std::vector<int32_t>{1, 1, 1, 2, 2, 0, 0, 1, 2, 2});
}

TEST_CASE("BOS-aligned packing: every sequence starts a document, documents in order, cut to max_doc_len",
          "[data][loader]") {
  // document lengths chosen to hit: shorter than T, exactly T+1, longer than T
  std::vector<int> lengths;
  for (int i = 0; i < 60; ++i) lengths.push_back(1 + (i * 7) % 23);
  const std::string pattern = make_document_shard("bos", lengths);
  const int B = 2, T = 8;
  for (int max_doc : {0, 5}) {
    INFO("max_doc_len " << max_doc);
    BatchGeometry g{B, T, 2, 0, 1};
    TrainLoader loader(pattern, "data.train_pattern", g, 50257, Packing{true, max_doc});
    int last_value = 0;  // documents are consumed in order: their ids increase
    for (int step = 0; step < 3; ++step) {
      const StepBatch b = loader.next();
      REQUIRE(b.inputs.size() == static_cast<size_t>(2 * B * T));
      for (int s = 0; s < 2 * B; ++s) {
        const int32_t* in = b.inputs.data() + s * T;
        const int32_t* tg = b.targets.data() + s * T;
        REQUIRE(in[0] == kEndOfText);
        for (int t = 0; t + 1 < T; ++t) REQUIRE(tg[t] == in[t + 1]);
        int run = 0;
        for (int t = 0; t < T; ++t) {
          if (in[t] == kEndOfText) {
            run = 1;
            continue;
          }
          ++run;
          if (max_doc > 0) REQUIRE(run <= max_doc);
          REQUIRE(in[t] > last_value);  // in order, no repeats
          if (t > 0 && in[t - 1] != kEndOfText) REQUIRE(in[t] == in[t - 1] + 1);  // contiguous within a document
          last_value = in[t];
        }
        REQUIRE(b.doc_ids[s * T] == 1);
      }
    }
  }
}

TEST_CASE("BOS-aligned packing: the same sequences for any world size, and exact resume", "[data][loader]") {
  std::vector<int> lengths;
  for (int i = 0; i < 400; ++i) lengths.push_back(2 + (i * 13) % 31);
  const std::string pattern = make_document_shard("bos_world", lengths);
  const int T = 6, global_seqs = 12;
  std::vector<HostVector<int32_t>> reference;  // per step, the 12 sequences in order
  {
    BatchGeometry g{global_seqs, T, 1, 0, 1};
    TrainLoader loader(pattern, "data.train_pattern", g, 50257, Packing{true, 0});
    for (int s = 0; s < 5; ++s) reference.push_back(loader.next().inputs);
  }
  for (int world : {2, 3}) {
    INFO("world " << world);
    const int B = 2, accum = global_seqs / (B * world);
    std::vector<TrainLoader> loaders;
    for (int r = 0; r < world; ++r)
      loaders.emplace_back(pattern, "data.train_pattern", BatchGeometry{B, T, accum, r, world}, 50257,
                           Packing{true, 0});
    for (int s = 0; s < 5; ++s) {
      HostVector<int32_t> step(static_cast<size_t>(global_seqs) * T);
      for (int r = 0; r < world; ++r) {
        const StepBatch b = loaders[r].next();
        for (int m = 0; m < accum; ++m)
          for (int i = 0; i < B; ++i) {
            const size_t seq = static_cast<size_t>(m * world + r) * B + i;
            std::copy_n(b.inputs.begin() + (static_cast<size_t>(m) * B + i) * T, T, step.begin() + seq * T);
          }
      }
      REQUIRE(step == reference[s]);
    }
  }
  // resume from a stored position gives the following steps exactly
  BatchGeometry g{global_seqs, T, 1, 0, 1};
  TrainLoader first(pattern, "data.train_pattern", g, 50257, Packing{true, 0});
  first.next();
  first.next();
  TrainLoader resumed(pattern, "data.train_pattern", g, 50257, Packing{true, 0});
  resumed.set_position(first.position());
  REQUIRE(resumed.next().inputs == reference[2]);
  REQUIRE(resumed.next().inputs == reference[3]);
}

TEST_CASE("a batch-size schedule gives each step its geometry, read on from the previous step", "[data][loader]") {
  std::vector<int> lengths;
  for (int i = 0; i < 400; ++i) lengths.push_back(2 + (i * 13) % 31);
  const std::string contiguous = make_shards("geometry_steps", {4000});
  const std::string documents = make_document_shard("geometry_bos", lengths);
  // steps 0-1: 4 sequences of 6 tokens; steps 2-3: 4 of 9; from step 4: 2 of 12 (as three batch stages)
  const GeometryAt stages = [](int64_t step) {
    return step < 2 ? BatchGeometry{2, 6, 2, 0, 1} : step < 4 ? BatchGeometry{2, 9, 2, 0, 1} : BatchGeometry{2, 12, 1, 0, 1};
  };
  for (bool bos : {false, true}) {
    INFO("bos_aligned " << bos);
    const std::string& pattern = bos ? documents : contiguous;
    TrainLoader loader(pattern, "data.train_pattern", BatchGeometry{2, 9, 2, 0, 1}, 50257, Packing{bos, 0}, stages);
    std::vector<StepBatch> steps;
    for (int s = 0; s < 6; ++s) {
      steps.push_back(loader.next());
      const BatchGeometry want = stages(s);
      REQUIRE(steps.back().geometry.seq_len == want.seq_len);
      REQUIRE(steps.back().geometry.grad_accum == want.grad_accum);
      REQUIRE(steps.back().inputs.size() == static_cast<size_t>(want.global_tokens()));
      REQUIRE(steps.back().doc_ids.size() == steps.back().inputs.size());
      REQUIRE(steps.back().position.step == s);
    }
    if (!bos) {  // contiguous: each step starts where the previous one's tokens ended
      REQUIRE(steps[1].position.offset == 24);
      REQUIRE(steps[2].position.offset == 48);
      REQUIRE(steps[3].position.offset == 48 + 36);
      REQUIRE(steps[4].position.offset == 48 + 72);
      REQUIRE(steps[4].inputs[0] == 120);
    } else {  // every sequence starts a document
      for (const StepBatch& b : steps)
        for (size_t i = 0; i < b.inputs.size(); i += static_cast<size_t>(b.geometry.seq_len))
          REQUIRE(b.inputs[i] == 50256);
    }
    // a resumed loader (position with its step) continues with the same batches and geometry
    TrainLoader resumed(pattern, "data.train_pattern", BatchGeometry{2, 9, 2, 0, 1}, 50257, Packing{bos, 0}, stages);
    resumed.set_position(steps[3].position);
    for (int s = 3; s < 6; ++s) {
      const StepBatch b = resumed.next();
      REQUIRE(b.geometry.seq_len == steps[s].geometry.seq_len);
      REQUIRE(b.inputs == steps[s].inputs);
    }
  }
}

TEST_CASE("BOS-aligned packing: a shard too short for one step is an error", "[data][loader]") {
  const std::string pattern = make_document_shard("bos_short", {40, 3});
  BatchGeometry g{2, 8, 1, 0, 1};  // needs 2 documents' starts, but 40 tokens suffice by count
  TrainLoader loader(pattern, "data.train_pattern", g, 50257, Packing{true, 0});
  require_error([&] { loader.next(); }, {"data.train_pattern", "BOS-aligned", "data.bos_aligned"});
}

TEST_CASE("the prefetching loader hands out the same batches with pinned buffers, reusing two slots",
          "[data][loader]") {
  const std::string pattern = make_shards("pinned", {400, 300});
  BatchGeometry g{2, 5, 2, 0, 1};
  TrainLoader reference(pattern, "data.train_pattern", g, 50257);
  PrefetchingLoader plain(std::make_unique<TrainLoader>(pattern, "data.train_pattern", g, 50257));
  PrefetchingLoader pinned(std::make_unique<TrainLoader>(pattern, "data.train_pattern", g, 50257), /*pin_memory=*/true);
  std::set<const int32_t*> buffers;
  for (int s = 0; s < 9; ++s) {
    const StepBatch expected = reference.next();
    const StepBatch& a = plain.next();
    const StepBatch& b = pinned.next();
    REQUIRE(a.inputs == expected.inputs);
    REQUIRE(b.inputs == expected.inputs);
    REQUIRE(b.targets == expected.targets);
    REQUIRE(b.doc_ids == expected.doc_ids);
    REQUIRE(b.position.offset == expected.position.offset);
    buffers.insert(b.inputs.data());
  }
  REQUIRE(buffers.size() == 2);  // double buffering, no allocation per step
  // Page-locked exactly when this process can have it (a CUDA build on a machine with a GPU).
  REQUIRE(pinned.pinned() == host_memory::pinning_available());
  REQUIRE_FALSE(plain.pinned());
}

TEST_CASE("host buffers: heap or page-locked blocks, aligned and freed by any allocator", "[util]") {
  HostVector<double> a(HostAllocator<double>(true));
  a.assign(1000, 1.5);
  REQUIRE(reinterpret_cast<uintptr_t>(a.data()) % 64 == 0);
  REQUIRE(host_memory::is_pinned(a.data()) == host_memory::pinning_available());
  HostVector<double> b(HostAllocator<double>(false));
  b = std::move(a);  // the heap/pinned tag travels with the block
  REQUIRE(b.size() == 1000);
  REQUIRE(b[999] == 1.5);
  REQUIRE(host_memory::is_pinned(b.data()) == host_memory::pinning_available());
  HostVector<int> c(3, 7, HostAllocator<int>(false));
  REQUIRE_FALSE(host_memory::is_pinned(c.data()));
}
