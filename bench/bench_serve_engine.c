/* bench-libs: qq_service qq_proto qq_model qq_kernels */
/* bench_serve_engine.c — the serving engine's own throughput, with no gRPC: the same scheduler
 * (admission, continuous batching, chunked prefill, sampling, detokenization) as qquant-serve, driven
 * in-process with the same work that `qquant-bench` sends over the wire (greedy Generate of the same
 * built-in prompts, ignore_eos, a fixed number of new tokens, a fixed number of requests in flight).
 * Comparing the two gives the service overhead.
 *   bench_serve_engine [--model DIR] [--concurrency N] [--requests N] [--max-new-tokens N] [--threads N] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kernels.h"

static const char *const PROMPTS[] = {
    "The jury said that the election", "Once upon a time", "Subject: Re: meeting tomorrow\nHi all,",
    "The committee reported that the city", "In the morning the weather was", "He told them that the new law"};

typedef struct driver {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int32_t in_flight, done, failed;
  int64_t tokens;
} driver;

static void on_emit(qq_job *j, const int32_t *ids, int32_t n, const char *text, size_t len) {
  driver *d = j->user;
  pthread_mutex_lock(&d->mu);
  d->tokens += n;
  pthread_mutex_unlock(&d->mu);
}

static void on_complete(qq_job *j) {
  driver *d = j->user;
  pthread_mutex_lock(&d->mu);
  d->in_flight--;
  d->done++;
  if (j->code) {
    d->failed++;
    fprintf(stderr, "job failed: %d %s\n", j->code, j->msg);
  }
  pthread_cond_broadcast(&d->cv);
  pthread_mutex_unlock(&d->mu);
  free(j->prompt);
  free(j);
}

int main(int argc, char **argv) {
  qq_kernels_setup_openblas(argv);
  char model_dir[1024];
  const char *fx = getenv("QQ_FIXTURES");
  snprintf(model_dir, sizeof model_dir, "%s/models/qwen2-tiny-lm", fx ? fx : "../shared/fixtures");
  int32_t conc = 8, requests = 200, max_new = 32, threads = 0;
  for (int a = 1; a + 1 < argc; a += 2) {
    if (!strcmp(argv[a], "--model")) snprintf(model_dir, sizeof model_dir, "%s", argv[a + 1]);
    else if (!strcmp(argv[a], "--concurrency")) conc = atoi(argv[a + 1]);
    else if (!strcmp(argv[a], "--requests")) requests = atoi(argv[a + 1]);
    else if (!strcmp(argv[a], "--max-new-tokens")) max_new = atoi(argv[a + 1]);
    else if (!strcmp(argv[a], "--threads")) threads = atoi(argv[a + 1]);
    else {
      fprintf(stderr, "unknown flag %s\n", argv[a]);
      return 2;
    }
  }
  qq_error err = {0};
  qq_model_options mo = qq_model_options_default();
  mo.device = QQ_DEVICE_CPU;
  mo.n_threads = threads;
  qq_model *m = NULL;
  qq_metrics *met = NULL;
  qq_engine *e = NULL;
  if (qq_model_load(model_dir, &mo, &m, &err) || qq_metrics_create(&met, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  /* the server's defaults: --max-batch 64, --prefill-chunk 128, --step-tokens 512 */
  qq_engine_options eo = {.max_queue = 4096, .max_batch = 64, .max_seq_len = 256, .kv_blocks = 1024,
                          .prefill_chunk = 128, .step_tokens = 512};
  if (qq_engine_create(m, &eo, met, &e, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  driver d = {.in_flight = 0};
  pthread_mutex_init(&d.mu, NULL);
  pthread_cond_init(&d.cv, NULL);
  const qq_tokenizer *tok = qq_model_tokenizer(m);
  double t0 = qq_now_sec();
  for (int32_t i = 0; i < requests; i++) {
    pthread_mutex_lock(&d.mu);
    while (d.in_flight >= conc) pthread_cond_wait(&d.cv, &d.mu);
    d.in_flight++;
    pthread_mutex_unlock(&d.mu);
    qq_job *j = calloc(1, sizeof *j);
    qq_token_ids ids = {0};
    qq_encode_options o = qq_encode_options_default();
    o.add_special = true;
    const char *p = PROMPTS[(size_t)i % QQ_ARRAY_LEN(PROMPTS)];
    if (qq_tokenizer_encode(tok, p, strlen(p), &o, &ids, &err)) {
      fprintf(stderr, "%s\n", err.msg);
      return 1;
    }
    j->kind = QQ_JOB_GENERATE;
    j->prompt = ids.ids;
    j->n_prompt = (int32_t)ids.n;
    j->max_new = max_new;
    j->sampling = qq_sampling_default();
    j->ignore_eos = true;
    j->user = &d;
    j->emit = on_emit;
    j->complete = on_complete;
    j->t_submit = qq_now_sec();
    if (qq_engine_submit(e, j, &err)) {
      fprintf(stderr, "%s\n", err.msg);
      return 1;
    }
  }
  pthread_mutex_lock(&d.mu);
  while (d.done < requests) pthread_cond_wait(&d.cv, &d.mu);
  pthread_mutex_unlock(&d.mu);
  double wall = qq_now_sec() - t0;
  printf("bench_serve_engine: %d requests x %d new tokens at concurrency %d (%s)\n", requests, max_new, conc,
         qq_backend_description(qq_model_backend(m)));
  printf("  failed %d, wall %.2f s, %.2f requests/s, %lld tokens, %.1f tokens/s\n", d.failed, wall, requests / wall,
         (long long)d.tokens, d.tokens / wall);
  qq_engine_free(e);
  qq_metrics_free(met);
  qq_model_free(m);
  return d.failed ? 1 : 0;
}
