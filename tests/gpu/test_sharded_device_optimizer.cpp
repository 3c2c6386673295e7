// The GPU optimizer with sharded state (dist.zero_stage = 1, dist.muon =
// owner) on one GPU, by simulating the ranks: for world W, one
// DeviceOptimizer per rank r (each with its own parameter buffers) steps on
// the summed gradient, where every element it must not read is NaN. The
// owners' updated ranges are then gathered on the host (what CudaDeviceStep's
// grouped ncclBroadcast does), loaded into every rank, and
// finish_gathered_step() refreshes bf16 and applies QK-clip. The result must
// be the replicated (one-rank) GPU optimizer's step, which
// test_device_optimizer.cpp holds to the CPU optimizer:
//   - AdamW elements and Muon momentum: the same float operations on the same
//     elements, so the same bits;
//   - Muon parameters: a rank's Newton-Schulz batches hold only its matrices,
//     and cuBLASLt may choose other kernels for other batch counts, so
//     ||sharded - replicated||_F <= 2e-2 ||replicated - start||_F per matrix
//     (a wrong owner, offset or block is an O(1) error); NorMuon state 3e-2;
//   - after the gather every rank holds the same fp32 and bf16 bits, bf16 =
//     the fp32 master rounded.
// Checkpoint state: the ranks' parts (state_part) put together are the
// replicated optimizer's full tensors; full tensors loaded as parts resume
// the same run (checkpoints move between world sizes). World size 1 with
// sharding switched on is the replicated step bit for bit.
// NCCL with one rank: the grouped reduce-to-owner and broadcast calls.
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>

#include "backend/cuda/device_optimizer.h"
#include "gpu_test_util.h"
#include "kernels/cuda/matmul.cuh"
#include "model/params.h"
#include "optim/optimizer.h"
#include "train/shard_ranges.h"
#include "unit/model_fixtures.h"
#include "util/error.h"
#if MUONGPT_HAVE_NCCL
#include <cstdlib>

#include "backend/cuda/nccl_comm.h"
#endif

using namespace muongpt;
using namespace muongpt::gpu_test;
using muongpt::test::adamw_only;
using muongpt::test::muon_and_rest;
using muongpt::test::muon_group;

namespace {

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { CUDA_CHECK(cudaStreamCreate(&s)); }
  ~Stream() { cudaStreamDestroy(s); }
};

// Muon with NorMuon + AdamW on the test model, with what constructing a
// DeviceOptimizer needs.
struct NorMuonSetup {
  OptimConfig oc = normuon_config();
  ModelConfig mc = test::optimizer_test_model();
  ParamTable table{mc};
  ScheduleConfig sched;
  gpu::Matmul mm;
  Stream stream;
  size_t n = table.total();

  static OptimConfig normuon_config() {
    OptimGroupConfig g = muon_group();
    g.normuon.enabled = true;
    return muon_and_rest(g);
  }
};

DistConfig dist_of(int zero, const std::string& muon) {
  DistConfig d;
  d.zero_stage = zero;
  d.muon = muon;
  return d;
}

double frobenius_diff(const std::vector<float>& a, const std::vector<float>& b, size_t off, size_t n) {
  double s = 0;
  for (size_t i = off; i < off + n; ++i) s += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return std::sqrt(s);
}

bool is_muon(const OptimConfig& oc, const ParamGroupAssignment& assign, size_t pi) {
  return oc.groups[assign.group_of_param[pi]].type == "muon";
}

// One simulated rank: its optimizer and its copy of the model's buffers.
struct Rank {
  std::unique_ptr<DeviceOptimizer> opt;
  std::unique_ptr<DeviceArray<float>> params, grads, logits;
  std::unique_ptr<DeviceArray<uint16_t>> bf16;
};

