/* test_cuda_ops.c — every op of the CUDA backend against the CPU backend (the plain C references) and,
 * for the matmuls, against an fp64 reference, through the public kernels.h API, in fp32, bf16 and fp16
 * activation modes. Exits 77 (ctest: skipped) with a message when no CUDA device is visible.
 *
 * Error rule for matmuls (FlashAttention's): ‖y_gpu − y64‖ / ‖y64‖ ≤ 2 · ‖y_naive − y64‖ / ‖y64‖ + 1e-7,
 * where y64 is the product in double of exactly the values the GPU sees (x rounded to the activation
 * dtype; dense weights rounded to it; quantized weights dequantized exactly), and y_naive the naive
 * implementation in the same precision (weights rounded to the activation dtype, fp32 accumulation,
 * output rounded to the activation dtype). Exact integer paths (W8A8) must equal the CPU backend up
 * to the output's rounding; ops that only move data must be exact. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_check.h"
#include "kernels.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (double)(rng >> 11) * (1.0 / 9007199254740992.0);
}
static float frand(void) { return (float)(urand() * 2.0 - 1.0); }
static int irand(int n) { return (int)(urand() * n); }

static float round_act(float v, qq_act_dtype a) {
  switch (a) {
    case QQ_ACT_BF16: return qq_bf16_to_f32(qq_f32_to_bf16(v));
    case QQ_ACT_F16: return qq_f16_to_f32(qq_f32_to_f16(v));
    default: return v;
  }
}
static float *rand_act(size_t n, qq_act_dtype a, float scale) {
  float *v = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) v[i] = round_act(frand() * scale, a);
  return v;
}
static double rel_err(const float *a, const double *ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    const double d = (double)a[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}
static double rel_err_f(const float *a, const float *b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    const double d = (double)a[i] - b[i];
    num += d * d;
    den += (double)b[i] * b[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void *up(qq_backend *be, const float *h, size_t n) {
  void *d = NULL;
  OK(qq_backend_alloc(be, n, &d, &err));
  OK(qq_backend_upload_f32(be, h, n, d, &err));
  return d;
}
static float *down(qq_backend *be, const void *d, size_t n) {
  float *h = malloc(n * sizeof(float));
  OK(qq_backend_download_f32(be, d, n, h, &err));
  return h;
}

/* Output rounding unit of each dtype, for the CPU-comparison tolerances. */
static double act_eps(qq_act_dtype a) { return a == QQ_ACT_BF16 ? 1.0 / 256 : a == QQ_ACT_F16 ? 1.0 / 2048 : 1e-6; }

/* ---------------------------------------------------------------------------------------------------
 * matmul: dense F32/BF16 weights, QINT (bits, groups, zeros, act-order), W8A8 dynamic and static. */

typedef struct wcase {
  const char *name;
  qq_weight_format fmt;
  int bits, group; /* QINT; group 0 = per-channel */
  bool sym, act_order;
  float act_scale; /* W8A8 static */
} wcase;

typedef struct built_weight {
  qq_linear_desc d;
  float *wref;          /* [n][k] the weight values the GPU multiplies (before activation rounding) */
  void *owned[5];
} built_weight;

