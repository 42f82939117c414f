/* engine.c — the engine thread: it alone touches the model and the KV cache.
 *
 * Jobs arrive through a bounded FIFO (qq_engine_submit, from completion-queue threads). A job is
 * admitted when the KV blocks and sequence slots it can ever need are free (reserved up front, so a
 * forward step never runs out of cache mid-request), then split into units, one per KV sequence:
 *   Generate       one unit: prompt prefill, then one token per step;
 *   Classify head  one unit per input: prefill, the last row holds the label logits;
 *   zero-shot      per input one prefix unit, then per candidate label a fork of the prefix
 *                  (qq_kv_seq_fork) fed the label's tokens with every row out, all labels in one step.
 * Each step runs qq_model_forward over: every decoding unit (one token), then prefill chunks in
 * admission order up to --step-tokens. A unit's prompt is always cut at the same chunk boundaries
 * (multiples of --prefill-chunk) whatever else is running, so batching does not change which shapes a
 * sequence goes through. Cancelled, expired and finished units leave between steps and their KV blocks
 * are freed at once.
 *
 * Outputs of a step: a classifier's rows (num_labels wide) are downloaded whole. A language model's
 * rows (vocabulary wide) stay in backend memory: generating units get their next tokens from
 * qq_sampler_pick (argmax, or top-k / top-p candidates; a row download only for plain temperature
 * sampling), zero-shot label tokens their log-probabilities from qq_op_logits_reduce. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Output rows of one step: one per item, plus at most this many more for zero-shot label units (which
 * need a row per label token). Bounds the model's logits buffer at (max_batch + 64) x vocab elements,
 * e.g. 78 MB of fp32 for a 151,936-token vocabulary at --max-batch 64, whatever --step-tokens is (only
 * a classifier's rows are downloaded, into a host buffer of as many rows). */
#define QQ_EXTRA_ROWS 64

typedef struct run run;

typedef struct unit {
  run *r;
  int32_t seq;         /* KV sequence, -1 when closed */
  int32_t input;       /* classify: input index */
  int32_t label;       /* zero-shot: label index, -1 for the prefix unit */
  const int32_t *feed; /* tokens to feed */
  int32_t n_feed, fed;
  bool all_rows;
  bool decoding;       /* generate: the prompt is in, one token per step */
  int32_t tok;         /* generate: the token fed next while decoding */
  struct unit *next;
} unit;

struct run {
  qq_job *job;
  int32_t blocks, seqs; /* reserved */
  int32_t units_left;
  /* generate */
  qq_sampler *sampler;
  qq_detokenizer *detok;
  char *text;           /* every generated character so far */
  size_t text_len, text_cap, sent;
  int32_t max_stop;
  /* zero-shot */
  double *ll;           /* [n_inputs][n_labels] label log-likelihoods */
  run *next;
};

struct qq_engine {
  qq_model *model;
  qq_kv_cache *kv;
  qq_metrics *metrics;
  qq_engine_options opt;
  int32_t out_dim, block_tokens, total_blocks, max_seqs;
  const qq_config *cfg;
  const qq_tokenizer *tok;

  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv, idle_cv;
  qq_job *q_head, *q_tail; /* under mu */
  int32_t q_len;            /* under mu */
  int32_t n_running;        /* under mu (written by the engine thread) */
  bool stop;                /* under mu */
  bool closed;              /* under mu: after an abort, no new jobs (the server is going away) */
  int32_t abort_code;       /* under mu: nonzero = end everything with this code */
  char abort_msg[256];

  /* engine-thread state */
  run *runs;
  unit *units; /* in admission order */
  int32_t reserved_blocks, reserved_seqs;
  float *out;
  size_t out_rows;
  qq_forward_item *items;
  unit **item_units;
  double *lsm;  /* log-softmax scratch [out_dim] */
  /* Language models: a step's outputs are reduced on the backend (rows_on_host false). Per item: its
   * first output row, its entry in the pick arrays (-1: none), its first reduce entry. */
  bool rows_on_host;
  int32_t *item_row, *item_pick, *item_red;
  int32_t *pick_rows, *pick_tokens;
  qq_sampler **pick_samplers;
  int32_t *red_rows, *red_targets; /* [red_cap] */
  qq_logits_stats *red_stats;
  int32_t red_cap;
};

static int32_t blocks_for(const qq_engine *e, int64_t tokens) {
  return (int32_t)((tokens + e->block_tokens - 1) / e->block_tokens);
}

