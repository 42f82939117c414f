/* awq.c — AWQ (Lin et al. 2023, "AWQ: Activation-aware Weight Quantization"): per-input-channel
 * scales s = mean|x|^α protect the weights that meet large activations; α is grid-searched per group of
 * linears sharing an input, then each group's weight range is clipped to the value with least output
 * error, and finally each group's grid (scale, zero) is re-fitted by least squares against the whole
 * row's output error (qq_awq_refine_grid): the codes stay round-to-nearest on that grid.
 *
 * The output error of a candidate is measured exactly over all calibration tokens through the input
 * second moment H = XᵀX: ‖X Wᵀ − X Ŵᵀ‖² = tr((W − Ŵ) H (W − Ŵ)ᵀ), which costs n·k² per candidate instead
 * of tokens·n·k (65,536 calibration tokens against k ≤ 1,024 here). The objective is the output of the
 * linears themselves (AutoAWQ measures the whole attention / MLP block output for q/k/v and gate/up);
 * docs/quality.md has the measured effect.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quantize_internal.h"

qq_awq_options qq_awq_options_default(void) {
  qq_awq_options o = {
      .n_grid = 20, .clip = true, .clip_grid = 20, .max_shrink = 0.5, .refine_sweeps = 2};
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

/* The clipping search with the candidates of a block of rows evaluated at once: D [rows·C][gs] holds
 * w − ŵ for every row and candidate, D·H_gg is one sgemm, the errors are the row-wise dots. */
static qq_status clip_batched(float *w, int32_t n, int32_t k, const double *h, const qq_qparams *p,
                              const qq_awq_options *o, qq_error *err) {
  const int32_t gs = p->group_size == -1 ? k : p->group_size, G = k / gs;
  const int32_t steps = (int32_t)(o->max_shrink * o->clip_grid), C = steps + 1;
  const int32_t R = QQ_MAX(1, 2048 / C);
  float *hf = malloc(sizeof(float) * (size_t)gs * gs);
  float *d = malloc(sizeof(float) * (size_t)R * C * gs);
  float *dh = malloc(sizeof(float) * (size_t)R * C * gs);
  float *cw = malloc(sizeof(float) * (size_t)gs);
  qq_status st = QQ_OK;
  if (!hf || !d || !dh || !cw) {
    st = qq_error_set(err, QQ_ERR_NOMEM, "AWQ clip: out of memory");
    goto done;
  }
  for (int32_t g = 0; g < G; g++) {
    const int32_t c0 = g * gs;
    for (int32_t i = 0; i < gs; i++)
      for (int32_t j = 0; j < gs; j++) hf[(size_t)i * gs + j] = (float)h[(size_t)(c0 + i) * k + c0 + j];
    for (int32_t r0 = 0; r0 < n; r0 += R) {
      const int32_t rb = QQ_MIN(R, n - r0);
      for (int32_t r = 0; r < rb; r++) {
        const float *wg = w + (size_t)(r0 + r) * k + c0;
        float mx = 0.0f;
        for (int32_t j = 0; j < gs; j++) mx = fmaxf(mx, fabsf(wg[j]));
        for (int32_t ci = 0; ci < C; ci++) {
          const float m = mx * (1.0f - (float)ci / (float)o->clip_grid);
          for (int32_t j = 0; j < gs; j++) cw[j] = fminf(fmaxf(wg[j], -m), m);
          float sc;
          uint8_t z;
          qq_rtn_group_params(p, cw, gs, 1, &sc, &z);
          float *dr = d + ((size_t)r * C + ci) * gs;
          for (int32_t j = 0; j < gs; j++) {
            uint8_t q = qq_rtn_code(cw[j], sc, z, p->bits);
            dr[j] = wg[j] - (float)((int32_t)q - (int32_t)z) * sc;
          }
        }
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rb * C, gs, gs, 1.0f, d, gs, hf, gs, 0.0f, dh, gs);
      for (int32_t r = 0; r < rb; r++) {
        float *wg = w + (size_t)(r0 + r) * k + c0;
        double best = INFINITY;
        int32_t bc = 0;
        for (int32_t ci = 0; ci < C; ci++) {
          const float *dr = d + ((size_t)r * C + ci) * gs, *mr = dh + ((size_t)r * C + ci) * gs;
          double e = 0.0;
          for (int32_t j = 0; j < gs; j++) e += (double)dr[j] * (double)mr[j];
          if (e < best) {
            best = e;
            bc = ci;
          }
        }
        if (bc == 0) continue;
        float mx = 0.0f;
        for (int32_t j = 0; j < gs; j++) mx = fmaxf(mx, fabsf(wg[j]));
        const float m = mx * (1.0f - (float)bc / (float)o->clip_grid);
        for (int32_t j = 0; j < gs; j++) wg[j] = fminf(fmaxf(wg[j], -m), m);
      }
    }
  }
done:
  free(hf);
  free(d);
  free(dh);
  free(cw);
  return st;
}

