/* bench-libs: qq_model cjson */
/* bench_quant_eval.c — quality of a (quantized) checkpoint: perplexity on a corpus (the fixtures'
 * protocol: whole text tokenized without special tokens, non-overlapping windows of 512 tokens, mean
 * NLL of positions 1..511, each window without context), KL divergence of the next-token
 * distributions against a reference checkpoint over the same positions, and classification accuracy
 * on a labelled jsonl (text truncated to 256 tokens, label of the last token).
 *
 *   bench_quant_eval --model DIR [--ref DIR] [--ppl FILE --windows N] [--cls FILE] [--threads N]
 * prints one JSON object. (docs/quality.md is made with `qquant eval` by bench/quant_quality.sh.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "model.h"

#define WINDOW 512

static qq_model *load(const char *dir, int threads) {
  qq_model_options o = qq_model_options_default();
  o.device = QQ_DEVICE_CPU;
  o.n_threads = threads;
  qq_model *m = NULL;
  qq_error err = {0};
  if (qq_model_load(dir, &o, &m, &err)) {
    fprintf(stderr, "bench_quant_eval: %s: %s\n", dir, err.msg);
    exit(1);
  }
  return m;
}

static float *window_logits(qq_model *m, qq_kv_cache *kv, const int32_t *ids, int32_t n) {
  const int32_t V = qq_model_output_dim(m);
  float *out = malloc(sizeof(float) * (size_t)n * V);
  qq_error err = {0};
  int32_t seq;
  if (!out || qq_kv_seq_open(kv, &seq, &err)) {
    fprintf(stderr, "bench_quant_eval: %s\n", err.msg);
    exit(1);
  }
  qq_forward_item it = {.seq = seq, .tokens = ids, .n_tokens = n, .all_rows = true};
  if (qq_model_forward(m, kv, &it, 1, out, &err)) {
    fprintf(stderr, "bench_quant_eval: forward: %s\n", err.msg);
    exit(1);
  }
  qq_kv_seq_close(kv, seq);
  return out;
}

/* log-softmax of row into lp (double). */
static void log_softmax(const float *row, int32_t V, double *lp) {
  double mx = -INFINITY, s = 0.0;
  for (int32_t v = 0; v < V; v++) mx = fmax(mx, row[v]);
  for (int32_t v = 0; v < V; v++) s += exp((double)row[v] - mx);
  double lse = mx + log(s);
  for (int32_t v = 0; v < V; v++) lp[v] = (double)row[v] - lse;
}

