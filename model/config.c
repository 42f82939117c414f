/* config.c — config.json of Qwen2 / Qwen3 / Llama checkpoints (causal LM and sequence
 * classification), including "quantization_config" (AutoAWQ, GPTQ, compressed-tensors).
 *
 * Defaults are those of transformers' Qwen2Config / Qwen3Config / LlamaConfig for the optional
 * fields; the five sizes (hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
 * vocab_size) are required because a config without them is broken, not defaulted. Anything that
 * would change the computation and is not implemented is QQ_ERR_UNSUPPORTED naming the field.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "model.h"
#include "loader_internal.h"

/* Upper bounds that no real checkpoint reaches; they keep every derived product (heads * head_dim *
 * hidden, vocab * hidden) far from int64 overflow. */
#define CFG_MAX_DIM (1 << 20)
#define CFG_MAX_VOCAB (1 << 24)
#define CFG_MAX_LAYERS 4096
#define CFG_MAX_LABELS 100000

typedef struct arch_entry {
  const char *name;
  qq_arch arch;
  qq_task task;
  const char *model_type;
} arch_entry;

static const arch_entry arch_table[] = {
    {"Qwen2ForCausalLM", QQ_ARCH_QWEN2, QQ_TASK_CAUSAL_LM, "qwen2"},
    {"Qwen2ForSequenceClassification", QQ_ARCH_QWEN2, QQ_TASK_SEQ_CLS, "qwen2"},
    {"Qwen3ForCausalLM", QQ_ARCH_QWEN3, QQ_TASK_CAUSAL_LM, "qwen3"},
    {"Qwen3ForSequenceClassification", QQ_ARCH_QWEN3, QQ_TASK_SEQ_CLS, "qwen3"},
    {"LlamaForCausalLM", QQ_ARCH_LLAMA, QQ_TASK_CAUSAL_LM, "llama"},
    {"LlamaForSequenceClassification", QQ_ARCH_LLAMA, QQ_TASK_SEQ_CLS, "llama"},
};

/* ---- typed field access; every error names the config file and the field ---- */

static bool present(const cJSON *v) { return v && !cJSON_IsNull(v); }

static qq_status get_int(const cJSON *obj, const char *key, const char *name, const char *path, bool required,
                         int64_t dflt, int64_t lo, int64_t hi, int64_t *out, qq_error *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!present(v)) {
    if (required) return qq_error_set(err, QQ_ERR_FORMAT, "%s: required field \"%s\" is missing", name, path);
    *out = dflt;
    return QQ_OK;
  }
  if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: field \"%s\" must be an integer", name, path);
  if (!(v->valuedouble >= (double)lo && v->valuedouble <= (double)hi))
    return qq_error_set(err, QQ_ERR_RANGE, "%s: field \"%s\" = %.17g is outside [%lld, %lld]", name, path,
                        v->valuedouble, (long long)lo, (long long)hi);
  *out = (int64_t)v->valuedouble;
  return QQ_OK;
}

static qq_status get_i32(const cJSON *obj, const char *key, const char *name, bool required, int64_t dflt,
                         int64_t lo, int64_t hi, int32_t *out, qq_error *err) {
  int64_t v = 0;
  qq_status s = get_int(obj, key, name, key, required, dflt, lo, hi, &v, err);
  if (s == QQ_OK) *out = (int32_t)v;
  return s;
}

static qq_status get_bool(const cJSON *obj, const char *key, const char *name, const char *path, bool dflt,
                          bool *out, qq_error *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!present(v)) {
    *out = dflt;
    return QQ_OK;
  }
  if (!cJSON_IsBool(v)) return qq_error_set(err, QQ_ERR_FORMAT, "%s: field \"%s\" must be true or false", name, path);
  *out = cJSON_IsTrue(v);
  return QQ_OK;
}

static qq_status get_double(const cJSON *obj, const char *key, const char *name, const char *path, double dflt,
                            double *out, qq_error *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!present(v)) {
    *out = dflt;
    return QQ_OK;
  }
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: field \"%s\" must be a number", name, path);
  *out = v->valuedouble;
  return QQ_OK;
}

