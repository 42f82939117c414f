/* qformat.c — unpacking AutoAWQ "gemm", GPTQ and compressed-tensors "int-quantized" linear tensors into
 * the canonical qq_linear_desc (docs/formats.md describes every layout bit by bit). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "qformat.h"

/* AutoAWQ's interleaving: nibble i of a packed word holds column 8·word + AWQ_ORDER[i]. */
static const int32_t AWQ_ORDER[8] = {0, 2, 4, 6, 1, 3, 5, 7};

/* One heap block holding every array a descriptor points to. */
typedef struct qblock {
  uint8_t *codes;
  uint8_t *zeros;
  float *scales;
  int32_t *g_idx;
} qblock;

static size_t align8(size_t x) { return (x + 7u) & ~(size_t)7u; }

static void *qblock_alloc(int32_t n, int32_t k, int32_t G, bool zeros, bool g_idx, qblock *b) {
  size_t nk = (size_t)n * (size_t)k, ng = (size_t)n * (size_t)G;
  size_t o_zeros = align8(nk), o_scales = o_zeros + align8(zeros ? ng : 0);
  size_t o_gidx = o_scales + align8(ng * sizeof(float));
  size_t total = o_gidx + (g_idx ? (size_t)k * sizeof(int32_t) : 0);
  uint8_t *p = malloc(total ? total : 1);
  if (!p) return NULL;
  b->codes = p;
  b->zeros = zeros ? p + o_zeros : NULL;
  b->scales = (float *)(void *)(p + o_scales);
  b->g_idx = g_idx ? (int32_t *)(void *)(p + o_gidx) : NULL;
  return p;
}

void qq_qformat_free_owned(void *owned) { free(owned); }

static const qq_tensor_info *need(qq_qformat_find_fn find, void *ctx, const char *prefix, const char *suffix,
                                  qq_error *err) {
  char name[512];
  snprintf(name, sizeof name, "%s.%s", prefix, suffix);
  const qq_tensor_info *t = find(ctx, name);
  if (!t) qq_error_set(err, QQ_ERR_NOT_FOUND, "quantized checkpoint: tensor %s is missing", name);
  return t;
}

static qq_status check_shape(const qq_tensor_info *t, qq_dtype dt, int32_t ndim, int64_t d0, int64_t d1,
                             qq_error *err) {
  if (t->dtype != dt)
    return qq_error_set(err, QQ_ERR_FORMAT, "%s (%s): dtype %s, expected %s", t->name, t->file ? t->file : "",
                        qq_dtype_name(t->dtype), qq_dtype_name(dt));
  if (t->ndim != ndim || t->shape[0] != d0 || (ndim > 1 && t->shape[1] != d1))
    return qq_error_set(err, QQ_ERR_FORMAT, "%s (%s): shape [%lld%s%lld], expected [%lld, %lld]", t->name,
                        t->file ? t->file : "", (long long)t->shape[0], t->ndim > 1 ? ", " : "",
                        t->ndim > 1 ? (long long)t->shape[1] : 0LL, (long long)d0, (long long)d1);
  return QQ_OK;
}

static bool is_float(qq_dtype dt) { return dt == QQ_DTYPE_F32 || dt == QQ_DTYPE_F16 || dt == QQ_DTYPE_BF16; }

static float elem_f32(const qq_tensor_info *t, size_t i) {
  switch (t->dtype) {
    case QQ_DTYPE_F16: return qq_f16_to_f32(((const uint16_t *)t->data)[i]);
    case QQ_DTYPE_BF16: return qq_bf16_to_f32(((const uint16_t *)t->data)[i]);
    default: return ((const float *)t->data)[i];
  }
}

/* Scales tensor [G][n] (AWQ / GPTQ) → scales [n][G]. */
static qq_status load_scales_gn(const qq_tensor_info *t, int32_t G, int32_t n, float *scales, qq_error *err) {
  if (!is_float(t->dtype))
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: dtype %s, expected F16 (or BF16/F32)", t->name, qq_dtype_name(t->dtype));
  qq_status st = check_shape(t, t->dtype, 2, G, n, err);
  if (st) return st;
  for (int32_t g = 0; g < G; g++)
    for (int32_t r = 0; r < n; r++) scales[(size_t)r * G + g] = elem_f32(t, (size_t)g * n + r);
  return QQ_OK;
}

