/* test_cuda_wq.cu — the weight-only integer GEMM (kernels/cuda/gemm_wq.cu) against an fp64 reference,
 * through its internal contract (cuda_internal.h) on a context built here. Exits 77 (ctest: skipped)
 * when no CUDA device is visible; 0 when every check passes.
 *
 * Error rule (FlashAttention's, as tests/gpu/test_cuda_ops.c): over the checked outputs,
 *     ‖y_gpu − y64‖ / ‖y64‖ ≤ 2 · ‖y_naive − y64‖ / ‖y64‖ + floor
 * y64: the product in double of exactly what the GPU sees (x rounded to the activation dtype, the
 * weight dequantized as qq_ref_dequantize_qint does: (float)(q − z) · s), plus bias.
 * y_naive: the naive implementation in the same precision: weights dequantized in fp32 and rounded to
 * the activation dtype, fp32 accumulation in column order, output rounded to the activation dtype.
 * floor = 4 · sqrt(k) · 2^-24: the kernel sums in another order than the naive loop; with random signs
 * the relative difference of two fp32 summation orders has standard deviation about sqrt(k) · 2^-24
 * (each of k partial sums rounded once, the rounding errors independent), so 4σ. It only matters if
 * the naive error were ~0, which output rounding (≥ 2^-12 relative) makes impossible here.
 *
 * Shapes with n > 256 compare a sample of output features (all tokens): 96 rows including the first and
 * last, enough to see any layout error (which breaks whole tiles) while keeping the fp64 reference
 * fast. Scratch (ctx->ws) is filled with 0xFF bytes before every call: nothing may rely on zeroed
 * scratch. Also: exact to_f32, bitwise determinism, CUDA Graph replay (the split-K counters rearm),
 * clean rejection of bad input.
 *
 *   test_cuda_wq             the checks
 *   test_cuda_wq --bench [--iters N] [--skinny-max-m M] [--min-chunks C] [--overhead B] [--m1-ab]
 *                            microbenchmark on the Qwen2.5-7B linear shapes, M = 1, 16, 64, 256:
 *                            median of per-launch cudaEvent times (GPU time: each launch queued behind
 *                            a 50 us GPU spin), L2-warm and after reading 256 MiB (cold); one parseable
 *                            line per measurement:
 *   BENCH shape=qkv n=4608 k=3584 m=1 kind=w4a16 path=skinny us_warm=.. us_cold=.. wbytes=.. GBps_cold=..
 *         bw_frac_cold=.. bf16_us_warm=.. bf16_us_cold=.. x_bf16_warm=.. x_bf16_cold=.. plan=skinny,mt=1,..
 *   (kind: w4a16 = 4-bit, group 128, zero points; w8a16 = 8-bit per-channel symmetric; w4a16-skinny =
 *   the skinny kernel forced for m > 64; wbytes = repacked bytes read: codes + scales + zeros; x_bf16
 *   = bf16 time / this time; plan = the launch shape ("skinny-xs,..." for wq_xs_kernel, "skinny-m1,..."
 *   for wq_m1_kernel); --m1-ab adds m = 8 and 32 and, up to m = 64, kinds w4a16-old / w8a16-old (the
 *   same weights through QQ_WQ_M1=old: wq_gemm_kernel), w4a16-xs / w8a16-xs (QQ_WQ_XS=1: wq_xs_kernel)
 *   and w4a16-dense (dequantize + cuBLASLt), in the same process. The tuning flags set gemm_wq.cu's
 *   QQ_WQ_SKINNY_MAX_M / QQ_WQ_MIN_CHUNKS / QQ_WQ_BLOCK_OVERHEAD for the run, to choose them.)
 *
 * Build: in the tree (tests/gpu/CMakeLists.txt) it links qq_kernels (backend.cu provides
 * qq_cuda_fail / qq_cublas_fail, gemm_lt.cu qq_cuda_gemm_dense). Standalone:
 *   nvcc -std=c++17 -O2 -gencode arch=compute_90a,code=sm_90a -DQQ_WQ_TEST_STANDALONE \
 *        -Ikernels -Ikernels/cuda -Icommon tests/gpu/test_cuda_wq.cu kernels/cuda/gemm_wq.cu \
 *        kernels/cuda/gemm_lt.cu -lcublasLt -o test_cuda_wq
 * and with -DQQ_WQ_TEST_NO_DENSE instead of gemm_lt.cu / -lcublasLt: m > 64 then runs the skinny
 * kernel in 64-token chunks and the bench has no bf16 column. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "cuda_internal.h"
#include "gpu_check.h"
#include "gpu_timing.cuh"

/* gemm_wq.cu's tuning hooks (not in cuda_internal.h). */
extern "C" void qq_cuda_wq_set_tuning(qq_cuda_wq *w, int32_t skinny_max_m, int32_t min_chunks, int32_t block_overhead);
extern "C" void qq_cuda_wq_describe(const qq_cuda_wq *w, int32_t m, char *buf, size_t len);

