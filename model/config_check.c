/* config_check.c — qq_config_check_weights: every tensor that config.json implies is present with
 * the expected shape and a usable dtype, for full-precision and quantized checkpoints.
 *
 * Quantized linear layers (in = input features, out = output features, g = group size, b = bits):
 *   AWQ gemm (AutoAWQ WQLinear_GEMM):  qweight I32 [in, out*b/32]  qzeros I32 [in/g, out*b/32]
 *                                      scales F16 [in/g, out]       (bias [out])
 *   GPTQ v1 (AutoGPTQ QuantLinear):    qweight I32 [in*b/32, out]  qzeros I32 [ceil(in/g), out*b/32]
 *                                      scales F16 [ceil(in/g), out] g_idx I32 [in]  (g = in when -1)
 *   compressed-tensors int-quantized:  weight I8 [out, in]  weight_scale [out, 1] (channel) or
 *                                      [out, in/g] (group); input_scale [1] when activations are static
 * Which linears are quantized: AWQ all but modules_to_not_convert (substring match, as AutoAWQ) and
 * never lm_head; GPTQ all decoder linears, lm_head only with "lm_head": true; compressed-tensors all
 * Linear modules except those in "ignore" (exact names, or "re:" patterns matched from the start).
 */
#include <cjson/cJSON.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "loader_internal.h"

typedef enum dclass { DC_FLOAT, DC_I32, DC_I8 } dclass;

static bool dtype_ok(qq_dtype dt, dclass c) {
  switch (c) {
    case DC_FLOAT: return dt == QQ_DTYPE_F32 || dt == QQ_DTYPE_F16 || dt == QQ_DTYPE_BF16 || dt == QQ_DTYPE_F64;
    case DC_I32: return dt == QQ_DTYPE_I32;
    case DC_I8: return dt == QQ_DTYPE_I8;
  }
  return false;
}

static const char *dclass_name(dclass c) {
  return c == DC_FLOAT ? "F32/F16/BF16" : c == DC_I32 ? "I32" : "I8";
}

static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
  size_t o = (size_t)snprintf(buf, cap, "[");
  for (int d = 0; d < ndim && o < cap; d++) o += (size_t)snprintf(buf + o, cap - o, d ? ", %lld" : "%lld", (long long)shape[d]);
  if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* Checks one tensor. why names the config fields the expected shape comes from. */
static qq_status expect(const qq_weights *w, const char *name, int ndim, const int64_t *shape, dclass dc,
                        const char *why, qq_error *err) {
  const qq_tensor_info *t = qq_weights_find(w, name);
  const char *dir = qq_weights_dir(w);
  char want[160], got[160];
  fmt_shape(want, sizeof want, ndim, shape);
  if (!t)
    return qq_error_set(err, QQ_ERR_NOT_FOUND, "%s: tensor %s is missing (config.json implies it, shape %s from %s)",
                        dir, name, want, why);
  fmt_shape(got, sizeof got, t->ndim, t->shape);
  bool same = t->ndim == ndim;
  for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
  if (!same)
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: tensor %s has shape %s, expected %s from config.json %s", t->file,
                        name, got, want, why);
  if (!dtype_ok(t->dtype, dc))
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s, expected %s", t->file, name,
                        qq_dtype_name(t->dtype), dclass_name(dc));
  return QQ_OK;
}

/* ---- which linears are quantized ---- */

typedef struct quant_rules {
  const qq_quant_config *qc;
  cJSON *raw;
} quant_rules;

static bool ct_ignored(const cJSON *ignore, const char *module) {
  if (!cJSON_IsArray(ignore)) return false;
  for (const cJSON *e = ignore->child; e; e = e->next) {
    if (!cJSON_IsString(e)) continue;
    const char *p = e->valuestring;
    if (strncmp(p, "re:", 3) != 0) {
      if (!strcmp(p, module)) return true;
      continue;
    }
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(p + 3), PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED, &ec, &eo, NULL);
    if (!re) continue;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = md ? pcre2_match(re, (PCRE2_SPTR)module, PCRE2_ZERO_TERMINATED, 0, 0, md, NULL) : -1;
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    if (rc >= 0) return true;
  }
  return false;
}

