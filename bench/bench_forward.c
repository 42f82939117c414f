/* bench-libs: qq_model */
/* bench_forward.c — CPU prefill and decode throughput of a checkpoint (default: the qwen2-tiny-lm
 * fixture) at batch 1 and 8. Prints a table; medians of --reps runs.
 *   bench_forward [--model DIR] [--threads N] [--prompt-len L] [--decode-steps S] [--reps R] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* One run: prefill `batch` sequences of len tokens in one step, then `steps` decode steps. */
static int run_once(qq_model *m, int batch, int len, int steps, double *prefill_s, double *decode_s) {
  qq_error err = {0};
  const int32_t V = qq_model_output_dim(m), vocab = qq_model_config(m)->vocab_size;
  qq_kv_options ko = qq_kv_options_default();
  ko.max_seqs = batch;
  ko.max_seq_len = len + steps;
  qq_kv_cache *kv = NULL;
  if (qq_kv_cache_create(m, &ko, &kv, &err) != QQ_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  int32_t *tok = malloc((size_t)batch * len * sizeof(int32_t));
  for (int i = 0; i < batch * len; i++) tok[i] = (int32_t)((i * 7919u + 13u) % (unsigned)vocab);
  qq_forward_item items[64];
  for (int b = 0; b < batch; b++) {
    int32_t s;
    qq_kv_seq_open(kv, &s, &err);
    items[b] = (qq_forward_item){.seq = s, .tokens = tok + (size_t)b * len, .n_tokens = len};
  }
  float *out = malloc((size_t)batch * V * sizeof(float));
  double t0 = qq_now_sec();
  if (qq_model_forward(m, kv, items, batch, out, &err) != QQ_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  double t1 = qq_now_sec();
  int32_t next[64];
  for (int st = 0; st < steps; st++) {
    for (int b = 0; b < batch; b++) {
      next[b] = (int32_t)((st * 31 + b) % vocab);
      items[b].tokens = &next[b];
      items[b].n_tokens = 1;
    }
    if (qq_model_forward(m, kv, items, batch, out, &err) != QQ_OK) {
      fprintf(stderr, "%s\n", err.msg);
      return 1;
    }
  }
  double t2 = qq_now_sec();
  *prefill_s = t1 - t0;
  *decode_s = t2 - t1;
  free(tok);
  free(out);
  qq_kv_cache_free(kv);
  return 0;
}

int main(int argc, char **argv) {
  qq_kernels_setup_openblas(argv);
  const char *dir = NULL;
  int threads = 2, len = 128, steps = 64, reps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--model")) dir = argv[i + 1];
    else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--prompt-len")) len = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--decode-steps")) steps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
    else {
      fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
  }
  char def[4096];
  if (!dir) {
    const char *fx = getenv("QQ_FIXTURES");
    snprintf(def, sizeof def, "%s/models/qwen2-tiny-lm", fx ? fx : "../shared/fixtures");
    dir = def;
  }
  if (reps < 1 || reps > 99 || len < 1 || steps < 1) return 2;
  qq_error err = {0};
  qq_model_options mo = qq_model_options_default();
  mo.device = QQ_DEVICE_CPU;
  mo.n_threads = threads;
  mo.load_tokenizer = false;
  qq_model *m = NULL;
  if (qq_model_load(dir, &mo, &m, &err) != QQ_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  printf("model %s (%s), %s\n", dir, qq_model_config(m)->architecture, qq_backend_description(qq_model_backend(m)));
  printf("prompt %d tokens per sequence, %d decode steps, median of %d runs\n\n", len, steps, reps);
  printf("%-6s %16s %16s\n", "batch", "prefill tok/s", "decode tok/s");
  const int batches[] = {1, 8};
  for (size_t bi = 0; bi < 2; bi++) {
    int b = batches[bi];
    double pf[99], dc[99];
    for (int r = 0; r < reps; r++) {
      double p, d;
      if (run_once(m, b, len, steps, &p, &d)) return 1;
      pf[r] = (double)b * len / p;
      dc[r] = (double)b * steps / d;
    }
    qsort(pf, (size_t)reps, sizeof(double), cmp_d);
    qsort(dc, (size_t)reps, sizeof(double), cmp_d);
    printf("%-6d %16.0f %16.1f\n", b, pf[reps / 2], dc[reps / 2]);
  }
  qq_model_free(m);
  return 0;
}
