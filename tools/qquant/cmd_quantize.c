/* cmd_quantize.c — `qquant --method rtn|gptq|awq|smoothquant --model DIR --out DIR ...` (also reachable
 * as `qquant quantize ...`): argument checks, calibration data, per-layer progress, summary table and
 * report; the work itself is qq_quantize_model / qq_quantized_write. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "calibration.h"
#include "cli.h"
#include "model.h"
#include "quantize.h"

#define CMD "quantize"

static void usage(FILE *f) {
  fprintf(f,
          "usage: qquant --method rtn|gptq|awq|smoothquant --model DIR --out DIR [options]\n\n"
          "Quantizes a Qwen2/Qwen3/Llama checkpoint layer by layer and writes a checkpoint that\n"
          "AutoAWQ / GPTQ / compressed-tensors loaders (vLLM, transformers) and qquant itself load.\n\n"
          "  --method M          rtn | gptq | awq | smoothquant\n"
          "  --model DIR         Hugging Face checkpoint folder (config.json, safetensors, tokenizer.json)\n"
          "  --out DIR           output folder; must not exist unless --force\n"
          "  --bits B            4 | 3 | 8   (awq, gptq, rtn: 4; smoothquant: 8)\n"
          "  --group-size G      128 | 64 | 32 | -1 (per channel)   (default 128; smoothquant -1)\n"
          "  --sym | --asym      symmetric or asymmetric weights (gptq: sym; awq, rtn: asym; smoothquant: sym)\n"
          "  --format F          auto | awq | gptq | compressed-tensors (default auto: awq → AutoAWQ gemm,\n"
          "                      3-bit → GPTQ layout, gptq → GPTQ, smoothquant → compressed-tensors W8A8,\n"
          "                      rtn 8-bit sym per-channel → compressed-tensors W8A16)\n"
          "  --calib FILE        calibration text: .jsonl with a \"text\" field, or plain text\n"
          "                      (required by gptq, awq, smoothquant; rtn only records its sha256)\n"
          "  --calib-samples N   windows of calibration tokens (default 128)\n"
          "  --calib-seqlen L    tokens per window (default 512)\n"
          "  --seed S            window sampling seed (default 0)\n"
          "  --device cpu|cuda   where calibration's layer forwards run (default cpu). cuda: the model on the\n"
          "                      GPU in fp32; the statistics (max, mean, XᵀX), GPTQ/AWQ/SmoothQuant's\n"
          "                      solves and the writing stay on the CPU (OpenBLAS)\n"
          "  --threads N         CPU threads (default: QQ_THREADS or all CPUs)\n"
          "  --act-order         gptq: columns by decreasing Hessian diagonal, g_idx written (the default,\n"
          "                      except with --format awq, which has no g_idx)\n"
          "  --no-act-order      gptq: columns in their natural order\n"
          "  --static-groups     gptq: group scales fixed before any update\n"
          "  --no-true-sequential gptq: one capture per layer instead of q/k/v, o, gate/up, down in turn\n"
          "  --damp P            gptq: damping as a fraction of the mean Hessian diagonal (default 0.05)\n"
          "  --block-size N      gptq: lazy update block (default 128)\n"
          "  --gptq-mse          gptq: choose each group's range by the least Σ|Q(w) − w|^2.4 over 80 shrink\n"
          "                      factors 1 − i/100 of its min / max (the reference GPTQ's mse option; default)\n"
          "  --no-gptq-mse       gptq: each group's range from its min / max\n"
          "  --gptq-refine N     gptq: passes of the least-squares refit of every group's scale (asym: and\n"
          "                      zero) to GPTQ's codes against the layer's output error (default 1; 0 off)\n"
          "  --awq-grid N        awq: α grid points (default 20)\n"
          "  --no-clip           awq: skip the weight clipping search\n"
          "  --awq-refine N      awq: passes of least-squares grid refinement after clipping (default 2; 0 off)\n"
          "  --alpha A           smoothquant: migration strength in [0, 1] (default 0.5)\n"
          "  --static-act        smoothquant: static per-tensor activation scales from calibration\n"
          "                      (default: dynamic per-token)\n"
          "  --max-shard-mb N    shard the safetensors at N MiB (default 4096)\n"
          "  --force             write into an existing output folder\n\n"
          "Writes DIR/config.json (quantization_config + \"qquant\" metadata), the safetensors, the source's\n"
          "tokenizer and other files, and DIR/qquant_report.json (per-layer errors, timings, peak memory).\n"
          "Ctrl-C stops between phases; nothing is written before all layers are done.\n");
}

static volatile int g_cancel = 0;
static void on_sigint(int sig) {
  (void)sig;
  g_cancel = 1;
  signal(SIGINT, SIG_DFL); /* a second Ctrl-C ends the process at once */
}

