/* safetensors.c — reader (mmap + full header validation) and atomic writer for .safetensors files.
 *
 * File layout (https://github.com/huggingface/safetensors):
 *   [u64 little-endian N][N bytes of JSON header][data section]
 * The header is a JSON object: "__metadata__" (optional) maps strings to strings; every other key is
 * a tensor name mapping to {"dtype": "BF16", "shape": [d0, d1, ...], "data_offsets": [begin, end]},
 * offsets relative to the start of the data section. Writers (HF and ours) pad the header with spaces
 * so that the data section starts at a multiple of 8 bytes.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"
#include "loader_internal.h"
#include "name_index.h"

/* HF's reader refuses headers above 100 MB; a real header is a few hundred KB at most. */
#define ST_MAX_HEADER_BYTES (100u * 1000u * 1000u)
/* Shape dimensions travel as JSON numbers (doubles): integers above 2^53 cannot be represented. */
#define ST_MAX_JSON_INT 9007199254740992.0

struct qq_safetensors {
  char *name;              /* path or caller-given name, for messages */
  void *map;               /* mmap base (NULL when parsing a caller's buffer) */
  size_t map_len;
  const uint8_t *data;     /* start of the data section */
  size_t data_len;
  qq_tensor_info *tensors; /* [n], in header order */
  size_t n;
  char **meta_keys;        /* [n_meta] */
  char **meta_values;
  size_t n_meta;
  qq_name_index index;
};

/* Safetensors dtypes that exist in the format but that qquant does not read: UNSUPPORTED, not
 * FORMAT, so a person knows the file is fine and the tool is the limit. */
static const char *const known_unread_dtypes[] = {"U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "F8_E8M0",
                                                  "F6_E2M3", "F6_E3M2", "F4", "C64"};

void qq_safetensors_close(qq_safetensors *st) {
  if (!st) return;
  for (size_t i = 0; i < st->n; i++) free((char *)st->tensors[i].name);
  free(st->tensors);
  for (size_t i = 0; i < st->n_meta; i++) {
    free(st->meta_keys[i]);
    free(st->meta_values[i]);
  }
  free(st->meta_keys);
  free(st->meta_values);
  qq_name_index_free(&st->index);
  if (st->map) munmap(st->map, st->map_len);
  free(st->name);
  free(st);
}

size_t qq_safetensors_count(const qq_safetensors *st) { return st ? st->n : 0; }

const qq_tensor_info *qq_safetensors_at(const qq_safetensors *st, size_t i) {
  return st && i < st->n ? &st->tensors[i] : NULL;
}

const qq_tensor_info *qq_safetensors_find(const qq_safetensors *st, const char *name) {
  if (!st || !name) return NULL;
  size_t i = qq_name_index_get(&st->index, name);
  return i == SIZE_MAX ? NULL : &st->tensors[i];
}

const char *qq_safetensors_metadata(const qq_safetensors *st, const char *key) {
  if (!st || !key) return NULL;
  for (size_t i = 0; i < st->n_meta; i++)
    if (!strcmp(st->meta_keys[i], key)) return st->meta_values[i];
  return NULL;
}

const char *qq_safetensors_name(const qq_safetensors *st) { return st ? st->name : NULL; }

/* A JSON number that is a whole number in [0, 2^53]. */
static bool json_uint(const cJSON *v, uint64_t *out) {
  if (!cJSON_IsNumber(v)) return false;
  double d = v->valuedouble;
  if (!(d >= 0.0 && d <= ST_MAX_JSON_INT) || d != (double)(uint64_t)d) return false;
  *out = (uint64_t)d;
  return true;
}

