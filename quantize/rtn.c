/* rtn.c — round-to-nearest quantization and the canonical quantized weight (qq_qweight). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quantize.h"

float qq_scale_round(float s, qq_scale_dtype dt) {
  switch (dt) {
    case QQ_SCALE_F16: return qq_f16_to_f32(qq_f32_to_f16(s));
    case QQ_SCALE_BF16: return qq_bf16_to_f32(qq_f32_to_bf16(s));
    default: return s;
  }
}

qq_qparams qq_qparams_default(void) {
  qq_qparams p = {.bits = 4, .group_size = 128, .sym = false, .scale_dtype = QQ_SCALE_F32, .zero_min = 0};
  return p;
}

qq_status qq_qparams_check(const qq_qparams *p, int32_t k, qq_error *err) {
  if (p->bits < 2 || p->bits > 8)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "bits %d not in 2..8", p->bits);
  if (p->group_size != -1 && (p->group_size <= 0 || k % p->group_size != 0))
    return qq_error_set(err, QQ_ERR_INVALID_ARG,
                        "group size %d does not divide the input width %d (use a divisor or -1)", p->group_size, k);
  if (p->zero_min < 0 || p->zero_min >= (1 << p->bits))
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "zero_min %d out of range for %d bits", p->zero_min, p->bits);
  return QQ_OK;
}

qq_status qq_qweight_alloc(qq_qweight *q, int32_t n, int32_t k, const qq_qparams *p, bool with_g_idx,
                           qq_error *err) {
  memset(q, 0, sizeof *q);
  qq_status st = qq_qparams_check(p, k, err);
  if (st) return st;
  int32_t gs = p->group_size == -1 ? k : p->group_size;
  q->n = n;
  q->k = k;
  q->bits = p->bits;
  q->group_size = gs;
  q->n_groups = k / gs;
  q->sym = p->sym;
  q->codes = malloc((size_t)n * (size_t)k);
  q->scales = malloc(sizeof(float) * (size_t)n * (size_t)q->n_groups);
  q->zeros = malloc((size_t)n * (size_t)q->n_groups);
  if (with_g_idx) q->g_idx = malloc(sizeof(int32_t) * (size_t)k);
  if (!q->codes || !q->scales || !q->zeros || (with_g_idx && !q->g_idx)) {
    qq_qweight_free(q);
    return qq_error_set(err, QQ_ERR_NOMEM, "quantized weight [%d][%d]: out of memory", n, k);
  }
  return QQ_OK;
}

void qq_qweight_free(qq_qweight *q) {
  if (!q) return;
  free(q->codes);
  free(q->scales);
  free(q->zeros);
  free(q->g_idx);
  q->codes = NULL;
  q->scales = NULL;
  q->zeros = NULL;
  q->g_idx = NULL;
}

void qq_qweight_dequant(const qq_qweight *q, float *w) {
  for (int32_t r = 0; r < q->n; r++) {
    const uint8_t *c = q->codes + (size_t)r * q->k;
    const float *s = q->scales + (size_t)r * q->n_groups;
    const uint8_t *z = q->zeros + (size_t)r * q->n_groups;
    float *o = w + (size_t)r * q->k;
    for (int32_t j = 0; j < q->k; j++) {
      int32_t g = q->g_idx ? q->g_idx[j] : j / q->group_size;
      o[j] = (float)((int32_t)c[j] - (int32_t)z[g]) * s[g];
    }
  }
}

void qq_qweight_desc(const qq_qweight *q, const float *bias, qq_linear_desc *out) {
  memset(out, 0, sizeof *out);
  out->format = QQ_WFMT_QINT;
  out->n = q->n;
  out->k = q->k;
  out->w = q->codes;
  out->bits = q->bits;
  out->group_size = q->group_size;
  out->n_groups = q->n_groups;
  out->scales = q->scales;
  out->zeros = q->zeros;
  out->g_idx = q->g_idx;
  out->bias = bias;
}

/* The grid RTN puts on the range [lo, hi] (lo ≤ 0 ≤ hi). */
static void grid_for_range(const qq_qparams *p, float lo, float hi, float *scale, uint8_t *zero) {
  const int32_t maxq = (1 << p->bits) - 1;
  if (p->sym) {
    float m = fmaxf(-lo, hi);
    float s = m > 0.0f ? 2.0f * m / (float)maxq : 1.0f;
    s = qq_scale_round(s, p->scale_dtype);
    *scale = s > 0.0f ? s : 1.0f;
    *zero = (uint8_t)(1 << (p->bits - 1));
    return;
  }
  float s = hi > lo ? (hi - lo) / (float)maxq : 1.0f;
  s = qq_scale_round(s, p->scale_dtype);
  if (!(s > 0.0f)) s = 1.0f;
  float z = nearbyintf(-lo / s);
  if (z < (float)p->zero_min) z = (float)p->zero_min;
  if (z > (float)maxq) z = (float)maxq;
  *scale = s;
  *zero = (uint8_t)z;
}