bool qq_config_linear_is_quantized(const qq_config *cfg, const char *module) {
  if (!cfg || !module || cfg->quant.method == QQ_QUANT_NONE) return false;
  cJSON *raw = cfg->quant.raw_json ? cJSON_Parse(cfg->quant.raw_json) : NULL;
  bool is_head = !strcmp(module, "lm_head") || !strcmp(module, "score");
  bool q = true;
  switch (cfg->quant.method) {
    case QQ_QUANT_AWQ: {
      if (is_head) {
        q = false;
        break;
      }
      const cJSON *skip = cJSON_GetObjectItemCaseSensitive(raw, "modules_to_not_convert");
      if (cJSON_IsArray(skip))
        for (const cJSON *e = skip->child; e; e = e->next)
          if (cJSON_IsString(e) && strstr(module, e->valuestring)) q = false;
      break;
    }
    case QQ_QUANT_GPTQ:
      if (is_head) q = !strcmp(module, "lm_head") && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(raw, "lm_head"));
      break;
    case QQ_QUANT_W8A8:
    case QQ_QUANT_W8A16:
      q = !ct_ignored(cJSON_GetObjectItemCaseSensitive(raw, "ignore"), module) && strcmp(module, "score") != 0;
      break;
    default:
      q = false;
  }
  cJSON_Delete(raw);
  return q;
}

/* ---- one linear layer ---- */

static qq_status check_linear(const qq_config *cfg, const qq_weights *w, const char *module, int64_t out, int64_t in,
                              bool bias, const char *why, qq_error *err) {
  char name[256], why2[320];
  qq_status s;
  const qq_quant_config *qc = &cfg->quant;
  snprintf(why2, sizeof why2, "%s", why);
  if (bias) {
    snprintf(name, sizeof name, "%s.bias", module);
    if ((s = expect(w, name, 1, (int64_t[]){out}, DC_FLOAT, why2, err))) return s;
  }
  if (!qq_config_linear_is_quantized(cfg, module)) {
    snprintf(name, sizeof name, "%s.weight", module);
    return expect(w, name, 2, (int64_t[]){out, in}, DC_FLOAT, why2, err);
  }
  const char *dir = qq_weights_dir(w);
  if (qc->method == QQ_QUANT_AWQ || qc->method == QQ_QUANT_GPTQ) {
    int64_t pack = 32 / qc->bits; /* values per int32 for 4 and 8 bits */
    int64_t g = qc->group_size > 0 ? qc->group_size : in;
    snprintf(why2, sizeof why2, "%s with quantization_config bits = %d, group_size = %d", why, qc->bits,
             qc->group_size);
    if ((out * qc->bits) % 32)
      return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: %s has %lld outputs, not a multiple of %lld for %d-bit packing",
                          dir, module, (long long)out, (long long)(32 / qc->bits), qc->bits);
    int64_t outp = out * qc->bits / 32;
    if (qc->method == QQ_QUANT_AWQ) {
      (void)pack;
      if (in % g)
        return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: %s has %lld inputs, not a multiple of group_size %lld", dir,
                            module, (long long)in, (long long)g);
      snprintf(name, sizeof name, "%s.qweight", module);
      if ((s = expect(w, name, 2, (int64_t[]){in, outp}, DC_I32, why2, err))) return s;
      snprintf(name, sizeof name, "%s.qzeros", module);
      if ((s = expect(w, name, 2, (int64_t[]){in / g, outp}, DC_I32, why2, err))) return s;
      snprintf(name, sizeof name, "%s.scales", module);
      return expect(w, name, 2, (int64_t[]){in / g, out}, DC_FLOAT, why2, err);
    }
    if ((in * qc->bits) % 32)
      return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: %s has %lld inputs, not packable into int32 at %d bits", dir,
                          module, (long long)in, qc->bits);
    int64_t ng = (in + g - 1) / g;
    snprintf(name, sizeof name, "%s.qweight", module);
    if ((s = expect(w, name, 2, (int64_t[]){in * qc->bits / 32, out}, DC_I32, why2, err))) return s;
    snprintf(name, sizeof name, "%s.qzeros", module);
    if ((s = expect(w, name, 2, (int64_t[]){ng, outp}, DC_I32, why2, err))) return s;
    snprintf(name, sizeof name, "%s.scales", module);
    if ((s = expect(w, name, 2, (int64_t[]){ng, out}, DC_FLOAT, why2, err))) return s;
    snprintf(name, sizeof name, "%s.g_idx", module);
    /* g_idx matters with act-order; AutoGPTQ writes it always, some exporters drop it otherwise. */
    if (qc->desc_act || qq_weights_find(w, name)) return expect(w, name, 1, (int64_t[]){in}, DC_I32, why2, err);
    return QQ_OK;
  }
  /* compressed-tensors int-quantized */
  snprintf(why2, sizeof why2, "%s with compressed-tensors int8 weights", why);
  snprintf(name, sizeof name, "%s.weight", module);
  if ((s = expect(w, name, 2, (int64_t[]){out, in}, DC_I8, why2, err))) return s;
  snprintf(name, sizeof name, "%s.weight_scale", module);
  if (qc->group_size > 0) {
    if (in % qc->group_size)
      return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: %s has %lld inputs, not a multiple of group_size %d", dir,
                          module, (long long)in, qc->group_size);
    if ((s = expect(w, name, 2, (int64_t[]){out, in / qc->group_size}, DC_FLOAT, why2, err))) return s;
  } else if ((s = expect(w, name, 2, (int64_t[]){out, 1}, DC_FLOAT, why2, err))) {
    return s;
  }
  if (qc->method == QQ_QUANT_W8A8 && !qc->act_dynamic) {
    snprintf(name, sizeof name, "%s.input_scale", module);
    const qq_tensor_info *t = qq_weights_find(w, name);
    if (!t || t->numel != 1 || !dtype_ok(t->dtype, DC_FLOAT))
      return qq_error_set(err, t ? QQ_ERR_FORMAT : QQ_ERR_NOT_FOUND,
                          "%s: tensor %s (one float: static activation scale, quantization_config "
                          "input_activations.dynamic = false) is %s", dir, name, t ? "malformed" : "missing");
  }
  return QQ_OK;
}

