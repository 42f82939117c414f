/* test_synth_quant.c — `qquant synth --format awq|gptq|w8a8` (quantize/synth.c) on the tiny shape:
 * each format loads with qquant's loader and runs a CPU forward pass; the config carries the right
 * quantization_config; every packed linear unpacks through model/qformat.c to exactly the codes,
 * zero points and scales that were generated; the tensor list is the one qquant's own quantizer
 * writes for the same layout; the output does not depend on threads or sharding; bad combinations
 * are refused before anything is written. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "qformat.h"
#include "quantize.h"
#include "testutil.h"

#define SEED 11

/* Tiny: hidden 128 (q_dim 128, kv_dim 64), intermediate 352, 2 layers; 352 is not a multiple of 128
 * or 64, so the default group size resolves to 32. */
#define TINY_GROUP 32

static char *write_synth(qq_out_format f, int32_t bits, int32_t group, bool sym, int32_t threads, size_t shard) {
  char *dir = qq_test_tmpdir("synthq");
  qq_synth_options o = qq_synth_options_default();
  o.seed = SEED;
  o.n_threads = threads;
  o.max_shard_bytes = shard;
  qq_synth_quant q = qq_synth_quant_default(f);
  if (bits) q.bits = bits;
  if (group) q.group_size = group;
  q.sym = sym;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_synth_quant_write(dir, &o, &q, &err), &err);
  return dir;
}

static void linear_shape(const qq_config *c, int id, int32_t *n, int32_t *k) {
  const int32_t qd = c->num_heads * c->head_dim, kvd = c->num_kv_heads * c->head_dim;
  const int32_t ns[QQ_LIN_COUNT] = {qd, kvd, kvd, c->hidden_size, c->intermediate_size, c->intermediate_size,
                                    c->hidden_size};
  const int32_t ks[QQ_LIN_COUNT] = {c->hidden_size, c->hidden_size, c->hidden_size, qd, c->hidden_size,
                                    c->hidden_size, c->intermediate_size};
  *n = ns[id];
  *k = ks[id];
}

/* Every linear unpacked by the loader equals the generator's canonical weight, code for code. Also
 * returns the std of the dequantized weights over all linears and checks the codes' and zero
 * points' ranges independently of the generator. */
