/* server.c — the grpc core server: completion-queue threads, call objects (one state machine per
 * call, one tag per kind of operation), the per-call send queue, start-up and drain.
 *
 * Every grpc_call_start_batch holds a reference on its call, released by the operation's completion;
 * a call is freed when its last reference goes. Completion-queue threads only decode, validate,
 * tokenize and queue work: the model runs on the engine thread (engine.c), which sends results through
 * qq_call_gen_append / qq_call_send / qq_call_finish (thread-safe, serialized by the call's mutex).
 * Generate's token messages are started by the sender thread, not by the engine thread (see
 * defer_pump_locked).
 */
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

typedef struct qq_op qq_op;
struct qq_op {
  void (*done)(qq_op *op, bool ok);
  qq_call *call;
};

typedef struct out_msg {
  grpc_byte_buffer *buf;
  struct out_msg *next;
} out_msg;

struct qq_call {
  qq_server *srv;
  grpc_call *call;
  grpc_call_details details;
  grpc_metadata_array req_md;
  qq_method method;
  double t_start, deadline;
  atomic_int refs;
  atomic_bool cancelled;
  pthread_mutex_t mu;
  qq_op op_new, op_close, op_recv, op_send;
  int close_cancelled;
  grpc_byte_buffer *recv_buf;
  qq_recv_fn on_message;
  /* under mu: receive the next message with this once every queued message is written */
  qq_recv_fn recv_after_send;

  /* outbound, under mu */
  out_msg *q_head, *q_tail;
  bool md_sent, send_busy, status_set, status_sent, closed;
  bool counted; /* the call's outcome is in the metrics (exactly once) */
  bool send_queued; /* under srv->send_mu: in the sender thread's queue (holding a reference) */
  qq_call *send_next;
  int status_code;
  char *status_msg;
  grpc_byte_buffer *inflight;
  /* Generate accumulator: merged until the previous message is written. */
  int32_t *g_ids;
  size_t g_n, g_cap;
  char *g_text;
  size_t g_len, g_tcap;
  bool g_pending, g_final;
  int32_t g_reason;
  uint32_t g_prompt, g_completion;
};

#define QQ_PENDING_REQUESTS 8 /* grpc_server_request_call tags kept outstanding */

struct qq_server {
  qq_service_config cfg;
  qq_request_limits limits;
  qq_model *model;
  qq_engine *engine;
  qq_metrics *metrics;
  qq_http *http;
  qq_health *health;
  grpc_server *server;
  grpc_completion_queue *cq;
  pthread_t *threads;
  int32_t n_threads;
  int32_t port, metrics_port;
  atomic_bool draining, stopping;
  atomic_int live_calls;
  qq_op op_shutdown;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool started, shutdown_done, finished;
  /* The sender thread and its queue of calls with something to write (defer_pump_locked). */
  pthread_t sender;
  pthread_mutex_t send_mu;
  pthread_cond_t send_cv;
  qq_call *send_head, *send_tail;
  bool sender_running, sender_started;
};

/* ------------------------------------------------------------------ accessors */

qq_engine *qq_server_engine(qq_server *s) { return s->engine; }
qq_model *qq_server_model(qq_server *s) { return s->model; }
qq_metrics *qq_server_metrics(qq_server *s) { return s->metrics; }
qq_health *qq_server_health(qq_server *s) { return s->health; }
const qq_service_config *qq_server_config(qq_server *s) { return &s->cfg; }
const qq_request_limits *qq_server_limits(qq_server *s) { return &s->limits; }
bool qq_server_draining(qq_server *s) { return atomic_load(&s->draining); }
int32_t qq_server_port(const qq_server *s) { return s->port; }
int32_t qq_server_metrics_port(const qq_server *s) { return s->metrics_port; }
qq_server *qq_call_server(qq_call *c) { return c->srv; }
atomic_bool *qq_call_cancel_flag(qq_call *c) { return &c->cancelled; }
double qq_call_deadline(qq_call *c) { return c->deadline; }

/* ------------------------------------------------------------------ call lifecycle */