static uint32_t bits_get(const uint32_t *words, int64_t i, int32_t bits) {
  const int64_t bit = i * bits, wi = bit >> 5;
  const int32_t sh = (int32_t)(bit & 31);
  uint32_t v = words[wi] >> sh;
  if (sh + bits > 32) v |= words[wi + 1] << (32 - sh);
  return v & ((1u << bits) - 1u);
}

static qq_status unpack_awq(const qq_quant_config *q, const char *prefix, qq_qformat_find_fn find, void *ctx,
                            int32_t n, int32_t k, qq_linear_desc *out, void **owned, qq_error *err) {
  if (q->bits != 4)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "AWQ gemm checkpoints with %d bits: only 4 bits exist", q->bits);
  if (n % 8) return qq_error_set(err, QQ_ERR_FORMAT, "%s: AWQ output width %d is not a multiple of 8", prefix, n);
  const qq_tensor_info *qw = need(find, ctx, prefix, "qweight", err), *qz, *sc;
  if (!qw || !(qz = need(find, ctx, prefix, "qzeros", err)) || !(sc = need(find, ctx, prefix, "scales", err)))
    return err ? err->status : QQ_ERR_NOT_FOUND;
  const int32_t nw = n / 8;
  qq_status st = check_shape(qw, QQ_DTYPE_I32, 2, k, nw, err);
  if (st) return st;
  if (qz->ndim != 2 || qz->shape[0] <= 0 || k % qz->shape[0])
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: %d groups do not divide the input width %d", qz->name,
                        qz->ndim == 2 ? (int)qz->shape[0] : -1, k);
  const int32_t G = (int32_t)qz->shape[0];
  if ((st = check_shape(qz, QQ_DTYPE_I32, 2, G, nw, err))) return st;
  if (q->group_size > 0 && G != k / q->group_size)
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: %d groups, but config group_size %d over %d inputs means %d",
                        qz->name, G, q->group_size, k, k / q->group_size);
  qblock b;
  void *blk = qblock_alloc(n, k, G, true, false, &b);
  if (!blk) return qq_error_set(err, QQ_ERR_NOMEM, "%s: out of memory", prefix);
  if ((st = load_scales_gn(sc, G, n, b.scales, err))) {
    free(blk);
    return st;
  }
  const uint32_t *w32 = qw->data, *z32 = qz->data;
  for (int32_t c = 0; c < k; c++)
    for (int32_t j = 0; j < nw; j++) {
      uint32_t word = w32[(size_t)c * nw + j];
      for (int32_t i = 0; i < 8; i++) b.codes[(size_t)(8 * j + AWQ_ORDER[i]) * k + c] = (uint8_t)((word >> (4 * i)) & 15u);
    }
  for (int32_t g = 0; g < G; g++)
    for (int32_t j = 0; j < nw; j++) {
      uint32_t word = z32[(size_t)g * nw + j];
      for (int32_t i = 0; i < 8; i++) b.zeros[(size_t)(8 * j + AWQ_ORDER[i]) * G + g] = (uint8_t)((word >> (4 * i)) & 15u);
    }
  memset(out, 0, sizeof *out);
  out->format = QQ_WFMT_QINT;
  out->n = n;
  out->k = k;
  out->w = b.codes;
  out->bits = 4;
  out->group_size = k / G;
  out->n_groups = G;
  out->scales = b.scales;
  out->zeros = b.zeros;
  *owned = blk;
  return QQ_OK;
}

/* gptqmodel writes "checkpoint_format": "gptq_v2" when zeros are stored without the minus one. */
static bool gptq_is_v2(const qq_quant_config *q) {
  if (!q->raw_json) return false;
  cJSON *j = cJSON_Parse(q->raw_json);
  if (!j) return false;
  const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "checkpoint_format");
  bool v2 = cJSON_IsString(f) && !strcmp(f->valuestring, "gptq_v2");
  cJSON_Delete(j);
  return v2;
}

