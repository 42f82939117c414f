/* awq.c — AWQ (Lin et al. 2023, "AWQ: Activation-aware Weight Quantization"): per-input-channel
 * scales s = mean|x|^α protect the weights that meet large activations; α is grid-searched per group of
 * linears sharing an input, then each group's weight range is clipped to the value with least output
 * error.
 *
 * The output error of a candidate is measured exactly over all calibration tokens through the input
 * second moment H = XᵀX: ‖X Wᵀ − X Ŵᵀ‖² = tr((W − Ŵ) H (W − Ŵ)ᵀ), which costs n·k² per candidate instead
 * of tokens·n·k (65,536 calibration tokens against k ≤ 1,024 here). The objective is the output of the
 * linears themselves (AutoAWQ measures the whole attention / MLP block output for q/k/v and gate/up);
 * docs/quality.md has the measured effect.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quantize.h"

qq_awq_options qq_awq_options_default(void) {
  qq_awq_options o = {.n_grid = 20, .clip = true, .clip_grid = 20, .max_shrink = 0.5};
  return o;
}

/* ŵ = Q(w·s)/s for one matrix, RTN with p. */
static qq_status fake_quant_scaled(const float *w, int32_t n, int32_t k, const float *s, const qq_qparams *p,
                                   float *ws, float *out, qq_error *err) {
  for (int32_t r = 0; r < n; r++)
    for (int32_t j = 0; j < k; j++) ws[(size_t)r * k + j] = w[(size_t)r * k + j] * s[j];
  qq_qweight q;
  qq_status st = qq_rtn_quantize(ws, n, k, p, &q, err);
  if (st) return st;
  qq_qweight_dequant(&q, out);
  qq_qweight_free(&q);
  for (int32_t r = 0; r < n; r++)
    for (int32_t j = 0; j < k; j++) out[(size_t)r * k + j] /= s[j];
  return QQ_OK;
}

qq_status qq_awq_search_scale(const float *const *w, const int32_t *n, int32_t n_lin, int32_t k,
                              const float *x_mean_abs, const double *h, const qq_qparams *p,
                              const qq_awq_options *o, float *s_out, double *alpha_out, qq_error *err) {
  if (n_lin <= 0 || k <= 0 || o->n_grid <= 0)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "AWQ: %d linears of width %d, grid %d", n_lin, k, o->n_grid);
  qq_status st = qq_qparams_check(p, k, err);
  if (st) return st;
  int32_t nmax = 0;
  for (int32_t i = 0; i < n_lin; i++) nmax = QQ_MAX(nmax, n[i]);
  float *s = malloc(sizeof(float) * (size_t)k);
  float *ws = malloc(sizeof(float) * (size_t)nmax * k);
  float *wq = malloc(sizeof(float) * (size_t)nmax * k);
  if (!s || !ws || !wq) {
    st = qq_error_set(err, QQ_ERR_NOMEM, "AWQ: out of memory");
    goto done;
  }
  double best = INFINITY;
  for (int32_t j = 0; j < k; j++) s_out[j] = 1.0f;
  *alpha_out = 0.0;
  for (int32_t gi = 0; gi < o->n_grid; gi++) {
    const double alpha = (double)gi / o->n_grid;
    double smax = 0.0, smin = INFINITY;
    for (int32_t j = 0; j < k; j++) {
      double v = pow(fmax((double)x_mean_abs[j], 1e-4), alpha);
      s[j] = (float)v;
      smax = fmax(smax, v);
      smin = fmin(smin, v);
    }
    const double norm = sqrt(smax * smin);
    for (int32_t j = 0; j < k; j++) s[j] = (float)(s[j] / norm);
    double e = 0.0;
    for (int32_t i = 0; i < n_lin && e < best; i++) {
      st = fake_quant_scaled(w[i], n[i], k, s, p, ws, wq, err);
      if (st) goto done;
      e += qq_quant_output_error(w[i], wq, n[i], k, h, NULL);
    }
    if (e < best) {
      best = e;
      *alpha_out = alpha;
      memcpy(s_out, s, sizeof(float) * (size_t)k);
    }
  }
done:
  free(s);
  free(ws);
  free(wq);
  return st;
}

qq_status qq_awq_clip(float *w, int32_t n, int32_t k, const double *h, const qq_qparams *p,
                      const qq_awq_options *o, qq_error *err) {
  qq_status st = qq_qparams_check(p, k, err);
  if (st) return st;
  if (o->clip_grid <= 0 || !(o->max_shrink >= 0.0 && o->max_shrink < 1.0))
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "AWQ clip: grid %d, max shrink %g", o->clip_grid, o->max_shrink);
  const int32_t gs = p->group_size == -1 ? k : p->group_size, G = k / gs;
  const int32_t steps = (int32_t)(o->max_shrink * o->clip_grid);
  double *hd = malloc(sizeof(double) * (size_t)gs * gs);
  float *cw = malloc(sizeof(float) * (size_t)gs);
  double *d = malloc(sizeof(double) * (size_t)gs);
  if (!hd || !cw || !d) {
    st = qq_error_set(err, QQ_ERR_NOMEM, "AWQ clip: out of memory");
    goto done;
  }
  for (int32_t g = 0; g < G; g++) {
    const int32_t c0 = g * gs;
    for (int32_t i = 0; i < gs; i++)
      for (int32_t j = 0; j < gs; j++) hd[(size_t)i * gs + j] = h[(size_t)(c0 + i) * k + c0 + j];
    for (int32_t r = 0; r < n; r++) {
      float *wg = w + (size_t)r * k + c0;
      float mx = 0.0f;
      for (int32_t j = 0; j < gs; j++) mx = fmaxf(mx, fabsf(wg[j]));
      if (mx == 0.0f) continue;
      double best = INFINITY;
      float best_m = mx;
      for (int32_t i = 0; i <= steps; i++) {
        const float m = mx * (1.0f - (float)i / (float)o->clip_grid);
        for (int32_t j = 0; j < gs; j++) cw[j] = fminf(fmaxf(wg[j], -m), m);
        float sc;
        uint8_t z;
        qq_rtn_group_params(p, cw, gs, 1, &sc, &z);
        for (int32_t j = 0; j < gs; j++) {
          uint8_t c = qq_rtn_code(cw[j], sc, z, p->bits);
          d[j] = (double)wg[j] - (double)((float)((int32_t)c - (int32_t)z) * sc);
        }
        double e = 0.0;
        for (int32_t a = 0; a < gs; a++) {
          double t = 0.0;
          const double *hr = hd + (size_t)a * gs;
          for (int32_t b = 0; b < gs; b++) t += hr[b] * d[b];
          e += d[a] * t;
        }
        if (e < best) {
          best = e;
          best_m = m;
        }
      }
      for (int32_t j = 0; j < gs; j++) wg[j] = fminf(fmaxf(wg[j], -best_m), best_m);
    }
  }
done:
  free(hd);
  free(cw);
  free(d);
  return st;
}