static double check_round_trip(const char *dir, const qq_config *c, qq_out_format f, int32_t bits, int32_t group,
                               bool sym) {
  qq_weights *w;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_weights_open(dir, &w, &err), &err);
  double sum = 0, sq = 0, cnt = 0;
  bool zero_seen[256] = {false};
  for (int32_t l = 0; l < c->num_layers; l++)
    for (int id = 0; id < QQ_LIN_COUNT; id++) {
      int32_t n, k;
      linear_shape(c, id, &n, &k);
      qq_linear_desc d;
      void *owned = NULL;
      QQ_ASSERT_OK(qq_qformat_load_linear(c, w, l, (qq_linear_id)id, &d, &owned, &err), &err);
      assert_int_equal(d.n, n);
      assert_int_equal(d.k, k);
      if (f == QQ_OUT_CT) {
        assert_int_equal(d.format, QQ_WFMT_W8A8);
        assert_true(d.act_scale == 0.0f); /* dynamic per-token activations */
        int8_t *codes = malloc((size_t)n * k);
        float *scales = malloc(sizeof(float) * (size_t)n);
        qq_synth_w8a8(SEED, l, (qq_linear_id)id, n, k, QQ_SCALE_BF16, codes, scales);
        assert_memory_equal(d.w, codes, (size_t)n * k);
        assert_memory_equal(d.scales, scales, sizeof(float) * (size_t)n);
        const int8_t *dc = d.w;
        for (size_t i = 0; i < (size_t)n * k; i++) {
          assert_true(dc[i] >= -127);
          double v = (double)dc[i] * d.scales[i / (size_t)k];
          sum += v;
          sq += v * v;
        }
        cnt += (double)n * k;
        free(codes);
        free(scales);
      } else {
        assert_int_equal(d.format, QQ_WFMT_QINT);
        assert_int_equal(d.bits, bits);
        assert_int_equal(d.group_size, group == -1 ? k : group);
        assert_null(d.g_idx); /* g_idx = c / group_size is the trivial order */
        qq_qparams p = qq_qparams_default();
        p.bits = bits;
        p.group_size = group;
        p.sym = sym;
        p.scale_dtype = QQ_SCALE_F16;
        qq_qweight q;
        QQ_ASSERT_OK(qq_synth_qweight(SEED, l, (qq_linear_id)id, n, k, &p, &q, &err), &err);
        assert_int_equal(d.n_groups, q.n_groups);
        assert_memory_equal(d.w, q.codes, (size_t)n * k);
        assert_memory_equal(d.zeros, q.zeros, (size_t)n * q.n_groups);
        assert_memory_equal(d.scales, q.scales, sizeof(float) * (size_t)n * q.n_groups);
        const uint8_t *dc = d.w;
        for (int32_t r = 0; r < n; r++)
          for (int32_t j = 0; j < k; j++) {
            const int32_t g = j / d.group_size;
            assert_true(dc[(size_t)r * k + j] < (1u << bits));
            double v = ((double)dc[(size_t)r * k + j] - d.zeros[(size_t)r * d.n_groups + g]) *
                       d.scales[(size_t)r * d.n_groups + g];
            sum += v;
            sq += v * v;
          }
        for (int32_t i = 0; i < n * d.n_groups; i++) zero_seen[d.zeros[i]] = true;
        cnt += (double)n * k;
        qq_qweight_free(&q);
      }
      qq_qformat_free_owned(owned);
    }
  if (f != QQ_OUT_CT) {
    /* zero points: 2^(b-1) when symmetric, else each of 2^(b-1) - 2 .. 2^(b-1) + 1 and nothing else */
    const int mid = 1 << (bits - 1);
    for (int z = 0; z < 256; z++) {
      bool want = sym ? z == mid : (z >= mid - 2 && z <= mid + 1);
      assert_int_equal(zero_seen[z], want);
    }
  }
  qq_weights_close(w);
  double mean = sum / cnt;
  return sqrt(sq / cnt - mean * mean);
}

/* Dense tensors stay in the model dtype: the embedding is the dense synth's, byte for byte. */
static void check_dense_parts(const char *dir) {
  char *dense = qq_test_tmpdir("synthd");
  qq_synth_options o = qq_synth_options_default();
  o.seed = SEED;
  o.force = true;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_synth_write(dense, &o, &err), &err);
  qq_weights *a, *b;
  QQ_ASSERT_OK(qq_weights_open(dir, &a, &err), &err);
  QQ_ASSERT_OK(qq_weights_open(dense, &b, &err), &err);
  const char *names[] = {"model.embed_tokens.weight", "model.norm.weight", "model.layers.1.self_attn.v_proj.bias"};
  for (size_t i = 0; i < QQ_ARRAY_LEN(names); i++) {
    const qq_tensor_info *x = qq_weights_find(a, names[i]), *y = qq_weights_find(b, names[i]);
    assert_non_null(x);
    assert_non_null(y);
    assert_int_equal(x->dtype, QQ_DTYPE_BF16);
    assert_int_equal(x->nbytes, y->nbytes);
    assert_memory_equal(x->data, y->data, x->nbytes);
  }
  qq_weights_close(a);
  qq_weights_close(b);
  qq_test_rmtree(dense);
  free(dense);
}