static void job_needs(const qq_engine *e, const qq_job *j, int64_t *blocks, int64_t *seqs) {
  *blocks = 0;
  *seqs = 0;
  switch (j->kind) {
    case QQ_JOB_GENERATE:
      *blocks = blocks_for(e, (int64_t)j->n_prompt + j->max_new);
      *seqs = 1;
      break;
    case QQ_JOB_CLASSIFY_HEAD:
      for (int32_t i = 0; i < j->n_inputs; i++) *blocks += blocks_for(e, j->in_len[i]);
      *seqs = j->n_inputs;
      break;
    case QQ_JOB_CLASSIFY_ZEROSHOT:
      for (int32_t i = 0; i < j->n_inputs; i++) {
        *blocks += blocks_for(e, j->in_len[i]);
        for (int32_t k = 0; k < j->n_labels; k++) *blocks += blocks_for(e, (int64_t)j->in_len[i] + j->lab_len[k]);
      }
      *seqs = (int64_t)j->n_inputs * (1 + j->n_labels);
      break;
  }
}

int32_t qq_engine_max_seq_len(const qq_engine *e) { return e->opt.max_seq_len; }
int32_t qq_engine_kv_blocks(const qq_engine *e) { return e->total_blocks; }
int32_t qq_engine_kv_block_tokens(const qq_engine *e) { return e->block_tokens; }

qq_status qq_engine_submit(qq_engine *e, qq_job *j, qq_error *err) {
  int64_t blocks, seqs;
  job_needs(e, j, &blocks, &seqs);
  if (seqs > e->max_seqs)
    return qq_error_set(err, QQ_ERR_INVALID_ARG,
                        "the request needs %lld sequences at once (inputs x (1 + candidate labels)); the server runs "
                        "at most %d (--max-batch): send fewer inputs or labels per request",
                        (long long)seqs, e->max_seqs);
  if (blocks > e->total_blocks)
    return qq_error_set(err, QQ_ERR_EXHAUSTED,
                        "the request needs %lld KV cache blocks of %d tokens; the cache has %d (--kv-blocks)",
                        (long long)blocks, e->block_tokens, e->total_blocks);
  pthread_mutex_lock(&e->mu);
  if (e->stop || e->abort_code || e->closed) {
    pthread_mutex_unlock(&e->mu);
    return qq_error_set(err, QQ_ERR_CANCELLED, "server is shutting down");
  }
  if (e->q_len >= e->opt.max_queue) {
    int32_t q = e->q_len;
    pthread_mutex_unlock(&e->mu);
    return qq_error_set(err, QQ_ERR_EXHAUSTED, "admission queue full (%d requests waiting, --max-queue %d); retry later",
                        q, e->opt.max_queue);
  }
  j->next = NULL;
  if (e->q_tail) e->q_tail->next = j;
  else e->q_head = j;
  e->q_tail = j;
  e->q_len++;
  pthread_cond_signal(&e->cv);
  pthread_mutex_unlock(&e->mu);
  return QQ_OK;
}

int32_t qq_engine_inflight(qq_engine *e) {
  pthread_mutex_lock(&e->mu);
  int32_t n = e->q_len + e->n_running;
  pthread_mutex_unlock(&e->mu);
  return n;
}

/* ------------------------------------------------------------------ run lifecycle (engine thread) */

static void unit_close(qq_engine *e, unit *u) {
  if (u->seq >= 0) qq_kv_seq_close(e->kv, u->seq);
  u->seq = -1;
}

/* Removes every unit of r, releases its reservation and completes its job. */
static void run_end(qq_engine *e, run *r, int32_t code, const char *msg) {
  /* Units are unlinked later (remove_dead_units): a step may still hold pointers to them. */
  for (unit *u = e->units; u; u = u->next)
    if (u->r == r) {
      unit_close(e, u);
      u->r = NULL;
    }
  for (run **p = &e->runs; *p; p = &(*p)->next)
    if (*p == r) {
      *p = r->next;
      break;
    }
  e->reserved_blocks -= r->blocks;
  e->reserved_seqs -= r->seqs;
  qq_job *j = r->job;
  j->code = code;
  if (msg) snprintf(j->msg, sizeof j->msg, "%s", msg);
  if (code == 0 && j->kind == QQ_JOB_CLASSIFY_ZEROSHOT)
    for (int32_t i = 0; i < j->n_inputs * j->n_labels; i++) j->scores[i] = (float)r->ll[i];
  if (j->kind == QQ_JOB_GENERATE && code == 0 && j->n_generated > 1 && j->t_last > j->t_first)
    qq_metrics_tpot(e->metrics, (j->t_last - j->t_first) / (j->n_generated - 1));
  qq_sampler_free(r->sampler);
  qq_detokenizer_free(r->detok);
  free(r->text);
  free(r->ll);
  free(r);
  pthread_mutex_lock(&e->mu);
  e->n_running--;
  pthread_mutex_unlock(&e->mu);
  j->complete(j); /* frees the job */
  pthread_mutex_lock(&e->mu);
  pthread_cond_broadcast(&e->idle_cv);
  pthread_mutex_unlock(&e->mu);
}

