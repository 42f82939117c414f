/* test_sampler.c — sampling from logits in backend memory (qq_sampler_pick: argmax, top-k / top-p
 * candidates from qq_op_logits_topk, row downloads for the rest) draws exactly the tokens
 * qq_sampler_sample draws from the full rows, seed for seed and draw for draw, on the CPU backend
 * (whose ops are the references the CUDA kernels are tested against). Also: the candidates decide
 * most top-p draws of peaked rows by themselves, and a nucleus beyond them falls back without
 * touching the generator. No fixtures needed. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "testutil.h"

static uint64_t rng = 0x5eed5eedull;
static float frand(void) { /* uniform in [-1, 1) */
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

enum { ROW_PEAKED, ROW_GAUSS, ROW_TIES, ROW_FLAT, ROW_KINDS };

/* peaked: a handful of spikes well above a gaussian floor (an LM's usual next-token row); gauss: sd 3
 * (wide nuclei); ties: few distinct values, so every top-k boundary and the maximum are ties; flat:
 * uniform in [-1, 1) (a nucleus of most of the vocabulary). */
static void fill_row(float *x, int32_t n, int kind) {
  for (int32_t j = 0; j < n; j++) {
    switch (kind) {
      case ROW_PEAKED:
      case ROW_GAUSS: x[j] = 3.0f * (frand() + frand() + frand()); break;
      case ROW_TIES: x[j] = (float)((int)((frand() + 1.0f) * 3.0f)) * 0.75f; break;
      default: x[j] = frand(); break;
    }
  }
  if (kind == ROW_PEAKED)
    for (int s = 0; s < 12 && s < n; s++) x[(int32_t)((frand() + 1.0f) * 0.5f * n) % n] = 14.0f + 2.0f * frand();
}

static const qq_sampling configs[] = {
    {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 1},       /* greedy */
    {.temperature = 1.0f, .top_k = 1, .top_p = 1.0f, .seed = 2},       /* top-1 (draws, always the max) */
    {.temperature = 0.7f, .top_k = 5, .top_p = 1.0f, .seed = 3},
    {.temperature = 1.0f, .top_k = 50, .top_p = 1.0f, .seed = 4},
    {.temperature = 1.3f, .top_k = 1000, .top_p = 1.0f, .seed = 5},
    {.temperature = 1.0f, .top_k = 4096, .top_p = 1.0f, .seed = 6},    /* QQ_TOPK_MAX */
    {.temperature = 1.0f, .top_k = 5000, .top_p = 1.0f, .seed = 7},    /* beyond: the row */
    {.temperature = 1.0f, .top_k = 40, .top_p = 0.5f, .seed = 8},      /* top-k then top-p */
    {.temperature = 0.8f, .top_k = 0, .top_p = 0.9f, .seed = 9},       /* top-p over the whole row */
    {.temperature = 1.0f, .top_k = 0, .top_p = 0.95f, .seed = 10},
    {.temperature = 0.6f, .top_k = 0, .top_p = 0.3f, .seed = 11},
    {.temperature = 1.5f, .top_k = 0, .top_p = 0.99f, .seed = 12},
    {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 13},      /* plain temperature: the row */
    {.temperature = 0.9f, .top_k = 200000, .top_p = 0.9f, .seed = 14}, /* top_k >= n: top-p alone */
};
#define N_CONFIGS ((int32_t)QQ_ARRAY_LEN(configs))

/* Every config at once in one qq_sampler_pick call (a batch of mixed samplers, as the service's engine
 * makes), against qq_sampler_sample on the same rows with twin samplers. */
static void check_pick_equals_full(int32_t n, int draws) {
  qq_error err = {0};
  qq_backend *be = NULL;
  QQ_ASSERT_OK(qq_backend_create(QQ_DEVICE_CPU, 1, &be, &err), &err);
  qq_sampler *a[N_CONFIGS], *b[N_CONFIGS];
  for (int32_t c = 0; c < N_CONFIGS; c++) {
    QQ_ASSERT_OK(qq_sampler_create(&configs[c], &a[c], &err), &err);
    QQ_ASSERT_OK(qq_sampler_create(&configs[c], &b[c], &err), &err);
  }
  void *buf = NULL;
  QQ_ASSERT_OK(qq_backend_alloc(be, (size_t)N_CONFIGS * n, &buf, &err), &err);
  float *host = malloc((size_t)N_CONFIGS * n * sizeof(float));
  int32_t rows[N_CONFIGS], tokens[N_CONFIGS];
  for (int32_t c = 0; c < N_CONFIGS; c++) rows[c] = N_CONFIGS - 1 - c; /* any order of rows */
  long same_as_argmax = 0;
  for (int d = 0; d < draws; d++) {
    for (int32_t r = 0; r < N_CONFIGS; r++) fill_row(host + (size_t)r * n, n, (d + r) % ROW_KINDS);
    QQ_ASSERT_OK(qq_backend_upload_f32(be, host, (size_t)N_CONFIGS * n, buf, &err), &err);
    QQ_ASSERT_OK(qq_sampler_pick(be, buf, n, b, rows, N_CONFIGS, tokens, &err), &err);
    for (int32_t c = 0; c < N_CONFIGS; c++) {
      const int32_t want = qq_sampler_sample(a[c], host + (size_t)rows[c] * n, n);
      if (tokens[c] != want)
        fail_msg("n %d draw %d config %d (T %g top_k %d top_p %g), row kind %d: picked %d, full row %d", n, d, c,
                 (double)configs[c].temperature, configs[c].top_k, (double)configs[c].top_p,
                 (d + rows[c]) % ROW_KINDS, tokens[c], want);
      if (c == 0) {
        const float *xr = host + (size_t)rows[c] * n;
        int32_t best = 0;
        for (int32_t j = 1; j < n; j++)
          if (xr[j] > xr[best]) best = j;
        same_as_argmax += tokens[c] == best;
      }
    }
  }
  assert_int_equal(same_as_argmax, draws);
  for (int32_t c = 0; c < N_CONFIGS; c++) {
    qq_sampler_free(a[c]);
    qq_sampler_free(b[c]);
  }
  qq_backend_release(be, buf);
  free(host);
  qq_backend_free(be);
}

