/* capture.c — layer-by-layer activations and the statistics of each linear's input. The activations of
 * all samples at the current layer are the only large buffer ([samples][seqlen][hidden] fp32); the
 * layer runs on one sample at a time in a scratch copy. */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
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
  bool with_h;      /* H allocated; h_now: this sample adds to it */
  bool h_now;
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
  float *restrict amax = s->abs_max;
  double *restrict asum = c->abs_sum[ci];
  for (int32_t t = 0; t < n; t++) {
    const float *restrict row = x + (size_t)t * in_dim;
    for (int32_t j = 0; j < in_dim; j++) { /* vectorized: selects, no branches */
      const float v = fabsf(row[j]);
      amax[j] = v > amax[j] ? v : amax[j];
      asum[j] += v;
    }
  }
  s->tokens += n;
  if (c->with_h && c->h_now) {
    s->h_tokens += n;
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

static void host_rmsnorm(const float *x, int32_t rows, int32_t dim, const float *w, float eps, float *out) {
  /* As the CPU backend's rmsnorm: mean of squares in double, w · (x · inv). */
  for (int32_t t = 0; t < rows; t++) {
    const float *row = x + (size_t)t * dim;
    float *o = out + (size_t)t * dim;
    double ss = 0.0;
    for (int32_t j = 0; j < dim; j++) ss += (double)row[j] * row[j];
    const float inv = (float)(1.0 / sqrt(ss / dim + eps));
    for (int32_t j = 0; j < dim; j++) o[j] = row[j] * inv * w[j];
  }
}

static int32_t input_width(const qq_config *cfg, int i) {
  const int32_t dims[QQ_CIN_COUNT] = {cfg->hidden_size, cfg->num_heads * cfg->head_dim, cfg->hidden_size,
                                      cfg->intermediate_size};
  return dims[i];
}

/* Allocates stats[i] for every input bit set in `inputs` (the others zeroed) and the capture context. */
static qq_status capture_begin(qq_model *m, uint32_t inputs, bool with_h, qq_calib_stats stats[QQ_CIN_COUNT],
                               capture_ctx *c, qq_error *err) {
  const qq_config *cfg = qq_model_config(m);
  memset(stats, 0, sizeof(qq_calib_stats) * QQ_CIN_COUNT);
  memset(c, 0, sizeof *c);
  c->inputs = inputs;
  c->with_h = with_h;
  c->h_now = with_h;
  c->stats = stats;
  int32_t kmax = 0;
  qq_status st = QQ_OK;
  for (int i = 0; i < QQ_CIN_COUNT && !st; i++) {
    if (!(inputs & (1u << i))) continue;
    const int32_t k = input_width(cfg, i);
    kmax = QQ_MAX(kmax, k);
    stats[i].k = k;
    stats[i].abs_max = calloc((size_t)k, sizeof(float));
    stats[i].abs_mean = calloc((size_t)k, sizeof(float));
    c->abs_sum[i] = calloc((size_t)k, sizeof(double));
    if (with_h) stats[i].h = calloc((size_t)k * k, sizeof(double));
    if (!stats[i].abs_max || !stats[i].abs_mean || !c->abs_sum[i] || (with_h && !stats[i].h))
      st = qq_error_set(err, QQ_ERR_NOMEM, "calibration: out of memory for statistics of width %d", k);
  }
  if (!st && with_h && !(c->syrk = malloc(sizeof(float) * (size_t)kmax * kmax)))
    st = qq_error_set(err, QQ_ERR_NOMEM, "calibration: out of memory");
  if (st) {
    for (int i = 0; i < QQ_CIN_COUNT; i++) free(c->abs_sum[i]);
    free(c->syrk);
    qq_calib_stats_free(stats);
  }
  return st;
}

/* Finishes the statistics (mean, the lower triangle of H) when st is QQ_OK, frees them otherwise. */
static qq_status capture_end(capture_ctx *c, qq_status st) {
  qq_calib_stats *stats = c->stats;
  for (int i = 0; i < QQ_CIN_COUNT && !st; i++) {
    if (!(c->inputs & (1u << i))) continue;
    const int32_t k = stats[i].k;
    for (int32_t j = 0; j < k; j++) stats[i].abs_mean[j] = (float)(c->abs_sum[i][j] / (double)stats[i].tokens);
    if (c->with_h)
      for (int32_t r = 0; r < k; r++)
        for (int32_t q = 0; q < r; q++) stats[i].h[(size_t)r * k + q] = stats[i].h[(size_t)q * k + r];
  }
  for (int i = 0; i < QQ_CIN_COUNT; i++) free(c->abs_sum[i]);
  free(c->syrk);
  if (st) qq_calib_stats_free(stats);
  return st;
}

qq_status qq_calib_layer_stats(qq_model *m, int32_t layer, const qq_calib_acts *a, uint32_t inputs, bool with_h,
                               qq_calib_stats stats[QQ_CIN_COUNT], qq_error *err) {
  capture_ctx c;
  qq_status st = capture_begin(m, inputs, with_h, stats, &c, err);
  if (st) return st;
  const qq_config *cfg = qq_model_config(m);
  const int32_t T = a->seqlen, hid = a->hidden, q_dim = cfg->num_heads * cfg->head_dim;
  const size_t sample = (size_t)T * hid;
  /* The layer runs as its four parts (qq_model_layer_part, on any backend), each linear's input taken
   * between them: q/k/v's is input_layernorm(x) and gate/up's post_attention_layernorm(x + o_proj(attn)),
   * both computed here on the host as the CPU backend computes them; o_proj's is the attention output,
   * down_proj's the SiLU product. */
  const bool want_o = inputs & (1u << QQ_CIN_O), want_gu = inputs & (1u << QQ_CIN_GATEUP),
             want_down = inputs & (1u << QQ_CIN_DOWN);
  const bool run_layer = want_o || want_gu || want_down;
  float *xs = malloc(sizeof(float) * sample), *tmp = malloc(sizeof(float) * sample);
  float *attn = run_layer ? malloc(sizeof(float) * (size_t)T * q_dim) : NULL;
  float *act = want_down ? malloc(sizeof(float) * (size_t)T * cfg->intermediate_size) : NULL;
  float *norm_in = malloc(sizeof(float) * (size_t)hid), *norm_post = malloc(sizeof(float) * (size_t)hid);
  if (!xs || !tmp || (run_layer && !attn) || (want_down && !act) || !norm_in || !norm_post) {
    st = qq_error_set(err, QQ_ERR_NOMEM, "calibration: out of memory");
    goto done;
  }
  if ((st = qq_model_get_norm(m, layer, QQ_NORM_INPUT, norm_in, err)) ||
      (st = qq_model_get_norm(m, layer, QQ_NORM_POST_ATTN, norm_post, err)))
    goto done;
  const float eps = (float)cfg->rms_norm_eps;
  for (int32_t i = 0; i < a->n_samples && !st; i++) {
    const float *xi = a->x + i * sample;
    if (inputs & (1u << QQ_CIN_QKV)) {
      host_rmsnorm(xi, T, hid, norm_in, eps, tmp);
      on_capture(&c, layer, QQ_LIN_Q, tmp, T, hid);
    }
    if (run_layer) {
      memcpy(xs, xi, sizeof(float) * sample);
      if ((st = qq_model_layer_part(m, layer, QQ_PART_ATTN, xs, attn, T, err))) break;
      if (want_o) on_capture(&c, layer, QQ_LIN_O, attn, T, q_dim);
      if (want_gu || want_down) {
        if ((st = qq_model_layer_part(m, layer, QQ_PART_O, xs, attn, T, err))) break;
        if (want_gu) {
          host_rmsnorm(xs, T, hid, norm_post, eps, tmp);
          on_capture(&c, layer, QQ_LIN_GATE, tmp, T, hid);
        }
        if (want_down) {
          if ((st = qq_model_layer_part(m, layer, QQ_PART_MLP_ACT, xs, act, T, err))) break;
          on_capture(&c, layer, QQ_LIN_DOWN, act, T, cfg->intermediate_size);
        }
      }
    }
    if (!st && c.st) st = qq_error_set(err, c.st, "calibration: layer %d captured an input of unexpected width", layer);
  }
done:
  free(xs);
  free(tmp);
  free(attn);
  free(act);
  free(norm_in);
  free(norm_post);
  return capture_end(&c, st);
}

/* ---- advancing samples on several threads ------------------------------------------------------ */

/* Runs fn on every sample i of n. On the CPU backend with T = OpenBLAS's thread count > 1, T threads
 * each take samples t, t + T, ... through their own model view (model.h: the same weights, private
 * scratch), with OpenBLAS single-threaded meanwhile: the element-wise work (attention, norms, SiLU,
 * int8 rounding) then runs in parallel too, where per-op BLAS threading left it serial. Every sample is
 * computed by the same operations as on one thread, into its own slice of the activations. tmp: a
 * private buffer of tmp_floats per thread. */
typedef qq_status (*sample_fn)(void *ctx, qq_model *m, int32_t i, float *tmp, qq_error *err);

typedef struct sample_job {
  sample_fn fn;
  void *ctx;
  qq_model *m;
  int32_t n, t, step;
  float *tmp;
  qq_status st;
  qq_error err;
} sample_job;

static void *sample_job_run(void *arg) {
  sample_job *j = arg;
  for (int32_t i = j->t; i < j->n && !j->st; i += j->step) j->st = j->fn(j->ctx, j->m, i, j->tmp, &j->err);
  return NULL;
}

static qq_status for_each_sample(qq_model *m, int32_t n, size_t tmp_floats, sample_fn fn, void *ctx, qq_error *err) {
  const int threads = qq_backend_kind(qq_model_backend(m)) == QQ_DEVICE_CPU ? openblas_get_num_threads() : 1;
  const int32_t T = QQ_MAX(1, QQ_MIN(QQ_MIN(threads, n), 64));
  sample_job jobs[64];
  pthread_t tid[64];
  bool started[64] = {false};
  qq_status st = QQ_OK;
  memset(jobs, 0, sizeof(sample_job) * (size_t)T);
  for (int32_t t = 0; t < T && !st; t++) {
    jobs[t] = (sample_job){.fn = fn, .ctx = ctx, .m = m, .n = n, .t = t, .step = T};
    if (tmp_floats && !(jobs[t].tmp = malloc(sizeof(float) * tmp_floats)))
      st = qq_error_set(err, QQ_ERR_NOMEM, "calibration: out of memory");
    if (!st && t > 0) st = qq_model_view_create(m, &jobs[t].m, err);
  }
  if (!st) {
    if (T > 1) openblas_set_num_threads(1);
    for (int32_t t = 1; t < T; t++) started[t] = pthread_create(&tid[t], NULL, sample_job_run, &jobs[t]) == 0;
    /* A thread that could not start leaves its samples to the calling thread. */
    for (int32_t t = 1; t < T; t++)
      if (!started[t]) {
        jobs[t].m = m;
        sample_job_run(&jobs[t]);
      }
    sample_job_run(&jobs[0]);
    for (int32_t t = 1; t < T; t++)
      if (started[t]) pthread_join(tid[t], NULL);
    if (T > 1) openblas_set_num_threads(threads);
    for (int32_t t = 0; t < T && !st; t++)
      if (jobs[t].st) {
        st = jobs[t].st;
        *err = jobs[t].err;
      }
  }
  for (int32_t t = 0; t < T; t++) {
    free(jobs[t].tmp);
    if (t > 0 && jobs[t].m != m) qq_model_view_free(jobs[t].m);
  }
  return st;
}

static qq_status advance_whole(void *ctx, qq_model *m, int32_t i, float *tmp, qq_error *err) {
  (void)tmp;
  const struct { qq_calib_acts *a; int32_t layer; } *c = ctx;
  const size_t sample = (size_t)c->a->seqlen * c->a->hidden;
  return qq_model_layer_forward(m, c->layer, c->a->x + i * sample, c->a->seqlen, NULL, NULL, err);
}

qq_status qq_calib_layer_advance(qq_model *m, int32_t layer, qq_calib_acts *a, qq_error *err) {
  struct { qq_calib_acts *a; int32_t layer; } c = {a, layer};
  return for_each_sample(m, a->n_samples, 0, advance_whole, &c, err);
}

size_t qq_calib_peak_rss(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return (size_t)ru.ru_maxrss * 1024u; /* Linux reports kilobytes */
}

/* ---- the layer in stages ------------------------------------------------------------------------ */

struct qq_calib_staged {
  qq_model *m;
  int32_t layer;
  qq_calib_acts *a;
  int32_t q_dim, inter;
  int done;           /* groups advanced so far */
  size_t max_store;
  float *attn;        /* [samples][seqlen][q_dim], from QKV's advance until O's */
  float *act;         /* [samples][seqlen][inter] when stored, from GATEUP's advance */
  float *tmp;         /* [seqlen][max(hidden, inter)] */
};

struct staged_adv {
  qq_calib_staged *p;
  qq_calib_input g;
};

qq_status qq_calib_staged_begin(qq_model *m, int32_t layer, qq_calib_acts *a, size_t max_store_bytes,
                                qq_calib_staged **out, qq_error *err) {
  *out = NULL;
  const qq_config *cfg = qq_model_config(m);
  if (layer < 0 || layer >= cfg->num_layers)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "calibration: layer %d outside [0, %d)", layer, cfg->num_layers);
  qq_calib_staged *p = calloc(1, sizeof *p);
  if (!p) return qq_error_set(err, QQ_ERR_NOMEM, "calibration: out of memory");
  p->m = m;
  p->layer = layer;
  p->a = a;
  p->q_dim = cfg->num_heads * cfg->head_dim;
  p->inter = cfg->intermediate_size;
  p->max_store = max_store_bytes ? max_store_bytes : 4 * qq_calib_acts_bytes(a);
  p->tmp = malloc(sizeof(float) * (size_t)a->seqlen * QQ_MAX(QQ_MAX(a->hidden, p->inter), p->q_dim));
  if (!p->tmp) {
    free(p);
    return qq_error_set(err, QQ_ERR_NOMEM, "calibration: out of memory");
  }
  *out = p;
  return QQ_OK;
}