/* NULL when absent or null; FORMAT when present but not a string. */
static qq_status get_str(const cJSON *obj, const char *key, const char *name, const char *path, const char **out,
                         qq_error *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  *out = NULL;
  if (!present(v)) return QQ_OK;
  if (!cJSON_IsString(v)) return qq_error_set(err, QQ_ERR_FORMAT, "%s: field \"%s\" must be a string", name, path);
  *out = v->valuestring;
  return QQ_OK;
}

static void copy_str(char *dst, size_t cap, const char *src) {
  snprintf(dst, cap, "%s", src ? src : "");
}

/* A token id field: integer, or null (-1). */
static qq_status get_token(const cJSON *obj, const char *key, const char *name, int32_t *out, qq_error *err) {
  return get_i32(obj, key, name, false, -1, 0, INT32_MAX, out, err);
}

/* ---- rope ---- */

static qq_status check_rope_type(const cJSON *obj, const char *name, const char *field, qq_error *err) {
  if (!present(obj)) return QQ_OK;
  if (!cJSON_IsObject(obj)) return qq_error_set(err, QQ_ERR_FORMAT, "%s: field \"%s\" must be an object", name, field);
  /* transformers 5 may nest parameters per layer type ({"full_attention": {...}, ...}); reading only
   * the top level would silently use the default theta. */
  for (const cJSON *e = obj->child; e; e = e->next)
    if (cJSON_IsObject(e))
      return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: field \"%s.%s\": per-layer-type RoPE parameters are not "
                          "implemented", name, field, e->string);
  const char *keys[] = {"rope_type", "type"};
  for (size_t i = 0; i < 2; i++) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, keys[i]);
    if (!present(t)) continue;
    if (!cJSON_IsString(t))
      return qq_error_set(err, QQ_ERR_FORMAT, "%s: field \"%s.%s\" must be a string", name, field, keys[i]);
    if (strcmp(t->valuestring, "default") != 0)
      return qq_error_set(err, QQ_ERR_UNSUPPORTED,
                          "%s: field \"%s.%s\" = \"%s\": only the default RoPE is implemented (no scaling)", name,
                          field, keys[i], t->valuestring);
  }
  double f = 1.0;
  qq_status s = get_double(obj, "partial_rotary_factor", name, "rope_parameters.partial_rotary_factor", 1.0, &f, err);
  if (s != QQ_OK) return s;
  if (f != 1.0)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: field \"%s.partial_rotary_factor\" = %g: partial RoPE is not "
                        "implemented", name, field, f);
  return QQ_OK;
}

static qq_status parse_rope(const cJSON *root, const char *name, qq_config *c, qq_error *err) {
  qq_status s;
  if ((s = check_rope_type(cJSON_GetObjectItemCaseSensitive(root, "rope_scaling"), name, "rope_scaling", err)))
    return s;
  const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
  if ((s = check_rope_type(rp, name, "rope_parameters", err))) return s;
  if ((s = get_double(root, "rope_theta", name, "rope_theta", 10000.0, &c->rope_theta, err))) return s;
  if (present(rp) && (s = get_double(rp, "rope_theta", name, "rope_parameters.rope_theta", c->rope_theta,
                                     &c->rope_theta, err)))
    return s;
  if (!(c->rope_theta > 0))
    return qq_error_set(err, QQ_ERR_RANGE, "%s: field \"rope_theta\" = %g must be positive", name, c->rope_theta);
  return QQ_OK;
}

/* ---- sliding window (Qwen2/Qwen3): transformers marks layer i sliding when layer_types says so, or,
 * without layer_types, when use_sliding_window and i >= max_window_layers. ---- */
