/* eval.c — generation loop, perplexity / KL divergence and batched last-token scoring. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

static bool is_eos(const qq_config *c, int32_t id) {
  for (int32_t i = 0; i < c->n_eos; i++)
    if (c->eos_token_ids[i] == id) return true;
  return false;
}

static qq_status ids_push(qq_token_ids *out, int32_t id, qq_error *err) {
  if (out->n == out->cap) {
    size_t cap = out->cap ? out->cap * 2 : 64;
    int32_t *p = realloc(out->ids, cap * sizeof(int32_t));
    if (!p) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    out->ids = p;
    out->cap = cap;
  }
  out->ids[out->n++] = id;
  return QQ_OK;
}

qq_status qq_generate(qq_model *m, const int32_t *prompt, int32_t n_prompt, int32_t max_new,
                      const qq_sampling *sampling, bool stop_at_eos, qq_token_fn cb, void *user, qq_token_ids *out,
                      qq_error *err) {
  if (n_prompt <= 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "generate: empty prompt");
  if (max_new < 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "generate: max_new_tokens %d < 0", max_new);
  if (m->cfg.task != QQ_TASK_CAUSAL_LM)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "generate: %s is a classifier, not a language model",
                        m->cfg.architecture);
  qq_sampling sp = sampling ? *sampling : qq_sampling_default();
  qq_sampler *smp = NULL;
  qq_status st = qq_sampler_create(&sp, &smp, err);
  if (st != QQ_OK) return st;
  qq_kv_options ko = qq_kv_options_default();
  ko.max_seqs = 1;
  ko.max_seq_len = n_prompt + max_new;
  qq_kv_cache *kv = NULL;
  int32_t seq = -1;
  if ((st = qq_kv_cache_create(m, &ko, &kv, err)) != QQ_OK) goto done;
  if ((st = qq_kv_seq_open(kv, &seq, err)) != QQ_OK) goto done;
  qq_forward_item it = {.seq = seq, .tokens = prompt, .n_tokens = n_prompt, .all_rows = false};
  const int32_t row0 = 0;
  for (int32_t i = 0; i < max_new; i++) {
    /* the logits row stays in backend memory: greedy takes its argmax, top-k / top-p its candidates */
    const void *logits = NULL;
    int32_t tok = -1;
    if ((st = qq_model_forward_dev(m, kv, &it, 1, &logits, err)) != QQ_OK) goto done;
    if ((st = qq_sampler_pick(m->be, logits, m->out_dim, &smp, &row0, 1, &tok, err)) != QQ_OK) goto done;
    if ((st = ids_push(out, tok, err)) != QQ_OK) goto done;
    if (cb && !cb(user, tok)) break;
    if (stop_at_eos && is_eos(&m->cfg, tok)) break;
    it.tokens = &out->ids[out->n - 1];
    it.n_tokens = 1;
  }
done:
  qq_kv_cache_free(kv);
  qq_sampler_free(smp);
  return st;
}

/* log-softmax of one row into out; returns nothing. */
static void log_softmax(const float *x, int32_t n, double *out) {
  double mx = -INFINITY;
  for (int32_t i = 0; i < n; i++) mx = fmax(mx, (double)x[i]);
  double sum = 0;
  for (int32_t i = 0; i < n; i++) sum += exp((double)x[i] - mx);
  const double lse = mx + log(sum);
  for (int32_t i = 0; i < n; i++) out[i] = (double)x[i] - lse;
}

static int32_t argmax_f(const float *x, int32_t n) {
  int32_t b = 0;
  for (int32_t i = 1; i < n; i++)
    if (x[i] > x[b]) b = i;
  return b;
}

/* Scores one window [w] with all rows: logits out [w][V] on the host, or (out NULL) *dev receives the
 * model's buffer holding them in backend memory. */
static qq_status window_logits(qq_model *m, qq_kv_cache *kv, const int32_t *ids, int32_t w, float *logits,
                               const void **dev, qq_error *err) {
  int32_t seq;
  qq_status st = qq_kv_seq_open(kv, &seq, err);
  if (st != QQ_OK) return st;
  qq_forward_item it = {.seq = seq, .tokens = ids, .n_tokens = w, .all_rows = true};
  st = logits ? qq_model_forward(m, kv, &it, 1, logits, err) : qq_model_forward_dev(m, kv, &it, 1, dev, err);
  qq_kv_seq_close(kv, seq);
  return st;
}

