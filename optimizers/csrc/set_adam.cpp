// SET-Adam's step on the CPU, both passes in one parallel region (see set_adam.py
// for the algorithm and multi_tensor.h for the layout). Each line is the reference
// path's (``_set_adam_moments_kernel``, ``_set_adam_update_kernel``), in the same
// order of operations, so that float64 results agree to rounding.
#include "multi_tensor.h"

namespace {

template <typename T, bool kL2, bool kAccumulate>
void set_adam_rows(int64_t rows, const int64_t* numels, void* const* tensors, const double* s,
                   optserve::RowReduction& reduction) {
  const T l2 = kL2 ? s[0] : 0.0;
  const T beta1 = s[1], one_minus_beta1 = s[2], beta2 = s[3], one_minus_beta2 = s[4];
  const double bias_correction2 = s[5];
  const T eps = s[6], tau = s[7];
  // No decay is a multiply by 1, exact for every value.
  const T decay = std::isnan(s[9]) ? 1.0 : s[9], step_size = s[10];
  for (int64_t row = 0; row < rows; ++row) {
    T* __restrict param = static_cast<T*>(tensors[4 * row]);
    const T* __restrict grad = static_cast<const T*>(tensors[4 * row + 1]);
    T* __restrict exp_avg = static_cast<T*>(tensors[4 * row + 2]);
    T* __restrict exp_avg_sq = static_cast<T*>(tensors[4 * row + 3]);
    const int64_t numel = numels[row];
    const optserve::Slice slice = optserve::thread_slice(numel);
    // First pass: the moments, and sum v, sum v^2 (float64) and min v.
    double total = 0.0, total_sq = 0.0;
    T least = INFINITY;
#pragma omp simd reduction(+ : total, total_sq) reduction(min : least)
    for (int64_t i = slice.lo; i < slice.hi; ++i) {
      T g = grad[i];
      if (kL2) g = g + param[i] * l2;
      const T m = exp_avg[i] * beta1 + g * one_minus_beta1;
      T v = exp_avg_sq[i] * beta2 + g * g * one_minus_beta2;
      if (kAccumulate) v = v + eps;
      exp_avg[i] = m;
      exp_avg_sq[i] = v;
      const double wide = v;
      total += wide;
      total_sq += wide * wide;
      least = v < least ? v : least;
    }
    double sums[2], least_v;
    reduction.fold(row, {total, total_sq}, least, sums, least_v);
    total = sums[0];
    total_sq = sums[1];
    // v >= 0, so its sum is NaN exactly when some v is: then so is min(v), as in torch.
    const T min_v = std::isnan(total) ? static_cast<T>(NAN) : static_cast<T>(least_v);
    const double cos2 = total_sq > 0.0 ? total * total / (total_sq * numel) : 1.0;
    const T scale = static_cast<T>(cos2 / bias_correction2);
    T least_w = min_v * scale;
    if (!kAccumulate) least_w = least_w + eps;
    const T shift = std::sqrt(least_w) * tau;
    // Second pass over this thread's slice, still in its cache.
#pragma omp simd
    for (int64_t i = slice.lo; i < slice.hi; ++i) {
      T w = exp_avg_sq[i] * scale;
      if (!kAccumulate) w = w + eps;
      w = std::sqrt(w) - shift;
      param[i] = param[i] * decay - (w == 0 ? static_cast<T>(0) : exp_avg[i] / w) * step_size;
    }
  }
}

template <typename T>
void set_adam(int64_t rows, const int64_t* numels, void* const* tensors, const double* s,
              optserve::RowReduction& reduction) {
  const bool l2 = !std::isnan(s[0]), accumulate = s[8] != 0.0;
  if (l2 && accumulate) {
    set_adam_rows<T, true, true>(rows, numels, tensors, s, reduction);
  } else if (l2) {
    set_adam_rows<T, true, false>(rows, numels, tensors, s, reduction);
  } else if (accumulate) {
    set_adam_rows<T, false, true>(rows, numels, tensors, s, reduction);
  } else {
    set_adam_rows<T, false, false>(rows, numels, tensors, s, reduction);
  }
}

}  // namespace

OPTSERVE_KERNEL(set_adam, set_adam)