// The state tensors of the ranks' parts put together (state_part).
std::vector<float> assemble_state(const std::vector<Rank>& ranks, const std::string& name) {
  std::vector<float> full(ranks[0].opt->state_numel(name), NAN);
  for (size_t r = 0; r < ranks.size(); ++r) {
    const auto [lo, hi] = ranks[r].opt->state_part(name, static_cast<int>(r));
    const std::vector<float> part = ranks[r].opt->get_state(name);
    REQUIRE(part.size() == hi - lo);
    std::copy(part.begin(), part.end(), full.begin() + lo);
  }
  return full;
}

void require_state_matches(const std::vector<Rank>& ranks, const DeviceOptimizer& ref) {
  for (const std::string& name : ref.state_names()) {
    INFO("state " << name);
    const std::vector<float> got = assemble_state(ranks, name);
    const std::vector<float> want = ref.get_state(name);
    const bool normuon = name.size() > 10 && name.compare(name.size() - 10, 10, ".normuon_v") == 0;
    if (normuon)
      require_close_rel(got, want, 3e-2, 1e-6, name);
    else
      require_same_bits(got, want, name);  // momentum and Adam moments: the same float operations
  }
}

// Runs `steps` steps of the replicated optimizer and of `world` simulated
// ranks and compares after every step.
void compare_sharded(const OptimConfig& oc, const DistConfig& dist, int world, const std::string& label,
                     int steps = 3) {
  INFO(label << ", world " << world << ", zero_stage " << dist.zero_stage << ", muon " << dist.muon);
  const ModelConfig mc = test::optimizer_test_model();
  const ParamTable table(mc);
  ScheduleConfig sched;
  sched.warmup_steps = 1;
  const int total_steps = 10;
  gpu::Matmul mm;
  Stream stream;
  const size_t n = table.total();
  const size_t heads = static_cast<size_t>(mc.n_layer) * mc.n_head;
  const std::vector<float> start = test::random_vector<float>(n, 7, -0.5f, 0.5f);

  DeviceOptimizer ref(table, oc, sched, total_steps, "test", mc.n_head, mm, stream.s);
  DeviceArray<float> ref_params(start), ref_grads(n), ref_logits(heads);
  DeviceArray<uint16_t> ref_bf16(n);

  std::vector<Rank> ranks(world);
  for (int r = 0; r < world; ++r) {
    Rank& k = ranks[r];
    k.opt = std::make_unique<DeviceOptimizer>(table, oc, sched, total_steps, "test", mc.n_head, mm, stream.s, dist, r,
                                              world);
    k.params = std::make_unique<DeviceArray<float>>(start);
    k.grads = std::make_unique<DeviceArray<float>>(n);
    k.logits = std::make_unique<DeviceArray<float>>(heads);
    k.bf16 = std::make_unique<DeviceArray<uint16_t>>(n);
    REQUIRE(k.opt->rank() == r);
    REQUIRE(k.opt->sharded());
  }
  // the same plan as the host optimizer's
  const ParamGroupAssignment assign = assign_groups(table, oc, "test");
  const ShardPlan host_plan = ShardPlan::make(table, oc, assign, dist, world);
  REQUIRE(ranks[0].opt->plan().ranges == host_plan.ranges);
  REQUIRE(ranks[0].opt->plan().replicated == host_plan.replicated);
  const std::vector<OwnedRange> ranges = plan_owned_ranges(table, host_plan);

  // state only for this rank's part: the parts add up to the replicated state
  size_t sharded_bytes = 0;
  for (const Rank& k : ranks) sharded_bytes += k.opt->state_bytes();
  size_t replicated_bytes = 0;  // state of replicated parameters, kept by every rank
  for (const std::string& name : ref.state_names())
    if (ranks[0].opt->state_replicated(name)) replicated_bytes += sizeof(float) * ref.state_numel(name);
  REQUIRE(sharded_bytes == ref.state_bytes() + (world - 1) * replicated_bytes);

  std::vector<float> before = start;  // every rank's parameters before the step
  for (int step = 0; step < steps; ++step) {
    INFO("step " << step + 1 << " of " << steps);
    if (oc.qk_clip.enabled) {  // after the max over ranks: every rank sees the same logits
      std::vector<float> m = test::random_vector<float>(heads, 40 + step, 0.0f, 8.0f);
      for (size_t i = step % 3; i < heads; i += 3) m[i] = 12.0f + 10.0f * static_cast<float>(i) / heads;
      ref_logits.upload(m);
      ref.observe_attention_logits(ref_logits.get());
      for (Rank& k : ranks) {
        k.logits->upload(m);
        k.opt->observe_attention_logits(k.logits->get());
      }
    }
    const std::vector<float> g = test::random_vector<float>(n, 500 + step);
    ref_grads.upload(g);
    ref.step(ref_params.get(), ref_bf16.get(), ref_grads.get(), step);
    // each rank: the summed gradient where it updates, NaN where it must not read
    for (int r = 0; r < world; ++r) {
      std::vector<float> gr(n, NAN);
      for (const OwnedRange& x : ranges_used_by(ranges, r))
        std::copy(g.begin() + x.begin, g.begin() + x.end, gr.begin() + x.begin);
      ranks[r].grads->upload(gr);
      ranks[r].opt->step(ranks[r].params->get(), ranks[r].bf16->get(), ranks[r].grads->get(), step);
    }
    // a rank writes only what it updates; the gather then takes each range from its owner
    // (replicated ranges: the same bits on every rank)
    std::vector<std::vector<float>> local(world);
    for (int r = 0; r < world; ++r) {
      local[r] = ranks[r].params->download();
      for (const OwnedRange& x : ranges) {
        if (x.owner < 0 || x.owner == r) continue;
        const std::vector<float> a(local[r].begin() + x.begin, local[r].begin() + x.end);
        const std::vector<float> b(before.begin() + x.begin, before.begin() + x.end);
        require_same_bits(a, b, "another owner's range left as it was");
      }
    }
    std::vector<float> gathered(n, NAN);
    for (const OwnedRange& x : ranges) {
      const int from = x.owner < 0 ? 0 : x.owner;
      std::copy(local[from].begin() + x.begin, local[from].begin() + x.end, gathered.begin() + x.begin);
      if (x.owner < 0)
        for (int r = 1; r < world; ++r) {
          const std::vector<float> a(local[0].begin() + x.begin, local[0].begin() + x.end);
          const std::vector<float> b(local[r].begin() + x.begin, local[r].begin() + x.end);
          require_same_bits(b, a, "replicated range on every rank");
        }
    }
    require_finite(gathered, "gathered parameters");
    for (Rank& k : ranks) {
      k.params->upload(gathered);
      k.opt->finish_gathered_step(k.params->get(), k.bf16->get());
    }
    // every rank: the same fp32 and bf16 bits; bf16 = the fp32 rounded
    const std::vector<float> p0 = ranks[0].params->download();
    const std::vector<uint16_t> b0 = ranks[0].bf16->download();
    before = p0;
    for (size_t i = 0; i < n; ++i) REQUIRE(b0[i] == bf16_bits(p0[i]));
    for (int r = 1; r < world; ++r) {
      require_same_bits(ranks[r].params->download(), p0, "fp32 master on every rank");
      require_same_bits(ranks[r].bf16->download(), b0, "bf16 copy on every rank");
    }
    // against the replicated step
    const std::vector<float> want = ref_params.download();
    for (size_t pi = 0; pi < table.params().size(); ++pi) {
      const ParamSpec& spec = table.params()[pi];
      INFO("parameter " << spec.name);
      if (is_muon(oc, assign, pi)) {
        const double change = frobenius_diff(want, start, spec.offset, spec.numel);
        const double err = frobenius_diff(p0, want, spec.offset, spec.numel);
        INFO("change " << change << ", error " << err);
        REQUIRE(err <= 2e-2 * change + 1e-7);
      } else {  // AdamW, and QK-clip's rescale of AdamW biases: per element, factors from the logits alone
        const std::vector<float> a(p0.begin() + spec.offset, p0.begin() + spec.offset + spec.numel);
        const std::vector<float> b(want.begin() + spec.offset, want.begin() + spec.offset + spec.numel);
        require_same_bits(a, b, spec.name);
      }
    }
  }
  require_state_matches(ranks, ref);
}

