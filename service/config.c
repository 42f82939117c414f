/* config.c — qquant-serve configuration: defaults, QQ_SERVE_* environment variables, then flags. */
#include "service.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

typedef enum opt_kind { OPT_STR, OPT_INT, OPT_DEVICE, OPT_LOGFMT, OPT_DTYPE, OPT_ROPE_FREQ } opt_kind;

typedef struct opt_def {
  const char *flag; /* without the leading "--" */
  opt_kind kind;
  size_t offset;
  size_t size;      /* OPT_STR: buffer size */
  int64_t min, max; /* OPT_INT */
  const char *help;
} opt_def;

#define STR_OPT(f, field, h) {f, OPT_STR, offsetof(qq_service_config, field), sizeof(((qq_service_config *)0)->field), 0, 0, h}
#define INT_OPT(f, field, lo, hi, h) {f, OPT_INT, offsetof(qq_service_config, field), 0, lo, hi, h}

static const opt_def OPTS[] = {
    STR_OPT("model", model, "checkpoint directory (config.json, *.safetensors, tokenizer.json); required"),
    STR_OPT("host", host, "address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)"),
    INT_OPT("port", port, 0, 65535, "gRPC port (default 50051; 0 picks a free one)"),
    INT_OPT("metrics-port", metrics_port, -1, 65535, "Prometheus /metrics HTTP port (default 9090; -1 off)"),
    {"device", OPT_DEVICE, offsetof(qq_service_config, device), 0, 0, 0, "auto|cpu|cuda (default auto)"},
    {"dtype", OPT_DTYPE, offsetof(qq_service_config, dtype), 0, 0, 0,
     "activations on the GPU: auto|bf16|fp16|fp32 (default auto: bf16 on CUDA, fp32 on the CPU)"},
    {"rope-freq", OPT_ROPE_FREQ, offsetof(qq_service_config, rope_freq), 0, 0, 0,
     "RoPE frequencies: exact|bf16 (default exact; bf16: HF's fp32 inv_freq rounded to bf16)"},
    INT_OPT("threads", threads, 0, 1024, "CPU backend threads (default: the CPUs available)"),
    INT_OPT("drain-seconds", drain_seconds, 0, 86400, "grace period for in-flight requests on SIGTERM (default 30)"),
    INT_OPT("max-queue", max_queue, 1, 1000000, "requests waiting for the engine before RESOURCE_EXHAUSTED (default 256)"),
    INT_OPT("max-batch", max_batch, 1, 4096, "sequences per forward step (default 64)"),
    INT_OPT("max-seq-len", max_seq_len, 0, 1 << 20, "tokens per sequence, prompt + output (default: the model's context)"),
    INT_OPT("kv-blocks", kv_blocks, 0, 1 << 24, "KV cache blocks of 16 tokens (default max-batch * max-seq-len / 16, capped by free GPU memory)"),
    INT_OPT("prefill-chunk", prefill_chunk, 1, 1 << 20, "prompt tokens per sequence per step (default 128)"),
    INT_OPT("step-tokens", step_tokens, 1, 1 << 20, "tokens per forward step over all sequences (default 512)"),
    INT_OPT("max-message-bytes", max_message_bytes, 1024, INT_MAX, "largest request message (default 4194304)"),
    INT_OPT("max-streams", max_streams, 1, 1 << 20, "concurrent streams per client connection (default 256)"),
    INT_OPT("cq-threads", cq_threads, 1, 64, "completion-queue threads (default 2)"),
    STR_OPT("tls-cert", tls_cert, "server certificate chain (PEM); enables TLS"),
    STR_OPT("tls-key", tls_key, "server private key (PEM)"),
    STR_OPT("tls-client-ca", tls_client_ca, "CA bundle (PEM) for client certificates; enables mTLS"),
    {"log-format", OPT_LOGFMT, offsetof(qq_service_config, log_json), 0, 0, 0, "json|text (default text)"},
};

void qq_service_config_default(qq_service_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  snprintf(cfg->host, sizeof cfg->host, "127.0.0.1");
  cfg->port = 50051;
  cfg->metrics_port = 9090;
  cfg->device = QQ_SERVICE_DEVICE_AUTO;
  cfg->drain_seconds = 30;
  cfg->max_queue = 256;
  cfg->max_batch = 64;
  cfg->prefill_chunk = 128;
  cfg->step_tokens = 512;
  cfg->max_message_bytes = 4 << 20;
  cfg->max_streams = 256;
  cfg->cq_threads = 2;
}

