/* tokenizer_bpe.c — the BPE model: a word's characters (or, byte-level, its bytes through GPT-2's
 * bytes-to-unicode map) become symbols, then the adjacent pair with the lowest merge rank is merged
 * (ties: leftmost) until no pair merges. This is exactly what HF's BinaryHeap loop computes: a heap
 * entry is only acted on while its pair is still adjacent, and a pair's merged token fixes its rank.
 *
 * Short words (the vast majority) use an array of pair ranks: each merge recomputes two ranks and
 * shifts the tail, O(n^2) with a tiny constant. Long words (a SentencePiece text without a
 * pre-tokenizer is one word; 300 repeated characters are one word) use a binary heap over a linked
 * list of symbols, O(n log n). A per-call cache maps repeated words to their ids. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* Up to this many symbols the array method is faster than the heap (measured on wikitext-2 with the
 * Qwen2.5 vocabulary: the two are equal near 100 symbols; words are rarely longer than 20). */
#define SMALL_WORD_SYMBOLS 64
/* Words longer than this are not cached (they rarely repeat). */
#define CACHE_MAX_WORD 64
/* Cache entries per call; the table is sized for this many and stops inserting when full. */
#define CACHE_ENTRIES 32768

bool qq_tok_ids_push(qq_token_ids *ids, int32_t id) {
  if (ids->n == ids->cap) {
    size_t cap = ids->cap ? ids->cap * 2 : 64;
    int32_t *p = realloc(ids->ids, cap * sizeof *p);
    if (!p) return false;
    ids->ids = p;
    ids->cap = cap;
  }
  ids->ids[ids->n++] = id;
  return true;
}

void qq_token_ids_free(qq_token_ids *ids) {
  if (!ids) return;
  free(ids->ids);
  ids->ids = NULL;
  ids->n = ids->cap = 0;
}

qq_tok_ctx *qq_tok_ctx_create(const qq_tokenizer *tok, size_t text_len) {
  qq_tok_ctx *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->md = pcre2_match_data_create(4, NULL);
  c->n_lvl = tok->n_pre + 1;
  c->lvl = calloc(c->n_lvl, sizeof *c->lvl);
  if (!c->md || !c->lvl) {
    qq_tok_ctx_free(c);
    return NULL;
  }
  /* A cache pays off only when words repeat, i.e. on longer texts. */
  if (text_len >= 4096) c->use_cache = qq_tok_smap_init(&c->cache, CACHE_ENTRIES);
  return c;
}

void qq_tok_ctx_free(qq_tok_ctx *c) {
  if (!c) return;
  pcre2_match_data_free(c->md);
  for (size_t i = 0; c->lvl && i < c->n_lvl; i++) {
    qq_tok_buf_free(&c->lvl[i].text);
    free(c->lvl[i].spans);
  }
  free(c->lvl);
  qq_tok_buf_free(&c->norm);
  qq_tok_buf_free(&c->tmp);
  free(c->sym);
  free(c->heap);
  free(c->ranks);
  qq_tok_smap_free(&c->cache);
  qq_tok_buf_free(&c->cache_keys);
  qq_token_ids_free(&c->cache_ids);
  free(c);
}

static bool ensure_sym(qq_tok_ctx *c, size_t n) {
  if (n <= c->cap_sym) return true;
  size_t cap = c->cap_sym ? c->cap_sym : 64;
  while (cap < n) cap *= 2;
  qq_tok_sym *s = realloc(c->sym, cap * sizeof *s);
  if (!s) return false;
  c->sym = s;
  int32_t *r = realloc(c->ranks, 3 * cap * sizeof *r); /* ranks, merged ids, symbol ids */
  if (!r) return false;
  c->ranks = r;
  c->cap_sym = cap;
  return true;
}

/* ---- merge loops --------------------------------------------------------------------------- */

/* ids[0..m) in place; returns the new count. ranks: scratch of 2*m ints. */
static size_t merge_small(const qq_tokenizer *tok, int32_t *ids, size_t m, int32_t *ranks) {
  if (m < 2) return m;
  int32_t *rk = ranks, *nw = ranks + m;
  for (size_t i = 0; i + 1 < m; i++) {
    const qq_tok_merge_val *v = qq_tok_mmap_get(&tok->merges, ids[i], ids[i + 1]);
    rk[i] = v ? v->rank : INT32_MAX;
    nw[i] = v ? v->id : -1;
  }
  while (m > 1) {
    size_t best = 0;
    int32_t br = rk[0];
    for (size_t i = 1; i + 1 < m; i++)
      if (rk[i] < br) {
        br = rk[i];
        best = i;
      }
    if (br == INT32_MAX) break;
    ids[best] = nw[best];
    size_t tail = m - best - 2;
    memmove(ids + best + 1, ids + best + 2, tail * sizeof *ids);
    memmove(rk + best + 1, rk + best + 2, (tail ? tail - 1 : 0) * sizeof *rk);
    memmove(nw + best + 1, nw + best + 2, (tail ? tail - 1 : 0) * sizeof *nw);
    m--;
    if (best > 0) {
      const qq_tok_merge_val *v = qq_tok_mmap_get(&tok->merges, ids[best - 1], ids[best]);
      rk[best - 1] = v ? v->rank : INT32_MAX;
      nw[best - 1] = v ? v->id : -1;
    }
    if (best + 1 < m) {
      const qq_tok_merge_val *v = qq_tok_mmap_get(&tok->merges, ids[best], ids[best + 1]);
      rk[best] = v ? v->rank : INT32_MAX;
      nw[best] = v ? v->id : -1;
    }
  }
  return m;
}