#ifdef QQ_WQ_TEST_STANDALONE
/* What the rest of the backend and common/ would provide. */
extern "C" qq_status qq_error_set(qq_error *err, qq_status st, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->status = st;
  }
  return st;
}
extern "C" const char *qq_status_name(qq_status st) { return st == QQ_OK ? "OK" : "ERROR"; }
extern "C" const char *qq_act_dtype_name(qq_act_dtype a) {
  return a == QQ_ACT_F32 ? "fp32" : a == QQ_ACT_BF16 ? "bf16" : a == QQ_ACT_F16 ? "fp16" : "auto";
}
extern "C" qq_status qq_cuda_fail(qq_error *err, cudaError_t e, const char *stmt, const char *file, int line) {
  return qq_error_set(err, QQ_ERR_CUDA, "%s:%d: %s: %s", file, line, stmt, cudaGetErrorString(e));
}
extern "C" qq_status qq_cublas_fail(qq_error *err, cublasStatus_t s, const char *stmt, const char *file, int line) {
  return qq_error_set(err, QQ_ERR_CUDA, "%s:%d: %s: cuBLAS status %d", file, line, stmt, (int)s);
}
#endif
#ifdef QQ_WQ_TEST_NO_DENSE
extern "C" qq_status qq_cuda_gemm_dense(qq_cuda_ctx *, const void *, const float *, int32_t, int32_t, int32_t,
                                        const void *, void *, qq_error *err) {
  return qq_error_set(err, QQ_ERR_UNSUPPORTED, "built without gemm_lt.cu");
}
extern "C" void qq_cuda_plans_free(qq_cuda_ctx *) {}
static const bool have_dense = false;
#else
static const bool have_dense = true;
#endif

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_u64(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}
static double urand(void) { return (double)(next_u64() >> 11) * (1.0 / 9007199254740992.0); }
static int irand(int n) { return (int)(next_u64() % (uint64_t)n); }

/* ---- activation dtype on the host (CUDA's host-callable conversions, round to nearest even) ---- */
static uint16_t act_bits(float f, qq_act_dtype a) {
  if (a == QQ_ACT_BF16) {
    __nv_bfloat16_raw r = __float2bfloat16_rn(f);
    return r.x;
  }
  __half_raw r = __float2half_rn(f);
  return r.x;
}
static float act_float(uint16_t h, qq_act_dtype a) {
  if (a == QQ_ACT_BF16) {
    __nv_bfloat16_raw r;
    r.x = h;
    return __bfloat162float(__nv_bfloat16(r));
  }
  __half_raw r;
  r.x = h;
  return __half2float(__half(r));
}
static float round_act(float f, qq_act_dtype a) { return act_float(act_bits(f, a), a); }

/* ---- context ---- */
static qq_cuda_ctx ctx;

static void ctx_init(qq_act_dtype act) {
  memset(&ctx, 0, sizeof ctx);
  CU(cudaGetDevice(&ctx.device));
  CU(cudaDeviceGetAttribute(&ctx.sm_count, cudaDevAttrMultiProcessorCount, ctx.device));
  CU(cudaDeviceGetAttribute(&ctx.cc_major, cudaDevAttrComputeCapabilityMajor, ctx.device));
  CU(cudaDeviceGetAttribute(&ctx.cc_minor, cudaDevAttrComputeCapabilityMinor, ctx.device));
  ctx.act = act;
  /* A blocking stream (unlike backend.cu's): the plain cudaMemcpy / cudaMemset calls of this test on
   * the legacy stream are then ordered with the queued kernels. */
  CU(cudaStreamCreate(&ctx.stream));
#ifndef QQ_WQ_TEST_NO_DENSE
  if (cublasLtCreate(&ctx.lt) != CUBLAS_STATUS_SUCCESS) {
    printf("FATAL: cublasLtCreate failed\n");
    exit(1);
  }
  CU(cudaMalloc(&ctx.lt_ws, QQ_CUDA_LT_WS_BYTES));
#endif
  CU(cudaMalloc((void **)&ctx.counters, QQ_CUDA_COUNTERS * sizeof(int32_t)));
  CU(cudaMemset(ctx.counters, 0, QQ_CUDA_COUNTERS * sizeof(int32_t)));
  ctx.n_counters = QQ_CUDA_COUNTERS;
}
static void ctx_free(void) {
  CU(cudaStreamSynchronize(ctx.stream));
  qq_cuda_plans_free(&ctx);
  cudaFree(ctx.ws);
  cudaFree(ctx.counters);
#ifndef QQ_WQ_TEST_NO_DENSE
  cudaFree(ctx.lt_ws);
  cublasLtDestroy(ctx.lt);
#endif
  cudaStreamDestroy(ctx.stream);
  memset(&ctx, 0, sizeof ctx);
}
/* Grows the scratch (what the backend's qq_cuda_ws_reserve does) and fills it with garbage. */
static void ws_prepare(size_t bytes, bool garbage) {
  if (bytes > ctx.ws_bytes) {
    CU(cudaStreamSynchronize(ctx.stream));
    cudaFree(ctx.ws);
    CU(cudaMalloc(&ctx.ws, bytes));
    ctx.ws_bytes = bytes;
  }
  if (garbage && ctx.ws_bytes) CU(cudaMemsetAsync(ctx.ws, 0xFF, ctx.ws_bytes, ctx.stream));
}

/* ---- a quantized weight: host canonical form + device repack ---- */
struct qweight {
  const char *label;
  int n, k, bits, gs, G;
  bool sym, act_order, random_groups;
  std::vector<uint8_t> codes, zeros;
  std::vector<float> scales;
  std::vector<int32_t> g_idx;
  qq_linear_desc d;
  qq_cuda_wq *w = NULL;
  size_t dev_bytes = 0;
};

/* gs: group size (k or more: per-channel); random_groups: gs is the number of groups and every
 * column draws one at random (uneven, possibly empty groups). */