/* Loads on the CPU backend and runs a prefill: logits are finite and not all equal. */
static void check_forward(const char *dir) {
  qq_model_options mo = qq_model_options_default();
  mo.device = QQ_DEVICE_CPU;
  mo.n_threads = 1;
  qq_model *m;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_model_load(dir, &mo, &m, &err), &err);
  qq_kv_cache *kv;
  QQ_ASSERT_OK(qq_kv_cache_create(m, NULL, &kv, &err), &err);
  int32_t seq;
  QQ_ASSERT_OK(qq_kv_seq_open(kv, &seq, &err), &err);
  static const int32_t toks[] = {72, 101, 108, 108, 111, 32, 300, 17};
  const int32_t V = qq_model_output_dim(m), T = QQ_ARRAY_LEN(toks);
  float *out = malloc(sizeof(float) * (size_t)V * T);
  qq_forward_item it = {.seq = seq, .tokens = toks, .n_tokens = T, .all_rows = true};
  QQ_ASSERT_OK(qq_model_forward(m, kv, &it, 1, out, &err), &err);
  float lo = out[0], hi = out[0];
  for (size_t i = 0; i < (size_t)V * T; i++) {
    assert_true(isfinite(out[i]));
    lo = fminf(lo, out[i]);
    hi = fmaxf(hi, out[i]);
  }
  assert_true(hi > lo);
  free(out);
  qq_kv_cache_free(kv);
  qq_model_free(m);
}

static void check_format(qq_out_format f, int32_t bits, int32_t group, bool sym, const char *quant_method) {
  char *dir = write_synth(f, f == QQ_OUT_GPTQ ? bits : 0, 0, sym, 2, 0);
  qq_config c;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_config_load(dir, &c, &err), &err);
  qq_weights *w;
  QQ_ASSERT_OK(qq_weights_open(dir, &w, &err), &err);
  QQ_ASSERT_OK(qq_config_check_weights(&c, w, &err), &err);
  qq_weights_close(w);
  const qq_quant_method want = f == QQ_OUT_AWQ ? QQ_QUANT_AWQ : f == QQ_OUT_GPTQ ? QQ_QUANT_GPTQ : QQ_QUANT_W8A8;
  assert_int_equal(c.quant.method, want);
  assert_int_equal(c.quant.bits, bits);
  assert_int_equal(c.quant.group_size, group);
  assert_int_equal(c.quant.sym, sym);
  assert_false(c.quant.desc_act);
  if (f == QQ_OUT_CT) assert_true(c.quant.act_dynamic);
  assert_string_equal(c.quant.format, f == QQ_OUT_AWQ ? "gemm" : f == QQ_OUT_GPTQ ? "gptq" : "int-quantized");
  cJSON *raw = cJSON_Parse(c.quant.raw_json);
  assert_string_equal(cJSON_GetObjectItem(raw, "quant_method")->valuestring, quant_method);
  cJSON_Delete(raw);
  assert_true(qq_config_linear_is_quantized(&c, "model.layers.1.mlp.down_proj"));
  assert_false(qq_config_linear_is_quantized(&c, "lm_head"));

  /* Dequantized std: 0.02 in expectation. Tiny has ~4e5 weights in >= 5e3 groups (one scale factor
   * uniform in [0.75, 1.25) each), so the sample std is within about 1 % of that (0.2-0.8 % seen);
   * 3 % also catches a scale computed for the wrong bit width or zero-point spread (3-bit asym: +11 %). */
  double sd = check_round_trip(dir, &c, f, bits, group, sym);
  if (fabs(sd - 0.02) > 0.02 * 0.03) fail_msg("dequantized std %g, expected 0.02", sd);
  check_dense_parts(dir);
  check_forward(dir);
  qq_config_free(&c);
  qq_test_rmtree(dir);
  free(dir);
}

static void test_awq(void **s) {
  (void)s;
  check_format(QQ_OUT_AWQ, 4, TINY_GROUP, false, "awq");
}
static void test_gptq4(void **s) {
  (void)s;
  check_format(QQ_OUT_GPTQ, 4, TINY_GROUP, true, "gptq");
}
static void test_gptq8_asym(void **s) {
  (void)s;
  check_format(QQ_OUT_GPTQ, 8, TINY_GROUP, false, "gptq");
}
static void test_gptq3(void **s) {
  (void)s;
  check_format(QQ_OUT_GPTQ, 3, TINY_GROUP, false, "gptq");
}
static void test_w8a8(void **s) {
  (void)s;
  check_format(QQ_OUT_CT, 8, -1, true, "compressed-tensors");
}

