/* test_cpu_ops.c — the CPU backend's ops against the plain C references and against naive math:
 * dense formats, quantized (QINT, W8A8 exact integer path), paged attention, RoPE, argument checks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"
#include "testutil.h"

static uint64_t rng = 0x1234abcdu;
static float frand(void) { /* uniform in [-1, 1) */
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}
static float *rand_vec(size_t n) {
  float *v = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) v[i] = frand();
  return v;
}

static qq_backend *cpu(void) {
  qq_backend *be = NULL;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_backend_create(QQ_DEVICE_CPU, 1, &be, &err), &err);
  return be;
}

/* fp32 sgemm vs the double-accumulating reference: relative error ~ sqrt(k) * 2^-24; 1e-5 is ample. */
static void test_matmul_dense(void **s) {
  (void)s;
  qq_backend *be = cpu();
  qq_error err = {0};
  const int shapes[][3] = {{1, 7, 5}, {3, 17, 33}, {17, 64, 130}, {118, 40, 257}};
  for (size_t t = 0; t < QQ_ARRAY_LEN(shapes); t++) {
    int m = shapes[t][0], n = shapes[t][1], k = shapes[t][2];
    float *x = rand_vec((size_t)m * k), *w = rand_vec((size_t)n * k), *b = rand_vec((size_t)n);
    float *y = malloc((size_t)m * n * sizeof(float)), *ref = malloc((size_t)m * n * sizeof(float));
    uint16_t *wb = malloc((size_t)n * k * 2);
    for (size_t i = 0; i < (size_t)n * k; i++) wb[i] = qq_f32_to_bf16(w[i]);
    for (int fmt = 0; fmt < 2; fmt++) {
      qq_linear_desc d = {.format = fmt ? QQ_WFMT_BF16 : QQ_WFMT_F32, .n = n, .k = k, .w = fmt ? (void *)wb : w, .bias = b};
      if (fmt) /* the reference sees the bf16-rounded weights */
        for (size_t i = 0; i < (size_t)n * k; i++) w[i] = qq_bf16_to_f32(wb[i]);
      qq_linear *lin;
      QQ_ASSERT_OK(qq_linear_create(be, &d, &lin, &err), &err);
      QQ_ASSERT_OK(qq_op_matmul(be, lin, x, m, y, &err), &err);
      qq_ref_matmul_f32(x, w, b, m, n, k, ref);
      assert_true(qq_test_rel_err(y, ref, (size_t)m * n) < 1e-5);
      qq_linear_free(lin);
    }
    free(x); free(w); free(b); free(y); free(ref); free(wb);
  }
  qq_backend_free(be);
}

/* QINT: the backend's dequantized weights equal (code - zero) * scale exactly, for per-group,
 * per-channel, symmetric and act-order (g_idx) layouts; the matmul matches the reference. */
static void test_matmul_qint(void **s) {
  (void)s;
  qq_backend *be = cpu();
  qq_error err = {0};
  const int n = 24, k = 96, m = 5;
  const int groups[] = {32, 96};
  for (int gi = 0; gi < 2; gi++)
    for (int bits = 3; bits <= 8; bits += 1)
      for (int variant = 0; variant < 3; variant++) { /* 0 asym, 1 sym, 2 asym + shuffled g_idx */
        const int gs = groups[gi], ng = k / gs;
        uint8_t *codes = malloc((size_t)n * k), *zeros = malloc((size_t)n * ng);
        float *scales = malloc((size_t)n * ng * sizeof(float));
        int32_t *g_idx = malloc((size_t)k * sizeof(int32_t));
        for (int i = 0; i < n * k; i++) codes[i] = (uint8_t)((rng = rng * 6364136223846793005ull + 1) >> 40) % (1u << bits);
        for (int i = 0; i < n * ng; i++) {
          zeros[i] = (uint8_t)(i % (1 << bits));
          scales[i] = 0.01f + 0.001f * (float)i;
        }
        for (int c = 0; c < k; c++) g_idx[c] = (c * 7) % ng; /* a permuted assignment */
        qq_linear_desc d = {.format = QQ_WFMT_QINT, .n = n, .k = k, .w = codes, .bits = bits, .group_size = gs,
                            .n_groups = ng, .scales = scales, .zeros = variant == 1 ? NULL : zeros,
                            .g_idx = variant == 2 ? g_idx : NULL};
        qq_linear *lin;
        QQ_ASSERT_OK(qq_linear_create(be, &d, &lin, &err), &err);
        float *w = malloc((size_t)n * k * sizeof(float));
        QQ_ASSERT_OK(qq_linear_to_f32(lin, w, NULL, &err), &err);
        for (int r = 0; r < n; r++)
          for (int c = 0; c < k; c++) {
            int g = variant == 2 ? g_idx[c] : c / gs;
            int z = variant == 1 ? (1 << (bits - 1)) : zeros[r * ng + g];
            assert_true(w[r * k + c] == (float)(codes[r * k + c] - z) * scales[r * ng + g]);
          }
        float *x = rand_vec((size_t)m * k), *y = malloc((size_t)m * n * 4), *ref = malloc((size_t)m * n * 4);
        QQ_ASSERT_OK(qq_op_matmul(be, lin, x, m, y, &err), &err);
        qq_ref_matmul_f32(x, w, NULL, m, n, k, ref);
        assert_true(qq_test_rel_err(y, ref, (size_t)m * n) < 1e-5);
        qq_linear_free(lin);
        free(codes); free(zeros); free(scales); free(g_idx); free(w); free(x); free(y); free(ref);
      }
  qq_backend_free(be);
}