static qq_status check_sliding(const cJSON *root, const char *name, const qq_config *c, qq_error *err) {
  const cJSON *lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
  qq_status s;
  if (present(lt)) {
    if (!cJSON_IsArray(lt)) return qq_error_set(err, QQ_ERR_FORMAT, "%s: field \"layer_types\" must be an array", name);
    int i = 0;
    for (const cJSON *e = lt->child; e; e = e->next, i++) {
      if (!cJSON_IsString(e)) return qq_error_set(err, QQ_ERR_FORMAT, "%s: layer_types[%d] must be a string", name, i);
      if (strcmp(e->valuestring, "full_attention") != 0)
        return qq_error_set(err, QQ_ERR_UNSUPPORTED,
                            "%s: field \"layer_types[%d]\" = \"%s\": only full attention is implemented", name, i,
                            e->valuestring);
    }
    if (i != c->num_layers)
      return qq_error_set(err, QQ_ERR_FORMAT, "%s: layer_types has %d entries but num_hidden_layers = %d", name, i,
                          c->num_layers);
    return QQ_OK;
  }
  bool use_sw = false;
  if ((s = get_bool(root, "use_sliding_window", name, "use_sliding_window", false, &use_sw, err))) return s;
  if (!use_sw) return QQ_OK;
  int64_t mwl = 28;
  if ((s = get_int(root, "max_window_layers", name, "max_window_layers", false, 28, 0, INT32_MAX, &mwl, err)))
    return s;
  const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
  if (present(sw) && mwl < c->num_layers)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED,
                        "%s: field \"use_sliding_window\" = true (max_window_layers %lld < num_hidden_layers %d): "
                        "sliding-window attention is not implemented",
                        name, (long long)mwl, c->num_layers);
  return QQ_OK;
}

/* ---- labels ---- */

static qq_status parse_labels(const cJSON *root, const char *name, qq_config *c, qq_error *err) {
  const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "id2label");
  int32_t n = -1;
  qq_status s;
  if (present(map)) {
    if (!cJSON_IsObject(map)) return qq_error_set(err, QQ_ERR_FORMAT, "%s: field \"id2label\" must be an object", name);
    n = cJSON_GetArraySize(map);
  }
  int32_t nl = 0;
  if ((s = get_i32(root, "num_labels", name, false, n >= 0 ? n : 2, 1, CFG_MAX_LABELS, &nl, err))) return s;
  if (n >= 0 && n != nl)
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: num_labels = %d but id2label has %d entries", name, nl, n);
  if (n == 0 || nl > CFG_MAX_LABELS)
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: a sequence classifier needs at least one label", name);
  c->num_labels = nl;
  c->id2label = calloc((size_t)nl, sizeof(char *));
  if (!c->id2label) return qq_error_set(err, QQ_ERR_NOMEM, "%s: out of memory", name);
  if (n >= 0) {
    for (const cJSON *e = map->child; e; e = e->next) {
      char *end = NULL;
      long id = strtol(e->string, &end, 10);
      if (!*e->string || *end || id < 0 || id >= nl)
        return qq_error_set(err, QQ_ERR_FORMAT, "%s: id2label key \"%s\" is not an id in [0, %d)", name, e->string, nl);
      if (!cJSON_IsString(e))
        return qq_error_set(err, QQ_ERR_FORMAT, "%s: id2label[\"%s\"] must be a string", name, e->string);
      if (c->id2label[id])
        return qq_error_set(err, QQ_ERR_FORMAT, "%s: id2label has id %ld twice", name, id);
      if (!(c->id2label[id] = strdup(e->valuestring))) return qq_error_set(err, QQ_ERR_NOMEM, "%s: out of memory", name);
    }
  } else {
    for (int32_t i = 0; i < nl; i++) { /* transformers' default names */
      char buf[32];
      snprintf(buf, sizeof buf, "LABEL_%d", i);
      if (!(c->id2label[i] = strdup(buf))) return qq_error_set(err, QQ_ERR_NOMEM, "%s: out of memory", name);
    }
  }
  return QQ_OK;
}

/* ---- quantization_config ---- */