static qq_status parse_metadata(qq_safetensors *st, const cJSON *meta, qq_error *err) {
  if (!cJSON_IsObject(meta))
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: \"__metadata__\" is not a JSON object", st->name);
  size_t n = (size_t)cJSON_GetArraySize(meta);
  if (n == 0) return QQ_OK;
  st->meta_keys = calloc(n, sizeof(char *));
  st->meta_values = calloc(n, sizeof(char *));
  if (!st->meta_keys || !st->meta_values) return qq_error_set(err, QQ_ERR_NOMEM, "%s: out of memory", st->name);
  for (const cJSON *e = meta->child; e; e = e->next) {
    if (!cJSON_IsString(e))
      return qq_error_set(err, QQ_ERR_FORMAT, "%s: \"__metadata__\" entry \"%s\" is not a string", st->name,
                          e->string);
    st->meta_keys[st->n_meta] = strdup(e->string);
    st->meta_values[st->n_meta] = strdup(e->valuestring);
    if (!st->meta_keys[st->n_meta] || !st->meta_values[st->n_meta]) {
      free(st->meta_keys[st->n_meta]);
      free(st->meta_values[st->n_meta]);
      return qq_error_set(err, QQ_ERR_NOMEM, "%s: out of memory", st->name);
    }
    st->n_meta++;
  }
  return QQ_OK;
}

/* Parses one tensor entry into t (name already set), validating it against the data section. */
static qq_status parse_tensor(const qq_safetensors *st, const cJSON *e, qq_tensor_info *t, uint64_t *begin_out,
                              qq_error *err) {
  const char *f = st->name, *nm = e->string;
  if (!cJSON_IsObject(e))
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: tensor %s: header entry is not a JSON object", f, nm);
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
  const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
  const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
  if (!cJSON_IsString(dt))
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: tensor %s: \"dtype\" is missing or not a string", f, nm);
  if (qq_dtype_parse(dt->valuestring, &t->dtype) != QQ_OK) {
    for (size_t i = 0; i < QQ_ARRAY_LEN(known_unread_dtypes); i++)
      if (!strcmp(dt->valuestring, known_unread_dtypes[i]))
        return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: tensor %s: dtype %s is not supported by qquant", f,
                            nm, dt->valuestring);
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: tensor %s: unknown dtype \"%.32s\"", f, nm, dt->valuestring);
  }
  if (!cJSON_IsArray(shape))
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: tensor %s: \"shape\" is missing or not an array", f, nm);
  int nd = cJSON_GetArraySize(shape);
  if (nd > QQ_MAX_DIMS)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: tensor %s: %d dimensions, qquant reads at most %d", f, nm,
                        nd, QQ_MAX_DIMS);
  t->ndim = nd;
  uint64_t numel = 1;
  bool overflow = false, has_zero = false;
  int d = 0;
  for (const cJSON *v = shape->child; v; v = v->next, d++) {
    uint64_t dim;
    if (!json_uint(v, &dim))
      return qq_error_set(err, QQ_ERR_FORMAT, "%s: tensor %s: shape[%d] is not a non-negative integer", f, nm, d);
    t->shape[d] = (int64_t)dim;
    if (dim == 0) has_zero = true;
    else if (numel > (uint64_t)INT64_MAX / dim) overflow = true;
    numel = overflow ? 1 : numel * dim;
  }
  /* A zero dimension makes an overflowing product harmless (numel 0), as in PyTorch. */
  if (has_zero) numel = 0;
  else if (overflow)
    return qq_error_set(err, QQ_ERR_RANGE, "%s: tensor %s: element count of the shape overflows 64 bits", f, nm);
  size_t esz = qq_dtype_size(t->dtype);
  if (numel > SIZE_MAX / esz || numel > (uint64_t)INT64_MAX / esz)
    return qq_error_set(err, QQ_ERR_RANGE, "%s: tensor %s: byte size of the shape overflows", f, nm);
  t->numel = (int64_t)numel;
  t->nbytes = (size_t)numel * esz;
  uint64_t b, en;
  if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_uint(offs->child, &b) ||
      !json_uint(offs->child->next, &en))
    return qq_error_set(err, QQ_ERR_FORMAT,
                        "%s: tensor %s: \"data_offsets\" must be an array of two non-negative integers", f, nm);
  if (b > en)
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: tensor %s: data_offsets [%llu, %llu] end before they begin", f,
                        nm, (unsigned long long)b, (unsigned long long)en);
  if (en > st->data_len)
    return qq_error_set(err, QQ_ERR_RANGE,
                        "%s: tensor %s: data_offsets [%llu, %llu] run past the data section (%zu bytes; file "
                        "truncated?)",
                        f, nm, (unsigned long long)b, (unsigned long long)en, st->data_len);
  if (en - b != t->nbytes)
    return qq_error_set(err, QQ_ERR_FORMAT,
                        "%s: tensor %s: data_offsets span %llu bytes but %s shape needs %zu (%lld elements x %zu)",
                        f, nm, (unsigned long long)(en - b), qq_dtype_name(t->dtype), t->nbytes,
                        (long long)t->numel, esz);
  t->data = st->data + b;
  t->file = st->name;
  *begin_out = b;
  return QQ_OK;
}

