/* backend.c — the public kernels.h entry points: argument checks, then the backend's op table. */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "backend_internal.h"

const char *qq_act_dtype_name(qq_act_dtype a) {
  switch (a) {
    case QQ_ACT_AUTO: return "auto";
    case QQ_ACT_F32: return "fp32";
    case QQ_ACT_BF16: return "bf16";
    case QQ_ACT_F16: return "fp16";
  }
  return "?";
}

const char *qq_rope_freq_name(qq_rope_freq f) {
  switch (f) {
    case QQ_ROPE_FREQ_EXACT: return "exact";
    case QQ_ROPE_FREQ_BF16: return "bf16";
  }
  return "?";
}

bool qq_rope_freq_parse(const char *s, qq_rope_freq *out) {
  if (s && !strcmp(s, "exact")) *out = QQ_ROPE_FREQ_EXACT;
  else if (s && !strcmp(s, "bf16")) *out = QQ_ROPE_FREQ_BF16;
  else return false;
  return true;
}

bool qq_act_dtype_parse(const char *s, qq_act_dtype *out) {
  static const struct { const char *name; qq_act_dtype a; } names[] = {
      {"auto", QQ_ACT_AUTO}, {"fp32", QQ_ACT_F32}, {"f32", QQ_ACT_F32}, {"bf16", QQ_ACT_BF16},
      {"fp16", QQ_ACT_F16},  {"f16", QQ_ACT_F16},
  };
  for (size_t i = 0; s && i < QQ_ARRAY_LEN(names); i++)
    if (!strcmp(s, names[i].name)) {
      *out = names[i].a;
      return true;
    }
  return false;
}

qq_backend_options qq_backend_options_default(void) {
  qq_backend_options o = {.kind = QQ_DEVICE_AUTO, .n_threads = 0, .act = QQ_ACT_AUTO};
  return o;
}

qq_status qq_backend_create(qq_device_kind kind, int32_t n_threads, qq_backend **out, qq_error *err) {
  qq_backend_options o = qq_backend_options_default();
  o.kind = kind;
  o.n_threads = n_threads;
  return qq_backend_create_opts(&o, out, err);
}

qq_status qq_backend_create_opts(const qq_backend_options *opt, qq_backend **out, qq_error *err) {
  *out = NULL;
  const qq_backend_options o = opt ? *opt : qq_backend_options_default();
  const qq_backend_vtable *vt = NULL;
  qq_device_kind chosen = o.kind;
  if (o.kind == QQ_DEVICE_AUTO) {
#ifdef QQ_HAVE_CUDA
    chosen = qq_cuda_device_count() > 0 ? QQ_DEVICE_CUDA : QQ_DEVICE_CPU;
#else
    chosen = QQ_DEVICE_CPU;
#endif
  }
  if ((unsigned)o.act > (unsigned)QQ_ACT_F16)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "unknown activation dtype %d", (int)o.act);
  if (chosen == QQ_DEVICE_CPU) {
    vt = &qq_cpu_vtable;
  } else if (chosen == QQ_DEVICE_CUDA) {
#ifdef QQ_HAVE_CUDA
    if (qq_cuda_device_count() <= 0)
      return qq_error_set(err, QQ_ERR_UNSUPPORTED, "device cuda requested but no CUDA device is visible");
    vt = &qq_cuda_vtable;
#else
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "device cuda requested but this build has no CUDA backend");
#endif
  } else {
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "unknown device kind %d", (int)o.kind);
  }
  qq_backend *be = calloc(1, sizeof *be);
  if (!be) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory creating backend");
  be->vt = vt;
  be->kind = chosen;
  qq_status st = vt->init(be, &o, err);
  if (st != QQ_OK) {
    free(be);
    return st;
  }
  *out = be;
  return QQ_OK;
}

void qq_backend_free(qq_backend *be) {
  if (!be) return;
  be->vt->destroy(be);
  free(be);
}

qq_device_kind qq_backend_kind(const qq_backend *be) { return be->kind; }
const char *qq_backend_description(const qq_backend *be) { return be->description; }
size_t qq_backend_act_bytes(const qq_backend *be) { return be->act_bytes; }
qq_act_dtype qq_backend_act(const qq_backend *be) { return be->act; }

