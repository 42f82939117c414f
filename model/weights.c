/* weights.c — Hugging Face checkpoint directories: model.safetensors, or
 * model.safetensors.index.json plus the shards it names; a name -> tensor hash table over all of them;
 * and the writer that shards a tensor list and writes the index.
 *
 * Precedence follows transformers: model.safetensors is used when present, the index otherwise.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"
#include "loader_internal.h"
#include "name_index.h"

#define WEIGHTS_SINGLE "model.safetensors"
#define WEIGHTS_INDEX "model.safetensors.index.json"

struct qq_weights {
  char *dir;
  qq_safetensors **files;
  size_t n_files;
  const qq_tensor_info **tensors; /* [n], borrowed from files */
  size_t n;
  qq_name_index index;
};

void qq_weights_close(qq_weights *w) {
  if (!w) return;
  for (size_t i = 0; i < w->n_files; i++) qq_safetensors_close(w->files[i]);
  free(w->files);
  free(w->tensors);
  qq_name_index_free(&w->index);
  free(w->dir);
  free(w);
}

size_t qq_weights_count(const qq_weights *w) { return w ? w->n : 0; }
const char *qq_weights_dir(const qq_weights *w) { return w ? w->dir : NULL; }

const qq_tensor_info *qq_weights_at(const qq_weights *w, size_t i) {
  return w && i < w->n ? w->tensors[i] : NULL;
}

const qq_tensor_info *qq_weights_find(const qq_weights *w, const char *name) {
  if (!w || !name) return NULL;
  size_t i = qq_name_index_get(&w->index, name);
  return i == SIZE_MAX ? NULL : w->tensors[i];
}

qq_status qq_weights_get(const qq_weights *w, const char *name, const qq_tensor_info **out, qq_error *err) {
  const qq_tensor_info *t = qq_weights_find(w, name);
  if (out) *out = t;
  if (!t)
    return qq_error_set(err, QQ_ERR_NOT_FOUND, "%s: checkpoint has no tensor %s", w ? w->dir : "?",
                        name ? name : "(null)");
  return QQ_OK;
}

static char *path_join(const char *dir, const char *file) {
  size_t n = strlen(dir) + strlen(file) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", dir, file);
  return p;
}

static bool file_exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

static qq_status add_file(qq_weights *w, qq_safetensors *st, qq_error *err) {
  qq_safetensors **f = realloc(w->files, (w->n_files + 1) * sizeof *f);
  if (!f) {
    qq_safetensors_close(st);
    return qq_error_set(err, QQ_ERR_NOMEM, "%s: out of memory", w->dir);
  }
  w->files = f;
  w->files[w->n_files++] = st;
  return QQ_OK;
}

static qq_status open_single(qq_weights *w, const char *path, qq_error *err) {
  qq_safetensors *st;
  qq_status s = qq_safetensors_open(path, &st, err);
  if (s != QQ_OK) return s;
  if ((s = add_file(w, st, err)) != QQ_OK) return s;
  w->n = qq_safetensors_count(st);
  w->tensors = calloc(w->n ? w->n : 1, sizeof *w->tensors);
  if (!w->tensors || qq_name_index_init(&w->index, w->n) != QQ_OK)
    return qq_error_set(err, QQ_ERR_NOMEM, "%s: out of memory", path);
  for (size_t i = 0; i < w->n; i++) {
    w->tensors[i] = qq_safetensors_at(st, i);
    qq_name_index_put(&w->index, w->tensors[i]->name, i, NULL); /* names unique: checked by the reader */
  }
  return QQ_OK;
}

