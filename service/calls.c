/* calls.c — the qquant.v1.Inference methods: decode and validate a request, tokenize it on the
 * completion-queue thread, hand a job to the engine, and turn the engine's results into responses. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void qq_job_free(qq_job *j) {
  if (!j) return;
  free(j->prompt);
  for (int32_t i = 0; i < j->n_stops; i++) free(j->stops[i]);
  free(j->stops);
  for (int32_t i = 0; i < j->n_inputs; i++) free(j->in_ids ? j->in_ids[i] : NULL);
  free(j->in_ids);
  free(j->in_len);
  for (int32_t i = 0; i < j->n_labels; i++) free(j->lab_ids ? j->lab_ids[i] : NULL);
  free(j->lab_ids);
  free(j->lab_len);
  free(j->scores);
  free(j);
}

static int status_to_grpc(qq_status st) {
  switch (st) {
    case QQ_OK: return GRPC_STATUS_OK;
    case QQ_ERR_INVALID_ARG:
    case QQ_ERR_RANGE:
    case QQ_ERR_FORMAT: return GRPC_STATUS_INVALID_ARGUMENT;
    case QQ_ERR_NOT_FOUND: return GRPC_STATUS_INVALID_ARGUMENT;
    case QQ_ERR_EXHAUSTED:
    case QQ_ERR_NOMEM: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case QQ_ERR_CANCELLED: return GRPC_STATUS_UNAVAILABLE;
    case QQ_ERR_UNSUPPORTED: return GRPC_STATUS_UNIMPLEMENTED;
    default: return GRPC_STATUS_INTERNAL;
  }
}

static void fail(qq_call *c, qq_status st, const qq_error *err) {
  qq_call_finish(c, status_to_grpc(st), err->msg[0] ? err->msg : qq_status_name(st));
}

/* Tokenizes text (already checked to be valid UTF-8) into a fresh array. */
static qq_status tokenize(const qq_tokenizer *tok, const char *text, size_t len, bool add_special, int32_t **ids,
                          int32_t *n, qq_error *err) {
  qq_token_ids t = {0};
  qq_encode_options o = qq_encode_options_default();
  o.add_special = add_special;
  qq_status st = qq_tokenizer_encode(tok, text, len, &o, &t, err);
  if (st) {
    qq_token_ids_free(&t);
    return st;
  }
  *ids = t.ids;
  *n = (int32_t)t.n;
  return QQ_OK;
}

static void job_bind(qq_job *j, qq_call *c) {
  j->user = c;
  j->cancelled = qq_call_cancel_flag(c);
  j->deadline = qq_call_deadline(c);
  j->t_submit = qq_now_sec();
  qq_call_ref(c); /* released in job_complete */
}

static qq_status submit(qq_call *c, qq_job *j, qq_error *err) {
  qq_status st = qq_engine_submit(qq_server_engine(qq_call_server(c)), j, err);
  if (st) qq_call_unref(c);
  return st;
}

/* ------------------------------------------------------------------ Generate */

static void gen_emit(qq_job *j, const int32_t *ids, int32_t n, const char *text, size_t len) {
  qq_call_gen_append(j->user, ids, n, text, len);
}

static void gen_complete(qq_job *j) {
  qq_call *c = j->user;
  if (j->code == GRPC_STATUS_OK)
    qq_call_gen_close(c, j->finish_reason, (uint32_t)j->n_prompt, (uint32_t)j->n_generated);
  else
    qq_call_finish(c, j->code, j->msg);
  qq_call_unref(c);
  qq_job_free(j);
}