qq_status qq_backend_alloc(qq_backend *be, size_t n_elems, void **out, qq_error *err) {
  return be->vt->alloc_bytes(be, n_elems * be->act_bytes, out, err);
}
qq_status qq_backend_alloc_bytes(qq_backend *be, size_t bytes, void **out, qq_error *err) {
  return be->vt->alloc_bytes(be, bytes, out, err);
}
void qq_backend_release(qq_backend *be, void *p) {
  if (p) be->vt->release(be, p);
}
qq_status qq_backend_upload_f32(qq_backend *be, const float *host, size_t n, void *dst, qq_error *err) {
  return be->vt->upload_f32(be, host, n, dst, err);
}
qq_status qq_backend_download_f32(qq_backend *be, const void *src, size_t n, float *host, qq_error *err) {
  return be->vt->download_f32(be, src, n, host, err);
}
qq_status qq_backend_sync(qq_backend *be, qq_error *err) { return be->vt->sync(be, err); }
qq_status qq_backend_step_begin(qq_backend *be, const qq_step_desc *d, qq_error *err) {
  if (d && d->graph_key && (d->graph_max_len <= 0 || d->graph_blocks_per_seq <= 0))
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "step: a replayable step needs graph_max_len and graph_blocks_per_seq");
  return be->vt->step_begin ? be->vt->step_begin(be, d, err) : QQ_OK;
}
qq_status qq_backend_step_end(qq_backend *be, bool commit, qq_error *err) {
  return be->vt->step_end ? be->vt->step_end(be, commit, err) : QQ_OK;
}
void qq_backend_graphs_clear(qq_backend *be) {
  if (be && be->vt->graphs_clear) be->vt->graphs_clear(be);
}
bool qq_backend_has_graphs(const qq_backend *be) { return be->vt->has_graphs && be->vt->has_graphs(be); }

qq_status qq_backend_mem_info(qq_backend *be, size_t *free_bytes, size_t *total_bytes, qq_error *err) {
  if (!be->vt->mem_info)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "the %s backend does not report its memory", be->vt->name);
  return be->vt->mem_info(be, free_bytes, total_bytes, err);
}

static qq_status check_desc(const qq_linear_desc *d, qq_error *err) {
  if (d->n <= 0 || d->k <= 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "linear: bad shape [%d, %d]", d->n, d->k);
  if (!d->w) return qq_error_set(err, QQ_ERR_INVALID_ARG, "linear: no weight data");
  switch (d->format) {
    case QQ_WFMT_F32:
    case QQ_WFMT_BF16:
    case QQ_WFMT_F16:
      return QQ_OK;
    case QQ_WFMT_QINT: {
      if (d->bits < 2 || d->bits > 8)
        return qq_error_set(err, QQ_ERR_INVALID_ARG, "linear: %d-bit codes are not supported (2..8)", d->bits);
      if (d->group_size <= 0 || d->n_groups <= 0 || !d->scales)
        return qq_error_set(err, QQ_ERR_INVALID_ARG, "linear: quantized weight needs group_size, n_groups and scales");
      if (!d->g_idx && (int64_t)d->n_groups * d->group_size < d->k)
        return qq_error_set(err, QQ_ERR_INVALID_ARG, "linear: %d groups of %d do not cover k = %d", d->n_groups,
                            d->group_size, d->k);
      const uint8_t *codes = d->w;
      const uint8_t maxc = (uint8_t)((1u << d->bits) - 1u);
      for (size_t i = 0; i < (size_t)d->n * (size_t)d->k; i++)
        if (codes[i] > maxc)
          return qq_error_set(err, QQ_ERR_RANGE, "linear: code %u at index %zu exceeds %d bits", codes[i], i, d->bits);
      if (d->zeros)
        for (size_t i = 0; i < (size_t)d->n * (size_t)d->n_groups; i++)
          if (d->zeros[i] > maxc)
            return qq_error_set(err, QQ_ERR_RANGE, "linear: zero point %u exceeds %d bits", d->zeros[i], d->bits);
      if (d->g_idx)
        for (int32_t c = 0; c < d->k; c++)
          if (d->g_idx[c] < 0 || d->g_idx[c] >= d->n_groups)
            return qq_error_set(err, QQ_ERR_RANGE, "linear: g_idx[%d] = %d outside [0, %d)", c, d->g_idx[c], d->n_groups);
      return QQ_OK;
    }
    case QQ_WFMT_W8A8: {
      if (!d->scales) return qq_error_set(err, QQ_ERR_INVALID_ARG, "linear: W8A8 weight needs per-channel scales");
      /* Any int8 code, -128 included: compressed-tensors' symmetric int8 range is [-128, 127] (its observers
       * scale by absmax / 127.5, so the most negative weight of a row can become -128); the integer paths
       * stay exact with it (kernels/cpu/cpu_internal.h, kernels/cuda/gemm_lt.cu). */
      if (d->act_scale < 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "linear: negative activation scale");
      return QQ_OK;
    }
  }
  return qq_error_set(err, QQ_ERR_INVALID_ARG, "linear: unknown weight format %d", (int)d->format);
}

