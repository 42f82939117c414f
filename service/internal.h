/* internal.h — declarations shared by the files of service/ (not part of the public interface).
 *
 *   server.c      grpc server, completion-queue threads, call objects and their send queues, drain
 *   calls.c       Inference methods: request -> job (validated, tokenized), engine results -> responses
 *   health.c      grpc.health.v1.Health Check and Watch
 *   reflection.c  grpc.reflection.v1alpha.ServerReflection over the embedded descriptor set
 *   validate.c    request checks that need no model (UTF-8, ranges, counts)
 *   engine.c      the engine thread: admission queue, continuous batching, sampling, stop strings
 *   metrics.c     counters and histograms, Prometheus text, the /metrics HTTP listener
 *   config.c      flags and environment
 */
#ifndef QQ_SERVICE_INTERNAL_H
#define QQ_SERVICE_INTERNAL_H

#include <grpc/grpc.h>
#include <pthread.h>
#include <stdatomic.h>

#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "model.h"
#include "qquant/v1/inference.pb-c.h"
#include "service.h"

typedef enum qq_method {
  QQ_M_UNKNOWN = 0,
  QQ_M_CLASSIFY,
  QQ_M_GENERATE,
  QQ_M_INFO,
  QQ_M_HEALTH_CHECK,
  QQ_M_HEALTH_WATCH,
  QQ_M_REFLECTION,
  QQ_M_COUNT
} qq_method;

qq_method qq_method_from_path(const char *path, size_t len);
const char *qq_method_name(qq_method m); /* "Classify", "Health.Check", ... ("unknown") */

/* ---------------------------------------------------------------- validate.c */
/* Checks that decode into protobuf-c messages leave to us. Each returns QQ_ERR_INVALID_ARG naming the
 * field ("inputs[3]: invalid UTF-8 at byte 17"). */
bool qq_utf8_valid(const char *s, size_t len, size_t *bad_at);
qq_status qq_validate_classify(const Qquant__V1__ClassifyRequest *r, const qq_request_limits *lim, qq_error *err);
qq_status qq_validate_generate(const Qquant__V1__GenerateRequest *r, const qq_request_limits *lim, qq_error *err);
qq_status qq_validate_health(const Grpc__Health__V1__HealthCheckRequest *r, qq_error *err);

/* ---------------------------------------------------------------- metrics.c */
typedef struct qq_metrics qq_metrics;
qq_status qq_metrics_create(qq_metrics **out, qq_error *err);
void qq_metrics_free(qq_metrics *m);
void qq_metrics_request(qq_metrics *m, qq_method method, int grpc_code, double seconds);
void qq_metrics_ttft(qq_metrics *m, double seconds);
void qq_metrics_tpot(qq_metrics *m, double seconds);
void qq_metrics_step(qq_metrics *m, int32_t batch_seqs, int32_t tokens, double seconds);
void qq_metrics_tokens(qq_metrics *m, int64_t prompt_tokens, int64_t generated_tokens);
void qq_metrics_gauges(qq_metrics *m, int32_t queue_depth, int32_t active_seqs, int32_t kv_used_blocks,
                       int32_t kv_total_blocks);
void qq_metrics_set_state(qq_metrics *m, int serving); /* 1 serving, 0 draining */
/* Prometheus text exposition; *out is heap (free()). */
qq_status qq_metrics_render(qq_metrics *m, char **out, size_t *len, qq_error *err);

typedef struct qq_http qq_http;
/* Serves GET /metrics (and GET /healthz) on host:port in its own thread. port 0 picks one. */
qq_status qq_http_start(const char *host, int32_t port, qq_metrics *m, qq_http **out, int32_t *bound,
                        qq_error *err);
void qq_http_stop(qq_http *h);

/* ---------------------------------------------------------------- engine.c */
typedef enum qq_job_kind { QQ_JOB_GENERATE = 0, QQ_JOB_CLASSIFY_HEAD = 1, QQ_JOB_CLASSIFY_ZEROSHOT = 2 } qq_job_kind;

typedef struct qq_job qq_job;
struct qq_job {
  qq_job_kind kind;
  void *user;                   /* the call that owns the job */
  const atomic_bool *cancelled; /* set by the call when the client went away */
  double deadline;              /* qq_now_sec() clock; 0: none */
  double t_submit, t_first, t_last;
  /* Called by the engine thread: new tokens and the text they completed (Generate only). */
  void (*emit)(qq_job *job, const int32_t *ids, int32_t n, const char *text, size_t len);
  /* Called once by the engine thread when the job ended (code 0 = OK, else a grpc status code). */
  void (*complete)(qq_job *job);
  int32_t code;
  char msg[256];

  /* Generate */
  int32_t *prompt;   /* owned */
  int32_t n_prompt;
  int32_t max_new;
  qq_sampling sampling;
  char **stops;      /* owned, n_stops strings */
  int32_t n_stops;
  bool ignore_eos;
  int32_t n_generated;
  int32_t finish_reason; /* QQUANT__V1__FINISH_REASON__* */

  /* Classify: n_inputs token arrays; zero-shot also n_labels label token arrays. */
  int32_t n_inputs;
  int32_t **in_ids;  /* owned */
  int32_t *in_len;
  int32_t n_labels;
  int32_t **lab_ids; /* owned */
  int32_t *lab_len;
  int32_t n_out;     /* scores per input: num_labels (head) or n_labels (zero-shot) */
  float *scores;     /* [n_inputs][n_out]: head logits, or label log-likelihoods; engine-allocated */

