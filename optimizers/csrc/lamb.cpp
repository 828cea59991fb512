// LAMB's step on the CPU, both passes in one parallel region (see lamb.py for the
// algorithm and multi_tensor.h for the layout). Each line is the reference path's
// (``_lamb_moments_kernel``, ``_lamb_update_kernel``), in the same order of
// operations, so that float64 results agree to rounding.
#include "multi_tensor.h"

namespace {

template <typename T>
void lamb(int64_t rows, const int64_t* numels, void* const* tensors, const double* s,
          optserve::RowReduction& reduction) {
  const double lr = s[0];
  const T beta1 = s[1], one_minus_beta1 = s[2], beta2 = s[3], one_minus_beta2 = s[4];
  const T inv_bc1 = s[5], inv_sqrt_bc2 = s[6], eps = s[7], weight_decay = s[8];
  const double max_weight_norm = s[9];  // NaN: no clamp
  const bool trust_ratio = s[10] != 0.0;
  for (int64_t row = 0; row < rows; ++row) {
    T* __restrict param = static_cast<T*>(tensors[4 * row]);
    const T* __restrict grad = static_cast<const T*>(tensors[4 * row + 1]);
    T* __restrict exp_avg = static_cast<T*>(tensors[4 * row + 2]);
    T* __restrict exp_avg_sq = static_cast<T*>(tensors[4 * row + 3]);
    const optserve::Slice slice = optserve::thread_slice(numels[row]);
    // First pass: the moments, and the sums of squares of theta and r (float64).
    double weight_sq = 0.0, update_sq = 0.0;
#pragma omp simd reduction(+ : weight_sq, update_sq)
    for (int64_t i = slice.lo; i < slice.hi; ++i) {
      const T g = grad[i];
      const T m = exp_avg[i] * beta1 + g * one_minus_beta1;
      const T v = exp_avg_sq[i] * beta2 + g * g * one_minus_beta2;
      exp_avg[i] = m;
      exp_avg_sq[i] = v;
      const double p = param[i];
      const double r = m * inv_bc1 / (std::sqrt(v) * inv_sqrt_bc2 + eps) + param[i] * weight_decay;
      weight_sq += p * p;
      update_sq += r * r;
    }
    T step_size = static_cast<T>(lr);
    if (trust_ratio) {  // the same for every thread: all of them fold, or none
      double sums[2], unused;
      reduction.fold(row, {weight_sq, update_sq}, INFINITY, sums, unused);
      double weight_norm = std::sqrt(sums[0]);
      const double update_norm = std::sqrt(sums[1]);
      if (!std::isnan(max_weight_norm) && weight_norm > max_weight_norm) {
        weight_norm = max_weight_norm;
      }
      if (weight_norm > 0.0 && update_norm > 0.0) {
        step_size = static_cast<T>(weight_norm / update_norm * lr);
      }
    }
    // Second pass over this thread's slice, still in its cache: theta <- theta - step * r.
#pragma omp simd
    for (int64_t i = slice.lo; i < slice.hi; ++i) {
      const T r = exp_avg[i] * inv_bc1 / (std::sqrt(exp_avg_sq[i]) * inv_sqrt_bc2 + eps) +
                  param[i] * weight_decay;
      param[i] = param[i] - r * step_size;
    }
  }
}

}  // namespace

OPTSERVE_KERNEL(lamb, lamb)
