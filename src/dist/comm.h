// Communication between ranks (data parallelism).
//
// Single process: every collective is a no-op. MPI (host memory): used by the
// CPU backend when the binary is started by an MPI launcher (mpirun/srun with
// PMI); rank and world come from MPI. A GPU build adds NCCL later; MPI then
// only bootstraps.
//
// Every collective names what it moves (`what`), so that a rank which waits
// longer than the timeout can say which collective hung; the watchdog then
// ends the process, and the launcher ends the others.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace muongpt {

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  virtual std::string name() const = 0;
  virtual void allreduce_sum(float* data, size_t n, const char* what) = 0;
  virtual void allreduce_sum(double* data, size_t n, const char* what) = 0;
  // Elementwise maximum over ranks, in place (QK-clip's max attention logits).
  // The defaults work for any Comm (float: through allgatherv; double: one
  // rank only); MPI uses MPI_MAX.
  virtual void allreduce_max(float* data, size_t n, const char* what);
  virtual void allreduce_max(double* data, size_t n, const char* what);
  // In place: every rank holds a full buffer of sum(counts) values; afterwards
  // rank r's part, buffer[displs[r], displs[r] + counts[r]), holds the sum over
  // ranks of that part (the rest of the buffer is unspecified). displs must be
  // the prefix sums of counts.
  virtual void reduce_scatter_sum(float* buffer, const std::vector<int>& counts, const std::vector<int>& displs,
                                  const char* what) = 0;
  // In place: rank r's part is already at buffer[displs[r]] (counts[r] values);
  // afterwards every rank holds every part.
  virtual void allgatherv(float* buffer, const std::vector<int>& counts, const std::vector<int>& displs,
                          const char* what) = 0;
  // Rank r sends counts[r] values; `root` receives them at recv[displs[r]].
  virtual void gatherv(const float* send, float* recv, const std::vector<int>& counts, const std::vector<int>& displs,
                       int root, const char* what) = 0;
  virtual void broadcast(void* data, size_t bytes, int root, const char* what) = 0;
  virtual void barrier(const char* what) = 0;
  // Seconds a collective may take before the watchdog ends the process.
  virtual void set_timeout(double seconds) = 0;
  // Ends every rank after an unrecoverable error on this one.
  [[noreturn]] virtual void abort(int code) = 0;

  bool is_root() const { return rank() == 0; }
};

// True when this process was started by an MPI launcher.
bool launched_by_mpi();

// MPI when launched by mpirun/srun and built with MPI; the single-process
// communicator otherwise. Being launched by MPI in a build without it is an error.
std::unique_ptr<Comm> make_comm();

std::unique_ptr<Comm> make_single_comm();

}  // namespace muongpt
