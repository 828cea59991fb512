// EVE's step on the CPU, one pass (see eve.py for the algorithm and multi_tensor.h
// for the layout). Each line is the reference path's (``_eve_kernel``), in the same
// order of operations. A row's seventh tensor, the AMSGrad maximum, is null when
// amsgrad is off.
#include "multi_tensor.h"

namespace {

template <typename T, bool kAmsgrad>
void eve_row(void* const* row, const optserve::Slice slice, const double* s) {
  const T decay = s[0], beta1 = s[1], one_minus_beta1 = s[2], beta2 = s[3];
  const T one_minus_beta2 = s[4], beta3 = s[5], one_minus_beta3 = s[6], alpha = s[7];
  const T one_minus_alpha = s[8], eps = s[9], half_a1 = s[10], half_a2 = s[11];
  T* __restrict param = static_cast<T*>(row[0]);
  const T* __restrict grad = static_cast<const T*>(row[1]);
  T* __restrict exp_avg_short = static_cast<T*>(row[2]);
  T* __restrict exp_avg_long = static_cast<T*>(row[3]);
  T* __restrict exp_avg_sq_short = static_cast<T*>(row[4]);
  T* __restrict exp_avg_sq_long = static_cast<T*>(row[5]);
  T* __restrict max_exp_avg_sq_short = static_cast<T*>(row[6]);
#pragma omp simd
  for (int64_t i = slice.lo; i < slice.hi; ++i) {
    const T p = param[i] * decay;
    const T g = grad[i];
    const T m_short = exp_avg_short[i] * beta1 + g * one_minus_beta1;
    const T m_long = exp_avg_long[i] * beta2 + g * one_minus_beta2;
    T deviation = g - std::sqrt(exp_avg_sq_long[i]);
    const T v_short = exp_avg_sq_short[i] * beta2 + deviation * deviation * one_minus_beta2;
    deviation = g - std::sqrt(v_short);
    const T v_long = exp_avg_sq_long[i] * alpha + deviation * deviation * one_minus_alpha;
    exp_avg_short[i] = m_short;
    exp_avg_long[i] = m_long;
    exp_avg_sq_short[i] = v_short;
    exp_avg_sq_long[i] = v_long;
    T short_term = v_short;
    if (kAmsgrad) {  // torch.maximum: NaN if either is
      const T old = max_exp_avg_sq_short[i];
      short_term = (v_short > old || v_short != v_short) ? v_short : old;
      max_exp_avg_sq_short[i] = short_term;
    }
    const T rate = half_a1 / (std::sqrt(v_long) + eps) + half_a2 / (std::sqrt(short_term) + eps);
    param[i] = p - rate * (m_short * beta3 + m_long * one_minus_beta3);
  }
}

template <typename T>
void eve(int64_t rows, const int64_t* numels, void* const* tensors, const double* s,
         optserve::RowReduction&) {
  for (int64_t row = 0; row < rows; ++row) {
    void* const* tensors_of_row = tensors + 7 * row;
    const optserve::Slice slice = optserve::thread_slice(numels[row]);
    if (tensors_of_row[6] != nullptr) {
      eve_row<T, true>(tensors_of_row, slice, s);
    } else {
      eve_row<T, false>(tensors_of_row, slice, s);
    }
  }
}

}  // namespace

OPTSERVE_KERNEL(eve, eve)
