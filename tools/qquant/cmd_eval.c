/* cmd_eval.c — `qquant eval`: perplexity (fixture protocol), KL divergence against a reference
 * checkpoint, and classification accuracy on a labelled jsonl. Human table or --json. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "model.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: qquant eval --model DIR (--ppl FILE | --classify FILE.jsonl) [options]\n"
          "  --ppl FILE          perplexity over non-overlapping windows of the tokenized text (no special\n"
          "                      tokens), each window scored from no context over positions 1..window-1\n"
          "  --window N          window length in tokens (default 512)\n"
          "  --windows N         score the first N windows (default: all whole windows)\n"
          "  --kl-ref DIR        also report KL(P_ref || P_model) against the checkpoint in DIR: of next-token\n"
          "                      distributions with --ppl (and top-1 agreement), of label distributions with\n"
          "                      --classify (and label agreement)\n"
          "  --classify FILE     accuracy of a sequence classifier on jsonl lines {\"label\": ..., \"text\": ...}\n"
          "  --max-tokens N      classification: truncate each text to its first N tokens (default 256)\n"
          "  --limit N           classification: only the first N examples\n"
          "  --device auto|cpu|cuda, --threads N\n"
          "  --dtype auto|fp32|bf16|fp16   activations on the GPU (default bf16; fp32 matches the CPU backend)\n"
          "  --rope-freq exact|bf16\n"
          "                      RoPE frequencies (default exact); bf16: Hugging Face's fp32 inv_freq rounded to\n"
          "                      bf16, as transformers computes after model.to(torch.bfloat16) (the fixtures'\n"
          "                      goldens were made that way; also used for --kl-ref)\n"
          "  --json              machine-readable output on stdout (with the backend, dtype and rope_freq used)\n"
          "  --quiet             no progress on stderr\n");
}

typedef struct progress_ctx {
  const char *what;
  double t0;
  bool on;
} progress_ctx;

static void on_progress(void *user, int64_t done, int64_t total) {
  progress_ctx *p = user;
  if (!p->on) return;
  double el = qq_now_sec() - p->t0;
  double eta = done > 0 ? el / (double)done * (double)(total - done) : 0;
  fprintf(stderr, "\r%s: %lld/%lld  elapsed %.1f s  ETA %.1f s   ", p->what, (long long)done, (long long)total, el, eta);
  if (done == total) fprintf(stderr, "\n");
}

/* What the figures were computed with: the backend ("cpu (OpenBLAS ..., 2 threads)", "cuda (...)"), its
 * activation dtype and the RoPE frequency mode, so that a JSON result says how to reproduce it. */
static void json_add_run(cJSON *o, qq_model *m, const qq_model_options *mo) {
  qq_backend *be = qq_model_backend(m);
  cJSON_AddStringToObject(o, "backend", qq_backend_description(be));
  cJSON_AddStringToObject(o, "dtype", qq_act_dtype_name(qq_backend_act(be)));
  cJSON_AddStringToObject(o, "rope_freq", qq_rope_freq_name(mo->rope_freq));
}

