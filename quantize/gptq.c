/* gptq.c — GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
 * Pre-trained Transformers"): columns are quantized one at a time and the rounding error of each is
 * spread over the columns not yet quantized through the upper Cholesky factor of H⁻¹ (optimal brain
 * surgeon updates). Lazy batches of block_size columns keep the update of the remaining columns a
 * single sgemm per block.
 *
 * Shapes: W [n][k] (rows = outputs), H [k][k] = XᵀX. Hinv = U with H⁻¹ = UᵀU, U upper triangular.
 * For column c: q_c = Q(w_c); e = (w_c − q_c) / U[c][c]; w_j −= e · U[c][j] for j > c.
 */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quantize_internal.h"

qq_gptq_options qq_gptq_options_default(void) {
  /* Damping 5 % (GPTQModel's default), the range search and one refit pass: measured better than 1 %
   * without them on both corpora, both fixture models, 4 and 3 bits (docs/quality.md). */
  qq_gptq_options o = {.damp_percent = 0.05,
                       .block_size = 128,
                       .act_order = true,
                       .static_groups = false,
                       .mse = true,
                       .range = qq_range_search_default(),
                       .refine_sweeps = 1};
  return o;
}

/* A group's grid where GPTQ fixes it: min / max, or the range search. x contiguous. */
static void group_params(const qq_qparams *p, const qq_gptq_options *o, const float *x, int32_t len, float *scale,
                         uint8_t *zero) {
  if (o->mse) qq_mse_group_params(p, &o->range, x, len, scale, zero);
  else qq_rtn_group_params(p, x, len, 1, scale, zero);
}

/* Sort helper for act-order: decreasing diag(H), ties by index (stable, as torch.argsort is not
 * guaranteed to be: any order is valid, this one is reproducible). */
typedef struct diag_ix { double d; int32_t i; } diag_ix;
static int diag_cmp(const void *a, const void *b) {
  const diag_ix *x = a, *y = b;
  if (x->d > y->d) return -1;
  if (x->d < y->d) return 1;
  return x->i < y->i ? -1 : (x->i > y->i);
}

/* Upper Cholesky factor of (H + λI)⁻¹ into hinv (float, lower triangle zero). Raises λ tenfold up to
 * twice when the factorization fails. */
static qq_status inverse_cholesky(const double *h, int32_t k, double damp, float *hinv, qq_error *err) {
  double *a = malloc(sizeof(double) * (size_t)k * (size_t)k);
  if (!a) return qq_error_set(err, QQ_ERR_NOMEM, "GPTQ: out of memory for a %dx%d Hessian", k, k);
  double mean = 0.0;
  for (int32_t i = 0; i < k; i++) mean += h[(size_t)i * k + i];
  mean /= (double)k;
  int info = 0;
  for (int attempt = 0; attempt < 3; attempt++) {
    double lambda = damp * mean * pow(10.0, attempt);
    memcpy(a, h, sizeof(double) * (size_t)k * (size_t)k);
    for (int32_t i = 0; i < k; i++) a[(size_t)i * k + i] += lambda;
    info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', k, a, k);
    if (info == 0) info = LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'U', k, a, k);
    if (info == 0) info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', k, a, k);
    if (info == 0) {
      if (attempt) QQ_LOGW("gptq", "Hessian not positive definite: damping raised to %g x mean diagonal",
                           damp * pow(10.0, attempt));
      break;
    }
  }
  if (info != 0) {
    free(a);
    return qq_error_set(err, QQ_ERR_RANGE,
                        "GPTQ: Hessian [%d x %d] is not positive definite even with damping %g x mean diagonal "
                        "(LAPACK info %d); more or more varied calibration data may help",
                        k, k, damp * 100.0, info);
  }
  for (int32_t i = 0; i < k; i++)
    for (int32_t j = 0; j < k; j++) hinv[(size_t)i * k + j] = j < i ? 0.0f : (float)a[(size_t)i * k + j];
  free(a);
  return QQ_OK;
}