/* W8A8: the fast path (integer-valued fp32 sgemm in exact chunks) equals the int64 reference bit for
 * bit, including k > 1024 (chunked) and static activation scales. */
static void test_matmul_w8a8_exact(void **s) {
  (void)s;
  qq_backend *be = cpu();
  qq_error err = {0};
  const int shapes[][3] = {{1, 9, 64}, {7, 33, 1024}, {4, 16, 3000}};
  for (size_t t = 0; t < QQ_ARRAY_LEN(shapes); t++)
    for (int stat = 0; stat < 2; stat++) {
      int m = shapes[t][0], n = shapes[t][1], k = shapes[t][2];
      int8_t *wq = malloc((size_t)n * k);
      for (size_t i = 0; i < (size_t)n * k; i++) wq[i] = (int8_t)(i % 2 ? 127 : -127); /* worst case magnitudes */
      for (size_t i = 0; i < (size_t)n * k; i += 3) wq[i] = (int8_t)((int)(frand() * 127));
      float *sw = rand_vec((size_t)n), *x = rand_vec((size_t)m * k), *b = rand_vec((size_t)n);
      for (int i = 0; i < n; i++) sw[i] = fabsf(sw[i]) + 0.01f;
      qq_linear_desc d = {.format = QQ_WFMT_W8A8, .n = n, .k = k, .w = wq, .scales = sw, .bias = b,
                          .act_scale = stat ? 0.02f : 0.0f};
      qq_linear *lin;
      QQ_ASSERT_OK(qq_linear_create(be, &d, &lin, &err), &err);
      float *y = malloc((size_t)m * n * 4), *ref = malloc((size_t)m * n * 4);
      QQ_ASSERT_OK(qq_op_matmul(be, lin, x, m, y, &err), &err);
      qq_ref_matmul_w8a8(x, wq, sw, d.act_scale, b, m, n, k, ref);
      assert_memory_equal(y, ref, (size_t)m * n * sizeof(float));
      qq_linear_free(lin);
      free(wq); free(sw); free(x); free(b); free(y); free(ref);
    }
  qq_backend_free(be);
}

/* W8A8 weight code -128 (compressed-tensors' int8 range is [-128, 127]; llm-compressor writes it) is
 * accepted and stays exact at the largest products: every weight -128, every activation quantized to
 * -127, so each chunk of 1024 columns sums to 128 · 127 · 1024 (just below 2^24), for k within one chunk
 * and chunked. */
static void test_matmul_w8a8_minus128(void **s) {
  (void)s;
  qq_backend *be = cpu();
  qq_error err = {0};
  const int ks[] = {1024, 3000};
  for (size_t t = 0; t < QQ_ARRAY_LEN(ks); t++) {
    const int m = 2, n = 3, k = ks[t];
    int8_t *wq = malloc((size_t)n * k);
    float *x = malloc((size_t)m * k * sizeof(float));
    for (size_t i = 0; i < (size_t)n * k; i++) wq[i] = -128;
    wq[5] = 127;
    for (size_t i = 0; i < (size_t)m * k; i++) x[i] = -1.0f;
    float sw[3] = {1.0f, 0.5f, 0.25f};
    qq_linear_desc d = {.format = QQ_WFMT_W8A8, .n = n, .k = k, .w = wq, .scales = sw};
    qq_linear *lin;
    QQ_ASSERT_OK(qq_linear_create(be, &d, &lin, &err), &err);
    float y[6], ref[6];
    QQ_ASSERT_OK(qq_op_matmul(be, lin, x, m, y, &err), &err);
    qq_ref_matmul_w8a8(x, wq, sw, 0.0f, NULL, m, n, k, ref);
    assert_memory_equal(y, ref, sizeof y);
    /* x = -1 quantizes to -127 with scale 1/127: output 1 is 128 · 127 · k · (1/127) · 0.5 = 64 k */
    assert_true(fabsf(y[1] - 64.0f * (float)k) <= 1e-5f * 64.0f * (float)k);
    qq_linear_free(lin);
    free(wq);
    free(x);
  }
  qq_backend_free(be);
}