void qq_calib_staged_end(qq_calib_staged *p) {
  if (!p) return;
  free(p->attn);
  free(p->act);
  free(p->tmp);
  free(p);
}

size_t qq_calib_staged_bytes(const qq_calib_staged *p) {
  const size_t tokens = (size_t)p->a->n_samples * p->a->seqlen;
  size_t b = sizeof(float) * tokens * p->q_dim;
  const size_t act = sizeof(float) * tokens * p->inter;
  return b > 0 && act <= p->max_store ? QQ_MAX(b, act) : b;
}

static qq_status staged_order(const qq_calib_staged *p, qq_calib_input g, const char *what, qq_error *err) {
  if ((unsigned)g >= QQ_CIN_COUNT) return qq_error_set(err, QQ_ERR_INVALID_ARG, "calibration: unknown input %d", (int)g);
  if ((int)g != p->done)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "calibration: %s of input %d of layer %d asked with %d group(s) advanced",
                        what, (int)g, p->layer, p->done);
  return QQ_OK;
}

qq_status qq_calib_staged_stats(qq_calib_staged *p, qq_calib_input g, int32_t h_samples,
                                qq_calib_stats stats[QQ_CIN_COUNT], qq_error *err) {
  qq_status st = staged_order(p, g, "statistics", err);
  if (st) return st;
  capture_ctx c;
  if ((st = capture_begin(p->m, 1u << g, h_samples != 0, stats, &c, err))) return st;
  const qq_calib_acts *a = p->a;
  const int32_t T = a->seqlen, hid = a->hidden;
  float *norm_w = NULL;
  if (g == QQ_CIN_QKV || g == QQ_CIN_GATEUP) {
    if (!(norm_w = malloc(sizeof(float) * (size_t)hid))) st = qq_error_set(err, QQ_ERR_NOMEM, "calibration: out of memory");
    else st = qq_model_get_norm(p->m, p->layer, g == QQ_CIN_QKV ? QQ_NORM_INPUT : QQ_NORM_POST_ATTN, norm_w, err);
  }
  const float eps = (float)qq_model_config(p->m)->rms_norm_eps;
  static const qq_linear_id first[QQ_CIN_COUNT] = {QQ_LIN_Q, QQ_LIN_O, QQ_LIN_GATE, QQ_LIN_DOWN};
  for (int32_t i = 0; i < a->n_samples && !st; i++) {
    float *xi = a->x + (size_t)i * T * hid;
    c.h_now = c.with_h && (h_samples < 0 || i < h_samples);
    const float *in;
    int32_t w;
    switch (g) {
      case QQ_CIN_O:
        in = p->attn + (size_t)i * T * p->q_dim;
        w = p->q_dim;
        break;
      case QQ_CIN_DOWN:
        if (p->act) {
          in = p->act + (size_t)i * T * p->inter;
        } else {
          if ((st = qq_model_layer_part(p->m, p->layer, QQ_PART_MLP_ACT, xi, p->tmp, T, err))) continue;
          in = p->tmp;
        }
        w = p->inter;
        break;
      default:
        host_rmsnorm(xi, T, hid, norm_w, eps, p->tmp);
        in = p->tmp;
        w = hid;
        break;
    }
    on_capture(&c, p->layer, first[g], in, T, w);
    if (c.st) st = qq_error_set(err, c.st, "calibration: layer %d captured an input of unexpected width", p->layer);
  }
  free(norm_w);
  return capture_end(&c, st);
}

