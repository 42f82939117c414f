/* cpu_backend.c — the CPU backend: fp32 activations in host memory, OpenBLAS sgemm for every matrix
 * product (plain C references in ref.c when built without OpenBLAS). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

#ifdef QQ_HAVE_OPENBLAS
#include <cblas.h>
#endif

/* ---- backend lifecycle and memory ---- */

static qq_status cpu_init(qq_backend *be, const qq_backend_options *opt, qq_error *err) {
  if (opt->act != QQ_ACT_AUTO && opt->act != QQ_ACT_F32)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "the CPU backend computes in fp32 only (asked for %s activations)",
                        qq_act_dtype_name(opt->act));
  be->act = QQ_ACT_F32;
  be->act_bytes = sizeof(float);
  qq_cpu_backend *cb = calloc(1, sizeof *cb);
  if (!cb) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  cb->n_threads = opt->n_threads > 0 ? opt->n_threads : qq_cpu_default_threads();
  be->impl = cb;
#ifdef QQ_HAVE_OPENBLAS
  openblas_set_num_threads(cb->n_threads);
  snprintf(be->description, sizeof be->description, "cpu (OpenBLAS %s, %d threads)", openblas_get_corename(),
           cb->n_threads);
#else
  snprintf(be->description, sizeof be->description, "cpu (reference C, 1 thread)");
#endif
  return QQ_OK;
}

static void cpu_destroy(qq_backend *be) { free(be->impl); }

static qq_status cpu_alloc_bytes(qq_backend *be, size_t bytes, void **out, qq_error *err) {
  size_t rounded = (bytes + 63) & ~(size_t)63;
  *out = aligned_alloc(64, rounded ? rounded : 64);
  if (!*out) return qq_error_set(err, QQ_ERR_NOMEM, "cpu: cannot allocate %zu bytes", bytes);
  return QQ_OK;
}
static void cpu_release(qq_backend *be, void *p) { free(p); }
static qq_status cpu_upload(qq_backend *be, const float *host, size_t n, void *dst, qq_error *err) {
  if (n) memmove(dst, host, n * sizeof(float));
  return QQ_OK;
}
static qq_status cpu_download(qq_backend *be, const void *src, size_t n, float *host, qq_error *err) {
  if (n) memmove(host, src, n * sizeof(float));
  return QQ_OK;
}
static qq_status cpu_sync(qq_backend *be, qq_error *err) { return QQ_OK; }

/* ---- linear weights ---- */

static void cpu_linear_destroy(qq_backend *be, qq_linear *lin) {
  qq_cpu_linear *cl = lin->impl;
  if (!cl) return;
  free(cl->wf);
  free(cl->bias);
  free(cl->codes);
  free(cl->scales);
  free(cl->zeros);
  free(cl->g_idx);
  free(cl);
  lin->impl = NULL;
}

static void *dup_mem(const void *p, size_t bytes) {
  if (!p) return NULL;
  void *q = malloc(bytes ? bytes : 1);
  if (q && bytes) memcpy(q, p, bytes);
  return q;
}

