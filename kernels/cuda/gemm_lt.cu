/* gemm_lt.cu — every cuBLASLt GEMM of the backend: dense y[m][n] = x[m][k] · W[n][k]ᵀ (+ bias) and the
 * exact int8 × int8 → int32 product of W8A8.
 *
 * Row-major operands seen column-major: W is a k×n matrix (ld k), x a k×m matrix (ld k), y an n×m
 * matrix (ld n), so y = op(W)ᵀ... i.e. D(n×m) = Wᵀ(n×k) · X(k×m): the "TN" GEMM, which every cuBLASLt
 * kernel family supports. The bias is a per-row vector of D (per output feature): the BIAS epilogue
 * with an fp32 bias vector; where no algorithm offers that, the plain GEMM plus a bias kernel.
 *
 * Precision: fp32 activations use CUBLAS_COMPUTE_32F (true fp32, no TF32) so the GPU matches the CPU
 * backend to fp32 rounding; bf16/fp16 accumulate in fp32 (CUBLAS_COMPUTE_32F, scale type fp32).
 *
 * Plans — the matmul descriptor, the three layouts and the heuristic's first algorithm — are created
 * once per (m, n, k, dtype, bias) and cached in the context (QQ_CUDA_MAX_PLANS, oldest replaced), so a
 * steady-state step calls cublasLtMatmul only: no allocation, no host synchronization. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_types.cuh"

#define QQ_CUDA_MAX_PLANS 512
/* int8 plans keep up to this many of the heuristic's algorithms and time them once (tune_i8). */
#define QQ_LT_I8_CANDIDATES 8

struct qq_cuda_matmul_plan {
  int32_t m, n, k;
  bool int8;           /* int8 x int8 -> int32 (act unused) */
  qq_act_dtype act;
  bool bias;           /* asked with a bias */
  bool epilogue_bias;  /* the bias is applied by cuBLASLt (else by k_add_bias) */
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t a, b, d;
  cublasLtMatmulAlgo_t algo;
  /* int8: the heuristic's candidates, in its order; tuned once they were timed (or need not be). */
  cublasLtMatmulAlgo_t cand[QQ_LT_I8_CANDIDATES];
  int32_t n_cand;
  bool tuned;
};

static void plan_destroy(qq_cuda_matmul_plan *p) {
  if (p->op) cublasLtMatmulDescDestroy(p->op);
  if (p->a) cublasLtMatrixLayoutDestroy(p->a);
  if (p->b) cublasLtMatrixLayoutDestroy(p->b);
  if (p->d) cublasLtMatrixLayoutDestroy(p->d);
  memset(p, 0, sizeof *p);
}

extern "C" void qq_cuda_plans_free(qq_cuda_ctx *c) {
  for (int32_t i = 0; i < c->n_plans; i++) plan_destroy(&c->plans[i]);
  free(c->plans);
  c->plans = NULL;
  c->n_plans = c->cap_plans = 0;
}

static cudaDataType_t cuda_type(qq_act_dtype a) {
  return a == QQ_ACT_F32 ? CUDA_R_32F : a == QQ_ACT_BF16 ? CUDA_R_16BF : CUDA_R_16F;
}

/* Builds descriptors and asks the heuristic for the best algorithm. Returns QQ_ERR_UNSUPPORTED when
 * cuBLASLt offers none (with_bias: the caller retries without the epilogue). */
