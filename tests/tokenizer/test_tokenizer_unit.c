/* test_tokenizer_unit.c — tokenizer rules on small tokenizers (no fixtures): the synthetic
 * tokenizers of hf_vectors.json (added-token lstrip/rstrip/single_word/normalized flags, every Split
 * behavior, Metaspace, truncation, padding, TemplateProcessing, parse_special off) against the ids HF
 * produced for them, and every malformed or unsupported tokenizer.json path. */
#include "tok_test.h"

static cJSON *g_hf;

static int setup(void **state) {
  (void)state;
  g_hf = tt_hf_vectors();
  return 0;
}

static int teardown(void **state) {
  (void)state;
  cJSON_Delete(g_hf);
  return 0;
}

static qq_tokenizer *load_obj(const cJSON *obj) {
  char *js = cJSON_PrintUnformatted(obj);
  assert_non_null(js);
  qq_tokenizer *tok = NULL;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_tokenizer_load_json(js, strlen(js), "synthetic.json", &tok, &err), &err);
  free(js);
  return tok;
}

static void test_synthetic_matches_hf(void **state) {
  (void)state;
  const cJSON *syn = cJSON_GetObjectItem(g_hf, "synthetic");
  const cJSON *s;
  int total = 0, matched = 0, decoded = 0;
  cJSON_ArrayForEach(s, syn) {
    const char *name = cJSON_GetObjectItem(s, "name")->valuestring;
    qq_tokenizer *tok = load_obj(cJSON_GetObjectItem(s, "tokenizer"));
    const cJSON *c;
    int i = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(s, "cases")) {
      const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
      static const char *keys[3] = {"ids", "ids_special", "ids_no_parse"};
      for (int k = 0; k < 3; k++) {
        qq_encode_options o = qq_encode_options_default();
        o.add_special = k == 1;
        o.parse_special = k != 2;
        qq_token_ids out = {0};
        qq_error err = {0};
        QQ_ASSERT_OK(qq_tokenizer_encode(tok, text, strlen(text), &o, &out, &err), &err);
        char what[128];
        snprintf(what, sizeof what, "%s case %d '%s' %s", name, i, text, keys[k]);
        matched += tt_ids_equal(&out, cJSON_GetObjectItem(c, keys[k]), what);
        total++;
        if (k == 1) {
          /* HF's decode of the ids with special tokens, keeping and skipping them (null where HF's
           * Strip decoder panics); streamed == full is checked inside tt_decode_both_ways. */
          for (int skip = 0; skip < 2; skip++) {
            const cJSON *exp = cJSON_GetObjectItem(c, skip ? "decoded_skip" : "decoded");
            char *dec = tt_decode_both_ways(tok, out.ids, out.n, skip);
            if (cJSON_IsString(exp)) {
              if (strcmp(dec, exp->valuestring)) fail_msg("%s: decode (skip %d) '%s', HF gives '%s'", what, skip, dec, exp->valuestring);
              decoded++;
            }
            free(dec);
          }
        } else {
          free(tt_decode_both_ways(tok, out.ids, out.n, k == 0));
        }
        qq_token_ids_free(&out);
      }
      i++;
    }
    qq_tokenizer_free(tok);
  }
  fprintf(stderr, "synthetic tokenizers: %d/%d encodings match HF, %d decodes identical to HF's\n", matched, total,
          decoded);
  assert_int_equal(matched, total);
}

/* A minimal valid tokenizer; tests replace one part of it. */
static const char *BASE =
    "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":5,\"content\":\"<s>\",\"special\":true}],"
    "\"normalizer\":null,\"pre_tokenizer\":null,\"post_processor\":null,\"decoder\":null,"
    "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"c\":3,\"abc\":4},"
    "\"merges\":[\"a b\",\"ab c\"]}}";

static cJSON *base_obj(void) {
  cJSON *j = cJSON_Parse(BASE);
  assert_non_null(j);
  return j;
}