static qq_status cpu_linear_create(qq_backend *be, const qq_linear_desc *d, qq_linear *lin, qq_error *err) {
  const size_t nk = (size_t)d->n * (size_t)d->k;
  qq_cpu_linear *cl = calloc(1, sizeof *cl);
  if (!cl) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  lin->impl = cl;
  cl->wf = aligned_alloc(64, ((nk * sizeof(float)) + 63) & ~(size_t)63);
  if (!cl->wf) goto nomem;
  if (d->bias) {
    cl->bias = dup_mem(d->bias, (size_t)d->n * sizeof(float));
    if (!cl->bias) goto nomem;
  }
  switch (d->format) {
    case QQ_WFMT_F32:
      memcpy(cl->wf, d->w, nk * sizeof(float));
      break;
    case QQ_WFMT_BF16: {
      const uint16_t *p = d->w;
      for (size_t i = 0; i < nk; i++) cl->wf[i] = qq_bf16_to_f32(p[i]);
      break;
    }
    case QQ_WFMT_F16: {
      const uint16_t *p = d->w;
      for (size_t i = 0; i < nk; i++) cl->wf[i] = qq_f16_to_f32(p[i]);
      break;
    }
    case QQ_WFMT_QINT: {
      const size_t ng = (size_t)d->n * (size_t)d->n_groups;
      cl->bits = d->bits;
      cl->group_size = d->group_size;
      cl->n_groups = d->n_groups;
      cl->codes = dup_mem(d->w, nk);
      cl->scales = dup_mem(d->scales, ng * sizeof(float));
      if (!cl->codes || !cl->scales) goto nomem;
      if (d->zeros && !(cl->zeros = dup_mem(d->zeros, ng))) goto nomem;
      if (d->g_idx && !(cl->g_idx = dup_mem(d->g_idx, (size_t)d->k * sizeof(int32_t)))) goto nomem;
      qq_ref_dequantize_qint(d, cl->wf);
      break;
    }
    case QQ_WFMT_W8A8: {
      const int8_t *p = d->w;
      cl->codes = dup_mem(d->w, nk);
      cl->scales = dup_mem(d->scales, (size_t)d->n * sizeof(float));
      if (!cl->codes || !cl->scales) goto nomem;
      cl->act_scale = d->act_scale;
      for (size_t i = 0; i < nk; i++) cl->wf[i] = (float)p[i];
      break;
    }
  }
  lin->bytes = nk * sizeof(float) + (cl->codes ? nk : 0);
  return QQ_OK;
nomem:
  cpu_linear_destroy(be, lin);
  return qq_error_set(err, QQ_ERR_NOMEM, "cpu: out of memory for a [%d, %d] weight", d->n, d->k);
}

static qq_status cpu_linear_to_f32(const qq_linear *lin, float *w, float *bias, qq_error *err) {
  const qq_cpu_linear *cl = lin->impl;
  const size_t nk = (size_t)lin->n * (size_t)lin->k;
  if (lin->format == QQ_WFMT_W8A8) {
    for (int32_t r = 0; r < lin->n; r++)
      for (int32_t c = 0; c < lin->k; c++)
        w[(size_t)r * lin->k + c] = cl->wf[(size_t)r * lin->k + c] * cl->scales[r];
  } else {
    memcpy(w, cl->wf, nk * sizeof(float));
  }
  if (bias) {
    if (cl->bias) memcpy(bias, cl->bias, (size_t)lin->n * sizeof(float));
    else memset(bias, 0, (size_t)lin->n * sizeof(float));
  }
  return QQ_OK;
}

/* ---- matmul ---- */

/* y[m][n] = x[m][k] · w[n][k]ᵀ (beta: 0 overwrite, 1 accumulate). ldw: row stride of w; ldx of x. */
static void sgemm_nt(const float *x, int32_t ldx, const float *w, int32_t ldw, int32_t m, int32_t n, int32_t k,
                     float beta, float *y) {
#ifdef QQ_HAVE_OPENBLAS
  /* One row (decode at batch 1): sgemv streams W once; sgemm would first pack all of W (measured on
   * qwen2-tiny-lm decode: 47 % of the time in sgemm_incopy). */
  if (m == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, 1.0f, w, ldw, x, 1, beta, y, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, ldx, w, ldw, beta, y, n);
#else
  for (int32_t i = 0; i < m; i++)
    for (int32_t j = 0; j < n; j++) {
      float acc = 0;
      for (int32_t c = 0; c < k; c++) acc += x[(size_t)i * ldx + c] * w[(size_t)j * ldw + c];
      y[(size_t)i * n + j] = beta * y[(size_t)i * n + j] + acc;
    }
#endif
}

