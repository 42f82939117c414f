/* test_tokenizer_golden.c — token-for-token parity with Hugging Face `tokenizers` on the shared
 * fixtures: every string of tokenizer_golden.json and the first 100,000 characters of wikitext-2
 * under the real Qwen2.5 tokenizer and the qwen2-tiny-lm fixture tokenizer; the llama-stories260k
 * SentencePiece-style tokenizer against tests/tokenizer/hf_vectors.json (made by gen_hf_vectors.py);
 * decoding (full and streamed) against HF's decode. */
#include <time.h>

#include "tok_test.h"

typedef struct golden {
  cJSON *g;
  cJSON *hf;
  qq_tokenizer *qwen, *fixture, *llama;
} golden;

static golden G;

/* The load time of the 151k-token Qwen tokenizer is printed, not asserted: speed goals are checked by
 * benchmarks (bench/bench_tokenizer), never by timed unit tests, which flake on shared machines. */
static double cpu_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int setup(void **state) {
  (void)state;
  qq_error err = {0};
  G.g = tt_read_json(qq_test_fixture("tokenizers/tokenizer_golden.json"));
  G.hf = tt_hf_vectors();
  double w0 = qq_now_sec(), t0 = cpu_seconds();
  QQ_ASSERT_OK(qq_tokenizer_load(qq_test_fixture("tokenizers/qwen2.5/tokenizer.json"), &G.qwen, &err), &err);
  double dt = cpu_seconds() - t0;
  fprintf(stderr, "Qwen2.5 tokenizer.json (151,669 tokens) loaded in %.3f s CPU (%.3f s wall)\n", dt, qq_now_sec() - w0);
  /* A model directory works as well as the file. */
  QQ_ASSERT_OK(qq_tokenizer_load(qq_test_fixture("models/qwen2-tiny-lm"), &G.fixture, &err), &err);
  QQ_ASSERT_OK(qq_tokenizer_load(qq_test_fixture("models/llama-stories260k/tokenizer.json"), &G.llama, &err), &err);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  qq_tokenizer_free(G.qwen);
  qq_tokenizer_free(G.fixture);
  qq_tokenizer_free(G.llama);
  cJSON_Delete(G.g);
  cJSON_Delete(G.hf);
  return 0;
}

static void check_strings(const qq_tokenizer *tok, const char *key) {
  const cJSON *strs = cJSON_GetObjectItem(G.g, "strings");
  const cJSON *ids = cJSON_GetObjectItem(G.g, key);
  assert_int_equal(cJSON_GetArraySize(strs), cJSON_GetArraySize(ids));
  int matched = 0, n = cJSON_GetArraySize(strs);
  qq_encode_options o = qq_encode_options_default();
  for (int i = 0; i < n; i++) {
    const char *s = cJSON_GetArrayItem(strs, i)->valuestring;
    qq_token_ids out = {0};
    qq_error err = {0};
    QQ_ASSERT_OK(qq_tokenizer_encode(tok, s, strlen(s), &o, &out, &err), &err);
    char what[96];
    snprintf(what, sizeof what, "%s[%d]", key, i);
    matched += tt_ids_equal(&out, cJSON_GetArrayItem(ids, i), what);
    /* Decoding is the exact inverse for all of these strings (they are NFC already, and HF
     * round-trips them too: see test_qwen_decode_matches_hf). */
    char *dec = tt_decode_both_ways(tok, out.ids, out.n, false);
    if (strcmp(dec, s)) fail_msg("%s: decode(encode(s)) = '%s', expected '%s'", what, dec, s);
    free(dec);
    qq_token_ids_free(&out);
  }
  fprintf(stderr, "%s: %d/%d strings match HF token for token\n", key, matched, n);
  assert_int_equal(matched, n);
}

static void test_qwen_strings(void **state) {
  (void)state;
  check_strings(G.qwen, "qwen_ids");
}

static void test_fixture_strings(void **state) {
  (void)state;
  check_strings(G.fixture, "fixture_ids");
}