void qq_calls_generate(qq_call *c, const uint8_t *data, size_t len) {
  qq_server *s = qq_call_server(c);
  qq_error err = {0};
  qq_status st = QQ_OK;
  qq_job *j = NULL;
  Qquant__V1__GenerateRequest *r = qquant__v1__generate_request__unpack(NULL, len, data);
  if (!r) {
    qq_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "the request is not a valid qquant.v1.GenerateRequest");
    return;
  }
  const qq_request_limits *lim = qq_server_limits(s);
  if ((st = qq_validate_generate(r, lim, &err))) goto out;
  j = calloc(1, sizeof *j);
  if (!j) {
    st = qq_error_set(&err, QQ_ERR_NOMEM, "out of memory");
    goto out;
  }
  j->kind = QQ_JOB_GENERATE;
  if (r->n_prompt_token_ids) {
    j->prompt = malloc(r->n_prompt_token_ids * sizeof(int32_t));
    if (!j->prompt) {
      st = qq_error_set(&err, QQ_ERR_NOMEM, "out of memory");
      goto out;
    }
    memcpy(j->prompt, r->prompt_token_ids, r->n_prompt_token_ids * sizeof(int32_t));
    j->n_prompt = (int32_t)r->n_prompt_token_ids;
  } else {
    const qq_tokenizer *tok = qq_model_tokenizer(qq_server_model(s));
    if ((st = tokenize(tok, r->prompt, strlen(r->prompt), true, &j->prompt, &j->n_prompt, &err))) {
      qq_error_prefix(&err, "prompt");
      goto out;
    }
    if (j->n_prompt == 0) {
      st = qq_error_set(&err, QQ_ERR_INVALID_ARG, "prompt: tokenizes to no tokens");
      goto out;
    }
  }
  j->max_new = r->max_new_tokens ? (int32_t)r->max_new_tokens : 16;
  if ((int64_t)j->n_prompt + j->max_new > lim->max_seq_len) {
    st = qq_error_set(&err, QQ_ERR_INVALID_ARG,
                      "too many tokens: prompt has %d tokens and max_new_tokens is %d; together at most %d (max-seq-len)",
                      j->n_prompt, j->max_new, lim->max_seq_len);
    goto out;
  }
  j->sampling = qq_sampling_default();
  j->sampling.temperature = r->temperature;
  j->sampling.top_k = (int32_t)r->top_k;
  j->sampling.top_p = r->top_p > 0 ? r->top_p : 1.0f;
  j->sampling.seed = r->seed;
  if ((st = qq_sampling_check(&j->sampling, &err))) goto out;
  j->ignore_eos = r->ignore_eos;
  if (r->n_stop) {
    j->stops = calloc(r->n_stop, sizeof(char *));
    if (!j->stops) {
      st = qq_error_set(&err, QQ_ERR_NOMEM, "out of memory");
      goto out;
    }
    for (size_t i = 0; i < r->n_stop; i++) {
      j->stops[i] = strdup(r->stop[i]);
      j->n_stops++;
      if (!j->stops[i]) {
        st = qq_error_set(&err, QQ_ERR_NOMEM, "out of memory");
        goto out;
      }
    }
  }
  j->emit = gen_emit;
  j->complete = gen_complete;
  qq_metrics_tokens(qq_server_metrics(s), j->n_prompt, 0);
  job_bind(j, c);
  if ((st = submit(c, j, &err))) goto out;
  j = NULL; /* the engine owns it */
out:
  if (st) fail(c, st, &err);
  qq_job_free(j);
  qquant__v1__generate_request__free_unpacked(r, NULL);
}

/* ------------------------------------------------------------------ Classify */

typedef struct cls_ctx {
  int32_t n_sel;       /* labels reported */
  int32_t *sel;        /* head mode: the head label index of each reported label */
  char **names;        /* label names, n_sel */
  int32_t *tokens;     /* input tokens after truncation, per input */
  bool *truncated;
} cls_ctx;

/* The job carries its response context after the job's own fields; we keep it beside the job. */
typedef struct cls_job {
  qq_job job; /* must be first: the engine sees a qq_job */
  cls_ctx ctx;
} cls_job;

static void cls_job_free(cls_job *cj) {
  if (!cj) return;
  for (int32_t i = 0; cj->ctx.names && i < cj->ctx.n_sel; i++) free(cj->ctx.names[i]);
  free(cj->ctx.names);
  free(cj->ctx.sel);
  free(cj->ctx.tokens);
  free(cj->ctx.truncated);
  /* qq_job_free frees the job's own arrays and the block itself (job is the first member). */
  qq_job_free(&cj->job);
}