static void qweight_make(qweight &q, const char *label, int n, int k, int bits, int gs, bool sym, bool act_order,
                         bool random_groups = false) {
  q.label = label;
  q.n = n;
  q.k = k;
  q.bits = bits;
  q.gs = gs;
  q.sym = sym;
  q.act_order = act_order;
  q.random_groups = random_groups;
  q.codes.resize((size_t)n * k);
  const uint32_t mask = (1u << bits) - 1;
  for (size_t i = 0; i < q.codes.size(); i += 8) {
    const uint64_t r = next_u64();
    for (size_t j = 0; j < 8 && i + j < q.codes.size(); j++) q.codes[i + j] = (uint8_t)((r >> (8 * j)) & mask);
  }
  q.g_idx.clear();
  if (random_groups) {
    q.G = gs;
    q.g_idx.resize(k);
    for (auto &g : q.g_idx) g = irand(q.G);
  } else {
    q.G = (k + gs - 1) / gs;
    if (act_order) { /* GPTQ act-order: groups of gs consecutive columns in a random permutation */
      std::vector<int> perm(k);
      for (int i = 0; i < k; i++) perm[i] = i;
      for (int i = k - 1; i > 0; i--) std::swap(perm[i], perm[irand(i + 1)]);
      q.g_idx.resize(k);
      for (int r = 0; r < k; r++) q.g_idx[perm[r]] = r / gs;
    }
  }
  q.scales.resize((size_t)n * q.G);
  for (auto &s : q.scales) s = (float)(0.005 + 0.02 * urand()); /* fp32 values bf16 cannot hold */
  q.zeros.clear();
  if (!sym) {
    q.zeros.resize((size_t)n * q.G);
    for (auto &z : q.zeros) z = (uint8_t)irand(1 << bits);
  }
  memset(&q.d, 0, sizeof q.d);
  q.d.format = QQ_WFMT_QINT;
  q.d.n = n;
  q.d.k = k;
  q.d.w = q.codes.data();
  q.d.bits = bits;
  q.d.group_size = random_groups ? 1 : gs;
  q.d.n_groups = q.G;
  q.d.scales = q.scales.data();
  q.d.zeros = sym ? NULL : q.zeros.data();
  q.d.g_idx = q.g_idx.empty() ? NULL : q.g_idx.data();
  OK(qq_cuda_wq_create(&ctx, &q.d, &q.w, &q.dev_bytes, &err));
}
static void qweight_free(qweight &q) {
  qq_cuda_wq_free(q.w);
  q.w = NULL;
}
/* Row r of the reference dequantization (qq_ref_dequantize_qint's arithmetic). */
static void ref_row(const qweight &q, int r, float *out) {
  const int32_t zsym = 1 << (q.bits - 1);
  for (int c = 0; c < q.k; c++) {
    const int g = q.d.g_idx ? q.d.g_idx[c] : c / q.d.group_size;
    const size_t gi = (size_t)r * q.G + g;
    const int z = q.d.zeros ? q.d.zeros[gi] : zsym;
    out[c] = (float)((int)q.codes[(size_t)r * q.k + c] - z) * q.scales[gi];
  }
}

/* ---- one matmul check ---- */
struct check_result {
  double err, naive, bound;
  bool pass;
};

static check_result check_matmul(qweight &q, int m, bool misalign_x, bool with_bias, std::vector<uint16_t> *y_out = NULL) {
  const qq_act_dtype a = ctx.act;
  const int n = q.n, k = q.k;
  std::vector<uint16_t> xh((size_t)m * k);
  for (auto &v : xh) v = act_bits((float)(2 * urand() - 1), a);
  std::vector<float> bias(n);
  for (auto &b : bias) b = (float)(urand() - 0.5);
  /* device buffers; x optionally 2 bytes past an aligned address */
  uint16_t *xd_base, *yd;
  float *bd = NULL;
  CU(cudaMalloc((void **)&xd_base, ((size_t)m * k + 8) * 2));
  uint16_t *xd = xd_base + (misalign_x ? 1 : 0);
  /* y with 16 guard rows after row m − 1: tokens past m (padding columns of an n8 tile) must not be stored */
  CU(cudaMalloc((void **)&yd, (size_t)(m + 16) * n * 2));
  CU(cudaMemcpy(xd, xh.data(), (size_t)m * k * 2, cudaMemcpyHostToDevice));
  if (with_bias) {
    CU(cudaMalloc((void **)&bd, (size_t)n * 4));
    CU(cudaMemcpy(bd, bias.data(), (size_t)n * 4, cudaMemcpyHostToDevice));
  }
  CU(cudaMemset(yd, 0xFF, (size_t)(m + 16) * n * 2));
  ws_prepare(qq_cuda_wq_ws_bytes(q.w, m), true);
  OK(qq_cuda_wq_matmul(&ctx, q.w, xd, m, bd, yd, &err));
  CU(cudaStreamSynchronize(ctx.stream));
  CU(cudaGetLastError());
  std::vector<uint16_t> yh((size_t)m * n), guard((size_t)16 * n);
  CU(cudaMemcpy(yh.data(), yd, yh.size() * 2, cudaMemcpyDeviceToHost));
  CU(cudaMemcpy(guard.data(), yd + (size_t)m * n, guard.size() * 2, cudaMemcpyDeviceToHost));
  size_t guard_hit = 0;
  for (uint16_t v : guard) guard_hit += v != 0xFFFF;
  CHECK(guard_hit == 0, "%s m=%d: %zu outputs written past row m - 1", q.label, m, guard_hit);
  cudaFree(xd_base);
  cudaFree(yd);
  cudaFree(bd);

  /* rows checked: all up to 256, else 96 including the first and last */
  std::vector<int> rows;
  if (n <= 256) {
    for (int r = 0; r < n; r++) rows.push_back(r);
  } else {
    rows.push_back(0);
    rows.push_back(n - 1);
    while (rows.size() < 96) rows.push_back(irand(n));
  }
  std::vector<float> xf((size_t)m * k), wr(k), wrt(k);
  for (size_t i = 0; i < xf.size(); i++) xf[i] = act_float(xh[i], a);
  double num = 0, numn = 0, den = 0;
  for (int r : rows) {
    ref_row(q, r, wr.data());
    for (int c = 0; c < k; c++) wrt[c] = round_act(wr[c], a);
    const double b = with_bias ? bias[r] : 0.0;
    for (int t = 0; t < m; t++) {
      const float *xr = &xf[(size_t)t * k];
      double s = b;
      float sn = 0.f;
      for (int c = 0; c < k; c++) {
        s += (double)xr[c] * wr[c];
        sn += xr[c] * wrt[c];
      }
      const double yn = round_act(sn + (float)b, a);
      const double yg = act_float(yh[(size_t)t * n + r], a);
      num += (yg - s) * (yg - s);
      numn += (yn - s) * (yn - s);
      den += s * s;
    }
  }
  check_result res;
  res.err = sqrt(num / den);
  res.naive = sqrt(numn / den);
  res.bound = 2 * res.naive + 4 * sqrt((double)k) * ldexp(1.0, -24);
  res.pass = isfinite(res.err) && res.err <= res.bound;
  if (y_out) *y_out = yh;
  return res;
}

