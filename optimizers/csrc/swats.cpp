// SWATS's two phases on the CPU, one pass each (see swats.py for the algorithm and
// multi_tensor.h for the layout). Each line is the reference path's (``_adam_kernel``,
// ``_sgd_kernel``), in the same order of operations. In the Adam phase a row's fifth
// tensor is the layer's float64 ``dots``, to which the step adds (p.p, p.g).
#include "multi_tensor.h"

namespace {

template <typename T, bool kL2>
void swats_adam_rows(int64_t rows, const int64_t* numels, void* const* tensors, const double* s,
                     optserve::RowReduction& reduction) {
  const T l2 = kL2 ? s[0] : 0.0;
  const T beta1 = s[1], one_minus_beta1 = s[2], beta2 = s[3], one_minus_beta2 = s[4];
  const T eps = s[5], neg_step_size = s[6];
  for (int64_t row = 0; row < rows; ++row) {
    T* __restrict param = static_cast<T*>(tensors[5 * row]);
    const T* __restrict grad = static_cast<const T*>(tensors[5 * row + 1]);
    T* __restrict exp_avg = static_cast<T*>(tensors[5 * row + 2]);
    T* __restrict exp_avg_sq = static_cast<T*>(tensors[5 * row + 3]);
    double* dots = static_cast<double*>(tensors[5 * row + 4]);
    const optserve::Slice slice = optserve::thread_slice(numels[row]);
    double pp = 0.0, pg = 0.0;
#pragma omp simd reduction(+ : pp, pg)
    for (int64_t i = slice.lo; i < slice.hi; ++i) {
      T g = grad[i];
      if (kL2) g = g + param[i] * l2;
      const T m = exp_avg[i] * beta1 + g * one_minus_beta1;
      const T v = exp_avg_sq[i] * beta2 + g * g * one_minus_beta2;
      exp_avg[i] = m;
      exp_avg_sq[i] = v;
      const T denom = std::sqrt(v) + eps;
      const T step = (denom == 0 ? static_cast<T>(0) : m / denom) * neg_step_size;
      param[i] = param[i] + step;
      const double wide_step = step, wide_grad = g;
      pp += wide_step * wide_step;
      pg += wide_step * wide_grad;
    }
    double sums[2], unused;
    reduction.fold(row, {pp, pg}, INFINITY, sums, unused);
    if (omp_get_thread_num() == 0) {
      dots[0] += sums[0];
      dots[1] += sums[1];
    }
  }
}

template <typename T>
void swats_adam(int64_t rows, const int64_t* numels, void* const* tensors, const double* s,
                optserve::RowReduction& reduction) {
  if (std::isnan(s[0])) {
    swats_adam_rows<T, false>(rows, numels, tensors, s, reduction);
  } else {
    swats_adam_rows<T, true>(rows, numels, tensors, s, reduction);
  }
}

// The SGD phase: momentum ``beta1``; a row's fourth tensor is its rate ``neg_lr``
// (one float64 value: with the layer scope, every layer has its own).
template <typename T, bool kL2>
void swats_sgd_rows(int64_t rows, const int64_t* numels, void* const* tensors, const double* s) {
  const T l2 = kL2 ? s[0] : 0.0;
  const T beta1 = s[1];
  for (int64_t row = 0; row < rows; ++row) {
    T* __restrict param = static_cast<T*>(tensors[4 * row]);
    const T* __restrict grad = static_cast<const T*>(tensors[4 * row + 1]);
    T* __restrict momentum_buffer = static_cast<T*>(tensors[4 * row + 2]);
    const T neg_lr = static_cast<const double*>(tensors[4 * row + 3])[0];
    const optserve::Slice slice = optserve::thread_slice(numels[row]);
#pragma omp simd
    for (int64_t i = slice.lo; i < slice.hi; ++i) {
      T g = grad[i];
      if (kL2) g = g + param[i] * l2;
      const T buf = momentum_buffer[i] * beta1 + g;
      momentum_buffer[i] = buf;
      param[i] = param[i] + buf * neg_lr;
    }
  }
}

template <typename T>
void swats_sgd(int64_t rows, const int64_t* numels, void* const* tensors, const double* s,
               optserve::RowReduction&) {
  if (std::isnan(s[0])) {
    swats_sgd_rows<T, false>(rows, numels, tensors, s);
  } else {
    swats_sgd_rows<T, true>(rows, numels, tensors, s);
  }
}

}  // namespace

OPTSERVE_KERNEL(swats, swats_adam)
OPTSERVE_KERNEL(swats_sgd, swats_sgd)
