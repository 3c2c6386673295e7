#include "backend/cuda/nccl_comm.h"

#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "dist/comm.h"
#include "kernels/cuda/common.cuh"
#include "util/error.h"
#include "util/fs.h"

namespace muongpt {

namespace {

using Clock = std::chrono::steady_clock;

// Hex text of the unique id, for the bootstrap file.
std::string to_hex(const ncclUniqueId& id) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < sizeof(id.internal); ++i) {
    const auto b = static_cast<unsigned char>(id.internal[i]);
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

bool from_hex(const std::string& text, ncclUniqueId& id) {
  if (text.size() < 2 * sizeof(id.internal)) return false;
  auto value = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < sizeof(id.internal); ++i) {
    const int hi = value(text[2 * i]), lo = value(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    id.internal[i] = static_cast<char>(hi * 16 + lo);
  }
  return true;
}

}  // namespace

struct NcclComm::Impl {
  ncclComm_t comm = nullptr;
};

NcclComm::NcclComm(Comm& host, cudaStream_t stream, double timeout_s)
    : impl_(std::make_unique<Impl>()), rank_(host.rank()), world_(host.world()), stream_(stream), timeout_s_(timeout_s) {
  ncclUniqueId id{};
  if (host.is_root()) {
    const ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) fail("NCCL: ncclGetUniqueId failed on rank 0: ", ncclGetErrorString(r));
  }
  host.broadcast(&id, sizeof(id), 0, "NCCL unique id");
  init(&id);
}

NcclComm::NcclComm(int rank, int world, const void* unique_id, cudaStream_t stream, double timeout_s)
    : impl_(std::make_unique<Impl>()), rank_(rank), world_(world), stream_(stream), timeout_s_(timeout_s) {
  init(unique_id);
}

std::unique_ptr<NcclComm> NcclComm::from_environment(const std::string& id_file, cudaStream_t stream,
                                                     double timeout_s) {
  int rank = 0, world = 1;
  rank_from_environment(rank, world);
  ncclUniqueId id{};
  if (rank == 0) {
    const ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) fail("NCCL: ncclGetUniqueId failed on rank 0: ", ncclGetErrorString(r));
    write_text_file_atomic(id_file, to_hex(id) + "\n");
  } else {
    const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
    // A file older than this rank's start (minus 2 minutes for clocks and
    // start-up spread) is a previous run's: wait for rank 0 to replace it.
    const auto fresh_after = std::filesystem::file_time_type::clock::now() - std::chrono::minutes(2);
    while (true) {
      std::error_code ec;
      const auto written = std::filesystem::last_write_time(id_file, ec);
      if (!ec && written >= fresh_after && from_hex(read_text_file(id_file), id)) break;
      if (Clock::now() > deadline)
        fail("NCCL bootstrap: rank ", rank, " of ", world, " waited ", timeout_s, " s for rank 0 to write ", id_file,
             " (is the file on a file system every rank sees, and did rank 0 start? a file from an earlier run is"
             " ignored: use a fresh path per job)");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return std::unique_ptr<NcclComm>(new NcclComm(rank, world, &id, stream, timeout_s));
}

void NcclComm::init(const void* unique_id) {
  ncclUniqueId id;
  std::memcpy(&id, unique_id, sizeof(id));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // so that a missing peer is a timeout, not a hang
  const ncclResult_t r = ncclCommInitRankConfig(&impl_->comm, world_, id, rank_, &config);
  if (r != ncclSuccess && r != ncclInProgress)
    fail("NCCL: rank ", rank_, " of ", world_, " could not join the communicator: ", ncclGetErrorString(r));
  wait("communicator set-up");
}

NcclComm::~NcclComm() {
  if (impl_ && impl_->comm) {
    cudaStreamSynchronize(stream_);
    ncclCommDestroy(impl_->comm);
  }
}

std::string NcclComm::name() const {
  int version = 0;
  ncclGetVersion(&version);
  return str("nccl ", version / 10000, ".", (version / 100) % 100, ".", version % 100, " (", world_, " ranks)");
}

void NcclComm::fail_aborted(const std::string& why) {
  ncclCommAbort(impl_->comm);
  impl_->comm = nullptr;
  fail(why);
}

void NcclComm::wait(const char* what) { poll(what, /*until_stream_idle=*/true); }

void NcclComm::settle(const char* what) { poll(what, /*until_stream_idle=*/false); }

void NcclComm::poll(const char* what, bool until_stream_idle) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s_);
  while (true) {
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(impl_->comm, &async);
    if (async != ncclSuccess && async != ncclInProgress)
      fail_aborted(str("NCCL error in ", what, " on rank ", rank_, " of ", world_, ": ", ncclGetErrorString(async)));
    if (async == ncclSuccess) {
      if (!until_stream_idle) return;
      const cudaError_t q = cudaStreamQuery(stream_);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) CUDA_CHECK(q);
    }
    if (Clock::now() > deadline)
      fail_aborted(str("NCCL: ", what, until_stream_idle ? " did not finish" : " was not accepted", " within ",
                       timeout_s_, " s on rank ", rank_, " of ", world_,
                       " (a peer died or hangs; dist.timeout_s sets the limit)"));
    if (until_stream_idle)
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    else
      std::this_thread::yield();  // accepting an enqueue is quick
  }
}

