/* test_forward.c — properties of the forward pass, KV cache and sampler on the real qwen2-tiny-lm:
 * incremental decode equals one-shot prefill, batching never changes results, forks share prefixes,
 * a full cache is reported without side effects, bad input is rejected, sampling is reproducible. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "testutil.h"

/* Decode vs prefill, and batched vs alone: same fp32 math on the same rows, but sgemm may block a
 * 1-row product differently from a 20-row one, so results agree to rounding, not bit for bit:
 * relative 1e-5 is ~100x the observed difference and far below anything that changes a greedy pick
 * (the greedy tokens are checked exactly as well). */
#define ROUNDING_TOL 1e-5

static qq_model *model;

static int setup(void **s) {
  (void)s;
  qq_model_options o = qq_model_options_default();
  o.device = QQ_DEVICE_CPU;
  o.load_tokenizer = false;
  qq_error err = {0};
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", qq_test_fixture("models/qwen2-tiny-lm"));
  if (qq_model_load(dir, &o, &model, &err) != QQ_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return -1;
  }
  return 0;
}
static int teardown(void **s) {
  (void)s;
  qq_model_free(model);
  return 0;
}

static const int32_t prompt_a[] = {464, 6468, 1112, 327, 275, 3224, 298, 3027, 1112, 2101, 733, 401};
static const int32_t prompt_b[] = {50, 300, 2000, 17, 17, 42};

static void test_decode_equals_prefill(void **s) {
  (void)s;
  qq_error err = {0};
  const int32_t V = qq_model_output_dim(model), n = QQ_ARRAY_LEN(prompt_a);
  qq_kv_cache *kv;
  QQ_ASSERT_OK(qq_kv_cache_create(model, NULL, &kv, &err), &err);
  int32_t s1, s2;
  QQ_ASSERT_OK(qq_kv_seq_open(kv, &s1, &err), &err);
  QQ_ASSERT_OK(qq_kv_seq_open(kv, &s2, &err), &err);
  float *full = malloc((size_t)n * V * 4), *step = malloc((size_t)V * 4);
  qq_forward_item it = {.seq = s1, .tokens = prompt_a, .n_tokens = n, .all_rows = true};
  QQ_ASSERT_OK(qq_model_forward(model, kv, &it, 1, full, &err), &err);
  /* s2: 5 tokens prefill (a chunk), then one token at a time */
  qq_forward_item c1 = {.seq = s2, .tokens = prompt_a, .n_tokens = 5};
  QQ_ASSERT_OK(qq_model_forward(model, kv, &c1, 1, step, &err), &err);
  assert_true(qq_test_rel_err(step, full + (size_t)4 * V, V) < ROUNDING_TOL);
  for (int t = 5; t < n; t++) {
    qq_forward_item d = {.seq = s2, .tokens = &prompt_a[t], .n_tokens = 1};
    QQ_ASSERT_OK(qq_model_forward(model, kv, &d, 1, step, &err), &err);
    assert_true(qq_test_rel_err(step, full + (size_t)t * V, V) < ROUNDING_TOL);
  }
  assert_int_equal(qq_kv_seq_len(kv, s2), n);
  free(full);
  free(step);
  qq_kv_cache_free(kv);
}

/* Greedy continuations of two prompts generated together, step by step, in one batch equal the same
 * continuations generated alone. */
