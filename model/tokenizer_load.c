/* tokenizer_load.c — tokenizer.json -> qq_tokenizer. Reads every field the encode/decode pipeline
 * depends on and rejects what it does not implement (QQ_ERR_UNSUPPORTED naming the field), so that a
 * tokenizer either loads and matches Hugging Face `tokenizers` or does not load at all. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tokenizer_internal.h"

typedef struct loader {
  const char *name; /* for messages */
  qq_error *err;
  qq_tokenizer *tok;
  qq_tok_buf pool;
} loader;

/* Records "NAME: message" and returns st (also when L->err is NULL). */
static qq_status fail(loader *L, qq_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static qq_status fail(loader *L, qq_status st, const char *fmt, ...) {
  if (!L->err) return st;
  char msg[QQ_ERROR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return qq_error_set(L->err, st, "%s: %s", L->name, msg);
}
#define FAIL(L, st, ...) fail((L), (st), __VA_ARGS__)

/* ---- small JSON helpers ---------------------------------------------------------------------- */

static qq_status get_bool(loader *L, const cJSON *obj, const char *key, bool dflt, const char *path, bool *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!v || cJSON_IsNull(v)) {
    *out = dflt;
    return QQ_OK;
  }
  if (!cJSON_IsBool(v)) return FAIL(L, QQ_ERR_FORMAT, "%s.%s must be true or false", path, key);
  *out = cJSON_IsTrue(v);
  return QQ_OK;
}

static qq_status get_int(loader *L, const cJSON *v, int64_t lo, int64_t hi, const char *path, int64_t *out) {
  if (!cJSON_IsNumber(v)) return FAIL(L, QQ_ERR_FORMAT, "%s must be a whole number", path);
  double d = v->valuedouble;
  if (!(d >= (double)lo && d <= (double)hi) || floor(d) != d)
    return FAIL(L, QQ_ERR_FORMAT, "%s must be a whole number in [%lld, %lld], got %g", path, (long long)lo,
                (long long)hi, d);
  *out = (int64_t)d;
  return QQ_OK;
}

/* A string member; NULL (and QQ_OK) when absent or null and not required. */
static qq_status get_str(loader *L, const cJSON *obj, const char *key, bool required, const char *path,
                         const char **out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  *out = NULL;
  if (!v || cJSON_IsNull(v)) {
    if (required) return FAIL(L, QQ_ERR_FORMAT, "%s.%s is missing", path, key);
    return QQ_OK;
  }
  if (!cJSON_IsString(v)) return FAIL(L, QQ_ERR_FORMAT, "%s.%s must be a string", path, key);
  if (!qq_tok_utf8_valid(v->valuestring, strlen(v->valuestring)))
    return FAIL(L, QQ_ERR_FORMAT, "%s.%s is not valid UTF-8", path, key);
  *out = v->valuestring;
  return QQ_OK;
}

static qq_status get_type(loader *L, const cJSON *obj, const char *path, const char **type) {
  if (!cJSON_IsObject(obj)) return FAIL(L, QQ_ERR_FORMAT, "%s must be an object or null", path);
  return get_str(L, obj, "type", true, path, type);
}

static char *dup_n(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (!p) return NULL;
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

/* Reads a {"String": s} or {"Regex": r} pattern object. */
static qq_status get_pattern(loader *L, const cJSON *obj, const char *path, pcre2_code **re, char **lit,
                             size_t *lit_len) {
  char p[256];
  snprintf(p, sizeof p, "%s.pattern", path);
  const cJSON *pat = cJSON_GetObjectItemCaseSensitive(obj, "pattern");
  *re = NULL;
  *lit = NULL;
  *lit_len = 0;
  if (!cJSON_IsObject(pat)) return FAIL(L, QQ_ERR_FORMAT, "%s must be an object {\"String\": ...} or {\"Regex\": ...}", p);
  const char *s = NULL;
  qq_status st;
  if (cJSON_GetObjectItemCaseSensitive(pat, "String")) {
    if ((st = get_str(L, pat, "String", true, p, &s))) return st;
    *lit_len = strlen(s);
    *lit = dup_n(s, *lit_len);
    return *lit ? QQ_OK : FAIL(L, QQ_ERR_NOMEM, "out of memory");
  }
  if (cJSON_GetObjectItemCaseSensitive(pat, "Regex")) {
    if ((st = get_str(L, pat, "Regex", true, p, &s))) return st;
    char msg[256];
    *re = qq_tok_regex_compile(s, strlen(s), msg, sizeof msg);
    if (!*re) return FAIL(L, QQ_ERR_UNSUPPORTED, "%s.Regex: %s", p, msg);
    return QQ_OK;
  }
  return FAIL(L, QQ_ERR_FORMAT, "%s must hold \"String\" or \"Regex\"", p);
}

/* ---- normalizer ------------------------------------------------------------------------------ */

static qq_status push_norm(loader *L, qq_tok_norm *n) {
  qq_tokenizer *t = L->tok;
  qq_tok_norm *a = realloc(t->norm, (t->n_norm + 1) * sizeof *a);
  if (!a) return FAIL(L, QQ_ERR_NOMEM, "out of memory");
  t->norm = a;
  t->norm[t->n_norm++] = *n;
  return QQ_OK;
}

static qq_status parse_normalizer(loader *L, const cJSON *j, const char *path, int depth) {
  if (!j || cJSON_IsNull(j)) return QQ_OK;
  if (depth > 8) return FAIL(L, QQ_ERR_UNSUPPORTED, "%s: Sequence nested too deeply", path);
  const char *type;
  qq_status st = get_type(L, j, path, &type);
  if (st) return st;
  qq_tok_norm n;
  memset(&n, 0, sizeof n);
  char sub[256];
  if (!strcmp(type, "Sequence")) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "normalizers");
    if (!cJSON_IsArray(arr)) return FAIL(L, QQ_ERR_FORMAT, "%s.normalizers must be an array", path);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
      snprintf(sub, sizeof sub, "%s.normalizers[%d]", path, i++);
      if ((st = parse_normalizer(L, e, sub, depth + 1))) return st;
    }
    return QQ_OK;
  }
  if (!strcmp(type, "NFC") || !strcmp(type, "NFD") || !strcmp(type, "NFKC") || !strcmp(type, "NFKD")) {
    n.kind = QQ_NORM_UNICODE;
    n.form = !strcmp(type, "NFC") ? QQ_TOK_NFC : !strcmp(type, "NFD") ? QQ_TOK_NFD : !strcmp(type, "NFKC") ? QQ_TOK_NFKC : QQ_TOK_NFKD;
    return push_norm(L, &n);
  }
  if (!strcmp(type, "Prepend")) {
    const char *s;
    if ((st = get_str(L, j, "prepend", true, path, &s))) return st;
    n.kind = QQ_NORM_PREPEND;
    n.a_len = strlen(s);
    n.a = dup_n(s, n.a_len);
    if (!n.a) return FAIL(L, QQ_ERR_NOMEM, "out of memory");
    return push_norm(L, &n);
  }
  if (!strcmp(type, "Replace")) {
    n.kind = QQ_NORM_REPLACE;
    if ((st = get_pattern(L, j, path, &n.re, &n.a, &n.a_len))) return st;
    const char *s;
    if ((st = get_str(L, j, "content", true, path, &s)) == QQ_OK) {
      n.b_len = strlen(s);
      n.b = dup_n(s, n.b_len);
      if (!n.b) st = FAIL(L, QQ_ERR_NOMEM, "out of memory");
    }
    if (!st) st = push_norm(L, &n);
    if (st) {
      free(n.a);
      free(n.b);
      pcre2_code_free(n.re);
    }
    return st;
  }
  if (!strcmp(type, "Strip")) {
    n.kind = QQ_NORM_STRIP;
    if ((st = get_bool(L, j, "strip_left", true, path, &n.left))) return st;
    if ((st = get_bool(L, j, "strip_right", true, path, &n.right))) return st;
    return push_norm(L, &n);
  }
  return FAIL(L, QQ_ERR_UNSUPPORTED,
              "%s.type '%s' is not supported (qquant implements NFC, NFD, NFKC, NFKD, Prepend, Replace, "
              "Strip and Sequence)",
              path, type);
}

