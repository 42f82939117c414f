/* forward.c — model loading onto a backend and the batched transformer forward pass
 * (Qwen2 / Qwen3 / Llama: RMSNorm, RoPE, GQA causal attention over a paged KV cache, SwiGLU). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"
#ifdef QQ_HAVE_QFORMAT
#include "qformat.h"
#endif

static const char *const lin_names[QQ_LIN_COUNT] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                     "gate_proj", "up_proj", "down_proj"};

const char *qq_linear_id_name(qq_linear_id id) {
  return (unsigned)id < QQ_LIN_COUNT ? lin_names[id] : "?";
}

void qq_linear_tensor_name(int32_t layer, qq_linear_id id, char *buf, size_t cap) {
  const char *block = id <= QQ_LIN_O ? "self_attn" : "mlp";
  snprintf(buf, cap, "model.layers.%d.%s.%s.weight", layer, block, qq_linear_id_name(id));
}

qq_model_options qq_model_options_default(void) {
  qq_model_options o = {.device = QQ_DEVICE_AUTO, .n_threads = 0, .load_tokenizer = true,
                        .rope_freq = QQ_ROPE_FREQ_EXACT};
  return o;
}

/* ---- loading ---- */

static qq_status tensor_f32(const qq_weights *w, const char *name, int64_t expect_numel, float **out, qq_error *err) {
  const qq_tensor_info *t;
  qq_status st = qq_weights_get(w, name, &t, err);
  if (st != QQ_OK) return st;
  if (t->numel != expect_numel)
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: tensor %s has %lld elements, expected %lld", t->file, name,
                        (long long)t->numel, (long long)expect_numel);
  float *buf = malloc((size_t)expect_numel * sizeof(float));
  if (!buf) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory reading %s", name);
  st = qq_tensor_to_f32(t, buf, err);
  if (st != QQ_OK) {
    free(buf);
    return st;
  }
  *out = buf;
  return QQ_OK;
}

/* Uploads a float vector tensor to backend memory (and optionally keeps the host copy). */
static qq_status load_vector(qq_model *m, const char *name, int64_t n, void **dev, float **host_keep, qq_error *err) {
  float *h = NULL;
  qq_status st = tensor_f32(m->weights, name, n, &h, err);
  if (st != QQ_OK) return st;
  st = qq_backend_alloc(m->be, (size_t)n, dev, err);
  if (st == QQ_OK) st = qq_backend_upload_f32(m->be, h, (size_t)n, *dev, err);
  if (st == QQ_OK && host_keep) {
    *host_keep = h;
    h = NULL;
  }
  free(h);
  return st;
}

static qq_status dense_desc(const qq_tensor_info *t, int32_t n, int32_t k, qq_linear_desc *d, qq_error *err) {
  if (t->ndim != 2 || t->shape[0] != n || t->shape[1] != k)
    return qq_error_set(err, QQ_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld], expected [%d, %d]", t->file,
                        t->name, (long long)t->shape[0], (long long)(t->ndim > 1 ? t->shape[1] : 0), n, k);
  memset(d, 0, sizeof *d);
  d->n = n;
  d->k = k;
  d->w = t->data;
  switch (t->dtype) {
    case QQ_DTYPE_F32: d->format = QQ_WFMT_F32; break;
    case QQ_DTYPE_BF16: d->format = QQ_WFMT_BF16; break;
    case QQ_DTYPE_F16: d->format = QQ_WFMT_F16; break;
    default:
      return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s; dense weights must be F32, BF16 or F16",
                          t->file, t->name, qq_dtype_name(t->dtype));
  }
  return QQ_OK;
}

static qq_status load_dense(qq_model *m, const char *name, int32_t n, int32_t k, const char *bias_name,
                            qq_linear **out, qq_error *err) {
  const qq_tensor_info *t;
  qq_status st = qq_weights_get(m->weights, name, &t, err);
  if (st != QQ_OK) return st;
  qq_linear_desc d;
  st = dense_desc(t, n, k, &d, err);
  if (st != QQ_OK) return st;
  float *bias = NULL;
  if (bias_name) {
    st = tensor_f32(m->weights, bias_name, n, &bias, err);
    if (st != QQ_OK) return st;
    d.bias = bias;
  }
  st = qq_linear_create(m->be, &d, out, err);
  free(bias);
  if (st != QQ_OK) qq_error_prefix(err, "%s", name);
  return st;
}