/* A shard name from the index must be a plain file name inside the checkpoint folder. */
static bool plain_file_name(const char *s) {
  return *s && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

static qq_status open_index(qq_weights *w, const char *ipath, qq_error *err) {
  char *text = NULL, *spath = NULL;
  size_t len = 0;
  cJSON *root = NULL;
  qq_name_index shards = {0};
  qq_status s = qq_read_file(ipath, &text, &len, err);
  if (s != QQ_OK) return s;
  root = cJSON_ParseWithLength(text, len);
  if (!root || !cJSON_IsObject(root)) {
    s = qq_error_set(err, QQ_ERR_FORMAT, "%s: not a JSON object", ipath);
    goto done;
  }
  const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
  if (!cJSON_IsObject(map)) {
    s = qq_error_set(err, QQ_ERR_FORMAT, "%s: \"weight_map\" is missing or not an object", ipath);
    goto done;
  }
  size_t n = (size_t)cJSON_GetArraySize(map);
  w->tensors = calloc(n ? n : 1, sizeof *w->tensors);
  if (!w->tensors || qq_name_index_init(&w->index, n) != QQ_OK || qq_name_index_init(&shards, n) != QQ_OK) {
    s = qq_error_set(err, QQ_ERR_NOMEM, "%s: out of memory", ipath);
    goto done;
  }
  for (const cJSON *e = map->child; e; e = e->next) {
    if (!cJSON_IsString(e) || !plain_file_name(e->valuestring)) {
      s = qq_error_set(err, QQ_ERR_FORMAT, "%s: weight_map entry for tensor %s is not a file name in the folder",
                       ipath, e->string);
      goto done;
    }
    size_t fi = qq_name_index_get(&shards, e->valuestring);
    if (fi == SIZE_MAX) {
      free(spath);
      if (!(spath = path_join(w->dir, e->valuestring))) {
        s = qq_error_set(err, QQ_ERR_NOMEM, "%s: out of memory", ipath);
        goto done;
      }
      if (!file_exists(spath)) {
        s = qq_error_set(err, QQ_ERR_NOT_FOUND, "%s: tensor %s points to shard %s, which does not exist", ipath,
                         e->string, e->valuestring);
        goto done;
      }
      qq_safetensors *st;
      if ((s = qq_safetensors_open(spath, &st, err)) != QQ_OK) goto done;
      if ((s = add_file(w, st, err)) != QQ_OK) goto done;
      fi = w->n_files - 1;
      /* The key must outlive the table: use the shard's own copy of its path's last component. */
      const char *base = strrchr(qq_safetensors_name(st), '/');
      qq_name_index_put(&shards, base ? base + 1 : qq_safetensors_name(st), fi, NULL);
    }
    const qq_tensor_info *t = qq_safetensors_find(w->files[fi], e->string);
    if (!t) {
      s = qq_error_set(err, QQ_ERR_NOT_FOUND, "%s: tensor %s is listed in shard %s, which does not hold it",
                       ipath, e->string, e->valuestring);
      goto done;
    }
    size_t prev;
    if (!qq_name_index_put(&w->index, t->name, w->n, &prev)) {
      s = qq_error_set(err, QQ_ERR_FORMAT, "%s: tensor %s appears twice in weight_map", ipath, e->string);
      goto done;
    }
    w->tensors[w->n++] = t;
  }
done:
  qq_name_index_free(&shards);
  free(spath);
  cJSON_Delete(root);
  free(text);
  return s;
}

qq_status qq_weights_open(const char *dir, qq_weights **out, qq_error *err) {
  *out = NULL;
  if (!dir) return qq_error_set(err, QQ_ERR_INVALID_ARG, "qq_weights_open: NULL directory");
  qq_weights *w = calloc(1, sizeof *w);
  if (!w || !(w->dir = strdup(dir))) {
    free(w);
    return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  }
  qq_status s;
  char *single = path_join(dir, WEIGHTS_SINGLE), *index = path_join(dir, WEIGHTS_INDEX);
  if (!single || !index) {
    s = qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  } else if (file_exists(single)) {
    s = open_single(w, single, err);
  } else if (file_exists(index)) {
    s = open_index(w, index, err);
  } else {
    struct stat sb;
    if (stat(dir, &sb) != 0)
      s = qq_error_set(err, QQ_ERR_NOT_FOUND, "%s: checkpoint folder does not exist", dir);
    else
      s = qq_error_set(err, QQ_ERR_NOT_FOUND, "%s: no %s or %s in the checkpoint folder", dir, WEIGHTS_SINGLE,
                       WEIGHTS_INDEX);
  }
  free(single);
  free(index);
  if (s != QQ_OK) {
    qq_weights_close(w);
    return s;
  }
  *out = w;
  return QQ_OK;
}

/* ================================ writer ================================ */

static int cmp_names(const void *a, const void *b) {
  const qq_tensor_write *const *x = a, *const *y = b;
  return strcmp((*x)->name, (*y)->name);
}

static qq_status write_index(const char *dir, const qq_tensor_write *tensors, size_t n, const size_t *shard_of,
                             size_t n_shards, uint64_t total, qq_error *err) {
  qq_status s = QQ_OK;
  char *path = path_join(dir, WEIGHTS_INDEX), *tmp = NULL, *txt = NULL;
  const qq_tensor_write **sorted = malloc((n ? n : 1) * sizeof *sorted);
  cJSON *root = cJSON_CreateObject();
  FILE *f = NULL;
  if (!path || !sorted || !root) goto nomem;
  cJSON *meta = cJSON_AddObjectToObject(root, "metadata");
  if (!meta || !cJSON_AddNumberToObject(meta, "total_size", (double)total)) goto nomem;
  cJSON *map = cJSON_AddObjectToObject(root, "weight_map");
  if (!map) goto nomem;
  for (size_t i = 0; i < n; i++) sorted[i] = &tensors[i];
  qsort(sorted, n, sizeof *sorted, cmp_names); /* HF writes the weight_map sorted by name */
  for (size_t i = 0; i < n; i++) {
    char shard[64];
    snprintf(shard, sizeof shard, "model-%05zu-of-%05zu.safetensors", shard_of[sorted[i] - tensors] + 1,
             n_shards);
    if (!cJSON_AddStringToObject(map, sorted[i]->name, shard)) goto nomem;
  }
  if (!(txt = cJSON_Print(root))) goto nomem;
  size_t plen = strlen(path);
  if (!(tmp = malloc(plen + 16))) goto nomem;
  snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    s = qq_error_set(err, QQ_ERR_IO, "%s: cannot create a temporary file: %s", path, strerror(errno));
    goto done;
  }
  if (fchmod(fd, 0644) != 0 || !(f = fdopen(fd, "w"))) {
    s = qq_error_set(err, QQ_ERR_IO, "%s: %s", tmp, strerror(errno));
    close(fd);
    unlink(tmp);
    goto done;
  }
  size_t tl = strlen(txt);
  bool ok = fwrite(txt, 1, tl, f) == tl && fputc('\n', f) != EOF && fflush(f) == 0 && fsync(fileno(f)) == 0;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    s = qq_error_set(err, QQ_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    unlink(tmp);
  }
  goto done;
nomem:
  s = qq_error_set(err, QQ_ERR_NOMEM, "%s: out of memory writing the index", dir);
done:
  cJSON_Delete(root);
  free(txt);
  free(tmp);
  free(sorted);
  free(path);
  return s;
}