typedef struct span {
  uint64_t begin, end;
  size_t idx;
} span;

static int span_cmp(const void *a, const void *b) {
  const span *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

static qq_status check_overlaps(const qq_safetensors *st, qq_error *err) {
  if (st->n < 2) return QQ_OK;
  span *sp = malloc(st->n * sizeof *sp);
  if (!sp) return qq_error_set(err, QQ_ERR_NOMEM, "%s: out of memory", st->name);
  for (size_t i = 0; i < st->n; i++) {
    uint64_t b = (uint64_t)((const uint8_t *)st->tensors[i].data - st->data);
    sp[i] = (span){b, b + st->tensors[i].nbytes, i};
  }
  qsort(sp, st->n, sizeof *sp, span_cmp);
  qq_status s = QQ_OK;
  /* Empty tensors occupy no bytes and cannot overlap anything. */
  size_t prev = SIZE_MAX;
  for (size_t i = 0; i < st->n; i++) {
    if (sp[i].begin == sp[i].end) continue;
    if (prev != SIZE_MAX && sp[prev].end > sp[i].begin) {
      s = qq_error_set(err, QQ_ERR_FORMAT, "%s: tensors %s [%llu, %llu) and %s [%llu, %llu) overlap", st->name,
                       st->tensors[sp[prev].idx].name, (unsigned long long)sp[prev].begin,
                       (unsigned long long)sp[prev].end, st->tensors[sp[i].idx].name,
                       (unsigned long long)sp[i].begin, (unsigned long long)sp[i].end);
      break;
    }
    prev = i;
  }
  free(sp);
  return s;
}

static qq_status parse_header(qq_safetensors *st, const uint8_t *buf, size_t len, qq_error *err) {
  if (len < 8)
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: truncated: %zu bytes, a safetensors file starts with an 8-byte "
                        "header length", st->name, len);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
  if (hlen > len - 8)
    return qq_error_set(err, QQ_ERR_FORMAT,
                        "%s: header length %llu runs past the end of the file (%zu bytes; truncated or not a "
                        "safetensors file)",
                        st->name, (unsigned long long)hlen, len);
  if (hlen > ST_MAX_HEADER_BYTES)
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: header of %llu bytes is larger than the %u-byte limit", st->name,
                        (unsigned long long)hlen, ST_MAX_HEADER_BYTES);
  if (hlen < 2)
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: header of %llu bytes cannot hold a JSON object", st->name,
                        (unsigned long long)hlen);
  const char *h = (const char *)buf + 8;
  st->data = buf + 8 + hlen;
  st->data_len = len - 8 - (size_t)hlen;
  if (memchr(h, 0, (size_t)hlen))
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: header contains a NUL byte (not JSON)", st->name);
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(h, (size_t)hlen, &end, false);
  if (!root) {
    size_t at = end && end >= h && end <= h + hlen ? (size_t)(end - h) : 0;
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: header is not valid JSON (error near byte %zu of %llu)",
                        st->name, at, (unsigned long long)hlen);
  }
  qq_status s = QQ_OK;
  /* Anything after the object other than the padding spaces is garbage. */
  for (const char *p = end; p && p < h + hlen; p++) {
    if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
      s = qq_error_set(err, QQ_ERR_FORMAT, "%s: header has trailing bytes after the JSON object (byte %zu)",
                       st->name, (size_t)(p - h));
      goto done;
    }
  }
  if (!cJSON_IsObject(root)) {
    s = qq_error_set(err, QQ_ERR_FORMAT, "%s: header is JSON but not an object", st->name);
    goto done;
  }
  size_t n = 0;
  for (const cJSON *e = root->child; e; e = e->next) n += strcmp(e->string, "__metadata__") != 0;
  st->tensors = calloc(n ? n : 1, sizeof *st->tensors);
  if (!st->tensors || qq_name_index_init(&st->index, n) != QQ_OK) {
    s = qq_error_set(err, QQ_ERR_NOMEM, "%s: out of memory", st->name);
    goto done;
  }
  bool seen_meta = false;
  for (const cJSON *e = root->child; e; e = e->next) {
    if (!strcmp(e->string, "__metadata__")) {
      if (seen_meta) {
        s = qq_error_set(err, QQ_ERR_FORMAT, "%s: \"__metadata__\" appears twice", st->name);
        goto done;
      }
      seen_meta = true;
      if ((s = parse_metadata(st, e, err)) != QQ_OK) goto done;
      continue;
    }
    qq_tensor_info *t = &st->tensors[st->n];
    uint64_t begin;
    if ((s = parse_tensor(st, e, t, &begin, err)) != QQ_OK) goto done;
    if (!(t->name = strdup(e->string))) {
      s = qq_error_set(err, QQ_ERR_NOMEM, "%s: out of memory", st->name);
      goto done;
    }
    st->n++;
    if (!qq_name_index_put(&st->index, t->name, st->n - 1, NULL)) {
      s = qq_error_set(err, QQ_ERR_FORMAT, "%s: tensor %s appears twice in the header", st->name, t->name);
      goto done;
    }
  }
  s = check_overlaps(st, err);