namespace {

void check_enqueue(ncclResult_t r, const char* what, int rank, int world) {
  if (r != ncclSuccess && r != ncclInProgress)
    fail("NCCL: enqueueing ", what, " failed on rank ", rank, " of ", world, ": ", ncclGetErrorString(r));
}

}  // namespace

void NcclComm::all_reduce(void* data, size_t n, int type, int op, const char* what) {
  MUONGPT_CHECK(impl_->comm, "NCCL communicator used after an abort");
  check_enqueue(ncclAllReduce(data, data, n, static_cast<ncclDataType_t>(type), static_cast<ncclRedOp_t>(op),
                              impl_->comm, stream_),
                what, rank_, world_);
  wait(what);
}

void NcclComm::all_reduce_sum(float* data, size_t n, const char* what) { all_reduce(data, n, ncclFloat32, ncclSum, what); }
void NcclComm::all_reduce_sum(double* data, size_t n, const char* what) { all_reduce(data, n, ncclFloat64, ncclSum, what); }
void NcclComm::all_reduce_max(float* data, size_t n, const char* what) { all_reduce(data, n, ncclFloat32, ncclMax, what); }
void NcclComm::all_reduce_max(double* data, size_t n, const char* what) { all_reduce(data, n, ncclFloat64, ncclMax, what); }

void NcclComm::all_reduce_sum_after(float* data, size_t n, cudaEvent_t ready, const char* what) {
  MUONGPT_CHECK(impl_->comm, "NCCL communicator used after an abort");
  CUDA_CHECK(cudaStreamWaitEvent(stream_, ready, 0));
  check_enqueue(ncclAllReduce(data, data, n, ncclFloat32, ncclSum, impl_->comm, stream_), what, rank_, world_);
  settle(what);
}

void NcclComm::reduce_to_owners_after(float* data, const std::vector<OwnedRange>& ranges, cudaEvent_t ready,
                                      const char* what) {
  ranges_group(data, ranges, /*broadcast=*/false, ready, what);
}

void NcclComm::broadcast_from_owners_after(float* data, const std::vector<OwnedRange>& ranges, cudaEvent_t ready,
                                           const char* what) {
  ranges_group(data, ranges, /*broadcast=*/true, ready, what);
}

void NcclComm::ranges_group(float* data, const std::vector<OwnedRange>& ranges, bool broadcast, cudaEvent_t ready,
                            const char* what) {
  MUONGPT_CHECK(impl_->comm, "NCCL communicator used after an abort");
  if (ranges.empty()) return;
  CUDA_CHECK(cudaStreamWaitEvent(stream_, ready, 0));
  // Older NCCL takes at most 2048 operations per group: larger lists go as
  // several groups, in order (the same on every rank).
  constexpr size_t kMaxGroupOps = 1024;
  for (size_t first = 0; first < ranges.size(); first += kMaxGroupOps) {
    const size_t last = std::min(ranges.size(), first + kMaxGroupOps);
    ncclResult_t result = ncclGroupStart();
    for (size_t i = first; i < last && (result == ncclSuccess || result == ncclInProgress); ++i) {
      const OwnedRange& r = ranges[i];
      float* p = data + r.begin;
      if (broadcast)
        result = r.owner < 0 ? ncclSuccess  // replicated: every rank updated it
                             : ncclBroadcast(p, p, r.size(), ncclFloat32, r.owner, impl_->comm, stream_);
      else if (r.owner < 0)
        result = ncclAllReduce(p, p, r.size(), ncclFloat32, ncclSum, impl_->comm, stream_);
      else
        result = ncclReduce(p, p, r.size(), ncclFloat32, ncclSum, r.owner, impl_->comm, stream_);
    }
    const ncclResult_t end = ncclGroupEnd();  // closed even after a failed enqueue
    check_enqueue(result, what, rank_, world_);
    check_enqueue(end, what, rank_, world_);
    settle(what);
  }
}

void NcclComm::abort() {
  if (impl_->comm) ncclCommAbort(impl_->comm);
  impl_->comm = nullptr;
}

void NcclComm::reduce_scatter_sum(const float* send, float* recv, size_t part, const char* what) {
  MUONGPT_CHECK(impl_->comm, "NCCL communicator used after an abort");
  check_enqueue(ncclReduceScatter(send, recv, part, ncclFloat32, ncclSum, impl_->comm, stream_), what, rank_, world_);
  wait(what);
}

void NcclComm::all_gather(const void* send, void* recv, size_t part, int type, const char* what) {
  MUONGPT_CHECK(impl_->comm, "NCCL communicator used after an abort");
  check_enqueue(ncclAllGather(send, recv, part, static_cast<ncclDataType_t>(type), impl_->comm, stream_), what, rank_,
                world_);
  wait(what);
}

void NcclComm::all_gather(const float* send, float* recv, size_t part, const char* what) {
  all_gather(send, recv, part, ncclFloat32, what);
}

void NcclComm::all_gather(const double* send, double* recv, size_t part, const char* what) {
  all_gather(send, recv, part, ncclFloat64, what);
}

void NcclComm::broadcast(void* data, size_t bytes, int root, const char* what) {
  MUONGPT_CHECK(impl_->comm, "NCCL communicator used after an abort");
  check_enqueue(ncclBroadcast(data, data, bytes, ncclUint8, root, impl_->comm, stream_), what, rank_, world_);
  wait(what);
}

}  // namespace muongpt
