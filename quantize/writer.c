/* writer.c — writes a quantized checkpoint: the source checkpoint's tensors with the quantized linears
 * packed in the chosen layout (AutoAWQ gemm, GPTQ v1, compressed-tensors int-quantized), config.json
 * with quantization_config and qquant's metadata, and the source folder's other files copied. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "quantize_internal.h"

/* Everything the tensor list points to, freed after the write. */
typedef struct pool {
  void **p;
  size_t n, cap;
} pool;
static void *pool_add(pool *pl, void *p) {
  if (!p) return NULL;
  if (pl->n == pl->cap) {
    size_t cap = pl->cap ? pl->cap * 2 : 64;
    void **np = realloc(pl->p, cap * sizeof(void *));
    if (!np) {
      free(p);
      return NULL;
    }
    pl->p = np;
    pl->cap = cap;
  }
  pl->p[pl->n++] = p;
  return p;
}
static void pool_free(pool *pl) {
  for (size_t i = 0; i < pl->n; i++) free(pl->p[i]);
  free(pl->p);
}

typedef struct tlist {
  qq_tensor_write *t;
  size_t n, cap;
} tlist;
static qq_status tl_add(tlist *tl, pool *pl, const char *name, qq_dtype dt, int32_t ndim, int64_t d0, int64_t d1,
                        const void *data, qq_error *err) {
  if (tl->n == tl->cap) {
    size_t cap = tl->cap ? tl->cap * 2 : 256;
    qq_tensor_write *nt = realloc(tl->t, cap * sizeof *nt);
    if (!nt) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    tl->t = nt;
    tl->cap = cap;
  }
  char *nm = pool_add(pl, strdup(name));
  if (!nm || !data) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory for tensor %s", name);
  qq_tensor_write *w = &tl->t[tl->n++];
  memset(w, 0, sizeof *w);
  w->name = nm;
  w->dtype = dt;
  w->ndim = ndim;
  w->shape[0] = d0;
  w->shape[1] = d1;
  w->data = data;
  return QQ_OK;
}

/* floats → dt (F32 / F16 / BF16) in a pooled buffer. */
static void *convert(pool *pl, const float *x, size_t n, qq_dtype dt) {
  if (dt == QQ_DTYPE_F32) {
    float *o = pool_add(pl, malloc(n * sizeof(float)));
    if (o) memcpy(o, x, n * sizeof(float));
    return o;
  }
  uint16_t *o = pool_add(pl, malloc(n * sizeof(uint16_t)));
  if (!o) return NULL;
  for (size_t i = 0; i < n; i++) o[i] = dt == QQ_DTYPE_F16 ? qq_f32_to_f16(x[i]) : qq_f32_to_bf16(x[i]);
  return o;
}

static const char *const LIN_MODULE[QQ_LIN_COUNT] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                     "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                                     "mlp.down_proj"};