qq_status qq_awq_clip(float *w, int32_t n, int32_t k, const double *h, const qq_qparams *p,
                      const qq_awq_options *o, qq_error *err) {
  qq_status st = qq_qparams_check(p, k, err);
  if (st) return st;
  if (o->clip_grid <= 0 || !(o->max_shrink >= 0.0 && o->max_shrink < 1.0))
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "AWQ clip: grid %d, max shrink %g", o->clip_grid, o->max_shrink);
  return clip_batched(w, n, k, h, p, o, err);
}

/* Least-squares scale: argmin_s (w − s·u)ᵀ H (w − s·u) + 2 (w − s·u)ᵀ bx  =  uᵀ(H w + bx) / uᵀ H u, rounded to
 * the stored dtype; `fallback` when that is not a positive number. */
static float ls_scale(const double *u, const double *hu, const double *hw, const double *bx, int32_t gs,
                      qq_scale_dtype dt, float fallback) {
  double num = 0.0, den = 0.0;
  for (int32_t a = 0; a < gs; a++) {
    num += u[a] * (hw[a] + bx[a]);
    den += u[a] * hu[a];
  }
  if (!(den > 0.0)) return fallback;
  const float sc = qq_scale_round((float)(num / den), dt);
  return sc > 0.0f && isfinite(sc) ? sc : fallback;
}

/* Codes of w_g on the grid (sc, z); u = codes − z. */
static void regrid(const double *wg, int32_t gs, float sc, int32_t z, int32_t bits, uint8_t *codes, double *u) {
  for (int32_t j = 0; j < gs; j++) {
    codes[j] = qq_rtn_code((float)wg[j], sc, (uint8_t)z, bits);
    u[j] = (double)((int32_t)codes[j] - z);
  }
}

qq_status qq_awq_refine_grid(const float *w, const double *h, const qq_qparams *p, int32_t sweeps, qq_qweight *q,
                             qq_error *err) {
  return qq_refine_grid(w, h, p, sweeps, false, q, err);
}

/* Group-major: for group g the candidates of all rows are formed together, so that every product with
 * H_gg is one dgemm over the rows; the rows' H·d are brought up to date after each group. */