static qq_status load_layer_linear(qq_model *m, int32_t l, qq_linear_id id, qq_error *err) {
  const qq_config *c = &m->cfg;
  int32_t n, k;
  switch (id) {
    case QQ_LIN_Q: n = m->q_dim; k = c->hidden_size; break;
    case QQ_LIN_K:
    case QQ_LIN_V: n = m->kv_dim; k = c->hidden_size; break;
    case QQ_LIN_O: n = c->hidden_size; k = m->q_dim; break;
    case QQ_LIN_GATE:
    case QQ_LIN_UP: n = c->intermediate_size; k = c->hidden_size; break;
    default: n = c->hidden_size; k = c->intermediate_size; break;
  }
  char name[256], bias[256];
  qq_linear_tensor_name(l, id, name, sizeof name);
  bool has_bias = (id <= QQ_LIN_V && c->qkv_bias) || (id == QQ_LIN_O && c->o_bias) || (id >= QQ_LIN_GATE && c->mlp_bias);
  if (has_bias) {
    snprintf(bias, sizeof bias, "%.*sbias", (int)(strlen(name) - strlen("weight")), name);
  }
  char module[256];
  snprintf(module, sizeof module, "%.*s", (int)(strlen(name) - strlen(".weight")), name);
  if (c->quant.method != QQ_QUANT_NONE && qq_config_linear_is_quantized(c, module)) {
#ifdef QQ_HAVE_QFORMAT
    qq_linear_desc d;
    void *owned = NULL;
    qq_status st = qq_qformat_load_linear(c, m->weights, l, id, &d, &owned, err);
    if (st != QQ_OK) return st;
    float *b = NULL;
    if (has_bias && (st = tensor_f32(m->weights, bias, n, &b, err)) != QQ_OK) {
      qq_qformat_free_owned(owned);
      return st;
    }
    d.bias = b;
    st = qq_linear_create(m->be, &d, &m->layers[l].lin[id], err);
    free(b);
    qq_qformat_free_owned(owned);
    if (st != QQ_OK) qq_error_prefix(err, "layer %d %s", l, qq_linear_id_name(id));
    return st;
#else
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "quantized checkpoints are not supported by this build");
#endif
  }
  return load_dense(m, name, n, k, has_bias ? bias : NULL, &m->layers[l].lin[id], err);
}

static qq_status load_weights(qq_model *m, qq_error *err) {
  const qq_config *c = &m->cfg;
  qq_status st = load_dense(m, "model.embed_tokens.weight", c->vocab_size, c->hidden_size, NULL, &m->embed, err);
  if (st != QQ_OK) return st;
  m->layers = calloc((size_t)c->num_layers, sizeof *m->layers);
  if (!m->layers) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  char name[256];
  for (int32_t l = 0; l < c->num_layers; l++) {
    qq_layer *L = &m->layers[l];
    for (int id = 0; id < QQ_LIN_COUNT; id++)
      if ((st = load_layer_linear(m, l, (qq_linear_id)id, err)) != QQ_OK) return st;
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
    if ((st = load_vector(m, name, c->hidden_size, &L->norm_in, &L->host_norm_in, err)) != QQ_OK) return st;
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
    if ((st = load_vector(m, name, c->hidden_size, &L->norm_post, &L->host_norm_post, err)) != QQ_OK) return st;
    if (c->qk_norm) {
      snprintf(name, sizeof name, "model.layers.%d.self_attn.q_norm.weight", l);
      if ((st = load_vector(m, name, c->head_dim, &L->q_norm, NULL, err)) != QQ_OK) return st;
      snprintf(name, sizeof name, "model.layers.%d.self_attn.k_norm.weight", l);
      if ((st = load_vector(m, name, c->head_dim, &L->k_norm, NULL, err)) != QQ_OK) return st;
    }
  }
  if ((st = load_vector(m, "model.norm.weight", c->hidden_size, &m->final_norm, NULL, err)) != QQ_OK) return st;
  if (c->task == QQ_TASK_SEQ_CLS) {
    st = load_dense(m, "score.weight", c->num_labels, c->hidden_size, NULL, &m->head, err);
  } else if (!c->tie_word_embeddings || qq_weights_find(m->weights, "lm_head.weight")) {
    /* Some tied checkpoints still store lm_head.weight; using it is equivalent and avoids surprises. */
    st = load_dense(m, "lm_head.weight", c->vocab_size, c->hidden_size, NULL, &m->head, err);
  }
  return st;
}