qq_status qq_config_check_weights(const qq_config *cfg, const qq_weights *w, qq_error *err) {
  if (!cfg || !w) return qq_error_set(err, QQ_ERR_INVALID_ARG, "qq_config_check_weights: NULL argument");
  const int64_t H = cfg->hidden_size, I = cfg->intermediate_size, V = cfg->vocab_size, hd = cfg->head_dim;
  const int64_t qd = (int64_t)cfg->num_heads * hd, kvd = (int64_t)cfg->num_kv_heads * hd;
  qq_status s;
  char name[256], why[256];
  if ((s = expect(w, "model.embed_tokens.weight", 2, (int64_t[]){V, H}, DC_FLOAT, "[vocab_size, hidden_size]", err)))
    return s;
  if ((s = expect(w, "model.norm.weight", 1, (int64_t[]){H}, DC_FLOAT, "[hidden_size]", err))) return s;
  for (int32_t l = 0; l < cfg->num_layers; l++) {
    static const char *const norms[] = {"input_layernorm", "post_attention_layernorm"};
    for (int k = 0; k < 2; k++) {
      snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, norms[k]);
      snprintf(why, sizeof why, "[hidden_size] (num_hidden_layers = %d)", cfg->num_layers);
      if ((s = expect(w, name, 1, (int64_t[]){H}, DC_FLOAT, why, err))) return s;
    }
    struct {
      const char *mod;
      int64_t out, in;
      bool bias;
      const char *why;
    } lin[] = {
        {"self_attn.q_proj", qd, H, cfg->qkv_bias, "[num_attention_heads * head_dim, hidden_size]"},
        {"self_attn.k_proj", kvd, H, cfg->qkv_bias, "[num_key_value_heads * head_dim, hidden_size]"},
        {"self_attn.v_proj", kvd, H, cfg->qkv_bias, "[num_key_value_heads * head_dim, hidden_size]"},
        {"self_attn.o_proj", H, qd, cfg->o_bias, "[hidden_size, num_attention_heads * head_dim]"},
        {"mlp.gate_proj", I, H, cfg->mlp_bias, "[intermediate_size, hidden_size]"},
        {"mlp.up_proj", I, H, cfg->mlp_bias, "[intermediate_size, hidden_size]"},
        {"mlp.down_proj", H, I, cfg->mlp_bias, "[hidden_size, intermediate_size]"},
    };
    for (size_t k = 0; k < QQ_ARRAY_LEN(lin); k++) {
      snprintf(name, sizeof name, "model.layers.%d.%s", l, lin[k].mod);
      if ((s = check_linear(cfg, w, name, lin[k].out, lin[k].in, lin[k].bias, lin[k].why, err))) return s;
    }
    if (cfg->qk_norm) {
      static const char *const qk[] = {"q_norm", "k_norm"};
      for (int k = 0; k < 2; k++) {
        snprintf(name, sizeof name, "model.layers.%d.self_attn.%s.weight", l, qk[k]);
        if ((s = expect(w, name, 1, (int64_t[]){hd}, DC_FLOAT, "[head_dim] (Qwen3 q/k norm)", err))) return s;
      }
    }
  }
  if (cfg->task == QQ_TASK_SEQ_CLS)
    return expect(w, "score.weight", 2, (int64_t[]){cfg->num_labels, H}, DC_FLOAT, "[num_labels (id2label), hidden_size]",
                  err);
  if (!cfg->tie_word_embeddings)
    return check_linear(cfg, w, "lm_head", V, H, false, "[vocab_size, hidden_size] (tie_word_embeddings = false)", err);
  return QQ_OK;
}
