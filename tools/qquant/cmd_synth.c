/* cmd_synth.c — `qquant synth`: write a Qwen2 checkpoint with real shapes and random weights, dense
 * (model/synth.c) or in a quantized on-disk format (quantize/synth.c). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "model.h"
#include "quantize.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: qquant synth --shape SHAPE --out DIR [--format bf16|awq|gptq|w8a8] [--bits B]\n"
          "                    [--group-size G] [--sym|--asym] [--seed S] [--dtype bf16|f32]\n"
          "                    [--max-shard-mb N] [--threads N] [--force]\n\n"
          "Writes a Hugging Face Qwen2ForCausalLM folder (config.json, safetensors + index when sharded,\n"
          "tokenizer.json, tokenizer_config.json, generation_config.json) with the real shapes of SHAPE and\n"
          "RANDOM weights (N(0, 0.02^2) matrices, unit norms, zero biases). For shape, memory and speed work\n"
          "only: its outputs are meaningless.\n\n"
          "With a quantized --format the decoder linears hold random codes in the layout `qquant --method`\n"
          "writes (same packing, same quantization_config), with scales that give the dequantized weights a\n"
          "std of about 0.02; embeddings, lm_head, norms and biases stay dense. No calibration, one linear in\n"
          "memory at a time.\n\n"
          "  --shape SHAPE      tiny | qwen2.5-0.5b | qwen2.5-1.5b | qwen2.5-7b\n"
          "  --out DIR          output folder (created if missing)\n"
          "  --format F         bf16 (default: dense, see --dtype)\n"
          "                     awq   AutoAWQ gemm: qweight/qzeros/scales, 4-bit, zero points (asym)\n"
          "                     gptq  GPTQ v1: qweight/qzeros/scales/g_idx, 4-bit sym by default\n"
          "                     w8a8  compressed-tensors int-quantized: int8 weights + per-channel scales,\n"
          "                           dynamic per-token int8 activations\n"
          "  --bits B           awq: 4; gptq: 3, 4 (default) or 8; w8a8: 8\n"
          "  --group-size G     awq/gptq: 128 (default; 32 for tiny, whose intermediate size 352 is not a\n"
          "                     multiple of 128 or 64), 64, 32, or -1 for per channel\n"
          "  --sym, --asym      awq/gptq zero points fixed at 2^(B-1) or random mid-range (defaults: awq asym,\n"
          "                     gptq sym)\n"
          "  --seed S           random seed (default 0); the same seed writes the same bytes\n"
          "  --dtype bf16|f32   dtype of the dense tensors (default bf16)\n"
          "  --max-shard-mb N   shard size limit in MiB (default 2048)\n"
          "  --threads N        generating threads (default: QQ_THREADS or all cores); bytes do not depend on it\n"
          "  --force            write into a folder that is not empty\n");
}

typedef struct progress {
  uint64_t last_pct, total;
  double t0, last_t;
} progress;

static void on_progress(void *user, const char *tensor, uint64_t done, uint64_t total) {
  progress *p = user;
  p->total = total;
  if (total <= (64u << 20)) return; /* small checkpoints are written before a line would help */
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
  const char *out = NULL, *format = "bf16";
  long bits = 0, group = 0;
  int sym = -1; /* -1: the format's default */
  o.shape = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool has_val = i + 1 < argc;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--force")) {
      o.force = true;
    } else if (!strcmp(a, "--sym") || !strcmp(a, "--asym")) {
      sym = !strcmp(a, "--sym");
    } else if (!strcmp(a, "--shape") && has_val) {
      o.shape = argv[++i];
    } else if (!strcmp(a, "--out") && has_val) {
      out = argv[++i];
    } else if (!strcmp(a, "--format") && has_val) {
      format = argv[++i];
    } else if (!strcmp(a, "--bits") && has_val) {
      if (!qq_cli_int("synth", "--bits", argv[++i], 2, 8, &bits)) return 2;
    } else if (!strcmp(a, "--group-size") && has_val) {
      if (!qq_cli_int("synth", "--group-size", argv[++i], -1, 1 << 20, &group)) return 2;
      if (group == 0) {
        fprintf(stderr, "qquant synth: --group-size 0: use a positive group size or -1 (per channel)\n");
        return 2;
      }
    } else if (!strcmp(a, "--seed") && has_val) {
      long v;
      if (!qq_cli_int("synth", "--seed", argv[++i], 0, 2147483647L, &v)) return 2;
      o.seed = (uint64_t)v;
    } else if (!strcmp(a, "--threads") && has_val) {
      long v;
      if (!qq_cli_int("synth", "--threads", argv[++i], 1, 64, &v)) return 2;
      o.n_threads = (int32_t)v;
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
  if (!qq_synth_bytes(o.shape, o.dtype)) {
    fprintf(stderr, "qquant synth: unknown shape '%s' (one of:", o.shape);
    for (const char *const *s = qq_synth_shapes(); *s; s++) fprintf(stderr, " %s", *s);
    fprintf(stderr, ")\n");
    return 2;
  }
  qq_out_format f;
  bool dense = !strcmp(format, "bf16");
  if (dense) f = QQ_OUT_AUTO;
  else if (!strcmp(format, "awq")) f = QQ_OUT_AWQ;
  else if (!strcmp(format, "gptq")) f = QQ_OUT_GPTQ;
  else if (!strcmp(format, "w8a8")) f = QQ_OUT_CT;
  else {
    fprintf(stderr, "qquant synth: --format expects bf16, awq, gptq or w8a8, got '%s'\n", format);
    return 2;
  }
  if (dense && (bits || group || sym >= 0)) {
    fprintf(stderr, "qquant synth: --bits, --group-size, --sym and --asym apply to --format awq, gptq or w8a8\n");
    return 2;
  }
  qq_error err = {0};
  qq_synth_quant q = qq_synth_quant_default(f);
  if (!dense) {
    q.bits = (int32_t)bits;
    q.group_size = (int32_t)group;
    if (sym >= 0) q.sym = sym;
    if (qq_synth_quant_resolve(&o, &q, &q, &err) != QQ_OK) {
      fprintf(stderr, "qquant synth: %s\n", err.msg);
      return 2;
    }
  }
  char what[96];
  if (dense)
    snprintf(what, sizeof what, "dense %s", qq_dtype_name(o.dtype));
  else
    snprintf(what, sizeof what, "%s %d-bit%s%s, group %d, dense tensors %s", format, q.bits,
             f == QQ_OUT_CT ? "" : q.sym ? " sym" : " asym", f == QQ_OUT_CT ? " per channel" : "", q.group_size,
             qq_dtype_name(o.dtype));
  fprintf(stderr,
          "qquant synth: ********************************************************************\n"
          "qquant synth: *  RANDOM WEIGHTS: real model shapes, random numbers for weights.   *\n"
          "qquant synth: *  Use it for shapes, memory and speed only; outputs are meaningless. *\n"
          "qquant synth: ********************************************************************\n"
          "qquant synth: shape %s, %s, to %s (seed %llu)\n",
          o.shape, what, out, (unsigned long long)o.seed);
  progress p = {.last_pct = 101, .t0 = qq_now_sec()};
  o.progress = on_progress;
  o.user = &p;
  qq_status s = dense ? qq_synth_write(out, &o, &err) : qq_synth_quant_write(out, &o, &q, &err);
  if (s != QQ_OK) {
    fprintf(stderr, "\nqquant synth: %s\n", err.msg);
    return s == QQ_ERR_EXISTS || s == QQ_ERR_INVALID_ARG ? 2 : 1;
  }
  fprintf(stderr, "qquant synth: done in %.1f s: %.2f GB of tensors in %s (RANDOM WEIGHTS)\n", qq_now_sec() - p.t0,
          (double)p.total / 1e9, out);
  return 0;
}

const qq_command qq_cmd_synth = {"synth", "write a checkpoint with real Qwen2.5 shapes and RANDOM weights (bf16, awq, "
                                 "gptq, w8a8)", run};