static qq_status emit_linear(const qq_quantized *q, const qq_qlinear *ql, const char *prefix, qq_dtype model_dt,
                             tlist *tl, pool *pl, qq_error *err) {
  char name[320];
  qq_status st;
  const int32_t n = ql->n, k = ql->k;
  if (q->format == QQ_OUT_CT) {
    int8_t *w = pool_add(pl, malloc((size_t)n * k));
    float *s = pool_add(pl, malloc(sizeof(float) * (size_t)n));
    if (!w || !s) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    if (ql->w8a8) {
      memcpy(w, ql->codes8, (size_t)n * k);
      memcpy(s, ql->scales8, sizeof(float) * (size_t)n);
    } else {
      /* 8-bit symmetric QINT (zero 128) → signed int8 */
      for (size_t i = 0; i < (size_t)n * k; i++) w[i] = (int8_t)((int32_t)ql->q.codes[i] - 128);
      for (int32_t r = 0; r < n; r++) s[r] = ql->q.scales[r];
    }
    snprintf(name, sizeof name, "%s.weight", prefix);
    if ((st = tl_add(tl, pl, name, QQ_DTYPE_I8, 2, n, k, w, err))) return st;
    snprintf(name, sizeof name, "%s.weight_scale", prefix);
    if ((st = tl_add(tl, pl, name, model_dt, 2, n, 1, convert(pl, s, (size_t)n, model_dt), err))) return st;
    if (ql->w8a8 && ql->act_scale > 0.0f) {
      snprintf(name, sizeof name, "%s.input_scale", prefix);
      if ((st = tl_add(tl, pl, name, model_dt, 1, 1, 0, convert(pl, &ql->act_scale, 1, model_dt), err))) return st;
    }
    return QQ_OK;
  }
  const qq_qweight *qw = &ql->q;
  const int32_t G = qw->n_groups;
  if (q->format == QQ_OUT_AWQ) {
    int32_t *pw = pool_add(pl, malloc(sizeof(int32_t) * (size_t)k * (n / 8)));
    int32_t *pz = pool_add(pl, malloc(sizeof(int32_t) * (size_t)G * (n / 8)));
    uint16_t *ps = pool_add(pl, malloc(sizeof(uint16_t) * (size_t)G * n));
    if (!pw || !pz || !ps) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    if ((st = qq_awq_pack(qw, pw, pz, ps, err))) return qq_error_prefix(err, "%s", prefix);
    snprintf(name, sizeof name, "%s.qweight", prefix);
    if ((st = tl_add(tl, pl, name, QQ_DTYPE_I32, 2, k, n / 8, pw, err))) return st;
    snprintf(name, sizeof name, "%s.qzeros", prefix);
    if ((st = tl_add(tl, pl, name, QQ_DTYPE_I32, 2, G, n / 8, pz, err))) return st;
    snprintf(name, sizeof name, "%s.scales", prefix);
    return tl_add(tl, pl, name, QQ_DTYPE_F16, 2, G, n, ps, err);
  }
  const int32_t b = qw->bits, kw = k * b / 32, nw = n * b / 32;
  int32_t *pw = pool_add(pl, malloc(sizeof(int32_t) * (size_t)kw * n));
  int32_t *pz = pool_add(pl, malloc(sizeof(int32_t) * (size_t)G * nw));
  uint16_t *ps = pool_add(pl, malloc(sizeof(uint16_t) * (size_t)G * n));
  int32_t *pg = pool_add(pl, malloc(sizeof(int32_t) * (size_t)k));
  if (!pw || !pz || !ps || !pg) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  if ((st = qq_gptq_pack(qw, pw, pz, ps, pg, err))) return qq_error_prefix(err, "%s", prefix);
  snprintf(name, sizeof name, "%s.qweight", prefix);
  if ((st = tl_add(tl, pl, name, QQ_DTYPE_I32, 2, kw, n, pw, err))) return st;
  snprintf(name, sizeof name, "%s.qzeros", prefix);
  if ((st = tl_add(tl, pl, name, QQ_DTYPE_I32, 2, G, nw, pz, err))) return st;
  snprintf(name, sizeof name, "%s.scales", prefix);
  if ((st = tl_add(tl, pl, name, QQ_DTYPE_F16, 2, G, n, ps, err))) return st;
  snprintf(name, sizeof name, "%s.g_idx", prefix);
  return tl_add(tl, pl, name, QQ_DTYPE_I32, 1, k, 0, pg, err);
}