done:
  cJSON_Delete(root);
  return s;
}

static qq_status new_handle(const char *name, qq_safetensors **out, qq_error *err) {
  *out = calloc(1, sizeof **out);
  if (!*out || !((*out)->name = strdup(name ? name : "<buffer>"))) {
    free(*out);
    *out = NULL;
    return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  }
  return QQ_OK;
}

qq_status qq_safetensors_parse(const void *buf, size_t len, const char *name, qq_safetensors **out,
                               qq_error *err) {
  *out = NULL;
  if (!buf && len) return qq_error_set(err, QQ_ERR_INVALID_ARG, "qq_safetensors_parse: NULL buffer");
  qq_safetensors *st;
  qq_status s = new_handle(name, &st, err);
  if (s != QQ_OK) return s;
  if ((s = parse_header(st, buf, len, err)) != QQ_OK) {
    qq_safetensors_close(st);
    return s;
  }
  *out = st;
  return QQ_OK;
}

qq_status qq_safetensors_open(const char *path, qq_safetensors **out, qq_error *err) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return qq_error_set(err, errno == ENOENT ? QQ_ERR_NOT_FOUND : QQ_ERR_IO, "%s: cannot open: %s", path,
                        strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    int e = errno;
    close(fd);
    return qq_error_set(err, QQ_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
  }
  if (!S_ISREG(sb.st_mode)) {
    close(fd);
    return qq_error_set(err, QQ_ERR_IO, "%s: not a regular file", path);
  }
  qq_safetensors *st;
  qq_status s = new_handle(path, &st, err);
  if (s != QQ_OK) {
    close(fd);
    return s;
  }
  size_t len = (size_t)sb.st_size;
  if (len > 0) {
    /* MAP_PRIVATE + PROT_READ: pages come from the page cache on demand and are shared with every
     * other process that maps the same checkpoint. */
    void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      int e = errno;
      close(fd);
      qq_safetensors_close(st);
      return qq_error_set(err, QQ_ERR_IO, "%s: cannot mmap %zu bytes: %s", path, len, strerror(e));
    }
    st->map = m;
    st->map_len = len;
  }
  close(fd);
  if ((s = parse_header(st, st->map, len, err)) != QQ_OK) {
    qq_safetensors_close(st);
    return s;
  }
  *out = st;
  return QQ_OK;
}

/* ================================ writer ================================ */

/* Chunk size for streamed writes: large enough that write() overhead vanishes, small enough to keep
 * the synth tool's memory flat for a 7B checkpoint. */
#define ST_FILL_CHUNK ((size_t)32 << 20)