static void test_linear_rejects_bad_input(void **s) {
  (void)s;
  qq_backend *be = cpu();
  qq_error err = {0};
  qq_linear *lin = NULL;
  uint8_t codes[8] = {0, 1, 2, 16, 0, 0, 0, 0};
  float sc[2] = {1, 1};
  qq_linear_desc d = {.format = QQ_WFMT_QINT, .n = 2, .k = 4, .w = codes, .bits = 4, .group_size = 4, .n_groups = 1, .scales = sc};
  assert_int_equal(qq_linear_create(be, &d, &lin, &err), QQ_ERR_RANGE); /* 16 does not fit in 4 bits */
  assert_non_null(strstr(err.msg, "exceeds 4 bits"));
  codes[3] = 3;
  d.group_size = 2; /* 1 group of 2 cannot cover k = 4 */
  assert_int_equal(qq_linear_create(be, &d, &lin, &err), QQ_ERR_INVALID_ARG);
  int32_t gidx[4] = {0, 0, 5, 0};
  d.group_size = 4;
  d.g_idx = gidx;
  assert_int_equal(qq_linear_create(be, &d, &lin, &err), QQ_ERR_RANGE);
  int8_t w8[4] = {1, -128, 0, 0};
  qq_linear_desc d8 = {.format = QQ_WFMT_W8A8, .n = 1, .k = 4, .w = w8}; /* no scales */
  assert_int_equal(qq_linear_create(be, &d8, &lin, &err), QQ_ERR_INVALID_ARG);
  assert_null(lin);
  qq_backend_free(be);
}

/* Paged attention (blocks scattered in the cache, decode after prefill, two sequences in one call)
 * against a naive contiguous implementation in double. */
static void naive_attention(const float *q, const float *k, const float *v, int L, int T, int n_past, int nh, int nkv,
                            int hd, float *out) {
  /* q [T][nh][hd] for positions n_past..; k/v [L][nkv][hd] for positions 0..L-1 */
  for (int i = 0; i < T; i++)
    for (int h = 0; h < nh; h++) {
      int kh = h / (nh / nkv), last = n_past + i;
      double *w = malloc((size_t)(last + 1) * sizeof(double)), mx = -INFINITY, sum = 0;
      for (int j = 0; j <= last; j++) {
        double d = 0;
        for (int c = 0; c < hd; c++) d += (double)q[((size_t)i * nh + h) * hd + c] * k[((size_t)j * nkv + kh) * hd + c];
        w[j] = d / sqrt((double)hd);
        mx = fmax(mx, w[j]);
      }
      for (int j = 0; j <= last; j++) sum += (w[j] = exp(w[j] - mx));
      for (int c = 0; c < hd; c++) {
        double acc = 0;
        for (int j = 0; j <= last; j++) acc += w[j] / sum * v[((size_t)j * nkv + kh) * hd + c];
        out[((size_t)i * nh + h) * hd + c] = (float)acc;
      }
      free(w);
    }
}