qq_status qq_linear_create(qq_backend *be, const qq_linear_desc *desc, qq_linear **out, qq_error *err) {
  *out = NULL;
  qq_status st = check_desc(desc, err);
  if (st != QQ_OK) return st;
  qq_linear *lin = calloc(1, sizeof *lin);
  if (!lin) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  lin->be = be;
  lin->format = desc->format;
  lin->n = desc->n;
  lin->k = desc->k;
  lin->has_bias = desc->bias != NULL;
  st = be->vt->linear_create(be, desc, lin, err);
  if (st != QQ_OK) {
    free(lin);
    return st;
  }
  *out = lin;
  return QQ_OK;
}

void qq_linear_free(qq_linear *lin) {
  if (!lin) return;
  lin->be->vt->linear_destroy(lin->be, lin);
  free(lin);
}
int32_t qq_linear_n(const qq_linear *lin) { return lin->n; }
int32_t qq_linear_k(const qq_linear *lin) { return lin->k; }
qq_weight_format qq_linear_format(const qq_linear *lin) { return lin->format; }
size_t qq_linear_bytes(const qq_linear *lin) { return lin->bytes; }
qq_status qq_linear_to_f32(const qq_linear *lin, float *w, float *bias, qq_error *err) {
  return lin->be->vt->linear_to_f32(lin, w, bias, err);
}

qq_status qq_op_matmul(qq_backend *be, const qq_linear *w, const void *x, int32_t m, void *y, qq_error *err) {
  if (m <= 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "matmul: m = %d", m);
  return be->vt->matmul(be, w, x, m, y, err);
}
qq_status qq_op_embed(qq_backend *be, const qq_linear *t, const int32_t *tok, int32_t n, void *out, qq_error *err) {
  for (int32_t i = 0; i < n; i++)
    if (tok[i] < 0 || tok[i] >= t->n)
      return qq_error_set(err, QQ_ERR_RANGE, "embed: token id %d outside [0, %d)", tok[i], t->n);
  return be->vt->embed(be, t, tok, n, out, err);
}
qq_status qq_op_rmsnorm(qq_backend *be, const void *x, const void *w, int32_t rows, int32_t dim, float eps,
                        void *out, qq_error *err) {
  return be->vt->rmsnorm(be, x, w, rows, dim, eps, out, err);
}
qq_status qq_op_add(qq_backend *be, void *acc, const void *x, size_t n, qq_error *err) {
  return be->vt->add(be, acc, x, n, err);
}
qq_status qq_op_silu_mul(qq_backend *be, const void *gate, const void *up, size_t n, void *out, qq_error *err) {
  return be->vt->silu_mul(be, gate, up, n, out, err);
}
qq_status qq_op_rope(qq_backend *be, void *x, const int32_t *pos, int32_t t, int32_t heads, int32_t hd, float theta,
                     qq_rope_freq freq, qq_error *err) {
  if (hd % 2) return qq_error_set(err, QQ_ERR_INVALID_ARG, "rope: odd head_dim %d", hd);
  if (freq != QQ_ROPE_FREQ_EXACT && freq != QQ_ROPE_FREQ_BF16)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "rope: unknown frequency mode %d", (int)freq);
  return be->vt->rope(be, x, pos, t, heads, hd, theta, freq, err);
}
qq_status qq_op_gather_rows(qq_backend *be, const void *x, const int32_t *rows, int32_t n_rows, int32_t width,
                            void *out, qq_error *err) {
  return be->vt->gather_rows(be, x, rows, n_rows, width, out, err);
}
qq_status qq_op_attention(qq_backend *be, const qq_attn_params *p, const qq_attn_seq *seqs, int32_t n_seqs,
                          const void *q, const void *k, const void *v, void *kc, void *vc, void *out, qq_error *err) {
  if (p->n_heads <= 0 || p->n_kv_heads <= 0 || p->n_heads % p->n_kv_heads || p->head_dim <= 0 || p->block_tokens <= 0)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "attention: bad params heads %d kv %d head_dim %d block %d",
                        p->n_heads, p->n_kv_heads, p->head_dim, p->block_tokens);
  return be->vt->attention(be, p, seqs, n_seqs, q, k, v, kc, vc, out, err);
}
qq_status qq_op_kv_copy(qq_backend *be, const qq_attn_params *p, void *kc, void *vc, const int32_t *src,
                        const int32_t *dst, int32_t n_tokens, qq_error *err) {
  return be->vt->kv_copy(be, p, kc, vc, src, dst, n_tokens, err);
}

