/* qquant-client — talks to qquant-serve from the shell:
 *   qquant-client [--addr H:P] [--timeout S] [--tls-ca F [--tls-cert F --tls-key F]] COMMAND ...
 *   classify [--labels a,b,...] [--label-prefix S] [--truncate left|right] [--max-input-tokens N] TEXT...
 *   generate [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--stop STR]...
 *            [--ignore-eos] [--ids 1,2,3] [--show-ids] [PROMPT]
 *   info
 *   health [SERVICE] [--watch]
 * Exit status: 0 on OK; otherwise 10 + the gRPC status code, with "STATUS_NAME: message" on stderr. */
#include <grpc/grpc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "qquant/v1/inference.pb-c.h"
#include "rpc.h"

static const char USAGE[] =
    "usage: qquant-client [--addr HOST:PORT] [--timeout SECONDS] [--tls-ca F [--tls-cert F --tls-key F]] COMMAND\n"
    "  classify [--labels a,b,...] [--label-prefix S] [--truncate left|right] [--max-input-tokens N] TEXT...\n"
    "  generate [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--stop STR]...\n"
    "           [--ignore-eos] [--ids 1,2,3] [--show-ids] [PROMPT]   (text streams to stdout)\n"
    "  info\n"
    "  health [SERVICE] [--watch]\n"
    "Default address: $QQ_SERVE_ADDR or 127.0.0.1:50051. Exit 0 on OK, else 10 + the gRPC status code.\n";

static int finish(grpc_status_code c, const char *detail) {
  if (c == GRPC_STATUS_OK) return 0;
  fprintf(stderr, "%s: %s\n", qq_rpc_status_name(c), detail);
  return 10 + (int)c;
}

static char **split_commas(const char *s, size_t *n) {
  size_t cap = 1;
  for (const char *p = s; *p; p++) cap += *p == ',';
  char **out = calloc(cap, sizeof *out);
  char *dup = strdup(s), *save = NULL;
  *n = 0;
  for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) out[(*n)++] = strdup(t);
  free(dup);
  return out;
}

static int on_classify(void *u, const uint8_t *d, size_t n) {
  Qquant__V1__ClassifyResponse *r = qquant__v1__classify_response__unpack(NULL, n, d);
  if (!r) return 1;
  for (size_t i = 0; i < r->n_results; i++) {
    Qquant__V1__Classification *c = r->results[i];
    printf("%zu\t%s\t%.6f\t", i, c->label, (double)c->score);
    for (size_t k = 0; k < c->n_scores; k++)
      printf("%s%s=%.6f", k ? " " : "", c->scores[k]->label, (double)c->scores[k]->score);
    printf("\ttokens=%u%s\n", c->input_tokens, c->truncated ? " truncated" : "");
  }
  qquant__v1__classify_response__free_unpacked(r, NULL);
  return 0;
}

typedef struct gen_state {
  int show_ids;
  unsigned long messages;
} gen_state;

static const char *reason_name(int r) {
  switch (r) {
    case QQUANT__V1__FINISH_REASON__FINISH_REASON_LENGTH: return "length";
    case QQUANT__V1__FINISH_REASON__FINISH_REASON_STOP: return "stop";
    case QQUANT__V1__FINISH_REASON__FINISH_REASON_EOS: return "eos";
    default: return "unspecified";
  }
}

static int on_generate(void *u, const uint8_t *d, size_t n) {
  gen_state *g = u;
  Qquant__V1__GenerateResponse *r = qquant__v1__generate_response__unpack(NULL, n, d);
  if (!r) return 1;
  g->messages++;
  fputs(r->text, stdout);
  fflush(stdout);
  if (g->show_ids)
    for (size_t i = 0; i < r->n_token_ids; i++) fprintf(stderr, "%d ", r->token_ids[i]);
  if (r->finish_reason)
    fprintf(stderr, "\n[finish=%s prompt_tokens=%u completion_tokens=%u messages=%lu]\n", reason_name(r->finish_reason),
            r->usage ? r->usage->prompt_tokens : 0, r->usage ? r->usage->completion_tokens : 0, g->messages);
  qquant__v1__generate_response__free_unpacked(r, NULL);
  return 0;
}