static qq_status unpack_gptq(const qq_quant_config *q, const char *prefix, qq_qformat_find_fn find, void *ctx,
                             int32_t n, int32_t k, qq_linear_desc *out, void **owned, qq_error *err) {
  const int32_t b = q->bits;
  if (b != 2 && b != 3 && b != 4 && b != 8)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "GPTQ checkpoints with %d bits (2, 3, 4 or 8 exist)", b);
  if (((int64_t)k * b) % 32 || ((int64_t)n * b) % 32)
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: %d-bit GPTQ weight [%d, %d] cannot be packed in 32-bit words",
                        prefix, b, n, k);
  const qq_tensor_info *qw = need(find, ctx, prefix, "qweight", err), *qz, *sc;
  if (!qw || !(qz = need(find, ctx, prefix, "qzeros", err)) || !(sc = need(find, ctx, prefix, "scales", err)))
    return err ? err->status : QQ_ERR_NOT_FOUND;
  char gname[512];
  snprintf(gname, sizeof gname, "%s.g_idx", prefix);
  const qq_tensor_info *gi = find(ctx, gname);
  const int32_t kw = k * b / 32, nw = n * b / 32;
  qq_status st = check_shape(qw, QQ_DTYPE_I32, 2, kw, n, err);
  if (st) return st;
  if (qz->ndim != 2 || qz->shape[0] <= 0 || qz->shape[0] > k)
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: bad shape for %d inputs", qz->name, k);
  const int32_t G = (int32_t)qz->shape[0];
  if ((st = check_shape(qz, QQ_DTYPE_I32, 2, G, nw, err))) return st;
  if (gi && (st = check_shape(gi, QQ_DTYPE_I32, 1, k, 0, err))) return st;
  if (!gi && k % G)
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: %d groups do not divide %d inputs and there is no g_idx", qz->name, G, k);
  const int32_t gs = (k + G - 1) / G;
  /* g_idx equal to c / group_size is dropped (the kernels' fast path). */
  bool trivial = true;
  if (gi) {
    const int32_t *g = gi->data;
    for (int32_t c = 0; c < k; c++) {
      if (g[c] < 0 || g[c] >= G)
        return qq_error_set(err, QQ_ERR_RANGE, "%s: g_idx[%d] = %d outside [0, %d)", gi->name, c, g[c], G);
      if (g[c] != c / gs) trivial = false;
    }
  }
  qblock bl;
  void *blk = qblock_alloc(n, k, G, true, !trivial, &bl);
  uint32_t *col = malloc(sizeof(uint32_t) * (size_t)(kw > nw ? kw : nw));
  if (!blk || !col) {
    free(blk);
    free(col);
    return qq_error_set(err, QQ_ERR_NOMEM, "%s: out of memory", prefix);
  }
  if ((st = load_scales_gn(sc, G, n, bl.scales, err))) goto fail;
  const uint32_t *w32 = qw->data, *z32 = qz->data;
  for (int32_t r = 0; r < n; r++) {
    for (int32_t i = 0; i < kw; i++) col[i] = w32[(size_t)i * n + r];
    for (int32_t c = 0; c < k; c++) bl.codes[(size_t)r * k + c] = (uint8_t)bits_get(col, c, b);
  }
  const bool v2 = gptq_is_v2(q);
  const uint32_t maxq = (1u << b) - 1u;
  for (int32_t g = 0; g < G; g++) {
    const uint32_t *zr = z32 + (size_t)g * nw;
    for (int32_t r = 0; r < n; r++) {
      uint32_t z = bits_get(zr, r, b) + (v2 ? 0u : 1u);
      if (z > maxq) {
        st = qq_error_set(err, QQ_ERR_UNSUPPORTED,
                          "%s: group %d column %d stores %u, i.e. zero point %u with GPTQ v1's minus-one convention, "
                          "which does not fit %d bits (re-save with checkpoint_format gptq_v2)",
                          qz->name, g, r, z - 1u, z, b);
        goto fail;
      }
      bl.zeros[(size_t)r * G + g] = (uint8_t)z;
    }
  }
  if (!trivial) memcpy(bl.g_idx, gi->data, sizeof(int32_t) * (size_t)k);
  free(col);
  memset(out, 0, sizeof *out);
  out->format = QQ_WFMT_QINT;
  out->n = n;
  out->k = k;
  out->w = bl.codes;
  out->bits = b;
  out->group_size = gs;
  out->n_groups = G;
  out->scales = bl.scales;
  out->zeros = bl.zeros;
  out->g_idx = bl.g_idx;
  *owned = blk;
  return QQ_OK;