static qq_status parse_ct(const cJSON *q, const char *name, qq_quant_config *qc, qq_error *err) {
  const char *fmt;
  qq_status s;
  if ((s = get_str(q, "format", name, "quantization_config.format", &fmt, err))) return s;
  if (!fmt || strcmp(fmt, "int-quantized") != 0)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED,
                        "%s: field \"quantization_config.format\" = \"%s\": only compressed-tensors "
                        "\"int-quantized\" is implemented",
                        name, fmt ? fmt : "(missing)");
  copy_str(qc->format, sizeof qc->format, fmt);
  const cJSON *groups = cJSON_GetObjectItemCaseSensitive(q, "config_groups");
  if (!cJSON_IsObject(groups) || cJSON_GetArraySize(groups) != 1)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED,
                        "%s: field \"quantization_config.config_groups\" must hold exactly one group", name);
  const cJSON *g = groups->child;
  if (!cJSON_IsObject(g))
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: quantization_config.config_groups.%s must be an object", name, g->string);
  const cJSON *targets = cJSON_GetObjectItemCaseSensitive(g, "targets");
  bool linear = false;
  if (cJSON_IsArray(targets))
    for (const cJSON *t = targets->child; t; t = t->next) linear |= cJSON_IsString(t) && !strcmp(t->valuestring, "Linear");
  if (!linear)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED,
                        "%s: field \"quantization_config.config_groups.%s.targets\" must contain \"Linear\"", name,
                        g->string);
  const cJSON *wq = cJSON_GetObjectItemCaseSensitive(g, "weights");
  if (!cJSON_IsObject(wq))
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: quantization_config.config_groups.%s.weights is missing", name,
                        g->string);
  int64_t bits = 0;
  bool sym = true, dyn = false;
  const char *type, *strategy;
  char path[160];
  snprintf(path, sizeof path, "quantization_config.config_groups.%s.weights.num_bits", g->string);
  if ((s = get_int(wq, "num_bits", name, path, true, 8, 1, 64, &bits, err))) return s;
  if (bits != 8)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: field \"%s\" = %lld: int-quantized weights must be 8-bit", name,
                        path, (long long)bits);
  snprintf(path, sizeof path, "quantization_config.config_groups.%s.weights.type", g->string);
  if ((s = get_str(wq, "type", name, path, &type, err))) return s;
  if (type && strcmp(type, "int"))
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: field \"%s\" = \"%s\": only int weights", name, path, type);
  snprintf(path, sizeof path, "quantization_config.config_groups.%s.weights.symmetric", g->string);
  if ((s = get_bool(wq, "symmetric", name, path, true, &sym, err))) return s;
  if (!sym)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: field \"%s\" = false: asymmetric int8 weights are not "
                        "implemented", name, path);
  snprintf(path, sizeof path, "quantization_config.config_groups.%s.weights.dynamic", g->string);
  if ((s = get_bool(wq, "dynamic", name, path, false, &dyn, err))) return s;
  if (dyn) return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: field \"%s\" = true is not implemented", name, path);
  snprintf(path, sizeof path, "quantization_config.config_groups.%s.weights.strategy", g->string);
  if ((s = get_str(wq, "strategy", name, path, &strategy, err))) return s;
  if (strategy && !strcmp(strategy, "channel")) {
    qc->group_size = -1;
  } else if (strategy && !strcmp(strategy, "group")) {
    int64_t gs = 0;
    snprintf(path, sizeof path, "quantization_config.config_groups.%s.weights.group_size", g->string);
    if ((s = get_int(wq, "group_size", name, path, true, 0, 1, CFG_MAX_DIM, &gs, err))) return s;
    qc->group_size = (int32_t)gs;
  } else {
    return qq_error_set(err, QQ_ERR_UNSUPPORTED,
                        "%s: field \"%s\" = \"%s\": only \"channel\" and \"group\" weight scales are implemented",
                        name, path, strategy ? strategy : "(missing)");
  }
  qc->bits = 8;
  qc->sym = true;
  const cJSON *ia = cJSON_GetObjectItemCaseSensitive(g, "input_activations");
  if (!present(ia)) {
    qc->method = QQ_QUANT_W8A16;
    return QQ_OK;
  }
  if (!cJSON_IsObject(ia))
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: quantization_config.config_groups.%s.input_activations must be an "
                        "object", name, g->string);
  snprintf(path, sizeof path, "quantization_config.config_groups.%s.input_activations.num_bits", g->string);
  if ((s = get_int(ia, "num_bits", name, path, true, 8, 1, 64, &bits, err))) return s;
  if (bits != 8)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: field \"%s\" = %lld: only 8-bit activations", name, path,
                        (long long)bits);
  snprintf(path, sizeof path, "quantization_config.config_groups.%s.input_activations.symmetric", g->string);
  if ((s = get_bool(ia, "symmetric", name, path, true, &sym, err))) return s;
  if (!sym)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: field \"%s\" = false: asymmetric activations are not "
                        "implemented", name, path);
  snprintf(path, sizeof path, "quantization_config.config_groups.%s.input_activations.dynamic", g->string);
  if ((s = get_bool(ia, "dynamic", name, path, false, &dyn, err))) return s;
  snprintf(path, sizeof path, "quantization_config.config_groups.%s.input_activations.strategy", g->string);
  if ((s = get_str(ia, "strategy", name, path, &strategy, err))) return s;
  const char *want = dyn ? "token" : "tensor";
  if (!strategy || strcmp(strategy, want))
    return qq_error_set(err, QQ_ERR_UNSUPPORTED,
                        "%s: field \"%s\" = \"%s\": implemented are dynamic per-token or static per-tensor "
                        "activation scales", name, path, strategy ? strategy : "(missing)");
  qc->method = QQ_QUANT_W8A8;
  qc->act_dynamic = dyn;
  return QQ_OK;
}

