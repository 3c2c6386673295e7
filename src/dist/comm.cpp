#include "dist/comm.h"

#include <cstdlib>

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
  void allreduce_sum(float*, size_t) override {}
  void allreduce_sum(double*, size_t) override {}
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(int code) override { std::exit(code); }
};

#if MUONGPT_HAVE_MPI
void check_mpi(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    fail("MPI ", what, " failed: ", std::string(text, len));
  }
}

class MpiComm final : public Comm {
 public:
  MpiComm() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) check_mpi(MPI_Init(nullptr, nullptr), "init");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &world_);
  }
  ~MpiComm() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
  int rank() const override { return rank_; }
  int world() const override { return world_; }
  std::string name() const override { return str("MPI (", world_, " ranks, host memory)"); }
  void allreduce_sum(float* data, size_t n) override { reduce(data, n, MPI_FLOAT); }
  void allreduce_sum(double* data, size_t n) override { reduce(data, n, MPI_DOUBLE); }
  void broadcast(void* data, size_t bytes, int root) override {
    auto* p = static_cast<char*>(data);
    while (bytes > 0) {
      const int chunk = static_cast<int>(std::min<size_t>(bytes, 1 << 30));
      check_mpi(MPI_Bcast(p, chunk, MPI_BYTE, root, MPI_COMM_WORLD), "broadcast");
      p += chunk;
      bytes -= chunk;
    }
  }
  void barrier() override { check_mpi(MPI_Barrier(MPI_COMM_WORLD), "barrier"); }
  [[noreturn]] void abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::exit(code);
  }

 private:
  template <class T>
  void reduce(T* data, size_t n, MPI_Datatype type) {
    while (n > 0) {  // MPI counts are int
      const int chunk = static_cast<int>(std::min<size_t>(n, 1 << 28));
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, chunk, type, MPI_SUM, MPI_COMM_WORLD), "allreduce");
      data += chunk;
      n -= chunk;
    }
  }
  int rank_ = 0, world_ = 1;
};
#endif

}  // namespace

bool launched_by_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(var)) return true;
  return false;
}

std::unique_ptr<Comm> make_single_comm() { return std::make_unique<SingleComm>(); }

std::unique_ptr<Comm> make_comm() {
  if (!launched_by_mpi()) return make_single_comm();
#if MUONGPT_HAVE_MPI
  return std::make_unique<MpiComm>();
#else
  fail("this process was started by an MPI launcher, but muongpt was built without MPI "
       "(install an MPI development package and rebuild)");
#endif
}

}  // namespace muongpt
