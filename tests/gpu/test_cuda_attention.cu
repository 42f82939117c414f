/* test_cuda_attention.cu — kernels/cuda/attention.cu against an fp64 host reference.
 *
 *   test_cuda_attention            correctness table; exit 0 when every case passes, 1 otherwise,
 *                                  77 (ctest: skipped) when no CUDA device is visible
 *   test_cuda_attention --bench    prefill / decode timings, one parseable line each
 *
 * Each case builds a packed batch (sequences in shuffled row order, block tables of shuffled block
 * ids, random past cache contents), runs qq_cuda_attention on a minimal qq_cuda_ctx of its own, then
 *   - checks the whole cache bit for bit: new rows in their slots, every other slot untouched;
 *   - compares the output with an fp64 reference computed from the appended cache. The bound is
 *     FlashAttention's rule: error ≤ 2 × the error of a naive implementation in the same precision
 *     (inputs in the dtype, fp32 scores and softmax, normalized P rounded to the dtype, fp32 P·V,
 *     output rounded to the dtype) + a floor of (u + 2^-21) · max|v|: u · max|v| is one rounding of
 *     an output to the dtype (|o| ≤ max|v|: o is a convex combination of v rows), which the naive
 *     error's maximum need not show at the same element, and 2^-21 · max|v| covers ex2.approx
 *     (relative error < 2^-22 on each weight, twice: numerator and denominator).
 *   Sequences with many new tokens are checked on a sample of tokens (first, last, and random ones;
 *   every head), so the fp64 reference stays a few seconds.
 * Also: qq_cuda_kv_copy bit for bit, and rejection of bad parameters.
 *
 * Build (in the tree: tests/gpu/CMakeLists.txt, linked with qq_kernels). Standalone:
 *   nvcc -std=c++17 -O2 -gencode arch=compute_90a,code=sm_90a -Ikernels -Ikernels/cuda -Icommon \
 *        tests/gpu/test_cuda_attention.cu kernels/cuda/attention.cu common/status.c -lcrypto \
 *        -o test_cuda_attention
 * (qq_cuda_fail is defined weak below for that case; backend.cu's definition wins when linked.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "cuda_internal.h"
#include "gpu_check.h"

extern "C" __attribute__((weak)) qq_status qq_cuda_fail(qq_error *err, cudaError_t e, const char *stmt,
                                                        const char *file, int line) {
  return qq_error_set(err, QQ_ERR_CUDA, "cuda: %s failed: %s (%s:%d)", stmt, cudaGetErrorString(e), file, line);
}

/* ---- dtype helpers ---- */
static const char *act_name(qq_act_dtype a) { return a == QQ_ACT_F32 ? "fp32" : a == QQ_ACT_BF16 ? "bf16" : "fp16"; }
static float round_to(qq_act_dtype a, float x) {
  if (a == QQ_ACT_BF16) return qq_bf16_to_f32(qq_f32_to_bf16(x));
  if (a == QQ_ACT_F16) return qq_f16_to_f32(qq_f32_to_f16(x));
  return x;
}
static double unit_roundoff(qq_act_dtype a) {
  return a == QQ_ACT_F32 ? ldexp(1.0, -24) : a == QQ_ACT_BF16 ? ldexp(1.0, -8) : ldexp(1.0, -11);
}
/* host floats (already representable in the dtype) → device bytes */
static std::vector<uint8_t> encode(qq_act_dtype a, const std::vector<float> &x) {
  std::vector<uint8_t> b(x.size() * qq_cuda_act_size(a));
  if (a == QQ_ACT_F32) {
    memcpy(b.data(), x.data(), b.size());
  } else {
    uint16_t *h = (uint16_t *)b.data();
    for (size_t i = 0; i < x.size(); ++i) h[i] = a == QQ_ACT_BF16 ? qq_f32_to_bf16(x[i]) : qq_f32_to_f16(x[i]);
  }
  return b;
}
static std::vector<float> decode(qq_act_dtype a, const std::vector<uint8_t> &b) {
  std::vector<float> x(b.size() / qq_cuda_act_size(a));
  if (a == QQ_ACT_F32) {
    memcpy(x.data(), b.data(), b.size());
  } else {
    const uint16_t *h = (const uint16_t *)b.data();
    for (size_t i = 0; i < x.size(); ++i) x[i] = a == QQ_ACT_BF16 ? qq_bf16_to_f32(h[i]) : qq_f16_to_f32(h[i]);
  }
  return x;
}
static void *upload(const std::vector<uint8_t> &b) {
  void *d = NULL;
  CU(cudaMalloc(&d, b.size() ? b.size() : 16));
  if (!b.empty()) CU(cudaMemcpy(d, b.data(), b.size(), cudaMemcpyHostToDevice));
  return d;
}
static std::vector<uint8_t> download(const void *d, size_t n) {
  std::vector<uint8_t> b(n);
  if (n) CU(cudaMemcpy(b.data(), d, n, cudaMemcpyDeviceToHost));
  return b;
}

