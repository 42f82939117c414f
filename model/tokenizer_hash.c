/* tokenizer_hash.c — the tokenizer's open-addressing hash tables (token string -> id, merge pair ->
 * rank and merged id) and its growable byte buffer. Linear probing at <= 50 % load: a lookup touches
 * one or two slots on average, and the tables are built once at load time and then only read, so
 * concurrent encodes share them without locks. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

uint64_t qq_tok_hash_bytes(const void *p, size_t n) {
  const uint8_t *s = (const uint8_t *)p;
  uint64_t h = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)n * 0xc2b2ae3d27d4eb4fULL);
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, s, 8);
    h = (h ^ qq_tok_mix64(w)) * 0x9fb21c651e98df25ULL;
    s += 8;
    n -= 8;
  }
  uint64_t w = 0;
  if (n) memcpy(&w, s, n);
  h = (h ^ qq_tok_mix64(w ^ 0x5bd1e995u)) * 0x9fb21c651e98df25ULL;
  return qq_tok_mix64(h);
}

static uint32_t pow2_capacity(size_t expected) {
  size_t cap = 16;
  while (cap < expected * 2) cap <<= 1;
  return (uint32_t)cap;
}

bool qq_tok_smap_init(qq_tok_smap *m, size_t expected) {
  memset(m, 0, sizeof *m);
  if (expected > (1u << 28)) return false;
  uint32_t cap = pow2_capacity(expected);
  m->hash = calloc(cap, sizeof *m->hash);
  m->koff = malloc(cap * sizeof *m->koff);
  m->klen = malloc(cap * sizeof *m->klen);
  m->val = malloc(cap * sizeof *m->val);
  if (!m->hash || !m->koff || !m->klen || !m->val) {
    qq_tok_smap_free(m);
    return false;
  }
  m->mask = cap - 1;
  return true;
}

void qq_tok_smap_free(qq_tok_smap *m) {
  if (!m) return;
  free(m->hash);
  free(m->koff);
  free(m->klen);
  free(m->val);
  memset(m, 0, sizeof *m);
}

static inline uint32_t smap_hash(const char *s, size_t n) {
  uint32_t h = (uint32_t)qq_tok_hash_bytes(s, n);
  return h ? h : 1u;
}

int32_t qq_tok_smap_get(const qq_tok_smap *m, const char *pool, const char *s, size_t n) {
  if (!m->hash) return -1;
  uint32_t h = smap_hash(s, n);
  uint32_t i = h & m->mask;
  for (;;) {
    uint32_t sh = m->hash[i];
    if (sh == 0) return -1;
    if (sh == h && m->klen[i] == n && memcmp(pool + m->koff[i], s, n) == 0) return m->val[i];
    i = (i + 1) & m->mask;
  }
}

bool qq_tok_smap_put(qq_tok_smap *m, const char *pool, uint32_t off, uint32_t n, int32_t val) {
  if (!m->hash) return false;
  const char *s = pool + off;
  uint32_t h = smap_hash(s, n);
  uint32_t i = h & m->mask;
  for (;;) {
    uint32_t sh = m->hash[i];
    if (sh == 0) break;
    if (sh == h && m->klen[i] == n && memcmp(pool + m->koff[i], s, n) == 0) {
      m->val[i] = val;
      return true;
    }
    i = (i + 1) & m->mask;
  }
  if ((size_t)(m->count + 1) * 2 > (size_t)m->mask + 1) return false;
  m->hash[i] = h;
  m->koff[i] = off;
  m->klen[i] = n;
  m->val[i] = val;
  m->count++;
  return true;
}

bool qq_tok_mmap_init(qq_tok_mmap *m, size_t expected) {
  memset(m, 0, sizeof *m);
  if (expected > (1u << 28)) return false;
  uint32_t cap = pow2_capacity(expected);
  m->key = malloc(cap * sizeof *m->key);
  m->val = malloc(cap * sizeof *m->val);
  if (!m->key || !m->val) {
    qq_tok_mmap_free(m);
    return false;
  }
  memset(m->key, 0xff, cap * sizeof *m->key);
  m->mask = cap - 1;
  return true;
}

void qq_tok_mmap_free(qq_tok_mmap *m) {
  if (!m) return;
  free(m->key);
  free(m->val);
  memset(m, 0, sizeof *m);
}

void qq_tok_mmap_put(qq_tok_mmap *m, int32_t a, int32_t b, qq_tok_merge_val v) {
  uint64_t k = qq_tok_pair_key(a, b);
  uint32_t i = (uint32_t)qq_tok_mix64(k) & m->mask;
  while (m->key[i] != UINT64_MAX && m->key[i] != k) i = (i + 1) & m->mask;
  if (m->key[i] == UINT64_MAX) m->count++;
  m->key[i] = k;
  m->val[i] = v;
}

bool qq_tok_buf_reserve(qq_tok_buf *b, size_t extra) {
  if (b->n + extra + 1 <= b->cap) return true;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->n + extra + 1) {
    if (cap > SIZE_MAX / 2) return false;
    cap *= 2;
  }
  char *p = realloc(b->p, cap);
  if (!p) return false;
  b->p = p;
  b->cap = cap;
  return true;
}

bool qq_tok_buf_append(qq_tok_buf *b, const void *s, size_t n) {
  if (!qq_tok_buf_reserve(b, n)) return false;
  if (n) memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
  return true;
}

void qq_tok_buf_free(qq_tok_buf *b) {
  free(b->p);
  b->p = NULL;
  b->n = b->cap = 0;
}