/* ---- pre-tokenizer --------------------------------------------------------------------------- */

/* GPT-2's pattern, used by ByteLevel when use_regex is true. */
static const char GPT2_PATTERN[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static qq_status push_pre(loader *L, qq_tok_pre *p) {
  qq_tokenizer *t = L->tok;
  qq_tok_pre *a = realloc(t->pre, (t->n_pre + 1) * sizeof *a);
  if (!a) return FAIL(L, QQ_ERR_NOMEM, "out of memory");
  t->pre = a;
  t->pre[t->n_pre++] = *p;
  return QQ_OK;
}

static qq_status parse_prepend_scheme(loader *L, const cJSON *j, const char *path, qq_tok_prepend *out) {
  const char *s;
  qq_status st = get_str(L, j, "prepend_scheme", false, path, &s);
  if (st) return st;
  if (!s) {
    bool add = false;
    if ((st = get_bool(L, j, "add_prefix_space", true, path, &add))) return st;
    *out = add ? QQ_PREPEND_ALWAYS : QQ_PREPEND_NEVER;
    return QQ_OK;
  }
  if (!strcmp(s, "always")) *out = QQ_PREPEND_ALWAYS;
  else if (!strcmp(s, "first")) *out = QQ_PREPEND_FIRST;
  else if (!strcmp(s, "never")) *out = QQ_PREPEND_NEVER;
  else return FAIL(L, QQ_ERR_UNSUPPORTED, "%s.prepend_scheme '%s' is not one of always, first, never", path, s);
  return QQ_OK;
}

static qq_status get_char(loader *L, const cJSON *j, const char *key, const char *dflt, const char *path,
                          char out[8], size_t *len) {
  const char *s;
  qq_status st = get_str(L, j, key, false, path, &s);
  if (st) return st;
  if (!s) s = dflt;
  size_t n = strlen(s);
  size_t cl = 0;
  if (n > 0) qq_tok_utf8_decode((const uint8_t *)s, n, &cl);
  if (n == 0 || cl != n) return FAIL(L, QQ_ERR_FORMAT, "%s.%s must be exactly one character", path, key);
  memcpy(out, s, n);
  out[n] = '\0';
  *len = n;
  return QQ_OK;
}

static qq_status parse_pre(loader *L, const cJSON *j, const char *path, int depth) {
  if (!j || cJSON_IsNull(j)) return QQ_OK;
  if (depth > 8) return FAIL(L, QQ_ERR_UNSUPPORTED, "%s: Sequence nested too deeply", path);
  const char *type;
  qq_status st = get_type(L, j, path, &type);
  if (st) return st;
  qq_tokenizer *t = L->tok;
  if (t->n_pre && t->pre[t->n_pre - 1].kind == QQ_PRE_BYTELEVEL && strcmp(type, "Sequence"))
    return FAIL(L, QQ_ERR_UNSUPPORTED, "%s: a pre-tokenizer after ByteLevel is not supported", path);
  qq_tok_pre p;
  memset(&p, 0, sizeof p);
  char sub[256];
  if (!strcmp(type, "Sequence")) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers");
    if (!cJSON_IsArray(arr)) return FAIL(L, QQ_ERR_FORMAT, "%s.pretokenizers must be an array", path);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
      snprintf(sub, sizeof sub, "%s.pretokenizers[%d]", path, i++);
      if ((st = parse_pre(L, e, sub, depth + 1))) return st;
    }
    return QQ_OK;
  }
  if (!strcmp(type, "Split")) {
    p.kind = QQ_PRE_SPLIT;
    const char *beh;
    if ((st = get_str(L, j, "behavior", true, path, &beh))) return st;
    if (!strcmp(beh, "Removed")) p.behavior = QQ_SPLIT_REMOVED;
    else if (!strcmp(beh, "Isolated")) p.behavior = QQ_SPLIT_ISOLATED;
    else if (!strcmp(beh, "MergedWithPrevious")) p.behavior = QQ_SPLIT_MERGED_WITH_PREVIOUS;
    else if (!strcmp(beh, "MergedWithNext")) p.behavior = QQ_SPLIT_MERGED_WITH_NEXT;
    else if (!strcmp(beh, "Contiguous")) p.behavior = QQ_SPLIT_CONTIGUOUS;
    else return FAIL(L, QQ_ERR_UNSUPPORTED, "%s.behavior '%s' is not a split behavior", path, beh);
    if ((st = get_bool(L, j, "invert", false, path, &p.invert))) return st;
    if ((st = get_pattern(L, j, path, &p.re, &p.lit, &p.lit_len))) return st;
    if ((st = push_pre(L, &p))) {
      pcre2_code_free(p.re);
      free(p.lit);
    }
    return st;
  }
  if (!strcmp(type, "ByteLevel")) {
    p.kind = QQ_PRE_BYTELEVEL;
    bool use_regex = false;
    if ((st = get_bool(L, j, "add_prefix_space", true, path, &p.add_prefix_space))) return st;
    if ((st = get_bool(L, j, "use_regex", true, path, &use_regex))) return st;
    if (use_regex) {
      char msg[256];
      p.re = qq_tok_regex_compile(GPT2_PATTERN, strlen(GPT2_PATTERN), msg, sizeof msg);
      if (!p.re) return FAIL(L, QQ_ERR_INTERNAL, "%s: GPT-2 pattern: %s", path, msg);
      p.behavior = QQ_SPLIT_ISOLATED;
    }
    t->byte_level = true;
    if ((st = push_pre(L, &p))) pcre2_code_free(p.re);
    return st;
  }
  if (!strcmp(type, "Metaspace")) {
    p.kind = QQ_PRE_METASPACE;
    if ((st = get_char(L, j, "replacement", "\xe2\x96\x81", path, p.repl, &p.repl_len))) return st;
    if ((st = parse_prepend_scheme(L, j, path, &p.prepend))) return st;
    if ((st = get_bool(L, j, "split", true, path, &p.split))) return st;
    return push_pre(L, &p);
  }
  return FAIL(L, QQ_ERR_UNSUPPORTED,
              "%s.type '%s' is not supported (qquant implements Split, ByteLevel, Metaspace and Sequence)",
              path, type);
}