static void test_batching_never_changes_greedy(void **s) {
  (void)s;
  qq_error err = {0};
  const int32_t V = qq_model_output_dim(model), steps = 16;
  qq_sampling g = qq_sampling_default();
  qq_token_ids alone_a = {0}, alone_b = {0};
  QQ_ASSERT_OK(qq_generate(model, prompt_a, QQ_ARRAY_LEN(prompt_a), steps, &g, false, NULL, NULL, &alone_a, &err), &err);
  QQ_ASSERT_OK(qq_generate(model, prompt_b, QQ_ARRAY_LEN(prompt_b), steps, &g, false, NULL, NULL, &alone_b, &err), &err);
  qq_kv_cache *kv;
  QQ_ASSERT_OK(qq_kv_cache_create(model, NULL, &kv, &err), &err);
  int32_t sa, sb;
  QQ_ASSERT_OK(qq_kv_seq_open(kv, &sa, &err), &err);
  QQ_ASSERT_OK(qq_kv_seq_open(kv, &sb, &err), &err);
  float *out = malloc((size_t)2 * V * 4);
  qq_forward_item items[2] = {{.seq = sa, .tokens = prompt_a, .n_tokens = QQ_ARRAY_LEN(prompt_a)},
                              {.seq = sb, .tokens = prompt_b, .n_tokens = QQ_ARRAY_LEN(prompt_b)}};
  int32_t ta, tb;
  for (int t = 0; t < steps; t++) {
    QQ_ASSERT_OK(qq_model_forward(model, kv, items, 2, out, &err), &err);
    int32_t pa = 0, pb = 0;
    for (int v = 1; v < V; v++) {
      if (out[v] > out[pa]) pa = v;
      if (out[V + v] > out[V + pb]) pb = v;
    }
    assert_int_equal(pa, alone_a.ids[t]);
    assert_int_equal(pb, alone_b.ids[t]);
    ta = pa;
    tb = pb;
    items[0] = (qq_forward_item){.seq = sa, .tokens = &ta, .n_tokens = 1};
    items[1] = (qq_forward_item){.seq = sb, .tokens = &tb, .n_tokens = 1};
  }
  free(out);
  qq_token_ids_free(&alone_a);
  qq_token_ids_free(&alone_b);
  qq_kv_cache_free(kv);
}

static void test_fork_shares_prefix(void **s) {
  (void)s;
  qq_error err = {0};
  const int32_t V = qq_model_output_dim(model), n = QQ_ARRAY_LEN(prompt_a);
  qq_kv_options ko = qq_kv_options_default();
  ko.block_tokens = 4; /* the fork point (7) falls inside a block */
  qq_kv_cache *kv;
  QQ_ASSERT_OK(qq_kv_cache_create(model, &ko, &kv, &err), &err);
  int32_t s1, s2;
  QQ_ASSERT_OK(qq_kv_seq_open(kv, &s1, &err), &err);
  float *full = malloc((size_t)n * V * 4), *tail = malloc((size_t)(n - 7) * V * 4);
  qq_forward_item it = {.seq = s1, .tokens = prompt_a, .n_tokens = n, .all_rows = true};
  QQ_ASSERT_OK(qq_model_forward(model, kv, &it, 1, full, &err), &err);
  QQ_ASSERT_OK(qq_kv_seq_fork(kv, s1, 7, &s2, &err), &err);
  assert_int_equal(qq_kv_seq_len(kv, s2), 7);
  qq_forward_item t2 = {.seq = s2, .tokens = prompt_a + 7, .n_tokens = n - 7, .all_rows = true};
  QQ_ASSERT_OK(qq_model_forward(model, kv, &t2, 1, tail, &err), &err);
  assert_true(qq_test_rel_err(tail, full + (size_t)7 * V, (size_t)(n - 7) * V) < ROUNDING_TOL);
  /* closing frees every block */
  qq_kv_seq_close(kv, s1);
  qq_kv_seq_close(kv, s2);
  assert_int_equal(qq_kv_free_blocks(kv), qq_kv_total_blocks(kv));
  free(full);
  free(tail);
  qq_kv_cache_free(kv);
}