static void test_attention_paged(void **s) {
  (void)s;
  qq_backend *be = cpu();
  qq_error err = {0};
  const int nh = 6, nkv = 2, hd = 16, bt = 4, nblocks = 32;
  qq_attn_params p = {.n_heads = nh, .n_kv_heads = nkv, .head_dim = hd, .block_tokens = bt, .scale = 1.0f / sqrtf(hd)};
  float *kc = calloc((size_t)nblocks * bt * nkv * hd, 4), *vc = calloc((size_t)nblocks * bt * nkv * hd, 4);
  /* seq A: 11 tokens prefilled then 1 decoded; seq B: 6 tokens; interleaved block ids. */
  int32_t blocks_a[4] = {7, 2, 30, 11}, blocks_b[2] = {5, 0};
  const int LA = 12, LB = 6;
  float *qa = rand_vec((size_t)LA * nh * hd), *ka = rand_vec((size_t)LA * nkv * hd), *va = rand_vec((size_t)LA * nkv * hd);
  float *qb = rand_vec((size_t)LB * nh * hd), *kb = rand_vec((size_t)LB * nkv * hd), *vb = rand_vec((size_t)LB * nkv * hd);
  /* step 1: A's first 11 tokens and B's 6 in one call (rows 0..10 then 11..16) */
  const int T1 = 11 + LB;
  float *q = malloc((size_t)T1 * nh * hd * 4), *k = malloc((size_t)T1 * nkv * hd * 4), *v = malloc((size_t)T1 * nkv * hd * 4);
  memcpy(q, qa, (size_t)11 * nh * hd * 4);
  memcpy(q + (size_t)11 * nh * hd, qb, (size_t)LB * nh * hd * 4);
  memcpy(k, ka, (size_t)11 * nkv * hd * 4);
  memcpy(k + (size_t)11 * nkv * hd, kb, (size_t)LB * nkv * hd * 4);
  memcpy(v, va, (size_t)11 * nkv * hd * 4);
  memcpy(v + (size_t)11 * nkv * hd, vb, (size_t)LB * nkv * hd * 4);
  qq_attn_seq seqs[2] = {{.row = 0, .n_new = 11, .n_past = 0, .blocks = blocks_a},
                         {.row = 11, .n_new = LB, .n_past = 0, .blocks = blocks_b}};
  float *out = malloc((size_t)T1 * nh * hd * 4), *ref = malloc((size_t)LA * nh * hd * 4);
  QQ_ASSERT_OK(qq_op_attention(be, &p, seqs, 2, q, k, v, kc, vc, out, &err), &err);
  naive_attention(qa, ka, va, 11, 11, 0, nh, nkv, hd, ref);
  assert_true(qq_test_rel_err(out, ref, (size_t)11 * nh * hd) < 1e-5);
  naive_attention(qb, kb, vb, LB, LB, 0, nh, nkv, hd, ref);
  assert_true(qq_test_rel_err(out + (size_t)11 * nh * hd, ref, (size_t)LB * nh * hd) < 1e-5);
  /* step 2: decode A's 12th token alone */
  qq_attn_seq dec = {.row = 0, .n_new = 1, .n_past = 11, .blocks = blocks_a};
  QQ_ASSERT_OK(qq_op_attention(be, &p, &dec, 1, qa + (size_t)11 * nh * hd, ka + (size_t)11 * nkv * hd,
                               va + (size_t)11 * nkv * hd, kc, vc, out, &err), &err);
  naive_attention(qa + (size_t)11 * nh * hd, ka, va, LA, 1, 11, nh, nkv, hd, ref);
  assert_true(qq_test_rel_err(out, ref, (size_t)nh * hd) < 1e-5);
  free(kc); free(vc); free(qa); free(ka); free(va); free(qb); free(kb); free(vb);
  free(q); free(k); free(v); free(out); free(ref);
  qq_backend_free(be);
}

/* The softmax's vectorized exponential against expf: within 2 ulp over [-87, 0] (a sweep of 2^20
 * points plus the ends and the shift by a non-zero max), e^-87 below, sum equal to the double sum. */
static int32_t ulp_diff(float a, float b) {
  int32_t ia, ib;
  memcpy(&ia, &a, 4);
  memcpy(&ib, &b, 4);
  return ia > ib ? ia - ib : ib - ia;
}

static void test_exp_shift_sum(void **s) {
  (void)s;
  const int32_t n = 1 << 20;
  float *v = malloc(sizeof(float) * (size_t)(n + 3));
  for (int32_t i = 0; i < n; i++) v[i] = 3.5f - 87.0f * (float)i / (float)(n - 1); /* minus 3.5 = [-87, 0] */
  v[n] = 3.5f;
  v[n + 1] = -200.0f;
  v[n + 2] = 3.5f - 1e-30f;
  float *e = malloc(sizeof(float) * (size_t)(n + 3));
  memcpy(e, v, sizeof(float) * (size_t)(n + 3));
  const double sum = qq_cpu_exp_shift_sum(e, n + 3, 3.5f);
  int32_t worst = 0;
  double ref_sum = 0;
  for (int32_t i = 0; i < n + 3; i++) {
    const float x = v[i] - 3.5f;
    if (i == n + 1) {
      assert_true(e[i] == expf(-87.0f)); /* clamped */
    } else {
      const int32_t d = ulp_diff(e[i], expf(x));
      if (d > worst) worst = d;
    }
    ref_sum += e[i];
  }
  assert_true(worst <= 2);
  assert_true(e[n] == 1.0f && e[n + 2] == 1.0f);
  assert_true(sum == ref_sum);
  free(v);
  free(e);
}

/* Prefill longer than QQ_CPU_ATTN_BLOCK (128) tokens after a cached prefix: the blocked causal path
 * (each block of new tokens against the keys its last token sees) against the naive one. */