static inline bool heap_less(const qq_tok_heap_item *a, const qq_tok_heap_item *b) {
  return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(qq_tok_heap_item *h, size_t *n, qq_tok_heap_item x) {
  size_t i = (*n)++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!heap_less(&x, &h[p])) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = x;
}

static qq_tok_heap_item heap_pop(qq_tok_heap_item *h, size_t *n) {
  qq_tok_heap_item top = h[0];
  qq_tok_heap_item x = h[--(*n)];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1;
    if (l >= *n) break;
    size_t m = l + 1 < *n && heap_less(&h[l + 1], &h[l]) ? l + 1 : l;
    if (!heap_less(&h[m], &x)) break;
    h[i] = h[m];
    i = m;
  }
  h[i] = x;
  return top;
}

static void heap_try_push(const qq_tokenizer *tok, qq_tok_ctx *c, size_t *hn, int32_t pos) {
  const qq_tok_sym *s = c->sym;
  if (pos < 0 || s[pos].next < 0) return;
  const qq_tok_merge_val *v = qq_tok_mmap_get(&tok->merges, s[pos].id, s[s[pos].next].id);
  if (v) heap_push(c->heap, hn, (qq_tok_heap_item){v->rank, pos, v->id});
}

/* ids[0..m) in place through the symbol list; returns the new count. */
static qq_status merge_large(const qq_tokenizer *tok, qq_tok_ctx *c, int32_t *ids, size_t *m) {
  size_t n = *m;
  /* Every merge pushes at most two entries: n initial + 2n. */
  if (c->cap_heap < 3 * n) {
    qq_tok_heap_item *h = realloc(c->heap, 3 * n * sizeof *h);
    if (!h) return QQ_ERR_NOMEM;
    c->heap = h;
    c->cap_heap = 3 * n;
  }
  qq_tok_sym *s = c->sym;
  for (size_t i = 0; i < n; i++) s[i] = (qq_tok_sym){ids[i], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1, false};
  size_t hn = 0;
  for (size_t i = 0; i + 1 < n; i++) heap_try_push(tok, c, &hn, (int32_t)i);
  while (hn > 0) {
    qq_tok_heap_item top = heap_pop(c->heap, &hn);
    qq_tok_sym *a = &s[top.pos];
    if (a->dead || a->next < 0) continue;
    int32_t nx = a->next;
    const qq_tok_merge_val *v = qq_tok_mmap_get(&tok->merges, a->id, s[nx].id);
    if (!v || v->id != top.id) continue; /* stale: the pair changed since the push */
    a->id = top.id;
    a->next = s[nx].next;
    s[nx].dead = true;
    if (a->next >= 0) s[a->next].prev = top.pos;
    heap_try_push(tok, c, &hn, a->prev);
    heap_try_push(tok, c, &hn, top.pos);
  }
  size_t k = 0;
  for (int32_t i = 0; i >= 0; i = s[i].next) ids[k++] = s[i].id;
  *m = k;
  return QQ_OK;
}

/* ---- one word ------------------------------------------------------------------------------- */

/* HF BPE::merge_word's handling of a character missing from the vocabulary: byte fallback tokens
 * if every byte has one, else the unknown token (fused with a pending one when fuse_unk), else the
 * character is dropped. */
static void missing_char(const qq_tokenizer *tok, const char *s, size_t l, int32_t *ids, size_t *m, bool *unk_pending) {
  if (tok->byte_fallback) {
    bool all = true;
    for (size_t k = 0; k < l; k++) all = all && tok->byte_fallback_id[(uint8_t)s[k]] >= 0;
    if (all) {
      for (size_t k = 0; k < l; k++) ids[(*m)++] = tok->byte_fallback_id[(uint8_t)s[k]];
      return;
    }
  }
  if (tok->unk_id >= 0) {
    if (*unk_pending && !tok->fuse_unk) ids[(*m)++] = tok->unk_id;
    *unk_pending = true;
  }
}