/* ---- decoder --------------------------------------------------------------------------------- */

static qq_status push_dec(loader *L, qq_tok_dec *d) {
  qq_tokenizer *t = L->tok;
  qq_tok_dec *a = realloc(t->dec, (t->n_dec + 1) * sizeof *a);
  if (!a) return FAIL(L, QQ_ERR_NOMEM, "out of memory");
  t->dec = a;
  t->dec[t->n_dec++] = *d;
  return QQ_OK;
}

static bool dec_fused(const qq_tokenizer *t) {
  for (size_t i = 0; i < t->n_dec; i++)
    if (t->dec[i].kind == QQ_DEC_FUSE || t->dec[i].kind == QQ_DEC_BYTELEVEL) return true;
  return false;
}

static qq_status parse_decoder(loader *L, const cJSON *j, const char *path, int depth) {
  if (depth > 8) return FAIL(L, QQ_ERR_UNSUPPORTED, "%s: Sequence nested too deeply", path);
  const char *type;
  qq_status st = get_type(L, j, path, &type);
  if (st) return st;
  qq_tokenizer *t = L->tok;
  qq_tok_dec d;
  memset(&d, 0, sizeof d);
  d.fused_input = dec_fused(t);
  char sub[256];
  if (!strcmp(type, "Sequence")) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "decoders");
    if (!cJSON_IsArray(arr)) return FAIL(L, QQ_ERR_FORMAT, "%s.decoders must be an array", path);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
      snprintf(sub, sizeof sub, "%s.decoders[%d]", path, i++);
      if ((st = parse_decoder(L, e, sub, depth + 1))) return st;
    }
    return QQ_OK;
  }
  if (!strcmp(type, "ByteLevel")) {
    if (d.fused_input) return FAIL(L, QQ_ERR_UNSUPPORTED, "%s: ByteLevel after Fuse/ByteLevel is not supported", path);
    d.kind = QQ_DEC_BYTELEVEL;
    return push_dec(L, &d);
  }
  if (!strcmp(type, "ByteFallback")) {
    if (d.fused_input) return FAIL(L, QQ_ERR_UNSUPPORTED, "%s: ByteFallback after Fuse/ByteLevel is not supported", path);
    d.kind = QQ_DEC_BYTEFALLBACK;
    return push_dec(L, &d);
  }
  if (!strcmp(type, "Fuse")) {
    d.kind = QQ_DEC_FUSE;
    return push_dec(L, &d);
  }
  if (!strcmp(type, "Replace")) {
    d.kind = QQ_DEC_REPLACE;
    pcre2_code *re;
    if ((st = get_pattern(L, j, path, &re, &d.a, &d.a_len))) return st;
    if (re) {
      pcre2_code_free(re);
      return FAIL(L, QQ_ERR_UNSUPPORTED, "%s.pattern: a Regex pattern in a Replace decoder is not supported", path);
    }
    size_t cl = 0;
    if (d.a_len) qq_tok_utf8_decode((const uint8_t *)d.a, d.a_len, &cl);
    if (d.a_len == 0 || (d.fused_input && cl != d.a_len)) {
      free(d.a);
      return FAIL(L, QQ_ERR_UNSUPPORTED, "%s.pattern: an empty pattern, or one of several characters after Fuse, is not supported", path);
    }
    const char *s;
    if ((st = get_str(L, j, "content", true, path, &s)) == QQ_OK) {
      d.b_len = strlen(s);
      d.b = dup_n(s, d.b_len);
      if (!d.b) st = FAIL(L, QQ_ERR_NOMEM, "out of memory");
    }
    if (!st) st = push_dec(L, &d);
    if (st) {
      free(d.a);
      free(d.b);
    }
    return st;
  }
  if (!strcmp(type, "Strip")) {
    d.kind = QQ_DEC_STRIP;
    char c[8];
    if ((st = get_char(L, j, "content", " ", path, c, &d.a_len))) return st;
    int64_t v = 0;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "start");
    if ((st = get_int(L, e, 0, 1 << 20, "decoder Strip.start", &v))) return st;
    d.start = (int32_t)v;
    e = cJSON_GetObjectItemCaseSensitive(j, "stop");
    if ((st = get_int(L, e, 0, 1 << 20, "decoder Strip.stop", &v))) return st;
    d.stop = (int32_t)v;
    d.a = dup_n(c, d.a_len);
    if (!d.a) return FAIL(L, QQ_ERR_NOMEM, "out of memory");
    if ((st = push_dec(L, &d))) free(d.a);
    return st;
  }
  if (!strcmp(type, "Metaspace")) {
    d.kind = QQ_DEC_METASPACE;
    char c[8];
    qq_tok_prepend ps;
    if ((st = get_char(L, j, "replacement", "\xe2\x96\x81", path, c, &d.a_len))) return st;
    if ((st = parse_prepend_scheme(L, j, path, &ps))) return st;
    d.strip_first = ps != QQ_PREPEND_NEVER;
    d.a = dup_n(c, d.a_len);
    if (!d.a) return FAIL(L, QQ_ERR_NOMEM, "out of memory");
    if ((st = push_dec(L, &d))) free(d.a);
    return st;
  }
  return FAIL(L, QQ_ERR_UNSUPPORTED,
              "%s.type '%s' is not supported (qquant implements ByteLevel, Replace, ByteFallback, Fuse, "
              "Strip, Metaspace and Sequence)",
              path, type);
}

