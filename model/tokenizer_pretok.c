/* tokenizer_pretok.c — everything between the raw text and the BPE words: added-token matching
 * (with HF's lstrip/rstrip/single_word rules), the normalizers, and the pre-tokenizers (Split with
 * every HF split behavior, ByteLevel, Metaspace). Regexes are PCRE2 compiled with UTF|UCP and JIT
 * (HF uses Oniguruma; the patterns tokenizers ship are in the common subset and PCRE2's UCP \s, \p{L},
 * \p{N} are the same Unicode classes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* ---- regex ------------------------------------------------------------------------------------ */

pcre2_code *qq_tok_regex_compile(const char *pattern, size_t len, char *errbuf, size_t errlen) {
  int ec;
  PCRE2_SIZE eo;
  pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, len, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
  if (!re) {
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(ec, msg, sizeof msg);
    snprintf(errbuf, errlen, "PCRE2 cannot compile the pattern: %s at offset %zu", (const char *)msg, (size_t)eo);
    return NULL;
  }
  /* JIT is an optimization: when it is unavailable the interpreter gives the same matches. */
  (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
  return re;
}

/* Returns > 0 on a match (ovector in md), PCRE2_ERROR_NOMATCH, or another negative error. The
 * subject is valid UTF-8 (checked once per encode), hence PCRE2_NO_UTF_CHECK. */
int qq_tok_regex_match(const pcre2_code *re, const char *s, size_t n, size_t start, pcre2_match_data *md) {
  int rc = pcre2_match(re, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK, md, NULL);
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* deep backtracking: the interpreter uses the heap */
    rc = pcre2_match(re, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
  return rc;
}

static size_t next_char_len(const char *s, size_t n, size_t at) {
  if (at >= n) return 1;
  size_t l;
  qq_tok_utf8_decode((const uint8_t *)s + at, n - at, &l);
  return l;
}

/* Iterates the non-overlapping matches of re (or of a literal) in s like HF's find_iter (the Rust
 * regex iteration rule: an empty match right after the previous match is skipped). */
typedef struct match_iter {
  const pcre2_code *re;
  const char *lit;
  size_t lit_len;
  const char *s;
  size_t n;
  size_t last_end;
  size_t last_match; /* SIZE_MAX: none */
  pcre2_match_data *md;
} match_iter;

/* 1: match in [*ms, *me); 0: no more; < 0: PCRE2 error. */
static int match_next(match_iter *it, size_t *ms, size_t *me) {
  for (;;) {
    if (it->last_end > it->n) return 0;
    size_t s, e;
    if (it->re) {
      int rc = qq_tok_regex_match(it->re, it->s, it->n, it->last_end, it->md);
      if (rc == PCRE2_ERROR_NOMATCH) return 0;
      if (rc < 0) return rc;
      PCRE2_SIZE *ov = pcre2_get_ovector_pointer(it->md);
      s = ov[0];
      e = ov[1];
      if (e < s) return PCRE2_ERROR_BADOFFSET; /* \K tricks: not something a tokenizer uses */
    } else {
      const char *p = it->lit_len && it->last_end <= it->n
                          ? memmem(it->s + it->last_end, it->n - it->last_end, it->lit, it->lit_len)
                          : NULL;
      if (!p) return 0;
      s = (size_t)(p - it->s);
      e = s + it->lit_len;
    }
    if (s == e) {
      it->last_end = e + next_char_len(it->s, it->n, e);
      if (it->last_match == e) continue;
    } else {
      it->last_end = e;
    }
    it->last_match = e;
    *ms = s;
    *me = e;
    return 1;
  }
}

/* ---- added tokens ----------------------------------------------------------------------------- */

static int32_t cp_before(const char *s, size_t at) {
  size_t i = at;
  while (i > 0 && ((uint8_t)s[i - 1] & 0xc0) == 0x80) i--;
  if (i > 0) i--;
  size_t l;
  return qq_tok_utf8_decode((const uint8_t *)s + i, at - i, &l);
}

qq_status qq_tok_split_added(const qq_tokenizer *tok, const qq_tok_matcher *m, bool parse_special,
                             const char *s, size_t n, bool at_origin, qq_tok_piece_fn fn, void *user) {
  qq_status st;
  if (m->n == 0 || n == 0) return n ? fn(user, s, n, -1, at_origin) : QQ_OK;
  size_t cursor = 0; /* HF's start_offset: end of the last emitted token */
  size_t i = 0;      /* the automaton's position: matches never overlap, even discarded ones */
  while (i < n) {
    uint8_t b = (uint8_t)s[i];
    uint32_t lo = m->start[b], hi = m->start[b + 1];
    const qq_tok_added *hit = NULL;
    for (uint32_t k = lo; k < hi; k++) {
      const qq_tok_added *a = &tok->added[m->idx[k]];
      const char *c = m->use_norm ? a->norm : a->content;
      size_t cl = m->use_norm ? a->norm_len : a->len;
      if (cl <= n - i && memcmp(s + i, c, cl) == 0) {
        hit = a;
        break; /* buckets are sorted longest first: this is the leftmost-longest match */
      }
    }
    if (!hit) {
      i++;
      continue;
    }
    size_t start = i, stop = i + (m->use_norm ? hit->norm_len : hit->len);
    i = stop;
    if (!parse_special && hit->special) continue;
    if (hit->single_word) {
      bool start_ok = start == 0 || !qq_tok_is_word(cp_before(s, start));
      size_t l;
      bool stop_ok = stop == n || !qq_tok_is_word(qq_tok_utf8_decode((const uint8_t *)s + stop, n - stop, &l));
      if (!start_ok || !stop_ok) continue;
    }
    if (hit->lstrip) {
      size_t ns = start;
      while (ns > 0) {
        size_t j = ns;
        while (j > 0 && ((uint8_t)s[j - 1] & 0xc0) == 0x80) j--;
        if (j > 0) j--;
        size_t l;
        if (!qq_tok_is_whitespace(qq_tok_utf8_decode((const uint8_t *)s + j, ns - j, &l))) break;
        ns = j;
      }
      start = QQ_MAX(ns, cursor);
    }
    if (hit->rstrip) {
      while (stop < n) {
        size_t l;
        if (!qq_tok_is_whitespace(qq_tok_utf8_decode((const uint8_t *)s + stop, n - stop, &l))) break;
        stop += l;
      }
      i = QQ_MAX(i, stop);
    }
    if (cursor < start && (st = fn(user, s + cursor, start - cursor, -1, at_origin && cursor == 0))) return st;
    if ((st = fn(user, s + start, stop - start, hit->id, at_origin && start == 0))) return st;
    cursor = stop;
  }
  if (cursor < n) return fn(user, s + cursor, n - cursor, -1, at_origin && cursor == 0);
  return QQ_OK;
}

/* ---- normalizers ------------------------------------------------------------------------------ */

static qq_status replace_all(const qq_tok_norm *r, const char *s, size_t n, qq_tok_buf *out) {
  match_iter it = {r->re, r->a, r->a_len, s, n, 0, SIZE_MAX, NULL};
  qq_status st = QQ_OK;
  if (r->re && !(it.md = pcre2_match_data_create_from_pattern(r->re, NULL))) return QQ_ERR_NOMEM;
  size_t prev = 0, ms, me;
  int rc;
  while ((rc = match_next(&it, &ms, &me)) == 1) {
    if (!qq_tok_buf_append(out, s + prev, ms - prev) || !qq_tok_buf_append(out, r->b, r->b_len)) {
      st = QQ_ERR_NOMEM;
      break;
    }
    prev = me;
  }
  if (rc < 0) st = QQ_ERR_INTERNAL;
  if (!st && !qq_tok_buf_append(out, s + prev, n - prev)) st = QQ_ERR_NOMEM;
  pcre2_match_data_free(it.md);
  return st;
}

static qq_status norm_step(const qq_tok_norm *r, const char *s, size_t n, qq_tok_buf *out) {
  switch (r->kind) {
    case QQ_NORM_UNICODE: return qq_tok_unicode_normalize(r->form, s, n, out);
    case QQ_NORM_PREPEND:
      if (n && !qq_tok_buf_append(out, r->a, r->a_len)) return QQ_ERR_NOMEM;
      return qq_tok_buf_append(out, s, n) ? QQ_OK : QQ_ERR_NOMEM;
    case QQ_NORM_REPLACE: return replace_all(r, s, n, out);
    case QQ_NORM_STRIP: {
      size_t a = 0, b = n, l;
      if (r->left)
        while (a < b && qq_tok_is_whitespace(qq_tok_utf8_decode((const uint8_t *)s + a, b - a, &l))) a += l;
      if (r->right)
        while (b > a) {
          int32_t c = cp_before(s, b);
          if (!qq_tok_is_whitespace(c)) break;
          char tmp[4];
          b -= qq_tok_utf8_encode(c, tmp);
        }
      return qq_tok_buf_append(out, s + a, b - a) ? QQ_OK : QQ_ERR_NOMEM;
    }
  }
  return QQ_ERR_INTERNAL;
}

qq_status qq_tok_normalize(const qq_tokenizer *tok, const char *s, size_t n, qq_tok_buf *out) {
  size_t base = out->n;
  if (tok->n_norm == 0) return qq_tok_buf_append(out, s, n) ? QQ_OK : QQ_ERR_NOMEM;
  if (tok->n_norm == 1) return norm_step(&tok->norm[0], s, n, out);
  qq_tok_buf a = {0}, b = {0};
  qq_status st = qq_tok_buf_append(&a, s, n) ? QQ_OK : QQ_ERR_NOMEM;
  for (size_t i = 0; i < tok->n_norm && !st; i++) {
    b.n = 0;
    st = norm_step(&tok->norm[i], a.p ? a.p : "", a.n, &b);
    qq_tok_buf t = a;
    a = b;
    b = t;
  }
  if (!st && !qq_tok_buf_append(out, a.p ? a.p : "", a.n)) st = QQ_ERR_NOMEM;
  if (st) out->n = base;
  qq_tok_buf_free(&a);
  qq_tok_buf_free(&b);
  return st;
}

/* ---- pre-tokenizers --------------------------------------------------------------------------- */

static qq_status run_level(const qq_tokenizer *tok, qq_tok_ctx *c, size_t level, const char *s, size_t n,
                           bool at_origin, qq_token_ids *out, qq_error *err);

static qq_status regex_error(qq_error *err, const qq_tokenizer *tok, int rc) {
  PCRE2_UCHAR msg[160];
  pcre2_get_error_message(rc, msg, sizeof msg);
  return qq_error_set(err, QQ_ERR_INTERNAL, "%s: pre-tokenizer regex failed: %s", tok->name, (const char *)msg);
}

static bool push_span(qq_tok_level *L, size_t s, size_t e, bool m) {
  if (L->n_spans == L->cap_spans) {
    size_t cap = L->cap_spans ? L->cap_spans * 2 : 64;
    qq_tok_span *p = realloc(L->spans, cap * sizeof *p);
    if (!p) return false;
    L->spans = p;
    L->cap_spans = cap;
  }
  L->spans[L->n_spans++] = (qq_tok_span){s, e, m};
  return true;
}

/* Splits s with the step's pattern and behavior (HF SplitDelimiterBehavior), then runs the next
 * level on every non-empty piece. */
static qq_status split_and_recurse(const qq_tokenizer *tok, qq_tok_ctx *c, size_t level, const qq_tok_pre *p,
                                   const char *s, size_t n, bool at_origin, qq_token_ids *out, qq_error *err) {
  match_iter it = {p->re, p->lit, p->lit_len, s, n, 0, SIZE_MAX, c->md};
  size_t prev = 0, ms, me;
  int rc;
  qq_status st;
  if (!p->re && p->lit_len == 0) return run_level(tok, c, level + 1, s, n, at_origin, out, err);
  if (p->behavior == QQ_SPLIT_ISOLATED && !p->invert) {
    /* The hot path (Qwen / GPT-2): stream the pieces without storing them. */
    while ((rc = match_next(&it, &ms, &me)) == 1) {
      if (ms > prev && (st = run_level(tok, c, level + 1, s + prev, ms - prev, at_origin && prev == 0, out, err)))
        return st;
      if (me > ms && (st = run_level(tok, c, level + 1, s + ms, me - ms, at_origin && ms == 0, out, err))) return st;
      prev = me;
    }
    if (rc < 0) return regex_error(err, tok, rc);
    if (prev < n) return run_level(tok, c, level + 1, s + prev, n - prev, at_origin && prev == 0, out, err);
    return QQ_OK;
  }
  qq_tok_level *L = &c->lvl[level];
  L->n_spans = 0;
  while ((rc = match_next(&it, &ms, &me)) == 1) {
    if (ms > prev && !push_span(L, prev, ms, false)) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    if (!push_span(L, ms, me, true)) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    prev = me;
  }
  if (rc < 0) return regex_error(err, tok, rc);
  if (prev < n && !push_span(L, prev, n, false)) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  size_t k = L->n_spans;
  qq_tok_span *sp = L->spans;
  if (p->invert)
    for (size_t i = 0; i < k; i++) sp[i].match = !sp[i].match;
  /* Apply the behavior in place; "match" afterwards means "remove this piece". */
  size_t w = 0;
  bool prev_match = false;
  switch (p->behavior) {
    case QQ_SPLIT_ISOLATED:
      for (size_t i = 0; i < k; i++) sp[i].match = false;
      w = k;
      break;
    case QQ_SPLIT_REMOVED: w = k; break;
    case QQ_SPLIT_MERGED_WITH_PREVIOUS:
      for (size_t i = 0; i < k; i++) {
        bool m = sp[i].match;
        if (m && !prev_match && w > 0) sp[w - 1].e = sp[i].e;
        else sp[w++] = (qq_tok_span){sp[i].s, sp[i].e, false};
        prev_match = m;
      }
      break;
    case QQ_SPLIT_MERGED_WITH_NEXT: {
      /* Right to left, then reverse. */
      size_t r = k;
      for (size_t i = k; i-- > 0;) {
        bool m = sp[i].match;
        if (m && !prev_match && r < k) sp[r].s = sp[i].s;
        else sp[--r] = (qq_tok_span){sp[i].s, sp[i].e, false};
        prev_match = m;
      }
      if (k > r) memmove(sp, sp + r, (k - r) * sizeof *sp);
      w = k - r;
      break;
    }
    case QQ_SPLIT_CONTIGUOUS:
      for (size_t i = 0; i < k; i++) {
        bool m = sp[i].match;
        if (m == prev_match && w > 0) sp[w - 1].e = sp[i].e;
        else sp[w++] = (qq_tok_span){sp[i].s, sp[i].e, false};
        prev_match = m;
      }
      break;
  }
  for (size_t i = 0; i < w; i++) {
    /* Re-read through L: a deeper level never touches this level's spans. */
    qq_tok_span x = L->spans[i];
    if (x.match || x.e <= x.s) continue;
    if ((st = run_level(tok, c, level + 1, s + x.s, x.e - x.s, at_origin && x.s == 0, out, err))) return st;
  }
  return QQ_OK;
}

static qq_status run_level(const qq_tokenizer *tok, qq_tok_ctx *c, size_t level, const char *s, size_t n,
                           bool at_origin, qq_token_ids *out, qq_error *err) {
  if (n == 0) return QQ_OK;
  if (level == tok->n_pre) return qq_tok_bpe_word(tok, c, s, n, out, err);
  const qq_tok_pre *p = &tok->pre[level];
  qq_tok_level *L = &c->lvl[level];
  switch (p->kind) {
    case QQ_PRE_SPLIT: return split_and_recurse(tok, c, level, p, s, n, at_origin, out, err);
    case QQ_PRE_BYTELEVEL:
      if (p->add_prefix_space && s[0] != ' ') {
        L->text.n = 0;
        if (!qq_tok_buf_append(&L->text, " ", 1) || !qq_tok_buf_append(&L->text, s, n))
          return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
        s = L->text.p;
        n = L->text.n;
      }
      if (p->re) return split_and_recurse(tok, c, level, p, s, n, at_origin, out, err);
      return run_level(tok, c, level + 1, s, n, at_origin, out, err);
    case QQ_PRE_METASPACE: {
      L->text.n = 0;
      bool ok = true;
      bool starts = n >= p->repl_len && !memcmp(s, p->repl, p->repl_len);
      /* The replacement of a leading space counts as "starts with the replacement". */
      if (s[0] == ' ') starts = true;
      if (!starts && (p->prepend == QQ_PREPEND_ALWAYS || (p->prepend == QQ_PREPEND_FIRST && at_origin)))
        ok = qq_tok_buf_append(&L->text, p->repl, p->repl_len);
      size_t prev = 0;
      for (size_t i = 0; i < n && ok; i++) {
        if (s[i] != ' ') continue;
        ok = qq_tok_buf_append(&L->text, s + prev, i - prev) && qq_tok_buf_append(&L->text, p->repl, p->repl_len);
        prev = i + 1;
      }
      if (!ok || !qq_tok_buf_append(&L->text, s + prev, n - prev)) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
      if (!p->split) return run_level(tok, c, level + 1, L->text.p, L->text.n, at_origin, out, err);
      qq_tok_pre sp = *p;
      sp.re = NULL;
      sp.lit = (char *)p->repl;
      sp.lit_len = p->repl_len;
      sp.behavior = QQ_SPLIT_MERGED_WITH_NEXT;
      sp.invert = false;
      /* split_and_recurse reads the text from L->text, which it does not modify. */
      return split_and_recurse(tok, c, level, &sp, L->text.p, L->text.n, at_origin, out, err);
    }
  }
  return qq_error_set(err, QQ_ERR_INTERNAL, "unknown pre-tokenizer");
}

qq_status qq_tok_pretokenize_and_bpe(const qq_tokenizer *tok, qq_tok_ctx *c, const char *s, size_t n,
                                     bool at_origin, qq_token_ids *out, qq_error *err) {
  return run_level(tok, c, 0, s, n, at_origin, out, err);
}
