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
    /* Written with comparisons and the 1.5·2^23 rounding trick so that the compiler vectorizes it; the
     * same results as fmaxf / rintf (round half to even) / fminf: NaN is skipped by the max and lands
     * on -127, values of magnitude ≥ 2^22 are clamped either way. */
    if (scale <= 0) {
      float m8[8] = {0, 0, 0, 0, 0, 0, 0, 0}, amax = 0; /* 8 lanes: a max needs no order */
      int32_t c = 0;
      for (; c + 8 <= k; c += 8)
        for (int u = 0; u < 8; u++) {
          const float a = fabsf(xr[c + u]);
          m8[u] = a > m8[u] ? a : m8[u];
        }
      for (; c < k; c++) {
        const float a = fabsf(xr[c]);
        amax = a > amax ? a : amax;
      }
      for (int u = 0; u < 8; u++) amax = m8[u] > amax ? m8[u] : amax;
      scale = amax > 0 ? amax / 127.0f : 1.0f;
    }
    s[i] = scale;
    const float inv = 1.0f / scale;
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    int8_t *qr = q + (size_t)i * k;
    for (int32_t c = 0; c < k; c++) {
      float v = (xr[c] * inv + magic) - magic;
      v = v > -127.0f ? v : -127.0f;
      v = v < 127.0f ? v : 127.0f;
      qr[c] = (int8_t)v;
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

/* ---- logit rows ---- */

void qq_ref_logits_reduce(const float *x, int32_t n, const int32_t *rows, const int32_t *targets, int32_t count,
                          bool want_lse, qq_logits_stats *out) {
  for (int32_t e = 0; e < count; e++) {
    const int32_t row = rows ? rows[e] : e;
    qq_logits_stats *o = &out[e];
    const float *xr = x + (size_t)row * n;
    if (e > 0 && rows && rows[e - 1] == row) {
      *o = out[e - 1]; /* the same row again (several targets in one row): the same statistics */
    } else {
      /* max and argmax: NaN never wins (as fmax, and as a scan keeping the first strictly larger
       * value; a NaN in x[0] stays the argmax, as in qq_sampler) */
      double mx = -INFINITY;
      int32_t best = 0;
      for (int32_t j = 0; j < n; j++) {
        mx = fmax(mx, (double)xr[j]);
        if (xr[j] > xr[best]) best = j;
      }
      o->max = (float)mx;
      o->argmax = best;
      o->pad_ = 0;
      o->lse = NAN;
      if (want_lse) {
        double sum = 0;
        for (int32_t j = 0; j < n; j++) sum += exp((double)xr[j] - mx);
        o->lse = mx + log(sum);
      }
    }
    o->target = targets && targets[e] >= 0 ? xr[targets[e]] : 0.0f;
  }
}

typedef struct ref_cand {
  float v;
  int32_t i;
} ref_cand;
/* a before b: larger value, then lower id */
static inline bool cand_before(ref_cand a, ref_cand b) { return a.v > b.v || (a.v == b.v && a.i < b.i); }
static int cand_cmp(const void *pa, const void *pb) {
  const ref_cand *a = pa, *b = pb;
  return cand_before(*a, *b) ? -1 : cand_before(*b, *a) ? 1 : 0;
}
/* Min-heap on cand_before: h[0] is the candidate every other one comes before. */
static void heap_down(ref_cand *h, int32_t size, int32_t i) {
  for (;;) {
    int32_t l = 2 * i + 1, r = l + 1, w = i;
    if (l < size && cand_before(h[w], h[l])) w = l;
    if (r < size && cand_before(h[w], h[r])) w = r;
    if (w == i) return;
    ref_cand t = h[i];
    h[i] = h[w];
    h[w] = t;
    i = w;
  }
}
static void heap_up(ref_cand *h, int32_t i) {
  while (i > 0) {
    int32_t p = (i - 1) / 2;
    if (!cand_before(h[p], h[i])) return;
    ref_cand t = h[i];
    h[i] = h[p];
    h[p] = t;
    i = p;
  }
}

bool qq_ref_logits_topk(const float *x, int32_t n, const int32_t *rows, const float *scales, int32_t count, int32_t k,
                        float *vals, int32_t *ids, double *sums) {
  ref_cand *h = malloc((size_t)k * sizeof *h);
  if (!h) return false;
  for (int32_t e = 0; e < count; e++) {
    const float *xr = x + (size_t)(rows ? rows[e] : e) * n;
    const float scale = scales ? scales[e] : 1.0f;
    int32_t size = 0;
    for (int32_t j = 0; j < n; j++) {
      float v = xr[j] * scale;
      if (v == 0.0f) v = 0.0f; /* -0.0 ranks as +0.0 */
      const ref_cand c = {v, j};
      if (size < k) {
        h[size] = c;
        heap_up(h, size++);
      } else if (cand_before(c, h[0])) {
        h[0] = c;
        heap_down(h, size, 0);
      }
    }
    qsort(h, (size_t)size, sizeof *h, cand_cmp);
    for (int32_t i = 0; i < k; i++) {
      vals[(size_t)e * k + i] = h[i].v;
      ids[(size_t)e * k + i] = h[i].i;
    }
    if (sums) {
      const double mx = h[0].v;
      double s = 0;
      for (int32_t j = 0; j < n; j++) s += exp((double)(xr[j] * scale) - mx);
      sums[e] = s;
    }
  }
  free(h);
  return true;
}
