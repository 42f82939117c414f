/* name_index.c — see name_index.h. FNV-1a hash, linear probing, load factor at most 1/2. */
#include "name_index.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash_name(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ull;
  }
  return h;
}

qq_status qq_name_index_init(qq_name_index *ix, size_t n) {
  memset(ix, 0, sizeof *ix);
  size_t cap = 16;
  while (cap < 2 * n) {
    if (cap > SIZE_MAX / 4) return QQ_ERR_NOMEM;
    cap *= 2;
  }
  ix->keys = calloc(cap, sizeof *ix->keys);
  ix->values = calloc(cap, sizeof *ix->values);
  if (!ix->keys || !ix->values) {
    qq_name_index_free(ix);
    return QQ_ERR_NOMEM;
  }
  ix->cap = cap;
  return QQ_OK;
}

void qq_name_index_free(qq_name_index *ix) {
  if (!ix) return;
  free(ix->keys);
  free(ix->values);
  memset(ix, 0, sizeof *ix);
}

bool qq_name_index_put(qq_name_index *ix, const char *key, size_t value, size_t *existing) {
  size_t mask = ix->cap - 1;
  for (size_t i = (size_t)hash_name(key) & mask;; i = (i + 1) & mask) {
    if (!ix->keys[i]) {
      ix->keys[i] = key;
      ix->values[i] = value;
      ix->count++;
      return true;
    }
    if (!strcmp(ix->keys[i], key)) {
      if (existing) *existing = ix->values[i];
      return false;
    }
  }
}

size_t qq_name_index_get(const qq_name_index *ix, const char *key) {
  if (!ix->cap) return SIZE_MAX;
  size_t mask = ix->cap - 1;
  for (size_t i = (size_t)hash_name(key) & mask; ix->keys[i]; i = (i + 1) & mask)
    if (!strcmp(ix->keys[i], key)) return ix->values[i];
  return SIZE_MAX;
}
