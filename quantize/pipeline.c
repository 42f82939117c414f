/* pipeline.c — whole-model quantization, one decoder layer at a time: statistics of the layer's
 * inputs over the calibration activations, the method's math, the quantized weights written back into
 * the model, and the layer's outputs recomputed with them for the next layer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quantize_internal.h"

const char *qq_method_name(qq_method m) {
  switch (m) {
    case QQ_METHOD_RTN: return "rtn";
    case QQ_METHOD_GPTQ: return "gptq";
    case QQ_METHOD_AWQ: return "awq";
    case QQ_METHOD_SMOOTHQUANT: return "smoothquant";
  }
  return "?";
}

qq_status qq_method_parse(const char *s, qq_method *out, qq_error *err) {
  for (int m = 0; m <= QQ_METHOD_SMOOTHQUANT; m++)
    if (!strcmp(s, qq_method_name((qq_method)m))) {
      *out = (qq_method)m;
      return QQ_OK;
    }
  return qq_error_set(err, QQ_ERR_INVALID_ARG, "unknown method '%s' (rtn, gptq, awq or smoothquant)", s);
}

const char *qq_out_format_name(qq_out_format f) {
  switch (f) {
    case QQ_OUT_AUTO: return "auto";
    case QQ_OUT_AWQ: return "awq-gemm";
    case QQ_OUT_GPTQ: return "gptq";
    case QQ_OUT_CT: return "compressed-tensors";
  }
  return "?";
}

qq_quantize_options qq_quantize_options_default(qq_method m) {
  qq_quantize_options o;
  memset(&o, 0, sizeof o);
  o.method = m;
  o.bits = 4;
  o.group_size = 128;
  o.sym = m == QQ_METHOD_GPTQ;
  o.format = QQ_OUT_AUTO;
  o.gptq = qq_gptq_options_default();
  o.true_sequential = true;
  o.awq = qq_awq_options_default();
  o.sq_alpha = 0.5;
  if (m == QQ_METHOD_SMOOTHQUANT) {
    o.bits = 8;
    o.group_size = -1;
    o.sym = true;
  }
  return o;
}

qq_out_format qq_quantize_resolve_format(const qq_quantize_options *o) {
  if (o->format != QQ_OUT_AUTO) return o->format;
  switch (o->method) {
    case QQ_METHOD_SMOOTHQUANT: return QQ_OUT_CT;
    case QQ_METHOD_GPTQ: return QQ_OUT_GPTQ;
    case QQ_METHOD_AWQ: return o->bits == 4 ? QQ_OUT_AWQ : QQ_OUT_GPTQ;
    case QQ_METHOD_RTN:
      if (o->bits == 8 && o->sym && o->group_size == -1) return QQ_OUT_CT;
      if (o->bits == 4 && !o->sym && o->group_size != -1) return QQ_OUT_AWQ;
      return QQ_OUT_GPTQ;
  }
  return QQ_OUT_GPTQ;
}

static void linear_shape(const qq_config *c, qq_linear_id id, int32_t *n, int32_t *k) {
  const int32_t q_dim = c->num_heads * c->head_dim, kv_dim = c->num_kv_heads * c->head_dim;
  switch (id) {
    case QQ_LIN_Q: *n = q_dim; *k = c->hidden_size; break;
    case QQ_LIN_K:
    case QQ_LIN_V: *n = kv_dim; *k = c->hidden_size; break;
    case QQ_LIN_O: *n = c->hidden_size; *k = q_dim; break;
    case QQ_LIN_GATE:
    case QQ_LIN_UP: *n = c->intermediate_size; *k = c->hidden_size; break;
    default: *n = c->hidden_size; *k = c->intermediate_size; break;
  }
}

qq_status qq_quantize_check(const qq_quantize_options *o, const qq_config *cfg, qq_error *err) {
  const char *mn = qq_method_name(o->method);
  const qq_out_format f = qq_quantize_resolve_format(o);
  if (o->method == QQ_METHOD_SMOOTHQUANT) {
    if (o->bits != 8 || o->group_size != -1 || !o->sym)
      return qq_error_set(err, QQ_ERR_INVALID_ARG,
                          "smoothquant is W8A8: 8-bit symmetric per-channel weights only (got --bits %d, "
                          "--group-size %d%s)", o->bits, o->group_size, o->sym ? "" : ", --asym");
    if (f != QQ_OUT_CT)
      return qq_error_set(err, QQ_ERR_INVALID_ARG, "smoothquant writes compressed-tensors only (got --format %s)",
                          qq_out_format_name(f));
    if (!(o->sq_alpha >= 0.0 && o->sq_alpha <= 1.0))
      return qq_error_set(err, QQ_ERR_INVALID_ARG, "smoothquant --alpha %g outside [0, 1]", o->sq_alpha);
  } else {
    if (o->bits != 3 && o->bits != 4 && o->bits != 8)
      return qq_error_set(err, QQ_ERR_INVALID_ARG, "%s: --bits %d (3, 4 or 8)", mn, o->bits);
    if (o->method == QQ_METHOD_AWQ && o->bits == 8)
      return qq_error_set(err, QQ_ERR_INVALID_ARG, "awq: 8 bits is not an AWQ setting (use 4 or 3, or rtn/gptq for 8)");
  }
  if (o->group_size != -1 && o->group_size != 32 && o->group_size != 64 && o->group_size != 128)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "%s: --group-size %d (128, 64, 32 or -1 for per channel)", mn,
                        o->group_size);
  for (int id = 0; id < QQ_LIN_COUNT; id++) {
    int32_t n, k;
    linear_shape(cfg, (qq_linear_id)id, &n, &k);
    if (o->group_size > 0 && k % o->group_size)
      return qq_error_set(err, QQ_ERR_INVALID_ARG, "%s: --group-size %d does not divide the input width %d of %s",
                          mn, o->group_size, k, qq_linear_id_name((qq_linear_id)id));
    if (f == QQ_OUT_AWQ && n % 8)
      return qq_error_set(err, QQ_ERR_INVALID_ARG, "AutoAWQ layout: %s has %d outputs, not a multiple of 8",
                          qq_linear_id_name((qq_linear_id)id), n);
    if (f == QQ_OUT_GPTQ && (((int64_t)k * o->bits) % 32 || ((int64_t)n * o->bits) % 32))
      return qq_error_set(err, QQ_ERR_INVALID_ARG, "GPTQ layout: %s [%d, %d] at %d bits does not fill 32-bit words",
                          qq_linear_id_name((qq_linear_id)id), n, k, o->bits);
  }
  if (f == QQ_OUT_AWQ && o->bits != 4)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "the AutoAWQ gemm layout holds 4-bit weights only (got %d)", o->bits);
  if (f == QQ_OUT_AWQ && o->gptq.act_order && o->method == QQ_METHOD_GPTQ)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "act-order needs g_idx, which the AutoAWQ layout does not have");
  if (f == QQ_OUT_CT && o->method != QQ_METHOD_SMOOTHQUANT && !(o->bits == 8 && o->sym && o->group_size == -1))
    return qq_error_set(err, QQ_ERR_INVALID_ARG,
                        "compressed-tensors int-quantized output holds 8-bit symmetric per-channel weights only");
  if (o->method != QQ_METHOD_RTN && !o->calib)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "%s needs calibration data (--calib FILE)", mn);
  return QQ_OK;
}

/* ---- per-layer work ------------------------------------------------------------------------------ */

