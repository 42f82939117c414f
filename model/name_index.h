/* name_index.h — private to model/: an open-addressing hash table from tensor names to array
 * positions, used by the safetensors reader and the checkpoint directory for O(1) lookups. */
#ifndef QQ_NAME_INDEX_H
#define QQ_NAME_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "qq_common.h"

/* Keys are borrowed: the caller keeps the strings alive while the index is used. */
typedef struct qq_name_index {
  const char **keys;  /* [cap], NULL = empty slot */
  size_t *values;     /* [cap] */
  size_t cap;         /* power of two, at least 2 * count */
  size_t count;
} qq_name_index;

/* Sizes the table for n keys. */
qq_status qq_name_index_init(qq_name_index *ix, size_t n);
void qq_name_index_free(qq_name_index *ix);
/* Inserts key -> value; returns false (and changes nothing) when the key is already present, and
 * stores the existing value in *existing when existing is non-NULL. The table never grows: insert at
 * most the n keys it was sized for. */
bool qq_name_index_put(qq_name_index *ix, const char *key, size_t value, size_t *existing);
/* Value of key, or SIZE_MAX when absent. */
size_t qq_name_index_get(const qq_name_index *ix, const char *key);

#endif
