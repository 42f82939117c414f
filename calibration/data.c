/* data.c — calibration text: jsonl / plain text reading, tokenization, seeded window sampling. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "calibration.h"

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static bool ends_with(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcmp(s + a - b, suf);
}

static qq_status append_doc(const qq_tokenizer *tok, const char *text, size_t len, int32_t sep, qq_token_ids *ids,
                            qq_error *err) {
  qq_encode_options eo = qq_encode_options_default();
  eo.parse_special = false;
  eo.add_special = false;
  qq_status st = qq_tokenizer_encode(tok, text, len, &eo, ids, err);
  if (st) return st;
  if (sep >= 0) {
    if (ids->n == ids->cap) {
      size_t cap = ids->cap ? ids->cap * 2 : 1024;
      int32_t *p = realloc(ids->ids, cap * sizeof(int32_t));
      if (!p) return qq_error_set(err, QQ_ERR_NOMEM, "calibration: out of memory");
      ids->ids = p;
      ids->cap = cap;
    }
    ids->ids[ids->n++] = sep;
  }
  return QQ_OK;
}

qq_status qq_calib_load(const char *path, const qq_tokenizer *tok, int32_t separator, int32_t n_samples,
                        int32_t seqlen, uint64_t seed, qq_calib_data **out, qq_error *err) {
  *out = NULL;
  if (n_samples <= 0 || seqlen <= 1)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "calibration: %d samples of %d tokens (need ≥ 1 and ≥ 2)", n_samples,
                        seqlen);
  char *buf = NULL;
  size_t len = 0;
  qq_status st = qq_read_file(path, &buf, &len, err);
  if (st) return st;
  qq_calib_data *d = calloc(1, sizeof *d);
  qq_token_ids ids = {0};
  if (!d) {
    free(buf);
    return qq_error_set(err, QQ_ERR_NOMEM, "calibration: out of memory");
  }
  qq_sha256_hex(buf, len, d->sha256);
  if (ends_with(path, ".jsonl")) {
    char *line = buf;
    int32_t lineno = 0;
    while (line && *line) {
      char *nl = strchr(line, '\n');
      if (nl) *nl = '\0';
      lineno++;
      const char *p = line;
      while (*p == ' ' || *p == '\t' || *p == '\r') p++;
      if (*p) {
        cJSON *j = cJSON_Parse(p);
        const cJSON *t = j ? cJSON_GetObjectItemCaseSensitive(j, "text") : NULL;
        if (!cJSON_IsString(t)) {
          cJSON_Delete(j);
          st = qq_error_set(err, QQ_ERR_FORMAT, "%s:%d: expected a JSON object with a string \"text\" field", path,
                            lineno);
          goto fail;
        }
        if (t->valuestring[0]) {
          st = append_doc(tok, t->valuestring, strlen(t->valuestring), separator, &ids, err);
          if (st) {
            cJSON_Delete(j);
            qq_error_prefix(err, "%s:%d", path, lineno);
            goto fail;
          }
          d->n_documents++;
        }
        cJSON_Delete(j);
      }
      line = nl ? nl + 1 : NULL;
    }
  } else if (len > 0) {
    st = append_doc(tok, buf, len, separator, &ids, err);
    if (st) {
      qq_error_prefix(err, "%s", path);
      goto fail;
    }
    d->n_documents = 1;
  }
  if (ids.n == 0) {
    st = qq_error_set(err, QQ_ERR_INVALID_ARG, "%s: no calibration text (empty file or empty \"text\" fields)", path);
    goto fail;
  }
  if ((int64_t)ids.n < seqlen) {
    st = qq_error_set(err, QQ_ERR_INVALID_ARG,
                      "%s: only %zu tokens of calibration text, fewer than one window of %d (--calib-seqlen)", path,
                      ids.n, seqlen);
    goto fail;
  }
  if ((int64_t)ids.n < (int64_t)n_samples * seqlen)
    QQ_LOGW("calib", "%s: %zu tokens < %d samples x %d: windows overlap", path, ids.n, n_samples, seqlen);
  d->n_samples = n_samples;
  d->seqlen = seqlen;
  d->total_tokens = (int64_t)ids.n;
  d->tokens = malloc(sizeof(int32_t) * (size_t)n_samples * (size_t)seqlen);
  if (!d->tokens) {
    st = qq_error_set(err, QQ_ERR_NOMEM, "calibration: out of memory");
    goto fail;
  }
  uint64_t s = seed;
  const uint64_t span = (uint64_t)(ids.n - (size_t)seqlen) + 1;
  for (int32_t i = 0; i < n_samples; i++) {
    uint64_t off = splitmix64(&s) % span;
    memcpy(d->tokens + (size_t)i * seqlen, ids.ids + off, sizeof(int32_t) * (size_t)seqlen);
  }
  qq_token_ids_free(&ids);
  free(buf);
  *out = d;
  return QQ_OK;
fail:
  qq_token_ids_free(&ids);
  free(buf);
  qq_calib_free(d);
  return st;
}

void qq_calib_free(qq_calib_data *d) {
  if (!d) return;
  free(d->tokens);
  free(d);
}