static qq_status cpu_matmul_w8a8(const qq_linear *lin, const float *x, int32_t m, float *y, qq_error *err) {
  const qq_cpu_linear *cl = lin->impl;
  const int32_t n = lin->n, k = lin->k;
  float *qx = malloc((size_t)m * k * sizeof(float));
  float *sx = malloc((size_t)m * sizeof(float));
  int8_t *q8 = malloc((size_t)m * k);
  float *part = NULL;
  double *acc = NULL;
  const bool chunked = k > QQ_CPU_W8A8_CHUNK;
  if (chunked) {
    part = malloc((size_t)m * n * sizeof(float));
    acc = calloc((size_t)m * n, sizeof(double));
  }
  if (!qx || !sx || !q8 || (chunked && (!part || !acc))) {
    free(qx); free(sx); free(q8); free(part); free(acc);
    return qq_error_set(err, QQ_ERR_NOMEM, "cpu: out of memory in W8A8 matmul");
  }
  qq_ref_quantize_rows_i8(x, m, k, cl->act_scale, q8, sx);
  for (size_t i = 0; i < (size_t)m * k; i++) qx[i] = (float)q8[i];
  if (!chunked) {
    sgemm_nt(qx, k, cl->wf, k, m, n, k, 0.0f, y);
  } else {
    for (int32_t c0 = 0; c0 < k; c0 += QQ_CPU_W8A8_CHUNK) {
      int32_t kc = QQ_MIN(QQ_CPU_W8A8_CHUNK, k - c0);
      sgemm_nt(qx + c0, k, cl->wf + c0, k, m, n, kc, 0.0f, part);
      for (size_t i = 0; i < (size_t)m * n; i++) acc[i] += part[i];
    }
    for (size_t i = 0; i < (size_t)m * n; i++) y[i] = (float)acc[i];
  }
  /* y holds the exact int32 dot products; scale exactly as qq_ref_matmul_w8a8 does. */
  for (int32_t i = 0; i < m; i++)
    for (int32_t j = 0; j < n; j++) {
      float *yy = &y[(size_t)i * n + j];
      *yy = *yy * sx[i] * cl->scales[j] + (cl->bias ? cl->bias[j] : 0.0f);
    }
  free(qx); free(sx); free(q8); free(part); free(acc);
  return QQ_OK;
}

static qq_status cpu_matmul(qq_backend *be, const qq_linear *lin, const void *xv, int32_t m, void *yv, qq_error *err) {
  const qq_cpu_linear *cl = lin->impl;
  const float *x = xv;
  float *y = yv;
  if (lin->format == QQ_WFMT_W8A8) return cpu_matmul_w8a8(lin, x, m, y, err);
  sgemm_nt(x, lin->k, cl->wf, lin->k, m, lin->n, lin->k, 0.0f, y);
  if (cl->bias)
    for (int32_t i = 0; i < m; i++)
      for (int32_t j = 0; j < lin->n; j++) y[(size_t)i * lin->n + j] += cl->bias[j];
  return QQ_OK;
}

/* ---- elementwise and small ops ---- */

static qq_status cpu_embed(qq_backend *be, const qq_linear *t, const int32_t *tok, int32_t n, void *outv, qq_error *err) {
  const qq_cpu_linear *cl = t->impl;
  float *out = outv;
  for (int32_t i = 0; i < n; i++) {
    const float *row = cl->wf + (size_t)tok[i] * t->k;
    float *o = out + (size_t)i * t->k;
    if (t->format == QQ_WFMT_W8A8) {
      for (int32_t c = 0; c < t->k; c++) o[c] = row[c] * cl->scales[tok[i]];
    } else {
      memcpy(o, row, (size_t)t->k * sizeof(float));
    }
  }
  return QQ_OK;
}

static qq_status cpu_rmsnorm(qq_backend *be, const void *xv, const void *wv, int32_t rows, int32_t dim, float eps,
                             void *outv, qq_error *err) {
  const float *x = xv, *w = wv;
  float *out = outv;
  for (int32_t r = 0; r < rows; r++) {
    const float *xr = x + (size_t)r * dim;
    float *o = out + (size_t)r * dim;
    /* HF computes the mean of squares in fp32; accumulate in double for a result at least as good. */
    double ss = 0;
    for (int32_t c = 0; c < dim; c++) ss += (double)xr[c] * xr[c];
    const float inv = (float)(1.0 / sqrt(ss / dim + (double)eps));
    for (int32_t c = 0; c < dim; c++) o[c] = w[c] * (xr[c] * inv);
  }
  return QQ_OK;
}

static qq_status cpu_add(qq_backend *be, void *accv, const void *xv, size_t n, qq_error *err) {
  float *acc = accv;
  const float *x = xv;
  for (size_t i = 0; i < n; i++) acc[i] += x[i];
  return QQ_OK;
}