/* ---- the context a backend would own: stream, device properties, workspace ---- */
static qq_cuda_ctx g_ctx;
static void ctx_init() {
  memset(&g_ctx, 0, sizeof g_ctx);
  CU(cudaGetDevice(&g_ctx.device));
  CU(cudaDeviceGetAttribute(&g_ctx.sm_count, cudaDevAttrMultiProcessorCount, g_ctx.device));
  CU(cudaDeviceGetAttribute(&g_ctx.cc_major, cudaDevAttrComputeCapabilityMajor, g_ctx.device));
  CU(cudaDeviceGetAttribute(&g_ctx.cc_minor, cudaDevAttrComputeCapabilityMinor, g_ctx.device));
  int optin = 0;
  CU(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, g_ctx.device));
  g_ctx.smem_optin = (size_t)optin;
  CU(cudaStreamCreateWithFlags(&g_ctx.stream, cudaStreamNonBlocking));
}
static void ctx_ws(size_t bytes) {
  if (bytes <= g_ctx.ws_bytes) return;
  CU(cudaFree(g_ctx.ws));
  CU(cudaMalloc(&g_ctx.ws, bytes));
  g_ctx.ws_bytes = bytes;
}

/* ---- a batch ---- */
struct SeqSpec {
  int n_new, n_past;
};
struct Batch {
  qq_act_dtype act;
  qq_attn_params p;
  std::vector<qq_cuda_attn_seq> seqs;
  std::vector<int32_t> blocks;
  int total_rows = 0, max_new = 0, max_len = 0, n_blocks = 0;
  qq_cuda_attn_batch b;
  void *seqs_dev = NULL, *blocks_dev = NULL;
  void dev_free() {
    cudaFree(seqs_dev);
    cudaFree(blocks_dev);
    seqs_dev = blocks_dev = NULL;
  }
};

/* Rows in shuffled sequence order, block ids shuffled over the whole cache (plus a few spare blocks
 * nobody owns, which must stay untouched). */
