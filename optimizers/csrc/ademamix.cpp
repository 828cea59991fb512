// AdEMAMix's step on the CPU, one pass (see ademamix.py for the algorithm and
// multi_tensor.h for the layout). Each line is the reference path's
// (``_ademamix_kernel``), in the same order of operations. A row's third tensor,
// the fast EMA, is null when beta1 == 0 (the fast EMA is the gradient itself).
#include "multi_tensor.h"

namespace {

template <typename T, bool kFastEma>
void ademamix_row(void* const* row, const optserve::Slice slice, const double* s) {
  const T beta1 = s[0], one_minus_beta1 = s[1], beta2 = s[2], one_minus_beta2 = s[3];
  const T beta3 = s[4], one_minus_beta3 = s[5], alpha = s[6], inv_bc1 = s[7];
  const T inv_sqrt_bc2 = s[8], eps = s[9], decay = s[10], lr = s[11];
  T* __restrict param = static_cast<T*>(row[0]);
  const T* __restrict grad = static_cast<const T*>(row[1]);
  T* __restrict exp_avg = static_cast<T*>(row[2]);
  T* __restrict exp_avg_slow = static_cast<T*>(row[3]);
  T* __restrict exp_avg_sq = static_cast<T*>(row[4]);
#pragma omp simd
  for (int64_t i = slice.lo; i < slice.hi; ++i) {
    const T g = grad[i];
    const T slow = exp_avg_slow[i] * beta3 + g * one_minus_beta3;
    const T v = exp_avg_sq[i] * beta2 + g * g * one_minus_beta2;
    exp_avg_slow[i] = slow;
    exp_avg_sq[i] = v;
    T numerator;
    if (kFastEma) {
      const T m = exp_avg[i] * beta1 + g * one_minus_beta1;
      exp_avg[i] = m;
      numerator = m * inv_bc1 + slow * alpha;
    } else {
      numerator = g + slow * alpha;
    }
    const T denom = std::sqrt(v) * inv_sqrt_bc2 + eps;
    param[i] = param[i] * decay - numerator * lr / denom;
  }
}

template <typename T>
void ademamix(int64_t rows, const int64_t* numels, void* const* tensors, const double* s,
              optserve::RowReduction&) {
  for (int64_t row = 0; row < rows; ++row) {
    void* const* tensors_of_row = tensors + 5 * row;
    const optserve::Slice slice = optserve::thread_slice(numels[row]);
    if (tensors_of_row[2] != nullptr) {
      ademamix_row<T, true>(tensors_of_row, slice, s);
    } else {
      ademamix_row<T, false>(tensors_of_row, slice, s);
    }
  }
}

}  // namespace

OPTSERVE_KERNEL(ademamix, ademamix)