/* Runs a weight over a set of m and prints one table line with the worst ratio err / bound. */
static void sweep(qweight &q, const std::vector<int> &ms, bool misalign_x = false) {
  double worst = 0, worst_err = 0, worst_naive = 0;
  int worst_m = 0;
  bool all = true;
  for (int m : ms) {
    const check_result r = check_matmul(q, m, misalign_x, (m & 1) != 0);
    CHECK(r.pass, "%s n=%d k=%d bits=%d g=%d %s%s %s m=%d: err %.3g > bound %.3g (naive %.3g)", q.label, q.n, q.k,
          q.bits, q.gs, q.sym ? "sym" : "asym", q.act_order ? " act-order" : "", qq_act_dtype_name(ctx.act), m, r.err,
          r.bound, r.naive);
    all = all && r.pass;
    if (r.err / r.bound > worst) {
      worst = r.err / r.bound;
      worst_err = r.err;
      worst_naive = r.naive;
      worst_m = m;
    }
  }
  char g[16];
  if (q.random_groups) snprintf(g, sizeof g, "rnd%d", q.gs);
  else if (q.gs >= q.k) snprintf(g, sizeof g, "chan");
  else snprintf(g, sizeof g, "%d", q.gs);
  printf("%-22s %4s %6d %6d %4d %5s %4s %3s %3s | %5zu MB | worst m=%-4d err %.2e naive %.2e  err/bound %.2f %s\n",
         q.label, qq_act_dtype_name(ctx.act), q.n, q.k, q.bits, g, q.sym ? "sym" : "asym", q.act_order ? "yes" : "no",
         misalign_x ? "odd" : "", q.dev_bytes >> 20, worst_m, worst_err, worst_naive, worst, all ? "ok" : "FAIL");
}

static void check_to_f32(qweight &q) {
  std::vector<float> got((size_t)q.n * q.k, NAN), ref(q.k);
  OK(qq_cuda_wq_to_f32(q.w, got.data(), &err));
  size_t bad = 0;
  for (int r = 0; r < q.n; r++) {
    ref_row(q, r, ref.data());
    bad += memcmp(ref.data(), &got[(size_t)r * q.k], (size_t)q.k * 4) != 0;
  }
  CHECK(bad == 0, "%s: to_f32 differs from the reference dequantization in %zu rows", q.label, bad);
}

/* Same output twice (bitwise), and through a captured CUDA Graph replayed several times (the split-K
 * counters must rearm); the counters are all zero afterwards. */
static void check_determinism_and_graph(qweight &q, int m) {
  const int n = q.n, k = q.k;
  std::vector<uint16_t> xh((size_t)m * k);
  for (auto &v : xh) v = act_bits((float)(2 * urand() - 1), ctx.act);
  uint16_t *xd, *yd;
  CU(cudaMalloc((void **)&xd, xh.size() * 2));
  CU(cudaMalloc((void **)&yd, (size_t)m * n * 2));
  CU(cudaMemcpy(xd, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice));
  ws_prepare(qq_cuda_wq_ws_bytes(q.w, m), true);
  std::vector<uint16_t> y0((size_t)m * n), y1(y0.size());
  OK(qq_cuda_wq_matmul(&ctx, q.w, xd, m, NULL, yd, &err));
  CU(cudaStreamSynchronize(ctx.stream));
  CU(cudaMemcpy(y0.data(), yd, y0.size() * 2, cudaMemcpyDeviceToHost));
  OK(qq_cuda_wq_matmul(&ctx, q.w, xd, m, NULL, yd, &err));
  CU(cudaStreamSynchronize(ctx.stream));
  CU(cudaMemcpy(y1.data(), yd, y1.size() * 2, cudaMemcpyDeviceToHost));
  CHECK(y0 == y1, "%s m=%d: two runs differ (the split-K reduction must be deterministic)", q.label, m);

  cudaGraph_t g;
  cudaGraphExec_t ge;
  CU(cudaStreamBeginCapture(ctx.stream, cudaStreamCaptureModeGlobal));
  OK(qq_cuda_wq_matmul(&ctx, q.w, xd, m, NULL, yd, &err));
  CU(cudaStreamEndCapture(ctx.stream, &g));
  CU(cudaGraphInstantiate(&ge, g, 0));
  for (int rep = 0; rep < 3; rep++) {
    CU(cudaMemsetAsync(yd, 0, (size_t)m * n * 2, ctx.stream));
    CU(cudaGraphLaunch(ge, ctx.stream));
    CU(cudaStreamSynchronize(ctx.stream));
    CU(cudaMemcpy(y1.data(), yd, y1.size() * 2, cudaMemcpyDeviceToHost));
    CHECK(y0 == y1, "%s m=%d: graph replay %d differs from the eager run", q.label, m, rep);
  }
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  std::vector<int32_t> ctr(QQ_CUDA_COUNTERS);
  CU(cudaMemcpy(ctr.data(), ctx.counters, ctr.size() * 4, cudaMemcpyDeviceToHost));
  size_t nz = 0;
  for (int32_t v : ctr) nz += v != 0;
  CHECK(nz == 0, "%s m=%d: %zu counters left non-zero", q.label, m, nz);
  cudaFree(xd);
  cudaFree(yd);
}

