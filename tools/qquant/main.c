/* main.c — qquant entry point: dispatches to the subcommands listed in the generated table.
 * `qquant --method ...` (no subcommand) is the quantizer, as users type it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands_table.h"
#include "kernels.h"
#include "qq_common.h"

bool qq_cli_int(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out) {
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || !end || *end || end == s || v < lo || v > hi) {
    fprintf(stderr, "qquant %s: %s expects a whole number in [%ld, %ld], got '%s'\n", cmd, opt, lo, hi, s);
    return false;
  }
  *out = v;
  return true;
}

bool qq_cli_float(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out) {
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || !end || *end || end == s || !(v >= lo && v <= hi)) {
    fprintf(stderr, "qquant %s: %s expects a number in [%g, %g], got '%s'\n", cmd, opt, lo, hi, s);
    return false;
  }
  *out = v;
  return true;
}

qq_act_dtype qq_cli_dtype(const char *s, bool *ok) {
  qq_act_dtype a = QQ_ACT_AUTO;
  *ok = qq_act_dtype_parse(s, &a);
  if (!*ok) fprintf(stderr, "qquant: --dtype expects auto, fp32, bf16 or fp16, got '%s'\n", s);
  return a;
}

qq_rope_freq qq_cli_rope_freq(const char *s, bool *ok) {
  qq_rope_freq f = QQ_ROPE_FREQ_EXACT;
  *ok = qq_rope_freq_parse(s, &f);
  if (!*ok) fprintf(stderr, "qquant: --rope-freq expects exact or bf16, got '%s'\n", s);
  return f;
}

qq_device_kind qq_cli_device(const char *s, bool *ok) {
  *ok = true;
  if (!strcmp(s, "auto")) return QQ_DEVICE_AUTO;
  if (!strcmp(s, "cpu")) return QQ_DEVICE_CPU;
  if (!strcmp(s, "cuda")) return QQ_DEVICE_CUDA;
  fprintf(stderr, "qquant: --device expects auto, cpu or cuda, got '%s'\n", s);
  *ok = false;
  return QQ_DEVICE_AUTO;
}

static void usage(FILE *f) {
  fprintf(f,
          "qquant %s — quantize Qwen/Llama checkpoints and run them\n\n"
          "usage: qquant <command> [options]      (qquant <command> --help for its options)\n"
          "       qquant --method awq|gptq|smoothquant|rtn --model DIR --out DIR [options]\n\n"
          "commands:\n",
          QQ_VERSION);
  for (int i = 0; qq_commands[i]; i++) fprintf(f, "  %-12s %s\n", qq_commands[i]->name, qq_commands[i]->summary);
}

static const qq_command *find_command(const char *name) {
  for (int i = 0; qq_commands[i]; i++)
    if (!strcmp(qq_commands[i]->name, name)) return qq_commands[i];
  return NULL;
}

int main(int argc, char **argv) {
  qq_kernels_setup_openblas(argv);
  qq_log_init_from_env();
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("qquant %s\n", QQ_VERSION);
    return 0;
  }
  if (!strncmp(argv[1], "--", 2)) {
    const qq_command *q = find_command("quantize");
    if (!q) {
      fprintf(stderr, "qquant: the quantizer is not built into this binary\n");
      return 2;
    }
    /* argv[0] becomes "quantize"; the options follow unchanged. */
    char **args = malloc(sizeof(char *) * (size_t)(argc + 1));
    if (!args) return 1;
    args[0] = (char *)"quantize";
    for (int i = 1; i < argc; i++) args[i] = argv[i];
    args[argc] = NULL;
    int rc = q->run(argc, args);
    free(args);
    return rc;
  }
  const qq_command *c = find_command(argv[1]);
  if (!c) {
    fprintf(stderr, "qquant: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
  }
  return c->run(argc - 1, argv + 1);
}