/* Loads obj and expects status st with a message containing needle. */
static void expect_fail(cJSON *obj, qq_status st, const char *needle) {
  char *js = cJSON_PrintUnformatted(obj);
  qq_tokenizer *tok = (qq_tokenizer *)1;
  qq_error err = {0};
  qq_status got = qq_tokenizer_load_json(js, strlen(js), "t.json", &tok, &err);
  if (got != st || !strstr(err.msg, needle))
    fail_msg("expected %s mentioning '%s', got %s: %s", qq_status_name(st), needle, qq_status_name(got), err.msg);
  assert_null(tok);
  assert_non_null(strstr(err.msg, "t.json"));
  free(js);
  cJSON_Delete(obj);
}

static void replace(cJSON *obj, const char *key, const char *json) {
  cJSON *v = cJSON_Parse(json);
  assert_non_null(v);
  if (cJSON_GetObjectItemCaseSensitive(obj, key)) cJSON_ReplaceItemInObjectCaseSensitive(obj, key, v);
  else cJSON_AddItemToObject(obj, key, v);
}

static void replace_model(cJSON *obj, const char *key, const char *json) {
  replace(cJSON_GetObjectItem(obj, "model"), key, json);
}

static void test_base_and_merge_formats(void **state) {
  (void)state;
  cJSON *a = base_obj(), *b = base_obj();
  replace_model(b, "merges", "[[\"a\",\"b\"],[\"ab\",\"c\"]]");
  qq_tokenizer *ta = load_obj(a), *tb = load_obj(b);
  for (int k = 0; k < 2; k++) {
    qq_token_ids out = {0};
    qq_error err = {0};
    QQ_ASSERT_OK(qq_tokenizer_encode(k ? tb : ta, "abcab<s>cba", 11, NULL, &out, &err), &err);
    int32_t exp[] = {4, 2, 5, 3, 1, 0};
    assert_int_equal(out.n, 6);
    assert_memory_equal(out.ids, exp, sizeof exp);
    char *dec = NULL;
    QQ_ASSERT_OK(qq_tokenizer_decode(k ? tb : ta, out.ids, out.n, true, &dec, NULL, &err), &err);
    assert_string_equal(dec, "abc ab c b a"); /* no decoder: tokens joined with spaces, <s> skipped */
    free(dec);
    qq_token_ids_free(&out);
  }
  /* Empty text, with and without the (absent) post-processor: no ids (found by the fuzzer: the
   * empty id array must not reach memmove). */
  qq_token_ids none = {0};
  qq_error err = {0};
  qq_encode_options o = qq_encode_options_default();
  o.add_special = true;
  QQ_ASSERT_OK(qq_tokenizer_encode(ta, "", 0, &o, &none, &err), &err);
  QQ_ASSERT_OK(qq_tokenizer_encode(ta, NULL, 0, NULL, &none, &err), &err);
  assert_int_equal(none.n, 0);
  qq_tokenizer_free(ta);
  qq_tokenizer_free(tb);
  cJSON_Delete(a);
  cJSON_Delete(b);
  qq_tokenizer_free(NULL);
  qq_detokenizer_free(NULL);
  qq_token_ids_free(NULL);
}

static void test_malformed_json(void **state) {
  (void)state;
  qq_tokenizer *tok = NULL;
  qq_error err = {0};
  const char *bad = "{\n  \"model\": {\"type\": \"BPE\",,}\n}";
  assert_int_equal(qq_tokenizer_load_json(bad, strlen(bad), "bad.json", &tok, &err), QQ_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "bad.json: malformed JSON near line 2"));
  assert_null(tok);
  assert_int_equal(qq_tokenizer_load_json("[1,2]", 5, "arr.json", &tok, &err), QQ_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "not a JSON object"));
  assert_int_equal(qq_tokenizer_load_json("", 0, "empty.json", &tok, &err), QQ_ERR_FORMAT);
  assert_int_equal(qq_tokenizer_load("/nonexistent/dir/tokenizer.json", &tok, &err), QQ_ERR_IO);
  assert_int_equal(qq_tokenizer_load("/", &tok, &err), QQ_ERR_NOT_FOUND);
  assert_non_null(strstr(err.msg, "no tokenizer.json"));
}