cJSON *qq_quant_config_json(const qq_quantize_options *o, qq_out_format format, qq_task task) {
  cJSON *j = cJSON_CreateObject();
  if (!j) return NULL;
  const char *head = task == QQ_TASK_SEQ_CLS ? "score" : "lm_head";
  if (format == QQ_OUT_AWQ) {
    cJSON_AddStringToObject(j, "quant_method", "awq");
    cJSON_AddNumberToObject(j, "bits", o->bits);
    cJSON_AddNumberToObject(j, "group_size", o->group_size);
    cJSON_AddBoolToObject(j, "zero_point", !o->sym);
    cJSON_AddStringToObject(j, "version", "gemm");
    cJSON_AddNullToObject(j, "modules_to_not_convert");
  } else if (format == QQ_OUT_GPTQ) {
    cJSON_AddStringToObject(j, "quant_method", "gptq");
    cJSON_AddNumberToObject(j, "bits", o->bits);
    cJSON_AddNumberToObject(j, "group_size", o->group_size);
    const bool act = o->method == QQ_METHOD_GPTQ && o->gptq.act_order;
    cJSON_AddBoolToObject(j, "desc_act", act);
    cJSON_AddBoolToObject(j, "sym", o->sym);
    cJSON_AddBoolToObject(j, "static_groups", o->method == QQ_METHOD_GPTQ && o->gptq.static_groups);
    cJSON_AddBoolToObject(j, "true_sequential", o->method == QQ_METHOD_GPTQ && o->true_sequential);
    cJSON_AddNumberToObject(j, "damp_percent", o->gptq.damp_percent);
    cJSON_AddStringToObject(j, "checkpoint_format", "gptq");
    cJSON_AddBoolToObject(j, "lm_head", false);
  } else {
    cJSON_AddStringToObject(j, "quant_method", "compressed-tensors");
    cJSON_AddStringToObject(j, "format", "int-quantized");
    cJSON_AddStringToObject(j, "quantization_status", "compressed");
    cJSON *ign = cJSON_AddArrayToObject(j, "ignore");
    cJSON_AddItemToArray(ign, cJSON_CreateString(head));
    cJSON_AddNullToObject(j, "kv_cache_scheme");
    cJSON *groups = cJSON_AddObjectToObject(j, "config_groups");
    cJSON *g = cJSON_AddObjectToObject(groups, "group_0");
    cJSON *tg = cJSON_AddArrayToObject(g, "targets");
    cJSON_AddItemToArray(tg, cJSON_CreateString("Linear"));
    cJSON *w = cJSON_AddObjectToObject(g, "weights");
    cJSON_AddNumberToObject(w, "num_bits", 8);
    cJSON_AddStringToObject(w, "type", "int");
    cJSON_AddBoolToObject(w, "symmetric", true);
    cJSON_AddStringToObject(w, "strategy", "channel");
    cJSON_AddBoolToObject(w, "dynamic", false);
    cJSON_AddNullToObject(w, "group_size");
    cJSON_AddNullToObject(w, "actorder");
    cJSON_AddStringToObject(w, "observer", "minmax");
    if (o->method == QQ_METHOD_SMOOTHQUANT) {
      cJSON *a = cJSON_AddObjectToObject(g, "input_activations");
      cJSON_AddNumberToObject(a, "num_bits", 8);
      cJSON_AddStringToObject(a, "type", "int");
      cJSON_AddBoolToObject(a, "symmetric", true);
      cJSON_AddStringToObject(a, "strategy", o->sq_static_act ? "tensor" : "token");
      cJSON_AddBoolToObject(a, "dynamic", !o->sq_static_act);
      if (o->sq_static_act) cJSON_AddStringToObject(a, "observer", "minmax");
      else cJSON_AddNullToObject(a, "observer");
    } else {
      cJSON_AddNullToObject(g, "input_activations");
    }
    cJSON_AddNullToObject(g, "output_activations");
  }
  return j;
}