/* A small exact check of the AWQ packing order on the written file: word j of qweight row c holds
 * output column 8j + {0,2,4,6,1,3,5,7}[i] in nibble i. */
static void test_awq_word_layout(void **s) {
  (void)s;
  char *dir = write_synth(QQ_OUT_AWQ, 0, 0, false, 1, 0);
  qq_weights *w;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_weights_open(dir, &w, &err), &err);
  const qq_tensor_info *t = qq_weights_find(w, "model.layers.0.self_attn.k_proj.qweight");
  assert_non_null(t);
  assert_int_equal(t->dtype, QQ_DTYPE_I32);
  assert_int_equal(t->shape[0], 128); /* [k, n / 8] */
  assert_int_equal(t->shape[1], 8);
  qq_qparams p = qq_qparams_default();
  p.group_size = TINY_GROUP;
  p.scale_dtype = QQ_SCALE_F16;
  qq_qweight q;
  QQ_ASSERT_OK(qq_synth_qweight(SEED, 0, QQ_LIN_K, 64, 128, &p, &q, &err), &err);
  static const int order[8] = {0, 2, 4, 6, 1, 3, 5, 7};
  const uint32_t *words = t->data;
  for (int c = 0; c < 128; c++)
    for (int j = 0; j < 8; j++)
      for (int i = 0; i < 8; i++)
        assert_int_equal((words[c * 8 + j] >> (4 * i)) & 15u, q.codes[(8 * j + order[i]) * 128 + c]);
  const qq_tensor_info *sc = qq_weights_find(w, "model.layers.0.self_attn.k_proj.scales");
  assert_int_equal(sc->dtype, QQ_DTYPE_F16);
  assert_int_equal(((const uint16_t *)sc->data)[1 * 64 + 5], qq_f32_to_f16(q.scales[5 * 4 + 1])); /* [G, n] */
  qq_qweight_free(&q);
  qq_weights_close(w);
  qq_test_rmtree(dir);
  free(dir);
}

/* The tensor list (names, dtypes, shapes) is the one qquant's quantizer writes for the same layout:
 * RTN-quantize the dense tiny synth with qq_quantize_model / qq_quantized_write and compare. */
static void compare_with_quantizer(qq_out_format f, int32_t bits, int32_t group, bool sym) {
  char *dense = qq_test_tmpdir("synthd"), *mine = write_synth(f, bits, group, sym, 1, 0);
  char *theirs = qq_test_tmpdir("synthr");
  qq_synth_options so = qq_synth_options_default();
  so.seed = SEED;
  so.force = true;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_synth_write(dense, &so, &err), &err);
  qq_model_options mo = qq_model_options_default();
  mo.device = QQ_DEVICE_CPU;
  mo.n_threads = 1;
  qq_model *m;
  QQ_ASSERT_OK(qq_model_load(dense, &mo, &m, &err), &err);
  qq_quantize_options qo = qq_quantize_options_default(QQ_METHOD_RTN);
  qo.format = f;
  qo.bits = bits;
  qo.group_size = group;
  qo.sym = sym;
  QQ_ASSERT_OK(qq_quantize_check(&qo, qq_model_config(m), &err), &err);
  qq_quantized *q;
  QQ_ASSERT_OK(qq_quantize_model(m, &qo, &q, &err), &err);
  QQ_ASSERT_OK(qq_quantized_write(q, dense, theirs, true, 0, NULL, &err), &err);
  qq_quantized_free(q);
  qq_model_free(m);

  qq_weights *a, *b;
  QQ_ASSERT_OK(qq_weights_open(mine, &a, &err), &err);
  QQ_ASSERT_OK(qq_weights_open(theirs, &b, &err), &err);
  assert_int_equal(qq_weights_count(a), qq_weights_count(b));
  for (size_t i = 0; i < qq_weights_count(b); i++) {
    const qq_tensor_info *y = qq_weights_at(b, i), *x = qq_weights_find(a, y->name);
    if (!x) fail_msg("the quantizer writes %s, synth does not", y->name);
    assert_int_equal(x->dtype, y->dtype);
    assert_int_equal(x->ndim, y->ndim);
    for (int d = 0; d < y->ndim; d++) assert_int_equal(x->shape[d], y->shape[d]);
  }
  /* AutoAWQ's quantization_config does not depend on the method: it must be identical. */
  if (f == QQ_OUT_AWQ) {
    qq_config ca, cb;
    QQ_ASSERT_OK(qq_config_load(mine, &ca, &err), &err);
    QQ_ASSERT_OK(qq_config_load(theirs, &cb, &err), &err);
    cJSON *ja = cJSON_Parse(ca.quant.raw_json), *jb = cJSON_Parse(cb.quant.raw_json);
    assert_true(cJSON_Compare(ja, jb, true));
    cJSON_Delete(ja);
    cJSON_Delete(jb);
    qq_config_free(&ca);
    qq_config_free(&cb);
  }
  qq_weights_close(a);
  qq_weights_close(b);
  qq_test_rmtree(dense);
  qq_test_rmtree(mine);
  qq_test_rmtree(theirs);
  free(dense);
  free(mine);
  free(theirs);
}