static qq_status parse_quant(const cJSON *q, const char *name, qq_quant_config *qc, qq_error *err) {
  if (!cJSON_IsObject(q))
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: field \"quantization_config\" must be an object", name);
  if (!(qc->raw_json = cJSON_PrintUnformatted(q))) return qq_error_set(err, QQ_ERR_NOMEM, "%s: out of memory", name);
  const char *m;
  qq_status s;
  int64_t v = 0;
  if ((s = get_str(q, "quant_method", name, "quantization_config.quant_method", &m, err))) return s;
  if (!m) return qq_error_set(err, QQ_ERR_FORMAT, "%s: field \"quantization_config.quant_method\" is missing", name);
  if (!strcmp(m, "awq")) {
    /* AutoAWQ writes bits/group_size/zero_point/version; its older quant_config.json spells them
     * w_bit/q_group_size. */
    const char *bk = cJSON_GetObjectItemCaseSensitive(q, "bits") ? "bits" : "w_bit";
    const char *gk = cJSON_GetObjectItemCaseSensitive(q, "group_size") ? "group_size" : "q_group_size";
    if ((s = get_int(q, bk, name, "quantization_config.bits", true, 4, 1, 64, &v, err))) return s;
    if (v != 4)
      return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: field \"quantization_config.%s\" = %lld: AWQ gemm is 4-bit",
                          name, bk, (long long)v);
    qc->bits = 4;
    if ((s = get_int(q, gk, name, "quantization_config.group_size", true, 128, -1, CFG_MAX_DIM, &v, err))) return s;
    if (v == 0) return qq_error_set(err, QQ_ERR_RANGE, "%s: field \"quantization_config.%s\" = 0", name, gk);
    qc->group_size = (int32_t)v;
    bool zp = true;
    if ((s = get_bool(q, "zero_point", name, "quantization_config.zero_point", true, &zp, err))) return s;
    qc->sym = !zp;
    const char *ver;
    if ((s = get_str(q, "version", name, "quantization_config.version", &ver, err))) return s;
    if (ver && strcasecmp(ver, "gemm"))
      return qq_error_set(err, QQ_ERR_UNSUPPORTED,
                          "%s: field \"quantization_config.version\" = \"%s\": only the AutoAWQ \"gemm\" layout is "
                          "implemented", name, ver);
    copy_str(qc->format, sizeof qc->format, "gemm");
    qc->method = QQ_QUANT_AWQ;
    return QQ_OK;
  }
  if (!strcmp(m, "gptq")) {
    if ((s = get_int(q, "bits", name, "quantization_config.bits", true, 4, 1, 64, &v, err))) return s;
    if (v != 3 && v != 4 && v != 8)
      return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: field \"quantization_config.bits\" = %lld: GPTQ with 3, 4 or "
                          "8 bits is implemented", name, (long long)v);
    qc->bits = (int32_t)v;
    if ((s = get_int(q, "group_size", name, "quantization_config.group_size", false, -1, -1, CFG_MAX_DIM, &v, err)))
      return s;
    if (v == 0) return qq_error_set(err, QQ_ERR_RANGE, "%s: field \"quantization_config.group_size\" = 0", name);
    qc->group_size = (int32_t)v;
    if ((s = get_bool(q, "desc_act", name, "quantization_config.desc_act", false, &qc->desc_act, err))) return s;
    if ((s = get_bool(q, "sym", name, "quantization_config.sym", true, &qc->sym, err))) return s;
    const char *cf;
    if ((s = get_str(q, "checkpoint_format", name, "quantization_config.checkpoint_format", &cf, err))) return s;
    /* "gptq_v2" (GPTQModel's own layout) stores the zero points without v1's minus one; model/qformat.c
     * reads both. */
    if (cf && strcmp(cf, "gptq") && strcmp(cf, "gptq_v2"))
      return qq_error_set(err, QQ_ERR_UNSUPPORTED,
                          "%s: field \"quantization_config.checkpoint_format\" = \"%s\": implemented are the GPTQ "
                          "layouts \"gptq\" (v1) and \"gptq_v2\"", name, cf);
    /* GPTQModel's "dynamic" gives modules their own bits / group size or skips them; null or {} is what a
     * plain run writes. */
    const cJSON *dyn = cJSON_GetObjectItemCaseSensitive(q, "dynamic");
    if (present(dyn) && !(cJSON_IsObject(dyn) && cJSON_GetArraySize(dyn) == 0))
      return qq_error_set(err, QQ_ERR_UNSUPPORTED,
                          "%s: field \"quantization_config.dynamic\": per-module overrides (GPTQModel) are not "
                          "implemented", name);
    bool marlin = false;
    if ((s = get_bool(q, "is_marlin_format", name, "quantization_config.is_marlin_format", false, &marlin, err)))
      return s;
    if (marlin)
      return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: field \"quantization_config.is_marlin_format\" = true is not "
                          "implemented", name);
    copy_str(qc->format, sizeof qc->format, cf && !strcmp(cf, "gptq_v2") ? "gptq_v2" : "gptq");
    qc->method = QQ_QUANT_GPTQ;
    return QQ_OK;
  }
  if (!strcmp(m, "compressed-tensors")) return parse_ct(q, name, qc, err);
  return qq_error_set(err, QQ_ERR_UNSUPPORTED,
                      "%s: field \"quantization_config.quant_method\" = \"%s\": implemented are \"awq\", \"gptq\" "
                      "and \"compressed-tensors\"", name, m);
}