static void check_rejections(void) {
  qweight q;
  qweight_make(q, "reject", 32, 64, 4, 32, false, false);
  /* bits out of range */
  qq_linear_desc d = q.d;
  d.bits = 9;
  qq_cuda_wq *w = NULL;
  CHECK(qq_cuda_wq_create(&ctx, &d, &w, NULL, &err) == QQ_ERR_INVALID_ARG && !w, "bits 9 accepted");
  d = q.d;
  d.n_groups = 1; /* 1 group of 32 does not cover k = 64 */
  CHECK(qq_cuda_wq_create(&ctx, &d, &w, NULL, &err) == QQ_ERR_INVALID_ARG && !w, "uncovered k accepted");
  /* fp32 activations are not this kernel's */
  const qq_act_dtype a = ctx.act;
  ctx.act = QQ_ACT_F32;
  CHECK(qq_cuda_wq_create(&ctx, &q.d, &w, NULL, &err) == QQ_ERR_UNSUPPORTED && !w, "fp32 activations accepted");
  ctx.act = a;
  /* bad calls */
  uint16_t *xd, *yd;
  CU(cudaMalloc((void **)&xd, 64 * 2 * 4));
  CU(cudaMalloc((void **)&yd, 32 * 2 * 4));
  CHECK(qq_cuda_wq_matmul(&ctx, q.w, xd, -1, NULL, yd, &err) == QQ_ERR_INVALID_ARG, "m = -1 accepted");
  CHECK(qq_cuda_wq_matmul(&ctx, q.w, NULL, 1, NULL, yd, &err) == QQ_ERR_INVALID_ARG, "NULL x accepted");
  CHECK(qq_cuda_wq_matmul(&ctx, q.w, xd, 0, NULL, yd, &err) == QQ_OK, "m = 0 is not a no-op");
  ctx.act = a == QQ_ACT_BF16 ? QQ_ACT_F16 : QQ_ACT_BF16;
  CHECK(qq_cuda_wq_matmul(&ctx, q.w, xd, 1, NULL, yd, &err) == QQ_ERR_INVALID_ARG, "dtype mismatch accepted");
  ctx.act = a;
  void *ws = ctx.ws;
  const size_t wsb = ctx.ws_bytes;
  ctx.ws = NULL;
  ctx.ws_bytes = 0;
  CHECK(qq_cuda_wq_matmul(&ctx, q.w, xd, 4, NULL, yd, &err) == QQ_ERR_INVALID_ARG, "missing scratch accepted");
  ctx.ws = ws;
  ctx.ws_bytes = wsb;
  CHECK(qq_cuda_wq_ws_bytes(q.w, 0) == 0 && qq_cuda_wq_ws_bytes(q.w, 1) > 0, "ws_bytes");
  qq_cuda_wq_free(NULL);
  cudaFree(xd);
  cudaFree(yd);
  qweight_free(q);
}

/* y = x·Wᵀ for a given host x (activation bits), bias NULL; synchronous. */
static std::vector<uint16_t> run_y(qq_cuda_wq *w, int n, int k, int m, const std::vector<uint16_t> &xh) {
  uint16_t *xd, *yd;
  CU(cudaMalloc((void **)&xd, (size_t)m * k * 2));
  CU(cudaMalloc((void **)&yd, (size_t)m * n * 2));
  CU(cudaMemcpy(xd, xh.data(), (size_t)m * k * 2, cudaMemcpyHostToDevice));
  CU(cudaMemset(yd, 0xFF, (size_t)m * n * 2));
  ws_prepare(qq_cuda_wq_ws_bytes(w, m), true);
  OK(qq_cuda_wq_matmul(&ctx, w, xd, m, NULL, yd, &err));
  CU(cudaStreamSynchronize(ctx.stream));
  CU(cudaGetLastError());
  std::vector<uint16_t> yh((size_t)m * n);
  CU(cudaMemcpy(yh.data(), yd, yh.size() * 2, cudaMemcpyDeviceToHost));
  cudaFree(xd);
  cudaFree(yd);
  return yh;
}

/* The m ≤ 64 kernels against the kernel they replace (QQ_WQ_M1=old: wq_gemm_kernel at MT 1, 2, 4, 8),
 * with the old kernel's split-K factor forced on the new ones (QQ_WQ_M1_SKB): wq_xs_kernel (QQ_WQ_XS=1,
 * NT 1..8) and, for m ≤ 16, wq_m1_kernel (the default) compute the same sums in the same
 * order, so the outputs must be equal bit for bit. Also checks that the intended kernel ran (plan). */