static void test_same_tensors_as_quantizer(void **s) {
  (void)s;
  compare_with_quantizer(QQ_OUT_AWQ, 4, TINY_GROUP, false);
  compare_with_quantizer(QQ_OUT_GPTQ, 4, TINY_GROUP, true);
  compare_with_quantizer(QQ_OUT_GPTQ, 8, -1, false);
  compare_with_quantizer(QQ_OUT_CT, 8, -1, true);
}

/* The same bytes whatever the threads and the sharding (a 200 kB limit shards the ~0.3 MB folder). */
static void test_threads_and_shards(void **s) {
  (void)s;
  const qq_out_format fs[] = {QQ_OUT_AWQ, QQ_OUT_GPTQ, QQ_OUT_CT};
  for (size_t fi = 0; fi < QQ_ARRAY_LEN(fs); fi++) {
    char *a = write_synth(fs[fi], 0, 0, fs[fi] != QQ_OUT_AWQ, 1, 0);
    char *b = write_synth(fs[fi], 0, 0, fs[fi] != QQ_OUT_AWQ, 3, 200000);
    char idx[4096];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", b);
    struct stat sb;
    assert_int_equal(stat(idx, &sb), 0);
    qq_weights *wa, *wb;
    qq_error err = {0};
    QQ_ASSERT_OK(qq_weights_open(a, &wa, &err), &err);
    QQ_ASSERT_OK(qq_weights_open(b, &wb, &err), &err);
    assert_int_equal(qq_weights_count(wa), qq_weights_count(wb));
    for (size_t i = 0; i < qq_weights_count(wa); i++) {
      const qq_tensor_info *x = qq_weights_at(wa, i), *y = qq_weights_find(wb, x->name);
      assert_non_null(y);
      assert_int_equal(x->nbytes, y->nbytes);
      assert_memory_equal(x->data, y->data, x->nbytes);
    }
    qq_weights_close(wa);
    qq_weights_close(wb);
    qq_test_rmtree(a);
    qq_test_rmtree(b);
    free(a);
    free(b);
  }
}

/* Another seed gives other codes. */
static void test_seed(void **s) {
  (void)s;
  qq_qparams p = qq_qparams_default();
  p.group_size = TINY_GROUP;
  p.scale_dtype = QQ_SCALE_F16;
  qq_qweight a, b;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_synth_qweight(1, 0, QQ_LIN_UP, 352, 128, &p, &a, &err), &err);
  QQ_ASSERT_OK(qq_synth_qweight(2, 0, QQ_LIN_UP, 352, 128, &p, &b, &err), &err);
  assert_memory_not_equal(a.codes, b.codes, 352 * 128);
  qq_qweight_free(&b);
  QQ_ASSERT_OK(qq_synth_qweight(1, 0, QQ_LIN_GATE, 352, 128, &p, &b, &err), &err);
  assert_memory_not_equal(a.codes, b.codes, 352 * 128); /* another linear, another stream */
  qq_qweight_free(&a);
  qq_qweight_free(&b);
}