static void build_weight(const wcase *wc, int n, int k, bool bias, built_weight *bw) {
  memset(bw, 0, sizeof *bw);
  qq_linear_desc *d = &bw->d;
  d->format = wc->fmt;
  d->n = n;
  d->k = k;
  const size_t nk = (size_t)n * k;
  bw->wref = malloc(nk * sizeof(float));
  if (bias) {
    float *b = malloc((size_t)n * sizeof(float));
    for (int i = 0; i < n; i++) b[i] = frand() * 0.5f;
    d->bias = b;
    bw->owned[4] = b;
  }
  if (wc->fmt == QQ_WFMT_F32 || wc->fmt == QQ_WFMT_BF16) {
    float *w = malloc(nk * sizeof(float));
    for (size_t i = 0; i < nk; i++) w[i] = frand() * 0.1f;
    if (wc->fmt == QQ_WFMT_BF16) {
      uint16_t *wb = malloc(nk * 2);
      for (size_t i = 0; i < nk; i++) {
        wb[i] = qq_f32_to_bf16(w[i]);
        w[i] = qq_bf16_to_f32(wb[i]);
      }
      d->w = wb;
      bw->owned[0] = wb;
    } else {
      d->w = w;
    }
    memcpy(bw->wref, w, nk * sizeof(float));
    if (wc->fmt == QQ_WFMT_F32) bw->owned[0] = w;
    else free(w);
    return;
  }
  if (wc->fmt == QQ_WFMT_W8A8) {
    int8_t *c = malloc(nk);
    float *s = malloc((size_t)n * sizeof(float));
    for (int r = 0; r < n; r++) s[r] = 0.001f + 0.002f * (float)urand();
    for (size_t i = 0; i < nk; i++) {
      c[i] = (int8_t)(irand(255) - 127);
      bw->wref[i] = (float)c[i] * s[i / k];
    }
    d->w = c;
    d->scales = s;
    d->act_scale = wc->act_scale;
    bw->owned[0] = c;
    bw->owned[1] = s;
    return;
  }
  /* QINT */
  const int gs = wc->group ? wc->group : k;
  const int ng = (k + gs - 1) / gs;
  const int maxc = (1 << wc->bits) - 1;
  uint8_t *codes = malloc(nk);
  float *scales = malloc((size_t)n * ng * sizeof(float));
  uint8_t *zeros = wc->sym ? NULL : malloc((size_t)n * ng);
  int32_t *g_idx = NULL;
  for (size_t i = 0; i < nk; i++) codes[i] = (uint8_t)irand(maxc + 1);
  for (int i = 0; i < n * ng; i++) {
    scales[i] = 0.002f + 0.01f * (float)urand();
    if (zeros) zeros[i] = (uint8_t)irand(maxc + 1);
  }
  if (wc->act_order) { /* GPTQ act-order: g_idx[c] = rank of c in a random permutation / group size */
    g_idx = malloc((size_t)k * sizeof(int32_t));
    int32_t *perm = malloc((size_t)k * sizeof(int32_t));
    for (int i = 0; i < k; i++) perm[i] = i;
    for (int i = k - 1; i > 0; i--) {
      int j = irand(i + 1), t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
    for (int i = 0; i < k; i++) g_idx[perm[i]] = i / gs;
    free(perm);
  }
  d->w = codes;
  d->bits = wc->bits;
  d->group_size = gs;
  d->n_groups = ng;
  d->scales = scales;
  d->zeros = zeros;
  d->g_idx = g_idx;
  bw->owned[0] = codes;
  bw->owned[1] = scales;
  bw->owned[2] = zeros;
  bw->owned[3] = g_idx;
  const int zsym = 1 << (wc->bits - 1);
  for (int r = 0; r < n; r++)
    for (int c = 0; c < k; c++) {
      const int g = g_idx ? g_idx[c] : c / gs;
      const int z = zeros ? zeros[(size_t)r * ng + g] : zsym;
      bw->wref[(size_t)r * k + c] = (float)((int)codes[(size_t)r * k + c] - z) * scales[(size_t)r * ng + g];
    }
}

static void free_weight(built_weight *bw) {
  for (int i = 0; i < 5; i++) free(bw->owned[i]);
  free(bw->wref);
}

static void test_matmul(qq_backend *gpu, qq_backend *cpu, qq_act_dtype a) {
  static const wcase cases[] = {
      {"f32", QQ_WFMT_F32, 0, 0, false, false, 0},        {"bf16", QQ_WFMT_BF16, 0, 0, false, false, 0},
      {"w4g128", QQ_WFMT_QINT, 4, 128, false, false, 0},  {"w4g32sym", QQ_WFMT_QINT, 4, 32, true, false, 0},
      {"w4g64", QQ_WFMT_QINT, 4, 64, false, false, 0},    {"w4pc", QQ_WFMT_QINT, 4, 0, false, false, 0},
      {"w4g128act", QQ_WFMT_QINT, 4, 128, true, true, 0}, {"w8pc", QQ_WFMT_QINT, 8, 0, false, false, 0},
      {"w8g128sym", QQ_WFMT_QINT, 8, 128, true, false, 0}, {"w3g128", QQ_WFMT_QINT, 3, 128, false, false, 0},
      {"w8a8dyn", QQ_WFMT_W8A8, 0, 0, false, false, 0},   {"w8a8static", QQ_WFMT_W8A8, 0, 0, false, false, 0.02f},
  };
  /* (n, k): ragged, fixture-like, and Qwen2.5-7B shapes (qkv fused, down). */
  static const int nk[][2] = {{48, 80}, {45, 84}, {200, 384}, {1024, 384}, {384, 1024}, {4608, 3584}, {3584, 18944}};
  static const int ms[] = {1, 3, 17, 64, 118, 256};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    const wcase *wc = &cases[ci];
    double worst_ratio = 0;
    for (size_t si = 0; si < sizeof nk / sizeof nk[0]; si++) {
      const int n = nk[si][0], k = nk[si][1];
      const bool big = (size_t)n * k > 4000000;
      if (wc->fmt == QQ_WFMT_QINT && wc->group && k % wc->group) continue; /* groups must tile k here */
      built_weight bw;
      build_weight(wc, n, k, si % 2 == 0, &bw);
      qq_linear *lg = NULL, *lc = NULL;
      OK(qq_linear_create(gpu, &bw.d, &lg, &err));
      if (wc->fmt == QQ_WFMT_W8A8) OK(qq_linear_create(cpu, &bw.d, &lc, &err));
      /* to_f32 returns the weight values exactly (dense: after rounding to the activation dtype). */
      {
        float *wf = malloc((size_t)n * k * sizeof(float));
        OK(qq_linear_to_f32(lg, wf, NULL, &err));
        size_t bad = 0;
        for (size_t i = 0; i < (size_t)n * k; i++) {
          const float want = wc->fmt == QQ_WFMT_F32 || wc->fmt == QQ_WFMT_BF16 ? round_act(bw.wref[i], a) : bw.wref[i];
          if (wf[i] != want) bad++;
        }
        CHECK(bad == 0, "%s %s [%d,%d]: to_f32 differs in %zu values", qq_act_dtype_name(a), wc->name, n, k, bad);
        free(wf);
      }
      for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
        const int m = ms[mi];
        /* the fp64 host reference is slow: the 7B shapes run in bf16 mode at m = 1 and 17 only */
        if (big && (a != QQ_ACT_BF16 || (m != 1 && m != 17))) continue;
        float *x = rand_act((size_t)m * k, a, 1.0f);
        void *dx = up(gpu, x, (size_t)m * k), *dy = NULL;
        OK(qq_backend_alloc(gpu, (size_t)m * n, &dy, &err));
        OK(qq_op_matmul(gpu, lg, dx, m, dy, &err));
        float *y = down(gpu, dy, (size_t)m * n);
        const size_t mn = (size_t)m * n;
        if (wc->fmt == QQ_WFMT_W8A8) {
          float *yc = malloc(mn * sizeof(float));
          OK(qq_op_matmul(cpu, lc, x, m, yc, &err));
          const double e = rel_err_f(y, yc, mn);
          CHECK(e <= act_eps(a), "%s %s m=%d [%d,%d]: W8A8 vs CPU %.3g > %.3g", qq_act_dtype_name(a), wc->name, m, n, k,
                e, act_eps(a));
          free(yc);
        } else {
          double *ref = malloc(mn * sizeof(double));
          float *naive = malloc(mn * sizeof(float));
          float *wn = malloc((size_t)n * k * sizeof(float));
          for (size_t i = 0; i < (size_t)n * k; i++) wn[i] = round_act(bw.wref[i], a);
          for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
              double acc = 0;
              float accf = 0;
              const float *xr = x + (size_t)i * k;
              const float *wr = bw.wref + (size_t)j * k, *wnr = wn + (size_t)j * k;
              const bool dense = wc->fmt == QQ_WFMT_F32 || wc->fmt == QQ_WFMT_BF16;
              for (int c = 0; c < k; c++) {
                acc += (double)xr[c] * (dense ? (double)round_act(wr[c], a) : (double)wr[c]);
                accf += xr[c] * wnr[c];
              }
              const double b = bw.d.bias ? bw.d.bias[j] : 0.0;
              ref[(size_t)i * n + j] = acc + b;
              naive[(size_t)i * n + j] = round_act(accf + (float)b, a);
            }
          const double eg = rel_err(y, ref, mn), en = rel_err(naive, ref, mn);
          const double ratio = eg / (en + 1e-12);
          if (ratio > worst_ratio) worst_ratio = ratio;
          CHECK(eg <= 2 * en + 1e-7, "%s %s m=%d [%d,%d]: error %.3g > 2 x naive %.3g", qq_act_dtype_name(a), wc->name,
                m, n, k, eg, en);
          free(ref);
          free(naive);
          free(wn);
        }
        free(x);
        free(y);
        qq_backend_release(gpu, dx);
        qq_backend_release(gpu, dy);
      }
      qq_linear_free(lg);
      qq_linear_free(lc);
      free_weight(&bw);
    }
    printf("  matmul %-5s %-11s ok (worst error / naive error %.2f)\n", qq_act_dtype_name(a), wc->name, worst_ratio);
  }
}