static void test_bad_model(void **state) {
  (void)state;
  cJSON *j = base_obj();
  cJSON_DeleteItemFromObject(j, "model");
  expect_fail(j, QQ_ERR_FORMAT, "model is missing");
  j = base_obj();
  replace_model(j, "type", "\"WordPiece\"");
  expect_fail(j, QQ_ERR_UNSUPPORTED, "model.type 'WordPiece'");
  j = base_obj();
  replace_model(j, "vocab", "{\"a\":-1}");
  expect_fail(j, QQ_ERR_FORMAT, "model.vocab['a']");
  j = base_obj();
  replace_model(j, "vocab", "{\"a\":1.5}");
  expect_fail(j, QQ_ERR_FORMAT, "whole number");
  j = base_obj();
  replace_model(j, "vocab", "{\"a\":\"x\"}");
  expect_fail(j, QQ_ERR_FORMAT, "model.vocab['a']");
  j = base_obj();
  replace_model(j, "vocab", "{\"a\":99999999999}");
  expect_fail(j, QQ_ERR_FORMAT, "model.vocab['a']");
  j = base_obj();
  replace_model(j, "vocab", "[]");
  expect_fail(j, QQ_ERR_FORMAT, "model.vocab is missing or not an object");
  j = base_obj();
  replace_model(j, "merges", "[\"a b\",\"ab z\"]");
  expect_fail(j, QQ_ERR_FORMAT, "model.merges[1]: token 'z' is not in model.vocab");
  j = base_obj();
  replace_model(j, "merges", "[\"b a\"]");
  expect_fail(j, QQ_ERR_FORMAT, "merged token 'ba'");
  j = base_obj();
  replace_model(j, "merges", "[\"ab\"]");
  expect_fail(j, QQ_ERR_FORMAT, "model.merges[0] 'ab' is not two tokens");
  j = base_obj();
  replace_model(j, "merges", "[[\"a\"]]");
  expect_fail(j, QQ_ERR_FORMAT, "model.merges[0] must be");
  j = base_obj();
  replace_model(j, "merges", "{}");
  expect_fail(j, QQ_ERR_FORMAT, "model.merges is missing or not an array");
  j = base_obj();
  cJSON_AddStringToObject(cJSON_GetObjectItem(j, "model"), "unk_token", "<unk>");
  expect_fail(j, QQ_ERR_FORMAT, "model.unk_token '<unk>' is not in model.vocab");
  j = base_obj();
  cJSON_AddNumberToObject(cJSON_GetObjectItem(j, "model"), "dropout", 0.1);
  expect_fail(j, QQ_ERR_UNSUPPORTED, "model.dropout");
  j = base_obj();
  cJSON_AddStringToObject(cJSON_GetObjectItem(j, "model"), "continuing_subword_prefix", "##");
  expect_fail(j, QQ_ERR_UNSUPPORTED, "model.continuing_subword_prefix");
  j = base_obj();
  cJSON_AddStringToObject(cJSON_GetObjectItem(j, "model"), "end_of_word_suffix", "</w>");
  expect_fail(j, QQ_ERR_UNSUPPORTED, "model.end_of_word_suffix");
  j = base_obj();
  cJSON_AddStringToObject(cJSON_GetObjectItem(j, "model"), "byte_fallback", "yes");
  expect_fail(j, QQ_ERR_FORMAT, "model.byte_fallback must be true or false");
  j = base_obj();
  replace(j, "added_tokens", "[{\"id\":7}]");
  expect_fail(j, QQ_ERR_FORMAT, "added_tokens[0].content is missing");
  j = base_obj();
  replace(j, "added_tokens", "[{\"id\":-3,\"content\":\"x\"}]");
  expect_fail(j, QQ_ERR_FORMAT, "added_tokens[0]");
  j = base_obj();
  replace(j, "added_tokens", "{}");
  expect_fail(j, QQ_ERR_FORMAT, "added_tokens must be an array");
}