static void test_full_cache_and_bad_input(void **s) {
  (void)s;
  qq_error err = {0};
  qq_kv_options ko = qq_kv_options_default();
  ko.block_tokens = 4;
  ko.n_blocks = 3; /* 12 tokens in all */
  ko.max_seqs = 2;
  ko.max_seq_len = 64;
  qq_kv_cache *kv;
  QQ_ASSERT_OK(qq_kv_cache_create(model, &ko, &kv, &err), &err);
  int32_t s1, s2, s3;
  QQ_ASSERT_OK(qq_kv_seq_open(kv, &s1, &err), &err);
  QQ_ASSERT_OK(qq_kv_seq_open(kv, &s2, &err), &err);
  assert_int_equal(qq_kv_seq_open(kv, &s3, &err), QQ_ERR_EXHAUSTED);
  float *out = malloc((size_t)qq_model_output_dim(model) * 2 * 4);
  qq_forward_item a = {.seq = s1, .tokens = prompt_a, .n_tokens = 9}; /* 3 blocks */
  qq_forward_item b = {.seq = s2, .tokens = prompt_b, .n_tokens = 2}; /* 1 more: too many together */
  qq_forward_item both[2] = {a, b};
  assert_int_equal(qq_model_forward(model, kv, both, 2, out, &err), QQ_ERR_EXHAUSTED);
  assert_non_null(strstr(err.msg, "KV cache full"));
  assert_int_equal(qq_kv_free_blocks(kv), 3); /* nothing taken */
  assert_int_equal(qq_kv_seq_len(kv, s1), 0);
  QQ_ASSERT_OK(qq_model_forward(model, kv, &a, 1, out, &err), &err);
  assert_int_equal(qq_kv_free_blocks(kv), 0);
  /* bad token id, unopened sequence, duplicate sequence, empty item */
  int32_t bad = 999999;
  qq_kv_seq_close(kv, s1);
  QQ_ASSERT_OK(qq_kv_seq_open(kv, &s1, &err), &err);
  qq_forward_item x = {.seq = s1, .tokens = &bad, .n_tokens = 1};
  assert_int_equal(qq_model_forward(model, kv, &x, 1, out, &err), QQ_ERR_INVALID_ARG);
  assert_non_null(strstr(err.msg, "999999"));
  qq_forward_item y = {.seq = 1 - s1 + 5, .tokens = prompt_a, .n_tokens = 1};
  assert_int_equal(qq_model_forward(model, kv, &y, 1, out, &err), QQ_ERR_INVALID_ARG);
  qq_forward_item dup[2] = {{.seq = s1, .tokens = prompt_a, .n_tokens = 1}, {.seq = s1, .tokens = prompt_a, .n_tokens = 1}};
  assert_int_equal(qq_model_forward(model, kv, dup, 2, out, &err), QQ_ERR_INVALID_ARG);
  qq_forward_item empty = {.seq = s1, .tokens = prompt_a, .n_tokens = 0};
  assert_int_equal(qq_model_forward(model, kv, &empty, 1, out, &err), QQ_ERR_INVALID_ARG);
  free(out);
  qq_kv_cache_free(kv);
}

static void test_sampler(void **s) {
  (void)s;
  qq_error err = {0};
  float logits[6] = {1.0f, 3.0f, 2.9f, -1.0f, 3.0f, 0.0f};
  qq_sampling g = qq_sampling_default();
  qq_sampler *sm;
  QQ_ASSERT_OK(qq_sampler_create(&g, &sm, &err), &err);
  assert_int_equal(qq_sampler_sample(sm, logits, 6), 1); /* greedy: first of the tied maxima */
  qq_sampler_free(sm);
  /* top_k = 1 at any temperature is greedy */
  qq_sampling k1 = {.temperature = 5.0f, .top_k = 1, .top_p = 1.0f, .seed = 3};
  QQ_ASSERT_OK(qq_sampler_create(&k1, &sm, &err), &err);
  for (int i = 0; i < 50; i++) assert_int_equal(qq_sampler_sample(sm, logits, 6), 1);
  qq_sampler_free(sm);
  /* top_k = 3 only ever draws from {1, 4, 2}; the same seed repeats the same draws; the frequencies
   * follow the softmax (1000 draws: 4.5 sigma bounds) */
  qq_sampling k3 = {.temperature = 1.0f, .top_k = 3, .top_p = 1.0f, .seed = 42};
  int draws[2][1000], hist[6] = {0};
  for (int r = 0; r < 2; r++) {
    QQ_ASSERT_OK(qq_sampler_create(&k3, &sm, &err), &err);
    for (int i = 0; i < 1000; i++) draws[r][i] = qq_sampler_sample(sm, logits, 6);
    qq_sampler_free(sm);
  }
  assert_memory_equal(draws[0], draws[1], sizeof draws[0]);
  for (int i = 0; i < 1000; i++) hist[draws[0][i]]++;
  assert_int_equal(hist[0] + hist[3] + hist[5], 0);
  double z = exp(3.0) * 2 + exp(2.9), p2 = exp(2.9) / z;
  assert_true(fabs(hist[2] / 1000.0 - p2) < 4.5 * sqrt(p2 * (1 - p2) / 1000));
  /* top_p small keeps only the most likely token(s): 1 and 4 tie at the top, 2 is next */
  qq_sampling tp = {.temperature = 1.0f, .top_k = 0, .top_p = 0.3f, .seed = 1};
  QQ_ASSERT_OK(qq_sampler_create(&tp, &sm, &err), &err);
  for (int i = 0; i < 200; i++) assert_int_equal(qq_sampler_sample(sm, logits, 6), 1);
  qq_sampler_free(sm);
  /* invalid parameters are rejected */
  qq_sampling bad = {.temperature = -1.0f, .top_p = 1.0f};
  assert_int_equal(qq_sampler_create(&bad, &sm, &err), QQ_ERR_INVALID_ARG);
  bad = (qq_sampling){.temperature = 1.0f, .top_p = 0.0f};
  assert_int_equal(qq_sampler_create(&bad, &sm, &err), QQ_ERR_INVALID_ARG);
  bad = (qq_sampling){.temperature = 1.0f, .top_p = 1.0f, .top_k = -2};
  assert_int_equal(qq_sampler_create(&bad, &sm, &err), QQ_ERR_INVALID_ARG);
}

