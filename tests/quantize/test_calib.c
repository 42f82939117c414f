/* test_calib.c — the staged (group by group) layer pass of calibration/ on the real qwen2-tiny-lm:
 * with unchanged weights it gives exactly the statistics and outputs of the one-pass functions,
 * recomputing down_proj's inputs gives the same as keeping them, the weights put into the model
 * between stages are the ones the next stage sees, and out-of-order calls are refused; the one-pass
 * statistics (run as the layer's parts) equal what a whole-layer forward's capture callback sees. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calibration.h"
#include "model.h"
#include "testutil.h"

enum { SAMPLES = 3, SEQLEN = 40, LAYER = 2 };

static qq_model *load(void) {
  qq_model_options o = qq_model_options_default();
  o.device = QQ_DEVICE_CPU;
  o.load_tokenizer = false;
  qq_error err = {0};
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", qq_test_fixture("models/qwen2-tiny-lm"));
  qq_model *m = NULL;
  QQ_ASSERT_OK(qq_model_load(dir, &o, &m, &err), &err);
  return m;
}

static int32_t tokens[SAMPLES * SEQLEN];
static qq_calib_data data = {.n_samples = SAMPLES, .seqlen = SEQLEN, .tokens = tokens};

static int setup(void **s) {
  (void)s;
  uint64_t r = 12345;
  for (int i = 0; i < SAMPLES * SEQLEN; i++) {
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    tokens[i] = (int32_t)((r >> 33) % 8000) + 5;
  }
  return 0;
}

/* Activations at the input of LAYER: embedding then the layers before it. */
static qq_calib_acts *acts_at(qq_model *m) {
  qq_error err = {0};
  qq_calib_acts *a = NULL;
  QQ_ASSERT_OK(qq_calib_acts_create(m, &data, &a, &err), &err);
  for (int32_t l = 0; l < LAYER; l++) QQ_ASSERT_OK(qq_calib_layer_advance(m, l, a, &err), &err);
  return a;
}

static void assert_stats_equal(const qq_calib_stats *a, const qq_calib_stats *b) {
  assert_int_equal(a->k, b->k);
  assert_int_equal(a->tokens, b->tokens);
  assert_memory_equal(a->abs_max, b->abs_max, sizeof(float) * (size_t)a->k);
  assert_memory_equal(a->abs_mean, b->abs_mean, sizeof(float) * (size_t)a->k);
  assert_non_null(a->h);
  assert_non_null(b->h);
  assert_memory_equal(a->h, b->h, sizeof(double) * (size_t)a->k * a->k);
}

/* Unchanged weights: staged stats of every input equal qq_calib_layer_stats's, and after the four
 * advances the activations equal qq_calib_layer_advance's. Run with the down_proj inputs kept and
 * recomputed (max_store 1 byte). */
static void check_staged_equals_one_pass(size_t max_store) {
  qq_error err = {0};
  qq_model *m = load();
  qq_calib_acts *a = acts_at(m), *b = acts_at(m);
  qq_calib_stats ref[QQ_CIN_COUNT], got[QQ_CIN_COUNT];
  QQ_ASSERT_OK(qq_calib_layer_stats(m, LAYER, b, 0xFu, true, ref, &err), &err);
  QQ_ASSERT_OK(qq_calib_layer_advance(m, LAYER, b, &err), &err);
  qq_calib_staged *p = NULL;
  QQ_ASSERT_OK(qq_calib_staged_begin(m, LAYER, a, max_store, &p, &err), &err);
  for (int g = 0; g < QQ_CIN_COUNT; g++) {
    QQ_ASSERT_OK(qq_calib_staged_stats(p, (qq_calib_input)g, -1, got, &err), &err);
    for (int o = 0; o < QQ_CIN_COUNT; o++)
      if (o != g) assert_null(got[o].abs_max); /* only the asked input */
    assert_stats_equal(&got[g], &ref[g]);
    qq_calib_stats_free(got);
    QQ_ASSERT_OK(qq_calib_staged_advance(p, (qq_calib_input)g, &err), &err);
  }
  qq_calib_staged_end(p);
  /* Same outputs: the next layer's statistics of its q/k/v input are computed from them alone. */
  qq_calib_stats sa[QQ_CIN_COUNT], sb[QQ_CIN_COUNT];
  QQ_ASSERT_OK(qq_calib_layer_stats(m, LAYER + 1, a, 1u << QQ_CIN_QKV, true, sa, &err), &err);
  QQ_ASSERT_OK(qq_calib_layer_stats(m, LAYER + 1, b, 1u << QQ_CIN_QKV, true, sb, &err), &err);
  assert_stats_equal(&sa[QQ_CIN_QKV], &sb[QQ_CIN_QKV]);
  qq_calib_stats_free(sa);
  qq_calib_stats_free(sb);
  qq_calib_stats_free(ref);
  qq_calib_acts_free(a);
  qq_calib_acts_free(b);
  qq_model_free(m);
}