static void cls_complete(qq_job *j) {
  cls_job *cj = (cls_job *)j;
  qq_call *c = j->user;
  if (j->code != GRPC_STATUS_OK) {
    qq_call_finish(c, j->code, j->msg);
    qq_call_unref(c);
    cls_job_free(cj);
    return;
  }
  int32_t n_in = j->n_inputs, n_sel = cj->ctx.n_sel;
  Qquant__V1__ClassifyResponse resp = QQUANT__V1__CLASSIFY_RESPONSE__INIT;
  Qquant__V1__Usage usage = QQUANT__V1__USAGE__INIT;
  Qquant__V1__Classification *res = calloc((size_t)n_in, sizeof *res);
  Qquant__V1__Classification **resp_ptrs = calloc((size_t)n_in, sizeof *resp_ptrs);
  Qquant__V1__LabelScore *ls = calloc((size_t)n_in * (size_t)n_sel, sizeof *ls);
  Qquant__V1__LabelScore **ls_ptrs = calloc((size_t)n_in * (size_t)n_sel, sizeof *ls_ptrs);
  if (!res || !resp_ptrs || !ls || !ls_ptrs) {
    qq_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "server out of memory");
    goto done;
  }
  uint32_t total = 0;
  for (int32_t i = 0; i < n_in; i++) {
    const float *row = j->scores + (size_t)i * (size_t)j->n_out;
    /* Softmax over the reported labels, in double, max-subtracted. */
    double mx = -INFINITY, sum = 0;
    for (int32_t k = 0; k < n_sel; k++) {
      double v = row[cj->ctx.sel ? cj->ctx.sel[k] : k];
      if (v > mx) mx = v;
    }
    for (int32_t k = 0; k < n_sel; k++) sum += exp((double)row[cj->ctx.sel ? cj->ctx.sel[k] : k] - mx);
    int32_t best = 0;
    Qquant__V1__Classification *cl = &res[i];
    qquant__v1__classification__init(cl);
    cl->n_scores = (size_t)n_sel;
    cl->scores = &ls_ptrs[(size_t)i * (size_t)n_sel];
    for (int32_t k = 0; k < n_sel; k++) {
      Qquant__V1__LabelScore *l = &ls[(size_t)i * (size_t)n_sel + (size_t)k];
      qquant__v1__label_score__init(l);
      float logit = row[cj->ctx.sel ? cj->ctx.sel[k] : k];
      l->label = cj->ctx.names[k];
      l->logit = logit;
      l->score = (float)(exp((double)logit - mx) / sum);
      cl->scores[k] = l;
      if (logit > row[cj->ctx.sel ? cj->ctx.sel[best] : best]) best = k;
    }
    cl->label = cj->ctx.names[best];
    cl->score = cl->scores[best]->score;
    cl->input_tokens = (uint32_t)cj->ctx.tokens[i];
    cl->truncated = cj->ctx.truncated[i];
    total += (uint32_t)cj->ctx.tokens[i];
    resp_ptrs[i] = cl;
  }
  resp.n_results = (size_t)n_in;
  resp.results = resp_ptrs;
  usage.prompt_tokens = total;
  resp.usage = &usage;
  qq_call_send(c, &resp.base);
  qq_call_finish(c, GRPC_STATUS_OK, "");
done:
  free(res);
  free(resp_ptrs);
  free(ls);
  free(ls_ptrs);
  qq_call_unref(c);
  cls_job_free(cj);
}

/* Applies the truncation policy to ids[0..*n) in place. */
static qq_status truncate_ids(int32_t *ids, int32_t *n, int32_t limit, Qquant__V1__Truncation side, size_t idx,
                              bool *truncated, qq_error *err) {
  *truncated = false;
  if (*n <= limit) return QQ_OK;
  switch (side) {
    case QQUANT__V1__TRUNCATION__TRUNCATION_LEFT:
      memmove(ids, ids + (*n - limit), (size_t)limit * sizeof(int32_t));
      break;
    case QQUANT__V1__TRUNCATION__TRUNCATION_RIGHT: break;
    default:
      return qq_error_set(err, QQ_ERR_INVALID_ARG,
                          "too many tokens: inputs[%zu] has %d tokens, more than the limit %d (set truncation to "
                          "TRUNCATION_LEFT or TRUNCATION_RIGHT, or send a shorter text)",
                          idx, *n, limit);
  }
  *n = limit;
  *truncated = true;
  return QQ_OK;
}