/* ---- the whole file ---- */

static qq_status parse_root(const cJSON *root, const char *name, qq_config *c, qq_error *err) {
  qq_status s;
  if (!cJSON_IsObject(root)) return qq_error_set(err, QQ_ERR_FORMAT, "%s: not a JSON object", name);
  /* Python's json keeps the last of duplicate keys, cJSON finds the first: refuse to guess. */
  for (const cJSON *a = root->child; a; a = a->next)
    for (const cJSON *b = a->next; b; b = b->next)
      if (!strcmp(a->string, b->string))
        return qq_error_set(err, QQ_ERR_FORMAT, "%s: field \"%s\" appears twice", name, a->string);
  const char *model_type;
  if ((s = get_str(root, "model_type", name, "model_type", &model_type, err))) return s;
  const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
  const arch_entry *ae = NULL;
  if (present(archs)) {
    if (!cJSON_IsArray(archs) || !cJSON_IsString(archs->child))
      return qq_error_set(err, QQ_ERR_FORMAT, "%s: field \"architectures\" must be an array of strings", name);
    for (size_t i = 0; i < QQ_ARRAY_LEN(arch_table); i++)
      if (!strcmp(archs->child->valuestring, arch_table[i].name)) ae = &arch_table[i];
    if (!ae)
      return qq_error_set(err, QQ_ERR_UNSUPPORTED,
                          "%s: field \"architectures\" = \"%s\": supported are Qwen2, Qwen3 and Llama "
                          "ForCausalLM / ForSequenceClassification", name, archs->child->valuestring);
  } else {
    /* No architectures: infer the causal LM from model_type, as AutoModelForCausalLM would. */
    for (size_t i = 0; i < QQ_ARRAY_LEN(arch_table); i++)
      if (model_type && arch_table[i].task == QQ_TASK_CAUSAL_LM && !strcmp(model_type, arch_table[i].model_type))
        ae = &arch_table[i];
    if (!ae)
      return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: no \"architectures\" and field \"model_type\" = \"%s\" is not "
                          "qwen2, qwen3 or llama", name, model_type ? model_type : "(missing)");
  }
  if (model_type && strcmp(model_type, ae->model_type))
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: field \"model_type\" = \"%s\" does not match architecture %s "
                        "(expected \"%s\")", name, model_type, ae->name, ae->model_type);
  copy_str(c->architecture, sizeof c->architecture, ae->name);
  copy_str(c->model_type, sizeof c->model_type, ae->model_type);
  c->arch = ae->arch;
  c->task = ae->task;

  if ((s = get_i32(root, "hidden_size", name, true, 0, 1, CFG_MAX_DIM, &c->hidden_size, err))) return s;
  if ((s = get_i32(root, "intermediate_size", name, true, 0, 1, CFG_MAX_DIM, &c->intermediate_size, err))) return s;
  if ((s = get_i32(root, "num_hidden_layers", name, true, 0, 1, CFG_MAX_LAYERS, &c->num_layers, err))) return s;
  if ((s = get_i32(root, "num_attention_heads", name, true, 0, 1, CFG_MAX_DIM, &c->num_heads, err))) return s;
  if ((s = get_i32(root, "num_key_value_heads", name, false, c->num_heads, 1, CFG_MAX_DIM, &c->num_kv_heads, err)))
    return s;
  if ((s = get_i32(root, "vocab_size", name, true, 0, 1, CFG_MAX_VOCAB, &c->vocab_size, err))) return s;
  if (c->num_heads % c->num_kv_heads)
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: num_attention_heads = %d is not a multiple of num_key_value_heads = %d",
                        name, c->num_heads, c->num_kv_heads);
  /* Qwen3Config defaults head_dim to 128; the others derive it. */
  const cJSON *hd = cJSON_GetObjectItemCaseSensitive(root, "head_dim");
  if (present(hd) || c->arch == QQ_ARCH_QWEN3) {
    if ((s = get_i32(root, "head_dim", name, false, 128, 1, CFG_MAX_DIM, &c->head_dim, err))) return s;
  } else {
    if (c->hidden_size % c->num_heads)
      return qq_error_set(err, QQ_ERR_FORMAT, "%s: no \"head_dim\" and hidden_size = %d is not a multiple of "
                          "num_attention_heads = %d", name, c->hidden_size, c->num_heads);
    c->head_dim = c->hidden_size / c->num_heads;
  }
  if (c->head_dim % 2)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: head_dim = %d is odd; RoPE needs pairs", name, c->head_dim);
  if ((s = get_i32(root, "max_position_embeddings", name, false, c->arch == QQ_ARCH_LLAMA ? 2048 : 32768, 1,
                   INT32_MAX, &c->max_position_embeddings, err)))
    return s;
  if ((s = get_double(root, "rms_norm_eps", name, "rms_norm_eps", 1e-6, &c->rms_norm_eps, err))) return s;
  if (!(c->rms_norm_eps > 0 && c->rms_norm_eps < 1))
    return qq_error_set(err, QQ_ERR_RANGE, "%s: field \"rms_norm_eps\" = %g is outside (0, 1)", name, c->rms_norm_eps);
  if ((s = parse_rope(root, name, c, err))) return s;
  /* transformers' default is false for all three configs. */
  if ((s = get_bool(root, "tie_word_embeddings", name, "tie_word_embeddings", false, &c->tie_word_embeddings, err)))
    return s;

  const char *act;
  if ((s = get_str(root, "hidden_act", name, "hidden_act", &act, err))) return s;
  if (act && strcmp(act, "silu") && strcmp(act, "swish"))
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: field \"hidden_act\" = \"%s\": only silu is implemented", name, act);

  bool attn_bias = false;
  switch (c->arch) {
    case QQ_ARCH_QWEN2: /* Qwen2Attention: q/k/v always carry a bias, o_proj never */
      c->qkv_bias = true;
      break;
    case QQ_ARCH_QWEN3: /* Qwen3Attention: attention_bias applies to q/k/v/o */
      if ((s = get_bool(root, "attention_bias", name, "attention_bias", false, &attn_bias, err))) return s;
      c->qkv_bias = c->o_bias = attn_bias;
      c->qk_norm = true;
      break;
    case QQ_ARCH_LLAMA:
      if ((s = get_bool(root, "attention_bias", name, "attention_bias", false, &attn_bias, err))) return s;
      c->qkv_bias = c->o_bias = attn_bias;
      if ((s = get_bool(root, "mlp_bias", name, "mlp_bias", false, &c->mlp_bias, err))) return s;
      break;
  }
  if (c->arch != QQ_ARCH_LLAMA && (s = check_sliding(root, name, c, err))) return s;

  if ((s = get_token(root, "bos_token_id", name, &c->bos_token_id, err))) return s;
  if ((s = get_token(root, "pad_token_id", name, &c->pad_token_id, err))) return s;
  const cJSON *eos = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
  if (cJSON_IsArray(eos)) {
    int i = 0;
    for (const cJSON *e = eos->child; e; e = e->next, i++) {
      if (i >= QQ_MAX_EOS)
        return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: field \"eos_token_id\" lists more than %d ids", name, QQ_MAX_EOS);
      if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || e->valuedouble < 0 ||
          e->valuedouble > INT32_MAX)
        return qq_error_set(err, QQ_ERR_FORMAT, "%s: eos_token_id[%d] must be a token id", name, i);
      c->eos_token_ids[c->n_eos++] = (int32_t)e->valuedouble;
    }
  } else {
    int32_t id = -1;
    if ((s = get_token(root, "eos_token_id", name, &id, err))) return s;
    if (id >= 0) c->eos_token_ids[c->n_eos++] = id;
  }

  const char *dt = NULL;
  if ((s = get_str(root, "torch_dtype", name, "torch_dtype", &dt, err))) return s;
  if (!dt && (s = get_str(root, "dtype", name, "dtype", &dt, err))) return s; /* transformers 5 */
  copy_str(c->torch_dtype, sizeof c->torch_dtype, dt);

  if (c->task == QQ_TASK_SEQ_CLS && (s = parse_labels(root, name, c, err))) return s;

  const cJSON *q = cJSON_GetObjectItemCaseSensitive(root, "quantization_config");
  if (present(q) && (s = parse_quant(q, name, &c->quant, err))) return s;
  return QQ_OK;
}