static void call_free(qq_call *c) {
  qq_server *s = c->srv;
  if (c->call) grpc_call_unref(c->call);
  grpc_call_details_destroy(&c->details);
  grpc_metadata_array_destroy(&c->req_md);
  if (c->recv_buf) grpc_byte_buffer_destroy(c->recv_buf);
  if (c->inflight) grpc_byte_buffer_destroy(c->inflight);
  for (out_msg *m = c->q_head, *n; m; m = n) {
    n = m->next;
    grpc_byte_buffer_destroy(m->buf);
    free(m);
  }
  free(c->status_msg);
  free(c->g_ids);
  free(c->g_text);
  pthread_mutex_destroy(&c->mu);
  free(c);
  pthread_mutex_lock(&s->mu);
  atomic_fetch_sub(&s->live_calls, 1);
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

void qq_call_ref(qq_call *c) { atomic_fetch_add(&c->refs, 1); }
void qq_call_unref(qq_call *c) {
  if (atomic_fetch_sub(&c->refs, 1) == 1) call_free(c);
}

static grpc_byte_buffer *pack_message(const ProtobufCMessage *msg) {
  size_t n = protobuf_c_message_get_packed_size(msg);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) return NULL;
  protobuf_c_message_pack(msg, buf);
  grpc_slice sl = grpc_slice_from_copied_buffer((const char *)buf, n);
  free(buf);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
  grpc_slice_unref(sl);
  return bb;
}

static grpc_byte_buffer *pack_gen_locked(qq_call *c) {
  Qquant__V1__GenerateResponse r = QQUANT__V1__GENERATE_RESPONSE__INIT;
  Qquant__V1__Usage u = QQUANT__V1__USAGE__INIT;
  r.text = c->g_text ? c->g_text : (char *)"";
  r.n_token_ids = c->g_n;
  r.token_ids = c->g_ids;
  if (c->g_final) {
    r.finish_reason = (Qquant__V1__FinishReason)c->g_reason;
    u.prompt_tokens = c->g_prompt;
    u.completion_tokens = c->g_completion;
    r.usage = &u;
  }
  grpc_byte_buffer *bb = pack_message(&r.base);
  c->g_n = 0;
  c->g_len = 0;
  if (c->g_text) c->g_text[0] = 0;
  c->g_pending = false;
  return bb;
}

static void on_send(qq_op *op, bool ok);

/* Starts the next send if none is in flight. Called with c->mu held. */
static void pump_locked(qq_call *c) {
  if (c->send_busy || c->status_sent || c->closed) return;
  grpc_byte_buffer *buf = NULL;
  if (c->q_head) {
    out_msg *m = c->q_head;
    c->q_head = m->next;
    if (!c->q_head) c->q_tail = NULL;
    buf = m->buf;
    free(m);
  } else if (c->g_pending) {
    buf = pack_gen_locked(c);
  }
  bool final = c->status_set && !c->q_head && !c->g_pending;
  if (!buf && !final) return;
  grpc_op ops[3];
  memset(ops, 0, sizeof ops);
  size_t n = 0;
  if (!c->md_sent) {
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    n++;
    c->md_sent = true;
  }
  if (buf) {
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = buf;
    n++;
  }
  grpc_slice details = grpc_empty_slice();
  if (final) {
    details = grpc_slice_from_copied_string(c->status_msg ? c->status_msg : "");
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)c->status_code;
    ops[n].data.send_status_from_server.status_details = &details;
    n++;
    c->status_sent = true;
  }
  c->inflight = buf;
  c->send_busy = true;
  qq_call_ref(c);
  grpc_call_error e = grpc_call_start_batch(c->call, ops, n, &c->op_send, NULL);
  grpc_slice_unref(details);
  if (e != GRPC_CALL_OK) {
    QQ_LOGE("server", "grpc_call_start_batch(send) failed: %d", (int)e);
    c->send_busy = false;
    c->closed = true;
    if (buf) grpc_byte_buffer_destroy(buf);
    c->inflight = NULL;
    atomic_fetch_sub(&c->refs, 1); /* cannot be the last: the caller holds one */
  }
}

/* The receive that qq_call_send_then_recv deferred, once nothing is left to write. Called with c->mu
 * held; the caller starts it after unlocking. */
static qq_recv_fn take_deferred_recv_locked(qq_call *c) {
  if (!c->recv_after_send || c->send_busy || c->q_head || c->g_pending) return NULL;
  qq_recv_fn next = c->recv_after_send;
  c->recv_after_send = NULL;
  return c->closed || c->status_set ? NULL : next;
}

/* Starts the next send of a call on the sender thread instead of the calling one. grpc core runs the
 * HTTP/2 framing and the socket write of a batch on the thread that starts it; for Generate's tokens
 * that is the engine thread, between two forward steps. Measured on the 2-core VM with --threads 1,
 * 192 streams of 32 tokens: the engine thread used 6.5 CPU s inside qquant-serve against 5.5-6.0 s
 * for the same work without gRPC (bench_serve_engine), 80-160 us a token. When the sender is not
 * running (start-up failure, teardown) the send starts here, as before. Called with c->mu held. */
