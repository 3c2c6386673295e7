// Collectives on device buffers over NCCL: the gradient reduction of data
// parallel training on GPUs (one GPU per rank): all-reduced where the
// optimizer state is replicated, reduced into each owner and the updated
// parameters broadcast back where it is sharded.
//
// Bootstrap: rank 0 makes the NCCL unique id and the others receive it
//   - through the host communicator (MPI broadcast) when launched by MPI, or
//   - without MPI, through a file: rank and world size from the environment
//     (MUONGPT_RANK / MUONGPT_WORLD_SIZE, else RANK / WORLD_SIZE, else
//     SLURM_PROCID / SLURM_NTASKS), rank 0 writes the id to the file
//     atomically (temp + rename) and the others wait for it (shared file
//     system, e.g. the run directory).
//
// Faults: the communicator is non-blocking; every collective is followed by
// wait(), which polls the stream and ncclCommGetAsyncError until the work is
// done, an NCCL error appears or the timeout passes. Errors and timeouts abort
// the communicator and throw an Error naming the rank, the world size and the
// collective (`what`), so no rank waits forever on a dead peer.
//
// Layout: plain fp32 arrays; all_reduce in place, reduce_scatter and
// all_gather with rank r's part at [r * part, (r + 1) * part).
//
// Sharded optimizer state (uneven parts, train/shard_ranges.h): a list of
// ranges of one flat buffer, each with its owner, moves as one NCCL group
// (ncclGroupStart/End; lists longer than 1024 ranges as consecutive groups of
// 1024): reduce_to_owners_after sums each range into its owner's buffer
// (ncclReduce, root = owner; owner -1: ncclAllReduce into every rank's),
// broadcast_from_owners_after sends each owner's range to every rank
// (ncclBroadcast, root = owner). Every rank passes the same list.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "train/shard_ranges.h"

namespace muongpt {

class Comm;

class NcclComm {
 public:
  // Collective over `host` (every rank calls it, each with its GPU selected).
  NcclComm(Comm& host, cudaStream_t stream, double timeout_s);
  // Without MPI (see above); `id_file` must be visible to every rank.
  static std::unique_ptr<NcclComm> from_environment(const std::string& id_file, cudaStream_t stream,
                                                    double timeout_s);
  ~NcclComm();
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  int rank() const { return rank_; }
  int world() const { return world_; }
  std::string name() const;  // "nccl <version> (N ranks)"

  // Each waits for its result (see Faults).
  void all_reduce_sum(float* data, size_t n, const char* what);
  void all_reduce_sum(double* data, size_t n, const char* what);
  void all_reduce_max(float* data, size_t n, const char* what);
  void all_reduce_max(double* data, size_t n, const char* what);
  void reduce_scatter_sum(const float* send, float* recv, size_t part, const char* what);
  void all_gather(const float* send, float* recv, size_t part, const char* what);
  void all_gather(const double* send, double* recv, size_t part, const char* what);
  void broadcast(void* data, size_t bytes, int root, const char* what);

  // Overlap with compute: enqueues an in-place sum of data[0, n) on stream()
  // behind `ready` (an event recorded on the stream that produces the data)
  // and returns without waiting for the reduction; finish() waits for all of
  // them (see Faults). Every rank enqueues the same sequence.
  void all_reduce_sum_after(float* data, size_t n, cudaEvent_t ready, const char* what);
  // The same for sharded state: data[r.begin, r.end) summed over ranks into
  // r.owner's buffer (the other ranks' copies are left as they were), or,
  // owner -1, into every rank's; one group behind `ready`, not waited for.
  void reduce_to_owners_after(float* data, const std::vector<OwnedRange>& ranges, cudaEvent_t ready,
                              const char* what);
  // data[r.begin, r.end) from r.owner to every rank (ranges with owner -1 are
  // skipped: every rank has them); one group behind `ready`, not waited for.
  void broadcast_from_owners_after(float* data, const std::vector<OwnedRange>& ranges, cudaEvent_t ready,
                                   const char* what);
  void finish(const char* what) { wait(what); }

  void set_timeout(double seconds) { timeout_s_ = seconds; }
  // Aborts the communicator (peers then fail in their wait()).
  void abort();
  cudaStream_t stream() const { return stream_; }

 private:
  NcclComm(int rank, int world, const void* unique_id, cudaStream_t stream, double timeout_s);
  void init(const void* unique_id);
  void wait(const char* what);
  // Polls until the last (non-blocking) NCCL call has been accepted, without
  // waiting for the stream; errors and timeouts as in wait().
  void settle(const char* what);
  // Both: NCCL errors and the timeout abort the communicator and throw.
  void poll(const char* what, bool until_stream_idle);
  [[noreturn]] void fail_aborted(const std::string& why);
  // type, op: ncclDataType_t, ncclRedOp_t (kept out of this header).
  void all_reduce(void* data, size_t n, int type, int op, const char* what);
  void all_gather(const void* send, void* recv, size_t part, int type, const char* what);
  // reduce_to_owners_after (broadcast false) or broadcast_from_owners_after.
  void ranges_group(float* data, const std::vector<OwnedRange>& ranges, bool broadcast, cudaEvent_t ready,
                    const char* what);

  struct Impl;
  std::unique_ptr<Impl> impl_;
  int rank_ = 0, world_ = 1;
  cudaStream_t stream_ = nullptr;
  double timeout_s_ = 600;
};

}  // namespace muongpt