/* The first 100,000 characters (code points) of wikitext2-test.txt. */
static char *wikitext_100k(size_t *len) {
  char *w = NULL;
  size_t wl = 0;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_read_file(qq_test_fixture("corpora/wikitext2-test.txt"), &w, &wl, &err), &err);
  size_t b = 0, chars = 0;
  while (b < wl && chars < 100000) {
    b++;
    while (b < wl && ((unsigned char)w[b] & 0xc0) == 0x80) b++;
    chars++;
  }
  *len = b;
  return w;
}

static void check_wikitext(const qq_tokenizer *tok, const char *key) {
  size_t len;
  char *w = wikitext_100k(&len);
  qq_token_ids out = {0};
  qq_error err = {0};
  qq_encode_options o = qq_encode_options_default();
  o.add_special = false;
  QQ_ASSERT_OK(qq_tokenizer_encode(tok, w, len, &o, &out, &err), &err);
  const cJSON *exp = cJSON_GetObjectItem(G.g, key);
  bool ok = tt_ids_equal(&out, exp, key);
  fprintf(stderr, "%s: %zu ids, %s\n", key, out.n, ok ? "identical to HF" : "DIFFERENT");
  assert_true(ok);
  char *dec = NULL;
  size_t dl = 0;
  QQ_ASSERT_OK(qq_tokenizer_decode(tok, out.ids, out.n, false, &dec, &dl, &err), &err);
  assert_int_equal(dl, len);
  assert_memory_equal(dec, w, len);
  free(dec);
  qq_token_ids_free(&out);
  free(w);
}

static void test_qwen_wikitext(void **state) {
  (void)state;
  check_wikitext(G.qwen, "wikitext2_first_100k_chars_qwen_ids");
}

static void test_fixture_wikitext(void **state) {
  (void)state;
  check_wikitext(G.fixture, "wikitext2_first_100k_chars_fixture_ids");
}

static void test_qwen_decode_matches_hf(void **state) {
  (void)state;
  const cJSON *cases = cJSON_GetObjectItem(cJSON_GetObjectItem(G.hf, "qwen"), "decode");
  const cJSON *c;
  qq_token_ids ids = {0};
  int n = 0;
  cJSON_ArrayForEach(c, cases) {
    tt_json_ids(cJSON_GetObjectItem(c, "ids"), &ids);
    for (int skip = 0; skip < 2; skip++) {
      char *dec = tt_decode_both_ways(G.qwen, ids.ids, ids.n, skip);
      const char *exp = cJSON_GetObjectItem(c, skip ? "text_skip" : "text")->valuestring;
      if (strcmp(dec, exp)) fail_msg("qwen decode case %d (skip %d): got '%s', HF gives '%s'", n, skip, dec, exp);
      free(dec);
    }
    n++;
  }
  qq_token_ids_free(&ids);
  fprintf(stderr, "qwen decode: %d/%d id sequences decode as HF does\n", n, n);
}

static void test_llama_encode_matches_hf(void **state) {
  (void)state;
  const cJSON *cases = cJSON_GetObjectItem(cJSON_GetObjectItem(G.hf, "llama"), "cases");
  const cJSON *c;
  int n = 0, matched = 0;
  cJSON_ArrayForEach(c, cases) {
    const char *s = cJSON_GetObjectItem(c, "text")->valuestring;
    qq_error err = {0};
    for (int sp = 0; sp < 2; sp++) {
      qq_encode_options o = qq_encode_options_default();
      o.add_special = sp;
      qq_token_ids out = {0};
      QQ_ASSERT_OK(qq_tokenizer_encode(G.llama, s, strlen(s), &o, &out, &err), &err);
      char what[64];
      snprintf(what, sizeof what, "llama case %d (add_special %d)", n, sp);
      bool ok = tt_ids_equal(&out, cJSON_GetObjectItem(c, sp ? "ids_special" : "ids"), what);
      matched += ok;
      if (sp) {
        for (int skip = 0; skip < 2; skip++) {
          char *dec = tt_decode_both_ways(G.llama, out.ids, out.n, skip);
          const char *exp = cJSON_GetObjectItem(c, skip ? "decoded_skip" : "decoded_special")->valuestring;
          if (strcmp(dec, exp)) fail_msg("%s: decode (skip %d) '%s', HF gives '%s'", what, skip, dec, exp);
          free(dec);
        }
      }
      qq_token_ids_free(&out);
    }
    n++;
  }
  fprintf(stderr, "llama-stories260k: %d/%d encodings match HF (%d strings, with and without BOS)\n", matched, 2 * n, n);
  assert_int_equal(matched, 2 * n);
}