static void defer_pump_locked(qq_call *c) {
  qq_server *s = c->srv;
  if (c->send_busy || c->status_sent || c->closed) return; /* on_send starts the next one */
  pthread_mutex_lock(&s->send_mu);
  if (!s->sender_running) {
    pthread_mutex_unlock(&s->send_mu);
    pump_locked(c);
    return;
  }
  if (!c->send_queued) {
    c->send_queued = true;
    qq_call_ref(c);
    c->send_next = NULL;
    if (s->send_tail) s->send_tail->send_next = c;
    else s->send_head = c;
    s->send_tail = c;
    pthread_cond_signal(&s->send_cv);
  }
  pthread_mutex_unlock(&s->send_mu);
}

static void *sender_main(void *arg) {
  qq_server *s = arg;
  pthread_mutex_lock(&s->send_mu);
  for (;;) {
    while (!s->send_head && s->sender_running) pthread_cond_wait(&s->send_cv, &s->send_mu);
    qq_call *c = s->send_head;
    if (!c) break; /* stopped, and nothing left to start */
    s->send_head = c->send_next;
    if (!s->send_head) s->send_tail = NULL;
    c->send_queued = false;
    pthread_mutex_unlock(&s->send_mu);
    pthread_mutex_lock(&c->mu);
    pump_locked(c);
    qq_recv_fn next = take_deferred_recv_locked(c);
    pthread_mutex_unlock(&c->mu);
    if (next) qq_call_recv_next(c, next);
    qq_call_unref(c);
    pthread_mutex_lock(&s->send_mu);
  }
  pthread_mutex_unlock(&s->send_mu);
  return NULL;
}

/* Lets the sender start what is queued, then stops it; later sends start on their caller's thread. */
static void sender_stop(qq_server *s) {
  if (!s->sender_started) return;
  pthread_mutex_lock(&s->send_mu);
  s->sender_running = false;
  pthread_cond_signal(&s->send_cv);
  pthread_mutex_unlock(&s->send_mu);
  pthread_join(s->sender, NULL);
  s->sender_started = false;
}

static void on_send(qq_op *op, bool ok) {
  qq_call *c = op->call;
  pthread_mutex_lock(&c->mu);
  c->send_busy = false;
  if (c->inflight) grpc_byte_buffer_destroy(c->inflight);
  c->inflight = NULL;
  if (!ok) c->closed = true; /* the call is gone (cancelled, deadline, connection lost) */
  pump_locked(c);
  qq_recv_fn next = take_deferred_recv_locked(c);
  pthread_mutex_unlock(&c->mu);
  if (next) qq_call_recv_next(c, next);
  qq_call_unref(c);
}

static void send_queued(qq_call *c, const ProtobufCMessage *msg, qq_recv_fn then_recv) {
  grpc_byte_buffer *bb = pack_message(msg);
  out_msg *m = calloc(1, sizeof *m);
  if (!bb || !m) {
    if (bb) grpc_byte_buffer_destroy(bb);
    free(m);
    qq_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "server out of memory");
    return;
  }
  m->buf = bb;
  pthread_mutex_lock(&c->mu);
  if (c->status_set || c->closed) {
    pthread_mutex_unlock(&c->mu);
    grpc_byte_buffer_destroy(bb);
    free(m);
    return;
  }
  if (c->q_tail) c->q_tail->next = m;
  else c->q_head = m;
  c->q_tail = m;
  if (then_recv) c->recv_after_send = then_recv;
  pump_locked(c);
  qq_recv_fn next = take_deferred_recv_locked(c);
  pthread_mutex_unlock(&c->mu);
  if (next) qq_call_recv_next(c, next);
}

void qq_call_send(qq_call *c, const ProtobufCMessage *msg) { send_queued(c, msg, NULL); }

void qq_call_send_then_recv(qq_call *c, const ProtobufCMessage *msg, qq_recv_fn on_message) {
  send_queued(c, msg, on_message);
}

