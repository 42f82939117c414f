/* test_synth.c — `qquant synth` checkpoints: the tiny shape loads (config + weights + check_weights),
 * weights follow the documented distribution and are reproducible (whatever the threads), the
 * tokenizer.json is a valid byte-level BPE whose ids fit the config, sharding and --force behave.
 * The quantized formats are in test_synth_quant.c. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "testutil.h"

static char *write_tiny(uint64_t seed, qq_dtype dt, size_t shard) {
  char *dir = qq_test_tmpdir("synth");
  qq_synth_options o = qq_synth_options_default();
  o.seed = seed;
  o.dtype = dt;
  o.max_shard_bytes = shard;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_synth_write(dir, &o, &err), &err);
  return dir;
}

static void test_tiny_loads(void **state) {
  (void)state;
  char *dir = write_tiny(7, QQ_DTYPE_BF16, (size_t)2 << 30);
  qq_config c;
  qq_weights *w;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_config_load(dir, &c, &err), &err);
  QQ_ASSERT_OK(qq_weights_open(dir, &w, &err), &err);
  QQ_ASSERT_OK(qq_config_check_weights(&c, w, &err), &err);
  assert_string_equal(c.architecture, "Qwen2ForCausalLM");
  assert_int_equal(c.hidden_size, 128);
  assert_int_equal(c.num_layers, 2);
  assert_int_equal(c.num_heads, 4);
  assert_int_equal(c.num_kv_heads, 2);
  assert_int_equal(c.intermediate_size, 352);
  assert_int_equal(c.vocab_size, 512);
  assert_true(c.tie_word_embeddings);
  assert_int_equal(qq_weights_count(w), 2 + 2 * 12);
  assert_null(qq_weights_find(w, "lm_head.weight"));

  /* Distribution: matrices N(0, 0.02^2); the sample std of n values has relative standard error
   * ~1/sqrt(2n) (0.28 % for the 65,536-element embedding), so 3 % is > 10 sigma; the mean has
   * standard error 0.02/sqrt(n) = 7.8e-5, bound 1e-3. Norms are exactly 1, biases exactly 0. */
  const qq_tensor_info *t = qq_weights_find(w, "model.embed_tokens.weight");
  float *f = malloc((size_t)t->numel * sizeof *f);
  QQ_ASSERT_OK(qq_tensor_to_f32(t, f, &err), &err);
  double sum = 0, sq = 0, mx = 0;
  for (int64_t i = 0; i < t->numel; i++) {
    sum += f[i];
    sq += (double)f[i] * f[i];
    mx = fmax(mx, fabs(f[i]));
  }
  double mean = sum / (double)t->numel, sd = sqrt(sq / (double)t->numel - mean * mean);
  assert_true(fabs(mean) < 1e-3);
  assert_true(fabs(sd - 0.02) < 0.02 * 0.03);
  assert_true(mx > 0.06 && mx < 0.02 * 7); /* tails exist (>3 sigma) but nothing absurd */
  /* The shape, not only the moments (the ziggurat's layers and tail): P(|z| < 0.5) = 0.3829,
   * P(|z| > 2) = 0.0455, P(|z| > 3) = 0.0027. With n = 65,536 their standard errors are 0.0019,
   * 0.0008 and 0.0002; the bounds are about 5 of those. bf16 rounding moves a value by < 0.4 %,
   * which shifts these fractions by < 1e-3. */
  double in05 = 0, out2 = 0, out3 = 0;
  for (int64_t i = 0; i < t->numel; i++) {
    double z = fabs(f[i]) / 0.02;
    in05 += z < 0.5;
    out2 += z > 2.0;
    out3 += z > 3.0;
  }
  assert_true(fabs(in05 / (double)t->numel - 0.3829) < 0.01);
  assert_true(fabs(out2 / (double)t->numel - 0.0455) < 0.005);
  assert_true(fabs(out3 / (double)t->numel - 0.0027) < 0.0012);
  free(f);
  t = qq_weights_find(w, "model.layers.1.post_attention_layernorm.weight");
  for (int64_t i = 0; i < t->numel; i++) assert_int_equal(((const uint16_t *)t->data)[i], 0x3f80); /* bf16 1.0 */
  t = qq_weights_find(w, "model.layers.0.self_attn.k_proj.bias");
  for (int64_t i = 0; i < t->numel; i++) assert_int_equal(((const uint16_t *)t->data)[i], 0);
  qq_weights_close(w);

  /* tokenizer.json: 256 byte tokens, merges whose parts and result are tokens, specials after the
   * regular vocab, every id below vocab_size; eos/bos point at <|endoftext|>. */
  char path[4096];
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  char *text;
  size_t len;
  QQ_ASSERT_OK(qq_read_file(path, &text, &len, &err), &err);
  cJSON *root = cJSON_Parse(text);
  assert_non_null(root);
  assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "normalizer"), "type")->valuestring, "NFC");
  const cJSON *pre = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "pre_tokenizer"), "pretokenizers");
  assert_string_equal(cJSON_GetObjectItem(pre->child, "type")->valuestring, "Split");
  assert_string_equal(cJSON_GetObjectItem(pre->child->next, "type")->valuestring, "ByteLevel");
  const cJSON *model = cJSON_GetObjectItem(root, "model");
  assert_string_equal(cJSON_GetObjectItem(model, "type")->valuestring, "BPE");
  const cJSON *vocab = cJSON_GetObjectItem(model, "vocab"), *merges = cJSON_GetObjectItem(model, "merges");
  int nv = cJSON_GetArraySize(vocab);
  assert_true(nv > 256 + 100);
  char *seen = calloc((size_t)nv, 1);
  for (const cJSON *e = vocab->child; e; e = e->next) {
    int id = (int)e->valuedouble;
    assert_true(id >= 0 && id < nv);
    assert_false(seen[id]);
    seen[id] = 1;
  }
  free(seen);
  assert_int_equal((int)cJSON_GetObjectItem(vocab, "\xc4\xa0")->valuedouble, 32); /* "Ġ" is the space byte */
  assert_int_equal((int)cJSON_GetObjectItem(vocab, "A")->valuedouble, 65);
  assert_true(cJSON_GetArraySize(merges) > 100);
  for (const cJSON *m = merges->child; m; m = m->next) {
    const char *a = m->child->valuestring, *b = m->child->next->valuestring;
    char ab[256];
    snprintf(ab, sizeof ab, "%s%s", a, b);
    assert_non_null(cJSON_GetObjectItem(vocab, a));
    assert_non_null(cJSON_GetObjectItem(vocab, b));
    assert_non_null(cJSON_GetObjectItem(vocab, ab));
  }
  const cJSON *added = cJSON_GetObjectItem(root, "added_tokens");
  assert_int_equal(cJSON_GetArraySize(added), 3);
  int eos = (int)cJSON_GetObjectItem(added->child, "id")->valuedouble;
  assert_string_equal(cJSON_GetObjectItem(added->child, "content")->valuestring, "<|endoftext|>");
  assert_int_equal(eos, nv);
  assert_true(eos + 2 < c.vocab_size);
  assert_int_equal(c.n_eos, 1);
  assert_int_equal(c.eos_token_ids[0], eos);
  cJSON_Delete(root);
  free(text);
  qq_config_free(&c);
  qq_test_rmtree(dir);
  free(dir);
}