static void test_staged_keeps_down_inputs(void **s) {
  (void)s;
  check_staged_equals_one_pass(0);
}
static void test_staged_recomputes_down_inputs(void **s) {
  (void)s;
  check_staged_equals_one_pass(1);
}

/* A weight put into the model after a group's statistics is what its advance uses: zeroing v_proj
 * makes every attention output, hence o_proj's input, exactly zero. */
static void test_staged_sees_new_weights(void **s) {
  (void)s;
  qq_error err = {0};
  qq_model *m = load();
  qq_calib_acts *a = acts_at(m);
  qq_calib_staged *p = NULL;
  qq_calib_stats st[QQ_CIN_COUNT];
  QQ_ASSERT_OK(qq_calib_staged_begin(m, LAYER, a, 0, &p, &err), &err);
  QQ_ASSERT_OK(qq_calib_staged_stats(p, QQ_CIN_QKV, 0, st, &err), &err);
  assert_null(st[QQ_CIN_QKV].h);
  qq_calib_stats_free(st);
  const qq_config *c = qq_model_config(m);
  const int32_t n = c->num_kv_heads * c->head_dim, k = c->hidden_size;
  float *w = calloc((size_t)n * k, sizeof(float)), *bias = calloc((size_t)n, sizeof(float));
  qq_linear_desc d = {.format = QQ_WFMT_F32, .n = n, .k = k, .w = w, .bias = bias};
  QQ_ASSERT_OK(qq_model_set_linear(m, LAYER, QQ_LIN_V, &d, &err), &err);
  QQ_ASSERT_OK(qq_calib_staged_advance(p, QQ_CIN_QKV, &err), &err);
  QQ_ASSERT_OK(qq_calib_staged_stats(p, QQ_CIN_O, 0, st, &err), &err);
  float mx = 0;
  for (int32_t j = 0; j < st[QQ_CIN_O].k; j++) mx = fmaxf(mx, st[QQ_CIN_O].abs_max[j]);
  assert_true(mx == 0.0f);
  assert_int_equal(st[QQ_CIN_O].tokens, SAMPLES * SEQLEN);
  qq_calib_stats_free(st);
  qq_calib_staged_end(p);
  free(w);
  free(bias);
  qq_calib_acts_free(a);
  qq_model_free(m);
}

/* h_samples = 1: XᵀX of the first sample only (equal to the one-pass H over a one-sample set), the
 * maxima and means still over every sample. */
static void test_staged_h_of_first_samples(void **s) {
  (void)s;
  qq_error err = {0};
  qq_model *m = load();
  qq_calib_acts *a = acts_at(m), *one = NULL;
  qq_calib_data d1 = data;
  d1.n_samples = 1;
  QQ_ASSERT_OK(qq_calib_acts_create(m, &d1, &one, &err), &err);
  for (int32_t l = 0; l < LAYER; l++) QQ_ASSERT_OK(qq_calib_layer_advance(m, l, one, &err), &err);
  qq_calib_stats ref[QQ_CIN_COUNT], all[QQ_CIN_COUNT], got[QQ_CIN_COUNT];
  QQ_ASSERT_OK(qq_calib_layer_stats(m, LAYER, one, 1u << QQ_CIN_QKV, true, ref, &err), &err);
  QQ_ASSERT_OK(qq_calib_layer_stats(m, LAYER, a, 1u << QQ_CIN_QKV, true, all, &err), &err);
  qq_calib_staged *p = NULL;
  QQ_ASSERT_OK(qq_calib_staged_begin(m, LAYER, a, 0, &p, &err), &err);
  QQ_ASSERT_OK(qq_calib_staged_stats(p, QQ_CIN_QKV, 1, got, &err), &err);
  const int32_t k = got[QQ_CIN_QKV].k;
  assert_int_equal(got[QQ_CIN_QKV].h_tokens, SEQLEN);
  assert_int_equal(got[QQ_CIN_QKV].tokens, SAMPLES * SEQLEN);
  assert_memory_equal(got[QQ_CIN_QKV].h, ref[QQ_CIN_QKV].h, sizeof(double) * (size_t)k * k);
  assert_memory_equal(got[QQ_CIN_QKV].abs_max, all[QQ_CIN_QKV].abs_max, sizeof(float) * (size_t)k);
  assert_int_equal(all[QQ_CIN_QKV].h_tokens, SAMPLES * SEQLEN);
  qq_calib_stats_free(got);
  qq_calib_stats_free(ref);
  qq_calib_stats_free(all);
  qq_calib_staged_end(p);
  qq_calib_acts_free(one);
  qq_calib_acts_free(a);
  qq_model_free(m);
}