#if MUONGPT_HAVE_NCCL
// Sets MUONGPT_RANK / MUONGPT_WORLD_SIZE for one scope.
struct OneRankEnv {
  OneRankEnv() {
    setenv("MUONGPT_RANK", "0", 1);
    setenv("MUONGPT_WORLD_SIZE", "1", 1);
  }
  ~OneRankEnv() {
    unsetenv("MUONGPT_RANK");
    unsetenv("MUONGPT_WORLD_SIZE");
  }
};
#endif

}  // namespace

TEST_CASE("sharded gpu optimizer: ZeRO-1 AdamW and owner Muon follow the replicated step", "[gpu][optimizer][dist]") {
  const OptimConfig oc = muon_and_rest(muon_group());
  for (int world : {2, 3, 4}) {
    compare_sharded(oc, dist_of(1, "replicated"), world, "ZeRO-1 AdamW, Muon replicated");
    compare_sharded(oc, dist_of(0, "owner"), world, "AdamW replicated, Muon owner");
    compare_sharded(oc, dist_of(1, "owner"), world, "ZeRO-1 AdamW, Muon owner");
  }
  // more ranks than Muon matrices (8) and than some parameters' elements: ranks that own nothing of a kind
  compare_sharded(oc, dist_of(1, "owner"), 9, "ZeRO-1 AdamW, Muon owner, ranks without matrices");
}

