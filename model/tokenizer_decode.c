/* tokenizer_decode.c — decoders as a chain of streaming stages, one per HF decoder step. A token
 * string enters stage 0; each stage passes zero or more strings on; the last stage appends to the
 * output. Full decode (qq_tokenizer_decode) and streaming (qq_detokenizer) run the same chain, so the
 * concatenation of every push plus finish equals the full decode by construction.
 *
 * HF's decoders work on the whole token list (decode_chain). They stream because each needs only
 * bounded state: ByteFallback holds the current run of <0xXX> tokens (a run decodes to its UTF-8
 * text, or one U+FFFD per byte when it is invalid, so it cannot be emitted before it ends);
 * ByteLevel holds an incomplete UTF-8 tail (String::from_utf8_lossy over all the bytes); Strip
 * after Fuse strips the start of the whole text and holds trailing content characters; Metaspace
 * counts tokens; no decoder joins tokens with spaces. Every stage emits whole characters only. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

typedef struct stage_state {
  qq_tok_buf scratch;
  qq_tok_buf pending;
  int64_t count;     /* tokens seen (Metaspace, join) / start characters stripped (Strip) */
  bool start_done;   /* Strip after Fuse: the leading part is past */
  int64_t held;      /* Strip after Fuse: content characters held at the end */
} stage_state;

struct qq_detokenizer {
  const qq_tokenizer *tok;
  bool skip_special;
  stage_state *st;
  qq_tok_buf *sink; /* the caller's buffer during a call */
};

static const char FFFD[] = "\xef\xbf\xbd";

static qq_status stage(qq_detokenizer *d, size_t k, const char *s, size_t n);

static qq_status emit_sink(qq_detokenizer *d, const char *s, size_t n) {
  return qq_tok_buf_append(d->sink, s, n) ? QQ_OK : QQ_ERR_NOMEM;
}

/* Rust's u8::from_str_radix(s, 16) on two characters: hex digits, or '+' then one digit. */
static int parse_hex2(const char *s) {
  int v = 0, digits = 0;
  for (int i = 0; i < 2; i++) {
    char ch = s[i];
    int x;
    if (i == 0 && ch == '+') continue;
    if (ch >= '0' && ch <= '9') x = ch - '0';
    else if (ch >= 'a' && ch <= 'f') x = ch - 'a' + 10;
    else if (ch >= 'A' && ch <= 'F') x = ch - 'A' + 10;
    else return -1;
    v = v * 16 + x;
    digits++;
  }
  return digits ? v : -1;
}

static qq_status flush_byte_run(qq_detokenizer *d, size_t k) {
  stage_state *S = &d->st[k];
  if (S->pending.n == 0) return QQ_OK;
  qq_status st = QQ_OK;
  if (qq_tok_utf8_valid(S->pending.p, S->pending.n)) {
    st = stage(d, k + 1, S->pending.p, S->pending.n);
  } else {
    for (size_t i = 0; i < S->pending.n && !st; i++) st = stage(d, k + 1, FFFD, 3);
  }
  S->pending.n = 0;
  return st;
}

/* Replace every occurrence of a by b; passes the result on. */
static qq_status do_replace(qq_detokenizer *d, size_t k, const qq_tok_dec *x, const char *s, size_t n) {
  const char *hit = memmem(s, n, x->a, x->a_len);
  if (!hit) return stage(d, k + 1, s, n);
  qq_tok_buf *b = &d->st[k].scratch;
  b->n = 0;
  size_t prev = 0;
  while (hit) {
    size_t at = (size_t)(hit - s);
    if (!qq_tok_buf_append(b, s + prev, at - prev) || !qq_tok_buf_append(b, x->b, x->b_len)) return QQ_ERR_NOMEM;
    prev = at + x->a_len;
    hit = prev < n ? memmem(s + prev, n - prev, x->a, x->a_len) : NULL;
  }
  if (!qq_tok_buf_append(b, s + prev, n - prev)) return QQ_ERR_NOMEM;
  return stage(d, k + 1, b->p, b->n);
}