/* Records the final status (once); returns false when one was already set. Called with c->mu held. */
static bool set_status_locked(qq_call *c, int grpc_code, const char *msg) {
  if (c->status_set) return false;
  c->status_set = true;
  c->status_code = grpc_code;
  c->status_msg = strdup(msg ? msg : "");
  if (!c->counted && !c->closed && c->method != QQ_M_UNKNOWN)
    qq_metrics_request(c->srv->metrics, c->method, grpc_code, qq_now_sec() - c->t_start);
  c->counted = true;
  if (grpc_code != GRPC_STATUS_OK && grpc_code != GRPC_STATUS_CANCELLED)
    QQ_LOGD("server", "%s -> status %d: %s", qq_method_name(c->method), grpc_code, msg ? msg : "");
  return true;
}

void qq_call_finish(qq_call *c, int grpc_code, const char *msg) {
  pthread_mutex_lock(&c->mu);
  if (set_status_locked(c, grpc_code, msg)) pump_locked(c);
  pthread_mutex_unlock(&c->mu);
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return true;
  size_t nc = *cap ? *cap : 16;
  while (nc < need) nc *= 2;
  void *q = realloc(*p, nc * elem);
  if (!q) return false;
  *p = q;
  *cap = nc;
  return true;
}

void qq_call_gen_append(qq_call *c, const int32_t *ids, int32_t n, const char *text, size_t len) {
  pthread_mutex_lock(&c->mu);
  if (c->status_set || c->closed) {
    pthread_mutex_unlock(&c->mu);
    return;
  }
  if (!grow((void **)&c->g_ids, &c->g_cap, c->g_n + (size_t)n, sizeof(int32_t)) ||
      !grow((void **)&c->g_text, &c->g_tcap, c->g_len + len + 1, 1)) {
    pthread_mutex_unlock(&c->mu);
    qq_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "server out of memory");
    return;
  }
  if (n) memcpy(c->g_ids + c->g_n, ids, (size_t)n * sizeof(int32_t));
  c->g_n += (size_t)n;
  if (len) memcpy(c->g_text + c->g_len, text, len);
  c->g_len += len;
  c->g_text[c->g_len] = 0;
  c->g_pending = true;
  defer_pump_locked(c);
  pthread_mutex_unlock(&c->mu);
}

void qq_call_gen_close(qq_call *c, int32_t finish_reason, uint32_t prompt_tokens, uint32_t completion_tokens) {
  pthread_mutex_lock(&c->mu);
  if (!c->status_set && !c->closed) {
    if (!grow((void **)&c->g_text, &c->g_tcap, c->g_len + 1, 1)) {
      pthread_mutex_unlock(&c->mu);
      qq_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "server out of memory");
      return;
    }
    c->g_text[c->g_len] = 0;
    c->g_final = true;
    c->g_pending = true;
    c->g_reason = finish_reason;
    c->g_prompt = prompt_tokens;
    c->g_completion = completion_tokens;
  }
  if (set_status_locked(c, GRPC_STATUS_OK, "")) defer_pump_locked(c);
  pthread_mutex_unlock(&c->mu);
}

/* ------------------------------------------------------------------ receiving */

static void on_recv(qq_op *op, bool ok) {
  qq_call *c = op->call;
  grpc_byte_buffer *bb = c->recv_buf;
  c->recv_buf = NULL;
  uint8_t *data = NULL;
  size_t len = 0;
  bool end = !ok || !bb;
  if (!end) {
    grpc_byte_buffer_reader rd;
    if (grpc_byte_buffer_reader_init(&rd, bb)) {
      grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
      len = GRPC_SLICE_LENGTH(all);
      data = malloc(len ? len : 1);
      if (data) memcpy(data, GRPC_SLICE_START_PTR(all), len);
      grpc_slice_unref(all);
      grpc_byte_buffer_reader_destroy(&rd);
    }
    if (!data) end = true;
  }
  if (bb) grpc_byte_buffer_destroy(bb);
  if (c->on_message) c->on_message(c, data, len, end);
  free(data);
  qq_call_unref(c);
}

void qq_call_recv_next(qq_call *c, qq_recv_fn on_message) {
  c->on_message = on_message;
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &c->recv_buf;
  qq_call_ref(c);
  if (grpc_call_start_batch(c->call, &op, 1, &c->op_recv, NULL) != GRPC_CALL_OK) {
    qq_call_unref(c);
    qq_call_finish(c, GRPC_STATUS_INTERNAL, "cannot start receiving");
  }
}

/* ------------------------------------------------------------------ dispatch */

