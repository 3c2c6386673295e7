// Communication between ranks (data parallelism).
//
// Single process: every collective is a no-op. MPI (host memory): used by the
// CPU backend when the binary is started by an MPI launcher (mpirun/srun with
// PMI); rank and world come from MPI. On GPUs the gradients go over NCCL
// (backend/cuda/nccl_comm.h), bootstrapped through this communicator; a
// launch without MPI uses a Comm built on NCCL itself (make_comm).
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

// Rank and world size of a launch without MPI, from MUONGPT_RANK /
// MUONGPT_WORLD_SIZE, else RANK / WORLD_SIZE, else SLURM_PROCID /
// SLURM_NTASKS; rank 0 of 1 when none is set. Bad values are an Error naming
// the variables.
void rank_from_environment(int& rank, int& world);

// MPI when launched by mpirun/srun and built with MPI; without MPI and with
// several ranks in the environment (rank_from_environment), NCCL bootstrapped
// through the file MUONGPT_NCCL_ID_FILE (GPU builds with NCCL); the
// single-process communicator otherwise. Being launched by MPI in a build
// without it, or with several ranks and no NCCL, is an error.
std::unique_ptr<Comm> make_comm();

#if MUONGPT_HAVE_NCCL
// src/backend/cuda/nccl_host_comm.cu
std::unique_ptr<Comm> make_nccl_host_comm(int rank, int world);
#endif

std::unique_ptr<Comm> make_single_comm();

}  // namespace muongpt