/* ---------------------------------------------------------------------------------------------------
 * Small ops against the CPU backend on identical (activation-rounded) inputs. */

static void compare_vs_cpu(const char *what, qq_act_dtype a, const float *g, const float *c, size_t n, double tol) {
  const double e = rel_err_f(g, c, n);
  CHECK(e <= tol, "%s %s: relative error %.3g > %.3g", qq_act_dtype_name(a), what, e, tol);
}

static void test_small_ops(qq_backend *gpu, qq_backend *cpu, qq_act_dtype a) {
  const double tol = a == QQ_ACT_F32 ? 2e-6 : 2 * act_eps(a);
  const int rows = 7;
  static const int dims[] = {64, 384, 3584};
  for (size_t di = 0; di < 3; di++) {
    const int dim = dims[di];
    const size_t n = (size_t)rows * dim;
    float *x = rand_act(n, a, 3.0f), *w = rand_act((size_t)dim, a, 1.0f), *x2 = rand_act(n, a, 1.0f);
    float *outc = malloc(n * sizeof(float));
    void *dx = up(gpu, x, n), *dw = up(gpu, w, (size_t)dim), *dx2 = up(gpu, x2, n), *dout = NULL;
    OK(qq_backend_alloc(gpu, n, &dout, &err));
    /* rmsnorm (out of place and in place) */
    OK(qq_op_rmsnorm(cpu, x, w, rows, dim, 1e-6f, outc, &err));
    OK(qq_op_rmsnorm(gpu, dx, dw, rows, dim, 1e-6f, dout, &err));
    float *g = down(gpu, dout, n);
    compare_vs_cpu("rmsnorm", a, g, outc, n, tol);
    free(g);
    /* add */
    memcpy(outc, x, n * sizeof(float));
    OK(qq_op_add(cpu, outc, x2, n, &err));
    OK(qq_op_add(gpu, dx, dx2, n, &err));
    g = down(gpu, dx, n);
    compare_vs_cpu("add", a, g, outc, n, tol);
    free(g);
    OK(qq_backend_upload_f32(gpu, x, n, dx, &err));
    /* silu_mul, in place on gate */
    OK(qq_op_silu_mul(cpu, x, x2, n, outc, &err));
    OK(qq_op_silu_mul(gpu, dx, dx2, n, dx, &err));
    g = down(gpu, dx, n);
    compare_vs_cpu("silu_mul", a, g, outc, n, tol);
    free(g);
    OK(qq_backend_upload_f32(gpu, x, n, dx, &err));
    /* gather_rows: exact */
    int32_t sel[5] = {6, 0, 3, 3, 1};
    OK(qq_op_gather_rows(gpu, dx, sel, 5, dim, dout, &err));
    g = down(gpu, dout, (size_t)5 * dim);
    size_t bad = 0;
    for (int i = 0; i < 5; i++)
      for (int c = 0; c < dim; c++)
        if (g[(size_t)i * dim + c] != x[(size_t)sel[i] * dim + c]) bad++;
    CHECK(bad == 0, "%s gather_rows: %zu values differ", qq_act_dtype_name(a), bad);
    free(g);
    free(x); free(w); free(x2); free(outc);
    qq_backend_release(gpu, dx);
    qq_backend_release(gpu, dw);
    qq_backend_release(gpu, dx2);
    qq_backend_release(gpu, dout);
  }
  /* rope: positions up to 32k, theta 1e6, head_dim 8, 64 and 128, 4 heads, both frequency modes (in
   * BF16 mode a frequency one bf16 step away from the CPU's would turn the angle at 32k by ~1e2 rad). */
  static const int hds[] = {8, 64, 128};
  for (size_t hi = 0; hi < 6; hi++) {
    const int t = 9, heads = 4, hd = hds[hi % 3];
    const qq_rope_freq fm = hi < 3 ? QQ_ROPE_FREQ_EXACT : QQ_ROPE_FREQ_BF16;
    const size_t n = (size_t)t * heads * hd;
    int32_t pos[9];
    for (int i = 0; i < t; i++) pos[i] = i == 0 ? 0 : irand(32768);
    float *x = rand_act(n, a, 1.0f), *xc = malloc(n * sizeof(float));
    memcpy(xc, x, n * sizeof(float));
    void *dx = up(gpu, x, n);
    OK(qq_op_rope(cpu, xc, pos, t, heads, hd, 1e6f, fm, &err));
    OK(qq_op_rope(gpu, dx, pos, t, heads, hd, 1e6f, fm, &err));
    float *g = down(gpu, dx, n);
    compare_vs_cpu(fm == QQ_ROPE_FREQ_BF16 ? "rope (bf16 inv_freq)" : "rope", a, g, xc, n, tol);
    free(g); free(x); free(xc);
    qq_backend_release(gpu, dx);
  }
  /* embed from a bf16 table: rows rounded to the activation dtype, otherwise exact */
  {
    const int vocab = 1000, hid = 96, nt = 6;
    uint16_t *tb = malloc((size_t)vocab * hid * 2);
    for (size_t i = 0; i < (size_t)vocab * hid; i++) tb[i] = qq_f32_to_bf16(frand());
    qq_linear_desc d = {.format = QQ_WFMT_BF16, .n = vocab, .k = hid, .w = tb};
    qq_linear *tab;
    OK(qq_linear_create(gpu, &d, &tab, &err));
    int32_t toks[6] = {0, 999, 5, 5, 123, 777};
    void *dout;
    OK(qq_backend_alloc(gpu, (size_t)nt * hid, &dout, &err));
    OK(qq_op_embed(gpu, tab, toks, nt, dout, &err));
    float *g = down(gpu, dout, (size_t)nt * hid);
    size_t bad = 0;
    for (int i = 0; i < nt; i++)
      for (int c = 0; c < hid; c++)
        if (g[(size_t)i * hid + c] != round_act(qq_bf16_to_f32(tb[(size_t)toks[i] * hid + c]), a)) bad++;
    CHECK(bad == 0, "%s embed: %zu values differ", qq_act_dtype_name(a), bad);
    /* bad token id: a clean error, nothing launched */
    int32_t badtok = vocab;
    qq_error e2 = {0};
    CHECK(qq_op_embed(gpu, tab, &badtok, 1, dout, &e2) == QQ_ERR_RANGE, "embed: token %d not rejected", vocab);
    free(g);
    free(tb);
    qq_backend_release(gpu, dout);
    qq_linear_free(tab);
  }
  printf("  small ops %-5s ok\n", qq_act_dtype_name(a));
}

