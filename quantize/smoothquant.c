/* smoothquant.c — SmoothQuant (Xiao et al. 2022) migration scales and the folding of per-channel
 * scales into the ops around a linear (shared with AWQ). */
#include <math.h>

#include "quantize.h"

qq_status qq_smoothquant_scales(const float *const *w, const int32_t *n, int32_t n_lin, int32_t k,
                                const float *x_abs_max, double alpha, float *s_out, qq_error *err) {
  if (n_lin <= 0 || k <= 0 || !(alpha >= 0.0 && alpha <= 1.0))
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "SmoothQuant: %d linears of width %d, alpha %g (needs [0, 1])",
                        n_lin, k, alpha);
  for (int32_t j = 0; j < k; j++) {
    float wm = 0.0f;
    for (int32_t i = 0; i < n_lin; i++)
      for (int32_t r = 0; r < n[i]; r++) wm = fmaxf(wm, fabsf(w[i][(size_t)r * k + j]));
    const float xm = x_abs_max[j];
    if (!(xm > 0.0f) || !(wm > 0.0f)) {
      s_out[j] = 1.0f;
      continue;
    }
    double s = pow((double)xm, alpha) / pow((double)wm, 1.0 - alpha);
    s = fmin(fmax(s, 1e-5), 1e5);
    s_out[j] = (float)s;
  }
  return QQ_OK;
}

static float round_to(float v, qq_dtype dt) {
  if (dt == QQ_DTYPE_BF16) return qq_bf16_to_f32(qq_f32_to_bf16(v));
  if (dt == QQ_DTYPE_F16) return qq_f16_to_f32(qq_f32_to_f16(v));
  return v;
}

void qq_fold_scale_into_norm(float *norm_w, int32_t k, float *s, qq_dtype norm_dtype) {
  for (int32_t j = 0; j < k; j++) {
    const float old = norm_w[j];
    const float nw = round_to(old / s[j], norm_dtype);
    if (nw != 0.0f && old != 0.0f && isfinite(old / nw)) s[j] = old / nw;
    norm_w[j] = nw;
  }
}

void qq_fold_scale_into_columns(float *w, int32_t n, int32_t k, const float *s) {
  for (int32_t r = 0; r < n; r++)
    for (int32_t j = 0; j < k; j++) w[(size_t)r * k + j] *= s[j];
}

void qq_fold_scale_into_rows(float *w, float *bias, int32_t n, int32_t k, const float *s) {
  for (int32_t r = 0; r < n; r++) {
    for (int32_t j = 0; j < k; j++) w[(size_t)r * k + j] /= s[r];
    if (bias) bias[r] /= s[r];
  }
}

void qq_hessian_scale(double *h, int32_t k, const float *s) {
  for (int32_t i = 0; i < k; i++)
    for (int32_t j = 0; j < k; j++) h[(size_t)i * k + j] /= (double)s[i] * (double)s[j];
}