static unit *unit_add(qq_engine *e, run *r, int32_t input, int32_t label, const int32_t *feed, int32_t n, bool all_rows) {
  unit *u = calloc(1, sizeof *u);
  if (!u) return NULL;
  u->r = r;
  u->seq = -1;
  u->input = input;
  u->label = label;
  u->feed = feed;
  u->n_feed = n;
  u->all_rows = all_rows;
  unit **p = &e->units;
  while (*p) p = &(*p)->next;
  *p = u;
  r->units_left++;
  return u;
}

/* Starts a job: reservation already checked. Returns false (job completed with an error) on failure. */
static void run_start(qq_engine *e, qq_job *j, int32_t blocks, int32_t seqs) {
  qq_error err = {0};
  run *r = calloc(1, sizeof *r);
  if (!r) {
    j->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
    snprintf(j->msg, sizeof j->msg, "server out of memory");
    pthread_mutex_lock(&e->mu);
    e->n_running--;
    pthread_mutex_unlock(&e->mu);
    j->complete(j);
    return;
  }
  r->job = j;
  r->blocks = blocks;
  r->seqs = seqs;
  r->next = e->runs;
  e->runs = r;
  e->reserved_blocks += blocks;
  e->reserved_seqs += seqs;
  bool ok = true;
  switch (j->kind) {
    case QQ_JOB_GENERATE: {
      for (int32_t i = 0; i < j->n_stops; i++) r->max_stop = QQ_MAX(r->max_stop, (int32_t)strlen(j->stops[i]));
      if (qq_sampler_create(&j->sampling, &r->sampler, &err) || qq_detokenizer_create(e->tok, true, &r->detok, &err)) {
        ok = false;
        break;
      }
      unit *u = unit_add(e, r, 0, -1, j->prompt, j->n_prompt, false);
      ok = u && !qq_kv_seq_open(e->kv, &u->seq, &err);
      break;
    }
    case QQ_JOB_CLASSIFY_HEAD:
    case QQ_JOB_CLASSIFY_ZEROSHOT:
      j->scores = calloc((size_t)j->n_inputs * (size_t)j->n_out, sizeof(float));
      if (j->kind == QQ_JOB_CLASSIFY_ZEROSHOT)
        r->ll = calloc((size_t)j->n_inputs * (size_t)j->n_labels, sizeof(double));
      ok = j->scores && (j->kind == QQ_JOB_CLASSIFY_HEAD || r->ll);
      for (int32_t i = 0; ok && i < j->n_inputs; i++) {
        unit *u = unit_add(e, r, i, -1, j->in_ids[i], j->in_len[i], false);
        ok = u && !qq_kv_seq_open(e->kv, &u->seq, &err);
      }
      break;
  }
  if (!ok) {
    QQ_LOGE("engine", "cannot start a request: %s", err.msg[0] ? err.msg : "out of memory");
    run_end(e, r, GRPC_STATUS_INTERNAL, err.msg[0] ? err.msg : "server out of memory");
  }
}

/* ------------------------------------------------------------------ generation */

static bool text_append(run *r, const char *s, size_t n) {
  if (r->text_len + n + 1 > r->text_cap) {
    size_t nc = r->text_cap ? r->text_cap * 2 : 256;
    while (nc < r->text_len + n + 1) nc *= 2;
    char *q = realloc(r->text, nc);
    if (!q) return false;
    r->text = q;
    r->text_cap = nc;
  }
  memcpy(r->text + r->text_len, s, n);
  r->text_len += n;
  r->text[r->text_len] = 0;
  return true;
}

/* Where the first stop string starts at or after `from`, or -1. */
static int64_t find_stop(const run *r, const qq_job *j, size_t from) {
  int64_t best = -1;
  for (int32_t i = 0; i < j->n_stops; i++) {
    const char *p = memmem(r->text + from, r->text_len - from, j->stops[i], strlen(j->stops[i]));
    if (p && (best < 0 || p - r->text < best)) best = p - r->text;
  }
  return best;
}

/* Bytes at the end of the text that could be the start of a stop string (held back). */
static size_t stop_hold(const run *r, const qq_job *j) {
  size_t avail = r->text_len - r->sent, best = 0;
  for (int32_t i = 0; i < j->n_stops; i++) {
    size_t sl = strlen(j->stops[i]);
    for (size_t k = QQ_MIN(sl - 1, avail); k > best; k--)
      if (!memcmp(r->text + r->text_len - k, j->stops[i], k)) {
        best = k;
        break;
      }
  }
  return best;
}

static bool is_eos(const qq_engine *e, int32_t t) {
  for (int32_t i = 0; i < e->cfg->n_eos; i++)
    if (e->cfg->eos_token_ids[i] == t) return true;
  return false;
}