static void group_range(const float *x, int32_t len, int32_t stride, float *lo_out, float *hi_out) {
  float lo = 0.0f, hi = 0.0f;
  for (int32_t i = 0; i < len; i++) {
    float v = x[(size_t)i * (size_t)stride];
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  *lo_out = lo;
  *hi_out = hi;
}

void qq_rtn_group_params(const qq_qparams *p, const float *x, int32_t len, int32_t stride, float *scale,
                         uint8_t *zero) {
  float lo, hi;
  group_range(x, len, stride, &lo, &hi);
  grid_for_range(p, lo, hi, scale, zero);
}

qq_range_search qq_range_search_default(void) {
  qq_range_search r = {.grid = 100, .max_shrink = 0.8, .norm = 2.4};
  return r;
}

/* |e|^norm for the range search, vectorizable (no division, no call): 2^(norm·log2 e). log2 from the
 * exponent bits and the mantissa m, brought into [√½, √2), by a degree-6 least-squares polynomial in
 * m − 1 (2.5e-6 absolute); 2^y as 2^round(y) (exponent bits) times the Taylor series of 2^f to f⁵,
 * |f| ≤ ½ (3e-6 relative). Values below 1e-30 count 0. */
static inline float pow_norm(float e, float norm) {
  const float a = e > 1e-30f ? e : 1.0f;
  uint32_t b;
  memcpy(&b, &a, sizeof b);
  float ex = (float)((int32_t)(b >> 23) - 127);
  b = (b & 0x007FFFFFu) | 0x3F800000u;
  float m;
  memcpy(&m, &b, sizeof m);
  const bool big = m > 1.41421356f;
  m = big ? 0.5f * m : m;
  ex = big ? ex + 1.0f : ex;
  const float t = m - 1.0f;
  const float l2 =
      ex + t * (1.44271577f + t * (-0.721122539f + t * (0.479324359f + t * (-0.367703982f + t * (0.322085496f +
                                                                                                t * -0.205298295f)))));
  float y = norm * l2;
  y = y < -126.0f ? -126.0f : (y > 126.0f ? 126.0f : y);
  const float magic = 12582912.0f, yr = (y + magic) - magic;
  const float f = (y - yr) * 0.69314718f;
  const float pf = 1.0f + f * (1.0f + f * (0.5f + f * (1.0f / 6 + f * (1.0f / 24 + f * (1.0f / 120)))));
  const uint32_t pb = (uint32_t)((int32_t)yr + 127) << 23;
  float p2;
  memcpy(&p2, &pb, sizeof p2);
  return e > 1e-30f ? p2 * pf : 0.0f;
}

/* |Q(x) − x|^norm on the grid (s, z), x / s taken as x · (1/s) (a search only ranks candidates). Rounding
 * by adding and subtracting 1.5·2^23 is round-half-to-even as nearbyintf for |x / s| < 2^22; beyond, it
 * keeps the sign and a magnitude over 2^22, which the clamp to [0, maxq] handles as it should (the
 * search's scales keep |x / s| below maxq / (2·(1 − max_shrink)) anyway). */
static inline float range_err1(float xv, float s, float inv_s, float z, float maxq, float norm) {
  const float magic = 12582912.0f;
  const float v = xv * inv_s;
  float q = ((v + magic) - magic) + z;
  q = q < 0.0f ? 0.0f : (q > maxq ? maxq : q);
  return pow_norm(fabsf((q - z) * s - xv), norm);
}

/* Σ over the group, in eight lanes of partial sums so that the loop vectorizes. The terms are not
 * negative: the sum stops, returning at least `bound`, once 32-value chunks have reached it (the
 * candidate cannot win). */
static float range_err(const float *x, int32_t len, float s, float z, float maxq, float norm, float bound) {
  const float inv_s = 1.0f / s;
  float acc[8] = {0};
  int32_t j = 0;
  while (j + 8 <= len) {
    const int32_t end = QQ_MIN(len - len % 8, j + 32);
    for (; j < end; j += 8)
      for (int l = 0; l < 8; l++) acc[l] += range_err1(x[j + l], s, inv_s, z, maxq, norm);
    float t = 0.0f;
    for (int l = 0; l < 8; l++) t += acc[l];
    if (t >= bound) return t;
  }
  for (; j < len; j++) acc[0] += range_err1(x[j], s, inv_s, z, maxq, norm);
  float t = 0.0f;
  for (int l = 0; l < 8; l++) t += acc[l];
  return t;
}

void qq_mse_group_params(const qq_qparams *p, const qq_range_search *rs, const float *x, int32_t len, float *scale,
                         uint8_t *zero) {
  float lo, hi;
  group_range(x, len, 1, &lo, &hi);
  grid_for_range(p, lo, hi, scale, zero);
  if (!(hi > lo) || rs->grid <= 0) return;
  const float maxq = (float)((1 << p->bits) - 1), norm = (float)rs->norm;
  float best = range_err(x, len, *scale, (float)*zero, maxq, norm, INFINITY);
  const int32_t steps = (int32_t)(rs->max_shrink * rs->grid);
  for (int32_t i = 1; i < steps; i++) {
    const float sh = 1.0f - (float)i / (float)rs->grid;
    float s;
    uint8_t z;
    grid_for_range(p, sh * lo, sh * hi, &s, &z);
    const float e = range_err(x, len, s, (float)z, maxq, norm, best);
    if (e < best) {
      best = e;
      *scale = s;
      *zero = z;
    }
  }
}

uint8_t qq_rtn_code(float x, float scale, uint8_t zero, int32_t bits) {
  const float maxq = (float)((1 << bits) - 1);
  float q = nearbyintf(x / scale) + (float)zero;
  q = q < 0.0f ? 0.0f : (q > maxq ? maxq : q);
  return (uint8_t)q;
}

qq_status qq_rtn_quantize(const float *w, int32_t n, int32_t k, const qq_qparams *p, qq_qweight *q,
                          qq_error *err) {
  qq_status st = qq_qweight_alloc(q, n, k, p, false, err);
  if (st) return st;
  const int32_t gs = q->group_size;
  for (int32_t r = 0; r < n; r++) {
    const float *row = w + (size_t)r * k;
    for (int32_t g = 0; g < q->n_groups; g++) {
      float s;
      uint8_t z;
      qq_rtn_group_params(p, row + (size_t)g * gs, gs, 1, &s, &z);
      q->scales[(size_t)r * q->n_groups + g] = s;
      q->zeros[(size_t)r * q->n_groups + g] = z;
      for (int32_t j = g * gs; j < (g + 1) * gs; j++) q->codes[(size_t)r * k + j] = qq_rtn_code(row[j], s, z, p->bits);
    }
  }
  return QQ_OK;
}

qq_status qq_w8a8_quantize(const float *w, int32_t n, int32_t k, qq_scale_dtype scale_dtype, int8_t *codes,
                           float *scales, qq_error *err) {
  if (n <= 0 || k <= 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "W8A8: bad shape [%d][%d]", n, k);
  for (int32_t r = 0; r < n; r++) {
    const float *row = w + (size_t)r * k;
    float m = 0.0f;
    for (int32_t j = 0; j < k; j++) m = fmaxf(m, fabsf(row[j]));
    float s = m > 0.0f ? qq_scale_round(m / 127.0f, scale_dtype) : 1.0f;
    if (!(s > 0.0f)) s = 1.0f;
    scales[r] = s;
    for (int32_t j = 0; j < k; j++) {
      float v = nearbyintf(row[j] / s);
      v = v < -127.0f ? -127.0f : (v > 127.0f ? 127.0f : v);
      codes[(size_t)r * k + j] = (int8_t)v;
    }
  }
  return QQ_OK;
}
