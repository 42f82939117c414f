/* cpu_internal.h — private to kernels/: the CPU backend's weight representation and the plain C
 * reference ops (the specification every fast path is tested against). */
#ifndef QQ_CPU_INTERNAL_H
#define QQ_CPU_INTERNAL_H

#include "backend_internal.h"

/* Every CPU weight is held as an fp32 matrix wf [n][k] that sgemm reads:
 *  - F32/BF16/F16: the weights converted to fp32;
 *  - QINT: the dequantized weights (code - zero) * scale, computed once at create time; the codes,
 *    scales, zeros and g_idx are kept as well (to_f32 and tests);
 *  - W8A8: the int8 codes as integer-valued floats. The matmul quantizes each activation row to int8,
 *    then multiplies integer-valued floats: every partial sum is an integer below 2^24 in magnitude
 *    when at most QQ_CPU_W8A8_CHUNK columns are summed (activations are in [-127, 127], weight codes in
 *    [-128, 127]: 128 * 127 * 1024 < 2^24), so fp32 sgemm over
 *    chunks of 1024 columns computes the int32 dot products exactly; chunk results are summed in
 *    doubles (exact for integers below 2^53). This is the integer arithmetic int8 tensor cores do. */
#define QQ_CPU_W8A8_CHUNK 1024
/* Prefill attention runs over blocks of this many new tokens, each against only the keys its last
 * token can see: a causal prompt of T tokens costs about (T/B + 1) / (2 T/B) of the full T x T work. */
#define QQ_CPU_ATTN_BLOCK 128
/* v[j] = e^(v[j] − mx) for j < n (vectorized; within 2 ulp of expf for v[j] − mx in [−87, 0], e^−87 below);
 * returns the sum of the results in double. The softmax's exponentials. */
double qq_cpu_exp_shift_sum(float *v, int32_t n, float mx);

typedef struct qq_cpu_linear {
  float *wf;       /* [n][k] */
  float *bias;     /* [n] or NULL */
  /* QINT / W8A8 originals */
  uint8_t *codes;  /* [n][k] (W8A8: int8 stored as uint8 bit patterns) */
  float *scales;
  uint8_t *zeros;
  int32_t *g_idx;
  int32_t bits, group_size, n_groups;
  float act_scale;
} qq_cpu_linear;

typedef struct qq_cpu_backend {
  int32_t n_threads;
} qq_cpu_backend;

/* Plain C references (no BLAS): y[m][n] = x[m][k] · wᵀ (+ bias). */
void qq_ref_matmul_f32(const float *x, const float *w, const float *bias, int32_t m, int32_t n, int32_t k, float *y);
/* W8A8 reference on int8 codes: per-token dynamic (act_scale 0) or static activation quantization. */
void qq_ref_matmul_w8a8(const float *x, const int8_t *wq, const float *w_scales, float act_scale, const float *bias,
                        int32_t m, int32_t n, int32_t k, float *y);
/* Per-row int8 quantization of activations: s = max|x| / 127 (static: act_scale), q = clamp(rint(x / s)). */
void qq_ref_quantize_rows_i8(const float *x, int32_t m, int32_t k, float act_scale, int8_t *q, float *s);
/* Dequantizes a QINT descriptor to fp32 [n][k]. */
void qq_ref_dequantize_qint(const qq_linear_desc *d, float *w);

/* Logit-row reductions (kernels.h qq_op_logits_reduce / qq_op_logits_topk) on host fp32 rows: the
 * specification the CUDA kernels are tested against. */
void qq_ref_logits_reduce(const float *x, int32_t n, const int32_t *rows, const int32_t *targets, int32_t count,
                          bool want_lse, qq_logits_stats *out);
/* Returns false when out of memory. */
bool qq_ref_logits_topk(const float *x, int32_t n, const int32_t *rows, const float *scales, int32_t count, int32_t k,
                        float *vals, int32_t *ids, double *sums);

#endif
