/* layer.c — layer-by-layer access for calibration: embed, one decoder layer, head, and weight
 * replacement. Host fp32 in and out; one sequence at positions 0..n-1 with a private cache. */
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

static qq_status check_layer(const qq_model *m, int32_t layer, qq_error *err) {
  if (layer < 0 || layer >= m->cfg.num_layers)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "layer %d outside [0, %d)", layer, m->cfg.num_layers);
  return QQ_OK;
}

qq_status qq_model_embed(qq_model *m, const int32_t *tokens, int32_t n, float *x, qq_error *err) {
  qq_status st = qq_model_scratch_reserve(m, n, 1, err);
  if (st != QQ_OK) return st;
  st = qq_op_embed(m->be, m->embed, tokens, n, m->sc.x, err);
  if (st != QQ_OK) return st;
  return qq_backend_download_f32(m->be, m->sc.x, (size_t)n * m->cfg.hidden_size, x, err);
}

qq_status qq_model_layer_forward(qq_model *m, int32_t layer, float *x, int32_t n, qq_capture_fn cap, void *user,
                                 qq_error *err) {
  qq_status st = check_layer(m, layer, err);
  if (st != QQ_OK) return st;
  if (n <= 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "layer forward: n = %d", n);
  if (cap && qq_backend_kind(m->be) != QQ_DEVICE_CPU)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "layer capture needs the CPU backend");
  if ((st = qq_model_scratch_reserve(m, n, 1, err)) != QQ_OK) return st;
  /* One block covering all n tokens: block table {0}. */
  const size_t elems = (size_t)n * m->kv_dim;
  void *kc = NULL, *vc = NULL;
  int32_t *pos = malloc((size_t)n * sizeof(int32_t));
  int32_t block0 = 0;
  if (!pos) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  for (int32_t i = 0; i < n; i++) pos[i] = i;
  if ((st = qq_backend_alloc(m->be, elems, &kc, err)) != QQ_OK) goto done;
  if ((st = qq_backend_alloc(m->be, elems, &vc, err)) != QQ_OK) goto done;
  if ((st = qq_backend_upload_f32(m->be, x, (size_t)n * m->cfg.hidden_size, m->sc.x, err)) != QQ_OK) goto done;
  qq_attn_seq seq = {.row = 0, .n_new = n, .n_past = 0, .blocks = &block0};
  if ((st = qq_model_layer_step(m, layer, n, pos, &seq, 1, n, kc, vc, cap, user, err)) != QQ_OK) goto done;
  st = qq_backend_download_f32(m->be, m->sc.x, (size_t)n * m->cfg.hidden_size, x, err);
done:
  qq_backend_release(m->be, kc);
  qq_backend_release(m->be, vc);
  free(pos);
  return st;
}

qq_status qq_model_head_forward(qq_model *m, const float *x, int32_t n, float *out, qq_error *err) {
  qq_status st = qq_model_scratch_reserve(m, 1, n, err);
  if (st != QQ_OK) return st;
  if ((st = qq_backend_upload_f32(m->be, x, (size_t)n * m->cfg.hidden_size, m->sc.rows, err)) != QQ_OK) return st;
  if ((st = qq_op_rmsnorm(m->be, m->sc.rows, m->final_norm, n, m->cfg.hidden_size, (float)m->cfg.rms_norm_eps,
                          m->sc.rows_n, err)) != QQ_OK)
    return st;
  if ((st = qq_op_matmul(m->be, m->head ? m->head : m->embed, m->sc.rows_n, n, m->sc.logits, err)) != QQ_OK) return st;
  return qq_backend_download_f32(m->be, m->sc.logits, (size_t)n * m->out_dim, out, err);
}

qq_status qq_model_set_linear(qq_model *m, int32_t layer, qq_linear_id id, const qq_linear_desc *desc, qq_error *err) {
  qq_status st = check_layer(m, layer, err);
  if (st != QQ_OK) return st;
  if ((unsigned)id >= QQ_LIN_COUNT) return qq_error_set(err, QQ_ERR_INVALID_ARG, "unknown linear id %d", (int)id);
  qq_linear *old = m->layers[layer].lin[id];
  if (desc->n != qq_linear_n(old) || desc->k != qq_linear_k(old))
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "layer %d %s: new weight [%d, %d] does not match [%d, %d]", layer,
                        qq_linear_id_name(id), desc->n, desc->k, qq_linear_n(old), qq_linear_k(old));
  qq_linear *lin;
  if ((st = qq_linear_create(m->be, desc, &lin, err)) != QQ_OK) return st;
  qq_linear_free(old);
  m->layers[layer].lin[id] = lin;
  return QQ_OK;
}

qq_status qq_model_get_linear_f32(qq_model *m, int32_t layer, qq_linear_id id, float *w, float *bias, qq_error *err) {
  qq_status st = check_layer(m, layer, err);
  if (st != QQ_OK) return st;
  if ((unsigned)id >= QQ_LIN_COUNT) return qq_error_set(err, QQ_ERR_INVALID_ARG, "unknown linear id %d", (int)id);
  return qq_linear_to_f32(m->layers[layer].lin[id], w, bias, err);
}

static float *host_norm(qq_model *m, int32_t layer, qq_norm_id id, void **dev) {
  qq_layer *L = &m->layers[layer];
  *dev = id == QQ_NORM_INPUT ? L->norm_in : L->norm_post;
  return id == QQ_NORM_INPUT ? L->host_norm_in : L->host_norm_post;
}

qq_status qq_model_set_norm(qq_model *m, int32_t layer, qq_norm_id id, const float *w, qq_error *err) {
  qq_status st = check_layer(m, layer, err);
  if (st != QQ_OK) return st;
  void *dev;
  float *h = host_norm(m, layer, id, &dev);
  memcpy(h, w, (size_t)m->cfg.hidden_size * sizeof(float));
  return qq_backend_upload_f32(m->be, h, (size_t)m->cfg.hidden_size, dev, err);
}

qq_status qq_model_get_norm(qq_model *m, int32_t layer, qq_norm_id id, float *w, qq_error *err) {
  qq_status st = check_layer(m, layer, err);
  if (st != QQ_OK) return st;
  void *dev;
  memcpy(w, host_norm(m, layer, id, &dev), (size_t)m->cfg.hidden_size * sizeof(float));
  return QQ_OK;
}