/* ---- post-processor, truncation, padding ----------------------------------------------------- */

static qq_status append_ids(loader *L, int32_t **arr, size_t *n, const int32_t *ids, size_t k) {
  int32_t *a = realloc(*arr, (*n + k + 1) * sizeof *a);
  if (!a) return FAIL(L, QQ_ERR_NOMEM, "out of memory");
  memcpy(a + *n, ids, k * sizeof *a);
  *arr = a;
  *n += k;
  return QQ_OK;
}

static qq_status check_post_id(loader *L, int64_t id, const char *path) {
  if (!qq_tok_has_id(L->tok, (int32_t)id))
    return FAIL(L, QQ_ERR_FORMAT, "%s: id %lld is not a token of this tokenizer", path, (long long)id);
  return QQ_OK;
}

static qq_status parse_template(loader *L, const cJSON *j, const char *path) {
  qq_tokenizer *t = L->tok;
  const cJSON *single = cJSON_GetObjectItemCaseSensitive(j, "single");
  const cJSON *specials = cJSON_GetObjectItemCaseSensitive(j, "special_tokens");
  if (!cJSON_IsArray(single)) return FAIL(L, QQ_ERR_FORMAT, "%s.single must be an array", path);
  int seen_a = 0, i = 0;
  const cJSON *e;
  char sub[256];
  qq_status st;
  cJSON_ArrayForEach(e, single) {
    snprintf(sub, sizeof sub, "%s.single[%d]", path, i++);
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
    const cJSON *sq = cJSON_GetObjectItemCaseSensitive(e, "Sequence");
    if (cJSON_IsObject(sq)) {
      const char *id;
      if ((st = get_str(L, sq, "id", true, sub, &id))) return st;
      if (strcmp(id, "A")) return FAIL(L, QQ_ERR_UNSUPPORTED, "%s.Sequence.id '%s': a single-sequence template can only hold A", sub, id);
      seen_a++;
      continue;
    }
    if (!cJSON_IsObject(sp)) return FAIL(L, QQ_ERR_FORMAT, "%s must hold SpecialToken or Sequence", sub);
    const char *name;
    if ((st = get_str(L, sp, "id", true, sub, &name))) return st;
    const cJSON *def = cJSON_IsObject(specials) ? cJSON_GetObjectItemCaseSensitive(specials, name) : NULL;
    const cJSON *ids = def ? cJSON_GetObjectItemCaseSensitive(def, "ids") : NULL;
    if (!cJSON_IsArray(ids))
      return FAIL(L, QQ_ERR_FORMAT, "%s: special token '%s' has no ids in %s.special_tokens", sub, name, path);
    const cJSON *x;
    cJSON_ArrayForEach(x, ids) {
      int64_t v = 0;
      if ((st = get_int(L, x, 0, QQ_TOK_MAX_ID - 1, "post_processor special_tokens ids", &v))) return st;
      if ((st = check_post_id(L, v, sub))) return st;
      int32_t id32 = (int32_t)v;
      if (seen_a) st = append_ids(L, &t->post_after, &t->n_post_after, &id32, 1);
      else st = append_ids(L, &t->post_before, &t->n_post_before, &id32, 1);
      if (st) return st;
    }
  }
  if (seen_a != 1) return FAIL(L, QQ_ERR_FORMAT, "%s.single must hold the sequence A exactly once", path);
  return QQ_OK;
}

static qq_status parse_token_pair(loader *L, const cJSON *j, const char *key, const char *path, int32_t *id) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
  if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2)
    return FAIL(L, QQ_ERR_FORMAT, "%s.%s must be [token, id]", path, key);
  int64_t x = 0;
  qq_status st = get_int(L, cJSON_GetArrayItem(v, 1), 0, QQ_TOK_MAX_ID - 1, "post_processor token id", &x);
  if (st) return st;
  if ((st = check_post_id(L, x, path))) return st;
  *id = (int32_t)x;
  return QQ_OK;
}