static void test_attention_long_prefill(void **s) {
  (void)s;
  qq_backend *be = cpu();
  qq_error err = {0};
  const int nh = 4, nkv = 2, hd = 8, bt = 16, P = 40, T = 300, L = P + T, nblocks = (L + bt - 1) / bt;
  qq_attn_params p = {.n_heads = nh, .n_kv_heads = nkv, .head_dim = hd, .block_tokens = bt, .scale = 1.0f / sqrtf(hd)};
  float *kc = calloc((size_t)nblocks * bt * nkv * hd, 4), *vc = calloc((size_t)nblocks * bt * nkv * hd, 4);
  int32_t *blocks = malloc(sizeof(int32_t) * (size_t)nblocks);
  for (int b = 0; b < nblocks; b++) blocks[b] = nblocks - 1 - b; /* reversed: paged, not contiguous */
  float *q = rand_vec((size_t)L * nh * hd), *k = rand_vec((size_t)L * nkv * hd), *v = rand_vec((size_t)L * nkv * hd);
  float *out = malloc((size_t)L * nh * hd * 4), *ref = malloc((size_t)T * nh * hd * 4);
  qq_attn_seq first = {.row = 0, .n_new = P, .n_past = 0, .blocks = blocks};
  QQ_ASSERT_OK(qq_op_attention(be, &p, &first, 1, q, k, v, kc, vc, out, &err), &err);
  qq_attn_seq rest = {.row = 0, .n_new = T, .n_past = P, .blocks = blocks};
  QQ_ASSERT_OK(qq_op_attention(be, &p, &rest, 1, q + (size_t)P * nh * hd, k + (size_t)P * nkv * hd,
                               v + (size_t)P * nkv * hd, kc, vc, out, &err), &err);
  naive_attention(q + (size_t)P * nh * hd, k, v, L, T, P, nh, nkv, hd, ref);
  assert_true(qq_test_rel_err(out, ref, (size_t)T * nh * hd) < 1e-5);
  free(kc); free(vc); free(blocks); free(q); free(k); free(v); free(out); free(ref);
  qq_backend_free(be);
}

/* RoPE: position 0 is the identity, norms are preserved, and the dot product of two rotated vectors
 * depends only on the position difference. */
static void test_rope(void **s) {
  (void)s;
  qq_backend *be = cpu();
  qq_error err = {0};
  const int hd = 64;
  float *a = rand_vec(hd), *b = rand_vec(hd), a0[64], b0[64];
  memcpy(a0, a, sizeof a0);
  memcpy(b0, b, sizeof b0);
  int32_t p0 = 0;
  QQ_ASSERT_OK(qq_op_rope(be, a, &p0, 1, 1, hd, 10000.0f, QQ_ROPE_FREQ_EXACT, &err), &err);
  assert_memory_equal(a, a0, sizeof a0);
  double dots[2];
  const int32_t pairs[2][2] = {{5, 9}, {105, 109}};
  for (int t = 0; t < 2; t++) {
    float x[64], y[64];
    memcpy(x, a0, sizeof x);
    memcpy(y, b0, sizeof y);
    QQ_ASSERT_OK(qq_op_rope(be, x, &pairs[t][0], 1, 1, hd, 10000.0f, QQ_ROPE_FREQ_EXACT, &err), &err);
    QQ_ASSERT_OK(qq_op_rope(be, y, &pairs[t][1], 1, 1, hd, 10000.0f, QQ_ROPE_FREQ_EXACT, &err), &err);
    double d = 0, nx = 0, n0 = 0;
    for (int c = 0; c < hd; c++) {
      d += (double)x[c] * y[c];
      nx += (double)x[c] * x[c];
      n0 += (double)a0[c] * a0[c];
    }
    assert_true(fabs(nx - n0) < 1e-4 * n0);
    dots[t] = d;
  }
  assert_true(fabs(dots[0] - dots[1]) < 1e-4);
  free(a);
  free(b);
  qq_backend_free(be);
}

/* f rounded to bf16 (round to nearest, ties to even), for positive finite f: the nearer of the two bf16
 * neighbours, compared in double (written apart from qq_f32_to_bf16 on purpose). */
static float bf16_nearest(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  const uint32_t lo_bits = u & 0xffff0000u, hi_bits = lo_bits + 0x10000u;
  float lo, hi;
  memcpy(&lo, &lo_bits, 4);
  memcpy(&hi, &hi_bits, 4);
  const double dlo = (double)f - lo, dhi = (double)hi - f;
  if (dlo < dhi) return lo;
  if (dhi < dlo) return hi;
  return (lo_bits >> 16) & 1u ? hi : lo;
}