typedef struct layer_ctx {
  qq_model *m;
  const qq_config *cfg;
  const qq_quantize_options *o;
  qq_out_format fmt;
  qq_qparams qp;
  int32_t layer;
  float *w[QQ_LIN_COUNT];
  float *bias[QQ_LIN_COUNT];
  int32_t n[QQ_LIN_COUNT], k[QQ_LIN_COUNT];
  qq_qlinear *out;  /* [7] */
  float *norm_in, *norm_post; /* host copies of the layer's norms (AWQ, SmoothQuant fold into them) */
  qq_layer_report *rep;
} layer_ctx;

static bool cancelled(const qq_quantize_options *o) { return o->cancel && *o->cancel; }

/* Stores a QINT result, puts it into the model, records its error against H. */
static qq_status finish_qint(layer_ctx *c, qq_linear_id id, qq_qweight *q, const float *w_ref, const double *h,
                             qq_error *err) {
  qq_qlinear *ql = &c->out[id];
  ql->q = *q;
  ql->n = c->n[id];
  ql->k = c->k[id];
  ql->bias = c->bias[id];
  c->bias[id] = NULL;
  qq_linear_desc d;
  qq_qweight_desc(&ql->q, ql->bias, &d);
  if (h) {
    float *wq = malloc(sizeof(float) * (size_t)ql->n * ql->k);
    if (!wq) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    qq_qweight_dequant(&ql->q, wq);
    double ref, e = qq_quant_output_error(w_ref, wq, ql->n, ql->k, h, &ref);
    c->rep->rel_err[id] = ref > 0 ? sqrt(e / ref) : 0.0;
    free(wq);
  }
  qq_status st = qq_model_set_linear(c->m, c->layer, id, &d, err);
  if (st) qq_error_prefix(err, "layer %d %s", c->layer, qq_linear_id_name(id));
  return st;
}

