/* cmd_synth.c — `qquant synth`: write a Qwen2 checkpoint with real shapes and random weights. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "model.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: qquant synth --shape SHAPE --out DIR [--seed S] [--dtype bf16|f32] [--max-shard-mb N] [--force]\n\n"
          "Writes a Hugging Face Qwen2ForCausalLM folder (config.json, safetensors + index when sharded,\n"
          "tokenizer.json, tokenizer_config.json, generation_config.json) with the real shapes of SHAPE and\n"
          "RANDOM weights (N(0, 0.02^2) matrices, unit norms, zero biases). For shape, memory and speed work\n"
          "only: its outputs are meaningless.\n\n"
          "  --shape SHAPE      tiny | qwen2.5-0.5b | qwen2.5-1.5b | qwen2.5-7b\n"
          "  --out DIR          output folder (created if missing)\n"
          "  --seed S           random seed (default 0); the same seed writes the same bytes\n"
          "  --dtype bf16|f32   weight dtype (default bf16)\n"
          "  --max-shard-mb N   shard size limit in MiB (default 2048)\n"
          "  --force            write into a folder that is not empty\n");
}

typedef struct progress {
  uint64_t last_pct;
  double t0, last_t;
  bool big;
} progress;

static void on_progress(void *user, const char *tensor, uint64_t done, uint64_t total) {
  progress *p = user;
  if (!p->big) return;
  uint64_t pct = total ? done * 100 / total : 100;
  double now = qq_now_sec();
  if (pct == p->last_pct && now - p->last_t < 5.0 && done != total) return;
  p->last_pct = pct;
  p->last_t = now;
  double el = now - p->t0, rate = el > 0 ? (double)done / el / 1e6 : 0;
  fprintf(stderr, "\rqquant synth: %3llu%%  %.2f / %.2f GB  %.0f MB/s  %-48.48s", (unsigned long long)pct,
          (double)done / 1e9, (double)total / 1e9, rate, tensor);
  if (done == total) fputc('\n', stderr);
  fflush(stderr);
}

static int run(int argc, char **argv) {
  qq_synth_options o = qq_synth_options_default();
  const char *out = NULL;
  o.shape = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool has_val = i + 1 < argc;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--force")) {
      o.force = true;
    } else if (!strcmp(a, "--shape") && has_val) {
      o.shape = argv[++i];
    } else if (!strcmp(a, "--out") && has_val) {
      out = argv[++i];
    } else if (!strcmp(a, "--seed") && has_val) {
      long v;
      if (!qq_cli_int("synth", "--seed", argv[++i], 0, 2147483647L, &v)) return 2;
      o.seed = (uint64_t)v;
    } else if (!strcmp(a, "--max-shard-mb") && has_val) {
      long v;
      if (!qq_cli_int("synth", "--max-shard-mb", argv[++i], 1, 1L << 20, &v)) return 2;
      o.max_shard_bytes = (size_t)v << 20;
    } else if (!strcmp(a, "--dtype") && has_val) {
      const char *d = argv[++i];
      if (!strcmp(d, "bf16")) o.dtype = QQ_DTYPE_BF16;
      else if (!strcmp(d, "f32")) o.dtype = QQ_DTYPE_F32;
      else {
        fprintf(stderr, "qquant synth: --dtype expects bf16 or f32, got '%s'\n", d);
        return 2;
      }
    } else {
      fprintf(stderr, "qquant synth: unknown or incomplete option '%s'\n\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!o.shape || !out) {
    fprintf(stderr, "qquant synth: --shape and --out are required\n\n");
    usage(stderr);
    return 2;
  }
  uint64_t bytes = qq_synth_bytes(o.shape, o.dtype);
  if (!bytes) {
    fprintf(stderr, "qquant synth: unknown shape '%s' (one of:", o.shape);
    for (const char *const *s = qq_synth_shapes(); *s; s++) fprintf(stderr, " %s", *s);
    fprintf(stderr, ")\n");
    return 2;
  }
  fprintf(stderr,
          "qquant synth: ********************************************************************\n"
          "qquant synth: *  RANDOM WEIGHTS: real model shapes, random numbers for weights.   *\n"
          "qquant synth: *  Use it for shapes, memory and speed only; outputs are meaningless. *\n"
          "qquant synth: ********************************************************************\n"
          "qquant synth: shape %s: writing %.2f GB of %s tensors to %s (seed %llu)\n",
          o.shape, (double)bytes / 1e9, qq_dtype_name(o.dtype), out, (unsigned long long)o.seed);
  progress p = {.last_pct = 101, .t0 = qq_now_sec(), .big = bytes > (64u << 20)};
  o.progress = on_progress;
  o.user = &p;
  qq_error err = {0};
  qq_status s = qq_synth_write(out, &o, &err);
  if (s != QQ_OK) {
    fprintf(stderr, "\nqquant synth: %s\n", err.msg);
    return s == QQ_ERR_EXISTS || s == QQ_ERR_INVALID_ARG ? 2 : 1;
  }
  fprintf(stderr, "qquant synth: done in %.1f s: %s (RANDOM WEIGHTS)\n", qq_now_sec() - p.t0, out);
  return 0;
}

const qq_command qq_cmd_synth = {"synth", "write a checkpoint with real Qwen2.5 shapes and RANDOM weights", run};