/* Removes files of an earlier layout so that the folder holds exactly one checkpoint: the single
 * file when shards were written, the index and every model-XXXXX-of-YYYYY.safetensors shard not of
 * this write (n_shards = 0 when a single file was written). */
static void remove_stale(const char *dir, size_t n_shards) {
  char *p;
  if (n_shards > 0) {
    if ((p = path_join(dir, WEIGHTS_SINGLE))) unlink(p);
  } else {
    if ((p = path_join(dir, WEIGHTS_INDEX))) unlink(p);
  }
  free(p);
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *de;
  while ((de = readdir(d))) {
    unsigned a, b;
    char tail[32];
    if (strlen(de->d_name) != strlen("model-00001-of-00001.safetensors")) continue;
    if (sscanf(de->d_name, "model-%5u-of-%5u%31s", &a, &b, tail) != 3 || strcmp(tail, ".safetensors")) continue;
    if (b == n_shards && a >= 1 && a <= b) continue;
    if ((p = path_join(dir, de->d_name))) unlink(p);
    free(p);
  }
  closedir(d);
}

static qq_status write_dir(const char *dir, const qq_tensor_write *tensors, size_t n, size_t max_shard_bytes,
                           const char *const *meta_keys, const char *const *meta_values, size_t n_meta,
                           qq_tensor_fill_fn fill, void *user, qq_error *err) {
  if (!dir || (n && !tensors)) return qq_error_set(err, QQ_ERR_INVALID_ARG, "qq_weights_write_dir: NULL argument");
  if (mkdir(dir, 0755) != 0 && errno != EEXIST)
    return qq_error_set(err, QQ_ERR_IO, "%s: cannot create folder: %s", dir, strerror(errno));
  size_t *shard_of = malloc((n ? n : 1) * sizeof *shard_of);
  if (!shard_of) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  qq_status s = QQ_OK;
  /* Greedy in the given order, as transformers' shard_checkpoint: a tensor starts a new shard when it
   * would push a non-empty shard past the limit; a tensor larger than the limit gets a shard alone. */
  size_t n_shards = n ? 1 : 0, cur = 0;
  uint64_t total = 0;
  for (size_t i = 0; i < n; i++) {
    size_t nb;
    if ((s = qq_st_tensor_bytes(&tensors[i], &nb, err)) != QQ_OK) goto done;
    if (max_shard_bytes && cur > 0 && nb > max_shard_bytes - QQ_MIN(cur, max_shard_bytes)) {
      n_shards++;
      cur = 0;
    }
    cur += nb;
    total += nb;
    shard_of[i] = n_shards - 1;
  }
  if (n_shards <= 1) {
    char *path = path_join(dir, WEIGHTS_SINGLE);
    if (!path) {
      s = qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
      goto done;
    }
    s = qq_st_write_file(path, tensors, n, 0, meta_keys, meta_values, n_meta, fill, user, err);
    free(path);
    if (s == QQ_OK) remove_stale(dir, 0);
    goto done;
  }
  for (size_t b = 0, k = 0; k < n_shards; k++) {
    size_t e = b;
    while (e < n && shard_of[e] == k) e++;
    char name[64];
    snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k + 1, n_shards);
    char *path = path_join(dir, name);
    if (!path) {
      s = qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
      goto done;
    }
    s = qq_st_write_file(path, tensors + b, e - b, b, meta_keys, meta_values, n_meta, fill, user, err);
    free(path);
    if (s != QQ_OK) goto done;
    b = e;
  }
  if ((s = write_index(dir, tensors, n, shard_of, n_shards, total, err)) != QQ_OK) goto done;
  remove_stale(dir, n_shards);
done:
  free(shard_of);
  return s;
}

qq_status qq_weights_write_dir(const char *dir, const qq_tensor_write *tensors, size_t n, size_t max_shard_bytes,
                               const char *const *meta_keys, const char *const *meta_values, size_t n_meta,
                               qq_error *err) {
  return write_dir(dir, tensors, n, max_shard_bytes, meta_keys, meta_values, n_meta, NULL, NULL, err);
}

qq_status qq_weights_write_dir_fill(const char *dir, const qq_tensor_write *tensors, size_t n,
                                    size_t max_shard_bytes, const char *const *meta_keys,
                                    const char *const *meta_values, size_t n_meta, qq_tensor_fill_fn fill,
                                    void *user, qq_error *err) {
  if (!fill) return qq_error_set(err, QQ_ERR_INVALID_ARG, "qq_weights_write_dir_fill: NULL fill function");
  return write_dir(dir, tensors, n, max_shard_bytes, meta_keys, meta_values, n_meta, fill, user, err);
}