static qq_status plan_build(qq_cuda_ctx *c, qq_cuda_matmul_plan *p, bool with_bias, qq_error *err) {
  const cudaDataType_t t = p->int8 ? CUDA_R_8I : cuda_type(p->act);
  if (p->int8)
    QQ_CUBLAS_TRY(err, cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32I, CUDA_R_32I));
  else
    QQ_CUBLAS_TRY(err, cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  QQ_CUBLAS_TRY(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  QQ_CUBLAS_TRY(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  if (with_bias) {
    const cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
    const cudaDataType_t bt = CUDA_R_32F;
    QQ_CUBLAS_TRY(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep));
    if (cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt) !=
        CUBLAS_STATUS_SUCCESS)
      return QQ_ERR_UNSUPPORTED;
  }
  QQ_CUBLAS_TRY(err, cublasLtMatrixLayoutCreate(&p->a, t, p->k, p->n, p->k));
  QQ_CUBLAS_TRY(err, cublasLtMatrixLayoutCreate(&p->b, t, p->k, p->m, p->k));
  QQ_CUBLAS_TRY(err, cublasLtMatrixLayoutCreate(&p->d, p->int8 ? CUDA_R_32I : t, p->n, p->m, p->n));
  cublasLtMatmulPreference_t pref;
  QQ_CUBLAS_TRY(err, cublasLtMatmulPreferenceCreate(&pref));
  size_t ws = QQ_CUDA_LT_WS_BYTES;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  cublasLtMatmulHeuristicResult_t res[QQ_LT_I8_CANDIDATES];
  int found = 0;
  const int want = p->int8 ? QQ_LT_I8_CANDIDATES : 1;
  cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(c->lt, p->op, p->a, p->b, p->d, p->d, pref, want, res, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (s != CUBLAS_STATUS_SUCCESS || found == 0) {
    if (with_bias) return QQ_ERR_UNSUPPORTED;
    if (p->int8) return QQ_ERR_UNSUPPORTED; /* the caller uses k_gemm_i8_simple */
    return qq_error_set(err, QQ_ERR_CUDA, "cuBLASLt has no algorithm for a %s GEMM m=%d n=%d k=%d (status %d)",
                        qq_act_dtype_name(p->act), p->m, p->n, p->k, (int)s);
  }
  p->algo = res[0].algo;
  p->n_cand = 0;
  for (int i = 0; i < found; i++)
    if (res[i].state == CUBLAS_STATUS_SUCCESS) p->cand[p->n_cand++] = res[i].algo;
  p->tuned = p->n_cand <= 1;
  p->epilogue_bias = with_bias;
  return QQ_OK;
}

/* Sets the cache key of a (destroyed or fresh) plan. */
static void plan_key(qq_cuda_matmul_plan *p, const qq_cuda_ctx *c, bool int8, int32_t m, int32_t n, int32_t k,
                     bool bias) {
  p->m = m;
  p->n = n;
  p->k = k;
  p->int8 = int8;
  p->act = c->act;
  p->bias = bias;
}

static qq_status plan_get(qq_cuda_ctx *c, bool int8, int32_t m, int32_t n, int32_t k, bool bias,
                          qq_cuda_matmul_plan **out, qq_error *err) {
  for (int32_t i = 0; i < c->n_plans; i++) {
    qq_cuda_matmul_plan *p = &c->plans[i];
    if (p->m == m && p->n == n && p->k == k && p->int8 == int8 && (int8 || p->act == c->act) && p->bias == bias) {
      *out = p;
      return QQ_OK;
    }
  }
  if (!c->plans) {
    c->plans = (qq_cuda_matmul_plan *)calloc(QQ_CUDA_MAX_PLANS, sizeof *c->plans);
    if (!c->plans) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    c->cap_plans = QQ_CUDA_MAX_PLANS;
  }
  qq_cuda_matmul_plan *p;
  if (c->n_plans < c->cap_plans) {
    p = &c->plans[c->n_plans++];
  } else { /* full: replace round-robin (prefill chunk lengths vary; decode shapes stay hot anyway) */
    static_assert(QQ_CUDA_MAX_PLANS > 1, "plan cache");
    p = &c->plans[(size_t)(m + n + k) % QQ_CUDA_MAX_PLANS];
    plan_destroy(p);
  }
  plan_key(p, c, int8, m, n, k, bias);
  qq_status st = plan_build(c, p, bias, err);
  if (st == QQ_ERR_UNSUPPORTED && bias) { /* no algorithm with the bias epilogue: plain GEMM + bias kernel */
    plan_destroy(p);
    plan_key(p, c, int8, m, n, k, bias);
    st = plan_build(c, p, false, err);
  }
  if (st != QQ_OK) {
    plan_destroy(p);
    return st;
  }
  *out = p;
  return QQ_OK;
}

template <typename T> __global__ void k_add_bias(T *y, const float *__restrict__ bias, int32_t m, int32_t n) {
  const size_t total = (size_t)m * n;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
    y[i] = qq::from_f<T>(qq::to_f(y[i]) + bias[i % n]);
}

extern "C" qq_status qq_cuda_gemm_dense(qq_cuda_ctx *c, const void *w, const float *bias, int32_t m, int32_t n,
                                        int32_t k, const void *x, void *y, qq_error *err) {
  if (m <= 0 || n <= 0 || k <= 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "gemm: shape m=%d n=%d k=%d", m, n, k);
  qq_cuda_matmul_plan *p;
  qq_status st = plan_get(c, false, m, n, k, bias != NULL, &p, err);
  if (st != QQ_OK) return st;
  if (p->epilogue_bias)
    QQ_CUBLAS_TRY(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
  const float alpha = 1.0f, beta = 0.0f;
  QQ_CUBLAS_TRY(err, cublasLtMatmul(c->lt, p->op, &alpha, w, p->a, x, p->b, &beta, y, p->d, y, p->d, &p->algo, c->lt_ws,
                                    QQ_CUDA_LT_WS_BYTES, c->stream));
  if (bias && !p->epilogue_bias) {
    const size_t total = (size_t)m * n;
    QQ_CUDA_DISPATCH_ACT(c->act, (k_add_bias<T><<<qq_cuda_blocks(total, 256), 256, 0, c->stream>>>((T *)y, bias, m, n)));
    QQ_CUDA_LAUNCHED(err, "add_bias");
  }
  return QQ_OK;
}

/* ---- int8 x int8 -> int32 ----
 * cuBLASLt IMMA needs k, and the leading dimensions, multiples of 4 (Hopper kernels prefer 16); other
 * shapes, and shapes the heuristic declines, go to k_gemm_i8_simple: one warp per output, int32
 * multiply-adds (slow, correct; no real checkpoint has such shapes). Both are exact: |Σ| ≤ 128 · 127 · k < 2^31 for k < 132,000
 * (weight codes in [-128, 127], activations in [-127, 127]). */
__global__ void k_gemm_i8_simple(const int8_t *__restrict__ wq, int32_t n, int32_t k, const int8_t *__restrict__ xq,
                               int32_t m, int32_t *acc) {
  const int lane = threadIdx.x & 31;
  const size_t out = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (out >= (size_t)m * n) return;
  const int32_t i = (int32_t)(out / n), j = (int32_t)(out % n);
  const int8_t *xr = xq + (size_t)i * k, *wr = wq + (size_t)j * k;
  int32_t s = 0;
  for (int32_t c = lane; c < k; c += 32) s += (int32_t)xr[c] * (int32_t)wr[c];
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (lane == 0) acc[out] = s;
}

/* The int8 heuristic's first answer is often not its fastest (H100, 7B gate_up at m = 256: 110 µs for
 * its first algorithm, 68 µs for the fastest of its eight), so the first eager call of an int8 shape times
 * every candidate on the real operands (one warm-up, then the median of 3 batches of 4 launches) and keeps the
 * fastest. Integer sums are exact, so every candidate gives the same bits. It synchronizes once per
 * shape; a shape first met inside a capture keeps the heuristic's choice. QQ_LT_I8_TUNE=0 turns it off. */
static bool i8_tune_enabled(void) {
  static int on = -1;
  if (on < 0) {
    const char *e = getenv("QQ_LT_I8_TUNE");
    on = !(e && !strcmp(e, "0"));
  }
  return on;
}

static qq_status tune_i8(qq_cuda_ctx *c, qq_cuda_matmul_plan *p, const int8_t *wq, const int8_t *xq, int32_t *acc,
                         qq_error *err) {
  p->tuned = true;
  if (c->mode == QQ_CUDA_CAPTURE || !i8_tune_enabled()) return QQ_OK;
  cudaEvent_t ev[2];
  for (int i = 0; i < 2; i++) QQ_CUDA_TRY(err, cudaEventCreate(&ev[i]));
  const int32_t alpha = 1, beta = 0;
  float best = 0;
  int best_i = -1;
  qq_status st = QQ_OK;
  /* Each measurement: one launch that starts the queue, then the events around QQ_LT_TUNE_BATCH more
   * launches queued behind it, so the host's enqueue time overlaps GPU work (timing single launches
   * picked slower algorithms for the small shapes on the H100). */
  enum { QQ_LT_TUNE_BATCH = 4 };
  for (int i = 0; i < p->n_cand && st == QQ_OK; i++) {
    float t[3];
    auto launch = [&] {
      return cublasLtMatmul(c->lt, p->op, &alpha, wq, p->a, xq, p->b, &beta, acc, p->d, acc, p->d, &p->cand[i], c->lt_ws,
                            QQ_CUDA_LT_WS_BYTES, c->stream) == CUBLAS_STATUS_SUCCESS;
    };
    bool ok = launch();
    for (int r = 0; r < 3 && ok; r++) {
      ok = launch();
      cudaEventRecord(ev[0], c->stream);
      for (int b = 0; b < QQ_LT_TUNE_BATCH && ok; b++) ok = launch();
      cudaEventRecord(ev[1], c->stream);
      if (cudaEventSynchronize(ev[1]) != cudaSuccess || cudaEventElapsedTime(&t[r], ev[0], ev[1]) != cudaSuccess)
        st = qq_error_set(err, QQ_ERR_CUDA, "gemm_i8: timing cuBLASLt candidates: %s",
                          cudaGetErrorString(cudaGetLastError()));
      t[r] /= QQ_LT_TUNE_BATCH;
    }
    if (!ok || st != QQ_OK) continue;
    const float med = t[0] < t[1] ? (t[1] < t[2] ? t[1] : (t[0] < t[2] ? t[2] : t[0]))
                                  : (t[0] < t[2] ? t[0] : (t[1] < t[2] ? t[2] : t[1]));
    if (best_i < 0 || med < best) {
      best = med;
      best_i = i;
    }
  }
  for (int i = 0; i < 2; i++) cudaEventDestroy(ev[i]);
  if (best_i >= 0) p->algo = p->cand[best_i];
  if (getenv("QQ_LT_I8_TUNE_LOG"))
    fprintf(stderr, "gemm_i8 m=%d n=%d k=%d: %d candidates, kept #%d (%.2f us)\n", p->m, p->n, p->k, p->n_cand, best_i,
            best * 1000.0f);
  return st;
}

extern "C" qq_status qq_cuda_gemm_i8(qq_cuda_ctx *c, const int8_t *wq, int32_t n, int32_t k, const int8_t *xq, int32_t m,
                                     int32_t *acc, qq_error *err) {
  if (m <= 0 || n <= 0 || k <= 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "gemm_i8: shape m=%d n=%d k=%d", m, n, k);
  if (k % 4 == 0 && n % 4 == 0 && k < 133000) {
    qq_cuda_matmul_plan *p = NULL;
    qq_status st = plan_get(c, true, m, n, k, false, &p, err);
    if (st == QQ_OK && !p->tuned) st = tune_i8(c, p, wq, xq, acc, err);
    if (st == QQ_OK) {
      const int32_t alpha = 1, beta = 0;
      QQ_CUBLAS_TRY(err, cublasLtMatmul(c->lt, p->op, &alpha, wq, p->a, xq, p->b, &beta, acc, p->d, acc, p->d, &p->algo,
                                        c->lt_ws, QQ_CUDA_LT_WS_BYTES, c->stream));
      return QQ_OK;
    }
    if (st != QQ_ERR_UNSUPPORTED) return st;
  }
  const size_t outs = (size_t)m * n;
  const unsigned warps = 8;
  k_gemm_i8_simple<<<(unsigned)((outs + warps - 1) / warps), warps * 32, 0, c->stream>>>(wq, n, k, xq, m, acc);
  QQ_CUDA_LAUNCHED(err, "gemm_i8_simple");
  return QQ_OK;
}
