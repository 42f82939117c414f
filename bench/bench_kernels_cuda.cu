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

int main(int argc, char **argv) {
  std::vector<int> rows = {1, 8, 16, 32, 64, 256};
  bool attention = true, ceil_on = true, graph_on = true;
  const char *only = NULL; /* comma list of shape names, NULL: all */
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--skip-attention")) attention = false;
    else if (!strcmp(argv[i], "--skip-ceilings")) ceil_on = false;
    else if (!strcmp(argv[i], "--skip-graph")) graph_on = false;
    else if (!strcmp(argv[i], "--shapes") && i + 1 < argc) only = argv[++i];
    else if (!strcmp(argv[i], "--rows") && i + 1 < argc) {
      rows.clear();
      for (char *t = strtok(argv[++i], ","); t; t = strtok(NULL, ",")) rows.push_back(atoi(t));
    } else {
      fprintf(stderr, "usage: %s [--iters N] [--rows 1,16,64,256] [--shapes qkv,o,gate_up,down] [--skip-attention] [--skip-ceilings] [--skip-graph]\n", argv[0]);
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