static void expect_refused(qq_out_format f, int32_t bits, int32_t group, int sym, const char *needle) {
  char *parent = qq_test_tmpdir("synthx"), dir[4096];
  snprintf(dir, sizeof dir, "%s/out", parent);
  qq_synth_options o = qq_synth_options_default();
  qq_synth_quant q = qq_synth_quant_default(f);
  q.bits = bits;
  q.group_size = group;
  if (sym >= 0) q.sym = sym;
  qq_error err = {0};
  assert_int_equal(qq_synth_quant_write(dir, &o, &q, &err), QQ_ERR_INVALID_ARG);
  if (!strstr(err.msg, needle)) fail_msg("message '%s' does not mention '%s'", err.msg, needle);
  struct stat sb;
  assert_int_not_equal(stat(dir, &sb), 0); /* nothing written */
  qq_test_rmtree(parent);
  free(parent);
}

static void test_refused(void **s) {
  (void)s;
  expect_refused(QQ_OUT_AWQ, 8, 0, -1, "--bits 8");
  expect_refused(QQ_OUT_GPTQ, 5, 0, -1, "--bits 5");
  expect_refused(QQ_OUT_CT, 4, 0, -1, "--bits 4");
  expect_refused(QQ_OUT_CT, 0, 128, -1, "--group-size 128");
  expect_refused(QQ_OUT_CT, 0, 0, 0, "symmetric");
  expect_refused(QQ_OUT_GPTQ, 0, 48, -1, "--group-size 48");
  expect_refused(QQ_OUT_AUTO, 0, 0, -1, "awq, gptq or w8a8");
  /* 128 does not divide the tiny intermediate size: named with the linear, before anything is written */
  expect_refused(QQ_OUT_AWQ, 0, 128, -1, "model.layers.0.mlp.down_proj [128, 352]");
  expect_refused(QQ_OUT_GPTQ, 0, 64, -1, "352");
}

static void test_resolve_defaults(void **s) {
  (void)s;
  qq_synth_options o = qq_synth_options_default();
  qq_synth_quant q;
  qq_error err = {0};
  qq_synth_quant in = qq_synth_quant_default(QQ_OUT_GPTQ);
  QQ_ASSERT_OK(qq_synth_quant_resolve(&o, &in, &q, &err), &err);
  assert_int_equal(q.bits, 4);
  assert_int_equal(q.group_size, 32);
  assert_true(q.sym);
  o.shape = "qwen2.5-7b"; /* 3584 and 18944 are multiples of 128 */
  in = qq_synth_quant_default(QQ_OUT_AWQ);
  QQ_ASSERT_OK(qq_synth_quant_resolve(&o, &in, &q, &err), &err);
  assert_int_equal(q.bits, 4);
  assert_int_equal(q.group_size, 128);
  assert_false(q.sym);
  in = qq_synth_quant_default(QQ_OUT_CT);
  QQ_ASSERT_OK(qq_synth_quant_resolve(&o, &in, &q, &err), &err);
  assert_int_equal(q.bits, 8);
  assert_int_equal(q.group_size, -1);
  qq_config c;
  QQ_ASSERT_OK(qq_synth_config(&o, &c, &err), &err);
  assert_int_equal(c.hidden_size, 3584);
  assert_int_equal(c.intermediate_size, 18944);
  assert_false(c.tie_word_embeddings);
  qq_config_free(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_awq),
      cmocka_unit_test(test_gptq4),
      cmocka_unit_test(test_gptq8_asym),
      cmocka_unit_test(test_gptq3),
      cmocka_unit_test(test_w8a8),
      cmocka_unit_test(test_awq_word_layout),
      cmocka_unit_test(test_same_tensors_as_quantizer),
      cmocka_unit_test(test_threads_and_shards),
      cmocka_unit_test(test_seed),
      cmocka_unit_test(test_refused),
      cmocka_unit_test(test_resolve_defaults),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
