/* tokenizer_encode.c — qq_tokenizer_encode: the order of HF's TokenizerImpl::encode + post_process:
 * added tokens on the raw text, normalizer, added tokens on the normalized text, pre-tokenizer, BPE,
 * then truncation, the post-processor's special tokens (when add_special) and padding. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

qq_encode_options qq_encode_options_default(void) {
  qq_encode_options o = {.parse_special = true, .add_special = false};
  return o;
}

typedef struct encode_state {
  const qq_tokenizer *tok;
  qq_tok_ctx *c;
  bool parse_special;
  qq_token_ids *out;
  qq_error *err;
} encode_state;

static qq_status push_or_nomem(encode_state *e, int32_t id) {
  return qq_tok_ids_push(e->out, id) ? QQ_OK : qq_error_set(e->err, QQ_ERR_NOMEM, "out of memory");
}

static qq_status on_normalized_piece(void *user, const char *s, size_t n, int32_t id, bool at_origin) {
  encode_state *e = user;
  if (id >= 0) return push_or_nomem(e, id);
  return qq_tok_pretokenize_and_bpe(e->tok, e->c, s, n, at_origin, e->out, e->err);
}

static qq_status on_raw_piece(void *user, const char *s, size_t n, int32_t id, bool at_origin) {
  encode_state *e = user;
  if (id >= 0) return push_or_nomem(e, id);
  e->c->norm.n = 0;
  qq_status st = qq_tok_normalize(e->tok, s, n, &e->c->norm);
  if (st) return qq_error_set(e->err, st, "%s: normalizer failed on the input", e->tok->name);
  return qq_tok_split_added(e->tok, &e->tok->match_norm, e->parse_special, e->c->norm.p ? e->c->norm.p : "",
                            e->c->norm.n, at_origin, on_normalized_piece, e);
}

static bool insert_ids(qq_token_ids *ids, size_t at, const int32_t *src, size_t k, int32_t fill) {
  if (k == 0) return true;
  while (ids->n + k > ids->cap) {
    size_t cap = ids->cap ? ids->cap * 2 : 64;
    int32_t *p = realloc(ids->ids, cap * sizeof *p);
    if (!p) return false;
    ids->ids = p;
    ids->cap = cap;
  }
  memmove(ids->ids + at + k, ids->ids + at, (ids->n - at) * sizeof *ids->ids);
  for (size_t i = 0; i < k; i++) ids->ids[at + i] = src ? src[i] : fill;
  ids->n += k;
  return true;
}

/* Truncation, post-processor and padding over out->ids[base..). */
static qq_status post_process(const qq_tokenizer *t, const qq_encode_options *o, qq_token_ids *out, size_t base,
                              qq_error *err) {
  size_t n_added = o->add_special ? t->n_post_before + t->n_post_after : 0;
  if (t->trunc_max >= 0) {
    if ((int64_t)n_added > t->trunc_max)
      return qq_error_set(err, QQ_ERR_INVALID_ARG,
                          "%s: truncation.max_length %lld cannot hold the %zu special tokens of the post-processor",
                          t->name, (long long)t->trunc_max, n_added);
    size_t limit = (size_t)t->trunc_max - n_added;
    size_t have = out->n - base;
    if (have > limit) {
      if (t->trunc_left) memmove(out->ids + base, out->ids + base + (have - limit), limit * sizeof *out->ids);
      out->n = base + limit;
    }
  }
  if (o->add_special) {
    if (!insert_ids(out, base, t->post_before, t->n_post_before, 0) ||
        !insert_ids(out, out->n, t->post_after, t->n_post_after, 0))
      return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  }
  if (t->pad_enabled) {
    size_t have = out->n - base;
    size_t target = t->pad_fixed >= 0 ? (size_t)t->pad_fixed : have;
    if (t->pad_multiple > 0 && target % (size_t)t->pad_multiple)
      target += (size_t)t->pad_multiple - target % (size_t)t->pad_multiple;
    if (target > have && !insert_ids(out, t->pad_left ? base : out->n, NULL, target - have, t->pad_id))
      return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  }
  return QQ_OK;
}

qq_status qq_tokenizer_encode(const qq_tokenizer *tok, const char *text, size_t len, const qq_encode_options *opt,
                              qq_token_ids *out, qq_error *err) {
  if (!tok || !out || (!text && len)) return qq_error_set(err, QQ_ERR_INVALID_ARG, "qq_tokenizer_encode: NULL argument");
  qq_encode_options o = opt ? *opt : qq_encode_options_default();
  size_t valid = qq_tok_utf8_valid_prefix((const uint8_t *)text, len);
  if (valid != len)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "the text to encode is not valid UTF-8 (byte %zu of %zu, value 0x%02x)",
                        valid, len, (unsigned)(uint8_t)text[valid]);
  qq_tok_ctx *c = qq_tok_ctx_create(tok, len);
  if (!c) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  size_t base = out->n;
  encode_state e = {tok, c, o.parse_special, out, err};
  qq_status st = qq_tok_split_added(tok, &tok->match_raw, o.parse_special, text ? text : "", len, true, on_raw_piece, &e);
  if (!st) st = post_process(tok, &o, out, base, err);
  qq_tok_ctx_free(c);
  if (st) out->n = base;
  return st;
}
