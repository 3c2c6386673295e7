#include "dist/comm.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#if MUONGPT_HAVE_MPI
#include <mpi.h>
#endif

#include "util/error.h"

namespace muongpt {

namespace {

class SingleComm final : public Comm {
 public:
  int rank() const override { return 0; }
  int world() const override { return 1; }
  std::string name() const override { return "single process"; }
  void allreduce_sum(float*, size_t, const char*) override {}
  void allreduce_sum(double*, size_t, const char*) override {}
  void allgatherv(float*, const std::vector<int>&, const std::vector<int>&, const char*) override {}
  void reduce_scatter_sum(float*, const std::vector<int>&, const std::vector<int>&, const char*) override {}
  void gatherv(const float* send, float* recv, const std::vector<int>& counts, const std::vector<int>& displs, int,
               const char*) override {
    if (send != recv + displs[0]) std::memcpy(recv + displs[0], send, counts[0] * sizeof(float));
  }
  void broadcast(void*, size_t, int, const char*) override {}
  void barrier(const char*) override {}
  void set_timeout(double) override {}
  [[noreturn]] void abort(int code) override { std::exit(code); }
};

#if MUONGPT_HAVE_MPI
void check_mpi(int rc, const char* op, const char* what) {
  if (rc != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    fail("MPI ", op, " (", what, ") failed: ", std::string(text, len));
  }
}

// Watches the collective in flight; past the timeout it reports which one
// and ends this process (the launcher then ends the other ranks). A rank
// that died or hangs can therefore not keep the others waiting forever.
class Watchdog {
 public:
  explicit Watchdog(int rank) : rank_(rank), thread_([this] { run(); }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  void set_timeout(double seconds) { timeout_ms_ = static_cast<long>(seconds * 1000); }
  void begin(const char* op, const char* what) {
    std::lock_guard<std::mutex> lock(mutex_);
    op_ = op;
    what_ = what;
    started_ = std::chrono::steady_clock::now();
    active_ = true;
  }
  void end() {
    std::lock_guard<std::mutex> lock(mutex_);
    active_ = false;
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stop_) {
      wake_.wait_for(lock, std::chrono::milliseconds(200));
      if (!active_) continue;
      const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_);
      if (waited.count() > timeout_ms_.load()) {
        std::fprintf(stderr,
                     "error: rank %d: MPI %s (%s) did not complete within %.0f s (dist.timeout_s); another rank "
                     "has probably died or hangs. Ending this rank.\n",
                     rank_, op_, what_, timeout_ms_.load() / 1000.0);
        std::fflush(stderr);
        std::_Exit(3);
      }
    }
  }
  int rank_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<long> timeout_ms_{600000};
  const char* op_ = "";
  const char* what_ = "";
  std::chrono::steady_clock::time_point started_;
  bool active_ = false, stop_ = false;
  std::thread thread_;
};

class MpiComm final : public Comm {
 public:
  MpiComm() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) check_mpi(MPI_Init(nullptr, nullptr), "init", "startup");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &world_);
    watchdog_ = std::make_unique<Watchdog>(rank_);
  }
  ~MpiComm() override {
    watchdog_.reset();
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
  int rank() const override { return rank_; }
  int world() const override { return world_; }
  std::string name() const override { return str("MPI, ", world_, " ranks, host memory"); }
  void allreduce_sum(float* data, size_t n, const char* what) override { reduce(data, n, MPI_FLOAT, what); }
  void allreduce_sum(double* data, size_t n, const char* what) override { reduce(data, n, MPI_DOUBLE, what); }
  void allreduce_max(float* data, size_t n, const char* what) override { reduce(data, n, MPI_FLOAT, what, MPI_MAX); }
  void allreduce_max(double* data, size_t n, const char* what) override { reduce(data, n, MPI_DOUBLE, what, MPI_MAX); }
  void allgatherv(float* buffer, const std::vector<int>& counts, const std::vector<int>& displs,
                  const char* what) override {
    Guard g(*watchdog_, "allgatherv", what);
    check_mpi(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buffer, counts.data(), displs.data(), MPI_FLOAT,
                             MPI_COMM_WORLD),
              "allgatherv", what);
  }
  void reduce_scatter_sum(float* buffer, const std::vector<int>& counts, const std::vector<int>& displs,
                          const char* what) override {
    Guard g(*watchdog_, "reduce_scatter", what);
    // MPI_IN_PLACE leaves this rank's part at the start of the buffer.
    check_mpi(MPI_Reduce_scatter(MPI_IN_PLACE, buffer, counts.data(), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
              "reduce_scatter", what);
    if (displs[rank_] != 0) std::memmove(buffer + displs[rank_], buffer, counts[rank_] * sizeof(float));
  }
  void gatherv(const float* send, float* recv, const std::vector<int>& counts, const std::vector<int>& displs,
               int root, const char* what) override {
    Guard g(*watchdog_, "gatherv", what);
    check_mpi(MPI_Gatherv(send, counts[rank_], MPI_FLOAT, recv, counts.data(), displs.data(), MPI_FLOAT, root,
                          MPI_COMM_WORLD),
              "gatherv", what);
  }
  void broadcast(void* data, size_t bytes, int root, const char* what) override {
    Guard g(*watchdog_, "broadcast", what);
    auto* p = static_cast<char*>(data);
    while (bytes > 0) {
      const int chunk = static_cast<int>(std::min<size_t>(bytes, 1 << 30));
      check_mpi(MPI_Bcast(p, chunk, MPI_BYTE, root, MPI_COMM_WORLD), "broadcast", what);
      p += chunk;
      bytes -= chunk;
    }
  }
  void barrier(const char* what) override {
    Guard g(*watchdog_, "barrier", what);
    check_mpi(MPI_Barrier(MPI_COMM_WORLD), "barrier", what);
  }
  void set_timeout(double seconds) override { watchdog_->set_timeout(seconds); }
  [[noreturn]] void abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::exit(code);
  }

 private:
  struct Guard {
    Guard(Watchdog& w, const char* op, const char* what) : w_(w) { w_.begin(op, what); }
    ~Guard() { w_.end(); }
    Watchdog& w_;
  };
  template <class T>
  void reduce(T* data, size_t n, MPI_Datatype type, const char* what, MPI_Op op = MPI_SUM) {
    Guard g(*watchdog_, "allreduce", what);
    while (n > 0) {  // MPI counts are int
      const int chunk = static_cast<int>(std::min<size_t>(n, 1 << 28));
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, chunk, type, op, MPI_COMM_WORLD), "allreduce", what);
      data += chunk;
      n -= chunk;
    }
  }
  int rank_ = 0, world_ = 1;
  std::unique_ptr<Watchdog> watchdog_;
};
#endif

}  // namespace