static void test_layer_api_matches_forward(void **s) {
  (void)s;
  qq_error err = {0};
  const qq_config *c = qq_model_config(model);
  const int32_t n = QQ_ARRAY_LEN(prompt_a), V = qq_model_output_dim(model), H = c->hidden_size;
  float *x = malloc((size_t)n * H * 4), *lg = malloc((size_t)n * V * 4), *full = malloc((size_t)n * V * 4);
  QQ_ASSERT_OK(qq_model_embed(model, prompt_a, n, x, &err), &err);
  for (int l = 0; l < c->num_layers; l++) QQ_ASSERT_OK(qq_model_layer_forward(model, l, x, n, NULL, NULL, &err), &err);
  QQ_ASSERT_OK(qq_model_head_forward(model, x, n, lg, &err), &err);
  qq_kv_cache *kv;
  QQ_ASSERT_OK(qq_kv_cache_create(model, NULL, &kv, &err), &err);
  int32_t sq;
  QQ_ASSERT_OK(qq_kv_seq_open(kv, &sq, &err), &err);
  qq_forward_item it = {.seq = sq, .tokens = prompt_a, .n_tokens = n, .all_rows = true};
  QQ_ASSERT_OK(qq_model_forward(model, kv, &it, 1, full, &err), &err);
  assert_true(qq_test_rel_err(lg, full, (size_t)n * V) < ROUNDING_TOL);
  /* set_linear with the weight it already has changes nothing; get/set round-trips */
  const int32_t nq = c->num_heads * c->head_dim;
  float *w = malloc((size_t)nq * H * 4), *b = malloc((size_t)nq * 4);
  QQ_ASSERT_OK(qq_model_get_linear_f32(model, 0, QQ_LIN_Q, w, b, &err), &err);
  qq_linear_desc d = {.format = QQ_WFMT_F32, .n = nq, .k = H, .w = w, .bias = b};
  QQ_ASSERT_OK(qq_model_set_linear(model, 0, QQ_LIN_Q, &d, &err), &err);
  d.n = nq + 1;
  assert_int_equal(qq_model_set_linear(model, 0, QQ_LIN_Q, &d, &err), QQ_ERR_INVALID_ARG);
  free(x); free(lg); free(full); free(w); free(b);
  qq_kv_cache_free(kv);
}

int main(int argc, char **argv) {
  qq_kernels_setup_openblas(argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_decode_equals_prefill), cmocka_unit_test(test_batching_never_changes_greedy),
      cmocka_unit_test(test_fork_shares_prefix),    cmocka_unit_test(test_full_cache_and_bad_input),
      cmocka_unit_test(test_sampler),               cmocka_unit_test(test_layer_api_matches_forward),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