static void on_unary_message(qq_call *c, const uint8_t *data, size_t len, bool end) {
  if (end) {
    qq_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "the request message is missing");
    return;
  }
  switch (c->method) {
    case QQ_M_CLASSIFY: qq_calls_classify(c, data, len); break;
    case QQ_M_GENERATE: qq_calls_generate(c, data, len); break;
    case QQ_M_INFO: qq_calls_info(c, data, len); break;
    case QQ_M_HEALTH_CHECK: qq_health_check(c, data, len); break;
    case QQ_M_HEALTH_WATCH: qq_health_watch(c, data, len); break;
    default: qq_call_finish(c, GRPC_STATUS_UNIMPLEMENTED, "unknown method"); break;
  }
}

#define QQ_DEADLINE_SLACK 0.02 /* seconds */

static void on_close(qq_op *op, bool ok) {
  qq_call *c = op->call;
  bool cancelled = c->close_cancelled || !ok;
  pthread_mutex_lock(&c->mu);
  c->closed = true;
  /* Ended before our status went out: the client cancelled, its deadline passed, or it went away. */
  bool count = cancelled && !c->status_sent && !c->counted && c->method != QQ_M_UNKNOWN;
  c->counted = true;
  pthread_mutex_unlock(&c->mu);
  if (cancelled) atomic_store(&c->cancelled, true);
  if (count) {
    /* When the client's deadline passes, its library cancels the call, and that cancel reaches us a
     * little before our own copy of the deadline expires (the grpc-timeout header was read after a
     * queueing and network delay). A cancel within QQ_DEADLINE_SLACK of the deadline, or 5 % of the
     * call's budget, is the deadline: measured up to tens of ms late on a loaded 2-core machine. */
    const double budget = c->deadline - c->t_start, slack = QQ_MAX(QQ_DEADLINE_SLACK, 0.05 * budget);
    bool expired = c->deadline > 0 && qq_now_sec() >= c->deadline - slack;
    qq_metrics_request(c->srv->metrics, c->method, expired ? GRPC_STATUS_DEADLINE_EXCEEDED : GRPC_STATUS_CANCELLED,
                       qq_now_sec() - c->t_start);
  }
  if (c->method == QQ_M_HEALTH_WATCH) qq_health_call_closed(c->srv, c);
  qq_call_unref(c);
}

static void on_new(qq_op *op, bool ok);

static qq_call *call_alloc(qq_server *s) {
  qq_call *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->srv = s;
  atomic_init(&c->refs, 1);
  atomic_init(&c->cancelled, false);
  pthread_mutex_init(&c->mu, NULL);
  grpc_call_details_init(&c->details);
  grpc_metadata_array_init(&c->req_md);
  c->op_new = (qq_op){on_new, c};
  c->op_close = (qq_op){on_close, c};
  c->op_recv = (qq_op){on_recv, c};
  c->op_send = (qq_op){on_send, c};
  atomic_fetch_add(&s->live_calls, 1);
  return c;
}

static void request_one(qq_server *s) {
  if (atomic_load(&s->stopping)) return;
  qq_call *c = call_alloc(s);
  if (!c) {
    QQ_LOGE("server", "out of memory allocating a call");
    return;
  }
  grpc_call_error e = grpc_server_request_call(s->server, &c->call, &c->details, &c->req_md, s->cq, s->cq, &c->op_new);
  if (e != GRPC_CALL_OK) {
    QQ_LOGE("server", "grpc_server_request_call failed: %d", (int)e);
    qq_call_unref(c);
  }
}

static void on_new(qq_op *op, bool ok) {
  qq_call *c = op->call;
  qq_server *s = c->srv;
  if (!ok) { /* the server is shutting down: this request slot will not be used */
    qq_call_unref(c);
    return;
  }
  request_one(s);
  c->t_start = qq_now_sec();
  c->method = qq_method_from_path((const char *)GRPC_SLICE_START_PTR(c->details.method),
                                  GRPC_SLICE_LENGTH(c->details.method));
  gpr_timespec dl = gpr_convert_clock_type(c->details.deadline, GPR_CLOCK_MONOTONIC);
  if (gpr_time_cmp(dl, gpr_inf_future(GPR_CLOCK_MONOTONIC)) != 0) {
    gpr_timespec left = gpr_time_sub(dl, gpr_now(GPR_CLOCK_MONOTONIC));
    c->deadline = c->t_start + (double)left.tv_sec + left.tv_nsec * 1e-9;
  }
  /* Learn about cancellation (client gone, deadline) as soon as it happens. */
  grpc_op cl;
  memset(&cl, 0, sizeof cl);
  cl.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  cl.data.recv_close_on_server.cancelled = &c->close_cancelled;
  qq_call_ref(c);
  if (grpc_call_start_batch(c->call, &cl, 1, &c->op_close, NULL) != GRPC_CALL_OK) qq_call_unref(c);

  bool inference = c->method == QQ_M_CLASSIFY || c->method == QQ_M_GENERATE || c->method == QQ_M_INFO;
  if (c->method == QQ_M_UNKNOWN) {
    char msg[300];
    snprintf(msg, sizeof msg, "method %.*s is not implemented by qquant-serve",
             (int)QQ_MIN(GRPC_SLICE_LENGTH(c->details.method), 200),
             (const char *)GRPC_SLICE_START_PTR(c->details.method));
    qq_call_finish(c, GRPC_STATUS_UNIMPLEMENTED, msg);
  } else if (inference && atomic_load(&s->draining)) {
    qq_call_finish(c, GRPC_STATUS_UNAVAILABLE, "server is draining (shutting down); retry on another replica");
  } else if (c->method == QQ_M_REFLECTION) {
    qq_reflection_start(c);
  } else {
    qq_call_recv_next(c, on_unary_message);
  }
  qq_call_unref(c);
}

