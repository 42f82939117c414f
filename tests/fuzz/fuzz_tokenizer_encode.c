/* fuzz-libs: qq_model */
/* fuzz_tokenizer_encode.c — arbitrary bytes as text for the fixture tokenizers (loaded once from
 * $QQ_FIXTURES: qwen2-tiny-lm's byte-level BPE and llama-stories260k's SentencePiece-style BPE). The
 * first input byte picks the tokenizer and the options. Invariants checked:
 *  - invalid UTF-8 is rejected with QQ_ERR_INVALID_ARG, valid UTF-8 always encodes;
 *  - every id is inside the vocabulary;
 *  - the streamed decode equals the full decode and no push emits a partial UTF-8 sequence;
 *  - byte-level: decode(encode(s)) == s when s is unchanged by NFC (no byte >= 0xCC), and always
 *    encode(decode(encode(s))) == encode(s) (NFC is idempotent);
 *  - SentencePiece-style without special-token parsing: decode(encode(s)) == s when s holds no U+2581
 *    (the decoder turns U+2581 into spaces, and strips the one leading space the normalizer adds). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static qq_tokenizer *g_tok[2];

static void load_once(void) {
  if (g_tok[0]) return;
  const char *root = getenv("QQ_FIXTURES");
  if (!root || !*root) root = "../shared/fixtures";
  const char *rel[2] = {"models/qwen2-tiny-lm/tokenizer.json", "models/llama-stories260k/tokenizer.json"};
  for (int i = 0; i < 2; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, rel[i]);
    qq_error err = {0};
    if (qq_tokenizer_load(path, &g_tok[i], &err) != QQ_OK) {
      fprintf(stderr, "fuzz_tokenizer_encode: %s (set QQ_FIXTURES)\n", err.msg);
      abort();
    }
  }
}

/* Independent strict UTF-8 check. */
static int utf8_ok(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i], cp, w;
    if (c < 0x80) { i++; continue; }
    if (c >= 0xc2 && c <= 0xdf) { w = 2; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { w = 3; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { w = 4; cp = c & 0x07; }
    else return 0;
    if (i + w > n) return 0;
    for (unsigned k = 1; k < w; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if ((w == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (w == 4 && (cp < 0x10000 || cp > 0x10ffff)))
      return 0;
    i += w;
  }
  return 1;
}

static char *decode_checked(const qq_tokenizer *tok, const qq_token_ids *ids, bool skip, size_t *out_len) {
  qq_error err = {0};
  char *full = NULL;
  size_t full_len = 0;
  if (qq_tokenizer_decode(tok, ids->ids, ids->n, skip, &full, &full_len, &err) != QQ_OK) abort();
  if (!utf8_ok((const uint8_t *)full, full_len)) abort();
  qq_detokenizer *d = NULL;
  if (qq_detokenizer_create(tok, skip, &d, &err) != QQ_OK) abort();
  char *buf = NULL;
  size_t len = 0, cap = 0;
  for (size_t i = 0; i < ids->n; i++) {
    size_t before = len;
    if (qq_detokenizer_push(d, ids->ids[i], &buf, &len, &cap, &err) != QQ_OK) abort();
    if (!utf8_ok((const uint8_t *)buf + before, len - before)) abort();
  }
  if (qq_detokenizer_finish(d, &buf, &len, &cap, &err) != QQ_OK) abort();
  if (len != full_len || (len && memcmp(buf, full, len))) abort();
  qq_detokenizer_free(d);
  free(buf);
  *out_len = full_len;
  return full;
}

static int same_ids(const qq_token_ids *a, const qq_token_ids *b) {
  return a->n == b->n && (a->n == 0 || !memcmp(a->ids, b->ids, a->n * sizeof *a->ids));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  load_once();
  if (size == 0) return 0;
  uint8_t sel = data[0];
  const char *text = (const char *)data + 1;
  size_t n = size - 1;
  int which = sel & 1;
  const qq_tokenizer *tok = g_tok[which];
  qq_encode_options o = qq_encode_options_default();
  o.parse_special = which == 0 ? (sel & 2) != 0 : false;
  o.add_special = (sel & 4) != 0;
  qq_error err = {0};
  qq_token_ids ids = {0};
  qq_status st = qq_tokenizer_encode(tok, text, n, &o, &ids, &err);
  if (!utf8_ok((const uint8_t *)text, n)) {
    if (st != QQ_ERR_INVALID_ARG || ids.n) abort();
    qq_token_ids_free(&ids);
    return 0;
  }
  if (st != QQ_OK) abort();
  int32_t v = qq_tokenizer_vocab_size(tok);
  for (size_t i = 0; i < ids.n; i++)
    if (ids.ids[i] < 0 || ids.ids[i] >= v) abort();
  size_t dl = 0;
  char *dec = decode_checked(tok, &ids, (sel & 8) != 0, &dl);
  if (which == 0) {
    int nfc_stable = 1;
    for (size_t i = 0; i < n; i++) nfc_stable &= (uint8_t)text[i] < 0xcc;
    /* The only tokens a skip can drop are special ones; compare without skipping. */
    free(dec);
    dec = decode_checked(tok, &ids, false, &dl);
    if (nfc_stable && (dl != n || memcmp(dec, text, n))) abort();
    qq_token_ids again = {0};
    if (qq_tokenizer_encode(tok, dec, dl, &o, &again, &err) != QQ_OK) abort();
    if (!o.add_special && !same_ids(&ids, &again)) abort();
    qq_token_ids_free(&again);
  } else if (!o.add_special && !(sel & 8) && !memmem(text, n, "\xe2\x96\x81", 3)) {
    if (dl != n || memcmp(dec, text, n)) abort();
  }
  free(dec);
  qq_token_ids_free(&ids);
  return 0;
}
