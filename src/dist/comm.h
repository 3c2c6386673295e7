// Communication between ranks (data parallelism).
//
// Single process: every collective is a no-op. MPI (host memory): used by the
// CPU backend when the binary is started by an MPI launcher (mpirun/srun with
// PMI); rank and world come from MPI. A GPU build adds NCCL later; MPI then
// only bootstraps.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace muongpt {

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  virtual std::string name() const = 0;
  virtual void allreduce_sum(float* data, size_t n) = 0;
  virtual void allreduce_sum(double* data, size_t n) = 0;
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // Ends every rank after an unrecoverable error on this one.
  [[noreturn]] virtual void abort(int code) = 0;

  bool is_root() const { return rank() == 0; }
};

// True when this process was started by an MPI launcher.
bool launched_by_mpi();

// MPI when launched by mpirun/srun and built with MPI; the single-process
// communicator otherwise. Asking for MPI in a build without it is an error.
std::unique_ptr<Comm> make_comm();

std::unique_ptr<Comm> make_single_comm();

}  // namespace muongpt