static qq_status cpu_silu_mul(qq_backend *be, const void *gv, const void *uv, size_t n, void *outv, qq_error *err) {
  const float *g = gv, *u = uv;
  float *out = outv;
  for (size_t i = 0; i < n; i++) {
    float s = g[i] / (1.0f + expf(-g[i]));
    out[i] = s * u[i];
  }
  return QQ_OK;
}

static qq_status cpu_rope(qq_backend *be, void *xv, const int32_t *pos, int32_t t, int32_t heads, int32_t hd,
                          float theta, qq_rope_freq freq, qq_error *err) {
  float *x = xv;
  const int32_t half = hd / 2;
  double *inv_freq = malloc((size_t)half * sizeof(double) + (size_t)hd * sizeof(float));
  if (!inv_freq) return qq_error_set(err, QQ_ERR_NOMEM, "rope: out of memory");
  float *cs = (float *)(inv_freq + half);
  float *sn = cs + half;
  /* inv_freq_j = theta^(-2j/hd), as HF's default rope. EXACT: in double (HF computes in fp32; the
   * difference is below fp32 rounding of the result). BF16 (qq_rope_freq): HF's fp32 expression, then
   * rounded to bf16 with round-to-nearest-even. */
  for (int32_t j = 0; j < half; j++) {
    if (freq == QQ_ROPE_FREQ_BF16)
      inv_freq[j] = qq_bf16_to_f32(qq_f32_to_bf16(1.0f / powf(theta, (float)(2 * j) / (float)hd)));
    else
      inv_freq[j] = pow((double)theta, -2.0 * j / hd);
  }
  for (int32_t i = 0; i < t; i++) {
    /* angle = pos * inv_freq_j, and its cos/sin, in double, then rounded. */
    for (int32_t j = 0; j < half; j++) {
      double ang = (double)pos[i] * inv_freq[j];
      cs[j] = (float)cos(ang);
      sn[j] = (float)sin(ang);
    }
    for (int32_t h = 0; h < heads; h++) {
      float *v = x + ((size_t)i * heads + h) * hd;
      for (int32_t j = 0; j < half; j++) {
        float a = v[j], b = v[j + half];
        v[j] = a * cs[j] - b * sn[j];
        v[j + half] = b * cs[j] + a * sn[j];
      }
    }
  }
  free(inv_freq);
  return QQ_OK;
}

static qq_status cpu_gather_rows(qq_backend *be, const void *xv, const int32_t *rows, int32_t n_rows, int32_t width,
                                 void *outv, qq_error *err) {
  const float *x = xv;
  float *out = outv;
  for (int32_t i = 0; i < n_rows; i++)
    memmove(out + (size_t)i * width, x + (size_t)rows[i] * width, (size_t)width * sizeof(float));
  return QQ_OK;
}

/* ---- attention ---- */

/* v[j] = exp(v[j] - mx) for j < n, returning the sum in double: the softmax's exponentials, written so
 * that the compiler vectorizes them (glibc's expf is a call per element, ~8 % of a prefill). Cody–Waite
 * reduction x = k·ln2 + r, |r| ≤ ln2/2, and Cephes' degree-6 polynomial for e^r (≤ 2 ulp from expf
 * over the softmax's range, checked by test_cpu_ops); arguments below -87 give e^-87 (≈ 1.6e-38)
 * instead of a smaller number or 0, which no softmax sum can notice. */
double qq_cpu_exp_shift_sum(float *restrict v, int32_t n, float mx) {
  const float log2e = 1.44269504088896341f, c1 = 0.693359375f, c2 = -2.12194440e-4f, magic = 12582912.0f;
  for (int32_t j = 0; j < n; j++) {
    float x = v[j] - mx;
    x = x > -87.0f ? x : -87.0f;
    const float k = (x * log2e + magic) - magic; /* round to nearest */
    const float r = (x - k * c1) - k * c2;
    const float z = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * z + r + 1.0f;
    const int32_t e = ((int32_t)k + 127) << 23; /* 2^k, k in [-126, 0] */
    float two_k;
    memcpy(&two_k, &e, sizeof two_k);
    v[j] = p * two_k;
  }
  double sum = 0;
  for (int32_t j = 0; j < n; j++) sum += v[j];
  return sum;
}