static qq_status finish_w8a8(layer_ctx *c, qq_linear_id id, const float *w, const double *h, float act_scale,
                             qq_error *err) {
  qq_qlinear *ql = &c->out[id];
  const int32_t n = c->n[id], k = c->k[id];
  ql->w8a8 = true;
  ql->n = n;
  ql->k = k;
  ql->codes8 = malloc((size_t)n * k);
  ql->scales8 = malloc(sizeof(float) * (size_t)n);
  ql->bias = c->bias[id];
  ql->act_scale = act_scale;
  c->bias[id] = NULL;
  if (!ql->codes8 || !ql->scales8) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  qq_status st = qq_w8a8_quantize(w, n, k, c->qp.scale_dtype, ql->codes8, ql->scales8, err);
  if (st) return st;
  if (h) {
    float *wq = malloc(sizeof(float) * (size_t)n * k);
    if (!wq) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    for (int32_t r = 0; r < n; r++)
      for (int32_t j = 0; j < k; j++) wq[(size_t)r * k + j] = (float)ql->codes8[(size_t)r * k + j] * ql->scales8[r];
    double ref, e = qq_quant_output_error(w, wq, n, k, h, &ref);
    c->rep->rel_err[id] = ref > 0 ? sqrt(e / ref) : 0.0;
    free(wq);
  }
  qq_linear_desc d;
  memset(&d, 0, sizeof d);
  d.format = QQ_WFMT_W8A8;
  d.n = n;
  d.k = k;
  d.w = ql->codes8;
  d.scales = ql->scales8;
  d.act_scale = act_scale;
  d.bias = ql->bias;
  st = qq_model_set_linear(c->m, c->layer, id, &d, err);
  if (st) qq_error_prefix(err, "layer %d %s", c->layer, qq_linear_id_name(id));
  return st;
}

static const qq_linear_id GROUP_LINS[QQ_CIN_COUNT][3] = {
    {QQ_LIN_Q, QQ_LIN_K, QQ_LIN_V}, {QQ_LIN_O, QQ_LIN_COUNT, QQ_LIN_COUNT},
    {QQ_LIN_GATE, QQ_LIN_UP, QQ_LIN_COUNT}, {QQ_LIN_DOWN, QQ_LIN_COUNT, QQ_LIN_COUNT}};

