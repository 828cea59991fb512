// Multi-tensor drivers for the native CPU kernels (see optimizers/_native.py).
//
// Why these exist: Inductor's CPU code opens an OpenMP region and splits the work
// anew for every tensor and every pass (20-50% over the memory floor on a one-pass
// step), and a two-pass optimizer (LAMB, SET-Adam) then reads each tensor from
// memory twice. Here one parallel region covers every tensor of a step; each thread
// takes the same static slice of a tensor in both passes, so the second pass reads
// what the first left in that core's cache, and the per-tensor reductions need one
// barrier, not a new region.
//
// Every kernel has the same C entry point (see OPTSERVE_KERNEL below):
//   void <name>_<dtype>(int64_t rows, const int64_t* numels, void* const* tensors,
//                       const double* scalars, int64_t threads)
// ``tensors`` holds ``rows`` rows of the kernel's tensors (parameter first), row by
// row, null for an absent optional buffer; every tensor of a row has ``numels[row]``
// contiguous elements; ``scalars`` are the kernel's coefficients in the order its
// Python side declares, with NaN for ``None`` and 0/1 for booleans.
#pragma once

#include <omp.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace optserve {

// The slice [lo, hi) of ``n`` elements that this thread owns: the same for every
// pass over a tensor, aligned to 16 elements (a 64-byte cache line of float32).
struct Slice {
  int64_t lo;
  int64_t hi;
};

inline Slice thread_slice(int64_t n) {
  const int64_t thread = omp_get_thread_num();
  const int64_t threads = omp_get_num_threads();
  const int64_t per = ((n + threads - 1) / threads + 15) / 16 * 16;
  const int64_t lo = thread * per < n ? thread * per : n;
  return {lo, lo + per < n ? lo + per : n};
}

// Per-row sums and a minimum, shared by the threads of a kernel's parallel region.
// Each thread writes its partial results to its own place; after a barrier, every
// thread adds them up in thread order, so a result never depends on which thread
// finished first (a step is bit-for-bit repeatable). Two slots, used by alternate
// rows: a thread can only be one row ahead of another (the barrier), so it never
// overwrites partial results that a slower thread is still adding up.
class RowReduction {
 public:
  static constexpr int kSums = 2;  // every kernel reduces two sums (and a minimum)

  explicit RowReduction(int64_t threads)
      : threads_(threads), partial_(2 * threads * (kSums + 1)) {}

  // Every thread of the region calls this with its partial sums and minimum for row
  // ``row``; on return, ``sums`` holds the totals and ``least`` the minimum.
  void fold(int64_t row, const double (&partial)[kSums], double partial_min,
            double (&sums)[kSums], double& least) {
    const int64_t slot = (row & 1) * threads_;
    double* mine = &partial_[(slot + omp_get_thread_num()) * (kSums + 1)];
    for (int k = 0; k < kSums; ++k) mine[k] = partial[k];
    mine[kSums] = partial_min;
#pragma omp barrier
    for (int k = 0; k < kSums; ++k) sums[k] = 0.0;
    least = INFINITY;
    for (int64_t thread = 0; thread < omp_get_num_threads(); ++thread) {
      const double* theirs = &partial_[(slot + thread) * (kSums + 1)];
      for (int k = 0; k < kSums; ++k) sums[k] += theirs[k];
      least = theirs[kSums] < least ? theirs[kSums] : least;
    }
  }

 private:
  int64_t threads_;
  std::vector<double> partial_;
};

}  // namespace optserve

// The C entry points of a kernel template
// ``FN<T>(rows, numels, tensors, scalars, reduction)`` for float32 and float64, run
// by every thread of one region of ``threads`` threads.
#define OPTSERVE_KERNEL(NAME, FN)                                             \
  extern "C" void NAME##_float32(int64_t rows, const int64_t* numels,         \
                                 void* const* tensors, const double* scalars, \
                                 int64_t threads) {                           \
    optserve::RowReduction reduction(threads);                                \
    _Pragma("omp parallel num_threads(threads)")                              \
        FN<float>(rows, numels, tensors, scalars, reduction);                 \
  }                                                                           \
  extern "C" void NAME##_float64(int64_t rows, const int64_t* numels,         \
                                 void* const* tensors, const double* scalars, \
                                 int64_t threads) {                           \
    optserve::RowReduction reduction(threads);                                \
    _Pragma("omp parallel num_threads(threads)")                              \
        FN<double>(rows, numels, tensors, scalars, reduction);                \
  }
