// Launching without MPI: rank and world size from the environment, and the
// errors of make_comm when that path cannot be taken.
#include <cstdlib>

#include "dist/comm.h"
#include "test_support.h"

using namespace muongpt;

namespace {

// Sets environment variables for one scope (and removes them after).
struct ScopedEnv {
  explicit ScopedEnv(std::initializer_list<std::pair<const char*, const char*>> vars) {
    for (const auto& [k, v] : vars) {
      setenv(k, v, 1);
      names.push_back(k);
    }
  }
  ~ScopedEnv() {
    for (const char* k : names) unsetenv(k);
  }
  std::vector<const char*> names;
};

}  // namespace

TEST_CASE("rank and world size come from MUONGPT_*, then RANK/WORLD_SIZE, then Slurm", "[dist][launch]") {
  int rank = -1, world = -1;
  {
    ScopedEnv env({{"SLURM_PROCID", "2"}, {"SLURM_NTASKS", "4"}});
    rank_from_environment(rank, world);
    REQUIRE(rank == 2);
    REQUIRE(world == 4);
    ScopedEnv env2({{"RANK", "1"}, {"WORLD_SIZE", "3"}});
    rank_from_environment(rank, world);
    REQUIRE(rank == 1);
    REQUIRE(world == 3);
    ScopedEnv env3({{"MUONGPT_RANK", "0"}, {"MUONGPT_WORLD_SIZE", "8"}});
    rank_from_environment(rank, world);
    REQUIRE(rank == 0);
    REQUIRE(world == 8);
  }
  rank_from_environment(rank, world);  // nothing set (the test runs without a launcher)
  REQUIRE(rank == 0);
  REQUIRE(world == 1);
}

TEST_CASE("bad rank variables are errors that name them", "[dist][launch]") {
  int rank = 0, world = 0;
  {
    ScopedEnv env({{"MUONGPT_RANK", "3"}, {"MUONGPT_WORLD_SIZE", "2"}});
    test::require_error([&] { rank_from_environment(rank, world); }, {"MUONGPT_RANK=3", "MUONGPT_WORLD_SIZE=2"});
  }
  {
    ScopedEnv env({{"RANK", "one"}, {"WORLD_SIZE", "2"}});
    test::require_error([&] { rank_from_environment(rank, world); }, {"RANK=\"one\"", "not a non-negative integer"});
  }
}

TEST_CASE("several ranks without MPI need NCCL and a shared id file", "[dist][launch]") {
  if (launched_by_mpi()) return;  // under mpirun make_comm takes the MPI path
  ScopedEnv env({{"MUONGPT_RANK", "1"}, {"MUONGPT_WORLD_SIZE", "2"}});
#if MUONGPT_HAVE_NCCL
  // without MUONGPT_NCCL_ID_FILE the NCCL path stops before touching a GPU
  test::require_error([] { make_comm(); }, {"rank 1 of 2", "MUONGPT_NCCL_ID_FILE"});
#else
  test::require_error([] { make_comm(); }, {"rank 1 of 2", "needs NCCL"});
#endif
}