static void check_m1_vs_old(const char *label, int n, int k, int bits, int gs, bool sym, bool ao) {
  qweight o;
  setenv("QQ_WQ_M1", "old", 1);
  qweight_make(o, label, n, k, bits, gs, sym, ao);
  unsetenv("QQ_WQ_M1");
  qq_cuda_wq_set_tuning(o.w, 64, -1, -1); /* the old kernel up to 64 rows, not dequantize + cuBLASLt */
  for (int m : {1, 3, 8, 9, 12, 16, 17, 24, 32, 33, 50, 64}) {
    char plan_o[160], skb[16];
    qq_cuda_wq_describe(o.w, m, plan_o, sizeof plan_o);
    const char *p = strstr(plan_o, "skb=");
    snprintf(skb, sizeof skb, "%d", p ? atoi(p + 4) : 1);
    std::vector<uint16_t> xh((size_t)m * k);
    for (auto &v : xh) v = act_bits((float)(2 * urand() - 1), ctx.act);
    const std::vector<uint16_t> yo = run_y(o.w, n, k, m, xh);
    for (int variant = 0; variant < (m <= 16 ? 2 : 1); variant++) { /* 0: wq_xs_kernel, 1: wq_m1_kernel */
      /* a second weight from the same descriptor, made with the forced split-K factor */
      setenv("QQ_WQ_M1_SKB", skb, 1);
      setenv("QQ_WQ_XS", variant == 1 ? "off" : "1", 1);
      qweight q = o;
      q.w = NULL;
      q.d.w = q.codes.data();
      q.d.scales = q.scales.data();
      q.d.zeros = q.sym ? NULL : q.zeros.data();
      q.d.g_idx = q.g_idx.empty() ? NULL : q.g_idx.data();
      OK(qq_cuda_wq_create(&ctx, &q.d, &q.w, &q.dev_bytes, &err));
      unsetenv("QQ_WQ_M1_SKB");
      unsetenv("QQ_WQ_XS");
      char plan_n[160];
      qq_cuda_wq_describe(q.w, m, plan_n, sizeof plan_n);
      const std::vector<uint16_t> yn = run_y(q.w, n, k, m, xh);
      size_t diff = 0;
      for (size_t i = 0; i < yo.size(); i++) diff += yo[i] != yn[i];
      const char *want = variant ? "skinny-m1" : "skinny-xs";
      CHECK(strstr(plan_n, want) != NULL, "%s m=%d: %s did not run (%s)", label, m, want, plan_n);
      CHECK(diff == 0, "%s m=%d: %zu outputs differ from QQ_WQ_M1=old (%s vs %s)", label, m, diff, plan_n, plan_o);
      printf("%-22s %4s %6d %6d %4d %5d m=%d | %s vs old: %zu differing outputs | %s\n", label,
             ctx.act == QQ_ACT_BF16 ? "bf16" : "fp16", n, k, bits, gs, m, variant ? "m1" : "xs", diff, plan_n);
      qq_cuda_wq_free(q.w);
    }
  }
  qweight_free(o);
}