qq_status qq_model_load(const char *dir, const qq_model_options *opt, qq_model **out, qq_error *err) {
  *out = NULL;
  qq_model_options o = opt ? *opt : qq_model_options_default();
  if (o.rope_freq != QQ_ROPE_FREQ_EXACT && o.rope_freq != QQ_ROPE_FREQ_BF16)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "model options: unknown rope_freq %d", (int)o.rope_freq);
  qq_model *m = calloc(1, sizeof *m);
  if (!m) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  m->rope_freq = o.rope_freq;
  qq_status st = qq_config_load(dir, &m->cfg, err);
  if (st != QQ_OK) goto fail;
  st = qq_weights_open(dir, &m->weights, err);
  if (st != QQ_OK) goto fail;
  st = qq_config_check_weights(&m->cfg, m->weights, err);
  if (st != QQ_OK) goto fail;
  if (o.load_tokenizer) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    st = qq_tokenizer_load(path, &m->tok, err);
    if (st != QQ_OK) goto fail;
  }
  {
    qq_backend_options bo = qq_backend_options_default();
    bo.kind = o.device;
    bo.n_threads = o.n_threads;
    bo.act = o.act;
    st = qq_backend_create_opts(&bo, &m->be, err);
  }
  if (st != QQ_OK) goto fail;
  m->q_dim = m->cfg.num_heads * m->cfg.head_dim;
  m->kv_dim = m->cfg.num_kv_heads * m->cfg.head_dim;
  m->out_dim = m->cfg.task == QQ_TASK_SEQ_CLS ? m->cfg.num_labels : m->cfg.vocab_size;
  st = load_weights(m, err);
  if (st != QQ_OK) goto fail;
  *out = m;
  return QQ_OK;
fail:
  qq_error_prefix(err, "loading model %s", dir);
  qq_model_free(m);
  return st;
}

void qq_model_scratch_free(qq_model *m) {
  qq_scratch *s = &m->sc;
  void **bufs[] = {&s->x, &s->xn, &s->q, &s->k, &s->v, &s->attn, &s->o, &s->gate, &s->up, &s->rows, &s->rows_n, &s->logits};
  for (size_t i = 0; i < QQ_ARRAY_LEN(bufs); i++) {
    qq_backend_release(m->be, *bufs[i]);
    *bufs[i] = NULL;
  }
  s->cap_tokens = s->cap_rows = 0;
}

void qq_model_free(qq_model *m) {
  if (!m) return;
  if (m->be) {
    qq_model_scratch_free(m);
    qq_linear_free(m->embed);
    qq_linear_free(m->head);
    qq_backend_release(m->be, m->final_norm);
    if (m->layers) {
      for (int32_t l = 0; l < m->cfg.num_layers; l++) {
        qq_layer *L = &m->layers[l];
        for (int id = 0; id < QQ_LIN_COUNT; id++) qq_linear_free(L->lin[id]);
        qq_backend_release(m->be, L->norm_in);
        qq_backend_release(m->be, L->norm_post);
        qq_backend_release(m->be, L->q_norm);
        qq_backend_release(m->be, L->k_norm);
        free(L->host_norm_in);
        free(L->host_norm_post);
      }
    }
    qq_backend_free(m->be);
  }
  free(m->layers);
  qq_tokenizer_free(m->tok);
  qq_weights_close(m->weights);
  qq_config_free(&m->cfg);
  free(m);
}

const qq_config *qq_model_config(const qq_model *m) { return &m->cfg; }
const qq_tokenizer *qq_model_tokenizer(const qq_model *m) { return m->tok; }
int32_t qq_model_output_dim(const qq_model *m) { return m->out_dim; }
qq_backend *qq_model_backend(qq_model *m) { return m->be; }

/* ---- scratch ---- */