void qq_calls_classify(qq_call *c, const uint8_t *data, size_t len) {
  qq_server *s = qq_call_server(c);
  qq_model *m = qq_server_model(s);
  const qq_config *mc = qq_model_config(m);
  const qq_tokenizer *tok = qq_model_tokenizer(m);
  const qq_request_limits *lim = qq_server_limits(s);
  qq_error err = {0};
  qq_status st = QQ_OK;
  cls_job *cj = NULL;
  char *joined = NULL;
  Qquant__V1__ClassifyRequest *r = qquant__v1__classify_request__unpack(NULL, len, data);
  if (!r) {
    qq_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "the request is not a valid qquant.v1.ClassifyRequest");
    return;
  }
  if ((st = qq_validate_classify(r, lim, &err))) goto out;
  bool head = mc->task == QQ_TASK_SEQ_CLS;
  if (!head && r->n_candidate_labels == 0) {
    st = qq_error_set(&err, QQ_ERR_INVALID_ARG,
                      "candidate_labels: this model (%s) has no classification head; pass candidate_labels for "
                      "zero-shot classification", mc->architecture);
    goto out;
  }
  cj = calloc(1, sizeof *cj);
  if (!cj) {
    st = qq_error_set(&err, QQ_ERR_NOMEM, "out of memory");
    goto out;
  }
  qq_job *j = &cj->job;
  int32_t n_in = (int32_t)r->n_inputs;
  j->kind = head ? QQ_JOB_CLASSIFY_HEAD : QQ_JOB_CLASSIFY_ZEROSHOT;
  j->in_ids = calloc((size_t)n_in, sizeof(int32_t *));
  j->in_len = calloc((size_t)n_in, sizeof(int32_t));
  cj->ctx.tokens = calloc((size_t)n_in, sizeof(int32_t));
  cj->ctx.truncated = calloc((size_t)n_in, sizeof(bool));
  if (!j->in_ids || !j->in_len || !cj->ctx.tokens || !cj->ctx.truncated) {
    st = qq_error_set(&err, QQ_ERR_NOMEM, "out of memory");
    goto out;
  }
  j->n_inputs = n_in;

  /* Labels reported: head labels (all, or the requested subset), or the candidate labels. */
  int32_t n_sel = head ? (r->n_candidate_labels ? (int32_t)r->n_candidate_labels : mc->num_labels)
                       : (int32_t)r->n_candidate_labels;
  cj->ctx.names = calloc((size_t)n_sel, sizeof(char *));
  if (!cj->ctx.names) {
    st = qq_error_set(&err, QQ_ERR_NOMEM, "out of memory");
    goto out;
  }
  cj->ctx.n_sel = n_sel;
  for (int32_t k = 0; k < n_sel; k++) {
    const char *name = r->n_candidate_labels ? r->candidate_labels[k] : mc->id2label[k];
    if (!(cj->ctx.names[k] = strdup(name ? name : ""))) {
      st = qq_error_set(&err, QQ_ERR_NOMEM, "out of memory");
      goto out;
    }
  }
  int32_t longest_label = 0;
  if (head) {
    j->n_out = mc->num_labels;
    if (r->n_candidate_labels) {
      if (!(cj->ctx.sel = calloc((size_t)n_sel, sizeof(int32_t)))) {
        st = qq_error_set(&err, QQ_ERR_NOMEM, "out of memory");
        goto out;
      }
      for (int32_t k = 0; k < n_sel; k++) {
        int32_t found = -1;
        for (int32_t h = 0; h < mc->num_labels; h++)
          if (mc->id2label && mc->id2label[h] && !strcmp(mc->id2label[h], r->candidate_labels[k])) found = h;
        if (found < 0) {
          char known[512] = "";
          for (int32_t h = 0; h < mc->num_labels && mc->id2label; h++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s'%s'", h ? ", " : "", mc->id2label[h]);
          st = qq_error_set(&err, QQ_ERR_INVALID_ARG, "candidate_labels[%d]: unknown label '%.100s' (this model's labels: %s)",
                            k, r->candidate_labels[k], known);
          goto out;
        }
        cj->ctx.sel[k] = found;
      }
    }
  } else {
    j->n_out = n_sel;
    j->lab_ids = calloc((size_t)n_sel, sizeof(int32_t *));
    j->lab_len = calloc((size_t)n_sel, sizeof(int32_t));
    if (!j->lab_ids || !j->lab_len) {
      st = qq_error_set(&err, QQ_ERR_NOMEM, "out of memory");
      goto out;
    }
    j->n_labels = n_sel;
    for (int32_t k = 0; k < n_sel; k++) {
      const char *lab = r->candidate_labels[k];
      if ((st = tokenize(tok, lab, strlen(lab), false, &j->lab_ids[k], &j->lab_len[k], &err))) {
        qq_error_prefix(&err, "candidate_labels[%d]", k);
        goto out;
      }
      if (j->lab_len[k] == 0) {
        st = qq_error_set(&err, QQ_ERR_INVALID_ARG, "candidate_labels[%d]: tokenizes to no tokens", k);
        goto out;
      }
      longest_label = QQ_MAX(longest_label, j->lab_len[k]);
    }
  }
  int32_t limit = lim->max_seq_len - longest_label;
  if (r->max_input_tokens && (int32_t)r->max_input_tokens < limit) limit = (int32_t)r->max_input_tokens;
  if (limit < 1) {
    st = qq_error_set(&err, QQ_ERR_INVALID_ARG, "too many tokens: the longest candidate label (%d tokens) leaves no room "
                      "for the input within max-seq-len %d", longest_label, lim->max_seq_len);
    goto out;
  }
  for (int32_t i = 0; i < n_in; i++) {
    const char *text = r->inputs[i];
    size_t tl = strlen(text);
    if (!head && r->label_prefix && r->label_prefix[0]) {
      size_t pl = strlen(r->label_prefix);
      free(joined);
      if (!(joined = malloc(tl + pl + 1))) {
        st = qq_error_set(&err, QQ_ERR_NOMEM, "out of memory");
        goto out;
      }
      memcpy(joined, text, tl);
      memcpy(joined + tl, r->label_prefix, pl + 1);
      text = joined;
      tl += pl;
    }
    if ((st = tokenize(tok, text, tl, true, &j->in_ids[i], &j->in_len[i], &err))) {
      qq_error_prefix(&err, "inputs[%d]", i);
      goto out;
    }
    if (j->in_len[i] == 0) {
      st = qq_error_set(&err, QQ_ERR_INVALID_ARG, "inputs[%d]: tokenizes to no tokens", i);
      goto out;
    }
    if ((st = truncate_ids(j->in_ids[i], &j->in_len[i], limit, r->truncation, (size_t)i, &cj->ctx.truncated[i], &err)))
      goto out;
    cj->ctx.tokens[i] = j->in_len[i];
  }
  j->complete = cls_complete;
  int64_t tokens = 0;
  for (int32_t i = 0; i < n_in; i++) tokens += j->in_len[i];
  qq_metrics_tokens(qq_server_metrics(s), tokens, 0);
  job_bind(j, c);
  if ((st = submit(c, j, &err))) goto out;
  cj = NULL;
out:
  if (st) fail(c, st, &err);
  cls_job_free(cj);
  free(joined);
  qquant__v1__classify_request__free_unpacked(r, NULL);
}