/* ---------------------------------------------------------------------------------------------------
 * Paged attention: a batch mixing prefill chunks (with and without past) and decode steps, shuffled
 * block tables, GQA; vs the CPU backend on the same (rounded) inputs; the cache rows written exactly. */

static void test_attention(qq_backend *gpu, qq_backend *cpu, qq_act_dtype a, int n_heads, int n_kv, int hd) {
  const int bt = 16, n_seqs = 5;
  const int n_new[5] = {1, 37, 1, 130, 3};
  const int n_past[5] = {700, 0, 0, 45, 2100};
  int total = 0, blocks_needed = 0;
  for (int s = 0; s < n_seqs; s++) {
    total += n_new[s];
    blocks_needed += (n_past[s] + n_new[s] + bt - 1) / bt;
  }
  const int n_blocks = blocks_needed + 11;
  int32_t *perm = malloc((size_t)n_blocks * sizeof(int32_t));
  for (int i = 0; i < n_blocks; i++) perm[i] = i;
  for (int i = n_blocks - 1; i > 0; i--) {
    int j = irand(i + 1), t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  qq_attn_seq seqs[5];
  int row = 0, used = 0;
  for (int s = 0; s < n_seqs; s++) {
    seqs[s].row = row;
    seqs[s].n_new = n_new[s];
    seqs[s].n_past = n_past[s];
    seqs[s].blocks = perm + used;
    row += n_new[s];
    used += (n_past[s] + n_new[s] + bt - 1) / bt;
  }
  const size_t cache_n = (size_t)n_blocks * bt * n_kv * hd;
  float *kc = rand_act(cache_n, a, 1.0f), *vc = rand_act(cache_n, a, 1.0f); /* the past: random */
  float *q = rand_act((size_t)total * n_heads * hd, a, 1.0f);
  float *k = rand_act((size_t)total * n_kv * hd, a, 1.0f), *v = rand_act((size_t)total * n_kv * hd, a, 1.0f);
  void *dkc = up(gpu, kc, cache_n), *dvc = up(gpu, vc, cache_n);
  void *dq = up(gpu, q, (size_t)total * n_heads * hd), *dk = up(gpu, k, (size_t)total * n_kv * hd);
  void *dv = up(gpu, v, (size_t)total * n_kv * hd), *dout;
  OK(qq_backend_alloc(gpu, (size_t)total * n_heads * hd, &dout, &err));
  float *outc = malloc((size_t)total * n_heads * hd * sizeof(float));
  qq_attn_params p = {.n_heads = n_heads, .n_kv_heads = n_kv, .head_dim = hd, .block_tokens = bt,
                      .scale = 1.0f / sqrtf((float)hd)};
  OK(qq_op_attention(cpu, &p, seqs, n_seqs, q, k, v, kc, vc, outc, &err));
  OK(qq_op_attention(gpu, &p, seqs, n_seqs, dq, dk, dv, dkc, dvc, dout, &err));
  float *g = down(gpu, dout, (size_t)total * n_heads * hd);
  /* bf16/fp16 flash attention rounds P to the dtype before P·V and the output once: a few units of the
   * dtype's rounding, relative. fp32: summation-order differences only. */
  const double tol = a == QQ_ACT_F32 ? 1e-5 : 4 * act_eps(a);
  char what[64];
  snprintf(what, sizeof what, "attention h%d/%d hd%d", n_heads, n_kv, hd);
  compare_vs_cpu(what, a, g, outc, (size_t)total * n_heads * hd, tol);
  float *gk = down(gpu, dkc, cache_n), *gv = down(gpu, dvc, cache_n);
  size_t bad = 0;
  for (size_t i = 0; i < cache_n; i++) bad += gk[i] != kc[i] || gv[i] != vc[i];
  CHECK(bad == 0, "%s %s: %zu cache values differ after the append", qq_act_dtype_name(a), what, bad);
  /* kv_copy: sequence 3's first 100 positions into fresh blocks (taken from the spare ones) */
  {
    int32_t dst[7];
    for (int i = 0; i < 7; i++) dst[i] = perm[blocks_needed + i];
    OK(qq_op_kv_copy(cpu, &p, kc, vc, seqs[3].blocks, dst, 100, &err));
    OK(qq_op_kv_copy(gpu, &p, dkc, dvc, seqs[3].blocks, dst, 100, &err));
    free(gk);
    free(gv);
    gk = down(gpu, dkc, cache_n);
    gv = down(gpu, dvc, cache_n);
    bad = 0;
    for (size_t i = 0; i < cache_n; i++) bad += gk[i] != kc[i] || gv[i] != vc[i];
    CHECK(bad == 0, "%s kv_copy: %zu cache values differ", qq_act_dtype_name(a), bad);
  }
  printf("  %-28s %-5s ok (rel err vs CPU %.2e)\n", what, qq_act_dtype_name(a),
         rel_err_f(g, outc, (size_t)total * n_heads * hd));
  free(g); free(gk); free(gv); free(kc); free(vc); free(q); free(k); free(v); free(outc); free(perm);
  qq_backend_release(gpu, dkc);
  qq_backend_release(gpu, dvc);
  qq_backend_release(gpu, dq);
  qq_backend_release(gpu, dk);
  qq_backend_release(gpu, dv);
  qq_backend_release(gpu, dout);
}

/* ---------------------------------------------------------------------------------------------------
 * Logit rows: qq_op_logits_reduce and qq_op_logits_topk against the CPU references on identical
 * (activation-rounded) rows: argmax, max, targets and candidates exactly; lse within 1e-5 relative;
 * the top-k row sums (exp and sum in double on both) within 1e-12. Rows with ties at the maximum,
 * few distinct values (ties at every top-k boundary), -inf entries and a ±0.0 top. */

static void logit_row(float *x, int n, int kind, qq_act_dtype a) {
  for (int j = 0; j < n; j++) x[j] = round_act(4.0f * (frand() + frand() + frand()), a);
  if (kind == 1 && n > 2) {
    float mx = -INFINITY;
    for (int j = 0; j < n; j++) mx = fmaxf(mx, x[j]);
    x[n / 3] = x[n / 2] = x[n - 1] = round_act(mx + 1.0f, a);
  } else if (kind == 2) {
    for (int j = 0; j < n; j++) x[j] = (float)(irand(5) - 2);
  } else if (kind == 3) {
    for (int j = 0; j < n; j += 3) x[j] = -INFINITY;
  } else if (kind == 4 && n > 3) {
    for (int j = 0; j < n; j++) x[j] = round_act(-fabsf(x[j]) - 0.25f, a);
    x[n - 2] = -0.0f;
    x[1] = 0.0f;
  }
}

static void test_logits(qq_backend *gpu, qq_backend *cpu, qq_act_dtype a) {
  static const int ns[] = {1, 3, 1000, 32000, 151936};
  static const int ks[] = {1, 2, 3, 50, 1000, 4096};
  double worst_lse = 0;
  for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
    const int n = ns[ni], R = 6;
    float *x = malloc((size_t)R * n * sizeof(float));
    for (int r = 0; r < R; r++) logit_row(x + (size_t)r * n, n, r % 5, a);
    void *dx = up(gpu, x, (size_t)R * n);
    /* the reduce: repeated rows, targets and none */
    enum { E = 9 };
    int32_t rows[E] = {5, 0, 0, 1, 2, 3, 3, 4, 2}, targets[E];
    for (int e = 0; e < E; e++) targets[e] = e == 2 ? -1 : irand(n);
    for (int with_lse = 0; with_lse < 2; with_lse++) {
      qq_logits_stats sg[E], sc[E];
      OK(qq_op_logits_reduce(cpu, x, n, rows, targets, E, with_lse, sc, &err));
      OK(qq_op_logits_reduce(gpu, dx, n, rows, targets, E, with_lse, sg, &err));
      for (int e = 0; e < E; e++) {
        CHECK(sg[e].argmax == sc[e].argmax, "%s reduce n=%d entry %d: argmax %d, cpu %d", qq_act_dtype_name(a), n, e,
              sg[e].argmax, sc[e].argmax);
        CHECK(sg[e].max == sc[e].max && sg[e].target == sc[e].target, "%s reduce n=%d entry %d: max %g/%g target %g/%g",
              qq_act_dtype_name(a), n, e, sg[e].max, sc[e].max, sg[e].target, sc[e].target);
        if (!with_lse) {
          CHECK(isnan(sg[e].lse), "%s reduce n=%d: lse %g without want_lse", qq_act_dtype_name(a), n, sg[e].lse);
          continue;
        }
        if (isinf(sc[e].lse) || isnan(sc[e].lse)) continue;
        const double rel = fabs(sg[e].lse - sc[e].lse) / fmax(1.0, fabs(sc[e].lse));
        worst_lse = fmax(worst_lse, rel);
        CHECK(rel <= 1e-5, "%s reduce n=%d entry %d: lse %.9g, cpu %.9g", qq_act_dtype_name(a), n, e, sg[e].lse,
              sc[e].lse);
      }
    }
    /* top-k with per-entry scales */
    const int32_t trows[E] = {3, 0, 1, 2, 4, 5, 2, 0, 1};
    const float scales[E] = {1.0f, 1.0f / 0.7f, 2.5f, 1.0f, 1.0f / 1.3f, 0.1f, 1.0f / 0.6f, 1.0f, 3.0f};
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
      const int k = ks[ki];
      if (k > n) continue;
      float *vg = malloc((size_t)E * k * sizeof(float)), *vc = malloc((size_t)E * k * sizeof(float));
      int32_t *ig = malloc((size_t)E * k * sizeof(int32_t)), *ic = malloc((size_t)E * k * sizeof(int32_t));
      double sg[E], sc[E];
      OK(qq_op_logits_topk(cpu, x, n, trows, scales, E, k, vc, ic, sc, &err));
      OK(qq_op_logits_topk(gpu, dx, n, trows, scales, E, k, vg, ig, sg, &err));
      size_t bad = 0;
      for (size_t i = 0; i < (size_t)E * k; i++) bad += ig[i] != ic[i] || vg[i] != vc[i];
      CHECK(bad == 0, "%s topk n=%d k=%d: %zu candidates differ", qq_act_dtype_name(a), n, k, bad);
      for (int e = 0; e < E; e++)
        CHECK(fabs(sg[e] - sc[e]) <= 1e-12 * sc[e] || (isnan(sg[e]) && isnan(sc[e])),
              "%s topk n=%d k=%d entry %d: sum %.17g, cpu %.17g", qq_act_dtype_name(a), n, k, e, sg[e], sc[e]);
      /* without sums, rows 0..count-1, scale 1 */
      OK(qq_op_logits_topk(cpu, x, n, NULL, NULL, R, k, vc, ic, NULL, &err));
      OK(qq_op_logits_topk(gpu, dx, n, NULL, NULL, R, k, vg, ig, NULL, &err));
      bad = 0;
      for (size_t i = 0; i < (size_t)R * k; i++) bad += ig[i] != ic[i] || vg[i] != vc[i];
      CHECK(bad == 0, "%s topk n=%d k=%d (scale 1): %zu candidates differ", qq_act_dtype_name(a), n, k, bad);
      free(vg); free(vc); free(ig); free(ic);
    }
    free(x);
    qq_backend_release(gpu, dx);
  }
  /* a perplexity window's worth of rows (one entry per row, no row list) */
  {
    const int n = 32000, R = 300;
    float *x = malloc((size_t)R * n * sizeof(float));
    for (int r = 0; r < R; r++) logit_row(x + (size_t)r * n, n, 0, a);
    void *dx = up(gpu, x, (size_t)R * n);
    int32_t *t = malloc((size_t)R * sizeof(int32_t));
    for (int r = 0; r < R; r++) t[r] = irand(n);
    qq_logits_stats *sg = malloc((size_t)R * sizeof *sg), *sc = malloc((size_t)R * sizeof *sc);
    OK(qq_op_logits_reduce(cpu, x, n, NULL, t, R, true, sc, &err));
    OK(qq_op_logits_reduce(gpu, dx, n, NULL, t, R, true, sg, &err));
    size_t bad = 0;
    for (int r = 0; r < R; r++) {
      const double rel = fabs(sg[r].lse - sc[r].lse) / fmax(1.0, fabs(sc[r].lse));
      worst_lse = fmax(worst_lse, rel);
      bad += sg[r].argmax != sc[r].argmax || sg[r].target != sc[r].target || rel > 1e-5;
    }
    CHECK(bad == 0, "%s reduce %d rows of %d: %zu rows differ", qq_act_dtype_name(a), R, n, bad);
    free(x); free(t); free(sg); free(sc);
    qq_backend_release(gpu, dx);
  }
  printf("  logits reduce/topk %-5s ok (worst lse rel err vs CPU %.2e)\n", qq_act_dtype_name(a), worst_lse);
}

