/* capture.c — layer-by-layer activations and the statistics of each linear's input. The activations of
 * all samples at the current layer are the only large buffer ([samples][seqlen][hidden] fp32); the
 * layer runs on one sample at a time in a scratch copy. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "calibration.h"

struct qq_calib_acts {
  int32_t n_samples, seqlen, hidden;
  float *x;
};

qq_calib_input qq_calib_input_of(qq_linear_id id) {
  switch (id) {
    case QQ_LIN_Q:
    case QQ_LIN_K:
    case QQ_LIN_V: return QQ_CIN_QKV;
    case QQ_LIN_O: return QQ_CIN_O;
    case QQ_LIN_GATE:
    case QQ_LIN_UP: return QQ_CIN_GATEUP;
    default: return QQ_CIN_DOWN;
  }
}

qq_status qq_calib_acts_create(qq_model *m, const qq_calib_data *d, qq_calib_acts **out, qq_error *err) {
  *out = NULL;
  const int32_t hidden = qq_model_config(m)->hidden_size;
  qq_calib_acts *a = calloc(1, sizeof *a);
  if (!a) return qq_error_set(err, QQ_ERR_NOMEM, "calibration: out of memory");
  a->n_samples = d->n_samples;
  a->seqlen = d->seqlen;
  a->hidden = hidden;
  a->x = malloc(sizeof(float) * (size_t)d->n_samples * d->seqlen * hidden);
  if (!a->x) {
    free(a);
    return qq_error_set(err, QQ_ERR_NOMEM, "calibration: out of memory for %d x %d x %d activations", d->n_samples,
                        d->seqlen, hidden);
  }
  for (int32_t i = 0; i < d->n_samples; i++) {
    qq_status st = qq_model_embed(m, d->tokens + (size_t)i * d->seqlen, d->seqlen,
                                  a->x + (size_t)i * d->seqlen * hidden, err);
    if (st) {
      qq_calib_acts_free(a);
      return st;
    }
  }
  *out = a;
  return QQ_OK;
}

void qq_calib_acts_free(qq_calib_acts *a) {
  if (!a) return;
  free(a->x);
  free(a);
}

size_t qq_calib_acts_bytes(const qq_calib_acts *a) { return sizeof(float) * (size_t)a->n_samples * a->seqlen * a->hidden; }

typedef struct capture_ctx {
  uint32_t inputs;
  bool with_h;
  qq_calib_stats *stats;
  float *syrk;      /* [k][k] float scratch for one sample's XᵀX */
  double *abs_sum[QQ_CIN_COUNT];
  qq_status st;
} capture_ctx;

static void on_capture(void *user, int32_t layer, qq_linear_id lin, const float *x, int32_t n, int32_t in_dim) {
  (void)layer;
  capture_ctx *c = user;
  const qq_calib_input ci = qq_calib_input_of(lin);
  if (!(c->inputs & (1u << ci)) || c->st) return;
  qq_calib_stats *s = &c->stats[ci];
  if (s->k != in_dim) {
    c->st = QQ_ERR_INTERNAL;
    return;
  }
  for (int32_t t = 0; t < n; t++) {
    const float *row = x + (size_t)t * in_dim;
    for (int32_t j = 0; j < in_dim; j++) {
      float v = fabsf(row[j]);
      if (v > s->abs_max[j]) s->abs_max[j] = v;
      c->abs_sum[ci][j] += v;
    }
  }
  s->tokens += n;
  if (c->with_h) {
    /* float XᵀX over one sample (≤ a few thousand tokens) then accumulated in double. */
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, in_dim, n, 1.0f, x, in_dim, 0.0f, c->syrk, in_dim);
    for (int32_t i = 0; i < in_dim; i++) {
      double *hr = s->h + (size_t)i * in_dim;
      const float *sr = c->syrk + (size_t)i * in_dim;
      for (int32_t j = i; j < in_dim; j++) hr[j] += (double)sr[j];
    }
  }
}

void qq_calib_stats_free(qq_calib_stats stats[QQ_CIN_COUNT]) {
  for (int i = 0; i < QQ_CIN_COUNT; i++) {
    free(stats[i].h);
    free(stats[i].abs_max);
    free(stats[i].abs_mean);
    memset(&stats[i], 0, sizeof stats[i]);
  }
}