static void test_reproducible_and_sharded(void **state) {
  (void)state;
  char *a = write_tiny(1, QQ_DTYPE_F32, 0), *c = write_tiny(2, QQ_DTYPE_F32, 0);
  /* b: sharded, and written with another thread count (values are split over threads per chunk) */
  char *b = qq_test_tmpdir("synth");
  qq_synth_options bo = qq_synth_options_default();
  bo.seed = 1;
  bo.dtype = QQ_DTYPE_F32;
  bo.max_shard_bytes = 300000;
  bo.n_threads = 3;
  qq_error berr = {0};
  QQ_ASSERT_OK(qq_synth_write(b, &bo, &berr), &berr);
  qq_weights *wa, *wb, *wc;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_weights_open(a, &wa, &err), &err);
  QQ_ASSERT_OK(qq_weights_open(b, &wb, &err), &err);
  QQ_ASSERT_OK(qq_weights_open(c, &wc, &err), &err);
  char idx[4096];
  snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", b);
  FILE *fp = fopen(idx, "r");
  assert_non_null(fp); /* 300 kB shards: the 1.7 MB f32 checkpoint is sharded */
  fclose(fp);
  qq_config cfg;
  QQ_ASSERT_OK(qq_config_load(b, &cfg, &err), &err);
  QQ_ASSERT_OK(qq_config_check_weights(&cfg, wb, &err), &err);
  assert_string_equal(cfg.torch_dtype, "float32");
  qq_config_free(&cfg);
  /* Same seed: the same bytes whatever the sharding and threads; another seed: different matrices. */
  assert_int_equal(qq_weights_count(wa), qq_weights_count(wb));
  for (size_t i = 0; i < qq_weights_count(wa); i++) {
    const qq_tensor_info *x = qq_weights_at(wa, i), *y = qq_weights_find(wb, x->name), *z = qq_weights_find(wc, x->name);
    assert_non_null(y);
    assert_int_equal(x->nbytes, y->nbytes);
    assert_memory_equal(x->data, y->data, x->nbytes);
    if (strstr(x->name, "proj.weight")) assert_memory_not_equal(x->data, z->data, x->nbytes);
  }
  qq_weights_close(wa);
  qq_weights_close(wb);
  qq_weights_close(wc);
  qq_test_rmtree(a);
  qq_test_rmtree(b);
  qq_test_rmtree(c);
  free(a);
  free(b);
  free(c);
}