static void test_pick_n7(void **s) { (void)s; check_pick_equals_full(7, 400); }
static void test_pick_n1(void **s) { (void)s; check_pick_equals_full(1, 50); }
static void test_pick_n1000(void **s) { (void)s; check_pick_equals_full(1000, 300); }
static void test_pick_n151936(void **s) { (void)s; check_pick_equals_full(151936, 16); }

/* The candidate path on its own: with peaked rows, top-p over the whole vocabulary is decided by the
 * candidates (no row download) in nearly every draw and agrees with the full row; with flat rows the
 * nucleus lies beyond them: -1, and the generator was not advanced. */
static void test_candidates_decide(void **s) {
  (void)s;
  qq_error err = {0};
  qq_backend *be = NULL;
  QQ_ASSERT_OK(qq_backend_create(QQ_DEVICE_CPU, 1, &be, &err), &err);
  const int32_t n = 151936;
  float *x = malloc((size_t)n * sizeof(float));
  qq_sampling sp = {.temperature = 0.8f, .top_k = 0, .top_p = 0.9f, .seed = 77};
  qq_sampler *a, *b;
  QQ_ASSERT_OK(qq_sampler_create(&sp, &a, &err), &err);
  QQ_ASSERT_OK(qq_sampler_create(&sp, &b, &err), &err);
  float scale;
  bool want_total;
  const int32_t k = qq_sampler_candidates_wanted(b, n, &scale, &want_total);
  assert_true(k > 0 && k <= QQ_TOPK_MAX && want_total);
  assert_true(scale == 1.0f / 0.8f);
  float *vals = malloc((size_t)k * sizeof(float));
  int32_t *ids = malloc((size_t)k * sizeof(int32_t));
  int decided = 0;
  const int draws = 40;
  for (int d = 0; d < draws; d++) {
    fill_row(x, n, ROW_PEAKED);
    double sum;
    QQ_ASSERT_OK(qq_op_logits_topk(be, x, n, NULL, &scale, 1, k, vals, ids, &sum, &err), &err);
    int32_t t = qq_sampler_sample_candidates(b, vals, ids, k, n, sum);
    if (t >= 0) decided++;
    else t = qq_sampler_sample(b, x, n);
    assert_int_equal(t, qq_sampler_sample(a, x, n));
  }
  assert_true(decided >= draws - 2);
  /* flat row: the nucleus holds ~90 % of the vocabulary */
  fill_row(x, n, ROW_FLAT);
  double sum;
  QQ_ASSERT_OK(qq_op_logits_topk(be, x, n, NULL, &scale, 1, k, vals, ids, &sum, &err), &err);
  assert_int_equal(qq_sampler_sample_candidates(b, vals, ids, k, n, sum), -1);
  assert_int_equal(qq_sampler_sample(b, x, n), qq_sampler_sample(a, x, n)); /* still in step */
  /* plain temperature never decides from candidates; greedy takes the first */
  qq_sampling pt = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 1};
  qq_sampler *c;
  QQ_ASSERT_OK(qq_sampler_create(&pt, &c, &err), &err);
  assert_int_equal(qq_sampler_candidates_wanted(c, n, &scale, &want_total), -1);
  assert_int_equal(qq_sampler_sample_candidates(c, vals, ids, k, n, sum), -1);
  qq_sampler_free(c);
  qq_sampling g = qq_sampling_default();
  QQ_ASSERT_OK(qq_sampler_create(&g, &c, &err), &err);
  assert_int_equal(qq_sampler_candidates_wanted(c, n, &scale, &want_total), 0);
  assert_int_equal(qq_sampler_sample_candidates(c, vals, ids, k, n, sum), ids[0]);
  qq_sampler_free(c);
  qq_sampler_free(a);
  qq_sampler_free(b);
  free(vals);
  free(ids);
  free(x);
  qq_backend_free(be);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pick_n1),    cmocka_unit_test(test_pick_n7),          cmocka_unit_test(test_pick_n1000),
      cmocka_unit_test(test_pick_n151936), cmocka_unit_test(test_candidates_decide),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