static qq_status do_strip(qq_detokenizer *d, size_t k, const qq_tok_dec *x, const char *s, size_t n) {
  stage_state *S = &d->st[k];
  size_t cl = x->a_len;
  if (!x->fused_input) {
    /* HF Strip on one token: up to `start` leading and `stop` trailing content characters. */
    size_t a = 0, b = n;
    for (int32_t i = 0; i < x->start && b - a >= cl && !memcmp(s + a, x->a, cl); i++) a += cl;
    for (int32_t i = 0; i < x->stop && b - a >= cl && !memcmp(s + b - cl, x->a, cl); i++) b -= cl;
    return stage(d, k + 1, s + a, b - a);
  }
  /* One fused string arriving in pieces. */
  size_t a = 0;
  while (!S->start_done && a < n) {
    if (S->count < x->start && n - a >= cl && !memcmp(s + a, x->a, cl)) {
      a += cl;
      S->count++;
    } else {
      S->start_done = true;
    }
  }
  if (S->count >= x->start) S->start_done = true;
  if (x->stop == 0) return a < n ? stage(d, k + 1, s + a, n - a) : QQ_OK;
  /* Hold the trailing run of content characters until something else follows it. */
  size_t b = n;
  int64_t run = 0;
  while (b - a >= cl && !memcmp(s + b - cl, x->a, cl)) {
    b -= cl;
    run++;
  }
  qq_status st = QQ_OK;
  if (b > a) {
    for (int64_t i = 0; i < S->held && !st; i++) st = stage(d, k + 1, x->a, cl);
    S->held = 0;
    if (!st) st = stage(d, k + 1, s + a, b - a);
  }
  S->held += run;
  return st;
}

static qq_status do_metaspace(qq_detokenizer *d, size_t k, const qq_tok_dec *x, const char *s, size_t n) {
  stage_state *S = &d->st[k];
  bool first = x->fused_input ? true : S->count++ == 0;
  bool drop = first && x->strip_first;
  qq_tok_buf *b = &S->scratch;
  b->n = 0;
  size_t prev = 0;
  const char *hit = memmem(s, n, x->a, x->a_len);
  while (hit) {
    size_t at = (size_t)(hit - s);
    if (!qq_tok_buf_append(b, s + prev, at - prev) || (!drop && !qq_tok_buf_append(b, " ", 1))) return QQ_ERR_NOMEM;
    prev = at + x->a_len;
    hit = prev < n ? memmem(s + prev, n - prev, x->a, x->a_len) : NULL;
  }
  if (!qq_tok_buf_append(b, s + prev, n - prev)) return QQ_ERR_NOMEM;
  return stage(d, k + 1, b->p, b->n);
}

static qq_status do_bytelevel(qq_detokenizer *d, size_t k, const char *s, size_t n) {
  stage_state *S = &d->st[k];
  /* A token whose characters all map back to bytes becomes those bytes; otherwise (an added token
   * written in plain text) its own UTF-8 bytes, as HF's ByteLevel decoder does. */
  size_t base = S->pending.n;
  bool all = true;
  for (size_t i = 0; i < n && all;) {
    size_t l;
    int32_t cp = qq_tok_utf8_decode((const uint8_t *)s + i, n - i, &l);
    int b = qq_tok_cp_to_byte(cp);
    if (b < 0) {
      all = false;
      break;
    }
    char ch = (char)b;
    if (!qq_tok_buf_append(&S->pending, &ch, 1)) return QQ_ERR_NOMEM;
    i += l;
  }
  if (!all) {
    S->pending.n = base;
    if (!qq_tok_buf_append(&S->pending, s, n)) return QQ_ERR_NOMEM;
  }
  S->scratch.n = 0;
  bool ok;
  size_t used = qq_tok_utf8_lossy((const uint8_t *)S->pending.p, S->pending.n, false, &S->scratch, &ok);
  if (!ok) return QQ_ERR_NOMEM;
  if (used) {
    memmove(S->pending.p, S->pending.p + used, S->pending.n - used);
    S->pending.n -= used;
  }
  return S->scratch.n ? stage(d, k + 1, S->scratch.p, S->scratch.n) : QQ_OK;
}