int main(int argc, char **argv) {
  const char *model = NULL, *ref = NULL, *ppl = NULL, *cls = NULL;
  int windows = 40, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--model")) model = argv[i + 1];
    else if (!strcmp(argv[i], "--ref")) ref = argv[i + 1];
    else if (!strcmp(argv[i], "--ppl")) ppl = argv[i + 1];
    else if (!strcmp(argv[i], "--cls")) cls = argv[i + 1];
    else if (!strcmp(argv[i], "--windows")) windows = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
  }
  if (!model) {
    fprintf(stderr, "usage: bench_quant_eval --model DIR [--ref DIR] [--ppl FILE --windows N] [--cls FILE]\n");
    return 2;
  }
  qq_kernels_setup_openblas(argv);
  qq_error err = {0};
  qq_model *m = load(model, threads), *r = ref ? load(ref, threads) : NULL;
  cJSON *out = cJSON_CreateObject();
  cJSON_AddStringToObject(out, "model", model);
  double t0 = qq_now_sec();
  qq_encode_options eo = qq_encode_options_default();
  eo.parse_special = false;
  eo.add_special = false;
  if (ppl) {
    char *text = NULL;
    size_t len = 0;
    qq_token_ids ids = {0};
    if (qq_read_file(ppl, &text, &len, &err) || qq_tokenizer_encode(qq_model_tokenizer(m), text, len, &eo, &ids, &err)) {
      fprintf(stderr, "bench_quant_eval: %s: %s\n", ppl, err.msg);
      return 1;
    }
    qq_kv_options ko = qq_kv_options_default();
    ko.max_seqs = 1;
    ko.max_seq_len = WINDOW;
    qq_kv_cache *kv = NULL, *kvr = NULL;
    if (qq_kv_cache_create(m, &ko, &kv, &err) || (r && qq_kv_cache_create(r, &ko, &kvr, &err))) {
      fprintf(stderr, "bench_quant_eval: kv: %s\n", err.msg);
      return 1;
    }
    const int32_t V = qq_model_output_dim(m);
    double *lp = malloc(sizeof(double) * V), *lq = malloc(sizeof(double) * V);
    double nll = 0.0, kl = 0.0;
    long count = 0;
    int w;
    for (w = 0; w < windows && (size_t)(w + 1) * WINDOW <= ids.n; w++) {
      const int32_t *win = ids.ids + (size_t)w * WINDOW;
      float *lg = window_logits(m, kv, win, WINDOW);
      float *lr = r ? window_logits(r, kvr, win, WINDOW) : NULL;
      for (int32_t t = 0; t + 1 < WINDOW; t++) {
        log_softmax(lg + (size_t)t * V, V, lq);
        nll -= lq[win[t + 1]];
        if (lr) {
          log_softmax(lr + (size_t)t * V, V, lp);
          double k = 0.0;
          for (int32_t v = 0; v < V; v++) k += exp(lp[v]) * (lp[v] - lq[v]);
          kl += k;
        }
        count++;
      }
      free(lg);
      free(lr);
    }
    cJSON_AddStringToObject(out, "corpus", ppl);
    cJSON_AddNumberToObject(out, "windows", w);
    cJSON_AddNumberToObject(out, "tokens", (double)count);
    cJSON_AddNumberToObject(out, "mean_nll", nll / count);
    cJSON_AddNumberToObject(out, "ppl", exp(nll / count));
    if (r) cJSON_AddNumberToObject(out, "kl", kl / count);
    free(lp);
    free(lq);
    qq_kv_cache_free(kv);
    qq_kv_cache_free(kvr);
    qq_token_ids_free(&ids);
    free(text);
  }
  if (cls) {
    char *text = NULL;
    size_t len = 0;
    if (qq_read_file(cls, &text, &len, &err)) {
      fprintf(stderr, "bench_quant_eval: %s\n", err.msg);
      return 1;
    }
    const qq_config *cfg = qq_model_config(m);
    qq_kv_options ko = qq_kv_options_default();
    ko.max_seqs = 1;
    ko.max_seq_len = 256;
    qq_kv_cache *kv = NULL;
    if (qq_kv_cache_create(m, &ko, &kv, &err)) return 1;
    long right = 0, total = 0;
    char *line = text;
    const int32_t C = qq_model_output_dim(m);
    float *sc = malloc(sizeof(float) * C);
    while (line && *line) {
      char *nl = strchr(line, '\n');
      if (nl) *nl = 0;
      cJSON *j = cJSON_Parse(line);
      const cJSON *t = cJSON_GetObjectItem(j, "text"), *lb = cJSON_GetObjectItem(j, "label");
      if (cJSON_IsString(t) && cJSON_IsString(lb)) {
        qq_token_ids ids = {0};
        if (qq_tokenizer_encode(qq_model_tokenizer(m), t->valuestring, strlen(t->valuestring), &eo, &ids, &err)) return 1;
        int32_t n = ids.n > 256 ? 256 : (int32_t)ids.n, seq;
        if (n > 0 && !qq_kv_seq_open(kv, &seq, &err)) {
          qq_forward_item it = {.seq = seq, .tokens = ids.ids, .n_tokens = n, .all_rows = false};
          if (qq_model_forward(m, kv, &it, 1, sc, &err)) return 1;
          qq_kv_seq_close(kv, seq);
          int32_t best = 0;
          for (int32_t c = 1; c < C; c++)
            if (sc[c] > sc[best]) best = c;
          right += cfg->id2label && !strcmp(cfg->id2label[best], lb->valuestring);
          total++;
        }
        qq_token_ids_free(&ids);
      }
      cJSON_Delete(j);
      line = nl ? nl + 1 : NULL;
    }
    cJSON_AddStringToObject(out, "cls_file", cls);
    cJSON_AddNumberToObject(out, "cls_examples", (double)total);
    cJSON_AddNumberToObject(out, "accuracy", total ? (double)right / total : 0.0);
    free(sc);
    qq_kv_cache_free(kv);
    free(text);
  }
  cJSON_AddNumberToObject(out, "seconds", qq_now_sec() - t0);
  char *s = cJSON_PrintUnformatted(out);
  printf("%s\n", s);
  free(s);
  cJSON_Delete(out);
  qq_model_free(m);
  qq_model_free(r);
  return 0;
}