static Batch make_batch(std::mt19937_64 &rng, qq_act_dtype act, int nh, int nkv, int hd, int bt,
                        const std::vector<SeqSpec> &spec) {
  Batch B;
  B.act = act;
  B.p.n_heads = nh;
  B.p.n_kv_heads = nkv;
  B.p.head_dim = hd;
  B.p.block_tokens = bt;
  B.p.scale = 1.0f / sqrtf((float)hd);
  std::vector<int> order(spec.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = (int)i;
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<int> row(spec.size());
  for (int i : order) {
    row[i] = B.total_rows;
    B.total_rows += spec[i].n_new;
  }
  for (auto &s : spec) B.n_blocks += (s.n_new + s.n_past + bt - 1) / bt;
  B.n_blocks += 3;
  std::vector<int32_t> ids(B.n_blocks);
  for (int i = 0; i < B.n_blocks; ++i) ids[i] = i;
  std::shuffle(ids.begin(), ids.end(), rng);
  int used = 0;
  for (size_t i = 0; i < spec.size(); ++i) {
    qq_cuda_attn_seq s;
    s.row = row[i];
    s.n_new = spec[i].n_new;
    s.n_past = spec[i].n_past;
    s.block_off = (int32_t)B.blocks.size();
    for (int k = 0; k < (s.n_new + s.n_past + bt - 1) / bt; ++k) B.blocks.push_back(ids[used++]);
    B.seqs.push_back(s);
    B.max_new = std::max(B.max_new, s.n_new);
    B.max_len = std::max(B.max_len, s.n_new + s.n_past);
  }
  B.seqs_dev = upload(std::vector<uint8_t>((uint8_t *)B.seqs.data(), (uint8_t *)(B.seqs.data() + B.seqs.size())));
  B.blocks_dev =
      upload(std::vector<uint8_t>((uint8_t *)B.blocks.data(), (uint8_t *)(B.blocks.data() + B.blocks.size())));
  memset(&B.b, 0, sizeof B.b);
  B.b.seqs_dev = (const qq_cuda_attn_seq *)B.seqs_dev;
  B.b.blocks_dev = (const int32_t *)B.blocks_dev;
  B.b.seqs_host = B.seqs.data();
  B.b.n_seqs = (int32_t)B.seqs.size();
  B.b.total_rows = B.total_rows;
  B.b.max_new = B.max_new;
  B.b.max_len = B.max_len;
  return B;
}

static void fill(std::mt19937_64 &rng, qq_act_dtype a, std::vector<float> &x, size_t n, float amp) {
  x.resize(n);
  std::uniform_real_distribution<float> U(-amp, amp);
  for (auto &e : x) e = round_to(a, U(rng));
}

static size_t slot(const Batch &B, const qq_cuda_attn_seq &s, int pos, int kvh) {
  const int blk = B.blocks[s.block_off + pos / B.p.block_tokens];
  return (((size_t)blk * B.p.block_tokens + pos % B.p.block_tokens) * B.p.n_kv_heads + kvh) * B.p.head_dim;
}

/* ---- one correctness case ---- */
struct CaseSpec {
  const char *name;
  qq_act_dtype act;
  int nh, nkv, hd, bt;
  std::vector<SeqSpec> seqs;
};

static void run_case(std::mt19937_64 &rng, const CaseSpec &cs) {
  Batch B = make_batch(rng, cs.act, cs.nh, cs.nkv, cs.hd, cs.bt, cs.seqs);
  const qq_act_dtype a = cs.act;
  const int nh = cs.nh, nkv = cs.nkv, hd = cs.hd, G = nh / nkv;
  const size_t es = qq_cuda_act_size(a);
  /* q amplitude 6: scores scale·q·k have a standard deviation near 2 (peaked softmax rows) */
  std::vector<float> q, k, v, kc, vc;
  fill(rng, a, q, (size_t)B.total_rows * nh * hd, 6.f);
  fill(rng, a, k, (size_t)B.total_rows * nkv * hd, 1.f);
  fill(rng, a, v, (size_t)B.total_rows * nkv * hd, 1.f);
  const size_t cache_elems = (size_t)B.n_blocks * cs.bt * nkv * hd;
  fill(rng, a, kc, cache_elems, 1.f);
  fill(rng, a, vc, cache_elems, 1.f);

  g_ctx.act = a;
  void *dq = upload(encode(a, q)), *dk = upload(encode(a, k)), *dv = upload(encode(a, v));
  void *dkc = upload(encode(a, kc)), *dvc = upload(encode(a, vc));
  void *dout = NULL;
  const size_t out_bytes = (size_t)B.total_rows * nh * hd * es;
  CU(cudaMalloc(&dout, out_bytes ? out_bytes : 16));
  const size_t ws = qq_cuda_attention_ws_bytes(&g_ctx, &B.p, &B.b);
  ctx_ws(ws);

  const qq_status st = qq_cuda_attention(&g_ctx, &B.p, &B.b, dq, dk, dv, dkc, dvc, dout, &err);
  CHECK(st == QQ_OK, "%s: qq_cuda_attention -> %s: %s", cs.name, qq_status_name(st), err.msg);
  CU(cudaStreamSynchronize(g_ctx.stream));
  CU(cudaGetLastError());

  /* the cache, bit for bit */
  for (auto &s : B.seqs)
    for (int i = 0; i < s.n_new; ++i)
      for (int h = 0; h < nkv; ++h) {
        const size_t d = slot(B, s, s.n_past + i, h), src = ((size_t)(s.row + i) * nkv + h) * hd;
        memcpy(&kc[d], &k[src], hd * sizeof(float));
        memcpy(&vc[d], &v[src], hd * sizeof(float));
      }
  const std::vector<uint8_t> kc_dev = download(dkc, cache_elems * es), vc_dev = download(dvc, cache_elems * es);
  const bool cache_ok = kc_dev == encode(a, kc) && vc_dev == encode(a, vc);
  CHECK(cache_ok, "%s: cache contents after the append differ", cs.name);

  /* output vs fp64 reference on sampled tokens (all heads) */
  const std::vector<float> out = decode(a, download(dout, out_bytes));
  double err_k = 0, err_n = 0, vmax = 0;
  for (float x : vc) vmax = std::max(vmax, (double)fabsf(x));
  size_t checked = 0;
  std::vector<double> sc;
  std::vector<float> sf, accf(hd);
  std::vector<double> accd(hd);
  for (auto &s : B.seqs) {
    std::vector<int> toks;
    if (s.n_new <= 48) {
      for (int i = 0; i < s.n_new; ++i) toks.push_back(i);
    } else {
      for (int i = 0; i < 8; ++i) toks.push_back(i), toks.push_back(s.n_new - 1 - i);
      std::uniform_int_distribution<int> U(0, s.n_new - 1);
      for (int i = 0; i < 32; ++i) toks.push_back(U(rng));
    }
    for (int i : toks)
      for (int h = 0; h < nh; ++h) {
        const int kvh = h / G, L = s.n_past + i + 1;
        const float *qr = &q[((size_t)(s.row + i) * nh + h) * hd];
        sc.resize(L);
        sf.resize(L);
        double mx = -INFINITY;
        float mf = -INFINITY;
        for (int j = 0; j < L; ++j) {
          const float *kr = &kc[slot(B, s, j, kvh)];
          double d = 0;
          float f = 0;
          for (int x = 0; x < hd; ++x) {
            d += (double)qr[x] * kr[x];
            f += qr[x] * kr[x];
          }
          sc[j] = d * B.p.scale;
          sf[j] = f * B.p.scale;
          mx = std::max(mx, sc[j]);
          mf = std::max(mf, sf[j]);
        }
        double sum = 0;
        float sumf = 0;
        for (int j = 0; j < L; ++j) {
          sc[j] = exp(sc[j] - mx);
          sum += sc[j];
          sf[j] = expf(sf[j] - mf);
          sumf += sf[j];
        }
        std::fill(accd.begin(), accd.end(), 0.0);
        std::fill(accf.begin(), accf.end(), 0.f);
        for (int j = 0; j < L; ++j) {
          const float *vr = &vc[slot(B, s, j, kvh)];
          const double pd = sc[j] / sum;
          const float pf = round_to(a, sf[j] / sumf);
          for (int x = 0; x < hd; ++x) {
            accd[x] += pd * vr[x];
            accf[x] += pf * vr[x];
          }
        }
        const float *o = &out[((size_t)(s.row + i) * nh + h) * hd];
        for (int x = 0; x < hd; ++x) {
          const double ek = fabs((double)o[x] - accd[x]);
          err_k = std::isnan(o[x]) ? INFINITY : std::max(err_k, ek);
          err_n = std::max(err_n, fabs((double)round_to(a, accf[x]) - accd[x]));
        }
        ++checked;
      }
  }
  const double bound = 2 * err_n + (unit_roundoff(a) + ldexp(1.0, -21)) * vmax;
  const bool ok = st == QQ_OK && cache_ok && err_k <= bound;
  CHECK(err_k <= bound, "%s: error %.3g above bound %.3g (naive %.3g)", cs.name, err_k, bound, err_n);

  std::string shape;
  for (size_t i = 0; i < cs.seqs.size() && i < 4; ++i)
    shape += std::to_string(cs.seqs[i].n_new) + "+" + std::to_string(cs.seqs[i].n_past) + " ";
  if (cs.seqs.size() > 4) shape += "... (" + std::to_string(cs.seqs.size()) + " seqs)";
  printf("%-26s %-4s hd%-4d %2d/%-2d G%-2d bt%-3d %-40s ws %8zu  rows %6zu  err %9.3g  naive %9.3g  bound %9.3g  %s\n",
         cs.name, act_name(a), hd, nh, nkv, G, cs.bt, shape.c_str(), ws, checked, err_k, err_n, bound,
         ok ? "ok" : "FAIL");

  cudaFree(dq);
  cudaFree(dk);
  cudaFree(dv);
  cudaFree(dkc);
  cudaFree(dvc);
  cudaFree(dout);
  B.dev_free();
}

/* qq_cuda_kv_copy: positions 0..n-1 of one block table into another, bit for bit */
static void run_kv_copy(std::mt19937_64 &rng, qq_act_dtype a, int nkv, int hd, int bt, int n_tokens) {
  const int nb = (n_tokens + bt - 1) / bt, n_blocks = 2 * nb + 2;
  std::vector<int32_t> ids(n_blocks);
  for (int i = 0; i < n_blocks; ++i) ids[i] = i;
  std::shuffle(ids.begin(), ids.end(), rng);
  std::vector<int32_t> src(ids.begin(), ids.begin() + nb), dst(ids.begin() + nb, ids.begin() + 2 * nb);
  std::vector<float> kc, vc;
  const size_t n = (size_t)n_blocks * bt * nkv * hd;
  fill(rng, a, kc, n, 1.f);
  fill(rng, a, vc, n, 1.f);
  g_ctx.act = a;
  void *dkc = upload(encode(a, kc)), *dvc = upload(encode(a, vc));
  void *ds = upload(std::vector<uint8_t>((uint8_t *)src.data(), (uint8_t *)(src.data() + nb)));
  void *dd = upload(std::vector<uint8_t>((uint8_t *)dst.data(), (uint8_t *)(dst.data() + nb)));
  qq_attn_params p = {nkv, nkv, hd, bt, 1.f};
  const qq_status st = qq_cuda_kv_copy(&g_ctx, &p, dkc, dvc, (const int32_t *)ds, (const int32_t *)dd, n_tokens, &err);
  CHECK(st == QQ_OK, "kv_copy -> %s: %s", qq_status_name(st), err.msg);
  CU(cudaStreamSynchronize(g_ctx.stream));
  const size_t run = (size_t)nkv * hd;
  for (int pos = 0; pos < n_tokens; ++pos) {
    const size_t s = ((size_t)src[pos / bt] * bt + pos % bt) * run, d = ((size_t)dst[pos / bt] * bt + pos % bt) * run;
    memcpy(&kc[d], &kc[s], run * sizeof(float));
    memcpy(&vc[d], &vc[s], run * sizeof(float));
  }
  const size_t es = qq_cuda_act_size(a);
  const bool ok = download(dkc, n * es) == encode(a, kc) && download(dvc, n * es) == encode(a, vc);
  CHECK(ok, "kv_copy %s nkv %d hd %d bt %d n %d: cache differs", act_name(a), nkv, hd, bt, n_tokens);
  printf("%-26s %-4s hd%-4d kv %-2d bt%-3d tokens %-6d %s\n", "kv_copy", act_name(a), hd, nkv, bt, n_tokens,
         ok ? "ok" : "FAIL");
  cudaFree(dkc);
  cudaFree(dvc);
  cudaFree(ds);
  cudaFree(dd);
}

/* bad input is rejected with a status, before anything is launched */
static void run_rejections(std::mt19937_64 &rng) {
  Batch B = make_batch(rng, QQ_ACT_BF16, 28, 4, 128, 16, {{5, 3}, {1, 40}});
  g_ctx.act = QQ_ACT_BF16;
  void *buf = NULL;
  CU(cudaMalloc(&buf, 1 << 20));
  qq_attn_params p = B.p;
  p.n_kv_heads = 5;
  CHECK(qq_cuda_attention(&g_ctx, &p, &B.b, buf, buf, buf, buf, buf, buf, &err) == QQ_ERR_INVALID_ARG,
         "28 heads over 5 kv heads accepted");
  p = B.p;
  p.head_dim = 1024;
  CHECK(qq_cuda_attention(&g_ctx, &p, &B.b, buf, buf, buf, buf, buf, buf, &err) == QQ_ERR_UNSUPPORTED,
         "head_dim 1024 accepted");
  p = B.p;
  p.block_tokens = 0;
  CHECK(qq_cuda_attention(&g_ctx, &p, &B.b, buf, buf, buf, buf, buf, buf, &err) == QQ_ERR_INVALID_ARG,
         "block_tokens 0 accepted");
  qq_cuda_attn_batch bad = B.b;
  bad.total_rows = 5; /* the sequences need 6 */
  CHECK(qq_cuda_attention(&g_ctx, &B.p, &bad, buf, buf, buf, buf, buf, buf, &err) == QQ_ERR_INVALID_ARG,
         "inconsistent batch totals accepted");
  /* a workspace too small for the split-K partials is an error, not an overflow */
  Batch D = make_batch(rng, QQ_ACT_BF16, 28, 4, 128, 16, {{1, 20000}});
  const size_t need = qq_cuda_attention_ws_bytes(&g_ctx, &D.p, &D.b);
  CHECK(need > 0, "a single long decode sequence uses split-K partials");
  void *ws = g_ctx.ws;
  const size_t wsb = g_ctx.ws_bytes;
  g_ctx.ws = NULL;
  g_ctx.ws_bytes = 0;
  CHECK(qq_cuda_attention(&g_ctx, &D.p, &D.b, buf, buf, buf, buf, buf, buf, &err) == QQ_ERR_INVALID_ARG,
         "missing workspace accepted");
  g_ctx.ws = ws;
  g_ctx.ws_bytes = wsb;
  printf("%-26s %s\n", "rejections", "done");
  CU(cudaStreamSynchronize(g_ctx.stream));
  cudaFree(buf);
  B.dev_free();
  D.dev_free();
}

/* ---- benchmarks ---- */
__global__ void fill_random(uint16_t *x, size_t n, uint32_t seed, bool bf16) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    const float f = ((h & 0xffff) / 32768.f - 1.f);
    x[i] = bf16 ? __bfloat16_as_ushort(__float2bfloat16(f)) : __half_as_ushort(__float2half(f));
  }
}