static int run_tests(void) {
  printf("%-22s %4s %6s %6s %4s %5s %4s %3s %3s | %8s |\n", "case", "act", "n", "k", "bits", "group", "zero", "ao",
         "x", "device");
  const std::vector<int> all_m = {1, 3, 8, 9, 12, 16, 17, 64, 118, 256};
  for (qq_act_dtype a : {QQ_ACT_BF16, QQ_ACT_F16}) {
    ctx_init(a);
    const bool bf = a == QQ_ACT_BF16;
    /* 1. the shapes, every m (w4, group 128, zero points); fp16 on the two smaller ones */
    struct { const char *name; int n, k; } shapes[] = {
        {"ragged 48x80", 48, 80}, {"512x3584", 512, 3584}, {"qkv 4608x3584", 4608, 3584}, {"down 3584x18944", 3584, 18944}};
    for (auto &s : shapes) {
      if (!bf && s.n > 512) continue;
      qweight q;
      qweight_make(q, s.name, s.n, s.k, 4, 128, false, false);
      sweep(q, all_m);
      if (s.n == 4608) check_determinism_and_graph(q, 1);
      if (s.n == 4608) check_determinism_and_graph(q, 16);
      qweight_free(q);
    }
    /* 2. formats: bits × group × zero points × act-order, on a ragged and a real shape */
    const int bits_list[] = {4, 8, 3};
    for (int bits : bits_list)
      for (int gs : {32, 64, 128, 0})
        for (int sym = 0; sym < 2; sym++)
          for (int ao = 0; ao < 2; ao++) {
            if (!bf && (bits == 3 || gs == 64 || sym)) continue; /* fp16: a subset */
            qweight q, r;
            qweight_make(q, "formats 48x80", 48, 80, bits, gs ? gs : 80, sym, ao);
            sweep(q, {1, 3, 12, 17, 64, 118});
            check_to_f32(q);
            qweight_free(q);
            qweight_make(r, "formats 512x3584", 512, 3584, bits, gs ? gs : 3584, sym, ao);
            sweep(r, {1, 16, 17, 118});
            qweight_free(r);
          }
    /* 3. awkward: k not a multiple of 4 or 16, groups not multiples of 16, uneven g_idx, odd x address */
    {
      qweight q;
      qweight_make(q, "k90 g30", 40, 90, 4, 30, false, false);
      sweep(q, {1, 3, 17, 118});
      check_to_f32(q);
      qweight_free(q);
      qweight_make(q, "k100 g24 int8", 40, 100, 8, 24, true, false);
      sweep(q, {1, 8, 70});
      check_to_f32(q);
      qweight_free(q);
      qweight_make(q, "k200 g8", 64, 200, 4, 8, false, false);
      sweep(q, {1, 16, 65});
      qweight_free(q);
      qweight_make(q, "act-order g40", 48, 200, 4, 40, false, true);
      sweep(q, {3, 33, 100});
      check_to_f32(q);
      qweight_free(q);
      qweight_make(q, "uneven g_idx", 100, 300, 4, 7, false, false, true);
      sweep(q, {1, 17, 64, 90});
      check_to_f32(q);
      qweight_free(q);
      qweight_make(q, "bits 2", 48, 256, 2, 64, false, false);
      sweep(q, {1, 13, 17});
      qweight_free(q);
      qweight_make(q, "bits 6", 48, 256, 6, 64, false, false);
      sweep(q, {1, 13, 17});
      qweight_free(q);
      qweight_make(q, "k300 g64", 40, 300, 4, 64, false, false);
      sweep(q, {1, 8, 9, 16});
      qweight_free(q);
      qweight_make(q, "odd x address", 512, 1024, 4, 128, false, false);
      sweep(q, {1, 12, 17, 118}, true);
      qweight_free(q);
    }
    /* 4. m > 64 through the skinny kernel in 64-token chunks (the tuning hook), both formats */
    for (int bits : {4, 8}) {
      qweight q;
      qweight_make(q, "skinny m>64", 4608, 3584, bits, bits == 4 ? 128 : 3584, bits == 8, bits == 4);
      qq_cuda_wq_set_tuning(q.w, 1 << 30, -1, -1);
      sweep(q, {65, 118, 256});
      check_determinism_and_graph(q, 118);
      qweight_free(q);
    }
    /* 5. the m ≤ 16 kernel bit for bit against the old one: group changes every chunk / every other
     * chunk / never, act-order, 8-bit, two n-tiles per warp (n ≥ 16384), one and two token tiles */
    check_m1_vs_old("m1 qkv g128", 4608, 3584, 4, 128, false, false);
    check_m1_vs_old("m1 g64 ao", 512, 3584, 4, 64, false, true);
    check_m1_vs_old("m1 int8 chan", 3584, 3584, 8, 3584, true, false);
    check_m1_vs_old("m1 int8 g32", 512, 1024, 8, 32, false, false);
    check_m1_vs_old("m1 r2 g128", 16384, 1024, 4, 128, false, false);
    check_m1_vs_old("m1 chan k18944", 512, 18944, 4, 18944, true, false);
    check_rejections();
    ctx_free();
  }
  printf("\n%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}

/* ---- benchmark ---- */
static int iters = 100;
static int skinny_max_m = -1, min_chunks = -1, block_overhead = -1; /* --skinny-max-m, --min-chunks, --overhead;
   skinny_max_m -1: the default weights keep their default path (gemm_wq.cu's rule), the -old / -xs ones take 64 */
/* --m1-ab: also m = 8 and 32, the same weights through QQ_WQ_M1=old (kinds w4a16-old, w8a16-old: wq_gemm_kernel
 * up to 64 rows), through QQ_WQ_XS=1 (w4a16-xs, w8a16-xs: wq_xs_kernel up to 64 rows), and W4 through
 * dequantize + cuBLASLt (w4a16-dense) */
static bool m1_ab = false;
static qq_bench_timer timer; /* gpu_timing.cuh: GPU time of each launch, L2-warm or flushed */
template <typename F> static double time_us(F fn, bool cold) { return qq_bench_time_us(&timer, fn, cold); }

static int run_bench(void) {
  ctx_init(QQ_ACT_BF16);
  cudaDeviceProp prop;
  CU(cudaGetDeviceProperties(&prop, ctx.device));
  printf("device: %s (sm_%d%d, %d SMs)\n", prop.name, ctx.cc_major, ctx.cc_minor, ctx.sm_count);
  CU(qq_bench_timer_init(&timer, ctx.stream, iters, 5));
  const size_t cb = (size_t)1 << 30;
  void *ca, *cbuf;
  CU(cudaMalloc(&ca, cb));
  CU(cudaMalloc(&cbuf, cb));
  const double copy_us = time_us([&] { CU(cudaMemcpyAsync(cbuf, ca, cb, cudaMemcpyDeviceToDevice, ctx.stream)); }, false);
  const double copy_GBps = 2.0 * cb / copy_us / 1e3;
  cudaFree(ca);
  cudaFree(cbuf);
  printf("copy bandwidth: %.0f GB/s\n", copy_GBps);
  printf("BENCH_CEILING copy_GBps=%.1f\n", copy_GBps);
  struct { const char *name; int n, k; } shapes[] = {
      {"qkv", 4608, 3584}, {"o", 3584, 3584}, {"gate_up", 37888, 3584}, {"down", 3584, 18944}};
  printf("\n%-8s %4s %-13s %-6s | %9s %9s | %8s %6s | %9s %9s | %6s %6s\n", "shape", "m", "kind", "path", "us warm",
         "us cold", "GB/s", "%copy", "bf16 warm", "bf16 cold", "x warm", "x cold");
  for (auto &s : shapes) {
    qweight q4, q8, q4o, q8o, q4m, q8m;
    /* the W4 (group 128, zero points) and W8 (per-channel, symmetric) weights of this shape, labels n4 / n8
     * (kept: string literals), made with the environment variable env (a creation-time knob) set to val */
    auto make_pair = [&](qweight &w4, qweight &w8, const char *n4, const char *n8, const char *env, const char *val) {
      if (env) setenv(env, val, 1);
      qweight_make(w4, n4, s.n, s.k, 4, 128, false, false);
      qweight_make(w8, n8, s.n, s.k, 8, s.k, true, false);
      if (env) unsetenv(env);
      const int smm = skinny_max_m >= 0 ? skinny_max_m : env ? 64 : -1;
      qq_cuda_wq_set_tuning(w4.w, smm, min_chunks, block_overhead);
      qq_cuda_wq_set_tuning(w8.w, smm, min_chunks, block_overhead);
    };
    make_pair(q4, q8, "w4a16", "w8a16", NULL, NULL);
    if (m1_ab) { /* the same weights for the old m ≤ 64 kernel and for wq_xs_kernel */
      make_pair(q4o, q8o, "w4a16-old", "w8a16-old", "QQ_WQ_M1", "old");
      make_pair(q4m, q8m, "w4a16-xs", "w8a16-xs", "QQ_WQ_XS", "1");
    }
    void *wd = NULL;
    if (have_dense) {
      std::vector<uint16_t> h((size_t)s.n * s.k);
      for (auto &v : h) v = act_bits((float)(0.05 * (2 * urand() - 1)), QQ_ACT_BF16);
      CU(cudaMalloc(&wd, h.size() * 2));
      CU(cudaMemcpy(wd, h.data(), h.size() * 2, cudaMemcpyHostToDevice));
    }
    for (int m : {1, 8, 16, 32, 64, 256}) {
      if ((m == 8 || m == 32) && !m1_ab) continue;
      void *x, *y;
      CU(cudaMalloc(&x, (size_t)m * s.k * 2));
      CU(cudaMalloc(&y, (size_t)m * s.n * 2));
      std::vector<uint16_t> xh((size_t)m * s.k);
      for (auto &v : xh) v = act_bits((float)(2 * urand() - 1), QQ_ACT_BF16);
      CU(cudaMemcpy(x, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice));
      double bf[2] = {0, 0};
      if (have_dense)
        for (int cold = 0; cold < 2; cold++)
          bf[cold] = time_us([&] { OK(qq_cuda_gemm_dense(&ctx, wd, NULL, m, s.n, s.k, x, y, &err)); }, cold);
      /* force: 1 the skinny path past 64 rows, 2 dequantize + cuBLASLt */
      struct run { qweight *q; const char *kind; int force; };
      std::vector<run> runs = {{&q4, "w4a16", 0}, {&q8, "w8a16", 0}, {&q4, "w4a16-skinny", 1}};
      if (m1_ab && m <= 64) {
        runs.push_back({&q4o, "w4a16-old", 0});
        runs.push_back({&q8o, "w8a16-old", 0});
        runs.push_back({&q4m, "w4a16-xs", 0});
        runs.push_back({&q8m, "w8a16-xs", 0});
        if (have_dense) runs.push_back({&q4, "w4a16-dense", 2});
      }
      for (auto &r : runs) {
        if (r.force == 1 && m <= 64) continue;
        if (r.force == 1 || !have_dense) qq_cuda_wq_set_tuning(r.q->w, 1 << 30, -1, -1);
        if (r.force == 2) qq_cuda_wq_set_tuning(r.q->w, 0, -1, -1);
        ws_prepare(qq_cuda_wq_ws_bytes(r.q->w, m), false);
        double t[2];
        for (int cold = 0; cold < 2; cold++)
          t[cold] = time_us([&] { OK(qq_cuda_wq_matmul(&ctx, r.q->w, x, m, NULL, y, &err)); }, cold);
        char plan[128];
        qq_cuda_wq_describe(r.q->w, m, plan, sizeof plan);
        for (char *c = plan; *c; c++)
          if (*c == ' ') *c = ',';
        /* back to the weight's setting: -2 restores the default rule */
        qq_cuda_wq_set_tuning(r.q->w, skinny_max_m >= 0 ? skinny_max_m : (r.q == &q4 || r.q == &q8) ? -2 : 64, -1, -1);
        const bool dense_path = !strncmp(plan, "dense", 5);
        const double gbps = r.q->dev_bytes / (t[1] * 1e3);
        printf("%-8s %4d %-13s %-6s | %9.2f %9.2f | %8.0f %5.0f%% | %9.2f %9.2f | %6.2f %6.2f\n", s.name, m, r.kind,
               dense_path ? "dense" : "skinny", t[0], t[1], gbps, 100 * gbps / copy_GBps, bf[0], bf[1],
               have_dense ? bf[0] / t[0] : 0.0, have_dense ? bf[1] / t[1] : 0.0);
        printf("BENCH shape=%s n=%d k=%d m=%d kind=%s path=%s us_warm=%.3f us_cold=%.3f wbytes=%zu GBps_cold=%.1f "
               "bw_frac_cold=%.3f bf16_us_warm=%.3f bf16_us_cold=%.3f x_bf16_warm=%.3f x_bf16_cold=%.3f plan=%s\n",
               s.name, s.n, s.k, m, r.kind, dense_path ? "dense" : "skinny", t[0], t[1], r.q->dev_bytes, gbps,
               gbps / copy_GBps, bf[0], bf[1], have_dense ? bf[0] / t[0] : 0.0, have_dense ? bf[1] / t[1] : 0.0, plan);
      }
      cudaFree(x);
      cudaFree(y);
    }
    cudaFree(wd);
    qweight_free(q4);
    qweight_free(q8);
    if (m1_ab) {
      qweight_free(q4o);
      qweight_free(q8o);
      qweight_free(q4m);
      qweight_free(q8m);
    }
  }
  qq_bench_timer_free(&timer);
  ctx_free();
  return 0;
}

int main(int argc, char **argv) {
  bool bench = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--bench")) bench = true;
    else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--skinny-max-m") && i + 1 < argc) skinny_max_m = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--min-chunks") && i + 1 < argc) min_chunks = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--overhead") && i + 1 < argc) block_overhead = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--m1-ab")) m1_ab = true;
    else {
      fprintf(stderr, "usage: %s [--bench [--iters N] [--skinny-max-m M] [--min-chunks C] [--overhead B] [--m1-ab]]\n",
              argv[0]);
      return 2;
    }
  }
  int n_dev = 0;
  if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
    printf("SKIP: no CUDA device\n");
    return 77;
  }
  return bench ? run_bench() : run_tests();
}
