/* tok_test.h — helpers shared by the tokenizer tests: JSON test vectors, id comparison, streaming
 * decode checks. Header-only (static functions) so that each test program stays one file. */
#ifndef QQ_TOK_TEST_H
#define QQ_TOK_TEST_H

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "testutil.h"

/* Reads and parses a JSON file; fails the test when it cannot. */
static inline cJSON *tt_read_json(const char *path) {
  char *js = NULL;
  size_t len = 0;
  qq_error err = {0};
  if (qq_read_file(path, &js, &len, &err) != QQ_OK) fail_msg("%s", err.msg);
  cJSON *j = cJSON_ParseWithLength(js, len);
  free(js);
  if (!j) fail_msg("%s: malformed JSON", path);
  return j;
}

/* The committed HF vectors (tests/tokenizer/hf_vectors.json). */
static inline cJSON *tt_hf_vectors(void) {
  const char *src = getenv("QQ_SOURCE_DIR");
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/tokenizer/hf_vectors.json", src && *src ? src : ".");
  return tt_read_json(path);
}

/* Compares ids with a JSON array; on mismatch prints both and returns false. */
static inline bool tt_ids_equal(const qq_token_ids *got, const cJSON *exp, const char *what) {
  bool ok = got->n == (size_t)cJSON_GetArraySize(exp);
  for (size_t i = 0; ok && i < got->n; i++) ok = got->ids[i] == cJSON_GetArrayItem(exp, (int)i)->valueint;
  if (!ok) {
    size_t first = 0;
    while (first < got->n && first < (size_t)cJSON_GetArraySize(exp) &&
           got->ids[first] == cJSON_GetArrayItem(exp, (int)first)->valueint)
      first++;
    fprintf(stderr, "%s: ids differ at position %zu (got %zu ids, expected %d)\n  got:", what, first, got->n,
            cJSON_GetArraySize(exp));
    for (size_t i = first; i < got->n && i < first + 12; i++) fprintf(stderr, " %d", got->ids[i]);
    fprintf(stderr, "\n  exp:");
    for (int i = (int)first; i < cJSON_GetArraySize(exp) && i < (int)first + 12; i++)
      fprintf(stderr, " %d", cJSON_GetArrayItem(exp, i)->valueint);
    fprintf(stderr, "\n");
  }
  return ok;
}

static inline void tt_json_ids(const cJSON *arr, qq_token_ids *out) {
  out->n = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, arr) {
    if (out->n == out->cap) {
      out->cap = out->cap ? out->cap * 2 : 64;
      out->ids = realloc(out->ids, out->cap * sizeof *out->ids);
      assert_non_null(out->ids);
    }
    out->ids[out->n++] = e->valueint;
  }
}

/* Strict UTF-8 check written independently of the library's. */
static inline bool tt_utf8_ok(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    size_t w;
    unsigned cp;
    if (c < 0x80) { i++; continue; }
    if (c >= 0xc2 && c <= 0xdf) { w = 2; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { w = 3; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { w = 4; cp = c & 0x07; }
    else return false;
    if (i + w > n) return false;
    for (size_t k = 1; k < w; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if ((w == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (w == 4 && (cp < 0x10000 || cp > 0x10ffff)))
      return false;
    i += w;
  }
  return true;
}

/* Decodes ids in full and through the detokenizer one id at a time; checks that every push emits
 * complete UTF-8 and that the pushes plus finish equal the full decode. Returns the full decode
 * (heap). */
static inline char *tt_decode_both_ways(const qq_tokenizer *tok, const int32_t *ids, size_t n, bool skip) {
  qq_error err = {0};
  char *full = NULL;
  size_t full_len = 0;
  QQ_ASSERT_OK(qq_tokenizer_decode(tok, ids, n, skip, &full, &full_len, &err), &err);
  assert_int_equal(strlen(full), full_len);
  qq_detokenizer *d = NULL;
  QQ_ASSERT_OK(qq_detokenizer_create(tok, skip, &d, &err), &err);
  char *buf = NULL;
  size_t len = 0, cap = 0;
  for (size_t i = 0; i < n; i++) {
    size_t before = len;
    QQ_ASSERT_OK(qq_detokenizer_push(d, ids[i], &buf, &len, &cap, &err), &err);
    if (!tt_utf8_ok((const unsigned char *)buf + before, len - before))
      fail_msg("push of id %d (index %zu) emitted a partial UTF-8 sequence", ids[i], i);
  }
  size_t before = len;
  QQ_ASSERT_OK(qq_detokenizer_finish(d, &buf, &len, &cap, &err), &err);
  assert_true(tt_utf8_ok((const unsigned char *)buf + before, len - before));
  qq_detokenizer_free(d);
  if (len != full_len || (len && memcmp(buf, full, len)))
    fail_msg("streamed decode differs from the full decode:\n  stream: '%.*s'\n  full:   '%s'", (int)len, buf ? buf : "", full);
  free(buf);
  return full;
}

#endif