/* QQ_ROPE_FREQ_BF16: the rotation by pos * inv_freq_j with inv_freq_j = bf16(1 / powf(theta, 2j/hd)),
 * against a direct computation; QQ_ROPE_FREQ_EXACT with the exact frequencies; and the two modes
 * differ (at position 4000 by far more than rounding). Bad modes are refused. */
static void test_rope_freq_modes(void **s) {
  (void)s;
  qq_backend *be = cpu();
  qq_error err = {0};
  static const int hds[] = {64, 128};
  static const float thetas[] = {10000.0f, 1000000.0f};
  const int32_t pos[] = {0, 1, 7, 300, 4000, 32767};
  const int t = 6, heads = 3;
  for (int hi = 0; hi < 2; hi++)
    for (int ti = 0; ti < 2; ti++) {
      const int hd = hds[hi], half = hd / 2;
      const float theta = thetas[ti];
      const size_t n = (size_t)t * heads * hd;
      float *x0 = rand_vec(n), *got[2], *want[2];
      double max_rel_freq = 0;
      for (int mode = 0; mode < 2; mode++) {
        got[mode] = malloc(n * sizeof(float));
        want[mode] = malloc(n * sizeof(float));
        memcpy(got[mode], x0, n * sizeof(float));
        QQ_ASSERT_OK(qq_op_rope(be, got[mode], pos, t, heads, hd, theta,
                                mode ? QQ_ROPE_FREQ_BF16 : QQ_ROPE_FREQ_EXACT, &err), &err);
        for (int j = 0; j < half; j++) {
          const double exact = pow((double)theta, -2.0 * j / hd);
          double f = exact;
          if (mode) {
            f = bf16_nearest(1.0f / powf(theta, (float)(2 * j) / (float)hd));
            const double r = fabs(f - exact) / exact;
            if (r > max_rel_freq) max_rel_freq = r;
          }
          for (int i = 0; i < t; i++) {
            const double ang = (double)pos[i] * f;
            const float c = (float)cos(ang), sn = (float)sin(ang);
            for (int h = 0; h < heads; h++) {
              const size_t o = ((size_t)i * heads + h) * hd;
              const float a = x0[o + j], b = x0[o + j + half];
              want[mode][o + j] = a * c - b * sn;
              want[mode][o + j + half] = b * c + a * sn;
            }
          }
        }
        const double e = qq_test_rel_err(got[mode], want[mode], n);
        if (e > 1e-6) fail_msg("hd %d theta %g mode %d: rel err %.3e against the direct computation", hd, theta, mode, e);
      }
      /* The bf16 frequencies are within half a bf16 step (2^-8 relative) of the exact ones, and not equal. */
      assert_true(max_rel_freq > 1e-4 && max_rel_freq <= 0x1p-8);
      /* Position 0 is the identity in both modes; at 4000 the angles are apart by radians. */
      assert_memory_equal(got[0], got[1], (size_t)heads * hd * sizeof(float));
      const double d = qq_test_rel_err(got[1], got[0], n);
      if (d < 1e-2) fail_msg("hd %d theta %g: bf16 and exact frequencies give nearly the same result (%.3e)", hd, theta, d);
      free(x0);
      for (int mode = 0; mode < 2; mode++) {
        free(got[mode]);
        free(want[mode]);
      }
    }
  float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  const int32_t p1 = 3;
  assert_int_equal(qq_op_rope(be, v, &p1, 1, 1, 8, 10000.0f, (qq_rope_freq)2, &err), QQ_ERR_INVALID_ARG);
  qq_rope_freq f = QQ_ROPE_FREQ_EXACT;
  assert_true(qq_rope_freq_parse("bf16", &f) && f == QQ_ROPE_FREQ_BF16);
  assert_true(qq_rope_freq_parse("exact", &f) && f == QQ_ROPE_FREQ_EXACT);
  assert_false(qq_rope_freq_parse("BF16", &f) || qq_rope_freq_parse("", &f) || qq_rope_freq_parse(NULL, &f));
  assert_string_equal(qq_rope_freq_name(QQ_ROPE_FREQ_BF16), "bf16");
  qq_backend_free(be);
}

/* ---- logit rows ---- */

/* A row of n logits: gaussian-ish values, with (by `kind`) ties at the maximum, few distinct values
 * (many ties everywhere), -inf entries, or a -0.0 / +0.0 pair at the top. */
