// RAdam's step on the CPU, one pass (see radam.py for the algorithm and
// multi_tensor.h for the layout). Each line is the reference path's
// (``_radam_kernel``), in the same order of operations.
#include "multi_tensor.h"

namespace {

template <typename T, bool kL2>
void radam_rows(int64_t rows, const int64_t* numels, void* const* tensors, const double* s) {
  // No decay is a multiply by 1, exact for every value.
  const T decay = std::isnan(s[0]) ? 1.0 : s[0];
  const T l2 = kL2 ? s[1] : 0.0;
  const T beta1 = s[2], one_minus_beta1 = s[3], beta2 = s[4], one_minus_beta2 = s[5];
  const T eps = s[6], sgd_step_size = s[7], adaptive_step_size = s[8], denom_shift = s[9];
  for (int64_t row = 0; row < rows; ++row) {
    T* __restrict param = static_cast<T*>(tensors[4 * row]);
    const T* __restrict grad = static_cast<const T*>(tensors[4 * row + 1]);
    T* __restrict exp_avg = static_cast<T*>(tensors[4 * row + 2]);
    T* __restrict exp_avg_sq = static_cast<T*>(tensors[4 * row + 3]);
    const optserve::Slice slice = optserve::thread_slice(numels[row]);
#pragma omp simd
    for (int64_t i = slice.lo; i < slice.hi; ++i) {
      const T p = param[i] * decay;
      T g = grad[i];
      if (kL2) g = g + p * l2;
      const T m = exp_avg[i] * beta1 + g * one_minus_beta1;
      const T v = exp_avg_sq[i] * beta2 + g * g * one_minus_beta2;
      exp_avg[i] = m;
      exp_avg_sq[i] = v;
      const T adaptive = adaptive_step_size / (std::sqrt(v) + eps + denom_shift);
      param[i] = p - m * (adaptive + sgd_step_size);
    }
  }
}

template <typename T>
void radam(int64_t rows, const int64_t* numels, void* const* tensors, const double* s,
           optserve::RowReduction&) {
  if (std::isnan(s[1])) {
    radam_rows<T, false>(rows, numels, tensors, s);
  } else {
    radam_rows<T, true>(rows, numels, tensors, s);
  }
}

}  // namespace

OPTSERVE_KERNEL(radam, radam)