qq_status qq_refine_grid(const float *w, const double *h, const qq_qparams *p, int32_t sweeps, bool keep_codes,
                         qq_qweight *q, qq_error *err) {
  if (q->g_idx || sweeps < 0)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "grid refinement: g_idx or %d sweeps", sweeps);
  const int32_t n = q->n, k = q->k, gs = q->group_size, G = q->n_groups, maxq = (1 << q->bits) - 1;
  const int32_t Z = q->sym ? 1 : 3;
  const size_t ng = (size_t)n * gs;
  double *d = malloc(sizeof(double) * (size_t)n * k), *hd = malloc(sizeof(double) * (size_t)n * k);
  double *hg = malloc(sizeof(double) * (size_t)gs * gs), *h1 = malloc(sizeof(double) * (size_t)gs);
  double *wg = malloc(sizeof(double) * ng), *hwg = malloc(sizeof(double) * ng), *dg = malloc(sizeof(double) * ng);
  double *hdg = malloc(sizeof(double) * ng), *u = malloc(sizeof(double) * ng), *hu = malloc(sizeof(double) * ng);
  double *dd = malloc(sizeof(double) * ng), *bx = malloc(sizeof(double) * (size_t)gs);
  double *hu0 = malloc(sizeof(double) * (size_t)gs), *best = malloc(sizeof(double) * (size_t)n);
  uint8_t *cz = malloc(ng * (size_t)Z), *bz = malloc((size_t)n);
  float *sz = malloc(sizeof(float) * (size_t)n * Z);
  qq_status st = QQ_OK;
  if (!d || !hd || !hg || !h1 || !wg || !hwg || !dg || !hdg || !u || !hu || !dd || !bx || !hu0 || !best || !cz ||
      !bz || !sz) {
    st = qq_error_set(err, QQ_ERR_NOMEM, "grid refinement: out of memory");
    goto done;
  }
  for (int32_t r = 0; r < n; r++)
    for (int32_t j = 0; j < k; j++) {
      const size_t i = (size_t)r * k + j, gi = (size_t)r * G + j / gs;
      d[i] = (double)w[i] - (double)((float)((int32_t)q->codes[i] - (int32_t)q->zeros[gi]) * q->scales[gi]);
    }
  /* hd = D H (H symmetric) */
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, k, k, 1.0, d, k, h, k, 0.0, hd, k);
  for (int32_t sw = 0; sw < sweeps; sw++)
    for (int32_t g = 0; g < G; g++) {
      const int32_t c0 = g * gs;
      for (int32_t a = 0; a < gs; a++) {
        double t = 0.0;
        for (int32_t b = 0; b < gs; b++) t += (hg[(size_t)a * gs + b] = h[(size_t)(c0 + a) * k + c0 + b]);
        h1[a] = t;
      }
      for (int32_t r = 0; r < n; r++)
        for (int32_t a = 0; a < gs; a++) {
          wg[(size_t)r * gs + a] = (double)w[(size_t)r * k + c0 + a];
          dg[(size_t)r * gs + a] = d[(size_t)r * k + c0 + a];
        }
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, gs, gs, 1.0, wg, gs, hg, gs, 0.0, hwg, gs);
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, gs, gs, 1.0, dg, gs, hg, gs, 0.0, hdg, gs);
      for (int32_t r = 0; r < n; r++) {
        best[r] = 0.0; /* the change of the row's error; keeping the grid is 0 */
        bz[r] = 0xFF;
      }
      for (int32_t zi = 0; zi < Z; zi++) {
        uint8_t *codes = cz + ng * zi;
        float *scz = sz + (size_t)n * zi;
        /* Round 1: least squares for the current codes at zero z (H u from H ŵ = H w − H d, no product
         * needed), re-round on the new grid. */
        for (int32_t r = 0; r < n; r++) {
          const size_t ri = (size_t)r * gs, gi = (size_t)r * G + g;
          const int32_t z0 = q->zeros[gi], z = z0 + (Z == 1 ? 0 : zi - 1);
          const float s0 = q->scales[gi];
          scz[r] = -1.0f;
          if (z < p->zero_min || z > maxq) continue;
          for (int32_t a = 0; a < gs; a++) {
            const uint8_t c = q->codes[(size_t)r * k + c0 + a];
            u[ri + a] = (double)((int32_t)c - z);
            /* H c = H ŵ / s0 + z0 H 1 */
            hu0[a] = (hwg[ri + a] - hdg[ri + a]) / (double)s0 + (double)(z0 - z) * h1[a];
            bx[a] = hd[(size_t)r * k + c0 + a] - hdg[ri + a];
          }
          const float s1 = ls_scale(u + ri, hu0, hwg + ri, bx, gs, p->scale_dtype, s0);
          if (keep_codes) memcpy(codes + ri, q->codes + (size_t)r * k + c0, (size_t)gs);
          else regrid(wg + ri, gs, s1, z, q->bits, codes + ri, u + ri);
          scz[r] = s1;
        }
        /* Round 2: the same with the new codes (unchanged codes: the same least squares). */
        if (!keep_codes) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, gs, gs, 1.0, u, gs, hg, gs, 0.0, hu, gs);
        for (int32_t r = 0; r < n; r++) {
          if (scz[r] < 0.0f) continue;
          const size_t ri = (size_t)r * gs;
          const int32_t z = q->zeros[(size_t)r * G + g] + (Z == 1 ? 0 : zi - 1);
          for (int32_t a = 0; a < gs; a++) bx[a] = hd[(size_t)r * k + c0 + a] - hdg[ri + a];
          const float s2 = ls_scale(u + ri, hu + ri, hwg + ri, bx, gs, p->scale_dtype, scz[r]);
          regrid(wg + ri, gs, s2, z, q->bits, codes + ri, u + ri);
          scz[r] = s2;
        }
        }
        /* Change of each row's error: with dd = d' − d, ddᵀ H_gg dd + 2 ddᵀ (H d)_g, where
         * H_gg dd = H_gg w − s H_gg u − H_gg d. */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, gs, gs, 1.0, u, gs, hg, gs, 0.0, hu, gs);
        for (int32_t r = 0; r < n; r++) {
          if (scz[r] < 0.0f) continue;
          const size_t ri = (size_t)r * gs;
          const double sc = (double)scz[r];
          double e = 0.0;
          for (int32_t a = 0; a < gs; a++) {
            const double dda = (wg[ri + a] - (double)(float)(u[ri + a] * sc)) - dg[ri + a];
            const double hdd = hwg[ri + a] - sc * hu[ri + a] - hdg[ri + a];
            e += dda * (hdd + 2.0 * hd[(size_t)r * k + c0 + a]);
          }
          if (e < best[r]) {
            best[r] = e;
            bz[r] = (uint8_t)zi;
          }
        }
      }
      /* Keep the improving grids; hd += DD H[g rows, :]. */
      bool any = false;
      for (int32_t r = 0; r < n; r++) {
        const size_t ri = (size_t)r * gs, gi = (size_t)r * G + g;
        if (bz[r] == 0xFF) {
          for (int32_t a = 0; a < gs; a++) dd[ri + a] = 0.0;
          continue;
        }
        any = true;
        const int32_t zi = bz[r], z = q->zeros[gi] + (Z == 1 ? 0 : zi - 1);
        const float sc = sz[(size_t)n * zi + r];
        const uint8_t *codes = cz + ng * zi + ri;
        for (int32_t a = 0; a < gs; a++) {
          const double dn = (double)w[(size_t)r * k + c0 + a] - (double)((float)((int32_t)codes[a] - z) * sc);
          dd[ri + a] = dn - d[(size_t)r * k + c0 + a];
          d[(size_t)r * k + c0 + a] = dn;
          q->codes[(size_t)r * k + c0 + a] = codes[a];
        }
        q->scales[gi] = sc;
        q->zeros[gi] = (uint8_t)z;
      }
      if (any)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, k, gs, 1.0, dd, gs, h + (size_t)c0 * k, k, 1.0, hd,
                    k);
    }
done:
  free(d); free(hd); free(hg); free(h1); free(wg); free(hwg); free(dg); free(hdg); free(u); free(hu); free(dd);
  free(bx); free(hu0); free(best); free(cz); free(bz); free(sz);
  return st;
}