static qq_status parse_post(loader *L, const cJSON *j, const char *path, int depth) {
  if (!j || cJSON_IsNull(j)) return QQ_OK;
  if (depth > 8) return FAIL(L, QQ_ERR_UNSUPPORTED, "%s: Sequence nested too deeply", path);
  const char *type;
  qq_status st = get_type(L, j, path, &type);
  if (st) return st;
  qq_tokenizer *t = L->tok;
  if (!strcmp(type, "ByteLevel")) return QQ_OK; /* changes offsets only */
  if (!strcmp(type, "Sequence")) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "processors");
    if (!cJSON_IsArray(arr)) return FAIL(L, QQ_ERR_FORMAT, "%s.processors must be an array", path);
    int i = 0;
    const cJSON *e;
    char sub[256];
    cJSON_ArrayForEach(e, arr) {
      snprintf(sub, sizeof sub, "%s.processors[%d]", path, i++);
      if ((st = parse_post(L, e, sub, depth + 1))) return st;
    }
    return QQ_OK;
  }
  if (t->n_post_before || t->n_post_after)
    return FAIL(L, QQ_ERR_UNSUPPORTED, "%s: more than one processor adds special tokens", path);
  if (!strcmp(type, "TemplateProcessing")) return parse_template(L, j, path);
  if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
    int32_t cls = 0, sep = 0;
    if ((st = parse_token_pair(L, j, "cls", path, &cls))) return st;
    if ((st = parse_token_pair(L, j, "sep", path, &sep))) return st;
    if ((st = append_ids(L, &t->post_before, &t->n_post_before, &cls, 1))) return st;
    return append_ids(L, &t->post_after, &t->n_post_after, &sep, 1);
  }
  return FAIL(L, QQ_ERR_UNSUPPORTED,
              "%s.type '%s' is not supported (qquant implements TemplateProcessing, BertProcessing, "
              "RobertaProcessing, ByteLevel and Sequence)",
              path, type);
}

static qq_status parse_direction(loader *L, const cJSON *j, const char *path, bool *left) {
  const char *s;
  qq_status st = get_str(L, j, "direction", false, path, &s);
  if (st) return st;
  if (!s || !strcmp(s, "Right")) *left = false;
  else if (!strcmp(s, "Left")) *left = true;
  else return FAIL(L, QQ_ERR_UNSUPPORTED, "%s.direction '%s' is not Left or Right", path, s);
  return QQ_OK;
}

static qq_status parse_trunc_pad(loader *L, const cJSON *root) {
  qq_tokenizer *t = L->tok;
  qq_status st;
  t->trunc_max = -1;
  const cJSON *tr = cJSON_GetObjectItemCaseSensitive(root, "truncation");
  if (tr && !cJSON_IsNull(tr)) {
    if (!cJSON_IsObject(tr)) return FAIL(L, QQ_ERR_FORMAT, "truncation must be an object or null");
    if ((st = get_int(L, cJSON_GetObjectItemCaseSensitive(tr, "max_length"), 0, INT32_MAX, "truncation.max_length", &t->trunc_max)))
      return st;
    if ((st = parse_direction(L, tr, "truncation", &t->trunc_left))) return st;
  }
  const cJSON *pd = cJSON_GetObjectItemCaseSensitive(root, "padding");
  if (pd && !cJSON_IsNull(pd)) {
    if (!cJSON_IsObject(pd)) return FAIL(L, QQ_ERR_FORMAT, "padding must be an object or null");
    t->pad_enabled = true;
    t->pad_fixed = -1;
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(pd, "strategy");
    if (cJSON_IsObject(s) && cJSON_GetObjectItemCaseSensitive(s, "Fixed")) {
      if ((st = get_int(L, cJSON_GetObjectItemCaseSensitive(s, "Fixed"), 0, INT32_MAX, "padding.strategy.Fixed", &t->pad_fixed)))
        return st;
    } else if (!(cJSON_IsString(s) && !strcmp(s->valuestring, "BatchLongest"))) {
      return FAIL(L, QQ_ERR_UNSUPPORTED, "padding.strategy must be \"BatchLongest\" or {\"Fixed\": n}");
    }
    if ((st = parse_direction(L, pd, "padding", &t->pad_left))) return st;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(pd, "pad_to_multiple_of");
    if (m && !cJSON_IsNull(m) && (st = get_int(L, m, 0, INT32_MAX, "padding.pad_to_multiple_of", &t->pad_multiple)))
      return st;
    int64_t pid = 0;
    const cJSON *pi = cJSON_GetObjectItemCaseSensitive(pd, "pad_id");
    if (pi && (st = get_int(L, pi, 0, QQ_TOK_MAX_ID - 1, "padding.pad_id", &pid))) return st;
    t->pad_id = (int32_t)pid;
  }
  return QQ_OK;
}

/* ---- model and added tokens ------------------------------------------------------------------ */

static qq_status pool_add(loader *L, const char *s, size_t n, uint32_t *off) {
  if (L->pool.n + n >= UINT32_MAX) return FAIL(L, QQ_ERR_UNSUPPORTED, "token strings larger than 4 GiB");
  *off = (uint32_t)L->pool.n;
  /* Each string keeps a NUL after it so that qq_tokenizer_id_to_token can return it as is. */
  if (!qq_tok_buf_append(&L->pool, s, n) || !qq_tok_buf_append(&L->pool, "", 1))
    return FAIL(L, QQ_ERR_NOMEM, "out of memory");
  return QQ_OK;
}

static qq_status merge_part(loader *L, const char *s, size_t n, size_t rank, int32_t *id) {
  *id = qq_tok_smap_get(&L->tok->vocab, L->pool.p, s, n);
  if (*id < 0)
    return FAIL(L, QQ_ERR_FORMAT, "model.merges[%zu]: token '%.*s' is not in model.vocab", rank, (int)QQ_MIN(n, 64), s);
  return QQ_OK;
}