static qq_status staged_advance_one(void *ctx, qq_model *m, int32_t i, float *tmp, qq_error *err) {
  const qq_calib_staged *p = ((const struct staged_adv *)ctx)->p;
  const qq_calib_input g = ((const struct staged_adv *)ctx)->g;
  const int32_t T = p->a->seqlen;
  float *xi = p->a->x + (size_t)i * T * p->a->hidden;
  switch (g) {
    case QQ_CIN_QKV: return qq_model_layer_part(m, p->layer, QQ_PART_ATTN, xi, p->attn + (size_t)i * T * p->q_dim, T, err);
    case QQ_CIN_O: return qq_model_layer_part(m, p->layer, QQ_PART_O, xi, p->attn + (size_t)i * T * p->q_dim, T, err);
    case QQ_CIN_GATEUP:
      return p->act ? qq_model_layer_part(m, p->layer, QQ_PART_MLP_ACT, xi, p->act + (size_t)i * T * p->inter, T, err)
                    : QQ_OK;
    default: {
      float *act = p->act ? p->act + (size_t)i * T * p->inter : tmp;
      qq_status st = p->act ? QQ_OK : qq_model_layer_part(m, p->layer, QQ_PART_MLP_ACT, xi, act, T, err);
      return st ? st : qq_model_layer_part(m, p->layer, QQ_PART_DOWN, xi, act, T, err);
    }
  }
}