qq_status qq_model_scratch_reserve(qq_model *m, int32_t n_tokens, int32_t n_rows, qq_error *err) {
  qq_scratch *s = &m->sc;
  if (n_tokens <= s->cap_tokens && n_rows <= s->cap_rows) return QQ_OK;
  const int32_t t = QQ_MAX(n_tokens, s->cap_tokens), r = QQ_MAX(n_rows, s->cap_rows);
  /* Captured steps use the old buffers. */
  qq_backend_graphs_clear(m->be);
  m->scratch_gen++;
  qq_model_scratch_free(m);
  const qq_config *c = &m->cfg;
  const size_t h = (size_t)c->hidden_size;
  struct { void **p; size_t n; } plan[] = {
      {&s->x, t * h},
      {&s->xn, t * h},
      {&s->q, (size_t)t * m->q_dim},
      {&s->k, (size_t)t * m->kv_dim},
      {&s->v, (size_t)t * m->kv_dim},
      {&s->attn, (size_t)t * m->q_dim},
      {&s->o, t * h},
      {&s->gate, (size_t)t * c->intermediate_size},
      {&s->up, (size_t)t * c->intermediate_size},
      {&s->rows, r * h},
      {&s->rows_n, r * h},
      {&s->logits, (size_t)r * m->out_dim},
  };
  for (size_t i = 0; i < QQ_ARRAY_LEN(plan); i++) {
    qq_status st = qq_backend_alloc(m->be, plan[i].n ? plan[i].n : 1, plan[i].p, err);
    if (st != QQ_OK) {
      qq_model_scratch_free(m);
      return st;
    }
  }
  s->cap_tokens = t;
  s->cap_rows = r;
  return QQ_OK;
}

/* ---- one decoder layer ---- */

/* The four parts of a decoder layer (see qq_layer_part in model.h), on the scratch buffers:
 * ATTN s->x -> s->attn; O s->x += s->attn·Wo; MLP_ACT s->x -> s->gate = silu(xn·Wg)·(xn·Wu);
 * DOWN s->x += s->gate·Wd. */
#define TRY(x) \
  if ((st = (x)) != QQ_OK) return st

static qq_status part_attn(qq_model *m, int32_t l, int32_t n, const int32_t *pos, const qq_attn_seq *seqs,
                           int32_t n_seqs, int32_t block_tokens, void *k_cache, void *v_cache, qq_capture_fn cap,
                           void *user, qq_error *err) {
  const qq_config *c = &m->cfg;
  qq_layer *L = &m->layers[l];
  qq_scratch *s = &m->sc;
  qq_backend *be = m->be;
  const float eps = (float)c->rms_norm_eps;
  qq_status st;
  /* xn = norm(x); q,k,v = xn·W; (q/k norm); rope; attn */
  TRY(qq_op_rmsnorm(be, s->x, L->norm_in, n, c->hidden_size, eps, s->xn, err));
  if (cap) cap(user, l, QQ_LIN_Q, s->xn, n, c->hidden_size);
  TRY(qq_op_matmul(be, L->lin[QQ_LIN_Q], s->xn, n, s->q, err));   /* [n, hidden] -> [n, heads*hd] */
  TRY(qq_op_matmul(be, L->lin[QQ_LIN_K], s->xn, n, s->k, err));   /* [n, hidden] -> [n, kv*hd] */
  TRY(qq_op_matmul(be, L->lin[QQ_LIN_V], s->xn, n, s->v, err));
  if (c->qk_norm) {
    TRY(qq_op_rmsnorm(be, s->q, L->q_norm, n * c->num_heads, c->head_dim, eps, s->q, err));
    TRY(qq_op_rmsnorm(be, s->k, L->k_norm, n * c->num_kv_heads, c->head_dim, eps, s->k, err));
  }
  TRY(qq_op_rope(be, s->q, pos, n, c->num_heads, c->head_dim, (float)c->rope_theta, m->rope_freq, err));
  TRY(qq_op_rope(be, s->k, pos, n, c->num_kv_heads, c->head_dim, (float)c->rope_theta, m->rope_freq, err));
  qq_attn_params ap = {.n_heads = c->num_heads, .n_kv_heads = c->num_kv_heads, .head_dim = c->head_dim,
                       .block_tokens = block_tokens, .scale = (float)(1.0 / sqrt((double)c->head_dim))};
  return qq_op_attention(be, &ap, seqs, n_seqs, s->q, s->k, s->v, k_cache, v_cache, s->attn, err);
}