static int on_info(void *u, const uint8_t *d, size_t n) {
  Qquant__V1__ModelInfo *m = qquant__v1__model_info__unpack(NULL, n, d);
  if (!m) return 1;
  printf("architecture: %s\nmodel_type: %s\ntask: %s\nquantization: %s %s bits=%u group_size=%d\n"
         "context_length: %u\nvocab_size: %u\nbackend: %s\ndevice: %s\nmax_batch: %u\nkv_blocks: %u x %u tokens\n",
         m->architecture, m->model_type, m->task, m->quantization_method, m->quantization_format, m->bits,
         m->group_size, m->context_length, m->vocab_size, m->backend, m->device, m->max_batch, m->kv_blocks,
         m->kv_block_tokens);
  printf("labels:");
  for (size_t i = 0; i < m->n_labels; i++) printf(" %s", m->labels[i]);
  printf("\n");
  qquant__v1__model_info__free_unpacked(m, NULL);
  return 0;
}

static int on_health(void *u, const uint8_t *d, size_t n) {
  Grpc__Health__V1__HealthCheckResponse *r = grpc__health__v1__health_check_response__unpack(NULL, n, d);
  if (!r) return 1;
  static const char *const names[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
  printf("%s\n", (unsigned)r->status < 4 ? names[r->status] : "?");
  fflush(stdout);
  grpc__health__v1__health_check_response__free_unpacked(r, NULL);
  return 0;
}

int main(int argc, char **argv) {
  const char *addr = getenv("QQ_SERVE_ADDR") ? getenv("QQ_SERVE_ADDR") : "127.0.0.1:50051";
  const char *ca = NULL, *cert = NULL, *key = NULL;
  double timeout = 0;
  int a = 1;
  for (; a < argc && !strncmp(argv[a], "--", 2); a++) {
    const char *f = argv[a];
    if (!strcmp(f, "--help")) {
      fputs(USAGE, stdout);
      return 0;
    }
    if (a + 1 >= argc) {
      fprintf(stderr, "qquant-client: %s needs a value\n%s", f, USAGE);
      return 2;
    }
    if (!strcmp(f, "--addr")) addr = argv[++a];
    else if (!strcmp(f, "--timeout")) timeout = atof(argv[++a]);
    else if (!strcmp(f, "--tls-ca")) ca = argv[++a];
    else if (!strcmp(f, "--tls-cert")) cert = argv[++a];
    else if (!strcmp(f, "--tls-key")) key = argv[++a];
    else {
      fprintf(stderr, "qquant-client: unknown flag %s\n%s", f, USAGE);
      return 2;
    }
  }
  if (a >= argc) {
    fputs(USAGE, stderr);
    return 2;
  }
  const char *cmd = argv[a++];
  grpc_init();
  char err[512], detail[1024] = "";
  grpc_channel *ch = qq_rpc_connect(addr, ca, cert, key, err, sizeof err);
  if (!ch) {
    fprintf(stderr, "qquant-client: %s\n", err);
    return 2;
  }
  int rc = 2;
  if (!strcmp(cmd, "classify")) {
    Qquant__V1__ClassifyRequest r = QQUANT__V1__CLASSIFY_REQUEST__INIT;
    char **texts = calloc((size_t)argc, sizeof *texts);
    size_t nt = 0;
    for (; a < argc; a++) {
      if (!strcmp(argv[a], "--labels") && a + 1 < argc) r.candidate_labels = split_commas(argv[++a], &r.n_candidate_labels);
      else if (!strcmp(argv[a], "--truncate") && a + 1 < argc) {
        a++;
        r.truncation = !strcmp(argv[a], "left") ? QQUANT__V1__TRUNCATION__TRUNCATION_LEFT : QQUANT__V1__TRUNCATION__TRUNCATION_RIGHT;
      } else if (!strcmp(argv[a], "--max-input-tokens") && a + 1 < argc) r.max_input_tokens = (uint32_t)atoi(argv[++a]);
      else if (!strcmp(argv[a], "--label-prefix") && a + 1 < argc) r.label_prefix = argv[++a];
      else texts[nt++] = argv[a];
    }
    r.inputs = texts;
    r.n_inputs = nt;
    rc = finish(qq_rpc_call(ch, "/qquant.v1.Inference/Classify", &r.base, timeout, on_classify, NULL, detail, sizeof detail), detail);
    for (size_t i = 0; i < r.n_candidate_labels; i++) free(r.candidate_labels[i]);
    free(r.candidate_labels);
    free(texts);
  } else if (!strcmp(cmd, "generate")) {
    Qquant__V1__GenerateRequest r = QQUANT__V1__GENERATE_REQUEST__INIT;
    gen_state g = {0, 0};
    char **stops = calloc((size_t)argc, sizeof *stops);
    int32_t *ids = calloc((size_t)argc * 64 + 1, sizeof *ids);
    for (; a < argc; a++) {
      const char *f = argv[a];
      bool v = a + 1 < argc;
      if (!strcmp(f, "--max-new-tokens") && v) r.max_new_tokens = (uint32_t)atoi(argv[++a]);
      else if (!strcmp(f, "--temperature") && v) r.temperature = (float)atof(argv[++a]);
      else if (!strcmp(f, "--top-k") && v) r.top_k = (uint32_t)atoi(argv[++a]);
      else if (!strcmp(f, "--top-p") && v) r.top_p = (float)atof(argv[++a]);
      else if (!strcmp(f, "--seed") && v) r.seed = strtoull(argv[++a], NULL, 10);
      else if (!strcmp(f, "--stop") && v) stops[r.n_stop++] = argv[++a];
      else if (!strcmp(f, "--ignore-eos")) r.ignore_eos = 1;
      else if (!strcmp(f, "--show-ids")) g.show_ids = 1;
      else if (!strcmp(f, "--ids") && v) {
        char *s = argv[++a], *save = NULL;
        for (char *t = strtok_r(s, ",", &save); t && r.n_prompt_token_ids < (size_t)argc * 64; t = strtok_r(NULL, ",", &save))
          ids[r.n_prompt_token_ids++] = atoi(t);
      } else r.prompt = argv[a];
    }
    r.stop = stops;
    r.prompt_token_ids = ids;
    rc = finish(qq_rpc_call(ch, "/qquant.v1.Inference/Generate", &r.base, timeout, on_generate, &g, detail, sizeof detail), detail);
    free(stops);
    free(ids);
  } else if (!strcmp(cmd, "info")) {
    Qquant__V1__GetModelInfoRequest r = QQUANT__V1__GET_MODEL_INFO_REQUEST__INIT;
    rc = finish(qq_rpc_call(ch, "/qquant.v1.Inference/GetModelInfo", &r.base, timeout, on_info, NULL, detail, sizeof detail), detail);
  } else if (!strcmp(cmd, "health")) {
    Grpc__Health__V1__HealthCheckRequest r = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    bool watch = false;
    for (; a < argc; a++) {
      if (!strcmp(argv[a], "--watch")) watch = true;
      else r.service = argv[a];
    }
    rc = finish(qq_rpc_call(ch, watch ? "/grpc.health.v1.Health/Watch" : "/grpc.health.v1.Health/Check", &r.base,
                            timeout, on_health, NULL, detail, sizeof detail), detail);
  } else {
    fprintf(stderr, "qquant-client: unknown command '%s'\n%s", cmd, USAGE);
  }
  grpc_channel_destroy(ch);
  grpc_shutdown();
  return rc;
}