typedef struct progress {
  double t0;
  int32_t last_layer;
} progress;

static void on_progress(void *user, int32_t layer, int32_t n_layers, const char *phase) {
  progress *p = user;
  double el = qq_now_sec() - p->t0;
  if (layer != p->last_layer) p->last_layer = layer;
  double eta = layer > 0 ? el / layer * (n_layers - layer) : NAN;
  if (isnan(eta)) fprintf(stderr, "qquant: layer %d/%d %-8s elapsed %6.1f s\n", layer + 1, n_layers, phase, el);
  else fprintf(stderr, "qquant: layer %d/%d %-8s elapsed %6.1f s  ETA %6.1f s\n", layer + 1, n_layers, phase, el, eta);
}

static cJSON *num_or_null(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

static bool path_exists(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0;
}

static int fail(qq_error *err, const char *what) {
  fprintf(stderr, "qquant: %s: %s\n", what, err->msg);
  return 1;
}

static int run(int argc, char **argv) {
  const char *method_s = NULL, *model_dir = NULL, *out_dir = NULL, *calib_path = NULL, *format_s = "auto";
  long bits = -1, group = 0, samples = 128, seqlen = 512, threads = 0, seed = 0, max_shard_mb = 4096;
  qq_device_kind device = QQ_DEVICE_CPU;
  long block = 128, grid = 20, refine = 2, gptq_refine = -1;
  double damp = -1.0, alpha = 0.5; /* damp < 0: the library's default */
  int sym = -1;
  int act_order = -1; /* -1: the method's default */
  int gptq_mse = -1;
  bool static_groups = false, no_true_seq = false, no_clip = false, static_act = false,
       force = false, group_set = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const bool hv = i + 1 < argc;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--method") && hv) method_s = argv[++i];
    else if (!strcmp(a, "--model") && hv) model_dir = argv[++i];
    else if (!strcmp(a, "--out") && hv) out_dir = argv[++i];
    else if (!strcmp(a, "--calib") && hv) calib_path = argv[++i];
    else if (!strcmp(a, "--format") && hv) format_s = argv[++i];
    else if (!strcmp(a, "--bits") && hv) {
      if (!qq_cli_int(CMD, a, argv[++i], 2, 8, &bits)) return 2;
    } else if (!strcmp(a, "--group-size") && hv) {
      if (!qq_cli_int(CMD, a, argv[++i], -1, 1 << 20, &group)) return 2;
      group_set = true;
    } else if (!strcmp(a, "--calib-samples") && hv) {
      if (!qq_cli_int(CMD, a, argv[++i], 1, 1 << 20, &samples)) return 2;
    } else if (!strcmp(a, "--calib-seqlen") && hv) {
      if (!qq_cli_int(CMD, a, argv[++i], 2, 1 << 20, &seqlen)) return 2;
    } else if (!strcmp(a, "--seed") && hv) {
      if (!qq_cli_int(CMD, a, argv[++i], 0, 0x7fffffffL, &seed)) return 2;
    } else if (!strcmp(a, "--threads") && hv) {
      if (!qq_cli_int(CMD, a, argv[++i], 1, 1024, &threads)) return 2;
    } else if (!strcmp(a, "--max-shard-mb") && hv) {
      if (!qq_cli_int(CMD, a, argv[++i], 1, 1 << 30, &max_shard_mb)) return 2;
    } else if (!strcmp(a, "--block-size") && hv) {
      if (!qq_cli_int(CMD, a, argv[++i], 1, 1 << 16, &block)) return 2;
    } else if (!strcmp(a, "--awq-grid") && hv) {
      if (!qq_cli_int(CMD, a, argv[++i], 1, 1000, &grid)) return 2;
    } else if (!strcmp(a, "--gptq-refine") && hv) {
      if (!qq_cli_int(CMD, a, argv[++i], 0, 100, &gptq_refine)) return 2;
    } else if (!strcmp(a, "--awq-refine") && hv) {
      if (!qq_cli_int(CMD, a, argv[++i], 0, 100, &refine)) return 2;
    } else if (!strcmp(a, "--damp") && hv) {
      if (!qq_cli_float(CMD, a, argv[++i], 1e-6, 10.0, &damp)) return 2;
    } else if (!strcmp(a, "--alpha") && hv) {
      if (!qq_cli_float(CMD, a, argv[++i], 0.0, 1.0, &alpha)) return 2;
    } else if (!strcmp(a, "--device") && hv) {
      const char *d = argv[++i];
      if (!strcmp(d, "cuda")) device = QQ_DEVICE_CUDA;
      else if (!strcmp(d, "cpu")) device = QQ_DEVICE_CPU;
      else {
        fprintf(stderr, "qquant: --device '%s': expected cpu or cuda\n", d);
        return 2;
      }
    } else if (!strcmp(a, "--sym")) sym = 1;
    else if (!strcmp(a, "--asym")) sym = 0;
    else if (!strcmp(a, "--act-order")) act_order = 1;
    else if (!strcmp(a, "--no-act-order")) act_order = 0;
    else if (!strcmp(a, "--static-groups")) static_groups = true;
    else if (!strcmp(a, "--gptq-mse")) gptq_mse = 1;
    else if (!strcmp(a, "--no-gptq-mse")) gptq_mse = 0;
    else if (!strcmp(a, "--no-true-sequential")) no_true_seq = true;
    else if (!strcmp(a, "--no-clip")) no_clip = true;
    else if (!strcmp(a, "--static-act")) static_act = true;
    else if (!strcmp(a, "--force")) force = true;
    else {
      fprintf(stderr, "qquant: unknown or incomplete option '%s' (qquant --method ... --help)\n", a);
      return 2;
    }
  }
  if (!method_s || !model_dir || !out_dir) {
    fprintf(stderr, "qquant: --method, --model and --out are required\n\n");
    usage(stderr);
    return 2;
  }
  qq_error err = {0};
  qq_method method;
  if (qq_method_parse(method_s, &method, &err)) {
    fprintf(stderr, "qquant: --method: %s\n", err.msg);
    return 2;
  }
  qq_quantize_options o = qq_quantize_options_default(method);
  if (bits > 0) o.bits = (int32_t)bits;
  if (group_set) o.group_size = (int32_t)group;
  if (sym >= 0) o.sym = sym == 1;
  if (!strcmp(format_s, "auto")) o.format = QQ_OUT_AUTO;
  else if (!strcmp(format_s, "awq")) o.format = QQ_OUT_AWQ;
  else if (!strcmp(format_s, "gptq")) o.format = QQ_OUT_GPTQ;
  else if (!strcmp(format_s, "compressed-tensors")) o.format = QQ_OUT_CT;
  else {
    fprintf(stderr, "qquant: --format '%s': expected auto, awq, gptq or compressed-tensors\n", format_s);
    return 2;
  }
  if (damp > 0.0) o.gptq.damp_percent = damp;
  o.gptq.block_size = (int32_t)block;
  /* GPTQ's default is act-order (as GPTQModel's): measured better at W3 and W4 on the fixtures
   * (docs/quality.md). The AutoAWQ layout cannot hold the g_idx it needs. */
  o.gptq.act_order = act_order >= 0 ? act_order == 1 : qq_quantize_resolve_format(&o) != QQ_OUT_AWQ;
  o.gptq.static_groups = static_groups;
  if (gptq_mse >= 0) o.gptq.mse = gptq_mse == 1;
  if (gptq_refine >= 0) o.gptq.refine_sweeps = (int32_t)gptq_refine;
  o.true_sequential = !no_true_seq;
  o.awq.n_grid = (int32_t)grid;
  o.awq.clip = !no_clip;
  o.awq.refine_sweeps = (int32_t)refine;
  o.sq_alpha = alpha;
  o.sq_static_act = static_act;
  if ((act_order >= 0 || static_groups || no_true_seq || gptq_mse >= 0 || gptq_refine >= 0) && method != QQ_METHOD_GPTQ) {
    fprintf(stderr, "qquant: --act-order / --no-act-order / --static-groups / --no-true-sequential / --gptq-mse / "
                    "--no-gptq-mse / --gptq-refine are GPTQ options\n");
    return 2;
  }
  if (static_act && method != QQ_METHOD_SMOOTHQUANT) {
    fprintf(stderr, "qquant: --static-act is a smoothquant option\n");
    return 2;
  }

  /* Every check that needs no heavy work, before any. */
  if (path_exists(out_dir) && !force) {
    fprintf(stderr, "qquant: output folder %s already exists (use --force to write into it)\n", out_dir);
    return 2;
  }
  qq_config cfg;
  if (qq_config_load(model_dir, &cfg, &err)) return fail(&err, "model");
  if (cfg.quant.method != QQ_QUANT_NONE) {
    fprintf(stderr, "qquant: %s is already quantized (quantization_config present)\n", model_dir);
    qq_config_free(&cfg);
    return 2;
  }
  o.calib = NULL;
  qq_calib_data *calib = NULL;
  qq_calib_data dummy = {0};
  if (calib_path) o.calib = &dummy; /* presence only, for the check */
  if (qq_quantize_check(&o, &cfg, &err)) {
    fprintf(stderr, "qquant: %s\n", err.msg);
    qq_config_free(&cfg);
    return 2;
  }
  const double t0 = qq_now_sec();
  if (calib_path) {
    char tpath[4096];
    snprintf(tpath, sizeof tpath, "%s/tokenizer.json", model_dir);
    qq_tokenizer *tok = NULL;
    if (qq_tokenizer_load(tpath, &tok, &err)) {
      qq_config_free(&cfg);
      return fail(&err, "tokenizer");
    }
    int32_t sep = cfg.n_eos > 0 ? cfg.eos_token_ids[0] : -1;
    qq_status st = qq_calib_load(calib_path, tok, sep, (int32_t)samples, (int32_t)seqlen, (uint64_t)seed, &calib, &err);
    qq_tokenizer_free(tok);
    if (st) {
      qq_config_free(&cfg);
      fprintf(stderr, "qquant: calibration data: %s\n", err.msg);
      return 2;
    }
    fprintf(stderr, "qquant: calibration %s: %d documents, %lld tokens, %d x %d sampled (seed %ld), sha256 %.16s…\n",
            calib_path, calib->n_documents, (long long)calib->total_tokens, calib->n_samples, calib->seqlen, seed,
            calib->sha256);
  }
  o.calib = calib;
  const double t_calib = qq_now_sec() - t0;

  qq_model_options mo = qq_model_options_default();
  mo.device = device;
  mo.act = QQ_ACT_F32; /* calibration is fp32 on either device */
  mo.n_threads = (int32_t)threads;
  mo.load_tokenizer = false;
  qq_model *m = NULL;
  double t1 = qq_now_sec();
  if (qq_model_load(model_dir, &mo, &m, &err)) {
    qq_calib_free(calib);
    qq_config_free(&cfg);
    return fail(&err, "model");
  }
  const double t_load = qq_now_sec() - t1;
  fprintf(stderr, "qquant: %s %s: %s, %d-bit, group %d, %s, format %s; model %s (%d layers) loaded in %.2f s on %s\n",
          qq_method_name(method), calib ? "with calibration" : "without calibration", qq_method_name(method), o.bits,
          o.group_size, o.sym ? "sym" : "asym", qq_out_format_name(qq_quantize_resolve_format(&o)), model_dir,
          cfg.num_layers, t_load, qq_backend_description(qq_model_backend(m)));

  progress pr = {.t0 = qq_now_sec(), .last_layer = -1};
  o.progress = on_progress;
  o.progress_user = &pr;
  o.cancel = &g_cancel;
  signal(SIGINT, on_sigint);
  qq_quantized *q = NULL;
  double t2 = qq_now_sec();
  qq_status st = qq_quantize_model(m, &o, &q, &err);
  const double t_quant = qq_now_sec() - t2;
  if (st) {
    if (st == QQ_ERR_CANCELLED) fprintf(stderr, "qquant: %s; nothing was written to %s\n", err.msg, out_dir);
    else fprintf(stderr, "qquant: quantization failed: %s (nothing was written to %s)\n", err.msg, out_dir);
    qq_model_free(m);
    qq_calib_free(calib);
    qq_config_free(&cfg);
    return st == QQ_ERR_CANCELLED ? 130 : 1;
  }
  signal(SIGINT, SIG_DFL);
  double t3 = qq_now_sec();
  st = qq_quantized_write(q, model_dir, out_dir, force, (size_t)max_shard_mb << 20, NULL, &err);
  const double t_write = qq_now_sec() - t3;
  if (st) {
    fprintf(stderr, "qquant: writing %s failed: %s (the folder may hold a partial checkpoint)\n", out_dir, err.msg);
    qq_quantized_free(q);
    qq_model_free(m);
    qq_calib_free(calib);
    qq_config_free(&cfg);
    return 1;
  }
  const double t_total = qq_now_sec() - t0;

  /* Summary table and report. */
  const int32_t L = qq_quantized_layers(q);
  const int64_t err_tokens = L > 0 ? qq_quantized_layer_report(q, 0)->err_tokens : 0;
  char on[64] = "";
  if (err_tokens > 0) snprintf(on, sizeof on, " on %lld calibration tokens", (long long)err_tokens);
  printf("\nlayer  rel. output error ‖XWᵀ−XŴᵀ‖/‖XWᵀ‖%-36s seconds\n", on);
  printf("       %-7s %-7s %-7s %-7s %-7s %-7s %-7s   %-6s %-6s %-6s\n", "q", "k", "v", "o", "gate", "up", "down",
         "stats", "quant", "fwd");
  cJSON *rep = cJSON_CreateObject();
  cJSON_AddStringToObject(rep, "method", qq_method_name(method));
  cJSON_AddStringToObject(rep, "format", qq_out_format_name(qq_quantize_resolve_format(&o)));
  cJSON_AddNumberToObject(rep, "bits", o.bits);
  cJSON_AddNumberToObject(rep, "group_size", o.group_size);
  cJSON_AddBoolToObject(rep, "sym", o.sym);
  cJSON_AddStringToObject(rep, "model", model_dir);
  cJSON_AddStringToObject(rep, "backend", qq_backend_description(qq_model_backend(m)));
  if (calib) {
    cJSON *c = cJSON_AddObjectToObject(rep, "calibration");
    cJSON_AddStringToObject(c, "file", calib_path);
    cJSON_AddStringToObject(c, "sha256", calib->sha256);
    cJSON_AddNumberToObject(c, "documents", calib->n_documents);
    cJSON_AddNumberToObject(c, "stream_tokens", (double)calib->total_tokens);
    cJSON_AddNumberToObject(c, "samples", calib->n_samples);
    cJSON_AddNumberToObject(c, "seqlen", calib->seqlen);
    cJSON_AddNumberToObject(c, "seed", (double)seed);
  }
  cJSON *layers = cJSON_AddArrayToObject(rep, "layers");
  double err_sum = 0;
  int err_n = 0;
  for (int32_t l = 0; l < L; l++) {
    const qq_layer_report *r = qq_quantized_layer_report(q, l);
    printf("%5d  ", l);
    cJSON *jl = cJSON_CreateObject();
    cJSON_AddNumberToObject(jl, "layer", l);
    cJSON *je = cJSON_AddObjectToObject(jl, "rel_err");
    for (int id = 0; id < QQ_LIN_COUNT; id++) {
      if (isfinite(r->rel_err[id])) {
        printf("%-7.4f ", r->rel_err[id]);
        err_sum += r->rel_err[id];
        err_n++;
      } else {
        printf("%-7s ", "-");
      }
      cJSON_AddItemToObject(je, qq_linear_id_name((qq_linear_id)id), num_or_null(r->rel_err[id]));
    }
    printf("  %-6.2f %-6.2f %-6.2f\n", r->t_stats, r->t_quant, r->t_forward);
    if (method == QQ_METHOD_AWQ) {
      cJSON *ja = cJSON_AddObjectToObject(jl, "awq_alpha");
      const char *gn[QQ_CIN_COUNT] = {"qkv", "o", "gate_up", "down"};
      for (int g = 0; g < QQ_CIN_COUNT; g++) cJSON_AddItemToObject(ja, gn[g], num_or_null(r->awq_alpha[g]));
    }
    cJSON_AddNumberToObject(jl, "err_tokens", (double)r->err_tokens);
    cJSON_AddNumberToObject(jl, "t_stats", r->t_stats);
    cJSON_AddNumberToObject(jl, "t_quant", r->t_quant);
    cJSON_AddNumberToObject(jl, "t_forward", r->t_forward);
    cJSON_AddItemToArray(layers, jl);
  }
  const size_t rss = qq_quantized_peak_rss(q);
  cJSON_AddItemToObject(rep, "mean_rel_err", num_or_null(err_n ? err_sum / err_n : NAN));
  cJSON *jt = cJSON_AddObjectToObject(rep, "seconds");
  cJSON_AddNumberToObject(jt, "calibration_data", t_calib);
  cJSON_AddNumberToObject(jt, "load", t_load);
  cJSON_AddNumberToObject(jt, "quantize", t_quant);
  cJSON_AddNumberToObject(jt, "write", t_write);
  cJSON_AddNumberToObject(jt, "total", t_total);
  cJSON_AddNumberToObject(rep, "peak_rss_bytes", (double)rss);
  if (calib)
    cJSON_AddNumberToObject(rep, "activation_bytes",
                            (double)calib->n_samples * calib->seqlen * cfg.hidden_size * sizeof(float));
  if (err_n) printf("\nmean relative output error over the linears: %.5f\n", err_sum / err_n);
  else if (method == QQ_METHOD_RTN)
    printf("\nrtn runs no calibration pass, so there are no relative output errors (gptq / awq / smoothquant report them)\n");
  else printf("\nno relative output errors were computed\n");
  printf("seconds: calibration data %.2f, load %.2f, quantize %.2f, write %.2f, total %.2f; peak memory %.1f MiB\n",
         t_calib, t_load, t_quant, t_write, t_total, (double)rss / 1048576.0);
  char *txt = cJSON_Print(rep);
  char rpath[4096];
  snprintf(rpath, sizeof rpath, "%s/qquant_report.json", out_dir);
  FILE *f = txt ? fopen(rpath, "wb") : NULL;
  int rc = 0;
  if (!f || fputs(txt, f) < 0 || fputc('\n', f) == EOF) {
    fprintf(stderr, "qquant: could not write %s\n", rpath);
    rc = 1;
  }
  if (f && fclose(f) != 0) rc = 1;
  printf("wrote %s (config.json, safetensors, tokenizer files, qquant_report.json)\n", out_dir);
  free(txt);
  cJSON_Delete(rep);
  qq_quantized_free(q);
  qq_model_free(m);
  qq_calib_free(calib);
  qq_config_free(&cfg);
  return rc;
}

const qq_command qq_cmd_quantize = {"quantize", "quantize a checkpoint (same as qquant --method ...)", run};