static void logits_row(float *x, int32_t n, int kind) {
  for (int32_t j = 0; j < n; j++) x[j] = 3.0f * (frand() + frand() + frand());
  if (kind == 1 && n > 2) { /* the maximum three times, the first copy not at 0 */
    float mx = -INFINITY;
    for (int32_t j = 0; j < n; j++) mx = fmaxf(mx, x[j]);
    x[n / 3] = x[n / 2] = x[n - 1] = mx + 1.0f;
  } else if (kind == 2) { /* 5 distinct values */
    for (int32_t j = 0; j < n; j++) x[j] = (float)((int)(fabsf(x[j]) * 10) % 5) - 2.0f;
  } else if (kind == 3) {
    for (int32_t j = 0; j < n; j += 3) x[j] = -INFINITY;
    if (n > 1) x[n - 1] = 0.5f;
  } else if (kind == 4 && n > 3) { /* everything negative but a -0.0 and a +0.0 */
    for (int32_t j = 0; j < n; j++) x[j] = -fabsf(x[j]) - 0.25f;
    x[n - 2] = -0.0f;
    x[1] = 0.0f;
  }
}

/* The reduce op against naive double math: max, argmax (lowest id of the maximum), the target, and
 * lse = log Σ exp in long double; a repeated row gives the same statistics. */
static void test_logits_reduce(void **s) {
  (void)s;
  qq_backend *be = cpu();
  qq_error err = {0};
  static const int32_t ns[] = {1, 3, 1000, 151936};
  for (size_t ni = 0; ni < QQ_ARRAY_LEN(ns); ni++) {
    const int32_t n = ns[ni], R = 5;
    float *x = malloc((size_t)R * n * sizeof(float));
    for (int r = 0; r < R; r++) logits_row(x + (size_t)r * n, n, r);
    int32_t rows[8] = {4, 0, 0, 1, 2, 3, 3, 3}, targets[8];
    for (int e = 0; e < 8; e++) targets[e] = e == 2 ? -1 : (int32_t)((frand() + 1.0f) * 0.5f * n) % n;
    qq_logits_stats st[8], st2[8];
    QQ_ASSERT_OK(qq_op_logits_reduce(be, x, n, rows, targets, 8, true, st, &err), &err);
    QQ_ASSERT_OK(qq_op_logits_reduce(be, x, n, rows, targets, 8, false, st2, &err), &err);
    for (int e = 0; e < 8; e++) {
      const float *xr = x + (size_t)rows[e] * n;
      int32_t best = 0;
      float mx = -INFINITY;
      for (int32_t j = 0; j < n; j++)
        if (xr[j] > mx) mx = xr[j], best = j;
      long double sum = 0;
      for (int32_t j = 0; j < n; j++) sum += expl((long double)xr[j] - mx);
      const double lse = (double)((long double)mx + logl(sum));
      assert_int_equal(st[e].argmax, best);
      assert_int_equal(st2[e].argmax, best);
      assert_true(st[e].max == mx && st2[e].max == mx);
      if (isnan(lse)) /* a row of -inf only */
        assert_true(isnan(st[e].lse));
      else if (!(fabs(st[e].lse - lse) <= 1e-11 * fmax(1.0, fabs(lse))))
        fail_msg("n %d entry %d: lse %.17g, long double %.17g", n, e, st[e].lse, lse);
      assert_true(isnan(st2[e].lse));
      assert_true(st[e].target == (targets[e] >= 0 ? xr[targets[e]] : 0.0f));
    }
    /* rows NULL: rows 0..count-1 */
    QQ_ASSERT_OK(qq_op_logits_reduce(be, x, n, NULL, NULL, R, true, st2, &err), &err);
    assert_int_equal(st2[4].argmax, st[0].argmax);
    assert_true(st2[1].lse == st[3].lse && st2[1].target == 0.0f);
    free(x);
  }
  /* argument checks */
  float x[4] = {1, 2, 3, 4};
  qq_logits_stats st[2];
  int32_t bad_t = 4, bad_r = -1;
  assert_int_equal(qq_op_logits_reduce(be, x, 4, NULL, &bad_t, 1, true, st, &err), QQ_ERR_RANGE);
  assert_int_equal(qq_op_logits_reduce(be, x, 4, &bad_r, NULL, 1, true, st, &err), QQ_ERR_RANGE);
  assert_int_equal(qq_op_logits_reduce(be, x, 0, NULL, NULL, 1, true, st, &err), QQ_ERR_INVALID_ARG);
  QQ_ASSERT_OK(qq_op_logits_reduce(be, x, 4, NULL, NULL, 0, true, NULL, &err), &err);
  qq_backend_free(be);
}