qq_status qq_gptq_quantize(const float *w, int32_t n, int32_t k, const double *h, const qq_qparams *p,
                           const qq_gptq_options *o, qq_qweight *q, qq_error *err) {
  if (n <= 0 || k <= 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "GPTQ: bad shape [%d][%d]", n, k);
  if (o->block_size <= 0 || !(o->damp_percent > 0.0))
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "GPTQ: block size %d and damping %g must be positive",
                        o->block_size, o->damp_percent);
  if (o->refine_sweeps < 0 || (o->mse && (o->range.grid < 0 || !(o->range.max_shrink >= 0.0 &&
                                                                   o->range.max_shrink < 1.0) || !(o->range.norm > 0.0))))
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "GPTQ: refine sweeps %d, range search grid %d, max shrink %g, norm %g",
                        o->refine_sweeps, o->range.grid, o->range.max_shrink, o->range.norm);
  const bool grouped = p->group_size != -1;
  const bool write_g_idx = o->act_order && grouped && !o->static_groups;
  qq_status st = qq_qweight_alloc(q, n, k, p, write_g_idx, err);
  if (st) return st;
  const int32_t gs = q->group_size, G = q->n_groups, B = o->block_size;

  float *W = malloc(sizeof(float) * (size_t)n * k);
  double *H = malloc(sizeof(double) * (size_t)k * k);
  float *U = malloc(sizeof(float) * (size_t)k * k);
  float *W1 = malloc(sizeof(float) * (size_t)n * B);
  float *E1 = malloc(sizeof(float) * (size_t)n * B);
  float *cur_s = malloc(sizeof(float) * (size_t)n);
  uint8_t *cur_z = malloc((size_t)n);
  float *tmp = malloc(sizeof(float) * (size_t)(gs > k ? gs : k));
  int32_t *perm = malloc(sizeof(int32_t) * (size_t)k);
  diag_ix *dx = malloc(sizeof(diag_ix) * (size_t)k);
  /* The refit's target: W (dead inputs zeroed) and H where the groups are contiguous, i.e. in the
   * act-order permutation when g_idx is written, in the original order otherwise. */
  const bool refine = o->refine_sweeps > 0;
  float *W0 = NULL;
  double *Hr = NULL;
  uint8_t *cp = NULL;
  if (!W || !H || !U || !W1 || !E1 || !cur_s || !cur_z || !tmp || !perm || !dx) {
    st = qq_error_set(err, QQ_ERR_NOMEM, "GPTQ [%d][%d]: out of memory", n, k);
    goto done;
  }
  memcpy(W, w, sizeof(float) * (size_t)n * k);
  memcpy(H, h, sizeof(double) * (size_t)k * k);
  /* Dead inputs (never non-zero in the calibration data) carry no information: zero the weight. */
  for (int32_t j = 0; j < k; j++) {
    if (H[(size_t)j * k + j] == 0.0) {
      H[(size_t)j * k + j] = 1.0;
      for (int32_t r = 0; r < n; r++) W[(size_t)r * k + j] = 0.0f;
    }
  }
  if (refine && !write_g_idx) {
    if (!(W0 = malloc(sizeof(float) * (size_t)n * k))) {
      st = qq_error_set(err, QQ_ERR_NOMEM, "GPTQ [%d][%d]: out of memory", n, k);
      goto done;
    }
    memcpy(W0, W, sizeof(float) * (size_t)n * k);
    Hr = H;
  }
  /* Parameters fixed before any update: per-channel always; per-group with static_groups. */
  if (!grouped || o->static_groups) {
    for (int32_t r = 0; r < n; r++)
      for (int32_t g = 0; g < G; g++)
        group_params(p, o, W + (size_t)r * k + (size_t)g * gs, gs, &q->scales[(size_t)r * G + g],
                     &q->zeros[(size_t)r * G + g]);
  }
  for (int32_t j = 0; j < k; j++) perm[j] = j;
  if (o->act_order) {
    for (int32_t j = 0; j < k; j++) dx[j] = (diag_ix){H[(size_t)j * k + j], j};
    qsort(dx, (size_t)k, sizeof *dx, diag_cmp);
    for (int32_t j = 0; j < k; j++) perm[j] = dx[j].i;
    /* Permute W's columns and H's rows and columns (through U as scratch for H). */
    for (int32_t r = 0; r < n; r++) {
      float *row = W + (size_t)r * k;
      for (int32_t j = 0; j < k; j++) tmp[j] = row[perm[j]];
      memcpy(row, tmp, sizeof(float) * (size_t)k);
    }
    double *Hp = malloc(sizeof(double) * (size_t)k * k);
    if (!Hp) {
      st = qq_error_set(err, QQ_ERR_NOMEM, "GPTQ [%d][%d]: out of memory", n, k);
      goto done;
    }
    for (int32_t i = 0; i < k; i++)
      for (int32_t j = 0; j < k; j++) Hp[(size_t)i * k + j] = H[(size_t)perm[i] * k + perm[j]];
    if (H != Hr) free(H);
    H = Hp;
    if (refine && write_g_idx) {
      if (!(W0 = malloc(sizeof(float) * (size_t)n * k))) {
        st = qq_error_set(err, QQ_ERR_NOMEM, "GPTQ [%d][%d]: out of memory", n, k);
        goto done;
      }
      memcpy(W0, W, sizeof(float) * (size_t)n * k);
      Hr = H;
    }
  }
  st = inverse_cholesky(H, k, o->damp_percent, U, err);
  if (st) goto done;

  for (int32_t i1 = 0; i1 < k; i1 += B) {
    const int32_t i2 = QQ_MIN(i1 + B, k), cnt = i2 - i1;
    for (int32_t r = 0; r < n; r++) memcpy(W1 + (size_t)r * cnt, W + (size_t)r * k + i1, sizeof(float) * (size_t)cnt);
    for (int32_t i = 0; i < cnt; i++) {
      const int32_t col = i1 + i, orig = perm[col];
      int32_t g;
      if (!grouped) {
        g = 0;
      } else if (o->static_groups) {
        g = orig / gs;
      } else {
        g = col / gs;
        if (col % gs == 0) {
          /* New group: parameters from the current (already updated) values of its columns. */
          for (int32_t r = 0; r < n; r++) {
            for (int32_t j = 0; j < gs; j++) {
              int32_t c = col + j;
              tmp[j] = c < i2 ? W1[(size_t)r * cnt + (c - i1)] : W[(size_t)r * k + c];
            }
            group_params(p, o, tmp, gs, &q->scales[(size_t)r * G + g], &q->zeros[(size_t)r * G + g]);
          }
        }
      }
      if (write_g_idx) q->g_idx[orig] = g;
      for (int32_t r = 0; r < n; r++) {
        cur_s[r] = q->scales[(size_t)r * G + g];
        cur_z[r] = q->zeros[(size_t)r * G + g];
      }
      const float d = U[(size_t)col * k + col];
      const float *urow = U + (size_t)col * k + i1;
      for (int32_t r = 0; r < n; r++) {
        float *wr = W1 + (size_t)r * cnt;
        const float x = wr[i];
        const uint8_t c = qq_rtn_code(x, cur_s[r], cur_z[r], p->bits);
        q->codes[(size_t)r * k + orig] = c;
        const float e = (x - (float)((int32_t)c - (int32_t)cur_z[r]) * cur_s[r]) / d;
        for (int32_t j = i + 1; j < cnt; j++) wr[j] -= e * urow[j];
        E1[(size_t)r * cnt + i] = e;
      }
    }
    /* W[:, i2:] -= E1 [n][cnt] · U[i1:i2, i2:] [cnt][k − i2] */
    if (i2 < k)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, k - i2, cnt, -1.0f, E1, cnt,
                  U + (size_t)i1 * k + i2, k, 1.0f, W + i2, k);
  }
  /* Least-squares refit of the grids to GPTQ's codes. With g_idx, on a view of q in the permuted order
   * (group g = columns g·gs .. of the permutation: the scales and zeros are shared, the codes permuted
   * and put back). */
  if (refine) {
    if (!write_g_idx) {
      st = qq_refine_grid(W0, Hr, p, o->refine_sweeps, true, q, err);
    } else if (!(cp = malloc((size_t)n * k))) {
      st = qq_error_set(err, QQ_ERR_NOMEM, "GPTQ [%d][%d]: out of memory", n, k);
    } else {
      qq_qweight v = *q;
      v.g_idx = NULL;
      v.codes = cp;
      for (int32_t r = 0; r < n; r++)
        for (int32_t j = 0; j < k; j++) cp[(size_t)r * k + j] = q->codes[(size_t)r * k + perm[j]];
      st = qq_refine_grid(W0, Hr, p, o->refine_sweeps, true, &v, err);
      for (int32_t r = 0; r < n; r++)
        for (int32_t j = 0; j < k; j++) q->codes[(size_t)r * k + perm[j]] = cp[(size_t)r * k + j];
    }
    if (st) qq_error_prefix(err, "GPTQ refit");
  }