static int eval_ppl(qq_model *m, const char *ref_dir, const qq_model_options *mo, const char *file, long window,
                    long windows, bool json, bool quiet) {
  qq_error err = {0};
  char *text = NULL;
  size_t len = 0;
  qq_token_ids ids = {0};
  qq_model *ref = NULL;
  int rc = 1;
  if (qq_read_file(file, &text, &len, &err) != QQ_OK) goto fail;
  qq_encode_options eo = qq_encode_options_default();
  eo.add_special = false;
  double t0 = qq_now_sec();
  if (qq_tokenizer_encode(qq_model_tokenizer(m), text, len, &eo, &ids, &err) != QQ_OK) goto fail;
  if (!quiet) fprintf(stderr, "tokenized %s: %zu bytes -> %zu tokens in %.2f s\n", file, len, ids.n, qq_now_sec() - t0);
  if (ref_dir) {
    qq_model_options ro = *mo;
    ro.load_tokenizer = false;
    if (qq_model_load(ref_dir, &ro, &ref, &err) != QQ_OK) goto fail;
  }
  progress_ctx pc = {.what = "perplexity windows", .t0 = qq_now_sec(), .on = !quiet && isatty(2)};
  if (!quiet && !pc.on) fprintf(stderr, "scoring windows of %ld tokens...\n", window);
  qq_ppl_result r;
  if (qq_eval_perplexity(m, ref, ids.ids, ids.n, (int32_t)window, (int32_t)windows, on_progress, &pc, &r, &err) != QQ_OK)
    goto fail;
  double secs = qq_now_sec() - pc.t0;
  if (json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", file);
    cJSON_AddNumberToObject(o, "ppl", r.ppl);
    cJSON_AddNumberToObject(o, "mean_nll", r.mean_nll);
    cJSON_AddNumberToObject(o, "tokens", (double)r.tokens);
    cJSON_AddNumberToObject(o, "windows", r.windows);
    cJSON_AddNumberToObject(o, "window", (double)window);
    if (ref) {
      cJSON_AddNumberToObject(o, "ref_ppl", exp(r.ref_mean_nll));
      cJSON_AddNumberToObject(o, "kl_mean", r.mean_kl);
      cJSON_AddNumberToObject(o, "kl_max", r.max_kl);
      cJSON_AddNumberToObject(o, "top1_agreement", r.top1_agree);
    }
    cJSON_AddNumberToObject(o, "seconds", secs);
    cJSON_AddNumberToObject(o, "tokens_per_second", (double)r.windows * (double)window / secs);
    json_add_run(o, m, mo);
    char *s = cJSON_Print(o);
    printf("%s\n", s);
    cJSON_free(s);
    cJSON_Delete(o);
  } else {
    printf("%-22s %s\n", "file", file);
    printf("%-22s %.4f\n", "perplexity", r.ppl);
    printf("%-22s %.6f\n", "mean NLL (nats)", r.mean_nll);
    printf("%-22s %lld in %d windows of %ld\n", "scored tokens", (long long)r.tokens, r.windows, window);
    if (ref) {
      printf("%-22s %.4f\n", "reference perplexity", exp(r.ref_mean_nll));
      printf("%-22s %.6f (max %.4f)\n", "KL(ref || model)", r.mean_kl, r.max_kl);
      printf("%-22s %.2f %%\n", "top-1 agreement", 100.0 * r.top1_agree);
    }
    printf("%-22s %.1f s (%.0f tokens/s)\n", "time", secs, (double)r.windows * (double)window / secs);
  }
  rc = 0;
fail:
  if (rc) fprintf(stderr, "qquant eval: %s\n", err.msg);
  free(text);
  qq_token_ids_free(&ids);
  qq_model_free(ref);
  return rc;
}

typedef struct example {
  int32_t label;
  qq_token_ids ids;
} example;

/* Softmax of one row of label scores into p (double). */
static void label_softmax(const float *row, int32_t L, double *p) {
  double mx = -INFINITY, s = 0.0;
  for (int32_t j = 0; j < L; j++) mx = fmax(mx, (double)row[j]);
  for (int32_t j = 0; j < L; j++) s += (p[j] = exp((double)row[j] - mx));
  for (int32_t j = 0; j < L; j++) p[j] /= s;
}

static int32_t argmax_row(const float *row, int32_t L) {
  int32_t best = 0;
  for (int32_t j = 1; j < L; j++)
    if (row[j] > row[best]) best = j;
  return best;
}

/* Scores every example (chunks of 64) into scores [n][labels]. */
static qq_status score_all(qq_model *m, const int32_t **ids, const int32_t *lens, size_t n, float *scores,
                           progress_ctx *pc, qq_error *err) {
  const int32_t L = qq_model_config(m)->num_labels;
  const size_t chunk = 64;
  for (size_t i = 0; i < n; i += chunk) {
    size_t c = QQ_MIN(chunk, n - i);
    qq_status st = qq_model_score_last(m, ids + i, lens + i, (int32_t)c, scores + i * L, err);
    if (st != QQ_OK) return st;
    if (pc) on_progress(pc, (int64_t)(i + c), (int64_t)n);
  }
  return QQ_OK;
}