static qq_status part_o(qq_model *m, int32_t l, int32_t n, qq_capture_fn cap, void *user, qq_error *err) {
  qq_scratch *s = &m->sc;
  qq_status st;
  if (cap) cap(user, l, QQ_LIN_O, s->attn, n, m->q_dim);
  TRY(qq_op_matmul(m->be, m->layers[l].lin[QQ_LIN_O], s->attn, n, s->o, err)); /* [n, heads*hd] -> [n, hidden] */
  return qq_op_add(m->be, s->x, s->o, (size_t)n * m->cfg.hidden_size, err);
}

static qq_status part_mlp_act(qq_model *m, int32_t l, int32_t n, qq_capture_fn cap, void *user, qq_error *err) {
  const qq_config *c = &m->cfg;
  qq_layer *L = &m->layers[l];
  qq_scratch *s = &m->sc;
  qq_status st;
  TRY(qq_op_rmsnorm(m->be, s->x, L->norm_post, n, c->hidden_size, (float)c->rms_norm_eps, s->xn, err));
  if (cap) cap(user, l, QQ_LIN_GATE, s->xn, n, c->hidden_size);
  TRY(qq_op_matmul(m->be, L->lin[QQ_LIN_GATE], s->xn, n, s->gate, err)); /* [n, hidden] -> [n, inter] */
  TRY(qq_op_matmul(m->be, L->lin[QQ_LIN_UP], s->xn, n, s->up, err));
  return qq_op_silu_mul(m->be, s->gate, s->up, (size_t)n * c->intermediate_size, s->gate, err);
}

static qq_status part_down(qq_model *m, int32_t l, int32_t n, qq_capture_fn cap, void *user, qq_error *err) {
  qq_scratch *s = &m->sc;
  qq_status st;
  if (cap) cap(user, l, QQ_LIN_DOWN, s->gate, n, m->cfg.intermediate_size);
  TRY(qq_op_matmul(m->be, m->layers[l].lin[QQ_LIN_DOWN], s->gate, n, s->o, err)); /* [n, inter] -> [n, hidden] */
  return qq_op_add(m->be, s->x, s->o, (size_t)n * m->cfg.hidden_size, err);
}

qq_status qq_model_layer_step(qq_model *m, int32_t l, int32_t n, const int32_t *pos, const qq_attn_seq *seqs,
                              int32_t n_seqs, int32_t block_tokens, void *k_cache, void *v_cache,
                              qq_capture_fn cap, void *user, qq_error *err) {
  qq_status st;
  TRY(part_attn(m, l, n, pos, seqs, n_seqs, block_tokens, k_cache, v_cache, cap, user, err));
  TRY(part_o(m, l, n, cap, user, err));
  TRY(part_mlp_act(m, l, n, cap, user, err));
  return part_down(m, l, n, cap, user, err);
}

qq_status qq_model_layer_part_step(qq_model *m, int32_t l, qq_layer_part part, int32_t n, const int32_t *pos,
                                   const qq_attn_seq *seq, void *k_cache, void *v_cache, qq_error *err) {
  switch (part) {
    case QQ_PART_ATTN: return part_attn(m, l, n, pos, seq, 1, n, k_cache, v_cache, NULL, NULL, err);
    case QQ_PART_O: return part_o(m, l, n, NULL, NULL, err);
    case QQ_PART_MLP_ACT: return part_mlp_act(m, l, n, NULL, NULL, err);
    case QQ_PART_DOWN: return part_down(m, l, n, NULL, NULL, err);
  }
  return qq_error_set(err, QQ_ERR_INVALID_ARG, "unknown layer part %d", (int)part);
}
#undef TRY

/* Final norm and head over r rows already gathered into s->rows; result in s->logits. */
static qq_status head_rows(qq_model *m, int32_t r, qq_error *err) {
  qq_scratch *s = &m->sc;
  qq_status st = qq_op_rmsnorm(m->be, s->rows, m->final_norm, r, m->cfg.hidden_size, (float)m->cfg.rms_norm_eps,
                               s->rows_n, err);
  if (st != QQ_OK) return st;
  /* [r, hidden] -> [r, vocab or labels] */
  return qq_op_matmul(m->be, m->head ? m->head : m->embed, s->rows_n, r, s->logits, err);
}