static void test_options(void **state) {
  (void)state;
  char *dir = write_tiny(0, QQ_DTYPE_BF16, 0);
  qq_synth_options o = qq_synth_options_default();
  qq_error err = {0};
  assert_int_equal(qq_synth_write(dir, &o, &err), QQ_ERR_EXISTS);
  assert_non_null(strstr(err.msg, "--force"));
  o.force = true;
  QQ_ASSERT_OK(qq_synth_write(dir, &o, &err), &err);
  o.shape = "qwen9-1t";
  assert_int_equal(qq_synth_write(dir, &o, &err), QQ_ERR_INVALID_ARG);
  assert_non_null(strstr(err.msg, "qwen9-1t"));
  o = qq_synth_options_default();
  o.force = true;
  o.dtype = QQ_DTYPE_I8;
  assert_int_equal(qq_synth_write(dir, &o, &err), QQ_ERR_INVALID_ARG);
  /* Byte counts of the real shapes (bf16): parameters x 2 */
  assert_int_equal(qq_synth_bytes("qwen2.5-0.5b", QQ_DTYPE_BF16), 2ull * 494032768ull);
  assert_int_equal(qq_synth_bytes("qwen2.5-1.5b", QQ_DTYPE_BF16), 2ull * 1543714304ull);
  assert_int_equal(qq_synth_bytes("qwen2.5-7b", QQ_DTYPE_BF16), 2ull * 7615616512ull);
  assert_int_equal(qq_synth_bytes("nope", QQ_DTYPE_BF16), 0);
  /* qq_synth_config: the config.json the write produces, parsed */
  qq_config c, w;
  o = qq_synth_options_default();
  o.shape = "qwen2.5-1.5b";
  QQ_ASSERT_OK(qq_synth_config(&o, &c, &err), &err);
  assert_int_equal(c.hidden_size, 1536);
  assert_int_equal(c.intermediate_size, 8960);
  assert_int_equal(c.num_layers, 28);
  assert_int_equal(c.num_kv_heads, 2);
  assert_true(c.tie_word_embeddings);
  assert_int_equal(c.quant.method, QQ_QUANT_NONE);
  qq_config_free(&c);
  o = qq_synth_options_default();
  QQ_ASSERT_OK(qq_synth_config(&o, &c, &err), &err);
  QQ_ASSERT_OK(qq_config_load(dir, &w, &err), &err);
  assert_int_equal(c.vocab_size, w.vocab_size);
  assert_int_equal(c.eos_token_ids[0], w.eos_token_ids[0]);
  assert_int_equal(c.intermediate_size, w.intermediate_size);
  qq_config_free(&c);
  qq_config_free(&w);
  o.shape = "nope";
  assert_int_equal(qq_synth_config(&o, &c, &err), QQ_ERR_INVALID_ARG);
  qq_test_rmtree(dir);
  free(dir);
}