static qq_status bpe_compute(const qq_tokenizer *tok, qq_tok_ctx *c, const char *w, size_t n, qq_token_ids *out,
                             qq_error *err) {
  if (tok->ignore_merges) {
    const char *key = w;
    size_t kn = n;
    if (tok->byte_level) {
      c->tmp.n = 0;
      for (size_t i = 0; i < n; i++) {
        char u[4];
        size_t l = qq_tok_utf8_encode(qq_tok_byte_to_cp((uint8_t)w[i]), u);
        if (!qq_tok_buf_append(&c->tmp, u, l)) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
      }
      key = c->tmp.p;
      kn = c->tmp.n;
    }
    int32_t id = qq_tok_smap_get(&tok->vocab, tok->pool, key, kn);
    if (id >= 0) return qq_tok_ids_push(out, id) ? QQ_OK : qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  }
  /* At most 4 symbols per input byte (a byte-level character of 2 bytes with byte fallback), plus
   * room for the rank scratch. */
  size_t cap = 4 * n + 4;
  if (!ensure_sym(c, cap)) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  int32_t *ids = c->ranks + 2 * cap; /* last third of the scratch; merge_small uses the first 2m */
  size_t m = 0;
  bool unk = false;
  if (tok->byte_level) {
    for (size_t i = 0; i < n; i++) {
      int32_t id = tok->byte_sym[(uint8_t)w[i]];
      if (id >= 0) {
        if (unk) ids[m++] = tok->unk_id, unk = false;
        ids[m++] = id;
      } else {
        char u[4];
        size_t l = qq_tok_utf8_encode(qq_tok_byte_to_cp((uint8_t)w[i]), u);
        missing_char(tok, u, l, ids, &m, &unk);
      }
    }
  } else {
    for (size_t i = 0; i < n;) {
      size_t l;
      qq_tok_utf8_decode((const uint8_t *)w + i, n - i, &l);
      int32_t id = qq_tok_smap_get(&tok->vocab, tok->pool, w + i, l);
      if (id >= 0) {
        if (unk) ids[m++] = tok->unk_id, unk = false;
        ids[m++] = id;
      } else {
        missing_char(tok, w + i, l, ids, &m, &unk);
      }
      i += l;
    }
  }
  if (unk) ids[m++] = tok->unk_id;
  if (m <= SMALL_WORD_SYMBOLS) {
    m = merge_small(tok, ids, m, c->ranks);
  } else {
    qq_status st = merge_large(tok, c, ids, &m);
    if (st) return qq_error_set(err, st, "out of memory");
  }
  if (m == 0) return QQ_OK;
  if (out->n + m > out->cap) {
    size_t nc = out->cap ? out->cap : 64;
    while (nc < out->n + m) nc *= 2;
    int32_t *p = realloc(out->ids, nc * sizeof *p);
    if (!p) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    out->ids = p;
    out->cap = nc;
  }
  memcpy(out->ids + out->n, ids, m * sizeof *ids);
  out->n += m;
  return QQ_OK;
}

qq_status qq_tok_bpe_word(const qq_tokenizer *tok, qq_tok_ctx *c, const char *w, size_t n, qq_token_ids *out,
                          qq_error *err) {
  bool cacheable = c->use_cache && n <= CACHE_MAX_WORD;
  if (cacheable) {
    int32_t v = qq_tok_smap_get(&c->cache, c->cache_keys.p, w, n);
    if (v >= 0) {
      int32_t cnt = c->cache_ids.ids[v];
      for (int32_t k = 0; k < cnt; k++)
        if (!qq_tok_ids_push(out, c->cache_ids.ids[v + 1 + k])) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
      return QQ_OK;
    }
  }
  size_t base = out->n;
  qq_status st = bpe_compute(tok, c, w, n, out, err);
  if (st || !cacheable || (size_t)c->cache.count * 2 + 2 > (size_t)c->cache.mask + 1) return st;
  /* Remember the word (best effort: an allocation failure only disables caching). */
  size_t cnt = out->n - base;
  uint32_t koff = (uint32_t)c->cache_keys.n;
  int32_t voff = (int32_t)c->cache_ids.n;
  if (c->cache_ids.n + cnt + 1 > INT32_MAX || !qq_tok_buf_append(&c->cache_keys, w, n) ||
      !qq_tok_ids_push(&c->cache_ids, (int32_t)cnt)) {
    c->use_cache = false;
    return QQ_OK;
  }
  for (size_t k = 0; k < cnt; k++)
    if (!qq_tok_ids_push(&c->cache_ids, out->ids[base + k])) {
      c->use_cache = false;
      return QQ_OK;
    }
  if (!qq_tok_smap_put(&c->cache, c->cache_keys.p, koff, (uint32_t)n, voff)) c->use_cache = false;
  return QQ_OK;
}
