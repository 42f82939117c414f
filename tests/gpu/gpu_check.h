/* gpu_check.h — the check macros shared by the standalone GPU test programs (tests/gpu/):
 * CHECK counts a check and prints a failure without stopping; OK and CU stop the program on a failed
 * qquant call (the message of the file's `err`) or CUDA call. Each program ends with
 *   printf("%s: %d checks, %d failed\n", ...); return failures ? 1 : 0;   (77: no device, skipped). */
#ifndef QQ_GPU_CHECK_H
#define QQ_GPU_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include "qq_common.h"

static int checks, failures;
static qq_error err;

#define CHECK(cond, ...)                          \
  do {                                            \
    checks++;                                     \
    if (!(cond)) {                                \
      failures++;                                 \
      printf("FAIL %s:%d: ", __FILE__, __LINE__); \
      printf(__VA_ARGS__);                        \
      printf("\n");                               \
    }                                             \
  } while (0)

#define OK(expr)                                                                                       \
  do {                                                                                                 \
    qq_status s_ = (expr);                                                                             \
    if (s_ != QQ_OK) {                                                                                 \
      printf("FATAL %s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #expr, qq_status_name(s_), err.msg);   \
      exit(1);                                                                                         \
    }                                                                                                  \
  } while (0)

#ifdef __CUDACC__
#define CU(expr)                                                                                       \
  do {                                                                                                 \
    cudaError_t e_ = (expr);                                                                           \
    if (e_ != cudaSuccess) {                                                                           \
      printf("FATAL %s:%d: %s -> %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_));           \
      exit(1);                                                                                         \
    }                                                                                                  \
  } while (0)
#endif

#endif