static qq_status write_all(int fd, const void *p, size_t n, const char *path, qq_error *err) {
  const uint8_t *b = p;
  while (n > 0) {
    ssize_t w = write(fd, b, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return qq_error_set(err, QQ_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    b += w;
    n -= (size_t)w;
  }
  return QQ_OK;
}

qq_status qq_st_tensor_bytes(const qq_tensor_write *t, size_t *out, qq_error *err) {
  if (!t->name || !*t->name) return qq_error_set(err, QQ_ERR_INVALID_ARG, "tensor with an empty name");
  if ((unsigned)t->dtype >= QQ_DTYPE_COUNT)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "tensor %s: invalid dtype %d", t->name, (int)t->dtype);
  if (t->ndim < 0 || t->ndim > QQ_MAX_DIMS)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "tensor %s: ndim %d outside [0, %d]", t->name, t->ndim,
                        QQ_MAX_DIMS);
  uint64_t numel = 1;
  for (int d = 0; d < t->ndim; d++) {
    if (t->shape[d] < 0)
      return qq_error_set(err, QQ_ERR_INVALID_ARG, "tensor %s: negative dimension %lld", t->name,
                          (long long)t->shape[d]);
    uint64_t dim = (uint64_t)t->shape[d];
    if (dim != 0 && numel > ((uint64_t)1 << 53) / dim)
      return qq_error_set(err, QQ_ERR_RANGE, "tensor %s: shape too large", t->name);
    numel *= dim;
  }
  size_t esz = qq_dtype_size(t->dtype);
  if (numel > SIZE_MAX / esz) return qq_error_set(err, QQ_ERR_RANGE, "tensor %s: shape too large", t->name);
  *out = (size_t)numel * esz;
  return QQ_OK;
}

/* Header JSON for tensors[0..n), offsets contiguous in the given order, padded with spaces to a
 * multiple of 8 bytes as HF's writer does. */
static qq_status build_header(const char *path, const qq_tensor_write *tensors, size_t n,
                              const char *const *meta_keys, const char *const *meta_values, size_t n_meta,
                              char **out, size_t *out_len, qq_error *err) {
  qq_status s = QQ_OK;
  char *txt = NULL;
  cJSON *root = cJSON_CreateObject();
  if (!root) return qq_error_set(err, QQ_ERR_NOMEM, "%s: out of memory", path);
  if (n_meta > 0) {
    cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
    if (!m) goto nomem;
    for (size_t i = 0; i < n_meta; i++) {
      if (!meta_keys || !meta_values || !meta_keys[i] || !meta_values[i]) {
        s = qq_error_set(err, QQ_ERR_INVALID_ARG, "%s: metadata entry %zu is NULL", path, i);
        goto fail;
      }
      if (!cJSON_AddStringToObject(m, meta_keys[i], meta_values[i])) goto nomem;
    }
  }
  uint64_t off = 0;
  for (size_t i = 0; i < n; i++) {
    const qq_tensor_write *t = &tensors[i];
    size_t nb;
    if ((s = qq_st_tensor_bytes(t, &nb, err)) != QQ_OK) {
      qq_error_prefix(err, "%s", path);
      goto fail;
    }
    if (!strcmp(t->name, "__metadata__")) {
      s = qq_error_set(err, QQ_ERR_INVALID_ARG, "%s: \"__metadata__\" is reserved, not a tensor name", path);
      goto fail;
    }
    if (cJSON_GetObjectItemCaseSensitive(root, t->name)) {
      s = qq_error_set(err, QQ_ERR_INVALID_ARG, "%s: tensor %s given twice", path, t->name);
      goto fail;
    }
    cJSON *e = cJSON_AddObjectToObject(root, t->name);
    if (!e || !cJSON_AddStringToObject(e, "dtype", qq_dtype_name(t->dtype))) goto nomem;
    cJSON *sh = cJSON_AddArrayToObject(e, "shape");
    if (!sh) goto nomem;
    for (int d = 0; d < t->ndim; d++) {
      cJSON *v = cJSON_CreateNumber((double)t->shape[d]);
      if (!v || !cJSON_AddItemToArray(sh, v)) goto nomem;
    }
    cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
    if (!o) goto nomem;
    cJSON *b = cJSON_CreateNumber((double)off), *en = cJSON_CreateNumber((double)(off + nb));
    if (!b || !en || !cJSON_AddItemToArray(o, b) || !cJSON_AddItemToArray(o, en)) goto nomem;
    off += nb;
  }
  txt = cJSON_PrintUnformatted(root);
  if (!txt) goto nomem;
  size_t len = strlen(txt), padded = (len + 7) & ~(size_t)7;
  char *p = realloc(txt, padded + 1);
  if (!p) goto nomem;
  memset(p + len, ' ', padded - len);
  p[padded] = '\0';
  *out = p;
  *out_len = padded;
  cJSON_Delete(root);
  return QQ_OK;
nomem:
  s = qq_error_set(err, QQ_ERR_NOMEM, "%s: out of memory building the header", path);
fail:
  free(txt);
  cJSON_Delete(root);
  return s;
}