static void on_shutdown(qq_op *op, bool ok) {
  qq_server *s = (qq_server *)op->call;
  pthread_mutex_lock(&s->mu);
  s->shutdown_done = true;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static void *cq_thread(void *arg) {
  qq_server *s = arg;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type != GRPC_OP_COMPLETE) continue;
    qq_op *op = ev.tag;
    op->done(op, ev.success != 0);
  }
  return NULL;
}

/* ------------------------------------------------------------------ start / drain / free */

static qq_status load_pem(const char *path, char **out, qq_error *err) {
  size_t len;
  qq_status st = qq_read_file(path, out, &len, err);
  if (st) return qq_error_prefix(err, "TLS");
  return QQ_OK;
}

static grpc_server_credentials *make_creds(const qq_service_config *cfg, qq_error *err) {
  if (!cfg->tls_cert[0]) return grpc_insecure_server_credentials_create();
  char *cert = NULL, *key = NULL, *ca = NULL;
  grpc_server_credentials *creds = NULL;
  if (load_pem(cfg->tls_cert, &cert, err) || load_pem(cfg->tls_key, &key, err)) goto done;
  if (cfg->tls_client_ca[0] && load_pem(cfg->tls_client_ca, &ca, err)) goto done;
  grpc_ssl_pem_key_cert_pair pair = {key, cert};
  creds = grpc_ssl_server_credentials_create_ex(
      ca, &pair, 1, ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
      NULL);
  if (!creds) qq_error_set(err, QQ_ERR_INVALID_ARG, "TLS: grpc rejected the certificate/key in %s / %s", cfg->tls_cert, cfg->tls_key);
done:
  free(cert);
  free(key);
  free(ca);
  return creds;
}

qq_request_limits qq_request_limits_default(void) {
  qq_request_limits l = {
      .max_inputs = 64, .max_labels = 32, .max_stops = 16, .max_text_bytes = 1 << 20, .max_seq_len = 2048, .vocab_size = 1 << 30};
  return l;
}

static void server_teardown(qq_server *s) {
  if (s->cq) {
    if (s->server && s->started) {
      if (!s->shutdown_done) {
        grpc_server_shutdown_and_notify(s->server, s->cq, &s->op_shutdown);
        grpc_server_cancel_all_calls(s->server);
        pthread_mutex_lock(&s->mu);
        while (!s->shutdown_done) pthread_cond_wait(&s->cv, &s->mu);
        pthread_mutex_unlock(&s->mu);
      }
    }
    if (s->server && !s->started) { /* never started: nothing is in flight */
      grpc_server_destroy(s->server);
      s->server = NULL;
    }
    sender_stop(s); /* its queued sends need the completion queue */
    grpc_completion_queue_shutdown(s->cq);
    for (int32_t i = 0; i < s->n_threads; i++) pthread_join(s->threads[i], NULL);
    if (!s->n_threads)
      while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN) {
      }
    /* Calls still referenced by the engine are freed when it lets go of them (engine freed below);
     * their grpc_call objects must go before the server. */
  }
  qq_engine_free(s->engine);
  s->engine = NULL;
  pthread_mutex_lock(&s->mu);
  while (atomic_load(&s->live_calls) > 0) pthread_cond_wait(&s->cv, &s->mu);
  pthread_mutex_unlock(&s->mu);
  if (s->server) grpc_server_destroy(s->server);
  if (s->cq) grpc_completion_queue_destroy(s->cq);
  s->server = NULL;
  s->cq = NULL;
  qq_http_stop(s->http);
  s->http = NULL;
  qq_health_free(s->health);
  s->health = NULL;
  qq_model_free(s->model);
  s->model = NULL;
  qq_metrics_free(s->metrics);
  s->metrics = NULL;
  free(s->threads);
  s->threads = NULL;
}