int main(void) {
  qq_backend_options o = qq_backend_options_default();
  o.kind = QQ_DEVICE_CUDA;
  qq_backend *probe = NULL;
  if (qq_backend_create_opts(&o, &probe, &err) != QQ_OK) {
    printf("SKIP: no CUDA backend here (%s)\n", err.msg);
    return 77;
  }
  printf("device: %s\n", qq_backend_description(probe));
  qq_backend_free(probe);
  qq_backend *cpu = NULL;
  OK(qq_backend_create(QQ_DEVICE_CPU, 0, &cpu, &err));
  static const qq_act_dtype acts[] = {QQ_ACT_F32, QQ_ACT_BF16, QQ_ACT_F16};
  for (size_t ai = 0; ai < 3; ai++) {
    o.act = acts[ai];
    qq_backend *gpu = NULL;
    OK(qq_backend_create_opts(&o, &gpu, &err));
    test_small_ops(gpu, cpu, acts[ai]);
    test_logits(gpu, cpu, acts[ai]);
    test_attention(gpu, cpu, acts[ai], 6, 2, 64);
    test_attention(gpu, cpu, acts[ai], 28, 4, 128);
    test_attention(gpu, cpu, acts[ai], 8, 4, 8);
    test_attention(gpu, cpu, acts[ai], 7, 1, 64);
    test_matmul(gpu, cpu, acts[ai]);
    /* argument checks reach the caller as errors */
    qq_error e = {0};
    CHECK(qq_op_rope(gpu, NULL, NULL, 1, 1, 7, 1e4f, QQ_ROPE_FREQ_EXACT, &e) == QQ_ERR_INVALID_ARG, "rope odd head_dim not rejected");
    CHECK(qq_op_rope(gpu, NULL, NULL, 1, 1, 8, 1e4f, (qq_rope_freq)7, &e) == QQ_ERR_INVALID_ARG,
          "rope unknown frequency mode not rejected");
    qq_backend_free(gpu);
  }
  /* the CPU backend refuses non-fp32 activations */
  o.kind = QQ_DEVICE_CPU;
  o.act = QQ_ACT_BF16;
  qq_backend *bad = NULL;
  CHECK(qq_backend_create_opts(&o, &bad, &err) == QQ_ERR_UNSUPPORTED, "cpu backend accepted bf16");
  qq_backend_free(cpu);
  printf("%s: %d checks, %d failed\n", failures ? "FAIL" : "PASS", checks, failures);
  return failures ? 1 : 0;
}
