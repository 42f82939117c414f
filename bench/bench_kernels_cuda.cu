/* bench_kernels_cuda.cu — the CUDA kernels on the Qwen2.5-7B linear shapes and attention, each next to
 * the ceiling measured in the same run (device-to-device copy bandwidth; cuBLASLt bf16 GEMM rate) and
 * to cuBLASLt bf16 on the same shape. Prints a table, and one JSON object per line (prefix "JSON ")
 * for bench/results. Weights are random (speed does not depend on values).
 *
 * Timing: the median of per-launch cudaEvent timings after warm-up, each launch queued behind a 50 us
 * GPU spin so that the events see GPU time only, not the host's enqueue (decode steps are replayed from
 * CUDA Graphs; bench/peer_gemm.py times the PyTorch peers the same way, with torch.cuda._sleep).
 * "warm": the weights of the smaller shapes stay in the 50 MB L2 between launches; "cold": the L2 is
 * flushed by reading 256 MB before each timed launch, which is what a decode step sees (each layer's
 * weights are read once per step). Bandwidth fractions use the cold figure. The host time of one call
 * (the enqueue) is printed beside it.
 *
 *   bench_kernels_cuda [--iters N] [--rows 1,16,64,256] [--shapes qkv,o,gate_up,down] [--skip-attention]
 *                      [--skip-ceilings] [--skip-graph]   (these and --shapes: for profiling one kernel under ncu)
 *                      [--lt-probe]   (int8 cuBLASLt configurations with fused scales / bf16 output: which exist, how fast)
 *
 * "graph": besides the per-launch timings, each linear is also timed as a decode step runs it: many
 * launches back to back in one CUDA Graph over distinct copies of the weights (rotated so that every
 * launch reads its weights from HBM), per-launch time = graph time / launches (qq_bench_graph_us). The
 * per-launch event timing carries a few microseconds of fixed cost that the graph does not; both are
 * printed, and bench/peer_gemm.py times the PyTorch peers both ways too.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "cuda_internal.h"
#include "../tests/gpu/gpu_timing.cuh"

static qq_error err;
#define OK(expr)                                                                                    \
  do {                                                                                              \
    qq_status s_ = (expr);                                                                          \
    if (s_ != QQ_OK) {                                                                              \
      fprintf(stderr, "bench: %s -> %s: %s\n", #expr, qq_status_name(s_), err.msg);                \
      exit(1);                                                                                      \
    }                                                                                               \
  } while (0)
#define CU(expr)                                                                                    \
  do {                                                                                              \
    cudaError_t e_ = (expr);                                                                        \
    if (e_ != cudaSuccess) {                                                                        \
      fprintf(stderr, "bench: %s -> %s\n", #expr, cudaGetErrorString(e_));                          \
      exit(1);                                                                                      \
    }                                                                                               \
  } while (0)

static int iters = 50;
static qq_bench_timer timer; /* tests/gpu/gpu_timing.cuh */
template <typename F> static double time_us(qq_cuda_ctx *, F fn, bool cold) { return qq_bench_time_us(&timer, fn, cold); }

static void fill_random(void *p, size_t bytes) {
  std::vector<uint16_t> h(bytes / 2 + 1);
  uint32_t s = 12345;
  for (auto &v : h) {
    s = s * 1664525u + 1013904223u;
    /* small bf16 values: sign + exponent around 2^-4 .. 2^0, random mantissa */
    v = (uint16_t)(((s >> 16) & 0x807f) | 0x3c00 | ((s >> 8) & 0x0300));
  }
  CU(cudaMemcpy(p, h.data(), bytes, cudaMemcpyHostToDevice));
}

/* --lt-probe: which int8 cuBLASLt configurations exist on this GPU beyond the int8 -> int32 one W8A8
 * uses, and how fast: int8 x int8 with fp32 scale and bf16 / fp32 output, with and without the
 * per-row x per-column OUTER_VEC_32F scales (the W8A8 epilogue fused into the GEMM). For each: the
 * heuristic's status, how many algorithms it offers, the first one's median time (L2-warm), and its
 * output against the int32 product scaled on the host. */