qq_status qq_server_start(const qq_service_config *cfg, qq_server **out, qq_error *err) {
  *out = NULL;
  if (!cfg->model[0]) return qq_error_set(err, QQ_ERR_INVALID_ARG, "--model (QQ_SERVE_MODEL) is required");
  qq_server *s = calloc(1, sizeof *s);
  if (!s) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  s->cfg = *cfg;
  s->metrics_port = -1;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  pthread_mutex_init(&s->send_mu, NULL);
  pthread_cond_init(&s->send_cv, NULL);
  atomic_init(&s->draining, false);
  atomic_init(&s->stopping, false);
  atomic_init(&s->live_calls, 0);
  s->op_shutdown = (qq_op){on_shutdown, (qq_call *)s};
  grpc_init();
  qq_status st;
  if ((st = qq_metrics_create(&s->metrics, err)) || (st = qq_health_create(&s->health, err))) goto fail;

  double t0 = qq_now_sec();
  qq_model_options mo = qq_model_options_default();
  mo.device = cfg->device == QQ_SERVICE_DEVICE_CPU ? QQ_DEVICE_CPU
              : cfg->device == QQ_SERVICE_DEVICE_CUDA ? QQ_DEVICE_CUDA : QQ_DEVICE_AUTO;
  mo.act = cfg->dtype;
  mo.rope_freq = cfg->rope_freq;
  mo.n_threads = cfg->threads;
  mo.load_tokenizer = true;
  if ((st = qq_model_load(cfg->model, &mo, &s->model, err))) {
    qq_error_prefix(err, "loading model %s", cfg->model);
    goto fail;
  }
  const qq_config *mc = qq_model_config(s->model);
  QQ_LOGI("server", "model %s (%s) loaded in %.2f s on %s", cfg->model, mc->architecture, qq_now_sec() - t0,
          qq_backend_description(qq_model_backend(s->model)));

  qq_engine_options eo = {cfg->max_queue, cfg->max_batch, cfg->max_seq_len, cfg->kv_blocks, cfg->prefill_chunk,
                          cfg->step_tokens};
  if ((st = qq_engine_create(s->model, &eo, s->metrics, &s->engine, err))) goto fail;

  s->limits = qq_request_limits_default();
  s->limits.max_seq_len = qq_engine_max_seq_len(s->engine);
  s->limits.vocab_size = mc->vocab_size;
  s->limits.max_inputs = QQ_MIN(s->limits.max_inputs, cfg->max_batch);
  if (s->limits.max_text_bytes > cfg->max_message_bytes) s->limits.max_text_bytes = cfg->max_message_bytes;

  grpc_arg args[3];
  args[0] = (grpc_arg){.type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_ALLOW_REUSEPORT, .value.integer = 0};
  args[1] = (grpc_arg){.type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                       .value.integer = cfg->max_message_bytes};
  args[2] = (grpc_arg){.type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_MAX_CONCURRENT_STREAMS,
                       .value.integer = cfg->max_streams};
  grpc_channel_args cargs = {QQ_ARRAY_LEN(args), args};
  s->cq = grpc_completion_queue_create_for_next(NULL);
  s->server = grpc_server_create(&cargs, NULL);
  grpc_server_register_completion_queue(s->server, s->cq, NULL);
  grpc_server_credentials *creds = make_creds(cfg, err);
  if (!creds) {
    st = err ? err->status : QQ_ERR_INVALID_ARG;
    goto fail_server;
  }
  char addr[300];
  if (strchr(cfg->host, ':') && cfg->host[0] != '[') snprintf(addr, sizeof addr, "[%s]:%d", cfg->host, cfg->port);
  else snprintf(addr, sizeof addr, "%s:%d", cfg->host, cfg->port);
  s->port = grpc_server_add_http2_port(s->server, addr, creds);
  grpc_server_credentials_release(creds);
  if (s->port <= 0) {
    st = qq_error_set(err, QQ_ERR_IO, "cannot listen on %s (address in use, or not an address of this host)", addr);
    goto fail_server;
  }
  if (cfg->metrics_port >= 0 &&
      (st = qq_http_start(cfg->host, cfg->metrics_port, s->metrics, &s->http, &s->metrics_port, err)))
    goto fail_server;
  grpc_server_start(s->server);
  s->started = true;
  s->n_threads = cfg->cq_threads > 0 ? cfg->cq_threads : 1;
  s->threads = calloc((size_t)s->n_threads, sizeof(pthread_t));
  if (!s->threads) {
    st = qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    goto fail_server;
  }
  for (int32_t i = 0; i < s->n_threads; i++) {
    if (pthread_create(&s->threads[i], NULL, cq_thread, s)) {
      s->n_threads = i;
      st = qq_error_set(err, QQ_ERR_INTERNAL, "cannot start completion-queue thread %d", i);
      goto fail_server;
    }
  }
  s->sender_running = true;
  if (pthread_create(&s->sender, NULL, sender_main, s)) {
    s->sender_running = false;
    st = qq_error_set(err, QQ_ERR_INTERNAL, "cannot start the sender thread");
    goto fail_server;
  }
  s->sender_started = true;
  for (int i = 0; i < QQ_PENDING_REQUESTS; i++) request_one(s);
  qq_health_set_serving(s->health, true);
  qq_metrics_set_state(s->metrics, 1);
  QQ_LOGI("server", "serving qquant.v1.Inference on %s:%d (%s), metrics on port %d", cfg->host, s->port,
          cfg->tls_cert[0] ? (cfg->tls_client_ca[0] ? "mTLS" : "TLS") : "plaintext", s->metrics_port);
  *out = s;
  return QQ_OK;

fail_server:
  atomic_store(&s->stopping, true);
fail:
  server_teardown(s);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->send_mu);
  pthread_cond_destroy(&s->send_cv);
  free(s);
  grpc_shutdown();
  return st;
}