static cJSON *num_or_null(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

static cJSON *qquant_meta_json(const qq_quantized *q) {
  const qq_quantize_options *o = &q->opt;
  cJSON *j = cJSON_CreateObject();
  if (!j) return NULL;
  cJSON_AddStringToObject(j, "version", QQ_VERSION);
  cJSON_AddStringToObject(j, "method", qq_method_name(o->method));
  cJSON_AddStringToObject(j, "format", qq_out_format_name(q->format));
  cJSON_AddNumberToObject(j, "bits", o->bits);
  cJSON_AddNumberToObject(j, "group_size", o->group_size);
  cJSON_AddBoolToObject(j, "sym", o->sym);
  if (o->method == QQ_METHOD_GPTQ) {
    cJSON_AddBoolToObject(j, "act_order", o->gptq.act_order);
    cJSON_AddBoolToObject(j, "static_groups", o->gptq.static_groups);
    cJSON_AddBoolToObject(j, "true_sequential", o->true_sequential);
    cJSON_AddNumberToObject(j, "damp_percent", o->gptq.damp_percent);
    cJSON_AddNumberToObject(j, "block_size", o->gptq.block_size);
    cJSON_AddBoolToObject(j, "mse", o->gptq.mse);
    if (o->gptq.mse) {
      cJSON_AddNumberToObject(j, "mse_grid", o->gptq.range.grid);
      cJSON_AddNumberToObject(j, "mse_max_shrink", o->gptq.range.max_shrink);
      cJSON_AddNumberToObject(j, "mse_norm", o->gptq.range.norm);
    }
    cJSON_AddNumberToObject(j, "refine_sweeps", o->gptq.refine_sweeps);
  } else if (o->method == QQ_METHOD_AWQ) {
    cJSON_AddNumberToObject(j, "awq_grid", o->awq.n_grid);
    cJSON_AddBoolToObject(j, "awq_clip", o->awq.clip);
    cJSON_AddNumberToObject(j, "awq_refine_sweeps", o->awq.refine_sweeps);
    cJSON_AddNumberToObject(j, "awq_max_shrink", o->awq.max_shrink);
  } else if (o->method == QQ_METHOD_SMOOTHQUANT) {
    cJSON_AddNumberToObject(j, "alpha", o->sq_alpha);
    cJSON_AddStringToObject(j, "activations", o->sq_static_act ? "static-per-tensor" : "dynamic-per-token");
  }
  if (q->calib_samples) {
    cJSON *c = cJSON_AddObjectToObject(j, "calibration");
    cJSON_AddStringToObject(c, "sha256", q->calib_sha256);
    cJSON_AddNumberToObject(c, "samples", q->calib_samples);
    cJSON_AddNumberToObject(c, "seqlen", q->calib_seqlen);
  }
  cJSON *le = cJSON_AddArrayToObject(j, "layer_rel_err");
  for (int32_t l = 0; l < q->cfg.n_layers; l++) {
    cJSON *row = cJSON_CreateObject();
    for (int id = 0; id < QQ_LIN_COUNT; id++)
      cJSON_AddItemToObject(row, qq_linear_id_name((qq_linear_id)id), num_or_null(q->rep[l].rel_err[id]));
    cJSON_AddItemToArray(le, row);
  }
  cJSON_AddStringToObject(j, "report", "qquant_report.json");
  return j;
}

static qq_status write_text(const char *path, const char *text, qq_error *err) {
  FILE *f = fopen(path, "wb");
  if (!f) return qq_error_set(err, QQ_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
  size_t len = strlen(text);
  bool ok = fwrite(text, 1, len, f) == len && fputc('\n', f) != EOF;
  ok = (fclose(f) == 0) && ok;
  return ok ? QQ_OK : qq_error_set(err, QQ_ERR_IO, "%s: write failed: %s", path, strerror(errno));
}

static qq_status copy_file(const char *src, const char *dst, qq_error *err) {
  char *buf = NULL;
  size_t len = 0;
  qq_status st = qq_read_file(src, &buf, &len, err);
  if (st) return st;
  FILE *f = fopen(dst, "wb");
  if (!f) {
    free(buf);
    return qq_error_set(err, QQ_ERR_IO, "%s: cannot write: %s", dst, strerror(errno));
  }
  bool ok = fwrite(buf, 1, len, f) == len;
  ok = (fclose(f) == 0) && ok;
  free(buf);
  return ok ? QQ_OK : qq_error_set(err, QQ_ERR_IO, "%s: write failed: %s", dst, strerror(errno));
}

static bool ends_with(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcmp(s + a - b, suf);
}

static qq_status copy_other_files(const char *src_dir, const char *out_dir, qq_error *err) {
  DIR *d = opendir(src_dir);
  if (!d) return qq_error_set(err, QQ_ERR_IO, "%s: cannot list: %s", src_dir, strerror(errno));
  qq_status st = QQ_OK;
  struct dirent *e;
  while (!st && (e = readdir(d))) {
    const char *nm = e->d_name;
    if (nm[0] == '.' || ends_with(nm, ".safetensors") || !strcmp(nm, "model.safetensors.index.json") ||
        !strcmp(nm, "config.json") || !strcmp(nm, "qquant_report.json"))
      continue;
    char sp[4096], dp[4096];
    snprintf(sp, sizeof sp, "%s/%s", src_dir, nm);
    snprintf(dp, sizeof dp, "%s/%s", out_dir, nm);
    struct stat sb;
    if (stat(sp, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
    st = copy_file(sp, dp, err);
  }
  closedir(d);
  return st;
}

qq_status qq_quantized_write(const qq_quantized *q, const char *src_dir, const char *out_dir, bool overwrite,
                             size_t max_shard_bytes, const char *report_json, qq_error *err) {
  struct stat sb;
  if (stat(out_dir, &sb) == 0 && !overwrite)
    return qq_error_set(err, QQ_ERR_EXISTS, "%s already exists (use --force to write into it)", out_dir);
  qq_weights *src = NULL;
  qq_status st = qq_weights_open(src_dir, &src, err);
  if (st) return st;
  pool pl = {0};
  tlist tl = {0};
  char *cfg_text = NULL;
  cJSON *cfg = NULL;
  size_t len;
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", src_dir);
  if ((st = qq_read_file(path, &cfg_text, &len, err))) goto done;
  if (!(cfg = cJSON_Parse(cfg_text))) {
    st = qq_error_set(err, QQ_ERR_FORMAT, "%s: not valid JSON", path);
    goto done;
  }
  const size_t nt = qq_weights_count(src);
  for (size_t i = 0; i < nt && !st; i++) {
    const qq_tensor_info *t = qq_weights_at(src, i);
    int l = -1, used = 0;
    char rest[256] = "";
    if (sscanf(t->name, "model.layers.%d.%255s%n", &l, rest, &used) == 2 && l >= 0 && l < q->cfg.n_layers) {
      bool handled = false;
      for (int id = 0; id < QQ_LIN_COUNT && !handled; id++) {
        size_t ml = strlen(LIN_MODULE[id]);
        if (strncmp(rest, LIN_MODULE[id], ml) || rest[ml] != '.') continue;
        const qq_qlinear *ql = &q->lin[l][id];
        char prefix[320];
        snprintf(prefix, sizeof prefix, "model.layers.%d.%s", l, LIN_MODULE[id]);
        if (!strcmp(rest + ml, ".weight")) {
          st = emit_linear(q, ql, prefix, t->dtype == QQ_DTYPE_F32 || t->dtype == QQ_DTYPE_F16 ? t->dtype : QQ_DTYPE_BF16,
                           &tl, &pl, err);
          handled = true;
        } else if (!strcmp(rest + ml, ".bias") && ql->bias) {
          st = tl_add(&tl, &pl, t->name, t->dtype, t->ndim, t->shape[0], 0, convert(&pl, ql->bias, (size_t)ql->n, t->dtype),
                      err);
          handled = true;
        }
      }
      if (handled) continue;
      const float *nw = NULL;
      if (!strcmp(rest, "input_layernorm.weight") && q->norm_in[l]) nw = q->norm_in[l];
      if (!strcmp(rest, "post_attention_layernorm.weight") && q->norm_post[l]) nw = q->norm_post[l];
      if (nw) {
        st = tl_add(&tl, &pl, t->name, t->dtype, 1, t->shape[0], 0, convert(&pl, nw, (size_t)t->shape[0], t->dtype), err);
        continue;
      }
    }
    /* Unchanged tensor: its bytes straight from the source's memory map. */
    if ((st = tl_add(&tl, &pl, t->name, t->dtype, t->ndim, t->shape[0], t->ndim > 1 ? t->shape[1] : 0, t->data, err)))
      break;
    for (int32_t d = 2; d < t->ndim; d++) tl.t[tl.n - 1].shape[d] = t->shape[d];
  }
  if (st) goto done;
  const char *mk[1] = {"format"}, *mv[1] = {"pt"};
  if ((st = qq_weights_write_dir(out_dir, tl.t, tl.n, max_shard_bytes, mk, mv, 1, err))) goto done;
  cJSON_DeleteItemFromObjectCaseSensitive(cfg, "quantization_config");
  cJSON_DeleteItemFromObjectCaseSensitive(cfg, "qquant");
  cJSON *qc = qq_quant_config_json(&q->opt, q->format, q->cfg.task), *meta = qquant_meta_json(q);
  if (!qc || !meta) {
    cJSON_Delete(qc);
    cJSON_Delete(meta);
    st = qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    goto done;
  }
  cJSON_AddItemToObject(cfg, "quantization_config", qc);
  cJSON_AddItemToObject(cfg, "qquant", meta);
  char *txt = cJSON_Print(cfg);
  if (!txt) {
    st = qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    goto done;
  }
  snprintf(path, sizeof path, "%s/config.json", out_dir);
  st = write_text(path, txt, err);
  free(txt);
  if (st) goto done;
  if ((st = copy_other_files(src_dir, out_dir, err))) goto done;
  if (report_json) {
    snprintf(path, sizeof path, "%s/qquant_report.json", out_dir);
    st = write_text(path, report_json, err);
  }
done:
  cJSON_Delete(cfg);
  free(cfg_text);
  free(tl.t);
  pool_free(&pl);
  qq_weights_close(src);
  return st;
}