qq_status qq_eval_perplexity(qq_model *m, qq_model *ref, const int32_t *ids, size_t n, int32_t window,
                             int32_t max_windows, qq_eval_progress_fn progress, void *user, qq_ppl_result *res,
                             qq_error *err) {
  memset(res, 0, sizeof *res);
  if (m->cfg.task != QQ_TASK_CAUSAL_LM)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "perplexity needs a language model; %s is a classifier",
                        m->cfg.architecture);
  if (window < 2) return qq_error_set(err, QQ_ERR_INVALID_ARG, "perplexity: window %d < 2", window);
  if (ref && (ref->out_dim != m->out_dim || ref->cfg.task != QQ_TASK_CAUSAL_LM))
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "KL reference model has vocabulary %d, model has %d", ref->out_dim,
                        m->out_dim);
  int64_t avail = (int64_t)(n / (size_t)window);
  int32_t nw = (int32_t)(max_windows > 0 && max_windows < avail ? max_windows : avail);
  if (nw <= 0)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "perplexity: the text has %zu tokens, less than one window of %d", n,
                        window);
  const int32_t V = m->out_dim;
  qq_kv_options ko = qq_kv_options_default();
  ko.max_seqs = 1;
  ko.max_seq_len = window;
  qq_kv_cache *kv = NULL, *kv_ref = NULL;
  /* Without a reference model the rows stay in backend memory and only each row's log-sum-exp and
   * target logit come back (qq_op_logits_reduce: the arithmetic of log_softmax above); KL needs both
   * full distributions, downloaded. */
  float *lg = ref ? malloc((size_t)window * V * sizeof(float)) : NULL;
  float *lg_ref = ref ? malloc((size_t)window * V * sizeof(float)) : NULL;
  double *lp = ref ? malloc((size_t)V * sizeof(double)) : NULL;
  double *lp_ref = ref ? malloc((size_t)V * sizeof(double)) : NULL;
  qq_logits_stats *stats = ref ? NULL : malloc((size_t)window * sizeof *stats);
  qq_status st = QQ_OK;
  if (ref ? (!lg || !lp || !lg_ref || !lp_ref) : !stats) {
    st = qq_error_set(err, QQ_ERR_NOMEM, "perplexity: out of memory");
    goto done;
  }
  if ((st = qq_kv_cache_create(m, &ko, &kv, err)) != QQ_OK) goto done;
  if (ref && (st = qq_kv_cache_create(ref, &ko, &kv_ref, err)) != QQ_OK) goto done;
  double nll = 0, nll_ref = 0, kl = 0, max_kl = 0;
  int64_t count = 0, agree = 0;
  for (int32_t wi = 0; wi < nw; wi++) {
    const int32_t *w = ids + (size_t)wi * window;
    if (!ref) {
      const void *dev = NULL;
      if ((st = window_logits(m, kv, w, window, NULL, &dev, err)) != QQ_OK) goto done;
      /* row t predicts token t + 1 */
      if ((st = qq_op_logits_reduce(m->be, dev, V, NULL, w + 1, window - 1, true, stats, err)) != QQ_OK) goto done;
      for (int32_t t = 0; t + 1 < window; t++) {
        nll -= (double)stats[t].target - stats[t].lse;
        count++;
      }
      if (progress) progress(user, wi + 1, nw);
      continue;
    }
    if ((st = window_logits(m, kv, w, window, lg, NULL, err)) != QQ_OK) goto done;
    if ((st = window_logits(ref, kv_ref, w, window, lg_ref, NULL, err)) != QQ_OK) goto done;
    for (int32_t t = 0; t + 1 < window; t++) {
      const float *row = lg + (size_t)t * V;
      log_softmax(row, V, lp);
      nll -= lp[w[t + 1]];
      if (ref) {
        const float *rrow = lg_ref + (size_t)t * V;
        log_softmax(rrow, V, lp_ref);
        nll_ref -= lp_ref[w[t + 1]];
        double k = 0;
        for (int32_t v = 0; v < V; v++) k += exp(lp_ref[v]) * (lp_ref[v] - lp[v]);
        kl += k;
        max_kl = fmax(max_kl, k);
        agree += argmax_f(row, V) == argmax_f(rrow, V);
      }
      count++;
    }
    if (progress) progress(user, wi + 1, nw);
  }
  res->tokens = count;
  res->windows = nw;
  res->mean_nll = nll / (double)count;
  res->ppl = exp(res->mean_nll);
  if (ref) {
    res->ref_mean_nll = nll_ref / (double)count;
    res->mean_kl = kl / (double)count;
    res->max_kl = max_kl;
    res->top1_agree = (double)agree / (double)count;
  }
done:
  qq_kv_cache_free(kv);
  qq_kv_cache_free(kv_ref);
  free(lg);
  free(lg_ref);
  free(lp);
  free(lp_ref);
  free(stats);
  return st;
}

qq_status qq_model_score_last(qq_model *m, const int32_t *const *ids, const int32_t *lens, int32_t count, float *out,
                              qq_error *err) {
  if (count <= 0) return QQ_OK;
  int32_t max_len = 0;
  for (int32_t i = 0; i < count; i++) {
    if (lens[i] <= 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "score: sequence %d is empty", i);
    max_len = QQ_MAX(max_len, lens[i]);
  }
  /* Batches of up to 8 sequences per step: enough rows to keep sgemm efficient on a few cores. */
  const int32_t batch = QQ_MIN(count, 8);
  qq_kv_options ko = qq_kv_options_default();
  ko.max_seqs = batch;
  ko.max_seq_len = max_len;
  qq_kv_cache *kv = NULL;
  qq_status st = qq_kv_cache_create(m, &ko, &kv, err);
  if (st != QQ_OK) return st;
  qq_forward_item items[8];
  for (int32_t b0 = 0; b0 < count && st == QQ_OK; b0 += batch) {
    const int32_t nb = QQ_MIN(batch, count - b0);
    int32_t opened = 0;
    for (; opened < nb; opened++) {
      int32_t seq;
      if ((st = qq_kv_seq_open(kv, &seq, err)) != QQ_OK) break;
      items[opened] = (qq_forward_item){.seq = seq, .tokens = ids[b0 + opened], .n_tokens = lens[b0 + opened]};
    }
    if (st == QQ_OK) st = qq_model_forward(m, kv, items, nb, out + (size_t)b0 * m->out_dim, err);
    for (int32_t i = 0; i < opened; i++) qq_kv_seq_close(kv, items[i].seq);
  }
  qq_kv_cache_free(kv);
  return st;
}