/* ---- batched forward over the KV cache ---- */

/* out != NULL: the rows are downloaded into it; else *logits receives the scratch buffer holding them. */
static qq_status forward_step(qq_model *m, qq_kv_cache *kv, const qq_forward_item *items, int32_t n_items, float *out,
                              const void **logits, qq_error *err) {
  if (n_items <= 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "forward: no items");
  if (kv->m != m) return qq_error_set(err, QQ_ERR_INVALID_ARG, "forward: KV cache belongs to another model");
  const qq_config *c = &m->cfg;
  const int32_t bt = kv->opt.block_tokens;
  int32_t total = 0, rows = 0, need_blocks = 0;
  for (int32_t i = 0; i < n_items; i++) {
    const qq_forward_item *it = &items[i];
    if (it->seq < 0 || it->seq >= kv->opt.max_seqs || !kv->seqs[it->seq].live)
      return qq_error_set(err, QQ_ERR_INVALID_ARG, "forward: item %d names sequence %d, which is not open", i, it->seq);
    for (int32_t j = 0; j < i; j++)
      if (items[j].seq == it->seq)
        return qq_error_set(err, QQ_ERR_INVALID_ARG, "forward: sequence %d appears twice in one step", it->seq);
    if (it->n_tokens <= 0 || !it->tokens)
      return qq_error_set(err, QQ_ERR_INVALID_ARG, "forward: item %d has no tokens", i);
    for (int32_t t = 0; t < it->n_tokens; t++)
      if (it->tokens[t] < 0 || it->tokens[t] >= c->vocab_size)
        return qq_error_set(err, QQ_ERR_INVALID_ARG, "forward: token id %d outside the vocabulary [0, %d)",
                            it->tokens[t], c->vocab_size);
    const struct qq_kv_seq_state *sq = &kv->seqs[it->seq];
    const int32_t new_len = sq->len + it->n_tokens;
    if (new_len > kv->opt.max_seq_len)
      return qq_error_set(err, QQ_ERR_RANGE, "forward: sequence %d would reach %d tokens, more than the limit %d",
                          it->seq, new_len, kv->opt.max_seq_len);
    need_blocks += (new_len + bt - 1) / bt - sq->n_blocks;
    total += it->n_tokens;
    rows += it->all_rows ? it->n_tokens : 1;
  }
  if (need_blocks > kv->n_free)
    return qq_error_set(err, QQ_ERR_EXHAUSTED, "forward: KV cache full (%d blocks needed, %d free)", need_blocks,
                        kv->n_free);

  /* A decode-only step (one new token per sequence, one output row each) on a backend with graphs is
   * replayable: the batch is padded to a bucket size with dummy sequences writing to the cache's pad
   * block, block tables are passed at full width, and contexts are bounded by max_seq_len, so every
   * step of that bucket issues identical work (kernels.h qq_backend_step_begin). */
  bool replay = qq_backend_has_graphs(m->be) && total == n_items && rows == n_items;
  for (int32_t i = 0; replay && i < n_items; i++) replay = !items[i].all_rows;
  int32_t bsz = n_items;
  if (replay) {
    static const int32_t buckets[] = {1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512};
    bsz = 0;
    for (size_t b = 0; b < QQ_ARRAY_LEN(buckets) && !bsz; b++)
      if (buckets[b] >= n_items) bsz = buckets[b];
    if (!bsz) replay = false, bsz = n_items;
  }
  qq_status st = qq_model_scratch_reserve(m, replay ? bsz : total, replay ? bsz : rows, err);
  if (st != QQ_OK) return st;
  const int32_t n_tok = replay ? bsz : total, n_rows = replay ? bsz : rows, n_sq = replay ? bsz : n_items;
  int32_t *tokens = malloc((size_t)n_tok * sizeof(int32_t));
  int32_t *pos = malloc((size_t)n_tok * sizeof(int32_t));
  int32_t *row_idx = malloc((size_t)n_rows * sizeof(int32_t));
  qq_attn_seq *seqs = malloc((size_t)n_sq * sizeof *seqs);
  bool in_step = false;
  if (!tokens || !pos || !row_idx || !seqs) {
    st = qq_error_set(err, QQ_ERR_NOMEM, "forward: out of memory");
    goto done;
  }
  /* Allocate blocks (cannot fail now: counted above). */
  for (int32_t i = 0, t = 0, r = 0; i < n_items; i++) {
    const qq_forward_item *it = &items[i];
    struct qq_kv_seq_state *sq = &kv->seqs[it->seq];
    const int32_t want = (sq->len + it->n_tokens + bt - 1) / bt;
    while (sq->n_blocks < want) sq->blocks[sq->n_blocks++] = kv->free_list[--kv->n_free];
    seqs[i] = (qq_attn_seq){.row = t, .n_new = it->n_tokens, .n_past = sq->len, .blocks = sq->blocks};
    for (int32_t j = 0; j < it->n_tokens; j++) {
      tokens[t + j] = it->tokens[j];
      pos[t + j] = sq->len + j;
    }
    if (it->all_rows)
      for (int32_t j = 0; j < it->n_tokens; j++) row_idx[r++] = t + j;
    else
      row_idx[r++] = t + it->n_tokens - 1;
    t += it->n_tokens;
  }
  for (int32_t i = n_items; i < n_sq; i++) { /* padding of a replayable step */
    seqs[i] = (qq_attn_seq){.row = i, .n_new = 1, .n_past = 0, .blocks = kv->pad_table};
    tokens[i] = 0;
    pos[i] = 0;
    row_idx[i] = i;
  }
  qq_step_desc sd = {0};
  if (replay) {
    sd.graph_key = (kv->id << 40) ^ (m->scratch_gen << 20) ^ bsz;
    sd.graph_max_len = kv->opt.max_seq_len;
    sd.graph_blocks_per_seq = kv->seqs[0].cap_blocks;
  }
  if ((st = qq_backend_step_begin(m->be, &sd, err)) != QQ_OK) goto done;
  in_step = true;
  if ((st = qq_op_embed(m->be, m->embed, tokens, n_tok, m->sc.x, err)) != QQ_OK) goto done;
  for (int32_t l = 0; l < c->num_layers; l++)
    if ((st = qq_model_layer_step(m, l, n_tok, pos, seqs, n_sq, bt, kv->k[l], kv->v[l], NULL, NULL, err)) != QQ_OK)
      goto done;
  if ((st = qq_op_gather_rows(m->be, m->sc.x, row_idx, n_rows, c->hidden_size, m->sc.rows, err)) != QQ_OK) goto done;
  if ((st = head_rows(m, n_rows, err)) != QQ_OK) goto done;
  in_step = false;
  if ((st = qq_backend_step_end(m->be, true, err)) != QQ_OK) goto done;
  if (out) st = qq_backend_download_f32(m->be, m->sc.logits, (size_t)rows * m->out_dim, out, err);
  else *logits = m->sc.logits;
  if (st == QQ_OK)
    for (int32_t i = 0; i < n_items; i++) kv->seqs[items[i].seq].len += items[i].n_tokens;
done:
  if (in_step) qq_backend_step_end(m->be, false, NULL);
  if (st != QQ_OK) {
    /* Give back blocks reserved beyond each sequence's unchanged length. */
    for (int32_t i = 0; i < n_items; i++) {
      struct qq_kv_seq_state *sq = &kv->seqs[items[i].seq];
      const int32_t keep = (sq->len + bt - 1) / bt;
      while (sq->n_blocks > keep) kv->free_list[kv->n_free++] = sq->blocks[--sq->n_blocks];
    }
  }
  free(tokens);
  free(pos);
  free(row_idx);
  free(seqs);
  return st;
}

qq_status qq_model_forward(qq_model *m, qq_kv_cache *kv, const qq_forward_item *items, int32_t n_items, float *out,
                           qq_error *err) {
  if (!out) return qq_error_set(err, QQ_ERR_INVALID_ARG, "forward: no output array");
  return forward_step(m, kv, items, n_items, out, NULL, err);
}

qq_status qq_model_forward_dev(qq_model *m, qq_kv_cache *kv, const qq_forward_item *items, int32_t n_items,
                               const void **logits, qq_error *err) {
  *logits = NULL;
  return forward_step(m, kv, items, n_items, NULL, logits, err);
}