static void test_unsupported_components(void **state) {
  (void)state;
  cJSON *j = base_obj();
  replace(j, "normalizer", "{\"type\":\"Lowercase\"}");
  expect_fail(j, QQ_ERR_UNSUPPORTED, "normalizer.type 'Lowercase'");
  j = base_obj();
  replace(j, "normalizer", "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{\"type\":\"BertNormalizer\"}]}");
  expect_fail(j, QQ_ERR_UNSUPPORTED, "normalizer.normalizers[1].type 'BertNormalizer'");
  j = base_obj();
  replace(j, "normalizer", "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"(\"},\"content\":\"x\"}");
  expect_fail(j, QQ_ERR_UNSUPPORTED, "normalizer.pattern.Regex: PCRE2 cannot compile");
  j = base_obj();
  replace(j, "normalizer", "{\"type\":\"Replace\",\"pattern\":{\"Glob\":\"*\"},\"content\":\"x\"}");
  expect_fail(j, QQ_ERR_FORMAT, "normalizer.pattern must hold");
  j = base_obj();
  replace(j, "pre_tokenizer", "{\"type\":\"Whitespace\"}");
  expect_fail(j, QQ_ERR_UNSUPPORTED, "pre_tokenizer.type 'Whitespace'");
  j = base_obj();
  replace(j, "pre_tokenizer", "{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},\"behavior\":\"Sideways\"}");
  expect_fail(j, QQ_ERR_UNSUPPORTED, "pre_tokenizer.behavior 'Sideways'");
  j = base_obj();
  replace(j, "pre_tokenizer",
          "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"ByteLevel\"},{\"type\":\"Metaspace\"}]}");
  expect_fail(j, QQ_ERR_UNSUPPORTED, "after ByteLevel");
  j = base_obj();
  replace(j, "pre_tokenizer", "{\"type\":\"Metaspace\",\"prepend_scheme\":\"sometimes\"}");
  expect_fail(j, QQ_ERR_UNSUPPORTED, "prepend_scheme 'sometimes'");
  j = base_obj();
  replace(j, "pre_tokenizer", "{\"type\":\"Metaspace\",\"replacement\":\"ab\"}");
  expect_fail(j, QQ_ERR_FORMAT, "replacement must be exactly one character");
  j = base_obj();
  replace(j, "decoder", "{\"type\":\"WordPiece\"}");
  expect_fail(j, QQ_ERR_UNSUPPORTED, "decoder.type 'WordPiece'");
  j = base_obj();
  replace(j, "decoder", "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Fuse\"},{\"type\":\"ByteFallback\"}]}");
  expect_fail(j, QQ_ERR_UNSUPPORTED, "decoder.decoders[1]: ByteFallback after Fuse");
  j = base_obj();
  replace(j, "decoder", "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"x\"},\"content\":\"y\"}");
  expect_fail(j, QQ_ERR_UNSUPPORTED, "Regex pattern in a Replace decoder");
  j = base_obj();
  replace(j, "decoder", "{\"type\":\"Strip\",\"content\":\" \",\"start\":-1,\"stop\":0}");
  expect_fail(j, QQ_ERR_FORMAT, "Strip.start");
  j = base_obj();
  replace(j, "decoder", "{\"noType\":1}");
  expect_fail(j, QQ_ERR_FORMAT, "decoder.type is missing");
  j = base_obj();
  replace(j, "post_processor", "{\"type\":\"Unigram\"}");
  expect_fail(j, QQ_ERR_UNSUPPORTED, "post_processor.type 'Unigram'");
  j = base_obj();
  replace(j, "post_processor",
          "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\"}},{\"Sequence\":{\"id\":\"A\"}}],"
          "\"special_tokens\":{}}");
  expect_fail(j, QQ_ERR_FORMAT, "special token '<s>' has no ids");
  j = base_obj();
  replace(j, "post_processor",
          "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\"}},{\"Sequence\":{\"id\":\"A\"}}],"
          "\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[77]}}}");
  expect_fail(j, QQ_ERR_FORMAT, "id 77 is not a token");
  j = base_obj();
  replace(j, "post_processor", "{\"type\":\"TemplateProcessing\",\"single\":[{\"Sequence\":{\"id\":\"B\"}}]}");
  expect_fail(j, QQ_ERR_UNSUPPORTED, "Sequence.id 'B'");
  j = base_obj();
  replace(j, "post_processor", "{\"type\":\"TemplateProcessing\",\"single\":[]}");
  expect_fail(j, QQ_ERR_FORMAT, "sequence A exactly once");
  j = base_obj();
  replace(j, "truncation", "{\"max_length\":\"ten\"}");
  expect_fail(j, QQ_ERR_FORMAT, "truncation.max_length");
  j = base_obj();
  replace(j, "truncation", "{\"max_length\":4,\"direction\":\"Up\"}");
  expect_fail(j, QQ_ERR_UNSUPPORTED, "truncation.direction 'Up'");
  j = base_obj();
  replace(j, "padding", "{\"strategy\":\"Longest\"}");
  expect_fail(j, QQ_ERR_UNSUPPORTED, "padding.strategy");
}

static void test_invalid_inputs(void **state) {
  (void)state;
  cJSON *j = base_obj();
  replace(j, "post_processor",
          "{\"type\":\"BertProcessing\",\"cls\":[\"<s>\",5],\"sep\":[\"<s>\",5]}");
  replace(j, "truncation", "{\"max_length\":1}");
  qq_tokenizer *tok = load_obj(j);
  cJSON_Delete(j);
  qq_error err = {0};
  qq_token_ids out = {0};
  /* Invalid UTF-8 text. */
  assert_int_equal(qq_tokenizer_encode(tok, "ab\xc3", 3, NULL, &out, &err), QQ_ERR_INVALID_ARG);
  assert_non_null(strstr(err.msg, "not valid UTF-8 (byte 2"));
  assert_int_equal(qq_tokenizer_encode(tok, "\xed\xa0\x80", 3, NULL, &out, &err), QQ_ERR_INVALID_ARG); /* surrogate */
  assert_int_equal(qq_tokenizer_encode(tok, "\xc0\xaf", 2, NULL, &out, &err), QQ_ERR_INVALID_ARG);     /* overlong */
  assert_int_equal(out.n, 0);
  /* Truncation too short for the post-processor's two special tokens. */
  qq_encode_options o = qq_encode_options_default();
  o.add_special = true;
  assert_int_equal(qq_tokenizer_encode(tok, "ab", 2, &o, &out, &err), QQ_ERR_INVALID_ARG);
  assert_non_null(strstr(err.msg, "truncation.max_length 1"));
  /* Without special tokens it truncates to one id. */
  QQ_ASSERT_OK(qq_tokenizer_encode(tok, "abcab", 5, NULL, &out, &err), &err);
  assert_int_equal(out.n, 1);
  assert_int_equal(out.ids[0], 4);
  /* Decoding ids outside the vocabulary. */
  int32_t bad[2] = {0, 6};
  char *s = NULL;
  assert_int_equal(qq_tokenizer_decode(tok, bad, 2, false, &s, NULL, &err), QQ_ERR_INVALID_ARG);
  assert_non_null(strstr(err.msg, "ids[1] = 6"));
  assert_null(s);
  bad[1] = -5;
  assert_int_equal(qq_tokenizer_decode(tok, bad, 2, false, &s, NULL, &err), QQ_ERR_INVALID_ARG);
  assert_int_equal(qq_tokenizer_encode(NULL, "a", 1, NULL, &out, &err), QQ_ERR_INVALID_ARG);
  assert_int_equal(qq_tokenizer_encode(tok, NULL, 1, NULL, &out, &err), QQ_ERR_INVALID_ARG);
  /* An empty decode is an empty string. */
  QQ_ASSERT_OK(qq_tokenizer_decode(tok, NULL, 0, false, &s, NULL, &err), &err);
  assert_string_equal(s, "");
  free(s);
  qq_token_ids_free(&out);
  qq_tokenizer_free(tok);
}

/* Unknown characters become <unk> (fused when fuse_unk); byte fallback covers them when the byte
 * tokens exist; without either they are dropped, as HF does. */
static void test_unknown_characters(void **state) {
  (void)state;
  cJSON *j = base_obj();
  cJSON *m = cJSON_GetObjectItem(j, "model");
  cJSON_AddNumberToObject(cJSON_GetObjectItem(m, "vocab"), "<unk>", 6);
  cJSON_AddNumberToObject(cJSON_GetObjectItem(m, "vocab"), "<0xC3>", 7);
  cJSON_AddNumberToObject(cJSON_GetObjectItem(m, "vocab"), "<0xA9>", 8);
  cJSON_AddStringToObject(m, "unk_token", "<unk>");
  cJSON_AddBoolToObject(m, "fuse_unk", true);
  cJSON_AddBoolToObject(m, "byte_fallback", true);
  qq_tokenizer *tok = load_obj(j);
  qq_token_ids out = {0};
  qq_error err = {0};
  const char *s = "a\xc3\xa9xyb"; /* a é x y b */
  QQ_ASSERT_OK(qq_tokenizer_encode(tok, s, strlen(s), NULL, &out, &err), &err);
  int32_t exp[] = {0, 7, 8, 6, 1};
  assert_int_equal(out.n, 5);
  assert_memory_equal(out.ids, exp, sizeof exp);
  qq_token_ids_free(&out);
  qq_tokenizer_free(tok);
  cJSON_Delete(j);
  j = base_obj();
  tok = load_obj(j);
  QQ_ASSERT_OK(qq_tokenizer_encode(tok, s, strlen(s), NULL, &out, &err), &err);
  /* The dropped characters leave a and b adjacent, and they merge. */
  assert_int_equal(out.n, 1);
  assert_int_equal(out.ids[0], 2);
  qq_token_ids_free(&out);
  qq_tokenizer_free(tok);
  cJSON_Delete(j);
}

/* Long words take the heap merge path; it must agree with the short-word path on every prefix. */
static void test_long_word_paths_agree(void **state) {
  (void)state;
  cJSON *j = base_obj();
  qq_tokenizer *tok = load_obj(j);
  cJSON_Delete(j);
  char text[3 * 200 + 1];
  for (int i = 0; i < 200; i++) memcpy(text + 3 * i, i % 3 ? "abc" : "cab", 3);
  qq_token_ids whole = {0};
  qq_error err = {0};
  QQ_ASSERT_OK(qq_tokenizer_encode(tok, text, 600, NULL, &whole, &err), &err);
  /* Each "cab" yields c, ab; each "abc" yields abc: 0 pieces repeat, so the whole equals the
   * concatenation of the 3-character pieces. */
  size_t k = 0;
  for (int i = 0; i < 200; i++) {
    if (i % 3) {
      assert_int_equal(whole.ids[k++], 4);
    } else {
      assert_int_equal(whole.ids[k++], 3);
      assert_int_equal(whole.ids[k++], 2);
    }
  }
  assert_int_equal(whole.n, k);
  qq_token_ids_free(&whole);
  qq_tokenizer_free(tok);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_synthetic_matches_hf),  cmocka_unit_test(test_base_and_merge_formats),
      cmocka_unit_test(test_malformed_json),        cmocka_unit_test(test_bad_model),
      cmocka_unit_test(test_unsupported_components), cmocka_unit_test(test_invalid_inputs),
      cmocka_unit_test(test_unknown_characters),    cmocka_unit_test(test_long_word_paths_agree),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