qq_status qq_calib_layer_stats(qq_model *m, int32_t layer, const qq_calib_acts *a, uint32_t inputs, bool with_h,
                               qq_calib_stats stats[QQ_CIN_COUNT], qq_error *err) {
  const qq_config *cfg = qq_model_config(m);
  const int32_t dims[QQ_CIN_COUNT] = {cfg->hidden_size, cfg->num_heads * cfg->head_dim, cfg->hidden_size,
                                      cfg->intermediate_size};
  memset(stats, 0, sizeof(qq_calib_stats) * QQ_CIN_COUNT);
  capture_ctx c = {.inputs = inputs, .with_h = with_h, .stats = stats};
  int32_t kmax = 0;
  qq_status st = QQ_OK;
  for (int i = 0; i < QQ_CIN_COUNT; i++) {
    if (!(inputs & (1u << i))) continue;
    const int32_t k = dims[i];
    kmax = QQ_MAX(kmax, k);
    stats[i].k = k;
    stats[i].abs_max = calloc((size_t)k, sizeof(float));
    stats[i].abs_mean = calloc((size_t)k, sizeof(float));
    c.abs_sum[i] = calloc((size_t)k, sizeof(double));
    if (with_h) stats[i].h = calloc((size_t)k * k, sizeof(double));
    if (!stats[i].abs_max || !stats[i].abs_mean || !c.abs_sum[i] || (with_h && !stats[i].h)) {
      st = qq_error_set(err, QQ_ERR_NOMEM, "calibration: out of memory for statistics of width %d", k);
      goto done;
    }
  }
  const size_t sample = (size_t)a->seqlen * a->hidden;
  float *xs = malloc(sizeof(float) * sample);
  c.syrk = with_h ? malloc(sizeof(float) * (size_t)kmax * kmax) : NULL;
  if (!xs || (with_h && !c.syrk)) {
    free(xs);
    free(c.syrk);
    st = qq_error_set(err, QQ_ERR_NOMEM, "calibration: out of memory");
    goto done;
  }
  /* The q/k/v input is input_layernorm(x): computed here from the stored activations, so that a request
   * for it alone needs no pass through the layer. */
  float *norm_w = NULL;
  if (inputs & (1u << QQ_CIN_QKV)) {
    norm_w = malloc(sizeof(float) * (size_t)a->hidden);
    if (!norm_w) st = qq_error_set(err, QQ_ERR_NOMEM, "calibration: out of memory");
    else st = qq_model_get_norm(m, layer, QQ_NORM_INPUT, norm_w, err);
  }
  const uint32_t rest = inputs & ~(1u << QQ_CIN_QKV);
  const float eps = (float)cfg->rms_norm_eps;
  for (int32_t i = 0; i < a->n_samples && !st; i++) {
    const float *xi = a->x + i * sample;
    if (norm_w) {
      for (int32_t t = 0; t < a->seqlen; t++) {
        const float *row = xi + (size_t)t * a->hidden;
        float *o = xs + (size_t)t * a->hidden;
        double ss = 0.0;
        for (int32_t j = 0; j < a->hidden; j++) ss += (double)row[j] * row[j];
        const float inv = (float)(1.0 / sqrt(ss / a->hidden + eps));
        for (int32_t j = 0; j < a->hidden; j++) o[j] = row[j] * inv * norm_w[j];
      }
      on_capture(&c, layer, QQ_LIN_Q, xs, a->seqlen, a->hidden);
    }
    if (rest) {
      memcpy(xs, xi, sizeof(float) * sample);
      c.inputs = rest;
      st = qq_model_layer_forward(m, layer, xs, a->seqlen, on_capture, &c, err);
      c.inputs = inputs;
    }
    if (!st && c.st) st = qq_error_set(err, c.st, "calibration: layer %d captured an input of unexpected width", layer);
  }
  free(norm_w);
  free(xs);
  free(c.syrk);
  if (st) goto done;
  for (int i = 0; i < QQ_CIN_COUNT; i++) {
    if (!(inputs & (1u << i))) continue;
    const int32_t k = stats[i].k;
    for (int32_t j = 0; j < k; j++) stats[i].abs_mean[j] = (float)(c.abs_sum[i][j] / (double)stats[i].tokens);
    if (with_h)
      for (int32_t r = 0; r < k; r++)
        for (int32_t q = 0; q < r; q++) stats[i].h[(size_t)r * k + q] = stats[i].h[(size_t)q * k + r];
  }
done:
  for (int i = 0; i < QQ_CIN_COUNT; i++) free(c.abs_sum[i]);
  if (st) qq_calib_stats_free(stats);
  return st;
}

qq_status qq_calib_layer_advance(qq_model *m, int32_t layer, qq_calib_acts *a, qq_error *err) {
  const size_t sample = (size_t)a->seqlen * a->hidden;
  for (int32_t i = 0; i < a->n_samples; i++) {
    qq_status st = qq_model_layer_forward(m, layer, a->x + i * sample, a->seqlen, NULL, NULL, err);
    if (st) return st;
  }
  return QQ_OK;
}

size_t qq_calib_peak_rss(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return (size_t)ru.ru_maxrss * 1024u; /* Linux reports kilobytes */
}