/* ------------------------------------------------------------------ GetModelInfo */

static const char *quant_name(qq_quant_method q) {
  switch (q) {
    case QQ_QUANT_NONE: return "none";
    case QQ_QUANT_AWQ: return "awq";
    case QQ_QUANT_GPTQ: return "gptq";
    case QQ_QUANT_W8A8: return "w8a8";
    case QQ_QUANT_W8A16: return "w8a16";
  }
  return "unknown";
}

void qq_calls_info(qq_call *c, const uint8_t *data, size_t len) {
  qq_server *s = qq_call_server(c);
  Qquant__V1__GetModelInfoRequest *req = qquant__v1__get_model_info_request__unpack(NULL, len, data);
  if (!req) {
    qq_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "the request is not a valid qquant.v1.GetModelInfoRequest");
    return;
  }
  qquant__v1__get_model_info_request__free_unpacked(req, NULL);
  qq_model *m = qq_server_model(s);
  const qq_config *mc = qq_model_config(m);
  qq_backend *be = qq_model_backend(m);
  Qquant__V1__ModelInfo info = QQUANT__V1__MODEL_INFO__INIT;
  info.architecture = (char *)mc->architecture;
  info.model_type = (char *)mc->model_type;
  info.task = mc->task == QQ_TASK_SEQ_CLS ? "sequence-classification" : "causal-lm";
  info.quantization_method = (char *)quant_name(mc->quant.method);
  info.quantization_format = (char *)mc->quant.format;
  info.bits = mc->quant.method == QQ_QUANT_NONE ? 0 : (uint32_t)mc->quant.bits;
  info.group_size = mc->quant.method == QQ_QUANT_NONE ? 0 : mc->quant.group_size;
  info.context_length = (uint32_t)qq_engine_max_seq_len(qq_server_engine(s));
  if (mc->task == QQ_TASK_SEQ_CLS && mc->id2label) {
    info.n_labels = (size_t)mc->num_labels;
    info.labels = mc->id2label;
  }
  info.vocab_size = (uint32_t)mc->vocab_size;
  info.backend = (char *)qq_backend_description(be);
  info.device = qq_backend_kind(be) == QQ_DEVICE_CUDA ? "cuda" : "cpu";
  info.max_batch = (uint32_t)qq_server_config(s)->max_batch;
  info.kv_blocks = (uint32_t)qq_engine_kv_blocks(qq_server_engine(s));
  info.kv_block_tokens = (uint32_t)qq_engine_kv_block_tokens(qq_server_engine(s));
  qq_call_send(c, &info.base);
  qq_call_finish(c, GRPC_STATUS_OK, "");
}
