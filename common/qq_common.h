/* qq_common.h — the one public header of common/: status codes, error objects, logging, timing,
 * half-precision conversions and process setup shared by every qquant module.
 *
 * Conventions used across the code base (docs/DESIGN.md):
 *  - functions return qq_status; QQ_OK is 0;
 *  - an optional qq_error* (may be NULL) receives a message a person can act on;
 *  - the library never calls exit(); only tools and tests may.
 */
#ifndef QQ_COMMON_H
#define QQ_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes. Append only: the numeric values appear in logs and metrics. */
typedef enum qq_status {
  QQ_OK = 0,
  QQ_ERR_INVALID_ARG = 1,  /* caller passed something out of range or malformed */
  QQ_ERR_IO = 2,           /* open/read/write/mmap failed (errno text in the message) */
  QQ_ERR_FORMAT = 3,       /* a file's content is malformed (safetensors, JSON, tokenizer) */
  QQ_ERR_UNSUPPORTED = 4,  /* valid input that qquant does not implement (architecture, rope type) */
  QQ_ERR_NOMEM = 5,        /* allocation failed */
  QQ_ERR_NOT_FOUND = 6,    /* missing tensor, file, field or label */
  QQ_ERR_RANGE = 7,        /* value or offset out of bounds */
  QQ_ERR_CUDA = 8,         /* CUDA / cuBLAS / cuBLASLt failure (statement text in the message) */
  QQ_ERR_INTERNAL = 9,     /* a bug: an invariant did not hold */
  QQ_ERR_CANCELLED = 10,   /* work stopped because the caller asked */
  QQ_ERR_EXHAUSTED = 11,   /* a bounded resource (queue, KV cache) is full */
  QQ_ERR_EXISTS = 12,      /* output already exists */
} qq_status;

#define QQ_ERROR_MSG_MAX 1024

typedef struct qq_error {
  qq_status status;
  char msg[QQ_ERROR_MSG_MAX];
} qq_error;

/* Stable upper-case name of a status ("INVALID_ARG"). Never NULL. */
const char *qq_status_name(qq_status st);

/* Records st and a printf-style message into err (if err is non-NULL) and returns st, so that
 * `return qq_error_set(err, QQ_ERR_FORMAT, "%s: ...", path);` reads naturally. An error already
 * recorded is replaced. */
qq_status qq_error_set(qq_error *err, qq_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
qq_status qq_error_setv(qq_error *err, qq_status st, const char *fmt, va_list ap);
/* Prepends "prefix: " to the message already in err (no-op when err is NULL). Returns err->status. */
qq_status qq_error_prefix(qq_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void qq_error_clear(qq_error *err);

/* ---- logging ----------------------------------------------------------------------------------
 * Human-readable lines on stderr by default; one JSON object per line when QQ_LOG_FORMAT=json or
 * qq_log_set_json(true). Thread-safe. Level from QQ_LOG_LEVEL (debug|info|warn|error). */
typedef enum qq_log_level { QQ_LOG_DEBUG = 0, QQ_LOG_INFO = 1, QQ_LOG_WARN = 2, QQ_LOG_ERROR = 3 } qq_log_level;
void qq_log_init_from_env(void);
void qq_log_set_level(qq_log_level level);
void qq_log_set_json(bool json);
bool qq_log_enabled(qq_log_level level);
void qq_log(qq_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define QQ_LOGD(comp, ...) qq_log(QQ_LOG_DEBUG, comp, __VA_ARGS__)
#define QQ_LOGI(comp, ...) qq_log(QQ_LOG_INFO, comp, __VA_ARGS__)
#define QQ_LOGW(comp, ...) qq_log(QQ_LOG_WARN, comp, __VA_ARGS__)
#define QQ_LOGE(comp, ...) qq_log(QQ_LOG_ERROR, comp, __VA_ARGS__)

/* ---- time -------------------------------------------------------------------------------------- */
double qq_now_sec(void);        /* CLOCK_MONOTONIC seconds */
double qq_wall_clock_sec(void); /* CLOCK_REALTIME seconds since the epoch */

/* ---- process setup -----------------------------------------------------------------------------
 * The OpenBLAS core type suited to this CPU from /proc/cpuinfo flags: "SKYLAKEX" (AVX-512),
 * "HASWELL" (AVX2 + FMA), "SANDYBRIDGE" (AVX), or NULL. kernels.h's qq_kernels_setup_openblas uses it
 * to correct OpenBLAS when it misdetects the CPU. Changes nothing. */
const char *qq_cpu_openblas_coretype_for_cpu(void);
/* Number of threads to use by default: QQ_THREADS, else the CPUs this process may run on. */
int qq_cpu_default_threads(void);

/* ---- half precision ------------------------------------------------------------------------------ */
static inline float qq_bf16_to_f32(uint16_t h) {
  union { uint32_t u; float f; } v;
  v.u = (uint32_t)h << 16;
  return v.f;
}
/* Round to nearest even, NaN preserved (what PyTorch's .to(torch.bfloat16) does). */
static inline uint16_t qq_f32_to_bf16(float f) {
  union { uint32_t u; float f; } v;
  v.f = f;
  if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40u);
  uint32_t rounding = 0x7fffu + ((v.u >> 16) & 1u);
  return (uint16_t)((v.u + rounding) >> 16);
}
float qq_f16_to_f32(uint16_t h);
uint16_t qq_f32_to_f16(float f);

/* ---- small helpers ------------------------------------------------------------------------------- */
/* Reads a whole (small) file into a NUL-terminated heap buffer. */
qq_status qq_read_file(const char *path, char **out, size_t *len, qq_error *err);
/* SHA-256 of a buffer, as 64 lower-case hex characters plus NUL. */
void qq_sha256_hex(const void *data, size_t len, char out[65]);

#define QQ_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define QQ_MIN(a, b) ((a) < (b) ? (a) : (b))
#define QQ_MAX(a, b) ((a) > (b) ? (a) : (b))

#ifdef __cplusplus
}
#endif
#endif /* QQ_COMMON_H */
