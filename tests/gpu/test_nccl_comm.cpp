// NCCL on one GPU: the bootstrap through a file (the no-MPI launch path), the
// collectives with one rank, and the timeout when a peer never arrives.
// Several ranks need several GPUs (NCCL refuses two ranks on one device): the
// multi-rank checks are the mpi tests run on a multi-GPU machine.
#if MUONGPT_HAVE_NCCL
#include <cstdlib>
#include <filesystem>

#include "backend/cuda/nccl_comm.h"
#include "dist/comm.h"
#include "gpu_test_util.h"
#include "util/error.h"

using namespace muongpt;
using namespace muongpt::gpu_test;

namespace {

// Sets MUONGPT_RANK / MUONGPT_WORLD_SIZE for one scope.
struct EnvRank {
  EnvRank(int rank, int world) {
    setenv("MUONGPT_RANK", std::to_string(rank).c_str(), 1);
    setenv("MUONGPT_WORLD_SIZE", std::to_string(world).c_str(), 1);
  }
  ~EnvRank() {
    unsetenv("MUONGPT_RANK");
    unsetenv("MUONGPT_WORLD_SIZE");
  }
};

}  // namespace

TEST_CASE("nccl: one rank bootstrapped through a file runs every collective", "[gpu][nccl]") {
  const auto dir = test::scratch_dir("nccl_one_rank");
  EnvRank env(0, 1);
  cudaStream_t stream;
  CUDA_CHECK(cudaStreamCreate(&stream));
  {
    auto comm = NcclComm::from_environment((dir / "nccl_id").string(), stream, 60);
    REQUIRE(comm->rank() == 0);
    REQUIRE(comm->world() == 1);
    REQUIRE(std::filesystem::exists(dir / "nccl_id"));
    INFO(comm->name());
    const auto x = test::random_vector<float>(1000, 1);
    DeviceArray<float> a(x), out(1000);
    comm->all_reduce_sum(a.get(), 1000, "test all-reduce");
    REQUIRE(a.download() == x);  // the sum over one rank
    comm->reduce_scatter_sum(a.get(), out.get(), 1000, "test reduce-scatter");
    REQUIRE(out.download() == x);
    DeviceArray<float> gathered(1000);
    comm->all_gather(out.get(), gathered.get(), 1000, "test all-gather");
    REQUIRE(gathered.download() == x);
    comm->broadcast(a.get(), 1000 * sizeof(float), 0, "test broadcast");
    REQUIRE(a.download() == x);
  }
  CUDA_CHECK(cudaStreamDestroy(stream));
}

TEST_CASE("nccl: a peer that never joins is a timeout naming the rank, not a hang", "[gpu][nccl]") {
  const auto dir = test::scratch_dir("nccl_missing_peer");
  EnvRank env(0, 2);  // rank 1 is never started
  cudaStream_t stream;
  CUDA_CHECK(cudaStreamCreate(&stream));
  try {
    NcclComm::from_environment((dir / "nccl_id").string(), stream, 3);
    FAIL("joining a two-rank communicator alone succeeded");
  } catch (const Error& e) {
    const std::string msg = e.what();
    INFO(msg);
    REQUIRE(msg.find("rank 0 of 2") != std::string::npos);
    REQUIRE(msg.find("communicator set-up") != std::string::npos);
  }
  CUDA_CHECK(cudaStreamDestroy(stream));
}

TEST_CASE("nccl: rank 1 waits for rank 0's id file and gives up with a clear error", "[gpu][nccl]") {
  const auto dir = test::scratch_dir("nccl_no_id");
  EnvRank env(1, 2);
  try {
    NcclComm::from_environment((dir / "never_written").string(), nullptr, 0.3);
    FAIL("rank 1 started without an id file");
  } catch (const Error& e) {
    const std::string msg = e.what();
    INFO(msg);
    REQUIRE(msg.find("rank 1 of 2") != std::string::npos);
    REQUIRE(msg.find("never_written") != std::string::npos);
  }
}

#endif
