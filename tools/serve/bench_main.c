/* qquant-bench — drives a running qquant-serve at a given concurrency and request mix, and prints
 * throughput and latency percentiles (time to first token, time per output token, request latency).
 *   qquant-bench [--addr H:P] [--concurrency N] [--requests N] [--generate-fraction F]
 *                [--max-new-tokens N] [--prompts FILE] [--labels a,b] [--json]
 * Prompts: one per line from FILE (default: a few built-in English prompts). Generate requests are
 * greedy with ignore_eos, so every one produces exactly --max-new-tokens tokens. Classify requests send
 * one input each (zero-shot over --labels when given). */
#include <grpc/grpc.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qq_common.h"
#include "qquant/v1/inference.pb-c.h"
#include "rpc.h"

static const char *const BUILTIN[] = {
    "The jury said that the election", "Once upon a time", "Subject: Re: meeting tomorrow\nHi all,",
    "The committee reported that the city", "In the morning the weather was", "He told them that the new law"};

typedef struct sample {
  double ttft, tpot, latency;
  int32_t tokens;
  int code;
  int is_gen;
} sample;

typedef struct bench {
  grpc_channel *ch;
  char **prompts;
  size_t n_prompts;
  char **labels;
  size_t n_labels;
  int32_t requests, max_new;
  double gen_fraction;
  pthread_mutex_t mu;
  int32_t next;
  sample *samples;
} bench;

typedef struct stream_state {
  double t0, t_first, t_last;
  int32_t tokens;
} stream_state;

static int on_gen(void *u, const uint8_t *d, size_t n) {
  stream_state *s = u;
  Qquant__V1__GenerateResponse *r = qquant__v1__generate_response__unpack(NULL, n, d);
  if (!r) return 1;
  double now = qq_now_sec();
  if (r->n_token_ids && s->tokens == 0) s->t_first = now;
  s->tokens += (int32_t)r->n_token_ids;
  s->t_last = now;
  qquant__v1__generate_response__free_unpacked(r, NULL);
  return 0;
}