static inline size_t kv_slot(const qq_attn_params *p, const int32_t *blocks, int32_t pos, int32_t kvh) {
  int32_t b = blocks[pos / p->block_tokens], off = pos % p->block_tokens;
  return (((size_t)b * p->block_tokens + off) * p->n_kv_heads + kvh) * p->head_dim;
}

static qq_status cpu_attention(qq_backend *be, const qq_attn_params *p, const qq_attn_seq *seqs, int32_t n_seqs,
                               const void *qv, const void *kv, const void *vv, void *kcv, void *vcv, void *outv,
                               qq_error *err) {
  const float *q = qv, *k = kv, *v = vv;
  float *kc = kcv, *vc = vcv, *out = outv;
  const int32_t nh = p->n_heads, nkv = p->n_kv_heads, hd = p->head_dim, group = nh / nkv;
  /* 1. append the new keys/values to the cache */
  for (int32_t s = 0; s < n_seqs; s++) {
    const qq_attn_seq *sq = &seqs[s];
    for (int32_t i = 0; i < sq->n_new; i++)
      for (int32_t h = 0; h < nkv; h++) {
        size_t dst = kv_slot(p, sq->blocks, sq->n_past + i, h);
        size_t src = ((size_t)(sq->row + i) * nkv + h) * hd;
        memcpy(kc + dst, k + src, (size_t)hd * sizeof(float));
        memcpy(vc + dst, v + src, (size_t)hd * sizeof(float));
      }
  }
  /* 2. per sequence and KV head: gather K/V contiguous, then per block of at most QQ_CPU_ATTN_BLOCK new
   * tokens S = Q·Kᵀ·scale (sgemm) over the keys that block can see (causal: the block's last position),
   * softmax, O = S·V (sgemm). The query heads of one GQA group are stacked token-major, row r = i *
   * group + g (token i, query head h * group + g), so that a block of tokens is a block of rows. */
  size_t max_len = 0, max_new = 0;
  for (int32_t s = 0; s < n_seqs; s++) {
    max_len = QQ_MAX(max_len, (size_t)(seqs[s].n_past + seqs[s].n_new));
    max_new = QQ_MAX(max_new, (size_t)seqs[s].n_new);
  }
  const size_t max_block = QQ_MIN(max_new, (size_t)QQ_CPU_ATTN_BLOCK);
  float *kt = malloc(max_len * hd * sizeof(float));
  float *vt = malloc(max_len * hd * sizeof(float));
  float *qs = malloc(max_new * group * hd * sizeof(float));
  float *sc = malloc(max_block * group * max_len * sizeof(float));
  float *os = malloc(max_new * group * hd * sizeof(float));
  if (!kt || !vt || !qs || !sc || !os) {
    free(kt); free(vt); free(qs); free(sc); free(os);
    return qq_error_set(err, QQ_ERR_NOMEM, "attention: out of memory (context %zu)", max_len);
  }
  for (int32_t s = 0; s < n_seqs; s++) {
    const qq_attn_seq *sq = &seqs[s];
    const int32_t L = sq->n_past + sq->n_new, T = sq->n_new;
    for (int32_t h = 0; h < nkv; h++) {
      for (int32_t pos = 0; pos < L; pos++) {
        size_t src = kv_slot(p, sq->blocks, pos, h);
        memcpy(kt + (size_t)pos * hd, kc + src, (size_t)hd * sizeof(float));
        memcpy(vt + (size_t)pos * hd, vc + src, (size_t)hd * sizeof(float));
      }
      /* query heads h * group .. h * group + group - 1 of token i are adjacent in q: one copy per token */
      for (int32_t i = 0; i < T; i++)
        memcpy(qs + (size_t)i * group * hd, q + ((size_t)(sq->row + i) * nh + h * group) * hd,
               (size_t)group * hd * sizeof(float));
      for (int32_t i0 = 0; i0 < T; i0 += QQ_CPU_ATTN_BLOCK) {
        const int32_t nb = QQ_MIN(QQ_CPU_ATTN_BLOCK, T - i0), R = nb * group;
        const int32_t Lb = sq->n_past + i0 + nb; /* keys the block's last token attends to */
        sgemm_nt(qs + (size_t)i0 * group * hd, hd, kt, hd, R, Lb, hd, 0.0f, sc);
        for (int32_t r = 0; r < R; r++) {
          const int32_t last = sq->n_past + i0 + r / group; /* attends to positions 0..last */
          float *row = sc + (size_t)r * Lb;
          float mx = -INFINITY;
          for (int32_t j = 0; j <= last; j++) {
            row[j] *= p->scale;
            mx = row[j] > mx ? row[j] : mx; /* fmaxf without the call: NaN skipped alike */
          }
          const double sum = qq_cpu_exp_shift_sum(row, last + 1, mx);
          const float inv = (float)(1.0 / sum);
          for (int32_t j = 0; j <= last; j++) row[j] *= inv;
          for (int32_t j = last + 1; j < Lb; j++) row[j] = 0.0f;
        }
        float *ob = os + (size_t)i0 * group * hd;
#ifdef QQ_HAVE_OPENBLAS
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, hd, Lb, 1.0f, sc, Lb, vt, hd, 0.0f, ob, hd);
#else
        for (int32_t r = 0; r < R; r++)
          for (int32_t d = 0; d < hd; d++) {
            float acc = 0;
            for (int32_t j = 0; j < Lb; j++) acc += sc[(size_t)r * Lb + j] * vt[(size_t)j * hd + d];
            ob[(size_t)r * hd + d] = acc;
          }
#endif
      }
      for (int32_t i = 0; i < T; i++)
        memcpy(out + ((size_t)(sq->row + i) * nh + h * group) * hd, os + (size_t)i * group * hd,
               (size_t)group * hd * sizeof(float));
    }
  }
  free(kt); free(vt); free(qs); free(sc); free(os);
  return QQ_OK;
}