/* Handles the next token t of a generate unit whose input is complete. Returns true when the run ended. */
static bool gen_step(qq_engine *e, unit *u, int32_t t) {
  run *r = u->r;
  qq_job *j = r->job;
  qq_error err = {0};
  double now = qq_now_sec();
  if (j->n_generated == 0) {
    j->t_first = now;
    qq_metrics_ttft(e->metrics, now - j->t_submit);
  }
  j->t_last = now;
  j->n_generated++;
  qq_metrics_tokens(e->metrics, 0, 1);
  int32_t reason = 0;
  size_t before = r->text_len;
  if (is_eos(e, t) && !j->ignore_eos) {
    reason = QQUANT__V1__FINISH_REASON__FINISH_REASON_EOS;
  } else {
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (qq_detokenizer_push(r->detok, t, &buf, &len, &cap, &err) || (len && !text_append(r, buf, len))) {
      free(buf);
      run_end(e, r, GRPC_STATUS_INTERNAL, err.msg[0] ? err.msg : "server out of memory");
      return true;
    }
    free(buf);
  }
  if (!reason && j->n_generated >= j->max_new) reason = QQUANT__V1__FINISH_REASON__FINISH_REASON_LENGTH;
  if (reason) { /* flush what the detokenizer still holds (an incomplete UTF-8 tail becomes U+FFFD) */
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (!qq_detokenizer_finish(r->detok, &buf, &len, &cap, &err) && len) text_append(r, buf, len);
    free(buf);
  }
  size_t upto = r->text_len;
  if (j->n_stops && r->text_len > before) {
    int64_t at = find_stop(r, j, r->sent);
    if (at >= 0) {
      upto = (size_t)at;
      reason = QQUANT__V1__FINISH_REASON__FINISH_REASON_STOP;
    } else if (!reason) {
      upto = r->text_len - stop_hold(r, j);
    }
  }
  j->emit(j, &t, 1, r->text + r->sent, upto - r->sent);
  r->sent = upto;
  if (reason) {
    j->finish_reason = reason;
    run_end(e, r, 0, NULL);
    return true;
  }
  u->tok = t;
  u->feed = &u->tok;
  u->n_feed = 1;
  u->fed = 0;
  u->decoding = true;
  return false;
}

/* ------------------------------------------------------------------ classification */