void Comm::allreduce_max(float* data, size_t n, const char* what) {
  const int w = world();
  if (w == 1) return;
  std::vector<float> all(n * w);
  std::copy(data, data + n, all.begin() + n * rank());
  std::vector<int> counts(w, static_cast<int>(n)), displs(w);
  for (int r = 0; r < w; ++r) displs[r] = static_cast<int>(n) * r;
  allgatherv(all.data(), counts, displs, what);
  for (int r = 0; r < w; ++r)
    for (size_t i = 0; i < n; ++i) data[i] = std::max(data[i], all[n * r + i]);
}

void Comm::allreduce_max(double*, size_t, const char* what) {
  if (world() > 1) fail(name(), ": no double-precision max all-reduce (", what, ")");
}

bool launched_by_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(var)) return true;
  return false;
}

namespace {

int env_int(const char* name) {
  const char* v = std::getenv(name);
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (!*v || *end != '\0' || x < 0 || x > 1000000)
    fail("environment variable ", name, "=\"", v, "\" is not a non-negative integer");
  return static_cast<int>(x);
}

}  // namespace

void rank_from_environment(int& rank, int& world) {
  const char* pairs[][2] = {{"MUONGPT_RANK", "MUONGPT_WORLD_SIZE"}, {"RANK", "WORLD_SIZE"},
                            {"SLURM_PROCID", "SLURM_NTASKS"}};
  for (const auto& p : pairs) {
    if (std::getenv(p[0]) && std::getenv(p[1])) {
      rank = env_int(p[0]);
      world = env_int(p[1]);
      if (world < 1 || rank >= world)
        fail(p[0], "=", rank, " and ", p[1], "=", world, " do not fit together (need 0 <= rank < world size)");
      return;
    }
  }
  rank = 0;
  world = 1;
}

std::unique_ptr<Comm> make_single_comm() { return std::make_unique<SingleComm>(); }

std::unique_ptr<Comm> make_comm() {
  if (!launched_by_mpi()) {
    int rank = 0, world = 1;
    rank_from_environment(rank, world);
    if (world == 1) return make_single_comm();
#if MUONGPT_HAVE_NCCL
    return make_nccl_host_comm(rank, world);
#else
    fail("rank ", rank, " of ", world, " from the environment, without an MPI launcher: that path needs NCCL, "
         "which this build lacks (build with CUDA and NCCL, or start the ranks with mpirun)");
#endif
  }
#if MUONGPT_HAVE_MPI
  return std::make_unique<MpiComm>();
#else
  fail("this process was started by an MPI launcher, but muongpt was built without MPI "
       "(install an MPI development package and rebuild)");
#endif
}

}  // namespace muongpt