static qq_status cpu_kv_copy(qq_backend *be, const qq_attn_params *p, void *kcv, void *vcv, const int32_t *src,
                             const int32_t *dst, int32_t n_tokens, qq_error *err) {
  float *kc = kcv, *vc = vcv;
  for (int32_t pos = 0; pos < n_tokens; pos++)
    for (int32_t h = 0; h < p->n_kv_heads; h++) {
      size_t s = kv_slot(p, src, pos, h), d = kv_slot(p, dst, pos, h);
      memcpy(kc + d, kc + s, (size_t)p->head_dim * sizeof(float));
      memcpy(vc + d, vc + s, (size_t)p->head_dim * sizeof(float));
    }
  return QQ_OK;
}

/* ---- logit rows: the references ---- */

static qq_status cpu_logits_reduce(qq_backend *be, const void *x, int32_t n, const int32_t *rows, const int32_t *targets,
                                   int32_t count, bool want_lse, qq_logits_stats *out, qq_error *err) {
  qq_ref_logits_reduce(x, n, rows, targets, count, want_lse, out);
  return QQ_OK;
}

static qq_status cpu_logits_topk(qq_backend *be, const void *x, int32_t n, const int32_t *rows, const float *scales,
                                 int32_t count, int32_t k, float *vals, int32_t *ids, double *sums, qq_error *err) {
  if (!qq_ref_logits_topk(x, n, rows, scales, count, k, vals, ids, sums))
    return qq_error_set(err, QQ_ERR_NOMEM, "logits_topk: out of memory for %d candidates", k);
  return QQ_OK;
}

const qq_backend_vtable qq_cpu_vtable = {
    .name = "cpu",
    .init = cpu_init,
    .destroy = cpu_destroy,
    .alloc_bytes = cpu_alloc_bytes,
    .release = cpu_release,
    .upload_f32 = cpu_upload,
    .download_f32 = cpu_download,
    .sync = cpu_sync,
    .mem_info = NULL,
    .step_begin = NULL,
    .step_end = NULL,
    .graphs_clear = NULL,
    .has_graphs = NULL,
    .linear_create = cpu_linear_create,
    .linear_destroy = cpu_linear_destroy,
    .linear_to_f32 = cpu_linear_to_f32,
    .matmul = cpu_matmul,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .add = cpu_add,
    .silu_mul = cpu_silu_mul,
    .rope = cpu_rope,
    .gather_rows = cpu_gather_rows,
    .attention = cpu_attention,
    .kv_copy = cpu_kv_copy,
    .logits_reduce = cpu_logits_reduce,
    .logits_topk = cpu_logits_topk,
};