TEST_CASE("sharded gpu optimizer: NorMuon, per-head blocks, weight decay and QK-clip", "[gpu][optimizer][dist]") {
  OptimGroupConfig g = muon_group();
  g.normuon.enabled = true;
  g.update_scale = "match_rms_adamw";
  g.per_head = "qkv";
  g.weight_decay = 0.5;
  g.cautious_weight_decay = true;
  compare_sharded(muon_and_rest(g), dist_of(1, "owner"), 3, "NorMuon, per-head blocks, cautious decay");
  OptimConfig clip = muon_and_rest(muon_group());
  clip.qk_clip.enabled = true;
  clip.qk_clip.tau = 10.0;
  clip.qk_clip.alpha = 0.5;
  compare_sharded(clip, dist_of(1, "owner"), 2, "QK-clip after the gather");
  // AdamW only: QK-clip on the gathered ZeRO-1 parameters, every element the same float operations
  OptimConfig adam = adamw_only(1e-3);
  adam.qk_clip = clip.qk_clip;
  compare_sharded(adam, dist_of(1, "replicated"), 3, "AdamW only, QK-clip");
}

TEST_CASE("sharded gpu optimizer: world size 1 with sharding switched on is the replicated step, bit for bit",
          "[gpu][optimizer][dist]") {
  NorMuonSetup setup;
  auto& [oc, mc, table, sched, mm, stream, n] = setup;
  const std::vector<float> start = test::random_vector<float>(n, 11, -0.5f, 0.5f);
  DeviceOptimizer plain(table, oc, sched, 10, "test", mc.n_head, mm, stream.s);
  DeviceOptimizer one(table, oc, sched, 10, "test", mc.n_head, mm, stream.s, dist_of(1, "owner"), 0, 1);
  REQUIRE_FALSE(one.sharded());
  REQUIRE(one.state_bytes() == plain.state_bytes());
  DeviceArray<float> pa(start), pb(start), grads(n);
  DeviceArray<uint16_t> ba(n), bb(n);
  for (int step = 0; step < 3; ++step) {
    grads.upload(test::random_vector<float>(n, 700 + step));
    plain.step(pa.get(), ba.get(), grads.get(), step);
    one.step(pb.get(), bb.get(), grads.get(), step);
  }
  require_same_bits(pb.download(), pa.download(), "fp32 parameters");
  require_same_bits(bb.download(), ba.download(), "bf16 parameters");
  for (const std::string& name : plain.state_names()) {
    INFO("state " << name);
    REQUIRE(one.state_replicated(name));
    REQUIRE(one.state_part(name, 0) == std::make_pair(size_t(0), plain.state_numel(name)));
    require_same_bits(one.get_state(name), plain.get_state(name), name);
  }
}