fail:
  free(blk);
  free(col);
  return st;
}

static qq_status unpack_ct(const qq_quant_config *q, const char *prefix, const qq_tensor_info *wt,
                           qq_qformat_find_fn find, void *ctx, int32_t n, int32_t k, qq_linear_desc *out,
                           void **owned, qq_error *err) {
  qq_status st = check_shape(wt, QQ_DTYPE_I8, 2, n, k, err);
  if (st) return st;
  const qq_tensor_info *ws = need(find, ctx, prefix, "weight_scale", err);
  if (!ws) return err ? err->status : QQ_ERR_NOT_FOUND;
  if (!is_float(ws->dtype))
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: dtype %s, expected a float type", ws->name, qq_dtype_name(ws->dtype));
  int32_t G = 1;
  if (ws->ndim == 2 && ws->shape[0] == n && ws->shape[1] >= 1 && k % ws->shape[1] == 0) G = (int32_t)ws->shape[1];
  else if (!(ws->ndim == 1 && ws->shape[0] == n))
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: shape must be [%d, 1], [%d] or [%d, groups]", ws->name, n, n, n);
  char zname[512];
  snprintf(zname, sizeof zname, "%s.weight_zero_point", prefix);
  const qq_tensor_info *zp = find(ctx, zname);
  if (zp) {
    for (int64_t i = 0; i < zp->numel; i++) {
      bool nz = zp->dtype == QQ_DTYPE_I8 || zp->dtype == QQ_DTYPE_U8 ? ((const uint8_t *)zp->data)[i] != 0
                : zp->dtype == QQ_DTYPE_I32 ? ((const int32_t *)zp->data)[i] != 0
                : is_float(zp->dtype) ? elem_f32(zp, (size_t)i) != 0.0f : true;
      if (nz)
        return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: asymmetric int8 weights are not supported", zp->name);
    }
  }
  const int8_t *src = wt->data;
  if (q->method == QQ_QUANT_W8A8) {
    if (G != 1)
      return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: W8A8 with group-wise weight scales is not supported", ws->name);
    size_t nk = (size_t)n * k;
    uint8_t *blk = malloc(align8(nk) + sizeof(float) * (size_t)n);
    if (!blk) return qq_error_set(err, QQ_ERR_NOMEM, "%s: out of memory", prefix);
    float *scales = (float *)(void *)(blk + align8(nk));
    memcpy(blk, src, nk);
    for (int32_t r = 0; r < n; r++) scales[r] = elem_f32(ws, (size_t)r);
    memset(out, 0, sizeof *out);
    out->format = QQ_WFMT_W8A8;
    out->n = n;
    out->k = k;
    out->w = blk;
    out->scales = scales;
    if (!q->act_dynamic) {
      char iname[512];
      snprintf(iname, sizeof iname, "%s.input_scale", prefix);
      const qq_tensor_info *is = find(ctx, iname);
      if (!is) {
        free(blk);
        return qq_error_set(err, QQ_ERR_NOT_FOUND, "static W8A8 checkpoint: tensor %s is missing", iname);
      }
      if (!is_float(is->dtype) || is->numel != 1) {
        free(blk);
        return qq_error_set(err, QQ_ERR_FORMAT, "%s: expected one float (per-tensor static scale)", is->name);
      }
      out->act_scale = elem_f32(is, 0);
    }
    *owned = blk;
    return QQ_OK;
  }
  /* Weight-only int8 (W8A16): signed codes become uint8 with zero point 128. */
  qblock b;
  void *blk = qblock_alloc(n, k, G, true, false, &b);
  if (!blk) return qq_error_set(err, QQ_ERR_NOMEM, "%s: out of memory", prefix);
  for (size_t i = 0; i < (size_t)n * k; i++) b.codes[i] = (uint8_t)((int32_t)src[i] + 128);
  for (size_t i = 0; i < (size_t)n * G; i++) {
    b.zeros[i] = 128;
    b.scales[i] = elem_f32(ws, i);
  }
  memset(out, 0, sizeof *out);
  out->format = QQ_WFMT_QINT;
  out->n = n;
  out->k = k;
  out->w = b.codes;
  out->bits = 8;
  out->group_size = k / G;
  out->n_groups = G;
  out->scales = b.scales;
  out->zeros = b.zeros;
  *owned = blk;
  return QQ_OK;
}