/* Checks shared by the logit-row reductions: the row list (indices cannot be checked against the
 * buffer's size, which the backend does not know; negative ones can). */
static qq_status check_logit_rows(const char *op, const void *x, int32_t n, const int32_t *rows, int32_t count,
                                  qq_error *err) {
  if (n <= 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "%s: rows of %d logits", op, n);
  if (count < 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "%s: %d rows", op, count);
  if (count > 0 && !x) return qq_error_set(err, QQ_ERR_INVALID_ARG, "%s: no logits buffer", op);
  for (int32_t i = 0; rows && i < count; i++)
    if (rows[i] < 0) return qq_error_set(err, QQ_ERR_RANGE, "%s: entry %d names row %d", op, i, rows[i]);
  return QQ_OK;
}

qq_status qq_op_logits_reduce(qq_backend *be, const void *x, int32_t n, const int32_t *rows, const int32_t *targets,
                              int32_t count, bool want_lse, qq_logits_stats *out, qq_error *err) {
  qq_status st = check_logit_rows("logits_reduce", x, n, rows, count, err);
  if (st != QQ_OK) return st;
  if (count == 0) return QQ_OK;
  if (!out) return qq_error_set(err, QQ_ERR_INVALID_ARG, "logits_reduce: no output array");
  for (int32_t i = 0; targets && i < count; i++)
    if (targets[i] < -1 || targets[i] >= n)
      return qq_error_set(err, QQ_ERR_RANGE, "logits_reduce: target %d of entry %d outside [0, %d)", targets[i], i, n);
  return be->vt->logits_reduce(be, x, n, rows, targets, count, want_lse, out, err);
}

qq_status qq_op_logits_topk(qq_backend *be, const void *x, int32_t n, const int32_t *rows, const float *scales,
                            int32_t count, int32_t k, float *vals, int32_t *ids, double *sums, qq_error *err) {
  qq_status st = check_logit_rows("logits_topk", x, n, rows, count, err);
  if (st != QQ_OK) return st;
  if (k < 1 || k > n || k > QQ_TOPK_MAX)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "logits_topk: k = %d outside [1, min(n = %d, %d)]", k, n, QQ_TOPK_MAX);
  if (count == 0) return QQ_OK;
  if (!vals || !ids) return qq_error_set(err, QQ_ERR_INVALID_ARG, "logits_topk: no output arrays");
  for (int32_t i = 0; scales && i < count; i++)
    if (!(scales[i] > 0.0f && scales[i] <= FLT_MAX))
      return qq_error_set(err, QQ_ERR_INVALID_ARG, "logits_topk: scale %g of entry %d is not positive and finite",
                          (double)scales[i], i);
  return be->vt->logits_topk(be, x, n, rows, scales, count, k, vals, ids, sums, err);
}