static qq_status run_rtn(layer_ctx *c, qq_error *err) {
  for (int id = 0; id < QQ_LIN_COUNT; id++) {
    qq_qweight q;
    qq_status st = qq_rtn_quantize(c->w[id], c->n[id], c->k[id], &c->qp, &q, err);
    if (!st) st = finish_qint(c, (qq_linear_id)id, &q, c->w[id], NULL, err);
    if (st) return st;
  }
  return QQ_OK;
}

static qq_status gptq_group(layer_ctx *c, int g, qq_calib_stats *s, qq_error *err) {
  for (int i = 0; i < 3 && GROUP_LINS[g][i] != QQ_LIN_COUNT; i++) {
    qq_linear_id id = GROUP_LINS[g][i];
    qq_qweight q;
    qq_status st = qq_gptq_quantize(c->w[id], c->n[id], c->k[id], s->h, &c->qp, &c->o->gptq, &q, err);
    if (st) {
      qq_error_prefix(err, "layer %d %s", c->layer, qq_linear_id_name(id));
      return st;
    }
    if ((st = finish_qint(c, id, &q, c->w[id], s->h, err))) return st;
  }
  return QQ_OK;
}

/* Runs the groups of the layer in order through a staged pass: statistics of group g's input (produced
 * by the groups before it with their quantized weights), quant(c, g, stats) puts group g's weights
 * into the model, then group g's part of the layer runs over every sample. The activations end as the
 * layer's outputs (the last layer skips its final down_proj pass: nothing reads it). */
typedef qq_status (*group_fn)(layer_ctx *c, int g, qq_calib_stats *s, qq_error *err);

static qq_status run_staged(layer_ctx *c, qq_calib_acts *a, int32_t h_samples, group_fn quant, qq_error *err) {
  qq_calib_staged *p;
  qq_status st = qq_calib_staged_begin(c->m, c->layer, a, c->o->stage_bytes, &p, err);
  if (st) return st;
  const bool last = c->layer + 1 == c->cfg->num_layers;
  for (int g = 0; g < QQ_CIN_COUNT && !st; g++) {
    if (cancelled(c->o)) {
      st = qq_error_set(err, QQ_ERR_CANCELLED, "interrupted in layer %d", c->layer);
      break;
    }
    qq_calib_stats s[QQ_CIN_COUNT];
    double t0 = qq_now_sec();
    if ((st = qq_calib_staged_stats(p, (qq_calib_input)g, h_samples, s, err))) break;
    if (s[g].h) c->rep->err_tokens = s[g].h_tokens;
    double t1 = qq_now_sec();
    st = quant(c, g, &s[g], err);
    qq_calib_stats_free(s);
    double t2 = qq_now_sec();
    if (!st && !(last && g == QQ_CIN_DOWN)) st = qq_calib_staged_advance(p, (qq_calib_input)g, err);
    c->rep->t_stats += t1 - t0;
    c->rep->t_quant += t2 - t1;
    c->rep->t_forward += qq_now_sec() - t2;
  }
  qq_calib_staged_end(p);
  return st;
}


static qq_status run_gptq(layer_ctx *c, qq_calib_acts *a, qq_error *err) {
  if (c->o->true_sequential) return run_staged(c, a, -1, gptq_group, err);
  qq_calib_stats s[QQ_CIN_COUNT];
  double t0 = qq_now_sec();
  qq_status st = qq_calib_layer_stats(c->m, c->layer, a, 0xFu, true, s, err);
  if (st) return st;
  c->rep->err_tokens = s[0].h_tokens;
  double t1 = qq_now_sec();
  for (int g = 0; g < QQ_CIN_COUNT && !st; g++) st = gptq_group(c, g, &s[g], err);
  c->rep->t_stats += t1 - t0;
  c->rep->t_quant += qq_now_sec() - t1;
  qq_calib_stats_free(s);
  return st;
}

static qq_dtype norm_dtype(const qq_config *cfg) {
  return !strcmp(cfg->torch_dtype, "float32") ? QQ_DTYPE_F32
         : !strcmp(cfg->torch_dtype, "float16") ? QQ_DTYPE_F16 : QQ_DTYPE_BF16;
}