static void test_llama_decode_matches_hf(void **state) {
  (void)state;
  const cJSON *cases = cJSON_GetObjectItem(cJSON_GetObjectItem(G.hf, "llama"), "decode");
  const cJSON *c;
  qq_token_ids ids = {0};
  int n = 0;
  cJSON_ArrayForEach(c, cases) {
    tt_json_ids(cJSON_GetObjectItem(c, "ids"), &ids);
    for (int skip = 0; skip < 2; skip++) {
      char *dec = tt_decode_both_ways(G.llama, ids.ids, ids.n, skip);
      const char *exp = cJSON_GetObjectItem(c, skip ? "text_skip" : "text")->valuestring;
      if (strcmp(dec, exp)) fail_msg("llama decode case %d (skip %d): got '%s', HF gives '%s'", n, skip, dec, exp);
      free(dec);
    }
    n++;
  }
  qq_token_ids_free(&ids);
}

/* Streaming never emits half a character: push the byte-level ids of a 4-byte emoji one by one. */
static void test_detokenizer_holds_partial_utf8(void **state) {
  (void)state;
  qq_error err = {0};
  const int32_t f0 = qq_tokenizer_token_to_id(G.qwen, "\xc3\xb0");   /* byte F0 */
  const int32_t x9f = qq_tokenizer_token_to_id(G.qwen, "\xc5\x81");  /* byte 9F */
  const int32_t x98 = qq_tokenizer_token_to_id(G.qwen, "\xc4\xba");  /* byte 98 */
  const int32_t x80 = qq_tokenizer_token_to_id(G.qwen, "\xc4\xa2");  /* byte 80 */
  assert_true(f0 >= 0 && x9f >= 0 && x98 >= 0 && x80 >= 0);
  qq_detokenizer *d;
  QQ_ASSERT_OK(qq_detokenizer_create(G.qwen, false, &d, &err), &err);
  char *buf = NULL;
  size_t len = 0, cap = 0;
  int32_t seq[4] = {f0, x9f, x98, x80};
  for (int i = 0; i < 3; i++) {
    QQ_ASSERT_OK(qq_detokenizer_push(d, seq[i], &buf, &len, &cap, &err), &err);
    assert_int_equal(len, 0);
  }
  QQ_ASSERT_OK(qq_detokenizer_push(d, seq[3], &buf, &len, &cap, &err), &err);
  assert_string_equal(buf, "\xf0\x9f\x98\x80"); /* U+1F600 */
  /* An incomplete tail at the end becomes U+FFFD. */
  QQ_ASSERT_OK(qq_detokenizer_push(d, f0, &buf, &len, &cap, &err), &err);
  assert_int_equal(len, 4);
  QQ_ASSERT_OK(qq_detokenizer_finish(d, &buf, &len, &cap, &err), &err);
  assert_string_equal(buf, "\xf0\x9f\x98\x80\xef\xbf\xbd");
  /* Out-of-range ids are rejected. */
  assert_int_equal(qq_detokenizer_push(d, qq_tokenizer_vocab_size(G.qwen), &buf, &len, &cap, &err), QQ_ERR_INVALID_ARG);
  assert_int_equal(qq_detokenizer_push(d, -1, &buf, &len, &cap, &err), QQ_ERR_INVALID_ARG);
  qq_detokenizer_free(d);
  free(buf);
}