static void log_softmax(const float *x, int32_t n, double *out) {
  double mx = -INFINITY, s = 0;
  for (int32_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
  for (int32_t i = 0; i < n; i++) s += exp((double)x[i] - mx);
  double lse = mx + log(s);
  for (int32_t i = 0; i < n; i++) out[i] = (double)x[i] - lse;
}

/* A classify unit finished its input. rows: its last row on the host, or NULL when the rows stay in
 * backend memory; then a zero-shot prefix's label log-probabilities are in e->red_stats from entry red.
 * Returns true if the run ended. */
static bool cls_unit_done(qq_engine *e, unit *u, const float *rows, int32_t red) {
  run *r = u->r;
  qq_job *j = r->job;
  qq_error err = {0};
  if (j->kind == QQ_JOB_CLASSIFY_HEAD) {
    memcpy(j->scores + (size_t)u->input * (size_t)j->n_out, rows, (size_t)j->n_out * sizeof(float));
  } else if (u->label < 0) {
    /* prefix done: the first token of every label is scored from its last row; longer labels fork */
    if (rows) log_softmax(rows, e->out_dim, e->lsm);
    for (int32_t k = 0; k < j->n_labels; k++) {
      r->ll[(size_t)u->input * (size_t)j->n_labels + (size_t)k] =
          rows ? e->lsm[j->lab_ids[k][0]] : (double)e->red_stats[red + k].target - e->red_stats[red + k].lse;
      if (j->lab_len[k] < 2) continue;
      unit *f = unit_add(e, r, u->input, k, j->lab_ids[k], j->lab_len[k] - 1, true);
      if (!f || qq_kv_seq_fork(e->kv, u->seq, u->n_feed, &f->seq, &err)) {
        run_end(e, r, GRPC_STATUS_INTERNAL, err.msg[0] ? err.msg : "server out of memory");
        return true;
      }
    }
  }
  unit_close(e, u);
  r->units_left--;
  return false;
}

/* Rows of a zero-shot label unit: row i predicts label token i + 1. rows on the host, or NULL: the
 * log-probabilities are in e->red_stats from entry red. */
static void label_rows(qq_engine *e, unit *u, const float *rows, int32_t red, int32_t first, int32_t n) {
  run *r = u->r;
  qq_job *j = r->job;
  for (int32_t i = 0; i < n; i++) {
    int32_t pos = first + i; /* index in the label of the token fed */
    double lp;
    if (rows) {
      log_softmax(rows + (size_t)i * (size_t)e->out_dim, e->out_dim, e->lsm);
      lp = e->lsm[j->lab_ids[u->label][pos + 1]];
    } else {
      lp = (double)e->red_stats[red + i].target - e->red_stats[red + i].lse;
    }
    r->ll[(size_t)u->input * (size_t)j->n_labels + (size_t)u->label] += lp;
  }
}

static bool red_reserve(qq_engine *e, int32_t need) {
  if (need <= e->red_cap) return true;
  int32_t cap = e->red_cap ? e->red_cap : 256;
  while (cap < need) cap *= 2;
  int32_t *rr = realloc(e->red_rows, (size_t)cap * sizeof(int32_t));
  if (rr) e->red_rows = rr;
  int32_t *rt = realloc(e->red_targets, (size_t)cap * sizeof(int32_t));
  if (rt) e->red_targets = rt;
  qq_logits_stats *rs = realloc(e->red_stats, (size_t)cap * sizeof *rs);
  if (rs) e->red_stats = rs;
  if (!rr || !rt || !rs) return false;
  e->red_cap = cap;
  return true;
}

/* Language models: what the step's items need from the rows in backend memory, computed there before
 * the items are handled (the tokens of generating units, the label log-probabilities of zero-shot
 * units; a classify-head unit's row, which a language model never has, downloaded). */
static qq_status reduce_outputs(qq_engine *e, int32_t n_items, const void *logits, qq_error *err) {
  int32_t row = 0, n_pick = 0, n_red = 0;
  for (int32_t i = 0; i < n_items; i++) {
    unit *u = e->item_units[i];
    const qq_forward_item *it = &e->items[i];
    const int32_t nrows = it->all_rows ? it->n_tokens : 1;
    e->item_row[i] = row;
    e->item_pick[i] = -1;
    e->item_red[i] = n_red;
    row += nrows;
    if (!u->r || u->seq < 0) continue;
    const bool done = u->fed + it->n_tokens >= u->n_feed;
    const qq_job *j = u->r->job;
    if (j->kind == QQ_JOB_GENERATE) {
      if (!done) continue;
      e->item_pick[i] = n_pick;
      e->pick_rows[n_pick] = e->item_row[i];
      e->pick_samplers[n_pick++] = u->r->sampler;
    } else if (j->kind == QQ_JOB_CLASSIFY_ZEROSHOT && u->label >= 0) {
      if (!red_reserve(e, n_red + nrows)) return qq_error_set(err, QQ_ERR_NOMEM, "engine: out of memory");
      for (int32_t k = 0; k < nrows; k++) {
        e->red_rows[n_red] = e->item_row[i] + k;
        e->red_targets[n_red++] = j->lab_ids[u->label][u->fed + k + 1];
      }
    } else if (j->kind == QQ_JOB_CLASSIFY_ZEROSHOT && done) {
      if (!red_reserve(e, n_red + j->n_labels)) return qq_error_set(err, QQ_ERR_NOMEM, "engine: out of memory");
      for (int32_t k = 0; k < j->n_labels; k++) { /* the last row, once per label (computed once) */
        e->red_rows[n_red] = e->item_row[i] + nrows - 1;
        e->red_targets[n_red++] = j->lab_ids[k][0];
      }
    }
  }
  qq_backend *be = qq_model_backend(e->model);
  qq_status st = qq_sampler_pick(be, logits, e->out_dim, e->pick_samplers, e->pick_rows, n_pick, e->pick_tokens, err);
  if (st == QQ_OK)
    st = qq_op_logits_reduce(be, logits, e->out_dim, e->red_rows, e->red_targets, n_red, true, e->red_stats, err);
  return st;
}

/* ------------------------------------------------------------------ the loop */

static void remove_dead_units(qq_engine *e) {
  for (unit **p = &e->units; *p;) {
    if ((*p)->seq < 0 || !(*p)->r) {
      unit *u = *p;
      *p = u->next;
      free(u);
    } else {
      p = &(*p)->next;
    }
  }
}

static void expire(qq_engine *e, double now) {
  for (run *r = e->runs, *n; r; r = n) {
    n = r->next;
    qq_job *j = r->job;
    if (j->cancelled && atomic_load(j->cancelled)) run_end(e, r, GRPC_STATUS_CANCELLED, "cancelled by the client");
    else if (j->deadline > 0 && now >= j->deadline) run_end(e, r, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
  }
  remove_dead_units(e);
}

static void step(qq_engine *e) {
  int32_t n_items = 0, tokens = 0;
  size_t rows = 0;
  /* decoding units first: one token each */
  for (unit *u = e->units; u && n_items < e->opt.max_batch; u = u->next) {
    if (!u->decoding || u->seq < 0) continue;
    e->items[n_items] = (qq_forward_item){u->seq, u->feed, 1, false};
    e->item_units[n_items++] = u;
    tokens++;
    rows++;
  }
  /* then prefill chunks, in admission order, at fixed chunk boundaries */
  int32_t extra_rows = 0; /* rows beyond one per item (zero-shot label units want every row) */
  for (unit *u = e->units; u && n_items < e->opt.max_batch; u = u->next) {
    if (u->decoding || u->seq < 0 || u->fed >= u->n_feed) continue;
    int32_t chunk = QQ_MIN(u->n_feed - u->fed, u->all_rows ? QQ_EXTRA_ROWS + 1 : e->opt.prefill_chunk);
    if (u->all_rows && extra_rows + chunk - 1 > QQ_EXTRA_ROWS) continue;
    if (tokens + chunk > e->opt.step_tokens && n_items > 0) break;
    if (u->all_rows) extra_rows += chunk - 1;
    e->items[n_items] = (qq_forward_item){u->seq, u->feed + u->fed, chunk, u->all_rows};
    e->item_units[n_items++] = u;
    tokens += chunk;
    rows += u->all_rows ? (size_t)chunk : 1;
  }
  if (!n_items) return;
  qq_error err = {0};
  double t0 = qq_now_sec();
  const void *logits = NULL;
  qq_status st = qq_model_forward_dev(e->model, e->kv, e->items, n_items, &logits, &err);
  if (!st && e->rows_on_host)
    st = qq_backend_download_f32(qq_model_backend(e->model), logits, rows * (size_t)e->out_dim, e->out, &err);
  else if (!st)
    st = reduce_outputs(e, n_items, logits, &err);
  if (st) {
    QQ_LOGE("engine", "forward step over %d sequences failed: %s", n_items, err.msg);
    char msg[300];
    snprintf(msg, sizeof msg, "model forward failed: %.250s", err.msg);
    for (int32_t i = 0; i < n_items; i++)
      if (e->item_units[i]->r) run_end(e, e->item_units[i]->r, GRPC_STATUS_INTERNAL, msg);
    remove_dead_units(e);
    return;
  }
  /* results, item by item; a run that ends removes its units, so check liveness by run pointer */
  const float *row = e->out;
  for (int32_t i = 0; i < n_items; i++) {
    unit *u = e->item_units[i];
    const qq_forward_item *it = &e->items[i];
    size_t nrows = it->all_rows ? (size_t)it->n_tokens : 1;
    const float *my = e->rows_on_host ? row : NULL;
    if (e->rows_on_host) row += nrows * (size_t)e->out_dim;
    if (!u->r || u->seq < 0) continue; /* its run ended earlier in this loop */
    int32_t first = u->fed;
    u->fed += it->n_tokens;
    qq_job *j = u->r->job;
    if (j->kind == QQ_JOB_GENERATE) {
      if (u->fed >= u->n_feed)
        gen_step(e, u, my ? qq_sampler_sample(u->r->sampler, my, e->out_dim) : e->pick_tokens[e->item_pick[i]]);
      continue;
    }
    run *r = u->r;
    if (!my && j->kind == QQ_JOB_CLASSIFY_HEAD && u->fed >= u->n_feed) {
      /* not with a language model's engine; kept correct all the same */
      const size_t row_bytes = (size_t)e->out_dim * qq_backend_act_bytes(qq_model_backend(e->model));
      if (qq_backend_download_f32(qq_model_backend(e->model),
                                  (const uint8_t *)logits + (size_t)(e->item_row[i] + nrows - 1) * row_bytes,
                                  (size_t)e->out_dim, e->out, &err)) {
        run_end(e, r, GRPC_STATUS_INTERNAL, err.msg);
        continue;
      }
      my = e->out;
    }
    if (u->label >= 0) {
      label_rows(e, u, my, e->item_red[i], first, it->n_tokens);
      if (u->fed >= u->n_feed) {
        unit_close(e, u);
        r->units_left--;
      }
    } else if (u->fed >= u->n_feed) {
      if (cls_unit_done(e, u, my, e->item_red[i])) continue;
    }
    if (r->units_left == 0) run_end(e, r, 0, NULL);
  }
  remove_dead_units(e);
  double dt = qq_now_sec() - t0;
  qq_metrics_step(e->metrics, n_items, tokens, dt);
}

static void publish_gauges(qq_engine *e) {
  int32_t active = 0;
  for (unit *u = e->units; u; u = u->next) active++;
  pthread_mutex_lock(&e->mu);
  int32_t q = e->q_len;
  pthread_mutex_unlock(&e->mu);
  qq_metrics_gauges(e->metrics, q, active, e->reserved_blocks, e->total_blocks);
}

static void abort_everything(qq_engine *e, int32_t code, const char *msg) {
  while (e->runs) run_end(e, e->runs, code, msg);
  remove_dead_units(e);
  for (;;) {
    pthread_mutex_lock(&e->mu);
    qq_job *j = e->q_head;
    if (j) {
      e->q_head = j->next;
      if (!e->q_head) e->q_tail = NULL;
      e->q_len--;
    }
    pthread_mutex_unlock(&e->mu);
    if (!j) break;
    j->code = code;
    snprintf(j->msg, sizeof j->msg, "%s", msg);
    j->complete(j);
  }
}

/* Completes queued jobs whose client went away or whose deadline passed, wherever they are in the
 * queue (they would otherwise hold a queue slot until they reach its head). */
static void sweep_queue(qq_engine *e, double now) {
  qq_job *gone = NULL;
  pthread_mutex_lock(&e->mu);
  qq_job *prev = NULL;
  for (qq_job *j = e->q_head, *n; j; j = n) {
    n = j->next;
    bool cancelled = j->cancelled && atomic_load(j->cancelled);
    if (cancelled || (j->deadline > 0 && now >= j->deadline)) {
      if (prev) prev->next = n;
      else e->q_head = n;
      if (e->q_tail == j) e->q_tail = prev;
      e->q_len--;
      j->code = cancelled ? GRPC_STATUS_CANCELLED : GRPC_STATUS_DEADLINE_EXCEEDED;
      snprintf(j->msg, sizeof j->msg, "%s", cancelled ? "cancelled by the client" : "deadline exceeded while queued");
      j->next = gone;
      gone = j;
    } else {
      prev = j;
    }
  }
  pthread_mutex_unlock(&e->mu);
  for (qq_job *j = gone, *n; j; j = n) {
    n = j->next;
    j->complete(j);
  }
}

static void *engine_main(void *arg) {
  qq_engine *e = arg;
  for (;;) {
    pthread_mutex_lock(&e->mu);
    while (!e->stop && !e->abort_code && !e->q_head && !e->runs) {
      pthread_cond_broadcast(&e->idle_cv);
      pthread_cond_wait(&e->cv, &e->mu);
    }
    bool stop = e->stop;
    int32_t abort_code = e->abort_code;
    char abort_msg[256];
    snprintf(abort_msg, sizeof abort_msg, "%s", e->abort_msg);
    pthread_mutex_unlock(&e->mu);
    if (abort_code || stop) {
      abort_everything(e, abort_code ? abort_code : GRPC_STATUS_UNAVAILABLE,
                       abort_code ? abort_msg : "server shutting down");
      pthread_mutex_lock(&e->mu);
      e->abort_code = 0;
      pthread_cond_broadcast(&e->idle_cv);
      pthread_mutex_unlock(&e->mu);
      if (stop) break;
      continue;
    }
    double now = qq_now_sec();
    expire(e, now);
    sweep_queue(e, now);
    /* admit from the head of the queue while the reservation fits */
    for (;;) {
      pthread_mutex_lock(&e->mu);
      qq_job *j = e->q_head;
      if (!j) {
        pthread_mutex_unlock(&e->mu);
        break;
      }
      bool gone = (j->cancelled && atomic_load(j->cancelled)) || (j->deadline > 0 && now >= j->deadline);
      int64_t blocks, seqs;
      job_needs(e, j, &blocks, &seqs);
      bool fits = e->reserved_blocks + blocks <= e->total_blocks && e->reserved_seqs + seqs <= e->max_seqs;
      if (!gone && !fits) {
        pthread_mutex_unlock(&e->mu);
        break;
      }
      e->q_head = j->next;
      if (!e->q_head) e->q_tail = NULL;
      e->q_len--;
      e->n_running++;
      pthread_mutex_unlock(&e->mu);
      if (gone) {
        bool cancelled = j->cancelled && atomic_load(j->cancelled);
        j->code = cancelled ? GRPC_STATUS_CANCELLED : GRPC_STATUS_DEADLINE_EXCEEDED;
        snprintf(j->msg, sizeof j->msg, "%s", cancelled ? "cancelled by the client" : "deadline exceeded while queued");
        pthread_mutex_lock(&e->mu);
        e->n_running--;
        pthread_mutex_unlock(&e->mu);
        j->complete(j);
        continue;
      }
      run_start(e, j, (int32_t)blocks, (int32_t)seqs);
    }
    publish_gauges(e);
    step(e);
    publish_gauges(e);
  }
  return NULL;
}

void qq_engine_abort_all(qq_engine *e, int32_t code, const char *msg) {
  pthread_mutex_lock(&e->mu);
  e->closed = true;
  e->abort_code = code ? code : GRPC_STATUS_UNAVAILABLE;
  snprintf(e->abort_msg, sizeof e->abort_msg, "%s", msg ? msg : "aborted");
  pthread_cond_signal(&e->cv);
  while (e->abort_code || e->q_len + e->n_running > 0) pthread_cond_wait(&e->idle_cv, &e->mu);
  pthread_mutex_unlock(&e->mu);
}

qq_status qq_engine_create(qq_model *model, const qq_engine_options *opt, qq_metrics *metrics, qq_engine **out,
                           qq_error *err) {
  *out = NULL;
  qq_engine *e = calloc(1, sizeof *e);
  if (!e) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  e->model = model;
  e->metrics = metrics;
  e->opt = *opt;
  e->cfg = qq_model_config(model);
  e->tok = qq_model_tokenizer(model);
  e->out_dim = qq_model_output_dim(model);
  if (!e->tok) {
    free(e);
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "the model was loaded without its tokenizer");
  }
  int32_t ctx = e->cfg->max_position_embeddings > 0 ? e->cfg->max_position_embeddings : 2048;
  if (e->opt.max_seq_len <= 0 || e->opt.max_seq_len > ctx) {
    if (e->opt.max_seq_len > ctx)
      QQ_LOGW("engine", "--max-seq-len %d is more than the model's context %d; using %d", e->opt.max_seq_len, ctx, ctx);
    e->opt.max_seq_len = ctx;
  }
  if (e->opt.prefill_chunk > e->opt.step_tokens) e->opt.prefill_chunk = e->opt.step_tokens;
  qq_kv_options ko = qq_kv_options_default();
  ko.max_seqs = e->opt.max_batch;
  ko.max_seq_len = e->opt.max_seq_len;
  e->block_tokens = ko.block_tokens > 0 ? ko.block_tokens : 16;
  ko.block_tokens = e->block_tokens;
  /* 0: qq_kv_cache_create's default, max_batch full-length sequences, capped by free device memory. */
  ko.n_blocks = e->opt.kv_blocks > 0 ? e->opt.kv_blocks : 0;
  qq_status st = qq_kv_cache_create(model, &ko, &e->kv, err);
  if (st) {
    free(e);
    return qq_error_prefix(err, "creating the KV cache (%d blocks)", ko.n_blocks);
  }
  e->total_blocks = qq_kv_total_blocks(e->kv);
  e->max_seqs = e->opt.max_batch;
  /* A classifier's rows are a few labels wide: downloaded whole. A language model's stay on the
   * backend; one host row remains for the rare row download. */
  e->rows_on_host = e->cfg->task != QQ_TASK_CAUSAL_LM;
  e->out_rows = e->rows_on_host ? (size_t)e->opt.max_batch + QQ_EXTRA_ROWS : 1;
  e->out = malloc(e->out_rows * (size_t)e->out_dim * sizeof(float));
  e->items = calloc((size_t)e->opt.max_batch, sizeof *e->items);
  e->item_units = calloc((size_t)e->opt.max_batch, sizeof *e->item_units);
  e->lsm = malloc((size_t)e->out_dim * sizeof(double));
  const size_t mb = (size_t)e->opt.max_batch;
  e->item_row = malloc(mb * 3 * sizeof(int32_t));
  e->pick_rows = malloc(mb * 2 * sizeof(int32_t));
  e->pick_samplers = malloc(mb * sizeof *e->pick_samplers);
  if (e->item_row) e->item_pick = e->item_row + mb, e->item_red = e->item_row + 2 * mb;
  if (e->pick_rows) e->pick_tokens = e->pick_rows + mb;
  pthread_mutex_init(&e->mu, NULL);
  pthread_cond_init(&e->cv, NULL);
  pthread_cond_init(&e->idle_cv, NULL);
  if (!e->out || !e->items || !e->item_units || !e->lsm || !e->item_row || !e->pick_rows || !e->pick_samplers ||
      pthread_create(&e->thread, NULL, engine_main, e)) {
    qq_kv_cache_free(e->kv);
    free(e->out);
    free(e->items);
    free(e->item_units);
    free(e->lsm);
    free(e->item_row);
    free(e->pick_rows);
    free(e->pick_samplers);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    pthread_cond_destroy(&e->idle_cv);
    free(e);
    return qq_error_set(err, QQ_ERR_NOMEM, "cannot allocate the engine's step buffers or start its thread");
  }
  QQ_LOGI("engine", "KV cache: %d blocks of %d tokens, %d sequences of at most %d tokens; steps of at most %d tokens",
          e->total_blocks, e->block_tokens, e->max_seqs, e->opt.max_seq_len, e->opt.step_tokens);
  *out = e;
  return QQ_OK;
}

void qq_engine_free(qq_engine *e) {
  if (!e) return;
  pthread_mutex_lock(&e->mu);
  e->stop = true;
  pthread_cond_signal(&e->cv);
  pthread_mutex_unlock(&e->mu);
  pthread_join(e->thread, NULL);
  qq_kv_cache_free(e->kv);
  free(e->out);
  free(e->items);
  free(e->item_units);
  free(e->lsm);
  free(e->item_row);
  free(e->pick_rows);
  free(e->pick_samplers);
  free(e->red_rows);
  free(e->red_targets);
  free(e->red_stats);
  pthread_mutex_destroy(&e->mu);
  pthread_cond_destroy(&e->cv);
  pthread_cond_destroy(&e->idle_cv);
  free(e);
}