static qq_status parse_merges(loader *L, const cJSON *merges) {
  qq_tokenizer *t = L->tok;
  int n = cJSON_GetArraySize(merges);
  if (!qq_tok_mmap_init(&t->merges, (size_t)n)) return FAIL(L, QQ_ERR_NOMEM, "out of memory for %d merges", n);
  qq_tok_buf cat = {0};
  size_t rank = 0;
  const cJSON *m;
  qq_status st = QQ_OK;
  cJSON_ArrayForEach(m, merges) {
    const char *a, *b;
    size_t na, nb;
    if (cJSON_IsString(m)) {
      a = m->valuestring;
      const char *sp = strchr(a, ' ');
      if (!sp) {
        st = FAIL(L, QQ_ERR_FORMAT, "model.merges[%zu] '%.64s' is not two tokens separated by a space", rank, a);
        break;
      }
      na = (size_t)(sp - a);
      b = sp + 1;
      nb = strlen(b);
    } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
               cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
      a = cJSON_GetArrayItem(m, 0)->valuestring;
      b = cJSON_GetArrayItem(m, 1)->valuestring;
      na = strlen(a);
      nb = strlen(b);
    } else {
      st = FAIL(L, QQ_ERR_FORMAT, "model.merges[%zu] must be \"a b\" or [\"a\", \"b\"]", rank);
      break;
    }
    int32_t ia = 0, ib = 0, ic;
    if ((st = merge_part(L, a, na, rank, &ia)) || (st = merge_part(L, b, nb, rank, &ib))) break;
    cat.n = 0;
    if (!qq_tok_buf_append(&cat, a, na) || !qq_tok_buf_append(&cat, b, nb)) {
      st = FAIL(L, QQ_ERR_NOMEM, "out of memory");
      break;
    }
    ic = qq_tok_smap_get(&t->vocab, L->pool.p, cat.p, cat.n);
    if (ic < 0) {
      st = FAIL(L, QQ_ERR_FORMAT, "model.merges[%zu]: the merged token '%.*s' is not in model.vocab", rank,
                (int)QQ_MIN(cat.n, 64), cat.p);
      break;
    }
    /* Like HF (a HashMap collected from the list), a repeated pair keeps its last rank. */
    qq_tok_mmap_put(&t->merges, ia, ib, (qq_tok_merge_val){(int32_t)rank, ic});
    rank++;
  }
  qq_tok_buf_free(&cat);
  return st;
}

static qq_status parse_model(loader *L, const cJSON *model, const cJSON *added_json) {
  qq_tokenizer *t = L->tok;
  qq_status st;
  const char *type;
  if (!cJSON_IsObject(model)) return FAIL(L, QQ_ERR_FORMAT, "model is missing or not an object");
  if ((st = get_str(L, model, "type", false, "model", &type))) return st;
  if (!type && !cJSON_GetObjectItemCaseSensitive(model, "merges"))
    return FAIL(L, QQ_ERR_UNSUPPORTED, "model.type is missing and the model has no merges: only BPE is supported");
  if (type && strcmp(type, "BPE"))
    return FAIL(L, QQ_ERR_UNSUPPORTED, "model.type '%s' is not supported (qquant implements BPE)", type);
  const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
  if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && (dropout->valuedouble == 0.0 || dropout->valuedouble == 1.0)))
    return FAIL(L, QQ_ERR_UNSUPPORTED, "model.dropout: BPE dropout (random merges) is not supported");
  const char *prefix, *suffix;
  if ((st = get_str(L, model, "continuing_subword_prefix", false, "model", &prefix))) return st;
  if ((st = get_str(L, model, "end_of_word_suffix", false, "model", &suffix))) return st;
  if (prefix && *prefix) return FAIL(L, QQ_ERR_UNSUPPORTED, "model.continuing_subword_prefix '%s' is not supported", prefix);
  if (suffix && *suffix) return FAIL(L, QQ_ERR_UNSUPPORTED, "model.end_of_word_suffix '%s' is not supported", suffix);
  if ((st = get_bool(L, model, "fuse_unk", false, "model", &t->fuse_unk))) return st;
  if ((st = get_bool(L, model, "byte_fallback", false, "model", &t->byte_fallback))) return st;
  if ((st = get_bool(L, model, "ignore_merges", false, "model", &t->ignore_merges))) return st;

  const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
  const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
  if (!cJSON_IsObject(vocab)) return FAIL(L, QQ_ERR_FORMAT, "model.vocab is missing or not an object");
  if (!cJSON_IsArray(merges)) return FAIL(L, QQ_ERR_FORMAT, "model.merges is missing or not an array");
  if (added_json && !cJSON_IsNull(added_json) && !cJSON_IsArray(added_json))
    return FAIL(L, QQ_ERR_FORMAT, "added_tokens must be an array");

  /* Pass 1: sizes and id range. */
  int64_t max_id = -1;
  size_t nv = 0, bytes = 0, na = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, vocab) {
    int64_t id = 0;
    char path[96];
    snprintf(path, sizeof path, "model.vocab['%.48s']", e->string ? e->string : "");
    if ((st = get_int(L, e, 0, QQ_TOK_MAX_ID - 1, path, &id))) return st;
    if (!qq_tok_utf8_valid(e->string, strlen(e->string))) return FAIL(L, QQ_ERR_FORMAT, "%s: the token is not valid UTF-8", path);
    max_id = QQ_MAX(max_id, id);
    nv++;
    bytes += strlen(e->string);
  }
  if (cJSON_IsArray(added_json)) {
    int i = 0;
    cJSON_ArrayForEach(e, added_json) {
      char path[64];
      snprintf(path, sizeof path, "added_tokens[%d]", i++);
      if (!cJSON_IsObject(e)) return FAIL(L, QQ_ERR_FORMAT, "%s must be an object", path);
      int64_t id = 0;
      if ((st = get_int(L, cJSON_GetObjectItemCaseSensitive(e, "id"), 0, QQ_TOK_MAX_ID - 1, path, &id))) return st;
      const char *content;
      if ((st = get_str(L, e, "content", true, path, &content))) return st;
      max_id = QQ_MAX(max_id, id);
      bytes += strlen(content);
      na++;
    }
  }
  t->n_ids = (int32_t)(max_id + 1);
  t->vocab_len = (int32_t)nv;
  if (!qq_tok_buf_reserve(&L->pool, bytes + nv + na + 1) || !qq_tok_smap_init(&t->vocab, nv) ||
      !qq_tok_smap_init(&t->added_map, na))
    return FAIL(L, QQ_ERR_NOMEM, "out of memory for a vocabulary of %zu tokens", nv);
  size_t nid = (size_t)t->n_ids + 1;
  t->tok_off = malloc(nid * sizeof *t->tok_off);
  t->tok_len = malloc(nid * sizeof *t->tok_len);
  t->flags = calloc(nid, 1);
  t->added = calloc(na + 1, sizeof *t->added);
  if (!t->tok_off || !t->tok_len || !t->flags || !t->added) return FAIL(L, QQ_ERR_NOMEM, "out of memory");
  for (size_t i = 0; i < nid; i++) t->tok_len[i] = UINT32_MAX;

  /* Pass 2: the vocabulary. Later duplicates of an id win the id -> token direction, as in HF. */
  cJSON_ArrayForEach(e, vocab) {
    size_t n = strlen(e->string);
    uint32_t off = 0;
    if ((st = pool_add(L, e->string, n, &off))) return st;
    int32_t id = (int32_t)e->valuedouble;
    if (!qq_tok_smap_put(&t->vocab, L->pool.p, off, (uint32_t)n, id)) return FAIL(L, QQ_ERR_INTERNAL, "vocab table full");
    t->tok_off[id] = off;
    t->tok_len[id] = (uint32_t)n;
  }

  /* Added tokens: they take precedence over the model vocab in both directions. */
  if (cJSON_IsArray(added_json)) {
    int i = 0;
    cJSON_ArrayForEach(e, added_json) {
      char path[64];
      snprintf(path, sizeof path, "added_tokens[%d]", i++);
      qq_tok_added *a = &t->added[t->n_added];
      const char *content;
      get_str(L, e, "content", true, path, &content);
      a->id = (int32_t)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
      if ((st = get_bool(L, e, "single_word", false, path, &a->single_word)) ||
          (st = get_bool(L, e, "lstrip", false, path, &a->lstrip)) ||
          (st = get_bool(L, e, "rstrip", false, path, &a->rstrip)) ||
          (st = get_bool(L, e, "special", false, path, &a->special)) ||
          (st = get_bool(L, e, "normalized", !a->special, path, &a->normalized)))
        return st;
      a->len = strlen(content);
      if (a->len == 0) continue; /* HF ignores empty added tokens */
      uint32_t off = 0;
      if ((st = pool_add(L, content, a->len, &off))) return st;
      a->content = dup_n(content, a->len);
      if (!a->content) return FAIL(L, QQ_ERR_NOMEM, "out of memory");
      if (!qq_tok_smap_put(&t->added_map, L->pool.p, off, (uint32_t)a->len, a->id))
        return FAIL(L, QQ_ERR_INTERNAL, "added-token table full");
      t->tok_off[a->id] = off;
      t->tok_len[a->id] = (uint32_t)a->len;
      t->flags[a->id] = (uint8_t)(QQ_TOK_F_ADDED | (a->special ? QQ_TOK_F_SPECIAL : 0));
      t->n_added++;
    }
  }

  t->unk_id = -1;
  const char *unk;
  if ((st = get_str(L, model, "unk_token", false, "model", &unk))) return st;
  if (unk) {
    t->unk_id = qq_tok_smap_get(&t->vocab, L->pool.p, unk, strlen(unk));
    if (t->unk_id < 0) return FAIL(L, QQ_ERR_FORMAT, "model.unk_token '%.64s' is not in model.vocab", unk);
  }
  for (int b = 0; b < 256; b++) {
    char s[8];
    snprintf(s, sizeof s, "<0x%02X>", b);
    t->byte_fallback_id[b] = qq_tok_smap_get(&t->vocab, L->pool.p, s, 6);
  }
  return parse_merges(L, merges);
}