/* The synthetic tokenizer.json loads in qquant's tokenizer and encodes exactly as Hugging Face
 * tokenizers 0.23.3 does (ids recorded by loading the tiny synth folder's tokenizer.json there). The
 * tokenizer does not depend on the seed. */
static void test_tokenizer_parity(void **state) {
  (void)state;
  char *dir = write_tiny(5, QQ_DTYPE_BF16, 0);
  char path[4096];
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  qq_tokenizer *tok;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_tokenizer_load(path, &tok, &err), &err);
  static const char s1[] =
      "Hello world! The quick brown fox, 2024 numbers: 3.14 <|endoftext|> na\xc3\xafve caf\xc3\xa9 "
      "\xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x99\x82\r\n  spaces";
  static const int32_t ids1[] = {72,  309, 108, 111, 261, 271, 310, 33,  306, 296, 450, 277, 311, 353, 267, 111, 120,
                                 44,  32,  50,  48,  50,  52,  315, 117, 109, 98,  360, 58,  32,  51,  46,  49,  52,
                                 32,  472, 315, 97,  195, 175, 118, 101, 274, 97,  102, 195, 169, 32,  230, 157, 177,
                                 228, 186, 172, 32,  240, 159, 153, 130, 13,  10,  32,  262, 112, 382, 276};
  static const char s2[] = "The model is quantized.\n\ndef f(x):\n    return x";
  static const int32_t ids2[] = {290, 322, 314, 444, 289, 307, 10, 100, 101, 102, 267,
                                 40,  120, 461, 364, 295, 116, 117, 114, 110, 32,  120};
  const struct {
    const char *s;
    const int32_t *ids;
    size_t n;
  } cases[] = {{s1, ids1, QQ_ARRAY_LEN(ids1)}, {s2, ids2, QQ_ARRAY_LEN(ids2)}};
  qq_encode_options eo = qq_encode_options_default();
  for (size_t k = 0; k < QQ_ARRAY_LEN(cases); k++) {
    qq_token_ids out = {0};
    QQ_ASSERT_OK(qq_tokenizer_encode(tok, cases[k].s, strlen(cases[k].s), &eo, &out, &err), &err);
    assert_int_equal(out.n, cases[k].n);
    assert_memory_equal(out.ids, cases[k].ids, cases[k].n * sizeof(int32_t));
    char *text;
    size_t len;
    QQ_ASSERT_OK(qq_tokenizer_decode(tok, out.ids, out.n, false, &text, &len, &err), &err);
    assert_string_equal(text, cases[k].s);
    free(text);
    qq_token_ids_free(&out);
  }
  assert_int_equal(qq_tokenizer_token_to_id(tok, "<|endoftext|>"), 472);
  assert_true(qq_tokenizer_is_special(tok, 472));
  assert_true(qq_tokenizer_vocab_size(tok) <= 512);
  qq_tokenizer_free(tok);
  qq_test_rmtree(dir);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tiny_loads),
      cmocka_unit_test(test_reproducible_and_sharded),
      cmocka_unit_test(test_options),
      cmocka_unit_test(test_tokenizer_parity),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
