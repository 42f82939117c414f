/* cli.h — what a qquant subcommand is, and small argument helpers shared by the subcommands. */
#ifndef QQ_CLI_H
#define QQ_CLI_H

#include <stdbool.h>
#include <stdint.h>

/* A subcommand: argv[0] is the subcommand name. Returns the process exit code (0 ok, 1 failure,
 * 2 usage error). */
typedef struct qq_command {
  const char *name;
  const char *summary;
  int (*run)(int argc, char **argv);
} qq_command;

/* Parses a whole decimal integer / float in [lo, hi]; prints "qquant NAME: --OPT: ..." and returns
 * false otherwise. */
bool qq_cli_int(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out);
bool qq_cli_float(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out);

/* Parses --device auto|cpu|cuda (values of qq_device_kind in kernels.h). */
#include "kernels.h"
qq_device_kind qq_cli_device(const char *s, bool *ok);
/* --dtype auto|fp32|bf16|fp16: activation precision of the backend (CPU: fp32 only). */
qq_act_dtype qq_cli_dtype(const char *s, bool *ok);
/* --rope-freq exact|bf16: how RoPE's frequencies are computed (qq_rope_freq in kernels.h). */
qq_rope_freq qq_cli_rope_freq(const char *s, bool *ok);
#endif