qq_status qq_calib_staged_advance(qq_calib_staged *p, qq_calib_input g, qq_error *err) {
  qq_status st = staged_order(p, g, "advance", err);
  if (st) return st;
  const qq_calib_acts *a = p->a;
  const size_t tokens = (size_t)a->n_samples * a->seqlen;
  if (g == QQ_CIN_QKV && !(p->attn = malloc(sizeof(float) * tokens * p->q_dim)))
    return qq_error_set(err, QQ_ERR_NOMEM, "calibration: out of memory for %zu attention outputs", tokens);
  if (g == QQ_CIN_GATEUP && sizeof(float) * tokens * p->inter <= p->max_store &&
      !(p->act = malloc(sizeof(float) * tokens * p->inter)))
    return qq_error_set(err, QQ_ERR_NOMEM, "calibration: out of memory for %zu MLP activations", tokens);
  struct staged_adv c = {p, g};
  const size_t tmp = g == QQ_CIN_DOWN && !p->act ? (size_t)a->seqlen * p->inter : 0;
  if ((st = for_each_sample(p->m, a->n_samples, tmp, staged_advance_one, &c, err))) return st;
  if (g == QQ_CIN_O) {
    free(p->attn);
    p->attn = NULL;
  }
  p->done = g + 1;
  return QQ_OK;
}