qq_status qq_config_parse(const char *json, size_t len, const char *name, qq_config *out, qq_error *err) {
  if (!out) return qq_error_set(err, QQ_ERR_INVALID_ARG, "qq_config_parse: NULL output");
  memset(out, 0, sizeof *out);
  out->bos_token_id = out->pad_token_id = -1;
  if (!name) name = "config.json";
  if (!json && len) return qq_error_set(err, QQ_ERR_INVALID_ARG, "qq_config_parse: NULL text");
  const char *end = NULL;
  cJSON *root = json ? cJSON_ParseWithLengthOpts(json, len, &end, false) : NULL;
  if (!root) {
    size_t at = json && end && end >= json && end <= json + len ? (size_t)(end - json) : 0;
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: not valid JSON (error near byte %zu)", name, at);
  }
  qq_status s = parse_root(root, name, out, err);
  cJSON_Delete(root);
  if (s != QQ_OK) {
    qq_config_free(out);
    out->bos_token_id = out->pad_token_id = -1;
  }
  return s;
}

qq_status qq_config_load(const char *dir, qq_config *out, qq_error *err) {
  if (!dir || !out) return qq_error_set(err, QQ_ERR_INVALID_ARG, "qq_config_load: NULL argument");
  memset(out, 0, sizeof *out);
  size_t n = strlen(dir) + sizeof "/config.json";
  char *path = malloc(n);
  if (!path) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  snprintf(path, n, "%s/config.json", dir);
  char *text = NULL;
  size_t len = 0;
  qq_status s = qq_read_file(path, &text, &len, err);
  if (s == QQ_OK) s = qq_config_parse(text, len, path, out, err);
  free(text);
  free(path);
  return s;
}

void qq_config_free(qq_config *cfg) {
  if (!cfg) return;
  if (cfg->id2label) {
    for (int32_t i = 0; i < cfg->num_labels; i++) free(cfg->id2label[i]);
    free(cfg->id2label);
  }
  free(cfg->quant.raw_json);
  memset(cfg, 0, sizeof *cfg);
}