  qq_job *next;      /* engine queue link */
};
void qq_job_free(qq_job *job);

typedef struct qq_engine qq_engine;
typedef struct qq_engine_options {
  int32_t max_queue, max_batch, max_seq_len, kv_blocks, prefill_chunk, step_tokens;
} qq_engine_options;
/* Creates the KV cache and starts the engine thread; the model is kept (borrowed for the engine's life). */
qq_status qq_engine_create(qq_model *model, const qq_engine_options *opt, qq_metrics *metrics,
                           qq_engine **out, qq_error *err);
/* Hands a job to the engine (transferred on QQ_OK). QQ_ERR_EXHAUSTED when the queue is full or the job
 * needs more KV blocks or sequences than the cache has; QQ_ERR_CANCELLED once stopping. */
qq_status qq_engine_submit(qq_engine *e, qq_job *job, qq_error *err);
int32_t qq_engine_inflight(qq_engine *e); /* queued + running jobs */
/* Ends every queued and running job with code/msg (their complete() runs on the engine thread). */
void qq_engine_abort_all(qq_engine *e, int32_t code, const char *msg);
void qq_engine_free(qq_engine *e); /* aborts what is left (UNAVAILABLE), joins the thread */
int32_t qq_engine_max_seq_len(const qq_engine *e);
int32_t qq_engine_kv_blocks(const qq_engine *e);
int32_t qq_engine_kv_block_tokens(const qq_engine *e);

/* ---------------------------------------------------------------- server.c: calls */
typedef struct qq_server qq_server;
typedef struct qq_call qq_call;

/* A call's outbound side: messages go out one at a time, in order; the final status goes with the last
 * message. All of these are thread-safe (the engine thread uses them). */
void qq_call_ref(qq_call *c);
void qq_call_unref(qq_call *c);
/* Serializes msg and queues it. */
void qq_call_send(qq_call *c, const ProtobufCMessage *msg);
/* Queues the final status (after every queued message). Later calls are ignored. */
void qq_call_finish(qq_call *c, int grpc_code, const char *msg);
/* Generate: appends ids and text to the pending response; pending pieces are merged into one message
 * while the previous one is still being written (slow readers cost no memory per token). */
void qq_call_gen_append(qq_call *c, const int32_t *ids, int32_t n, const char *text, size_t len);
/* Generate: marks the pending response as the last one (finish reason + usage) and finishes OK. */
void qq_call_gen_close(qq_call *c, int32_t finish_reason, uint32_t prompt_tokens, uint32_t completion_tokens);
/* Queues msg like qq_call_send, and starts receiving the next message of the client stream (as
 * qq_call_recv_next) only once msg and everything queued before it are written. A client that sends
 * requests without reading the answers is then held back by HTTP/2 flow control instead of piling
 * answers up in the server's memory (reflection). */
typedef void (*qq_recv_fn)(qq_call *c, const uint8_t *data, size_t len, bool end);
void qq_call_send_then_recv(qq_call *c, const ProtobufCMessage *msg, qq_recv_fn on_message);
/* Starts receiving the next message of a client stream (reflection); on_message runs with it (NULL at
 * the client's half-close). */
void qq_call_recv_next(qq_call *c, qq_recv_fn on_message);
qq_server *qq_call_server(qq_call *c);
atomic_bool *qq_call_cancel_flag(qq_call *c);
double qq_call_deadline(qq_call *c); /* qq_now_sec() clock; 0 none */
/* Called by server.c when the call has ended for whatever reason (health watchers unregister). */
void qq_health_call_closed(qq_server *srv, qq_call *c);

/* Server state visible to the method handlers. */
qq_engine *qq_server_engine(qq_server *s);
qq_model *qq_server_model(qq_server *s);
qq_metrics *qq_server_metrics(qq_server *s);
const qq_service_config *qq_server_config(qq_server *s);
const qq_request_limits *qq_server_limits(qq_server *s);
bool qq_server_draining(qq_server *s);

/* ---------------------------------------------------------------- method handlers */
/* Each runs on a completion-queue thread with the request bytes and must end by finishing the call
 * (now, or later from the engine thread). */
void qq_calls_classify(qq_call *c, const uint8_t *data, size_t len);
void qq_calls_generate(qq_call *c, const uint8_t *data, size_t len);
void qq_calls_info(qq_call *c, const uint8_t *data, size_t len);

typedef struct qq_health qq_health;
qq_status qq_health_create(qq_health **out, qq_error *err);
void qq_health_free(qq_health *h);
qq_health *qq_server_health(qq_server *s);
void qq_health_set_serving(qq_health *h, bool serving); /* notifies every watcher */
void qq_health_check(qq_call *c, const uint8_t *data, size_t len);
void qq_health_watch(qq_call *c, const uint8_t *data, size_t len);
/* Ends every watch stream with the given status (shutdown). */
void qq_health_close_watchers(qq_health *h, int grpc_code, const char *msg);

void qq_reflection_start(qq_call *c); /* bidi stream: reads requests, answers each */
/* Decodes and answers one ServerReflectionRequest without a call (qq_service_check_request's path):
 * QQ_ERR_INVALID_ARG for undecodable bytes or invalid UTF-8. */
qq_status qq_reflection_check_request(const uint8_t *data, size_t len, qq_error *err);

#endif /* QQ_SERVICE_INTERNAL_H */
