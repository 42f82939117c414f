/* service.h — the one public header of service/: the qquant.v1.Inference gRPC server (grpc core C
 * API + protobuf-c), its configuration (flags and QQ_SERVE_* environment variables), and the request
 * decoding/validation entry point that the fuzz target drives.
 *
 * Threads: grpc completion-queue threads decode, validate and tokenize requests; one engine thread owns
 * the model and runs continuous-batching steps over qq_model_forward; a bounded admission queue sits
 * between them. A metrics thread serves Prometheus text over HTTP. See docs/service.md.
 *
 * Ownership: pointer parameters are borrowed for the call unless stated. qq_server_free(NULL) is a no-op.
 */
#ifndef QQ_SERVICE_H
#define QQ_SERVICE_H

#include "kernels.h" /* qq_act_dtype */
#include "qq_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qq_service_device { QQ_SERVICE_DEVICE_AUTO = 0, QQ_SERVICE_DEVICE_CPU = 1, QQ_SERVICE_DEVICE_CUDA = 2 } qq_service_device;

/* Every field has a flag --kebab-name and an environment variable QQ_SERVE_<UPPER_SNAKE>; flags
 * override the environment, which overrides these defaults. */
typedef struct qq_service_config {
  char model[1024];          /* --model DIR (required) */
  char host[256];            /* --host, default 127.0.0.1 */
  int32_t port;              /* --port, default 50051 (0: pick a free port; see qq_server_port) */
  int32_t metrics_port;      /* --metrics-port, default 9090 (0: pick; -1: no metrics endpoint) */
  qq_service_device device;  /* --device auto|cpu|cuda */
  qq_act_dtype dtype;        /* --dtype auto|bf16|fp16|fp32 (activation precision; the CPU runs fp32) */
  qq_rope_freq rope_freq;    /* --rope-freq exact|bf16 (qq_model_options.rope_freq; default exact) */
  int32_t threads;           /* --threads: CPU threads of the backend (0: default) */
  int32_t drain_seconds;     /* --drain-seconds, default 30 */
  int32_t max_queue;         /* --max-queue: requests waiting for the engine, default 256 */
  int32_t max_batch;         /* --max-batch: sequences in one forward step, default 64 */
  int32_t max_seq_len;       /* --max-seq-len: tokens per sequence; 0: the model's context length */
  int32_t kv_blocks;         /* --kv-blocks: KV cache blocks of 16 tokens; 0: max_batch * max_seq_len / 16 */
  int32_t prefill_chunk;     /* --prefill-chunk: prompt tokens per sequence per step, default 128 */
  int32_t step_tokens;       /* --step-tokens: tokens per forward step across sequences, default 512 */
  int32_t max_message_bytes; /* --max-message-bytes: largest request accepted, default 4 MiB */
  int32_t max_streams;       /* --max-streams: concurrent streams per connection, default 256 */
  int32_t cq_threads;        /* --cq-threads: completion-queue threads, default 2 */
  char tls_cert[1024];       /* --tls-cert PEM file: enables TLS */
  char tls_key[1024];        /* --tls-key PEM file */
  char tls_client_ca[1024];  /* --tls-client-ca PEM file: enables mTLS (client certificates required) */
  bool log_json;             /* --log-format json|text (default text) */
} qq_service_config;

void qq_service_config_default(qq_service_config *cfg);
/* Applies QQ_SERVE_* variables from envp (NULL: the process environment) and then the flags in
 * argv[1..argc-1]. "--help" sets *help and returns QQ_OK. Unknown flags, missing values and values out
 * of range are QQ_ERR_INVALID_ARG naming the flag or variable. */
qq_status qq_service_config_parse(qq_service_config *cfg, int argc, char **argv, char **envp, bool *help,
                                  qq_error *err);
/* The --help text. */
const char *qq_service_config_usage(void);

typedef struct qq_server qq_server;

/* Loads the model, starts the engine thread, binds the gRPC port (SO_REUSEPORT off: a port in use is
 * an error) and the metrics port, and starts serving. */
qq_status qq_server_start(const qq_service_config *cfg, qq_server **out, qq_error *err);
int32_t qq_server_port(const qq_server *srv);         /* the bound gRPC port */
int32_t qq_server_metrics_port(const qq_server *srv); /* the bound metrics port, -1 when off */
/* Drains: health turns NOT_SERVING, new Inference calls get UNAVAILABLE, in-flight requests may finish
 * for up to cfg->drain_seconds; what is left then ends with UNAVAILABLE. Then the server shuts down.
 * Blocks until everything has stopped. Returns QQ_OK when every in-flight request finished in time. */
qq_status qq_server_drain(qq_server *srv, qq_error *err);
void qq_server_free(qq_server *srv); /* drains first when still running */

/* Limits that request validation needs without a model (tests and the fuzz target use them). */
typedef struct qq_request_limits {
  int32_t max_inputs;       /* Classify inputs per request */
  int32_t max_labels;       /* Classify candidate labels */
  int32_t max_stops;        /* Generate stop strings */
  int32_t max_text_bytes;   /* one input, prompt, label or stop string */
  int32_t max_seq_len;      /* tokens per sequence */
  int32_t vocab_size;       /* token ids must be in [0, vocab_size) */
} qq_request_limits;
qq_request_limits qq_request_limits_default(void);

/* Decodes a serialized request of `method` ("/qquant.v1.Inference/Classify", ".../Generate",
 * ".../GetModelInfo", "/grpc.health.v1.Health/Check", ".../Watch",
 * "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": one request of the stream, answered
 * and serialized as the server would) and validates it against lim.
 * QQ_ERR_INVALID_ARG (message names the field) for undecodable bytes, invalid UTF-8, empty input and
 * out-of-range parameters; QQ_ERR_NOT_FOUND for an unknown method. Never crashes on any input. */
qq_status qq_service_check_request(const char *method, const uint8_t *data, size_t len,
                                   const qq_request_limits *lim, qq_error *err);

#ifdef __cplusplus
}
#endif
#endif /* QQ_SERVICE_H */