TEST_CASE("sharded gpu optimizer: checkpoints move between world sizes", "[gpu][optimizer][dist]") {
  NorMuonSetup setup;
  auto& [oc, mc, table, sched, mm, stream, n] = setup;
  const std::vector<float> start = test::random_vector<float>(n, 13, -0.5f, 0.5f);
  // a run on one rank, three steps
  DeviceOptimizer one(table, oc, sched, 10, "test", mc.n_head, mm, stream.s);
  DeviceArray<float> params(start), grads(n);
  DeviceArray<uint16_t> bf16(n);
  for (int step = 0; step < 3; ++step) {
    grads.upload(test::random_vector<float>(n, 900 + step));
    one.step(params.get(), bf16.get(), grads.get(), step);
  }
  std::map<std::string, std::vector<float>> saved;
  for (const std::string& name : one.state_names()) saved[name] = one.get_state(name);
  // resumed on 3 ranks: each loads its part of the full tensors; the parts put together are the file's tensors
  const int world = 3;
  std::vector<Rank> ranks(world);
  for (int r = 0; r < world; ++r) {
    ranks[r].opt = std::make_unique<DeviceOptimizer>(table, oc, sched, 10, "test", mc.n_head, mm, stream.s,
                                                     dist_of(1, "owner"), r, world);
    REQUIRE(ranks[r].opt->state_names() == one.state_names());
    for (const std::string& name : one.state_names()) {
      const auto [lo, hi] = ranks[r].opt->state_part(name, r);
      const std::vector<float>& full = saved.at(name);
      REQUIRE(ranks[r].opt->state_numel(name) == full.size());
      ranks[r].opt->set_state(name, std::vector<float>(full.begin() + lo, full.begin() + hi));
    }
  }
  for (const std::string& name : one.state_names()) {
    INFO("state " << name);
    require_same_bits(assemble_state(ranks, name), saved.at(name), "parts put together");
  }
  // a part of the wrong size names the rank and the tensor
  const std::string momentum = "blocks.0.attn.qkv.weight.momentum";
  int other = 0;  // a rank that does not own the matrix
  while (ranks[0].opt->state_part(momentum, other).second > 0) ++other;
  test::require_error([&] { ranks[other].opt->set_state(momentum, {1.0f}); }, {momentum, "rank " + std::to_string(other)});
  test::require_error([&] { (void)ranks[0].opt->state_part(momentum, world); }, {momentum, "rank 3 of 3"});
  // the next step from the loaded state: the resumed ranks follow the one-rank run
  const std::vector<float> resumed = params.download();
  const std::vector<float> g3 = test::random_vector<float>(n, 903);
  grads.upload(g3);
  one.step(params.get(), bf16.get(), grads.get(), 3);
  const std::vector<OwnedRange> ranges = plan_owned_ranges(table, ranks[0].opt->plan());
  std::vector<float> gathered(n, NAN);
  for (int r = 0; r < world; ++r) {
    DeviceArray<float> p(resumed), gr(g3);
    DeviceArray<uint16_t> b(n);
    ranks[r].opt->step(p.get(), b.get(), gr.get(), 3);
    const std::vector<float> local = p.download();
    for (const OwnedRange& x : ranges)
      if (x.owner == r || (x.owner < 0 && r == 0))
        std::copy(local.begin() + x.begin, local.begin() + x.end, gathered.begin() + x.begin);
  }
  const std::vector<float> want = params.download();
  const ParamGroupAssignment assign = assign_groups(table, oc, "test");
  for (size_t pi = 0; pi < table.params().size(); ++pi) {
    const ParamSpec& spec = table.params()[pi];
    INFO("parameter " << spec.name);
    const double change = frobenius_diff(want, resumed, spec.offset, spec.numel);
    const double err = frobenius_diff(gathered, want, spec.offset, spec.numel);
    REQUIRE(err <= (is_muon(oc, assign, pi) ? 2e-2 : 0.0) * change + 1e-7);
  }
}