/* Byte-level symbols: vocab id of the mapped character of every byte (-1 when missing). */
static void build_byte_syms(loader *L) {
  qq_tokenizer *t = L->tok;
  for (int b = 0; b < 256; b++) {
    char s[4];
    size_t n = qq_tok_utf8_encode(qq_tok_byte_to_cp((uint8_t)b), s);
    t->byte_sym[b] = qq_tok_smap_get(&t->vocab, L->pool.p, s, n);
  }
}

/* Leftmost-longest matcher over the added tokens with the given normalized flag. */
static qq_status build_matcher(loader *L, qq_tok_matcher *m, bool normalized) {
  qq_tokenizer *t = L->tok;
  m->use_norm = normalized;
  m->idx = malloc((t->n_added + 1) * sizeof *m->idx);
  if (!m->idx) return FAIL(L, QQ_ERR_NOMEM, "out of memory");
  uint32_t count[257] = {0};
  for (size_t i = 0; i < t->n_added; i++) {
    const qq_tok_added *a = &t->added[i];
    size_t len = normalized ? a->norm_len : a->len;
    if (a->normalized != normalized || len == 0) continue;
    count[(uint8_t)(normalized ? a->norm : a->content)[0]]++;
  }
  m->start[0] = 0;
  for (int b = 0; b < 256; b++) m->start[b + 1] = m->start[b] + count[b];
  uint32_t fill[256];
  memcpy(fill, m->start, sizeof fill);
  for (size_t i = 0; i < t->n_added; i++) {
    const qq_tok_added *a = &t->added[i];
    size_t len = normalized ? a->norm_len : a->len;
    if (a->normalized != normalized || len == 0) continue;
    uint8_t b = (uint8_t)(normalized ? a->norm : a->content)[0];
    /* Insertion keeps each bucket sorted longest first (ties: file order, like Aho-Corasick's
     * pattern order). */
    uint32_t j = fill[b]++;
    while (j > m->start[b]) {
      const qq_tok_added *p = &t->added[m->idx[j - 1]];
      size_t plen = normalized ? p->norm_len : p->len;
      if (plen >= len) break;
      m->idx[j] = m->idx[j - 1];
      j--;
    }
    m->idx[j] = (int32_t)i;
  }
  m->n = m->start[256];
  return QQ_OK;
}

static qq_status finish_added(loader *L) {
  qq_tokenizer *t = L->tok;
  for (size_t i = 0; i < t->n_added; i++) {
    qq_tok_added *a = &t->added[i];
    if (!a->normalized) continue;
    qq_tok_buf b = {0};
    qq_status st = qq_tok_normalize(t, a->content, a->len, &b);
    if (st) {
      qq_tok_buf_free(&b);
      return FAIL(L, st, "added_tokens: cannot normalize '%.64s'", a->content);
    }
    a->norm = b.p ? b.p : dup_n("", 0);
    a->norm_len = b.n;
    if (!a->norm) return FAIL(L, QQ_ERR_NOMEM, "out of memory");
  }
  qq_status st = build_matcher(L, &t->match_raw, false);
  if (!st) st = build_matcher(L, &t->match_norm, true);
  return st;
}