static int eval_classify(qq_model *m, const char *ref_dir, const qq_model_options *mo, const char *file,
                         long max_tokens, long limit, bool json, bool quiet) {
  const qq_config *cfg = qq_model_config(m);
  qq_error err = {0};
  int rc = 1;
  if (cfg->task != QQ_TASK_SEQ_CLS) {
    fprintf(stderr, "qquant eval: --classify needs a sequence classifier; %s is not one\n", cfg->architecture);
    return 1;
  }
  FILE *f = fopen(file, "r");
  if (!f) {
    fprintf(stderr, "qquant eval: cannot open %s\n", file);
    return 1;
  }
  example *ex = NULL;
  size_t n = 0, cap = 0, lineno = 0;
  char *line = NULL;
  size_t lcap = 0;
  ssize_t ll;
  qq_encode_options eo = qq_encode_options_default();
  eo.add_special = false;
  while ((ll = getline(&line, &lcap, f)) > 0 && (limit <= 0 || (long)n < limit)) {
    lineno++;
    if (ll == 1 && line[0] == '\n') continue;
    cJSON *o = cJSON_ParseWithLength(line, (size_t)ll);
    const cJSON *jl = o ? cJSON_GetObjectItemCaseSensitive(o, "label") : NULL;
    const cJSON *jt = o ? cJSON_GetObjectItemCaseSensitive(o, "text") : NULL;
    if (!o || !cJSON_IsString(jt) || !(cJSON_IsString(jl) || cJSON_IsNumber(jl))) {
      fprintf(stderr, "qquant eval: %s:%zu: expected a JSON object with string \"text\" and \"label\"\n", file, lineno);
      cJSON_Delete(o);
      goto fail;
    }
    int32_t label = -1;
    if (cJSON_IsNumber(jl)) {
      label = (int32_t)jl->valuedouble;
    } else {
      for (int32_t i = 0; i < cfg->num_labels; i++)
        if (cfg->id2label && !strcmp(cfg->id2label[i], jl->valuestring)) label = i;
    }
    if (label < 0 || label >= cfg->num_labels) {
      fprintf(stderr, "qquant eval: %s:%zu: label %s is not one of the model's labels\n", file, lineno,
              cJSON_IsString(jl) ? jl->valuestring : "(number)");
      cJSON_Delete(o);
      goto fail;
    }
    if (n == cap) {
      cap = cap ? cap * 2 : 256;
      example *ne = realloc(ex, cap * sizeof *ex);
      if (!ne) {
        cJSON_Delete(o);
        goto fail;
      }
      ex = ne;
    }
    ex[n] = (example){.label = label};
    qq_status st = qq_tokenizer_encode(qq_model_tokenizer(m), jt->valuestring, strlen(jt->valuestring), &eo, &ex[n].ids, &err);
    cJSON_Delete(o);
    n++;
    if (st != QQ_OK) {
      fprintf(stderr, "qquant eval: %s:%zu: %s\n", file, lineno, err.msg);
      goto fail;
    }
    if (ex[n - 1].ids.n == 0) {
      fprintf(stderr, "qquant eval: %s:%zu: text encodes to no tokens\n", file, lineno);
      goto fail;
    }
    if ((long)ex[n - 1].ids.n > max_tokens) ex[n - 1].ids.n = (size_t)max_tokens;
  }
  if (n == 0) {
    fprintf(stderr, "qquant eval: %s has no examples\n", file);
    goto fail;
  }
  {
    const int32_t L = cfg->num_labels;
    float *scores = malloc(n * (size_t)L * sizeof(float));
    const int32_t **ids = malloc(n * sizeof *ids);
    int32_t *lens = malloc(n * sizeof *lens);
    if (!scores || !ids || !lens) {
      free(scores); free(ids); free(lens);
      goto fail;
    }
    for (size_t i = 0; i < n; i++) {
      ids[i] = ex[i].ids.ids;
      lens[i] = (int32_t)ex[i].ids.n;
    }
    progress_ctx pc = {.what = "examples", .t0 = qq_now_sec(), .on = !quiet && isatty(2)};
    float *ref_scores = NULL;
    qq_status st = score_all(m, ids, lens, n, scores, &pc, &err);
    const double secs = qq_now_sec() - pc.t0;
    if (st == QQ_OK && ref_dir) {
      /* The same examples through the reference checkpoint (e.g. the unquantized classifier). */
      qq_model_options ro = *mo;
      ro.load_tokenizer = false;
      qq_model *ref = NULL;
      ref_scores = malloc(n * (size_t)L * sizeof(float));
      if (!ref_scores) st = qq_error_set(&err, QQ_ERR_NOMEM, "out of memory");
      else if ((st = qq_model_load(ref_dir, &ro, &ref, &err)) == QQ_OK) {
        const qq_config *rc = qq_model_config(ref);
        if (rc->task != QQ_TASK_SEQ_CLS || rc->num_labels != L)
          st = qq_error_set(&err, QQ_ERR_INVALID_ARG, "--kl-ref %s is not a classifier with %d labels", ref_dir, L);
        else {
          progress_ctx rp = {.what = "reference examples", .t0 = qq_now_sec(), .on = pc.on};
          st = score_all(ref, ids, lens, n, ref_scores, &rp, &err);
        }
        qq_model_free(ref);
      }
    }
    if (st != QQ_OK) {
      fprintf(stderr, "qquant eval: %s\n", err.msg);
      free(scores); free(ids); free(lens); free(ref_scores);
      goto fail;
    }
    /* KL(P_ref || P_model) of the label distributions, and how often the two pick the same label. */
    double kl_sum = 0.0, kl_max = 0.0;
    size_t agree = 0;
    double *pr = ref_scores ? malloc(2 * (size_t)L * sizeof(double)) : NULL;
    if (ref_scores && !pr) {
      fprintf(stderr, "qquant eval: out of memory\n");
      free(scores); free(ids); free(lens); free(ref_scores);
      goto fail;
    }
    if (ref_scores) {
      double *pm = pr + L;
      for (size_t i = 0; i < n; i++) {
        const float *sm = scores + i * L, *sr = ref_scores + i * L;
        double kl = 0.0;
        label_softmax(sr, L, pr);
        label_softmax(sm, L, pm);
        for (int32_t j = 0; j < L; j++)
          if (pr[j] > 0.0) kl += pr[j] * (log(pr[j]) - log(fmax(pm[j], 1e-300)));
        kl_sum += kl;
        kl_max = fmax(kl_max, kl);
        agree += argmax_row(sm, L) == argmax_row(sr, L);
      }
    }
    size_t correct = 0;
    for (size_t i = 0; i < n; i++) correct += argmax_row(scores + i * L, L) == ex[i].label;
    const double acc = (double)correct / (double)n;
    if (json) {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "file", file);
      cJSON_AddNumberToObject(o, "accuracy", acc);
      cJSON_AddNumberToObject(o, "correct", (double)correct);
      cJSON_AddNumberToObject(o, "examples", (double)n);
      cJSON_AddNumberToObject(o, "max_tokens", (double)max_tokens);
      if (ref_scores) {
        cJSON_AddNumberToObject(o, "kl_mean", kl_sum / (double)n);
        cJSON_AddNumberToObject(o, "kl_max", kl_max);
        cJSON_AddNumberToObject(o, "label_agreement", (double)agree / (double)n);
      }
      cJSON_AddNumberToObject(o, "seconds", secs);
      json_add_run(o, m, mo);
      char *s = cJSON_Print(o);
      printf("%s\n", s);
      cJSON_free(s);
      cJSON_Delete(o);
    } else {
      printf("%-16s %s\n%-16s %.2f %% (%zu of %zu)\n", "file", file, "accuracy", 100 * acc, correct, n);
      if (ref_scores)
        printf("%-16s %.6f (max %.4f)\n%-16s %.2f %%\n", "KL(ref || model)", kl_sum / (double)n, kl_max,
               "label agreement", 100.0 * (double)agree / (double)n);
      printf("%-16s %.1f s\n", "time", secs);
    }
    free(scores); free(ids); free(lens); free(ref_scores); free(pr);
  }
  rc = 0;