TEST_CASE("sharded gpu optimizer: zero1 Muon with several ranks is left to the host optimizer, named",
          "[gpu][optimizer][dist]") {
  const OptimConfig oc = muon_and_rest(muon_group());
  std::string why;
  REQUIRE(DeviceOptimizer::supports(oc, dist_of(1, "owner"), 4, why));
  REQUIRE(DeviceOptimizer::supports(oc, dist_of(1, "zero1"), 1, why));  // one rank: nothing is sharded
  REQUIRE_FALSE(DeviceOptimizer::supports(oc, dist_of(0, "zero1"), 2, why));
  REQUIRE(why.find("zero1") != std::string::npos);
  gpu::Matmul mm;
  const ParamTable table(test::optimizer_test_model());
  test::require_error(
      [&] { (void)DeviceOptimizer(table, oc, {}, 10, "cfg.json", 4, mm, nullptr, dist_of(0, "zero1"), 0, 2); },
      {"cfg.json", "zero1"});
  test::require_error([&] { (void)DeviceOptimizer(table, oc, {}, 10, "cfg.json", 4, mm, nullptr, {}, 2, 2); },
                      {"cfg.json", "rank 2 of 2"});
}

#if MUONGPT_HAVE_NCCL
TEST_CASE("sharded gpu optimizer: NCCL's grouped reduce-to-owner and broadcast with one rank", "[gpu][nccl][dist]") {
  const auto dir = test::scratch_dir("nccl_sharded_one_rank");
  OneRankEnv env;
  cudaStream_t stream;
  CUDA_CHECK(cudaStreamCreate(&stream));
  cudaEvent_t ready;
  CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
  {
    auto comm = NcclComm::from_environment((dir / "nccl_id").string(), stream, 60);
    const std::vector<float> x = test::random_vector<float>(3000, 3);
    DeviceArray<float> a(x);
    const std::vector<OwnedRange> ranges = {{0, 100, 0}, {100, 350, -1}, {350, 351, 0}, {351, 3000, -1}};
    CUDA_CHECK(cudaEventRecord(ready, stream));
    comm->reduce_to_owners_after(a.get(), ranges, ready, "test reduce to owners");
    comm->finish("test reduce to owners");
    REQUIRE(a.download() == x);  // the sum over one rank
    CUDA_CHECK(cudaEventRecord(ready, stream));
    comm->broadcast_from_owners_after(a.get(), ranges, ready, "test broadcast from owners");
    comm->finish("test broadcast from owners");
    REQUIRE(a.download() == x);
    // more ranges than one NCCL group takes (1024): three groups
    std::vector<OwnedRange> many;  // owners -1 and 0 alternating, one element each
    for (size_t i = 0; i < 2500; ++i) many.push_back({i, i + 1, static_cast<int>(i % 2) - 1});
    CUDA_CHECK(cudaEventRecord(ready, stream));
    comm->reduce_to_owners_after(a.get(), many, ready, "test many ranges");
    comm->finish("test many ranges");
    REQUIRE(a.download() == x);
    CUDA_CHECK(cudaEventRecord(ready, stream));
    comm->broadcast_from_owners_after(a.get(), many, ready, "test many ranges");
    comm->finish("test many ranges");
    REQUIRE(a.download() == x);
    const std::vector<double> d = {1.5};
    DeviceArray<double> send(d), recv(1);
    comm->all_gather(send.get(), recv.get(), 1, "test all-gather of doubles");
    REQUIRE(recv.download() == d);
  }
  CUDA_CHECK(cudaEventDestroy(ready));
  CUDA_CHECK(cudaStreamDestroy(stream));
}
#endif