/* AWQ for one layer: scale searches (q/k/v with input norm, o with v when shapes allow, gate/up with the
 * post-attention norm, down with up), folds, clipping (not for q and k, whose errors the softmax
 * amplifies: AutoAWQ skips them too), RTN of the scaled and clipped weights, grid refinement. */
static qq_status run_awq(layer_ctx *c, const qq_calib_acts *a, float *norm_in, float *norm_post, qq_error *err) {
  qq_calib_stats s[QQ_CIN_COUNT];
  double t0 = qq_now_sec();
  qq_status st = qq_calib_layer_stats(c->m, c->layer, a, 0xFu, true, s, err);
  if (st) return st;
  c->rep->err_tokens = s[0].h_tokens;
  double t1 = qq_now_sec();
  c->rep->t_stats += t1 - t0;
  const qq_dtype ndt = norm_dtype(c->cfg);
  float *sc = malloc(sizeof(float) * (size_t)c->cfg->intermediate_size * 2 + sizeof(float) * c->cfg->hidden_size * 2);
  if (!sc) {
    qq_calib_stats_free(s);
    return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  }
  for (int g = 0; g < QQ_CIN_COUNT && !st; g++) {
    const qq_linear_id *ids = GROUP_LINS[g];
    const float *ws[3];
    int32_t ns[3], nl = 0;
    for (int i = 0; i < 3 && ids[i] != QQ_LIN_COUNT; i++) {
      ws[nl] = c->w[ids[i]];
      ns[nl++] = c->n[ids[i]];
    }
    const int32_t k = s[g].k;
    /* o_proj's input is v_proj's output repeated over the query heads under GQA: scaling it would need
     * v_proj rows to carry several scales, so (as AutoAWQ) only when the shapes match. */
    if (g == QQ_CIN_O && c->n[QQ_LIN_V] != c->k[QQ_LIN_O]) {
      c->rep->awq_alpha[g] = NAN;
      continue;
    }
    double alpha;
    if ((st = qq_awq_search_scale(ws, ns, nl, k, s[g].abs_mean, s[g].h, &c->qp, &c->o->awq, sc, &alpha, err))) break;
    c->rep->awq_alpha[g] = alpha;
    /* Fold 1/s into the op in front (norm, v_proj rows, up_proj rows); s into these columns. */
    if (g == QQ_CIN_QKV) qq_fold_scale_into_norm(norm_in, k, sc, ndt);
    else if (g == QQ_CIN_GATEUP) qq_fold_scale_into_norm(norm_post, k, sc, ndt);
    else if (g == QQ_CIN_O) qq_fold_scale_into_rows(c->w[QQ_LIN_V], c->bias[QQ_LIN_V], c->n[QQ_LIN_V], c->k[QQ_LIN_V], sc);
    else qq_fold_scale_into_rows(c->w[QQ_LIN_UP], c->bias[QQ_LIN_UP], c->n[QQ_LIN_UP], c->k[QQ_LIN_UP], sc);
    for (int i = 0; i < 3 && ids[i] != QQ_LIN_COUNT; i++) qq_fold_scale_into_columns(c->w[ids[i]], c->n[ids[i]], k, sc);
    qq_hessian_scale(s[g].h, k, sc);
  }
  free(sc);
  if (!st) st = qq_model_set_norm(c->m, c->layer, QQ_NORM_INPUT, norm_in, err);
  if (!st) st = qq_model_set_norm(c->m, c->layer, QQ_NORM_POST_ATTN, norm_post, err);
  for (int id = 0; id < QQ_LIN_COUNT && !st; id++) {
    const qq_calib_stats *si = &s[qq_calib_input_of((qq_linear_id)id)];
    const int32_t n = c->n[id], k = c->k[id];
    float *wc = malloc(sizeof(float) * (size_t)n * k);
    if (!wc) {
      st = qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
      break;
    }
    memcpy(wc, c->w[id], sizeof(float) * (size_t)n * k);
    if (c->o->awq.clip && id != QQ_LIN_Q && id != QQ_LIN_K) st = qq_awq_clip(wc, n, k, si->h, &c->qp, &c->o->awq, err);
    qq_qweight q;
    if (!st) st = qq_rtn_quantize(wc, n, k, &c->qp, &q, err);
    /* Grid refinement against the unclipped scaled weights, for q and k too (least squares on their
     * own outputs; unlike clipping, it lowered perplexity there: docs/quality.md). */
    if (!st && c->o->awq.refine_sweeps > 0) {
      st = qq_awq_refine_grid(c->w[id], si->h, &c->qp, c->o->awq.refine_sweeps, &q, err);
      if (st) qq_qweight_free(&q);
    }
    free(wc);
    /* Error of the scaled weights against the scaled inputs' H: the same as in the original space. */
    if (!st) st = finish_qint(c, (qq_linear_id)id, &q, c->w[id], si->h, err);
  }
  c->rep->t_quant += qq_now_sec() - t1;
  qq_calib_stats_free(s);
  return st;
}