qq_status qq_st_write_file(const char *path, const qq_tensor_write *tensors, size_t n, size_t index_base,
                           const char *const *meta_keys, const char *const *meta_values, size_t n_meta,
                           qq_tensor_fill_fn fill, void *user, qq_error *err) {
  char *header = NULL, *tmp = NULL;
  uint8_t *chunk = NULL;
  size_t hlen = 0;
  int fd = -1;
  bool created = false;
  qq_status s = build_header(path, tensors, n, meta_keys, meta_values, n_meta, &header, &hlen, err);
  if (s != QQ_OK) return s;
  size_t plen = strlen(path);
  if (!(tmp = malloc(plen + 16))) {
    s = qq_error_set(err, QQ_ERR_NOMEM, "%s: out of memory", path);
    goto done;
  }
  snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
  fd = mkstemp(tmp);
  if (fd < 0) {
    s = qq_error_set(err, QQ_ERR_IO, "%s: cannot create a temporary file beside it: %s", path, strerror(errno));
    goto done;
  }
  created = true;
  if (fchmod(fd, 0644) != 0) {
    s = qq_error_set(err, QQ_ERR_IO, "%s: chmod failed: %s", tmp, strerror(errno));
    goto done;
  }
  uint8_t lenbuf[8];
  for (int i = 0; i < 8; i++) lenbuf[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
  if ((s = write_all(fd, lenbuf, 8, tmp, err)) != QQ_OK) goto done;
  if ((s = write_all(fd, header, hlen, tmp, err)) != QQ_OK) goto done;
  for (size_t i = 0; i < n; i++) {
    size_t nb = 0;
    qq_st_tensor_bytes(&tensors[i], &nb, NULL); /* validated by build_header */
    if (nb == 0) continue;
    if (!fill) {
      if (!tensors[i].data) {
        s = qq_error_set(err, QQ_ERR_INVALID_ARG, "%s: tensor %s has no data", path, tensors[i].name);
        goto done;
      }
      if ((s = write_all(fd, tensors[i].data, nb, tmp, err)) != QQ_OK) goto done;
      continue;
    }
    if (!chunk && !(chunk = malloc(ST_FILL_CHUNK))) {
      s = qq_error_set(err, QQ_ERR_NOMEM, "%s: out of memory", path);
      goto done;
    }
    for (size_t o = 0; o < nb; o += ST_FILL_CHUNK) {
      size_t c = QQ_MIN(ST_FILL_CHUNK, nb - o);
      if ((s = fill(user, index_base + i, o, chunk, c, err)) != QQ_OK) goto done;
      if ((s = write_all(fd, chunk, c, tmp, err)) != QQ_OK) goto done;
    }
  }
  if (fsync(fd) != 0) {
    s = qq_error_set(err, QQ_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
    goto done;
  }
  if (close(fd) != 0) {
    fd = -1;
    s = qq_error_set(err, QQ_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    goto done;
  }
  fd = -1;
  if (rename(tmp, path) != 0) {
    s = qq_error_set(err, QQ_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
    goto done;
  }
done:
  if (fd >= 0) close(fd);
  if (s != QQ_OK && created) unlink(tmp);
  free(tmp);
  free(header);
  free(chunk);
  return s;
}

qq_status qq_safetensors_write(const char *path, const qq_tensor_write *tensors, size_t n,
                               const char *const *meta_keys, const char *const *meta_values, size_t n_meta,
                               qq_error *err) {
  if (!path || (n && !tensors)) return qq_error_set(err, QQ_ERR_INVALID_ARG, "qq_safetensors_write: NULL argument");
  return qq_st_write_file(path, tensors, n, 0, meta_keys, meta_values, n_meta, NULL, NULL, err);
}