static void env_name(const char *flag, char *out, size_t cap) {
  size_t n = (size_t)snprintf(out, cap, "QQ_SERVE_");
  for (const char *p = flag; *p && n + 1 < cap; p++) out[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
  out[n] = 0;
}

static qq_status set_opt(qq_service_config *cfg, const opt_def *o, const char *val, const char *where,
                         qq_error *err) {
  char *base = (char *)cfg + o->offset;
  switch (o->kind) {
    case OPT_STR:
      if (strlen(val) >= o->size)
        return qq_error_set(err, QQ_ERR_INVALID_ARG, "%s: value longer than %zu bytes", where, o->size - 1);
      memcpy(base, val, strlen(val) + 1);
      return QQ_OK;
    case OPT_INT: {
      char *end = NULL;
      errno = 0;
      long long v = strtoll(val, &end, 10);
      if (errno || end == val || *end)
        return qq_error_set(err, QQ_ERR_INVALID_ARG, "%s: '%s' is not an integer", where, val);
      if (v < o->min || v > o->max)
        return qq_error_set(err, QQ_ERR_INVALID_ARG, "%s: %lld is outside [%lld, %lld]", where, v,
                            (long long)o->min, (long long)o->max);
      *(int32_t *)base = (int32_t)v;
      return QQ_OK;
    }
    case OPT_DEVICE: {
      qq_service_device d;
      if (!strcmp(val, "auto")) d = QQ_SERVICE_DEVICE_AUTO;
      else if (!strcmp(val, "cpu")) d = QQ_SERVICE_DEVICE_CPU;
      else if (!strcmp(val, "cuda")) d = QQ_SERVICE_DEVICE_CUDA;
      else return qq_error_set(err, QQ_ERR_INVALID_ARG, "%s: '%s' is not one of auto, cpu, cuda", where, val);
      *(qq_service_device *)base = d;
      return QQ_OK;
    }
    case OPT_DTYPE:
      if (!qq_act_dtype_parse(val, (qq_act_dtype *)base))
        return qq_error_set(err, QQ_ERR_INVALID_ARG, "%s: '%s' is not one of auto, bf16, fp16, fp32", where, val);
      return QQ_OK;
    case OPT_ROPE_FREQ:
      if (!qq_rope_freq_parse(val, (qq_rope_freq *)base))
        return qq_error_set(err, QQ_ERR_INVALID_ARG, "%s: '%s' is not one of exact, bf16", where, val);
      return QQ_OK;
    case OPT_LOGFMT:
      if (!strcmp(val, "json")) *(bool *)base = true;
      else if (!strcmp(val, "text")) *(bool *)base = false;
      else return qq_error_set(err, QQ_ERR_INVALID_ARG, "%s: '%s' is not one of json, text", where, val);
      return QQ_OK;
  }
  return qq_error_set(err, QQ_ERR_INTERNAL, "%s: unknown option kind", where);
}

qq_status qq_service_config_parse(qq_service_config *cfg, int argc, char **argv, char **envp, bool *help,
                                  qq_error *err) {
  if (help) *help = false;
  char **env = envp ? envp : environ;
  /* Environment first. */
  for (size_t i = 0; i < QQ_ARRAY_LEN(OPTS); i++) {
    char name[96];
    env_name(OPTS[i].flag, name, sizeof name);
    size_t nl = strlen(name);
    for (char **e = env; e && *e; e++) {
      if (strncmp(*e, name, nl) || (*e)[nl] != '=') continue;
      if (!(*e)[nl + 1]) continue; /* set but empty: the same as unset (what templating tools often emit) */
      qq_status st = set_opt(cfg, &OPTS[i], *e + nl + 1, name, err);
      if (st) return st;
    }
  }
  for (int a = 1; a < argc; a++) {
    const char *arg = argv[a];
    if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
      if (help) *help = true;
      return QQ_OK;
    }
    if (strncmp(arg, "--", 2))
      return qq_error_set(err, QQ_ERR_INVALID_ARG, "unexpected argument '%s' (flags start with --; see --help)", arg);
    const char *name = arg + 2;
    const char *eq = strchr(name, '=');
    size_t nl = eq ? (size_t)(eq - name) : strlen(name);
    const opt_def *o = NULL;
    for (size_t i = 0; i < QQ_ARRAY_LEN(OPTS); i++)
      if (strlen(OPTS[i].flag) == nl && !strncmp(OPTS[i].flag, name, nl)) o = &OPTS[i];
    if (!o) return qq_error_set(err, QQ_ERR_INVALID_ARG, "unknown flag '%.*s' (see --help)", (int)(nl + 2), arg);
    const char *val = eq ? eq + 1 : NULL;
    if (!val) {
      if (a + 1 >= argc) return qq_error_set(err, QQ_ERR_INVALID_ARG, "flag --%s needs a value", o->flag);
      val = argv[++a];
    }
    char where[80];
    snprintf(where, sizeof where, "--%s", o->flag);
    qq_status st = set_opt(cfg, o, val, where, err);
    if (st) return st;
  }
  if ((cfg->tls_cert[0] != 0) != (cfg->tls_key[0] != 0))
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "--tls-cert and --tls-key must be given together");
  if (cfg->tls_client_ca[0] && !cfg->tls_cert[0])
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "--tls-client-ca (mTLS) needs --tls-cert and --tls-key");
  return QQ_OK;
}

const char *qq_service_config_usage(void) {
  static char text[6144];
  static const char head[] =
      "usage: qquant-serve --model DIR [flags]\n"
      "Serves qquant.v1.Inference (Classify, Generate, GetModelInfo), grpc.health.v1.Health and server\n"
      "reflection over gRPC, and Prometheus metrics over HTTP at /metrics. SIGTERM or SIGINT drains and\n"
      "exits 0. Every flag can also be set by an environment variable QQ_SERVE_<FLAG> (--max-queue:\n"
      "QQ_SERVE_MAX_QUEUE); flags override the environment.\n\nflags:\n";
  if (text[0]) return text;
  size_t n = (size_t)snprintf(text, sizeof text, "%s", head);
  for (size_t i = 0; i < QQ_ARRAY_LEN(OPTS) && n < sizeof text; i++)
    n += (size_t)snprintf(text + n, sizeof text - n, "  --%-18s %s\n", OPTS[i].flag, OPTS[i].help);
  return text;
}