qq_status qq_server_drain(qq_server *s, qq_error *err) {
  if (s->finished) return QQ_OK;
  double t0 = qq_now_sec(), grace = s->cfg.drain_seconds;
  atomic_store(&s->draining, true);
  qq_health_set_serving(s->health, false);
  qq_metrics_set_state(s->metrics, 0);
  int32_t left = qq_engine_inflight(s->engine);
  QQ_LOGI("server", "draining: health NOT_SERVING, %d request(s) in flight, grace %d s", left, s->cfg.drain_seconds);
  while ((left = qq_engine_inflight(s->engine)) > 0 && qq_now_sec() - t0 < grace) usleep(20 * 1000);
  qq_status st = QQ_OK;
  if (left > 0) {
    QQ_LOGW("server", "drain grace period over: ending %d request(s) with UNAVAILABLE", left);
    st = qq_error_set(err, QQ_ERR_CANCELLED, "%d request(s) did not finish within %d s", left, s->cfg.drain_seconds);
  }
  /* Always: closes admission for good (a request still being tokenized is refused) and ends what is left. */
  qq_engine_abort_all(s->engine, GRPC_STATUS_UNAVAILABLE,
                      "server shut down before the request finished (drain grace period over)");
  qq_health_close_watchers(s->health, GRPC_STATUS_UNAVAILABLE, "server shutting down");
  atomic_store(&s->stopping, true);
  grpc_server_shutdown_and_notify(s->server, s->cq, &s->op_shutdown);
  /* Give streams that are not engine work (reflection) a moment to end, then cancel them. */
  pthread_mutex_lock(&s->mu);
  double until = qq_now_sec() + 1.0;
  while (!s->shutdown_done && qq_now_sec() < until) {
    pthread_mutex_unlock(&s->mu);
    usleep(10 * 1000);
    pthread_mutex_lock(&s->mu);
  }
  bool done = s->shutdown_done;
  pthread_mutex_unlock(&s->mu);
  if (!done) grpc_server_cancel_all_calls(s->server);
  pthread_mutex_lock(&s->mu);
  while (!s->shutdown_done) pthread_cond_wait(&s->cv, &s->mu);
  pthread_mutex_unlock(&s->mu);
  server_teardown(s);
  s->finished = true;
  QQ_LOGI("server", "stopped after %.2f s of draining", qq_now_sec() - t0);
  return st;
}

void qq_server_free(qq_server *s) {
  if (!s) return;
  if (!s->finished) qq_server_drain(s, NULL);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->send_mu);
  pthread_cond_destroy(&s->send_cv);
  free(s);
  grpc_shutdown();
}