static qq_status stage(qq_detokenizer *d, size_t k, const char *s, size_t n) {
  const qq_tokenizer *t = d->tok;
  if (k == t->n_dec) return emit_sink(d, s, n);
  const qq_tok_dec *x = &t->dec[k];
  stage_state *S = &d->st[k];
  switch (x->kind) {
    case QQ_DEC_FUSE: return stage(d, k + 1, s, n);
    case QQ_DEC_REPLACE: return do_replace(d, k, x, s, n);
    case QQ_DEC_STRIP: return do_strip(d, k, x, s, n);
    case QQ_DEC_METASPACE: return do_metaspace(d, k, x, s, n);
    case QQ_DEC_BYTELEVEL: return do_bytelevel(d, k, s, n);
    case QQ_DEC_BYTEFALLBACK: {
      int v = n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' ? parse_hex2(s + 3) : -1;
      if (v >= 0) {
        char ch = (char)v;
        return qq_tok_buf_append(&S->pending, &ch, 1) ? QQ_OK : QQ_ERR_NOMEM;
      }
      qq_status st = flush_byte_run(d, k);
      return st ? st : stage(d, k + 1, s, n);
    }
    case QQ_DEC_JOIN_SPACE: {
      if (S->count++ > 0) {
        qq_status st = stage(d, k + 1, " ", 1);
        if (st) return st;
      }
      return stage(d, k + 1, s, n);
    }
  }
  return QQ_ERR_INTERNAL;
}

/* End of input: each stage flushes what it holds, in order. */
static qq_status finish_chain(qq_detokenizer *d) {
  const qq_tokenizer *t = d->tok;
  for (size_t k = 0; k < t->n_dec; k++) {
    const qq_tok_dec *x = &t->dec[k];
    stage_state *S = &d->st[k];
    qq_status st = QQ_OK;
    if (x->kind == QQ_DEC_BYTEFALLBACK) {
      st = flush_byte_run(d, k);
    } else if (x->kind == QQ_DEC_BYTELEVEL && S->pending.n) {
      S->scratch.n = 0;
      bool ok;
      qq_tok_utf8_lossy((const uint8_t *)S->pending.p, S->pending.n, true, &S->scratch, &ok);
      S->pending.n = 0;
      st = ok ? stage(d, k + 1, S->scratch.p, S->scratch.n) : QQ_ERR_NOMEM;
    } else if (x->kind == QQ_DEC_STRIP && x->fused_input) {
      int64_t keep = S->held - QQ_MIN(S->held, (int64_t)x->stop);
      for (int64_t i = 0; i < keep && !st; i++) st = stage(d, k + 1, x->a, x->a_len);
      S->held = 0;
    }
    if (st) return st;
  }
  return QQ_OK;
}

qq_status qq_detokenizer_create(const qq_tokenizer *tok, bool skip_special, qq_detokenizer **out, qq_error *err) {
  if (!tok || !out) return qq_error_set(err, QQ_ERR_INVALID_ARG, "qq_detokenizer_create: NULL argument");
  qq_detokenizer *d = calloc(1, sizeof *d);
  if (d) d->st = calloc(tok->n_dec + 1, sizeof *d->st);
  if (!d || !d->st) {
    free(d);
    return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  }
  d->tok = tok;
  d->skip_special = skip_special;
  *out = d;
  return QQ_OK;
}

void qq_detokenizer_free(qq_detokenizer *d) {
  if (!d) return;
  for (size_t k = 0; k < d->tok->n_dec; k++) {
    qq_tok_buf_free(&d->st[k].scratch);
    qq_tok_buf_free(&d->st[k].pending);
  }
  free(d->st);
  free(d);
}