/* SmoothQuant, group by group (run_staged): q/k/v and gate/up are smoothed by s_j = max|X_j|^α /
 * max|W_j|^(1−α) folded into the RMSNorm in front, then every linear gets int8 per-channel weights.
 * The statistics of o, gate/up and down come from the outputs of the already-quantized groups. */
static qq_status sq_group(layer_ctx *c, int g, qq_calib_stats *s, qq_error *err) {
  const int32_t hd = c->cfg->hidden_size;
  const qq_linear_id *ids = GROUP_LINS[g];
  qq_status st = QQ_OK;
  if (g == QQ_CIN_QKV || g == QQ_CIN_GATEUP) {
    const float *ws[3];
    int32_t ns[3], nl = 0;
    for (int i = 0; i < 3 && ids[i] != QQ_LIN_COUNT; i++) {
      ws[nl] = c->w[ids[i]];
      ns[nl++] = c->n[ids[i]];
    }
    float *sc = malloc(sizeof(float) * (size_t)hd);
    if (!sc) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    float *norm = g == QQ_CIN_QKV ? c->norm_in : c->norm_post;
    if (!(st = qq_smoothquant_scales(ws, ns, nl, hd, s->abs_max, c->o->sq_alpha, sc, err))) {
      qq_fold_scale_into_norm(norm, hd, sc, norm_dtype(c->cfg));
      for (int i = 0; i < nl; i++) qq_fold_scale_into_columns(c->w[ids[i]], c->n[ids[i]], hd, sc);
      if (s->h) qq_hessian_scale(s->h, hd, sc);
      for (int32_t j = 0; j < hd; j++) s->abs_max[j] /= sc[j];
      st = qq_model_set_norm(c->m, c->layer, g == QQ_CIN_QKV ? QQ_NORM_INPUT : QQ_NORM_POST_ATTN, norm, err);
    }
    free(sc);
  }
  for (int i = 0; i < 3 && ids[i] != QQ_LIN_COUNT && !st; i++) {
    float act = 0.0f;
    if (c->o->sq_static_act) {
      float mx = 0.0f;
      for (int32_t j = 0; j < s->k; j++) mx = fmaxf(mx, s->abs_max[j]);
      act = mx > 0.0f ? mx / 127.0f : 1.0f;
    }
    st = finish_w8a8(c, ids[i], c->w[ids[i]], s->h, act, err);
  }
  return st;
}

void qq_quantized_free(qq_quantized *q) {
  if (!q) return;
  for (int32_t l = 0; q->lin && l < q->cfg.n_layers; l++)
    for (int id = 0; id < QQ_LIN_COUNT; id++) {
      qq_qlinear *ql = &q->lin[l][id];
      qq_qweight_free(&ql->q);
      free(ql->codes8);
      free(ql->scales8);
      free(ql->bias);
    }
  for (int32_t l = 0; l < q->cfg.n_layers; l++) {
    if (q->norm_in) free(q->norm_in[l]);
    if (q->norm_post) free(q->norm_post[l]);
  }
  free(q->norm_in);
  free(q->norm_post);
  free(q->lin);
  free(q->rep);
  free(q);
}