fail:
  for (size_t i = 0; i < n; i++) qq_token_ids_free(&ex[i].ids);
  free(ex);
  free(line);
  fclose(f);
  return rc;
}

static int run(int argc, char **argv) {
  const char *model_dir = NULL, *ppl = NULL, *cls = NULL, *kl_ref = NULL;
  long window = 512, windows = 0, max_tokens = 256, limit = 0, threads = 0;
  bool json = false, quiet = false;
  qq_device_kind device = QQ_DEVICE_AUTO;
  qq_act_dtype dtype = QQ_ACT_AUTO;
  qq_rope_freq rope_freq = QQ_ROPE_FREQ_EXACT;
  static const struct option opts[] = {
      {"model", required_argument, 0, 'm'},   {"ppl", required_argument, 0, 'p'},
      {"window", required_argument, 0, 'w'},  {"windows", required_argument, 0, 'W'},
      {"kl-ref", required_argument, 0, 'r'},  {"classify", required_argument, 0, 'c'},
      {"max-tokens", required_argument, 0, 'x'}, {"limit", required_argument, 0, 'l'},
      {"device", required_argument, 0, 'd'}, {"dtype", required_argument, 0, 'D'},  {"threads", required_argument, 0, 'T'},
      {"json", no_argument, 0, 'j'},          {"quiet", no_argument, 0, 'q'},
      {"rope-freq", required_argument, 0, 'R'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    bool ok = true;
    switch (c) {
      case 'm': model_dir = optarg; break;
      case 'p': ppl = optarg; break;
      case 'w': ok = qq_cli_int("eval", "--window", optarg, 2, 1 << 20, &window); break;
      case 'W': ok = qq_cli_int("eval", "--windows", optarg, 1, 1 << 30, &windows); break;
      case 'r': kl_ref = optarg; break;
      case 'c': cls = optarg; break;
      case 'x': ok = qq_cli_int("eval", "--max-tokens", optarg, 1, 1 << 20, &max_tokens); break;
      case 'l': ok = qq_cli_int("eval", "--limit", optarg, 1, 1 << 30, &limit); break;
      case 'd': device = qq_cli_device(optarg, &ok); break;
      case 'D': dtype = qq_cli_dtype(optarg, &ok); break;
      case 'R': rope_freq = qq_cli_rope_freq(optarg, &ok); break;
      case 'T': ok = qq_cli_int("eval", "--threads", optarg, 0, 1024, &threads); break;
      case 'j': json = true; break;
      case 'q': quiet = true; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
    if (!ok) return 2;
  }
  if (!model_dir || (!ppl && !cls) || (ppl && cls)) {
    fprintf(stderr, "qquant eval: --model and exactly one of --ppl or --classify are required\n");
    usage(stderr);
    return 2;
  }
  qq_error err = {0};
  qq_model_options mo = qq_model_options_default();
  mo.device = device;
  mo.act = dtype;
  mo.rope_freq = rope_freq;
  mo.n_threads = (int32_t)threads;
  qq_model *m = NULL;
  double t0 = qq_now_sec();
  if (qq_model_load(model_dir, &mo, &m, &err) != QQ_OK) {
    fprintf(stderr, "qquant eval: %s\n", err.msg);
    return 1;
  }
  if (!quiet)
    fprintf(stderr, "loaded %s (%s) in %.2f s on %s\n", model_dir, qq_model_config(m)->architecture, qq_now_sec() - t0,
            qq_backend_description(qq_model_backend(m)));
  int rc = ppl ? eval_ppl(m, kl_ref, &mo, ppl, window, windows, json, quiet)
               : eval_classify(m, kl_ref, &mo, cls, max_tokens, limit, json, quiet);
  qq_model_free(m);
  return rc;
}

const qq_command qq_cmd_eval = {"eval", "perplexity, KL divergence and classification accuracy", run};