done:
  if (Hr != H) free(Hr);
  free(W0);
  free(cp);
  free(W);
  free(H);
  free(U);
  free(W1);
  free(E1);
  free(cur_s);
  free(cur_z);
  free(tmp);
  free(perm);
  free(dx);
  if (st) qq_qweight_free(q);
  return st;
}

double qq_quant_output_error(const float *w, const float *wq, int32_t n, int32_t k, const double *h,
                             double *ref) {
  /* Rows in chunks so that the scratch stays small: D [rows][k], DH [rows][k]. */
  const int32_t chunk = 64;
  double *d = malloc(sizeof(double) * (size_t)chunk * k * 2);
  if (!d) return NAN;
  double *dh = d + (size_t)chunk * k;
  double e = 0.0, r0 = 0.0;
  for (int pass = 0; pass < (ref ? 2 : 1); pass++) {
    double acc = 0.0;
    for (int32_t r = 0; r < n; r += chunk) {
      int32_t m = QQ_MIN(chunk, n - r);
      for (int32_t i = 0; i < m; i++)
        for (int32_t j = 0; j < k; j++) {
          size_t ix = (size_t)(r + i) * k + j;
          d[(size_t)i * k + j] = pass == 0 ? (double)w[ix] - (double)wq[ix] : (double)w[ix];
        }
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, k, k, 1.0, d, k, h, k, 0.0, dh, k);
      for (size_t i = 0; i < (size_t)m * k; i++) acc += d[i] * dh[i];
    }
    if (pass == 0) e = acc;
    else r0 = acc;
  }
  free(d);
  if (ref) *ref = r0;
  return e;
}