static void test_staged_order_enforced(void **s) {
  (void)s;
  qq_error err = {0};
  qq_model *m = load();
  qq_calib_acts *a = acts_at(m);
  qq_calib_staged *p = NULL;
  qq_calib_stats st[QQ_CIN_COUNT];
  assert_int_equal(qq_calib_staged_begin(m, 99, a, 0, &p, &err), QQ_ERR_INVALID_ARG);
  assert_non_null(strstr(err.msg, "layer 99"));
  QQ_ASSERT_OK(qq_calib_staged_begin(m, LAYER, a, 0, &p, &err), &err);
  assert_int_equal(qq_calib_staged_stats(p, QQ_CIN_O, 0, st, &err), QQ_ERR_INVALID_ARG);
  assert_non_null(strstr(err.msg, "0 group(s) advanced"));
  assert_int_equal(qq_calib_staged_advance(p, QQ_CIN_GATEUP, &err), QQ_ERR_INVALID_ARG);
  QQ_ASSERT_OK(qq_calib_staged_advance(p, QQ_CIN_QKV, &err), &err);
  assert_int_equal(qq_calib_staged_advance(p, QQ_CIN_QKV, &err), QQ_ERR_INVALID_ARG); /* twice */
  assert_int_equal(qq_calib_staged_stats(p, (qq_calib_input)7, 0, st, &err), QQ_ERR_INVALID_ARG);
  qq_calib_staged_end(p);
  qq_calib_acts_free(a);
  qq_model_free(m);
}

/* qq_calib_layer_stats runs the layer as its parts (so that it works on any backend); on the CPU the
 * inputs it sees must be exactly those a whole-layer forward hands to its capture callback. The
 * reference here accumulates max |x| and Σ|x| (double, token order) from that callback itself. */
typedef struct ref_capture {
  int32_t k[QQ_CIN_COUNT], tokens[QQ_CIN_COUNT];
  float *amax[QQ_CIN_COUNT];
  double *asum[QQ_CIN_COUNT];
} ref_capture;

static void ref_on_capture(void *user, int32_t layer, qq_linear_id lin, const float *x, int32_t n, int32_t in_dim) {
  (void)layer;
  ref_capture *r = user;
  const qq_calib_input ci = qq_calib_input_of(lin);
  if (lin != QQ_LIN_Q && lin != QQ_LIN_O && lin != QQ_LIN_GATE && lin != QQ_LIN_DOWN) return; /* one per input */
  assert_int_equal(in_dim, r->k[ci]);
  for (int32_t t = 0; t < n; t++)
    for (int32_t j = 0; j < in_dim; j++) {
      const float v = fabsf(x[(size_t)t * in_dim + j]);
      if (v > r->amax[ci][j]) r->amax[ci][j] = v;
      r->asum[ci][j] += v;
    }
  r->tokens[ci] += n;
}

static void test_layer_stats_equal_forward_capture(void **s) {
  (void)s;
  qq_error err = {0};
  qq_model *m = load();
  qq_calib_acts *a = acts_at(m);
  qq_calib_stats got[QQ_CIN_COUNT];
  QQ_ASSERT_OK(qq_calib_layer_stats(m, LAYER, a, 0xFu, false, got, &err), &err);
  ref_capture r;
  memset(&r, 0, sizeof r);
  for (int i = 0; i < QQ_CIN_COUNT; i++) {
    r.k[i] = got[i].k;
    r.amax[i] = calloc((size_t)r.k[i], sizeof(float));
    r.asum[i] = calloc((size_t)r.k[i], sizeof(double));
  }
  const int32_t hid = qq_model_config(m)->hidden_size;
  float *x = malloc(sizeof(float) * SEQLEN * hid);
  for (int32_t i = 0; i < SAMPLES; i++) {
    /* the layer's input, as qq_calib_acts_create + qq_calib_layer_advance compute it */
    QQ_ASSERT_OK(qq_model_embed(m, tokens + i * SEQLEN, SEQLEN, x, &err), &err);
    for (int32_t l = 0; l < LAYER; l++) QQ_ASSERT_OK(qq_model_layer_forward(m, l, x, SEQLEN, NULL, NULL, &err), &err);
    QQ_ASSERT_OK(qq_model_layer_forward(m, LAYER, x, SEQLEN, ref_on_capture, &r, &err), &err);
  }
  for (int i = 0; i < QQ_CIN_COUNT; i++) {
    assert_int_equal(got[i].tokens, r.tokens[i]);
    assert_memory_equal(got[i].abs_max, r.amax[i], sizeof(float) * (size_t)r.k[i]);
    for (int32_t j = 0; j < r.k[i]; j++) assert_true(got[i].abs_mean[j] == (float)(r.asum[i][j] / r.tokens[i]));
    free(r.amax[i]);
    free(r.asum[i]);
  }
  free(x);
  qq_calib_stats_free(got);
  qq_calib_acts_free(a);
  qq_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_staged_keeps_down_inputs),
      cmocka_unit_test(test_staged_recomputes_down_inputs),
      cmocka_unit_test(test_staged_sees_new_weights),
      cmocka_unit_test(test_staged_h_of_first_samples),
      cmocka_unit_test(test_staged_order_enforced),
      cmocka_unit_test(test_layer_stats_equal_forward_capture),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
