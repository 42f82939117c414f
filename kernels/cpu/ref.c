/* ref.c — plain C reference implementations (the specification of the ops). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

void qq_ref_matmul_f32(const float *x, const float *w, const float *bias, int32_t m, int32_t n, int32_t k, float *y) {
  for (int32_t i = 0; i < m; i++)
    for (int32_t j = 0; j < n; j++) {
      double acc = bias ? bias[j] : 0.0;
      const float *xr = x + (size_t)i * k, *wr = w + (size_t)j * k;
      for (int32_t c = 0; c < k; c++) acc += (double)xr[c] * wr[c];
      y[(size_t)i * n + j] = (float)acc;
    }
}

void qq_ref_quantize_rows_i8(const float *x, int32_t m, int32_t k, float act_scale, int8_t *q, float *s) {
  for (int32_t i = 0; i < m; i++) {
    const float *xr = x + (size_t)i * k;
    float scale = act_scale;
    if (scale <= 0) {
      float amax = 0;
      for (int32_t c = 0; c < k; c++) amax = fmaxf(amax, fabsf(xr[c]));
      scale = amax > 0 ? amax / 127.0f : 1.0f;
    }
    s[i] = scale;
    const float inv = 1.0f / scale;
    for (int32_t c = 0; c < k; c++) {
      float v = rintf(xr[c] * inv);
      v = fminf(127.0f, fmaxf(-127.0f, v));
      q[(size_t)i * k + c] = (int8_t)v;
    }
  }
}

void qq_ref_matmul_w8a8(const float *x, const int8_t *wq, const float *w_scales, float act_scale, const float *bias,
                        int32_t m, int32_t n, int32_t k, float *y) {
  int8_t *qx = malloc((size_t)k);
  if (!qx) return;
  float sx;
  for (int32_t i = 0; i < m; i++) {
    qq_ref_quantize_rows_i8(x + (size_t)i * k, 1, k, act_scale, qx, &sx);
    for (int32_t j = 0; j < n; j++) {
      int64_t acc = 0;
      const int8_t *wr = wq + (size_t)j * k;
      for (int32_t c = 0; c < k; c++) acc += (int32_t)qx[c] * (int32_t)wr[c];
      y[(size_t)i * n + j] = (float)acc * sx * w_scales[j] + (bias ? bias[j] : 0.0f);
    }
  }
  free(qx);
}

void qq_ref_dequantize_qint(const qq_linear_desc *d, float *w) {
  const uint8_t *codes = d->w;
  const int32_t zsym = 1 << (d->bits - 1);
  for (int32_t r = 0; r < d->n; r++)
    for (int32_t c = 0; c < d->k; c++) {
      int32_t g = d->g_idx ? d->g_idx[c] : c / d->group_size;
      size_t gi = (size_t)r * d->n_groups + g;
      int32_t z = d->zeros ? d->zeros[gi] : zsym;
      w[(size_t)r * d->k + c] = (float)((int32_t)codes[(size_t)r * d->k + c] - z) * d->scales[gi];
    }
}