static void lt_probe(qq_cuda_ctx *c, int m, int n, int k) {
  int8_t *wq, *xq;
  int32_t *acc;
  float *sw, *sx;
  void *d;
  CU(cudaMalloc(&wq, (size_t)n * k));
  CU(cudaMalloc(&xq, (size_t)m * k));
  CU(cudaMalloc(&acc, (size_t)m * n * 4));
  CU(cudaMalloc(&d, (size_t)m * n * 4));
  CU(cudaMalloc(&sw, (size_t)n * 4));
  CU(cudaMalloc(&sx, (size_t)m * 4));
  std::vector<int8_t> hw((size_t)n * k), hx((size_t)m * k);
  uint32_t r = 7;
  for (auto &v : hw) v = (int8_t)((r = r * 1664525u + 1013904223u) >> 24);
  for (auto &v : hx) v = (int8_t)((r = r * 1664525u + 1013904223u) >> 24);
  std::vector<float> hsw(n), hsx(m);
  for (auto &v : hsw) v = 1e-3f * (1 + ((r = r * 1664525u + 1013904223u) >> 28));
  for (auto &v : hsx) v = 1e-2f * (1 + ((r = r * 1664525u + 1013904223u) >> 28));
  CU(cudaMemcpy(wq, hw.data(), hw.size(), cudaMemcpyHostToDevice));
  CU(cudaMemcpy(xq, hx.data(), hx.size(), cudaMemcpyHostToDevice));
  CU(cudaMemcpy(sw, hsw.data(), (size_t)n * 4, cudaMemcpyHostToDevice));
  CU(cudaMemcpy(sx, hsx.data(), (size_t)m * 4, cudaMemcpyHostToDevice));
  OK(qq_cuda_gemm_i8(c, wq, n, k, xq, m, acc, &err));
  CU(cudaStreamSynchronize(c->stream));
  std::vector<int32_t> hacc((size_t)m * n);
  CU(cudaMemcpy(hacc.data(), acc, hacc.size() * 4, cudaMemcpyDeviceToHost));
  const double i8_us = time_us(c, [&] { OK(qq_cuda_gemm_i8(c, wq, n, k, xq, m, acc, &err)); }, false);
  printf("lt-probe m=%d n=%d k=%d: int8->int32 (the W8A8 path, tuned) %.2f us\n", m, n, k, i8_us);
  struct cfg { const char *name; cudaDataType_t dt; bool outer; } cfgs[] = {
      {"int8->bf16 alpha", CUDA_R_16BF, false}, {"int8->bf16 outer-vec scales", CUDA_R_16BF, true},
      {"int8->fp32 alpha", CUDA_R_32F, false},  {"int8->fp32 outer-vec scales", CUDA_R_32F, true}};
  for (const cfg &g : cfgs) {
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
    cublasStatus_t st = cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32I, CUDA_R_32F);
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    if (g.outer && st == CUBLAS_STATUS_SUCCESS) {
      const int32_t mode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
      st = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode, sizeof mode);
      if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode, sizeof mode);
      const float *pa = sw, *pb = sx; /* A = W (rows of D: output features), B = x (columns: tokens) */
      if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &pa, sizeof pa);
      if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &pb, sizeof pb);
    }
    if (st != CUBLAS_STATUS_SUCCESS) {
      printf("lt-probe   %-30s: descriptor refused (status %d)\n", g.name, (int)st);
      if (op) cublasLtMatmulDescDestroy(op);
      continue;
    }
    cublasLtMatrixLayoutCreate(&la, CUDA_R_8I, k, n, k);
    cublasLtMatrixLayoutCreate(&lb, CUDA_R_8I, k, m, k);
    cublasLtMatrixLayoutCreate(&ld, g.dt, n, m, n);
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulPreferenceCreate(&pref);
    size_t wsb = QQ_CUDA_LT_WS_BYTES;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb);
    cublasLtMatmulHeuristicResult_t res[8];
    int found = 0;
    st = cublasLtMatmulAlgoGetHeuristic(c->lt, op, la, lb, ld, ld, pref, 8, res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
      printf("lt-probe   %-30s: no algorithm (status %d, found %d)\n", g.name, (int)st, found);
    } else {
      const float alpha = 1.0f, beta = 0.0f;
      auto run = [&] {
        cublasStatus_t s2 = cublasLtMatmul(c->lt, op, &alpha, wq, la, xq, lb, &beta, d, ld, d, ld, &res[0].algo, c->lt_ws,
                                           QQ_CUDA_LT_WS_BYTES, c->stream);
        if (s2 != CUBLAS_STATUS_SUCCESS) fprintf(stderr, "lt-probe: cublasLtMatmul status %d\n", (int)s2);
      };
      run();
      CU(cudaStreamSynchronize(c->stream));
      const double us = time_us(c, run, false);
      double num = 0, den = 0;
      std::vector<uint8_t> hd((size_t)m * n * (g.dt == CUDA_R_16BF ? 2 : 4));
      CU(cudaMemcpy(hd.data(), d, hd.size(), cudaMemcpyDeviceToHost));
      for (size_t i = 0; i < (size_t)m * n; i++) {
        const int tok = (int)(i / n), ch = (int)(i % n);
        const double want = (double)hacc[i] * (g.outer ? (double)hsx[tok] * hsw[ch] : 1.0);
        float got;
        if (g.dt == CUDA_R_16BF) {
          uint16_t b;
          memcpy(&b, hd.data() + 2 * i, 2);
          got = qq_bf16_to_f32(b);
        } else {
          memcpy(&got, hd.data() + 4 * i, 4);
        }
        num += (got - want) * (got - want);
        den += want * want;
      }
      printf("lt-probe   %-30s: %d algorithms, first %.2f us (x%.2f of int8->int32), rel err %.2e\n", g.name, found, us,
             i8_us / us, sqrt(num / (den > 0 ? den : 1)));
    }
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(ld);
    cublasLtMatmulDescDestroy(op);
  }
  cudaFree(wq);
  cudaFree(xq);
  cudaFree(acc);
  cudaFree(d);
  cudaFree(sw);
  cudaFree(sx);
}