typedef enum sink_op { SINK_TOKEN, SINK_FINISH, SINK_NOTHING } sink_op;

/* Runs one operation with the caller's buffer as the sink, keeping it NUL-terminated. */
static qq_status with_sink(qq_detokenizer *d, char **buf, size_t *len, size_t *cap, int32_t id, sink_op op,
                           qq_error *err) {
  if (!buf || !len || !cap) return qq_error_set(err, QQ_ERR_INVALID_ARG, "detokenizer: NULL output buffer");
  qq_tok_buf sink = {*buf, *len, *cap};
  d->sink = &sink;
  qq_status st;
  if (op == SINK_FINISH) {
    st = finish_chain(d);
  } else if (op == SINK_TOKEN) {
    size_t n;
    const char *s = qq_tok_str(d->tok, id, &n);
    st = stage(d, 0, s, n);
  } else {
    st = QQ_OK;
  }
  if (!st && !qq_tok_buf_reserve(&sink, 0)) st = QQ_ERR_NOMEM;
  if (sink.p) sink.p[sink.n] = '\0';
  d->sink = NULL;
  *buf = sink.p;
  *len = sink.n;
  *cap = sink.cap;
  if (st) return qq_error_set(err, st, "detokenizer: %s", st == QQ_ERR_NOMEM ? "out of memory" : "internal error");
  return QQ_OK;
}

qq_status qq_detokenizer_push(qq_detokenizer *d, int32_t id, char **buf, size_t *len, size_t *cap, qq_error *err) {
  if (!d) return qq_error_set(err, QQ_ERR_INVALID_ARG, "qq_detokenizer_push: NULL detokenizer");
  if (!qq_tok_has_id(d->tok, id))
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "token id %d is not in the vocabulary of %s (size %d)", id,
                        d->tok->name, d->tok->n_ids);
  bool skip = d->skip_special && (d->tok->flags[id] & QQ_TOK_F_SPECIAL);
  return with_sink(d, buf, len, cap, id, skip ? SINK_NOTHING : SINK_TOKEN, err);
}

qq_status qq_detokenizer_finish(qq_detokenizer *d, char **buf, size_t *len, size_t *cap, qq_error *err) {
  if (!d) return qq_error_set(err, QQ_ERR_INVALID_ARG, "qq_detokenizer_finish: NULL detokenizer");
  return with_sink(d, buf, len, cap, 0, SINK_FINISH, err);
}

qq_status qq_tokenizer_decode(const qq_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special, char **out,
                              size_t *out_len, qq_error *err) {
  if (!tok || !out || (!ids && n)) return qq_error_set(err, QQ_ERR_INVALID_ARG, "qq_tokenizer_decode: NULL argument");
  *out = NULL;
  if (out_len) *out_len = 0;
  for (size_t i = 0; i < n; i++)
    if (!qq_tok_has_id(tok, ids[i]))
      return qq_error_set(err, QQ_ERR_INVALID_ARG, "ids[%zu] = %d is not in the vocabulary of %s (size %d)", i, ids[i],
                          tok->name, tok->n_ids);
  qq_detokenizer *d;
  qq_status st = qq_detokenizer_create(tok, skip_special, &d, err);
  if (st) return st;
  char *buf = NULL;
  size_t len = 0, cap = 0;
  for (size_t i = 0; i < n && !st; i++) st = qq_detokenizer_push(d, ids[i], &buf, &len, &cap, err);
  if (!st) st = qq_detokenizer_finish(d, &buf, &len, &cap, err);
  qq_detokenizer_free(d);
  if (st) {
    free(buf);
    return st;
  }
  if (!buf && !(buf = calloc(1, 1))) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  *out = buf;
  if (out_len) *out_len = len;
  return QQ_OK;
}