typedef struct naive_cand {
  float v;
  int32_t i;
} naive_cand;
static int naive_cmp(const void *pa, const void *pb) {
  const naive_cand *a = pa, *b = pb;
  if (a->v != b->v) return a->v > b->v ? -1 : 1;
  return (a->i > b->i) - (a->i < b->i);
}

/* The top-k op against a full sort of v = x · scale (ties by id, -0.0 as +0.0) and the sum of
 * exp(v − v_max) in long double, sorted order. */
static void test_logits_topk(void **s) {
  (void)s;
  qq_backend *be = cpu();
  qq_error err = {0};
  static const int32_t ns[] = {1, 3, 1000, 151936};
  static const int32_t ks[] = {1, 2, 3, 50, 1000, 4096};
  for (size_t ni = 0; ni < QQ_ARRAY_LEN(ns); ni++) {
    const int32_t n = ns[ni], R = 5;
    float *x = malloc((size_t)R * n * sizeof(float));
    for (int r = 0; r < R; r++) logits_row(x + (size_t)r * n, n, r);
    const int32_t rows[6] = {3, 0, 1, 2, 4, 2};
    const float scales[6] = {1.0f, 1.0f / 0.7f, 2.5f, 1.0f, 1.0f / 1.3f, 0.1f};
    naive_cand *all = malloc((size_t)n * sizeof *all);
    for (size_t ki = 0; ki < QQ_ARRAY_LEN(ks); ki++) {
      const int32_t k = ks[ki];
      if (k > n) continue;
      float *vals = malloc((size_t)6 * k * sizeof(float));
      int32_t *ids = malloc((size_t)6 * k * sizeof(int32_t));
      double sums[6];
      QQ_ASSERT_OK(qq_op_logits_topk(be, x, n, rows, scales, 6, k, vals, ids, sums, &err), &err);
      for (int e = 0; e < 6; e++) {
        const float *xr = x + (size_t)rows[e] * n;
        for (int32_t j = 0; j < n; j++) {
          float v = xr[j] * scales[e];
          all[j] = (naive_cand){v == 0.0f ? 0.0f : v, j};
        }
        qsort(all, (size_t)n, sizeof *all, naive_cmp);
        for (int32_t i = 0; i < k; i++) {
          assert_int_equal(ids[(size_t)e * k + i], all[i].i);
          assert_true(vals[(size_t)e * k + i] == all[i].v);
        }
        long double sum = 0;
        for (int32_t j = 0; j < n; j++) sum += expl((long double)all[j].v - all[0].v);
        if (isnan((double)sum))
          assert_true(isnan(sums[e]));
        else if (!(fabs(sums[e] - (double)sum) <= 1e-11 * (double)sum))
          fail_msg("n %d k %d entry %d: sum %.17g, long double %.17g", n, k, e, sums[e], (double)sum);
      }
      free(vals);
      free(ids);
    }
    free(all);
    free(x);
  }
  /* argument checks */
  float x[4] = {1, 2, 3, 4}, v[4], bad_scale = 0.0f, inf_scale = INFINITY;
  int32_t id[4];
  assert_int_equal(qq_op_logits_topk(be, x, 4, NULL, NULL, 1, 5, v, id, NULL, &err), QQ_ERR_INVALID_ARG);
  assert_int_equal(qq_op_logits_topk(be, x, 4, NULL, NULL, 1, 0, v, id, NULL, &err), QQ_ERR_INVALID_ARG);
  assert_int_equal(qq_op_logits_topk(be, x, 4, NULL, &bad_scale, 1, 2, v, id, NULL, &err), QQ_ERR_INVALID_ARG);
  assert_int_equal(qq_op_logits_topk(be, x, 4, NULL, &inf_scale, 1, 2, v, id, NULL, &err), QQ_ERR_INVALID_ARG);
  QQ_ASSERT_OK(qq_op_logits_topk(be, x, 4, NULL, NULL, 1, 4, v, id, NULL, &err), &err);
  assert_int_equal(id[0], 3);
  assert_int_equal(id[3], 0);
  qq_backend_free(be);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_matmul_dense),      cmocka_unit_test(test_matmul_qint),
      cmocka_unit_test(test_matmul_w8a8_exact), cmocka_unit_test(test_linear_rejects_bad_input),
      cmocka_unit_test(test_matmul_w8a8_minus128),
      cmocka_unit_test(test_attention_paged),   cmocka_unit_test(test_attention_long_prefill),
      cmocka_unit_test(test_exp_shift_sum),   cmocka_unit_test(test_rope), cmocka_unit_test(test_rope_freq_modes),
      cmocka_unit_test(test_logits_reduce),     cmocka_unit_test(test_logits_topk),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