static void test_vocab_queries(void **state) {
  (void)state;
  assert_int_equal(qq_tokenizer_vocab_size(G.qwen), 151669);
  assert_int_equal(qq_tokenizer_token_to_id(G.qwen, "<|endoftext|>"), 151643);
  assert_int_equal(qq_tokenizer_token_to_id(G.qwen, "<|im_end|>"), 151645);
  assert_int_equal(qq_tokenizer_token_to_id(G.qwen, "no such token"), -1);
  assert_string_equal(qq_tokenizer_id_to_token(G.qwen, 151644), "<|im_start|>");
  assert_string_equal(qq_tokenizer_id_to_token(G.qwen, 9707), "Hello");
  assert_null(qq_tokenizer_id_to_token(G.qwen, 151669));
  assert_true(qq_tokenizer_is_special(G.qwen, 151643));
  assert_false(qq_tokenizer_is_special(G.qwen, 151667)); /* <think>: added, not special */
  assert_false(qq_tokenizer_is_special(G.qwen, 9707));
  assert_int_equal(qq_tokenizer_vocab_size(G.llama), 512);
  assert_true(qq_tokenizer_is_special(G.llama, 1));
}

/* parse_special = false: special tokens in the text are ordinary text. */
static void test_qwen_no_parse_special(void **state) {
  (void)state;
  qq_error err = {0};
  qq_encode_options o = qq_encode_options_default();
  const char *s = "<|im_start|>user";
  qq_token_ids a = {0}, b = {0};
  QQ_ASSERT_OK(qq_tokenizer_encode(G.qwen, s, strlen(s), &o, &a, &err), &err);
  assert_int_equal(a.n, 2);
  assert_int_equal(a.ids[0], 151644);
  o.parse_special = false;
  QQ_ASSERT_OK(qq_tokenizer_encode(G.qwen, s, strlen(s), &o, &b, &err), &err);
  assert_true(b.n > 2);
  for (size_t i = 0; i < b.n; i++) assert_true(b.ids[i] < 151643);
  char *dec = tt_decode_both_ways(G.qwen, b.ids, b.n, true);
  assert_string_equal(dec, s);
  free(dec);
  qq_token_ids_free(&a);
  qq_token_ids_free(&b);
}

/* qwen2-tiny-spam-cls's tokenizer.json truncates to 256 tokens, as HF's encode does. */
static void test_spam_cls_truncation(void **state) {
  (void)state;
  qq_error err = {0};
  qq_tokenizer *tok = NULL;
  QQ_ASSERT_OK(qq_tokenizer_load(qq_test_fixture("models/qwen2-tiny-spam-cls"), &tok, &err), &err);
  char *js = NULL;
  size_t len = 0;
  QQ_ASSERT_OK(qq_read_file(qq_test_fixture("corpora/spam-val.jsonl"), &js, &len, &err), &err);
  const cJSON *exp = cJSON_GetObjectItem(cJSON_GetObjectItem(G.hf, "spam_cls"), "first_mails_ids");
  char *line = js;
  int truncated = 0;
  for (int i = 0; i < cJSON_GetArraySize(exp); i++) {
    char *nl = strchr(line, '\n');
    assert_non_null(nl);
    *nl = '\0';
    cJSON *mail = cJSON_Parse(line);
    assert_non_null(mail);
    const char *text = cJSON_GetObjectItem(mail, "text")->valuestring;
    qq_token_ids out = {0};
    QQ_ASSERT_OK(qq_tokenizer_encode(tok, text, strlen(text), NULL, &out, &err), &err);
    char what[48];
    snprintf(what, sizeof what, "spam-val mail %d", i);
    assert_true(tt_ids_equal(&out, cJSON_GetArrayItem(exp, i), what));
    truncated += out.n == 256;
    qq_token_ids_free(&out);
    cJSON_Delete(mail);
    line = nl + 1;
  }
  assert_true(truncated > 0); /* the check above covered the truncation */
  free(js);
  qq_tokenizer_free(tok);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_qwen_strings),
      cmocka_unit_test(test_fixture_strings),
      cmocka_unit_test(test_qwen_wikitext),
      cmocka_unit_test(test_fixture_wikitext),
      cmocka_unit_test(test_qwen_decode_matches_hf),
      cmocka_unit_test(test_llama_encode_matches_hf),
      cmocka_unit_test(test_llama_decode_matches_hf),
      cmocka_unit_test(test_detokenizer_holds_partial_utf8),
      cmocka_unit_test(test_vocab_queries),
      cmocka_unit_test(test_qwen_no_parse_special),
      cmocka_unit_test(test_spam_cls_truncation),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