static void *worker(void *arg) {
  bench *b = arg;
  for (;;) {
    pthread_mutex_lock(&b->mu);
    int32_t i = b->next < b->requests ? b->next++ : -1;
    pthread_mutex_unlock(&b->mu);
    if (i < 0) break;
    /* a deterministic mix: request i is Generate when its hash falls under the fraction */
    uint32_t h = (uint32_t)i * 2654435761u;
    int is_gen = (double)(h >> 8) / (double)(1u << 24) < b->gen_fraction;
    const char *prompt = b->prompts[(size_t)i % b->n_prompts];
    char detail[512];
    sample *s = &b->samples[i];
    s->is_gen = is_gen;
    double t0 = qq_now_sec();
    if (is_gen) {
      Qquant__V1__GenerateRequest r = QQUANT__V1__GENERATE_REQUEST__INIT;
      r.prompt = (char *)prompt;
      r.max_new_tokens = (uint32_t)b->max_new;
      r.ignore_eos = 1;
      stream_state st = {t0, 0, 0, 0};
      s->code = qq_rpc_call(b->ch, "/qquant.v1.Inference/Generate", &r.base, 600, on_gen, &st, detail, sizeof detail);
      s->tokens = st.tokens;
      s->ttft = st.tokens ? st.t_first - t0 : NAN;
      s->tpot = st.tokens > 1 ? (st.t_last - st.t_first) / (st.tokens - 1) : NAN;
    } else {
      Qquant__V1__ClassifyRequest r = QQUANT__V1__CLASSIFY_REQUEST__INIT;
      char *in[1] = {(char *)prompt};
      r.inputs = in;
      r.n_inputs = 1;
      r.candidate_labels = b->labels;
      r.n_candidate_labels = b->n_labels;
      s->code = qq_rpc_call(b->ch, "/qquant.v1.Inference/Classify", &r.base, 600, NULL, NULL, detail, sizeof detail);
      s->ttft = s->tpot = NAN;
    }
    s->latency = qq_now_sec() - t0;
    if (s->code) fprintf(stderr, "request %d: %s: %s\n", i, qq_rpc_status_name(s->code), detail);
  }
  return NULL;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of the finite values of one field. */
static void pct(const sample *s, int32_t n, size_t off, int gen_only, double out[3]) {
  double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
  int32_t k = 0;
  for (int32_t i = 0; i < n; i++) {
    double x = *(const double *)((const char *)&s[i] + off);
    if (s[i].code == 0 && (!gen_only || s[i].is_gen) && isfinite(x)) v[k++] = x;
  }
  qsort(v, (size_t)k, sizeof *v, cmp_d);
  const double q[3] = {0.50, 0.90, 0.99};
  for (int j = 0; j < 3; j++) out[j] = k ? v[(int32_t)QQ_MIN(k - 1, (int32_t)ceil(q[j] * k) - 1)] : NAN;
  free(v);
}

int main(int argc, char **argv) {
  const char *addr = "127.0.0.1:50051", *prompts_file = NULL, *labels = NULL;
  int32_t conc = 8, requests = 200, max_new = 32;
  double gen_fraction = 1.0;
  int json = 0;
  for (int a = 1; a < argc; a++) {
    const char *f = argv[a];
    int v = a + 1 < argc;
    if (!strcmp(f, "--addr") && v) addr = argv[++a];
    else if (!strcmp(f, "--concurrency") && v) conc = atoi(argv[++a]);
    else if (!strcmp(f, "--requests") && v) requests = atoi(argv[++a]);
    else if (!strcmp(f, "--generate-fraction") && v) gen_fraction = atof(argv[++a]);
    else if (!strcmp(f, "--max-new-tokens") && v) max_new = atoi(argv[++a]);
    else if (!strcmp(f, "--prompts") && v) prompts_file = argv[++a];
    else if (!strcmp(f, "--labels") && v) labels = argv[++a];
    else if (!strcmp(f, "--json")) json = 1;
    else {
      fprintf(stderr, "usage: qquant-bench [--addr H:P] [--concurrency N] [--requests N] [--generate-fraction F]\n"
                      "                    [--max-new-tokens N] [--prompts FILE] [--labels a,b] [--json]\n");
      return 2;
    }
  }
  if (conc < 1 || requests < 1 || max_new < 1) {
    fprintf(stderr, "qquant-bench: --concurrency, --requests and --max-new-tokens must be positive\n");
    return 2;
  }
  bench b = {0};
  b.requests = requests;
  b.max_new = max_new;
  b.gen_fraction = gen_fraction;
  pthread_mutex_init(&b.mu, NULL);
  if (prompts_file) {
    FILE *f = fopen(prompts_file, "r");
    if (!f) {
      fprintf(stderr, "qquant-bench: cannot open %s\n", prompts_file);
      return 2;
    }
    char line[8192];
    size_t cap = 0;
    while (fgets(line, sizeof line, f)) {
      line[strcspn(line, "\n")] = 0;
      if (!line[0]) continue;
      if (b.n_prompts == cap) b.prompts = realloc(b.prompts, (cap = cap ? cap * 2 : 64) * sizeof(char *));
      b.prompts[b.n_prompts++] = strdup(line);
    }
    fclose(f);
  } else {
    b.n_prompts = QQ_ARRAY_LEN(BUILTIN);
    b.prompts = malloc(b.n_prompts * sizeof(char *));
    for (size_t i = 0; i < b.n_prompts; i++) b.prompts[i] = strdup(BUILTIN[i]);
  }
  if (!b.n_prompts) {
    fprintf(stderr, "qquant-bench: no prompts\n");
    return 2;
  }
  if (labels) {
    char *dup = strdup(labels), *save = NULL;
    b.labels = calloc(strlen(labels) + 1, sizeof(char *));
    for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) b.labels[b.n_labels++] = strdup(t);
    free(dup);
  }
  grpc_init();
  char err[256];
  b.ch = qq_rpc_connect(addr, NULL, NULL, NULL, err, sizeof err);
  if (!b.ch) {
    fprintf(stderr, "qquant-bench: %s\n", err);
    return 2;
  }
  b.samples = calloc((size_t)requests, sizeof(sample));
  pthread_t *th = calloc((size_t)conc, sizeof *th);
  double t0 = qq_now_sec();
  for (int32_t i = 0; i < conc; i++) pthread_create(&th[i], NULL, worker, &b);
  for (int32_t i = 0; i < conc; i++) pthread_join(th[i], NULL);
  double wall = qq_now_sec() - t0;
  int64_t tokens = 0;
  int32_t ok = 0, gen = 0;
  for (int32_t i = 0; i < requests; i++) {
    ok += b.samples[i].code == 0;
    gen += b.samples[i].is_gen;
    tokens += b.samples[i].tokens;
  }
  double ttft[3], tpot[3], lat[3];
  pct(b.samples, requests, offsetof(sample, ttft), 1, ttft);
  pct(b.samples, requests, offsetof(sample, tpot), 1, tpot);
  pct(b.samples, requests, offsetof(sample, latency), 0, lat);
  if (json) {
    printf("{\"concurrency\":%d,\"requests\":%d,\"generate\":%d,\"ok\":%d,\"wall_s\":%.3f,\"requests_per_s\":%.3f,"
           "\"generated_tokens\":%lld,\"tokens_per_s\":%.2f,\"ttft_s\":[%.5f,%.5f,%.5f],\"tpot_s\":[%.5f,%.5f,%.5f],"
           "\"latency_s\":[%.5f,%.5f,%.5f]}\n",
           conc, requests, gen, ok, wall, requests / wall, (long long)tokens, tokens / wall, ttft[0], ttft[1], ttft[2],
           tpot[0], tpot[1], tpot[2], lat[0], lat[1], lat[2]);
  } else {
    printf("qquant-bench: %d requests (%d generate, %d classify) at concurrency %d against %s\n", requests, gen,
           requests - gen, conc, addr);
    printf("  ok %d / %d, wall %.2f s, %.2f requests/s, %lld generated tokens, %.1f tokens/s\n", ok, requests, wall,
           requests / wall, (long long)tokens, tokens / wall);
    printf("  time to first token  p50 %.4f s  p90 %.4f s  p99 %.4f s\n", ttft[0], ttft[1], ttft[2]);
    printf("  time per output token p50 %.4f s  p90 %.4f s  p99 %.4f s\n", tpot[0], tpot[1], tpot[2]);
    printf("  request latency      p50 %.4f s  p90 %.4f s  p99 %.4f s\n", lat[0], lat[1], lat[2]);
  }
  grpc_channel_destroy(b.ch);
  grpc_shutdown();
  for (size_t i = 0; i < b.n_prompts; i++) free(b.prompts[i]);
  free(b.prompts);
  for (size_t i = 0; i < b.n_labels; i++) free(b.labels[i]);
  free(b.labels);
  free(b.samples);
  free(th);
  return ok == requests ? 0 : 1;
}