static double bench_once(std::mt19937_64 &rng, qq_act_dtype a, int nh, int nkv, int hd, int bt,
                         const std::vector<SeqSpec> &spec, int iters) {
  Batch B = make_batch(rng, a, nh, nkv, hd, bt, spec);
  g_ctx.act = a;
  const size_t es = qq_cuda_act_size(a);
  const size_t nq = (size_t)B.total_rows * nh * hd, nk = (size_t)B.total_rows * nkv * hd;
  const size_t ncache = (size_t)B.n_blocks * bt * nkv * hd;
  void *dq, *dk, *dv, *dkc, *dvc, *dout;
  CU(cudaMalloc(&dq, nq * es));
  CU(cudaMalloc(&dout, nq * es));
  CU(cudaMalloc(&dk, nk * es));
  CU(cudaMalloc(&dv, nk * es));
  CU(cudaMalloc(&dkc, ncache * es));
  CU(cudaMalloc(&dvc, ncache * es));
  const bool bf = a == QQ_ACT_BF16;
  fill_random<<<1024, 256>>>((uint16_t *)dq, nq, 1, bf);
  fill_random<<<1024, 256>>>((uint16_t *)dk, nk, 2, bf);
  fill_random<<<1024, 256>>>((uint16_t *)dv, nk, 3, bf);
  fill_random<<<1024, 256>>>((uint16_t *)dkc, ncache, 4, bf);
  fill_random<<<1024, 256>>>((uint16_t *)dvc, ncache, 5, bf);
  CU(cudaDeviceSynchronize());
  ctx_ws(qq_cuda_attention_ws_bytes(&g_ctx, &B.p, &B.b));
  cudaEvent_t e0, e1;
  CU(cudaEventCreate(&e0));
  CU(cudaEventCreate(&e1));
  std::vector<float> ms;
  for (int it = 0; it < iters + 3; ++it) {
    CU(cudaEventRecord(e0, g_ctx.stream));
    const qq_status st = qq_cuda_attention(&g_ctx, &B.p, &B.b, dq, dk, dv, dkc, dvc, dout, &err);
    if (st != QQ_OK) {
      printf("FATAL bench: %s\n", err.msg);
      exit(1);
    }
    CU(cudaEventRecord(e1, g_ctx.stream));
    CU(cudaEventSynchronize(e1));
    float t = 0;
    CU(cudaEventElapsedTime(&t, e0, e1));
    if (it >= 3) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaFree(dq);
  cudaFree(dk);
  cudaFree(dv);
  cudaFree(dkc);
  cudaFree(dvc);
  cudaFree(dout);
  B.dev_free();
  return ms[ms.size() / 2] * 1e3; /* median, microseconds */
}

static int bench(std::mt19937_64 &rng) {
  cudaDeviceProp prop;
  CU(cudaGetDeviceProperties(&prop, g_ctx.device));
  printf("# device %s, %d SMs; qq_cuda_attention = append kernel + attention (+ split-K combine)\n", prop.name,
         g_ctx.sm_count);
  const int nh = 28, nkv = 4, hd = 128, bt = 16; /* Qwen2.5-7B */
  for (qq_act_dtype a : {QQ_ACT_BF16, QQ_ACT_F16}) {
    for (int batch : {1, 4}) {
      const int L = 2048;
      std::vector<SeqSpec> spec(batch, SeqSpec{L, 0});
      const double us = bench_once(rng, a, nh, nkv, hd, bt, spec, 20);
      const double flops = 4.0 * hd * nh * (double)L * L / 2 * batch;
      printf("bench prefill dtype=%s batch=%d len=%d heads=%d/%d hd=%d us=%.1f tflops=%.1f\n", act_name(a),
             batch, L, nh, nkv, hd, us, flops / us * 1e-6);
    }
  }
  for (int batch : {1, 32, 64})
    for (int ctx : {1024, 8192, 32768}) {
      std::vector<SeqSpec> spec(batch, SeqSpec{1, ctx - 1});
      const double us = bench_once(rng, QQ_ACT_BF16, nh, nkv, hd, bt, spec, 20);
      const double bytes = (double)batch * ctx * nkv * hd * 2 /* K and V */ * 2 /* bf16 */;
      printf("bench decode dtype=bf16 batch=%d ctx=%d heads=%d/%d hd=%d us=%.1f kv_gbps=%.0f\n", batch, ctx, nh, nkv,
             hd, us, bytes / us * 1e-3);
    }
  return 0;
}

int main(int argc, char **argv) {
  int n_dev = 0;
  if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
    printf("SKIP: no CUDA device visible\n");
    return 77;
  }
  ctx_init();
  std::mt19937_64 rng(20250601);
  if (argc > 1 && !strcmp(argv[1], "--bench")) return bench(rng);

  cudaDeviceProp prop;
  CU(cudaGetDeviceProperties(&prop, g_ctx.device));
  printf("device: %s (sm_%d%d, %d SMs)\n", prop.name, g_ctx.cc_major, g_ctx.cc_minor, g_ctx.sm_count);
  const std::vector<CaseSpec> cases = {
      /* Qwen2.5-7B heads: a mixed continuous batch (a 2k prompt, a chunk over a past, decodes up to
       * 32k) on the tensor-core prefill path */
      {"mixed-g7", QQ_ACT_BF16, 28, 4, 128, 16,
       {{2048, 0}, {300, 700}, {1, 31999}, {1, 5000}, {1, 0}, {7, 15}, {513, 33}}},
      {"mixed-g7", QQ_ACT_F16, 28, 4, 128, 16, {{1000, 0}, {129, 4000}, {1, 12345}, {3, 3}}},
      {"mixed-g7", QQ_ACT_F32, 28, 4, 128, 16, {{257, 100}, {1, 9000}, {1, 1}, {40, 0}}},
      /* decode path (n_new·G ≤ 16): long contexts, split-K */
      {"decode-g7", QQ_ACT_BF16, 28, 4, 128, 16, {{1, 32000}, {1, 17}, {1, 4000}, {2, 9999}, {1, 0}, {1, 20000}}},
      {"decode-g7-batch", QQ_ACT_BF16, 28, 4, 128, 16,
       {{1, 100}, {1, 200}, {1, 300}, {1, 400}, {1, 500}, {1, 600}, {1, 700}, {1, 800}, {1, 900}, {1, 1000},
        {1, 1100}, {1, 1200}, {1, 1300}, {1, 1400}, {1, 1500}, {1, 1600}, {1, 1700}, {1, 1800}, {1, 1900},
        {1, 2000}, {1, 2100}, {1, 2200}, {1, 2300}, {1, 2400}, {1, 2500}, {1, 2600}, {1, 2700}, {1, 2800},
        {1, 2900}, {1, 3000}, {1, 3100}, {1, 3200}, {1, 3300}, {1, 3400}}},
      {"decode-g2-multi", QQ_ACT_F16, 8, 4, 64, 16, {{1, 20000}, {8, 100}, {3, 0}, {5, 777}}},
      {"decode-g1", QQ_ACT_BF16, 8, 8, 128, 16, {{1, 3000}, {16, 20}, {1, 1}}},
      {"decode-g7", QQ_ACT_F32, 28, 4, 128, 16, {{1, 32000}, {1, 17}}},
      /* prefill path: groups 1 and 2, head_dim 64 and 128, block sizes that do not divide tiles */
      {"prefill-g1", QQ_ACT_BF16, 16, 16, 64, 16, {{1000, 0}, {64, 64}, {1, 3000}}},
      {"prefill-g2", QQ_ACT_F16, 8, 4, 128, 16, {{777, 1234}, {2048, 0}}},
      {"prefill-g7-bt7", QQ_ACT_BF16, 28, 4, 128, 7, {{333, 50}, {1, 1000}, {70, 0}}},
      {"prefill-g2-bt5", QQ_ACT_BF16, 4, 2, 64, 5, {{200, 0}, {9, 250}}},
      /* fixtures' shapes in fp32 (the mode that matches the CPU backend) */
      {"stories260k", QQ_ACT_F32, 8, 4, 8, 16, {{200, 0}, {1, 300}, {17, 5}}},
      {"qwen3-tiny", QQ_ACT_F32, 4, 2, 64, 16, {{300, 0}, {1, 2000}, {12, 30}}},
      {"qwen2-tiny", QQ_ACT_F32, 6, 2, 64, 16, {{128, 0}, {1, 500}}},
      /* generic head_dim in the 16-bit dtypes */
      {"generic-hd8", QQ_ACT_BF16, 8, 4, 8, 16, {{100, 0}, {1, 64}}},
      {"generic-hd80", QQ_ACT_F16, 14, 2, 80, 16, {{90, 10}, {1, 700}}},
      {"generic-hd256", QQ_ACT_BF16, 4, 2, 256, 16, {{40, 40}, {1, 5000}}},
  };
  for (const CaseSpec &c : cases) run_case(rng, c);
  run_kv_copy(rng, QQ_ACT_BF16, 4, 128, 16, 1000);
  run_kv_copy(rng, QQ_ACT_F32, 2, 8, 5, 37);
  run_kv_copy(rng, QQ_ACT_F16, 1, 8, 3, 10); /* 16-byte runs */
  run_rejections(rng);
  printf("%s: %d checks, %d failed\n", failures ? "FAIL" : "PASS", checks, failures);
  printf("%d passed, %d failed\n", checks - failures, failures);
  return failures ? 1 : 0;
}