int main(int argc, char **argv) {
  std::vector<int> rows = {1, 8, 16, 32, 64, 256};
  bool attention = true, ceil_on = true, graph_on = true, probe = false;
  const char *only = NULL; /* comma list of shape names, NULL: all */
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--skip-attention")) attention = false;
    else if (!strcmp(argv[i], "--skip-ceilings")) ceil_on = false;
    else if (!strcmp(argv[i], "--skip-graph")) graph_on = false;
    else if (!strcmp(argv[i], "--lt-probe")) probe = true;
    else if (!strcmp(argv[i], "--shapes") && i + 1 < argc) only = argv[++i];
    else if (!strcmp(argv[i], "--rows") && i + 1 < argc) {
      rows.clear();
      for (char *t = strtok(argv[++i], ","); t; t = strtok(NULL, ",")) rows.push_back(atoi(t));
    } else {
      fprintf(stderr, "usage: %s [--iters N] [--rows 1,16,64,256] [--shapes qkv,o,gate_up,down] [--skip-attention] [--skip-ceilings] [--skip-graph] [--lt-probe]\n", argv[0]);
      return 2;
    }
  }
  qq_backend_options o = qq_backend_options_default();
  o.kind = QQ_DEVICE_CUDA;
  o.act = QQ_ACT_BF16;
  qq_backend *be = NULL;
  if (qq_backend_create_opts(&o, &be, &err) != QQ_OK) {
    printf("SKIP: %s\n", err.msg);
    return 77;
  }
  qq_cuda_ctx *c = qq_cuda_ctx_of(be);
  printf("device: %s\n", qq_backend_description(be));
  CU(qq_bench_timer_init(&timer, c->stream, iters, 3));
  if (probe) {
    const int pm[] = {256, 1024};
    const int pnk[][2] = {{37888, 3584}, {4608, 3584}, {3584, 18944}};
    for (int mi : pm)
      for (const auto &sh : pnk) lt_probe(c, mi, sh[0], sh[1]);
    return 0;
  }

  /* ---- ceilings ---- */
  double copy_GBps = 4200, gemm_TF = 750; /* --skip-ceilings: typical H200 figures, for ncu runs */
  if (ceil_on) {
    const size_t cb = (size_t)1 << 30;
    void *ca, *cbuf;
    CU(cudaMalloc(&ca, cb));
    CU(cudaMalloc(&cbuf, cb));
    const double copy_us = time_us(c, [&] { cudaMemcpyAsync(cbuf, ca, cb, cudaMemcpyDeviceToDevice, c->stream); }, false);
    copy_GBps = 2.0 * cb / copy_us / 1e3;
    cudaFree(ca);
    cudaFree(cbuf);
    const int G = 8192;
    void *ga, *gb, *gc;
    CU(cudaMalloc(&ga, (size_t)G * G * 2));
    CU(cudaMalloc(&gb, (size_t)G * G * 2));
    CU(cudaMalloc(&gc, (size_t)G * G * 2));
    fill_random(ga, (size_t)G * G * 2);
    fill_random(gb, (size_t)G * G * 2);
    const double gemm_us = time_us(c, [&] { OK(qq_cuda_gemm_dense(c, ga, NULL, G, G, G, gb, gc, &err)); }, false);
    gemm_TF = 2.0 * G * G * (double)G / gemm_us / 1e6;
    cudaFree(ga);
    cudaFree(gb);
    cudaFree(gc);
  }
  printf("ceilings: copy %.0f GB/s, bf16 GEMM %.0f TFLOP/s (cuBLASLt 8192^3)\n", copy_GBps, gemm_TF);
  printf("JSON {\"kind\":\"ceilings\",\"copy_GBps\":%.1f,\"bf16_gemm_TFLOPs\":%.1f}\n", copy_GBps, gemm_TF);

  /* ---- linear shapes of Qwen2.5-7B (the peers' names: qkv fused, gate_up fused) ---- */
  struct shape { const char *name; int k, n; } shapes[] = {
      {"qkv", 3584, 4608}, {"o", 3584, 3584}, {"gate_up", 3584, 37888}, {"down", 18944, 3584}};
  printf("\nGPU time per launch, L2 cold (weights from HBM, as in decode); warm = L2-warm; host = enqueue time of one call\n");
  printf("%-8s %4s | %9s | %9s %6s %5s | %9s %6s | %9s %6s %9s | %8s %8s | %6s\n", "shape", "M", "bf16 us", "w4a16 us",
         "x bf16", "%bw", "w8a16 us", "x bf16", "w8a8 us", "x bf16", "i8gemm us", "bf16 wrm", "w4 wrm", "host");
  for (const shape &sh : shapes) {
    if (only) {
      const size_t ln = strlen(sh.name);
      bool hit = false;
      for (const char *q = only; q && *q; q = strchr(q, ',') ? strchr(q, ',') + 1 : NULL)
        if (!strncmp(q, sh.name, ln) && (q[ln] == ',' || q[ln] == 0)) hit = true;
      if (!hit) continue;
    }
    const int n = sh.n, k = sh.k;
    const size_t nk = (size_t)n * k;
    void *wd;
    CU(cudaMalloc(&wd, nk * 2));
    fill_random(wd, nk * 2);
    /* quantized weights from random codes (host descriptors, repacked by the backend as at load) */
    std::vector<uint8_t> codes(nk);
    uint32_t s = 777;
    for (auto &v : codes) {
      s = s * 1664525u + 1013904223u;
      v = (uint8_t)(s >> 24);
    }
    std::vector<uint8_t> c4(nk);
    for (size_t i = 0; i < nk; i++) c4[i] = codes[i] & 15;
    const int g = 128, ng = k / g;
    std::vector<float> sc((size_t)n * ng, 0.01f), sc8((size_t)n, 0.01f);
    std::vector<uint8_t> z4((size_t)n * ng, 8);
    qq_linear_desc d4 = {};
    d4.format = QQ_WFMT_QINT;
    d4.n = n;
    d4.k = k;
    d4.w = c4.data();
    d4.bits = 4;
    d4.group_size = g;
    d4.n_groups = ng;
    d4.scales = sc.data();
    d4.zeros = z4.data();
    qq_linear *l4, *l8, *la;
    OK(qq_linear_create(be, &d4, &l4, &err));
    qq_linear_desc d8 = d4;
    d8.w = codes.data();
    d8.bits = 8;
    d8.group_size = k;
    d8.n_groups = 1;
    d8.zeros = NULL;
    OK(qq_linear_create(be, &d8, &l8, &err));
    std::vector<int8_t> ci8(nk);
    for (size_t i = 0; i < nk; i++) ci8[i] = (int8_t)((int)(codes[i] % 255) - 127);
    qq_linear_desc da = {};
    da.format = QQ_WFMT_W8A8;
    da.n = n;
    da.k = k;
    da.w = ci8.data();
    da.scales = sc8.data();
    OK(qq_linear_create(be, &da, &la, &err));
    /* graph mode: distinct copies of each weight, rotated (qq_bench_graph_us in gpu_timing.cuh) */
    std::vector<void *> wds;
    std::vector<qq_linear *> l4s, l8s, las;
    if (graph_on) {
      wds.push_back(wd);
      for (int i = 1; i < qq_bench_copies(nk * 2); i++) {
        void *w2;
        CU(cudaMalloc(&w2, nk * 2));
        CU(cudaMemcpy(w2, wd, nk * 2, cudaMemcpyDeviceToDevice));
        wds.push_back(w2);
      }
      l4s.push_back(l4);
      l8s.push_back(l8);
      las.push_back(la);
      for (int i = 1; i < qq_bench_copies(nk / 2); i++) {
        qq_linear *l;
        OK(qq_linear_create(be, &d4, &l, &err));
        l4s.push_back(l);
      }
      for (int i = 1; i < qq_bench_copies(nk); i++) {
        qq_linear *l;
        OK(qq_linear_create(be, &d8, &l, &err));
        l8s.push_back(l);
        OK(qq_linear_create(be, &da, &l, &err));
        las.push_back(l);
      }
    }
    for (int m : rows) {
      void *x, *y;
      OK(qq_backend_alloc(be, (size_t)m * k, &x, &err));
      OK(qq_backend_alloc(be, (size_t)m * n, &y, &err));
      fill_random(x, (size_t)m * k * 2);
      double t[5][2], host_w4 = 0;
      for (int cold = 0; cold < 2; cold++) {
        t[0][cold] = time_us(c, [&] { OK(qq_cuda_gemm_dense(c, wd, NULL, m, n, k, x, y, &err)); }, cold);
        t[1][cold] = time_us(c, [&] { OK(qq_op_matmul(be, l4, x, m, y, &err)); }, cold);
        host_w4 = timer.host_us;
        t[2][cold] = time_us(c, [&] { OK(qq_op_matmul(be, l8, x, m, y, &err)); }, cold);
        t[3][cold] = time_us(c, [&] { OK(qq_op_matmul(be, la, x, m, y, &err)); }, cold);
        /* the int8 GEMM alone, on pre-quantized activations (what the fused RMSNorm hands over) */
        OK(qq_cuda_ws_reserve(c, qq_cuda_w8a8_ws_bytes(m, n, k), &err));
        int8_t *xq = (int8_t *)c->ws + (((size_t)m * n * 4 + 255) & ~(size_t)255);
        t[4][cold] = time_us(c, [&] { OK(qq_cuda_gemm_i8(c, (const int8_t *)((const char *)wd), n, k, xq, m,
                                                         (int32_t *)c->ws, &err)); }, cold);
      }
      double tg[4] = {NAN, NAN, NAN, NAN};
      if (graph_on) {
        OK(qq_cuda_ws_reserve(c, qq_cuda_w8a8_ws_bytes(m, n, k), &err));
        tg[0] = qq_bench_graph_us(&timer, [&](int i) { OK(qq_cuda_gemm_dense(c, wds[i], NULL, m, n, k, x, y, &err)); },
                                  (int)wds.size());
        tg[1] = qq_bench_graph_us(&timer, [&](int i) { OK(qq_op_matmul(be, l4s[i], x, m, y, &err)); }, (int)l4s.size());
        tg[2] = qq_bench_graph_us(&timer, [&](int i) { OK(qq_op_matmul(be, l8s[i], x, m, y, &err)); }, (int)l8s.size());
        tg[3] = qq_bench_graph_us(&timer, [&](int i) { OK(qq_op_matmul(be, las[i], x, m, y, &err)); }, (int)las.size());
        printf("%-8s %4d   graph (back to back, %zu/%zu/%zu/%zu copies): bf16 %.1f us, w4a16 %.1f us (x%.2f, %.0f%% of copy BW), "
               "w8a16 %.1f us (x%.2f), w8a8 %.1f us (x%.2f)\n",
               sh.name, m, wds.size(), l4s.size(), l8s.size(), las.size(), tg[0], tg[1], tg[0] / tg[1],
               100 * (nk / 2.0 + (double)n * ng * 5) / (tg[1] * 1e3) / copy_GBps, tg[2], tg[0] / tg[2], tg[3], tg[0] / tg[3]);
        printf("JSON {\"kind\":\"gemm_graph\",\"shape\":\"%s\",\"k\":%d,\"n\":%d,\"m\":%d,\"bf16_us\":%.3f,"
               "\"w4a16_us\":%.3f,\"w8a16_us\":%.3f,\"w8a8_us\":%.3f,\"copies\":[%zu,%zu,%zu,%zu]}\n",
               sh.name, k, n, m, tg[0], tg[1], tg[2], tg[3], wds.size(), l4s.size(), l8s.size(), las.size());
      }
      const double w4_bytes = nk / 2.0 + (double)n * ng * 5; /* codes + fp32 scale + zero per group */
      const double bw_frac = w4_bytes / (t[1][1] * 1e3) / copy_GBps;
      printf("%-8s %4d | %9.1f | %9.1f %6.2f %5.0f | %9.1f %6.2f | %9.1f %6.2f %9.1f | %8.1f %8.1f | %6.1f\n", sh.name, m,
             t[0][1], t[1][1], t[0][1] / t[1][1], 100 * bw_frac, t[2][1], t[0][1] / t[2][1], t[3][1], t[0][1] / t[3][1],
             t[4][1], t[0][0], t[1][0], host_w4);
      printf("JSON {\"kind\":\"gemm\",\"shape\":\"%s\",\"k\":%d,\"n\":%d,\"m\":%d,\"bf16_us\":%.2f,\"w4a16_us\":%.2f,"
             "\"w8a16_us\":%.2f,\"w8a8_us\":%.2f,\"i8gemm_us\":%.2f,\"bf16_cold_us\":%.2f,\"w4a16_cold_us\":%.2f,"
             "\"w8a16_cold_us\":%.2f,\"w8a8_cold_us\":%.2f,\"i8gemm_cold_us\":%.2f,\"w4a16_weight_bw_frac_cold\":%.3f,"
             "\"w4a16_host_us\":%.2f}\n",
             sh.name, k, n, m, t[0][0], t[1][0], t[2][0], t[3][0], t[4][0], t[0][1], t[1][1], t[2][1], t[3][1], t[4][1], bw_frac, host_w4);
      qq_backend_release(be, x);
      qq_backend_release(be, y);
    }
    if (graph_on) {
      for (size_t i = 1; i < wds.size(); i++) cudaFree(wds[i]);
      for (size_t i = 1; i < l4s.size(); i++) qq_linear_free(l4s[i]);
      for (size_t i = 1; i < l8s.size(); i++) qq_linear_free(l8s[i]);
      for (size_t i = 1; i < las.size(); i++) qq_linear_free(las[i]);
    }
    qq_linear_free(l4);
    qq_linear_free(l8);
    qq_linear_free(la);
    cudaFree(wd);
  }

  /* ---- attention: prefill at 2k tokens, decode over long contexts (Qwen2.5-7B heads) ---- */
  if (attention) {
    const int nh = 28, nkv = 4, hd = 128, bt = 16;
    qq_attn_params p = {nh, nkv, hd, bt, 1.0f / sqrtf((float)hd)};
    printf("\nattention (28 q / 4 kv heads, head_dim 128, bf16)\n");
    struct acase { const char *name; int batch, n_new, n_past; } cases[] = {
        {"prefill", 1, 2048, 0}, {"prefill", 4, 2048, 0}, {"decode", 1, 1, 1024}, {"decode", 1, 1, 8192},
        {"decode", 1, 1, 32768}, {"decode", 32, 1, 1024}, {"decode", 64, 1, 8192}};
    for (const acase &a : cases) {
      const int len = a.n_new + a.n_past, per = (len + bt - 1) / bt, total = a.batch * a.n_new;
      const size_t nblocks = (size_t)per * a.batch;
      void *kc, *vc, *q, *kk, *vv, *out;
      const size_t cache_elems = nblocks * bt * nkv * hd;
      OK(qq_backend_alloc(be, cache_elems, &kc, &err));
      OK(qq_backend_alloc(be, cache_elems, &vc, &err));
      OK(qq_backend_alloc(be, (size_t)total * nh * hd, &q, &err));
      OK(qq_backend_alloc(be, (size_t)total * nkv * hd, &kk, &err));
      OK(qq_backend_alloc(be, (size_t)total * nkv * hd, &vv, &err));
      OK(qq_backend_alloc(be, (size_t)total * nh * hd, &out, &err));
      fill_random(kc, cache_elems * 2);
      fill_random(vc, cache_elems * 2);
      fill_random(q, (size_t)total * nh * hd * 2);
      fill_random(kk, (size_t)total * nkv * hd * 2);
      fill_random(vv, (size_t)total * nkv * hd * 2);
      std::vector<int32_t> blocks(nblocks);
      for (size_t i = 0; i < nblocks; i++) blocks[i] = (int32_t)i;
      std::vector<qq_attn_seq> seqs(a.batch);
      for (int s2 = 0; s2 < a.batch; s2++)
        seqs[s2] = qq_attn_seq{s2 * a.n_new, a.n_new, a.n_past, blocks.data() + (size_t)s2 * per};
      const double us = time_us(c, [&] { OK(qq_op_attention(be, &p, seqs.data(), a.batch, q, kk, vv, kc, vc, out, &err)); },
                                false);
      if (a.n_new > 1) {
        const double flops = 4.0 * hd * nh * (double)a.n_new * a.n_new / 2 * a.batch; /* causal */
        printf("  %-8s batch %2d len %5d: %9.1f us  %6.1f TFLOP/s (%.0f%% of the bf16 GEMM rate)\n", a.name, a.batch, len,
               us, flops / us / 1e6, 100 * flops / us / 1e6 / gemm_TF);
        printf("JSON {\"kind\":\"attention\",\"case\":\"prefill\",\"batch\":%d,\"len\":%d,\"us\":%.2f,\"TFLOPs\":%.1f}\n",
               a.batch, len, us, flops / us / 1e6);
      } else {
        const double bytes = 2.0 * (double)a.batch * len * nkv * hd * 2;
        printf("  %-8s batch %2d len %5d: %9.1f us  %6.0f GB/s of KV (%.0f%% of copy)\n", a.name, a.batch, len, us,
               bytes / us / 1e3, 100 * bytes / us / 1e3 / copy_GBps);
        printf("JSON {\"kind\":\"attention\",\"case\":\"decode\",\"batch\":%d,\"len\":%d,\"us\":%.2f,\"GBps\":%.1f}\n",
               a.batch, len, us, bytes / us / 1e3);
      }
      for (void *pp : {kc, vc, q, kk, vv, out}) qq_backend_release(be, pp);
    }
  }
  qq_bench_timer_free(&timer);
  qq_backend_free(be);
  return 0;
}
