// A Comm over NCCL for launches without MPI (rank and world size from the
// environment, see make_comm in dist/comm.h): the trainer's host-memory
// collectives (losses, checkpoint gathering, the host optimizer's sharded
// state) go through a device staging buffer. Uneven parts (allgatherv,
// gatherv, reduce_scatter_sum with any counts) are summed whole: each rank
// contributes its part and zeros elsewhere, which is exact (x + 0 = x) at the
// price of moving the whole buffer; these are not the hot path (the
// gradients of GPU training are all-reduced on the device).
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "backend/cuda/local_gpu.h"
#include "backend/cuda/nccl_comm.h"
#include "dist/comm.h"
#include "kernels/cuda/common.cuh"
#include "util/error.h"

namespace muongpt {

namespace {

class NcclHostComm final : public Comm {
 public:
  NcclHostComm(std::unique_ptr<NcclComm> nccl, cudaStream_t stream) : nccl_(std::move(nccl)), stream_(stream) {}
  ~NcclHostComm() override {
    nccl_.reset();
    if (staging_) cudaFree(staging_);
    cudaStreamDestroy(stream_);
  }

  int rank() const override { return nccl_->rank(); }
  int world() const override { return nccl_->world(); }
  std::string name() const override { return nccl_->name() + ", no MPI"; }

  void allreduce_sum(float* data, size_t n, const char* what) override {
    through_device(data, n, [&](float* d) { nccl_->all_reduce_sum(d, n, what); });
  }
  void allreduce_sum(double* data, size_t n, const char* what) override {
    through_device(data, n, [&](double* d) { nccl_->all_reduce_sum(d, n, what); });
  }
  void allreduce_max(float* data, size_t n, const char* what) override {
    through_device(data, n, [&](float* d) { nccl_->all_reduce_max(d, n, what); });
  }
  void allreduce_max(double* data, size_t n, const char* what) override {
    through_device(data, n, [&](double* d) { nccl_->all_reduce_max(d, n, what); });
  }

  void reduce_scatter_sum(float* buffer, const std::vector<int>& counts, const std::vector<int>& displs,
                          const char* what) override {
    allreduce_sum(buffer, total(counts, displs), what);  // every part summed; each rank keeps its own
  }

  void allgatherv(float* buffer, const std::vector<int>& counts, const std::vector<int>& displs,
                  const char* what) override {
    const size_t n = total(counts, displs);
    const int r = rank();
    std::vector<float> mine(n, 0.0f);
    std::memcpy(mine.data() + displs[r], buffer + displs[r], sizeof(float) * counts[r]);
    allreduce_sum(mine.data(), n, what);
    std::memcpy(buffer, mine.data(), sizeof(float) * n);
  }

  void gatherv(const float* send, float* recv, const std::vector<int>& counts, const std::vector<int>& displs,
               int root, const char* what) override {
    const size_t n = total(counts, displs);
    const int r = rank();
    std::vector<float> mine(n, 0.0f);
    std::memcpy(mine.data() + displs[r], send, sizeof(float) * counts[r]);
    allreduce_sum(mine.data(), n, what);
    if (r == root) std::memcpy(recv, mine.data(), sizeof(float) * n);
  }

  void broadcast(void* data, size_t bytes, int root, const char* what) override {
    char* d = static_cast<char*>(staging(bytes));
    CUDA_CHECK(cudaMemcpyAsync(d, data, bytes, cudaMemcpyHostToDevice, stream_));
    nccl_->broadcast(d, bytes, root, what);
    CUDA_CHECK(cudaMemcpyAsync(data, d, bytes, cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void barrier(const char* what) override {
    float one = 1.0f;
    allreduce_sum(&one, 1, what);
  }

  void set_timeout(double seconds) override { nccl_->set_timeout(seconds); }

  [[noreturn]] void abort(int code) override {
    std::fprintf(stderr, "rank %d: aborting the NCCL communicator; the other ranks stop at their next collective\n",
                 rank());
    std::fflush(stderr);
    nccl_->abort();
    std::_Exit(code);
  }

 private:
  static size_t total(const std::vector<int>& counts, const std::vector<int>& displs) {
    MUONGPT_CHECK(!counts.empty() && counts.size() == displs.size(), "counts and displs per rank");
    return static_cast<size_t>(displs.back()) + static_cast<size_t>(counts.back());
  }

  void* staging(size_t bytes) {
    if (bytes > staging_bytes_) {  // grows to the largest collective, then stays
      if (staging_) CUDA_CHECK(cudaFree(staging_));
      staging_ = nullptr;
      CUDA_CHECK(cudaMalloc(&staging_, bytes));
      staging_bytes_ = bytes;
    }
    return staging_;
  }

  template <class T, class Op>
  void through_device(T* data, size_t n, Op op) {
    if (n == 0) return;
    T* d = static_cast<T*>(staging(n * sizeof(T)));
    CUDA_CHECK(cudaMemcpyAsync(d, data, n * sizeof(T), cudaMemcpyHostToDevice, stream_));
    op(d);
    CUDA_CHECK(cudaMemcpyAsync(data, d, n * sizeof(T), cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  std::unique_ptr<NcclComm> nccl_;
  cudaStream_t stream_;
  void* staging_ = nullptr;
  size_t staging_bytes_ = 0;
};

}  // namespace

std::unique_ptr<Comm> make_nccl_host_comm(int rank, int world) {
  const char* id_file = std::getenv("MUONGPT_NCCL_ID_FILE");
  if (!id_file || !*id_file)
    fail("rank ", rank, " of ", world, " from the environment, without MPI: set MUONGPT_NCCL_ID_FILE to a path that "
         "every rank sees (a shared file system); rank 0 writes the NCCL id there and the others read it");
  CUDA_CHECK(cudaSetDevice(local_gpu_index()));
  cudaStream_t stream;
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  // The bootstrap waits up to 10 minutes for the other ranks to start;
  // set_timeout (dist.timeout_s) then governs every collective.
  auto nccl = NcclComm::from_environment(id_file, stream, 600);
  return std::make_unique<NcclHostComm>(std::move(nccl), stream);
}

}  // namespace muongpt