/* ---- entry points ---------------------------------------------------------------------------- */

static void json_error_position(const char *json, size_t len, const char *at, int *line, int *col) {
  *line = 1;
  *col = 1;
  if (!at || at < json || at > json + len) return;
  for (const char *p = json; p < at; p++) {
    if (*p == '\n') {
      (*line)++;
      *col = 1;
    } else {
      (*col)++;
    }
  }
}

qq_status qq_tokenizer_load_json(const char *json, size_t len, const char *name, qq_tokenizer **out, qq_error *err) {
  if (!out) return qq_error_set(err, QQ_ERR_INVALID_ARG, "qq_tokenizer_load_json: out is NULL");
  *out = NULL;
  if (!name) name = "tokenizer.json";
  if (!json) return qq_error_set(err, QQ_ERR_INVALID_ARG, "%s: no JSON text", name);
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, false);
  if (!root) {
    int line, col;
    json_error_position(json, len, cJSON_GetErrorPtr(), &line, &col);
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: malformed JSON near line %d, column %d", name, line, col);
  }
  qq_tokenizer *t = calloc(1, sizeof *t);
  loader L = {name, err, t, {0}};
  qq_status st = QQ_OK;
  if (!t || !(t->name = dup_n(name, strlen(name)))) {
    st = qq_error_set(err, QQ_ERR_NOMEM, "%s: out of memory", name);
    goto done;
  }
  if (!cJSON_IsObject(root)) {
    st = FAIL(&L, QQ_ERR_FORMAT, "the top level is not a JSON object");
    goto done;
  }
  if ((st = parse_model(&L, cJSON_GetObjectItemCaseSensitive(root, "model"), cJSON_GetObjectItemCaseSensitive(root, "added_tokens"))))
    goto done;
  if ((st = parse_normalizer(&L, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), "normalizer", 0))) goto done;
  if ((st = parse_pre(&L, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), "pre_tokenizer", 0))) goto done;
  build_byte_syms(&L);
  const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
  if (!dec || cJSON_IsNull(dec)) {
    qq_tok_dec d;
    memset(&d, 0, sizeof d);
    d.kind = QQ_DEC_JOIN_SPACE;
    if ((st = push_dec(&L, &d))) goto done;
  } else if ((st = parse_decoder(&L, dec, "decoder", 0))) {
    goto done;
  }
  if ((st = parse_post(&L, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), "post_processor", 0))) goto done;
  if ((st = parse_trunc_pad(&L, root))) goto done;
  t->pool = L.pool.p;
  t->pool_len = L.pool.n;
  L.pool.p = NULL;
  if (!t->pool && !(t->pool = dup_n("", 0))) {
    st = FAIL(&L, QQ_ERR_NOMEM, "out of memory");
    goto done;
  }
  st = finish_added(&L);
done:
  cJSON_Delete(root);
  qq_tok_buf_free(&L.pool);
  if (st) {
    qq_tokenizer_free(t);
    return st;
  }
  *out = t;
  return QQ_OK;
}

qq_status qq_tokenizer_load(const char *path, qq_tokenizer **out, qq_error *err) {
  if (!path || !out) return qq_error_set(err, QQ_ERR_INVALID_ARG, "qq_tokenizer_load: path or out is NULL");
  *out = NULL;
  struct stat sb;
  char file[4096];
  if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
    snprintf(file, sizeof file, "%s/tokenizer.json", path);
    if (stat(file, &sb) != 0)
      return qq_error_set(err, QQ_ERR_NOT_FOUND, "%s: no tokenizer.json in this directory", path);
  } else {
    snprintf(file, sizeof file, "%s", path);
  }
  char *json = NULL;
  size_t len = 0;
  qq_status st = qq_read_file(file, &json, &len, err);
  if (st) return st;
  st = qq_tokenizer_load_json(json, len, file, out, err);
  free(json);
  return st;
}

void qq_tokenizer_free(qq_tokenizer *t) {
  if (!t) return;
  free(t->name);
  free(t->pool);
  free(t->tok_off);
  free(t->tok_len);
  free(t->flags);
  qq_tok_smap_free(&t->vocab);
  qq_tok_smap_free(&t->added_map);
  qq_tok_mmap_free(&t->merges);
  for (size_t i = 0; i < t->n_added; i++) {
    free(t->added[i].content);
    free(t->added[i].norm);
  }
  free(t->added);
  free(t->match_raw.idx);
  free(t->match_norm.idx);
  for (size_t i = 0; i < t->n_norm; i++) {
    free(t->norm[i].a);
    free(t->norm[i].b);
    pcre2_code_free(t->norm[i].re);
  }
  free(t->norm);
  for (size_t i = 0; i < t->n_pre; i++) {
    pcre2_code_free(t->pre[i].re);
    free(t->pre[i].lit);
  }
  free(t->pre);
  for (size_t i = 0; i < t->n_dec; i++) {
    free(t->dec[i].a);
    free(t->dec[i].b);
  }
  free(t->dec);
  free(t->post_before);
  free(t->post_after);
  free(t);
}

int32_t qq_tokenizer_vocab_size(const qq_tokenizer *t) { return t ? t->n_ids : 0; }

int32_t qq_tokenizer_token_to_id(const qq_tokenizer *t, const char *s) {
  if (!t || !s) return -1;
  size_t n = strlen(s);
  int32_t id = qq_tok_smap_get(&t->added_map, t->pool, s, n);
  return id >= 0 ? id : qq_tok_smap_get(&t->vocab, t->pool, s, n);
}

const char *qq_tokenizer_id_to_token(const qq_tokenizer *t, int32_t id) {
  if (!t || !qq_tok_has_id(t, id)) return NULL;
  return t->pool + t->tok_off[id];
}

bool qq_tokenizer_is_special(const qq_tokenizer *t, int32_t id) {
  return t && id >= 0 && id < t->n_ids && (t->flags[id] & QQ_TOK_F_SPECIAL);
}