int32_t qq_quantized_layers(const qq_quantized *q) { return q->cfg.n_layers; }
const qq_layer_report *qq_quantized_layer_report(const qq_quantized *q, int32_t layer) {
  return layer >= 0 && layer < q->cfg.n_layers ? &q->rep[layer] : NULL;
}
size_t qq_quantized_peak_rss(const qq_quantized *q) { return q->peak_rss; }

qq_status qq_quantize_model(qq_model *m, const qq_quantize_options *o, qq_quantized **out, qq_error *err) {
  *out = NULL;
  const qq_config *cfg = qq_model_config(m);
  qq_status st = qq_quantize_check(o, cfg, err);
  if (st) return st;
  const double t_start = qq_now_sec();
  qq_quantized *q = calloc(1, sizeof *q);
  if (!q) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  q->opt = *o;
  q->opt.calib = NULL;
  q->opt.progress = NULL;
  q->opt.progress_user = NULL;
  q->opt.cancel = NULL;
  q->format = qq_quantize_resolve_format(o);
  q->cfg.n_layers = cfg->num_layers;
  q->cfg.hidden = cfg->hidden_size;
  q->cfg.intermediate = cfg->intermediate_size;
  q->cfg.q_dim = cfg->num_heads * cfg->head_dim;
  q->cfg.kv_dim = cfg->num_kv_heads * cfg->head_dim;
  q->cfg.task = cfg->task;
  if (o->calib) {
    memcpy(q->calib_sha256, o->calib->sha256, sizeof q->calib_sha256);
    q->calib_samples = o->calib->n_samples;
    q->calib_seqlen = o->calib->seqlen;
  }
  const int32_t L = cfg->num_layers, hd = cfg->hidden_size;
  q->lin = calloc((size_t)L, sizeof *q->lin);
  q->rep = calloc((size_t)L, sizeof *q->rep);
  q->norm_in = calloc((size_t)L, sizeof(float *));
  q->norm_post = calloc((size_t)L, sizeof(float *));
  if (!q->lin || !q->rep || !q->norm_in || !q->norm_post) {
    qq_quantized_free(q);
    return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  }
  layer_ctx c;
  memset(&c, 0, sizeof c);
  c.m = m;
  c.cfg = cfg;
  c.o = o;
  c.fmt = q->format;
  c.qp = qq_qparams_default();
  c.qp.bits = o->bits;
  c.qp.group_size = o->group_size;
  c.qp.sym = o->sym;
  /* Scales are rounded to what the layout stores: F16 for AutoAWQ / GPTQ, the model dtype for
   * compressed-tensors; GPTQ v1 cannot store a zero point of 0. */
  c.qp.scale_dtype = q->format == QQ_OUT_CT ? (norm_dtype(cfg) == QQ_DTYPE_F32   ? QQ_SCALE_F32
                                               : norm_dtype(cfg) == QQ_DTYPE_F16 ? QQ_SCALE_F16
                                                                                 : QQ_SCALE_BF16)
                                            : QQ_SCALE_F16;
  c.qp.zero_min = q->format == QQ_OUT_GPTQ && !o->sym ? 1 : 0;
  const bool needs_acts = o->method != QQ_METHOD_RTN;
  qq_calib_acts *acts = NULL;
  if (needs_acts && (st = qq_calib_acts_create(m, o->calib, &acts, err))) goto fail;
  for (int32_t l = 0; l < L; l++) {
    if (cancelled(o)) {
      st = qq_error_set(err, QQ_ERR_CANCELLED, "interrupted before layer %d of %d", l, L);
      goto fail;
    }
    c.layer = l;
    c.out = q->lin[l];
    c.rep = &q->rep[l];
    for (int id = 0; id < QQ_LIN_COUNT; id++) c.rep->rel_err[id] = NAN;
    for (int g = 0; g < QQ_CIN_COUNT; g++) c.rep->awq_alpha[g] = NAN;
    if (o->progress) o->progress(o->progress_user, l, L, needs_acts ? "stats" : "quantize");
    for (int id = 0; id < QQ_LIN_COUNT; id++) {
      linear_shape(cfg, (qq_linear_id)id, &c.n[id], &c.k[id]);
      c.w[id] = malloc(sizeof(float) * (size_t)c.n[id] * c.k[id]);
      c.bias[id] = malloc(sizeof(float) * (size_t)c.n[id]);
      if (!c.w[id] || !c.bias[id]) {
        st = qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
        goto fail;
      }
      bool has_bias = (id <= QQ_LIN_V && cfg->qkv_bias) || (id == QQ_LIN_O && cfg->o_bias) ||
                      (id >= QQ_LIN_GATE && cfg->mlp_bias);
      if ((st = qq_model_get_linear_f32(m, l, (qq_linear_id)id, c.w[id], has_bias ? c.bias[id] : NULL, err))) goto fail;
      if (!has_bias) {
        free(c.bias[id]);
        c.bias[id] = NULL;
      }
    }
    if (o->method == QQ_METHOD_AWQ || o->method == QQ_METHOD_SMOOTHQUANT) {
      q->norm_in[l] = malloc(sizeof(float) * (size_t)hd);
      q->norm_post[l] = malloc(sizeof(float) * (size_t)hd);
      if (!q->norm_in[l] || !q->norm_post[l]) {
        st = qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
        goto fail;
      }
      if ((st = qq_model_get_norm(m, l, QQ_NORM_INPUT, q->norm_in[l], err)) ||
          (st = qq_model_get_norm(m, l, QQ_NORM_POST_ATTN, q->norm_post[l], err)))
        goto fail;
    }
    c.norm_in = q->norm_in[l];
    c.norm_post = q->norm_post[l];
    switch (o->method) {
      case QQ_METHOD_RTN: {
        double t0 = qq_now_sec();
        st = run_rtn(&c, err);
        c.rep->t_quant = qq_now_sec() - t0;
        break;
      }
      case QQ_METHOD_GPTQ: st = run_gptq(&c, acts, err); break;
      case QQ_METHOD_AWQ: st = run_awq(&c, acts, q->norm_in[l], q->norm_post[l], err); break;
      case QQ_METHOD_SMOOTHQUANT: st = run_staged(&c, acts, QQ_SQ_ERROR_SAMPLES, sq_group, err); break;
    }
    for (int id = 0; id < QQ_LIN_COUNT; id++) {
      free(c.w[id]);
      free(c.bias[id]);
      c.w[id] = c.bias[id] = NULL;
    }
    if (st) goto fail;
    /* The staged methods have already turned the activations into this layer's outputs. */
    const bool staged = o->method == QQ_METHOD_SMOOTHQUANT || (o->method == QQ_METHOD_GPTQ && o->true_sequential);
    if (needs_acts && !staged && l + 1 < L) {
      if (cancelled(o)) {
        st = qq_error_set(err, QQ_ERR_CANCELLED, "interrupted after quantizing layer %d of %d", l, L);
        goto fail;
      }
      if (o->progress) o->progress(o->progress_user, l, L, "forward");
      double t0 = qq_now_sec();
      if ((st = qq_calib_layer_advance(m, l, acts, err))) goto fail;
      c.rep->t_forward = qq_now_sec() - t0;
    }
  }
  q->peak_rss = qq_calib_peak_rss();
  q->seconds = qq_now_sec() - t_start;
  qq_calib_acts_free(acts);
  *out = q;
  return QQ_OK;
fail:
  for (int id = 0; id < QQ_LIN_COUNT; id++) {
    free(c.w[id]);
    free(c.bias[id]);
  }
  qq_calib_acts_free(acts);
  qq_quantized_free(q);
  return st;
}