qq_status qq_qformat_unpack_linear(const qq_quant_config *q, const char *prefix, qq_qformat_find_fn find,
                                   void *ctx, int32_t n, int32_t k, qq_linear_desc *out, void **owned,
                                   qq_error *err) {
  *owned = NULL;
  if (n <= 0 || k <= 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "%s: bad shape [%d, %d]", prefix, n, k);
  char name[512];
  snprintf(name, sizeof name, "%s.qweight", prefix);
  if (find(ctx, name)) {
    if (q->method == QQ_QUANT_AWQ) return unpack_awq(q, prefix, find, ctx, n, k, out, owned, err);
    if (q->method == QQ_QUANT_GPTQ) return unpack_gptq(q, prefix, find, ctx, n, k, out, owned, err);
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: packed qweight in a checkpoint whose quantization_config is not AWQ/GPTQ",
                        name);
  }
  snprintf(name, sizeof name, "%s.weight", prefix);
  const qq_tensor_info *wt = find(ctx, name);
  if (wt && wt->dtype == QQ_DTYPE_I8) return unpack_ct(q, prefix, wt, find, ctx, n, k, out, owned, err);
  if (wt && is_float(wt->dtype)) {
    /* A linear left unquantized (e.g. listed in modules_to_not_convert / ignore). */
    qq_status st = check_shape(wt, wt->dtype, 2, n, k, err);
    if (st) return st;
    memset(out, 0, sizeof *out);
    out->format = wt->dtype == QQ_DTYPE_F32 ? QQ_WFMT_F32 : wt->dtype == QQ_DTYPE_BF16 ? QQ_WFMT_BF16 : QQ_WFMT_F16;
    out->n = n;
    out->k = k;
    out->w = wt->data;
    return QQ_OK;
  }
  snprintf(name, sizeof name, "%s.weight_packed", prefix);
  if (find(ctx, name))
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: compressed-tensors pack-quantized layout is not supported", name);
  return qq_error_set(err, QQ_ERR_NOT_FOUND, "quantized checkpoint: neither %s.qweight nor %s.weight exists", prefix, prefix);
}

static const qq_tensor_info *find_in_weights(void *ctx, const char *name) {
  return qq_weights_find((const qq_weights *)ctx, name);
}

qq_status qq_qformat_load_linear(const qq_config *cfg, const qq_weights *w, int32_t layer, qq_linear_id id,
                                 qq_linear_desc *out, void **owned, qq_error *err) {
  const int32_t q_dim = cfg->num_heads * cfg->head_dim, kv_dim = cfg->num_kv_heads * cfg->head_dim;
  int32_t n, k;
  switch (id) {
    case QQ_LIN_Q: n = q_dim; k = cfg->hidden_size; break;
    case QQ_LIN_K:
    case QQ_LIN_V: n = kv_dim; k = cfg->hidden_size; break;
    case QQ_LIN_O: n = cfg->hidden_size; k = q_dim; break;
    case QQ_LIN_GATE:
    case QQ_LIN_UP: n = cfg->intermediate_size; k = cfg->hidden_size; break;
    case QQ_LIN_DOWN: n = cfg->hidden_size; k = cfg->intermediate_size; break;
    default: return qq_error_set(err, QQ_ERR_INVALID_ARG, "unknown linear id %d", (int)id);
  }
  /* HF module names (qq_linear_tensor_name without ".weight"; spelled out here so that this file
   * depends on the checkpoint reader only). */
  static const char *const names[QQ_LIN_COUNT] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                  "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                                  "mlp.down_proj"};
  char name[256];
  snprintf(name, sizeof name, "model.layers.%d.%s", layer, names[id]);
  return qq_qformat_unpack_linear(&cfg->quant, name, find_in_weights, (void *)w, n, k, out, owned, err);
}
