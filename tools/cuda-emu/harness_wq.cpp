/* harness_wq.cpp — gemm_wq.cu (transformed by transform_wq.py) run on the fiber emulator: the
 * skinny path end to end (qq_cuda_wq_create: layout, upload, repack kernel; qq_cuda_wq_matmul: x
 * staging, wq_xs_kernel, wq_m1_kernel or wq_gemm_kernel, split-K) on host memory, against an fp64
 * reference, and the m ≤ 64 kernels against the kernel they replace (QQ_WQ_M1=old: wq_gemm_kernel<·, ·,
 * MT, R>, MT 1, 2, 4, 8 for m ≤ 8, 16, 32, 64, at the same split-K) bit for bit: wq_xs_kernel
 * (QQ_WQ_XS=1) at every m, wq_m1_kernel (the default) at m ≤ 16. Device allocations are poisoned (0xFF),
 * global reads outside an allocation abort, cp.async lands at a random moment before its wait,
 * shared memory starts as NaN bytes, y has guard rows after row m − 1 that must stay untouched.
 *   bash tools/cuda-emu/build_wq.sh && /tmp/cuda-emu/harness_wq [seed] [case] */
#include "cuda_types.cuh"
#include "emu.h"
#include "emu_kernel.h"

#include <math.h>

#include <string>

/* ---- emulated device primitives and runtime ---- */
enum { EMU_DYN = 65536 };
#define __cvta_generic_to_shared(p) smem_u32(p)
#define __threadfence() ((void)0)
#define atomicAdd emu_atomicAdd
#define atomicExch emu_atomicExch
static int emu_atomicAdd(int32_t *p, int v) {
  const int o = *p;
  *p += v;
  return o;
}
static int emu_atomicExch(int32_t *p, int v) {
  const int o = *p;
  *p = v;
  return o;
}
template <class T> inline T __ldcg(const T *p) { return __ldg(p); }
template <class T> inline T __ldcs(const T *p) { return __ldg(p); }
template <typename T> inline void wq_mma(float (&d)[4], const uint32_t (&a)[4], uint2 b) { Mma16<T>::mma(d, a, b.x, b.y); }
inline void wq_cp_async16(uint32_t smem, const void *gmem) { cp_async16(smem, gmem, true); }
inline void wq_cp_async16z(uint32_t smem, const void *gmem, bool valid) { cp_async16(smem, gmem, valid); }
inline void wq_cp_commit() { cp_async_commit(); }
template <int N> inline void wq_cp_wait() { cp_async_wait<N>(); }
inline uint2 wq_ldx(const uint2 *p, bool ok) { return ok ? __ldg(p) : make_uint2(0, 0); }

static int g_occ = 4; /* what the "occupancy API" answers for every kernel: old and new get the same skb */
struct Alloc {
  void *p;
  size_t n;
};
static std::vector<Alloc> g_allocs;
static cudaError_t emu_cudaMalloc(void **p, size_t n) {
  const size_t m = (n + 255) & ~(size_t)255;
  *p = aligned_alloc(256, m ? m : 256);
  memset(*p, 0xff, m ? m : 256);
  emu::reg(*p, n); /* exactly n bytes readable: reads past the requested size abort */
  g_allocs.push_back({*p, n});
  return cudaSuccess;
}
static cudaError_t emu_cudaFree(void *p) {
  for (size_t i = 0; i < emu::ranges.size(); i++)
    if (emu::ranges[i].lo == p) emu::ranges.erase(emu::ranges.begin() + i--);
  free(p);
  return cudaSuccess;
}
static cudaError_t emu_cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t = 0) {
  memcpy(d, s, n);
  return cudaSuccess;
}
static cudaError_t emu_cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind k) { return emu_cudaMemcpyAsync(d, s, n, k); }
static cudaError_t emu_cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
static cudaError_t emu_cudaOccupancy(int *b, const void *, int, size_t) {
  *b = g_occ;
  return cudaSuccess;
}
static cudaError_t emu_cudaLaunchKernel(const void *f, dim3 g, dim3 b, void **args, size_t shm, cudaStream_t);
#define cudaMalloc emu_cudaMalloc
#define cudaFree emu_cudaFree
#define cudaMemcpyAsync emu_cudaMemcpyAsync
#define cudaMemcpy emu_cudaMemcpy
#define cudaStreamSynchronize emu_cudaStreamSynchronize
#define cudaOccupancyMaxActiveBlocksPerMultiprocessor emu_cudaOccupancy
#define cudaLaunchKernel emu_cudaLaunchKernel
#define cudaFuncSetAttribute emu_cudaFuncSetAttribute
#define cudaPeekAtLastError() cudaSuccess

#include "wq_t.cc"

#undef cudaLaunchKernel
extern "C" qq_status qq_cuda_fail(qq_error *err, cudaError_t e, const char *stmt, const char *file, int line) {
  return qq_error_set(err, QQ_ERR_CUDA, "cuda: %s failed (%s:%d)", stmt, file, line);
}
extern "C" const char *qq_act_dtype_name(qq_act_dtype a) { return a == QQ_ACT_BF16 ? "bf16" : a == QQ_ACT_F16 ? "fp16" : "f32"; }
extern "C" qq_status qq_cuda_gemm_dense(qq_cuda_ctx *, const void *, const float *, int32_t, int32_t, int32_t,
                                        const void *, void *, qq_error *err) {
  return qq_error_set(err, QQ_ERR_UNSUPPORTED, "emu: no dense path");
}

static const char *g_last_kernel = "";
template <typename T, int SB, int MT, int R> static bool try_gemm(const void *f, dim3 g, dim3 b, void **args) {
  if (f != (const void *)wq_gemm_kernel<T, SB, MT, R>) return false;
  const wq_gemm_args a = *(const wq_gemm_args *)args[0];
  emu_launch([&] { wq_gemm_kernel<T, SB, MT, R>(a); }, g, b, EMU_DYN);
  g_last_kernel = "gemm";
  return true;
}
template <typename T, int SB, int NT, int R, int GCH> static bool try_m1g(const void *f, dim3 g, dim3 b, void **args) {
  if (f != (const void *)wq_m1_kernel<T, SB, NT, R, GCH>) return false;
  const wq_m1_args a = *(const wq_m1_args *)args[0];
  emu_launch([&] { wq_m1_kernel<T, SB, NT, R, GCH>(a); }, g, b, EMU_DYN);
  static const char *names[2][3] = {{"m1g0", "m1g1", "m1g2"}, {"m1x2g0", "m1x2g1", "m1x2g2"}};
  g_last_kernel = names[NT - 1][GCH];
  return true;
}
/* wq_xs_kernel: exactly its dynamic shared memory (+16 bytes for s_last): an access past it aborts */
template <typename T, int SB, int NT, int R, int GCH> static bool try_xsg(const void *f, dim3 g, dim3 b, void **args, size_t shm) {
  if (f != (const void *)wq_xs_kernel<T, SB, NT, R, GCH>) return false;
  const wq_m1_args a = *(const wq_m1_args *)args[0];
  emu_launch([&] { wq_xs_kernel<T, SB, NT, R, GCH>(a); }, g, b, shm + 16);
  static const char *names[4][3] = {{"xs1g0", "xs1g1", "xs1g2"}, {"xs2g0", "xs2g1", "xs2g2"}, {"xs4g0", "xs4g1", "xs4g2"},
                                    {"xs8g0", "xs8g1", "xs8g2"}};
  g_last_kernel = names[NT == 8 ? 3 : NT == 4 ? 2 : NT - 1][GCH];
  return true;
}
template <typename T, int SB, int NT, int R> static bool try_xs(const void *f, dim3 g, dim3 b, void **a, size_t shm) {
  return try_xsg<T, SB, NT, R, 0>(f, g, b, a, shm) || try_xsg<T, SB, NT, R, 1>(f, g, b, a, shm) ||
         try_xsg<T, SB, NT, R, 2>(f, g, b, a, shm);
}
template <typename T, int SB, int R> static bool try_m1(const void *f, dim3 g, dim3 b, void **args) {
  return try_m1g<T, SB, 1, R, 0>(f, g, b, args) || try_m1g<T, SB, 1, R, 1>(f, g, b, args) ||
         try_m1g<T, SB, 1, R, 2>(f, g, b, args) || try_m1g<T, SB, 2, R, 0>(f, g, b, args) ||
         try_m1g<T, SB, 2, R, 1>(f, g, b, args) || try_m1g<T, SB, 2, R, 2>(f, g, b, args);
}
template <typename T, int SB> static bool try_all(const void *f, dim3 g, dim3 b, void **a, size_t shm) {
  return try_xs<T, SB, 1, 1>(f, g, b, a, shm) || try_xs<T, SB, 1, 2>(f, g, b, a, shm) ||
         try_xs<T, SB, 2, 1>(f, g, b, a, shm) || try_xs<T, SB, 2, 2>(f, g, b, a, shm) ||
         try_xs<T, SB, 4, 2>(f, g, b, a, shm) || try_xs<T, SB, 8, 2>(f, g, b, a, shm) || try_gemm<T, SB, 1, 1>(f, g, b, a) || try_gemm<T, SB, 2, 1>(f, g, b, a) || try_gemm<T, SB, 4, 1>(f, g, b, a) ||
         try_gemm<T, SB, 8, 1>(f, g, b, a) || try_gemm<T, SB, 1, 2>(f, g, b, a) || try_gemm<T, SB, 2, 2>(f, g, b, a) ||
         try_m1<T, SB, 1>(f, g, b, a) || try_m1<T, SB, 2>(f, g, b, a);
}
static cudaError_t emu_cudaLaunchKernel(const void *f, dim3 g, dim3 b, void **args, size_t shm, cudaStream_t) {
  if (try_all<__nv_bfloat16, 4>(f, g, b, args, shm) || try_all<__nv_bfloat16, 8>(f, g, b, args, shm) ||
      try_all<__half, 4>(f, g, b, args, shm) || try_all<__half, 8>(f, g, b, args, shm))
    return cudaSuccess;
  emu::die("cudaLaunchKernel of an unknown kernel");
}

/* ---- cases ---- */
struct Case {
  qq_act_dtype act;
  int n, k, bits, gs; /* gs ≥ k: per-channel */
  bool sym, act_order, bias;
  int m, sm_count, occ;
  int skb; /* > 0: forced split-K for m ≤ 16 (both kernels), else the wave model's */
};

static uint16_t enc(qq_act_dtype a, float x) { return a == QQ_ACT_BF16 ? qq_f32_to_bf16(x) : qq_f32_to_f16(x); }
static float dec(qq_act_dtype a, uint16_t h) { return a == QQ_ACT_BF16 ? qq_bf16_to_f32(h) : qq_f16_to_f32(h); }

struct Result {
  double err_new, err_old; /* max |y − ref| / Σ|x·w| */
  long diff;               /* outputs that differ bitwise from QQ_WQ_M1=old: the default path's, and at m ≤ 16 QQ_WQ_XS=off's */
  std::string plan, plan_old;
  const char *kern, *kern_old, *kern_m1;
  bool nan;
  long guard; /* y elements written past row m − 1 (16 guard rows after y) */
};

static Result run_case(const Case &cs, std::mt19937_64 &R) {
  Result res;
  res.err_new = res.err_old = 0;
  res.diff = 0;
  res.nan = false;
  res.guard = 0;
  res.kern = res.kern_old = res.kern_m1 = "";
  const int n = cs.n, k = cs.k, m = cs.m;
  const int gs = cs.gs >= k ? k : cs.gs, G = (k + gs - 1) / gs;
  std::uniform_int_distribution<int> code(0, (1 << cs.bits) - 1);
  std::uniform_real_distribution<float> U(0.5f, 1.5f);
  std::normal_distribution<float> N(0.f, 1.f);
  std::vector<uint8_t> w((size_t)n * k), zeros((size_t)n * G);
  std::vector<float> scales((size_t)n * G), bias(n);
  std::vector<int32_t> gidx(k);
  for (auto &q : w) q = (uint8_t)code(R);
  for (auto &z : zeros) z = (uint8_t)code(R);
  for (auto &s : scales) s = U(R) * ((R() & 1) ? 0.02f : -0.02f);
  for (auto &b : bias) b = N(R);
  if (cs.act_order) { /* GPTQ act-order: groups of gs columns in a random permutation */
    std::vector<int> perm(k);
    for (int c = 0; c < k; c++) perm[c] = c;
    std::shuffle(perm.begin(), perm.end(), R);
    for (int c = 0; c < k; c++) gidx[perm[c]] = c / gs;
  }
  qq_linear_desc d;
  memset(&d, 0, sizeof d);
  d.format = QQ_WFMT_QINT;
  d.n = n;
  d.k = k;
  d.w = w.data();
  d.bits = cs.bits;
  d.group_size = gs;
  d.n_groups = G;
  d.scales = scales.data();
  d.zeros = cs.sym ? NULL : zeros.data();
  d.g_idx = cs.act_order ? gidx.data() : NULL;

  qq_cuda_ctx c;
  memset(&c, 0, sizeof c);
  c.act = cs.act;
  c.sm_count = cs.sm_count;
  c.n_counters = QQ_CUDA_COUNTERS;
  c.counters = (int32_t *)calloc(QQ_CUDA_COUNTERS, sizeof(int32_t));
  emu::ranges.clear();
  emu::reg(c.counters, QQ_CUDA_COUNTERS * sizeof(int32_t));
  g_occ = cs.occ;
  qq_error err;
  memset(&err, 0, sizeof err);
  qq_cuda_wq *W = NULL;
  setenv("QQ_WQ_XS", "1", 1); /* created as QQ_WQ_XS=1 would (xs occupancy, shared-memory attributes) */
  const qq_status cst = qq_cuda_wq_create(&c, &d, &W, NULL, &err);
  unsetenv("QQ_WQ_XS");
  if (cst != QQ_OK) {
    fprintf(stderr, "create: %s\n", err.msg);
    exit(1);
  }
  /* x, one extra element so an odd address can be tested by the caller; y poisoned */
  const size_t xe = (size_t)m * k;
  uint16_t *x = (uint16_t *)aligned_alloc(64, (xe * 2 + 63) & ~(size_t)63);
  std::vector<float> xf(xe);
  for (size_t i = 0; i < xe; i++) {
    x[i] = enc(cs.act, N(R));
    xf[i] = dec(cs.act, x[i]);
  }
  emu::reg(x, xe * 2);
  if (cs.skb > 0)
    for (int r = 0; r < 2; r++) W->skb_m1[r] = W->skb1[wq_vi(1, r + 1)] = W->skb1[wq_vi(2, r + 1)] = cs.skb;
  /* m 9..16: the old kernel (MT 2) takes its split-K from the wave model, the m1 kernel (NT 2) from the
   * m1 rule; give the old one the m1 kernel's factor so the two are compared bit for bit */
  for (int r = 0; r < 2; r++) W->skb1[wq_vi(2, r + 1)] = W->skb_m1[r];
  /* m 17..64: wq_xs_kernel runs R = 2 with the m1 rule's factor, the old kernel R = 1 (MT 4, 8) */
  W->skb1[wq_vi(4, 1)] = W->skb1[wq_vi(8, 1)] = W->skb_m1[1];
  W->skinny_max_m = 64; /* m 33..64 of weights wq_xs_kernel does not take: wq_gemm_kernel (no dense path here) */
  W->path_forced = true; /* the knobs below choose the kernel (QQ_WQ_XS / QQ_WQ_M1 set), not the default rule */
  size_t ws = 0; /* the largest scratch of the three passes below */
  for (int pass = 0; pass < 3; pass++) {
    W->m1_off = pass == 1;
    W->xs_min_nt = pass == 0 ? 1 : 99;
    ws = std::max(ws, qq_cuda_wq_ws_bytes(W, m));
  }
  void *wsp = NULL;
  emu_cudaMalloc(&wsp, ws ? ws : 16);
  c.ws = wsp;
  c.ws_bytes = ws;
  /* y with 16 guard rows after row m − 1: tokens ≥ m must never be stored */
  std::vector<uint16_t> y_new((size_t)(m + 16) * n, 0x7fc1), y_old((size_t)(m + 16) * n, 0x7fc1),
      y_m1((size_t)(m + 16) * n, 0x7fc1);
  char buf[160];
  const int32_t xs_min = 1; /* wq_xs_kernel wherever it applies (opt-in, QQ_WQ_XS=1) */
  /* 0: QQ_WQ_XS=1 (wq_xs_kernel where it applies), 1: QQ_WQ_M1=old (wq_gemm_kernel), 2: QQ_WQ_XS=off (the
   * default) at m ≤ 16 (wq_m1_kernel) */
  for (int pass = 0; pass < (m <= 16 ? 3 : 2); pass++) {
    W->m1_off = pass == 1;
    W->xs_min_nt = pass == 2 ? 99 : xs_min;
    qq_cuda_wq_describe(W, m, buf, sizeof buf);
    if (pass < 2) (pass ? res.plan_old : res.plan) = buf;
    g_last_kernel = "";
    std::vector<uint16_t> &yp = pass == 0 ? y_new : pass == 1 ? y_old : y_m1;
    if (qq_cuda_wq_matmul(&c, W, x, m, cs.bias ? bias.data() : NULL, yp.data(), &err) != QQ_OK) {
      fprintf(stderr, "matmul: %s\n", err.msg);
      exit(1);
    }
    if (pass == 2) res.kern_m1 = g_last_kernel;
    else (pass ? res.kern_old : res.kern) = g_last_kernel;
    for (int i = 0; i < QQ_CUDA_COUNTERS; i++)
      if (c.counters[i]) emu::die("split-K counter not rearmed");
  }
  /* fp64 reference from the descriptor */
  for (int t = 0; t < m; t++)
    for (int r = 0; r < n; r++) {
      double s = cs.bias ? bias[r] : 0, mag = 0;
      for (int cc = 0; cc < k; cc++) {
        const int g = cs.act_order ? gidx[cc] : cc / gs;
        const int z = cs.sym ? 1 << (cs.bits - 1) : zeros[(size_t)r * G + g];
        const double wv = (double)((int)w[(size_t)r * k + cc] - z) * scales[(size_t)r * G + g];
        s += (double)xf[(size_t)t * k + cc] * wv;
        mag += fabs((double)xf[(size_t)t * k + cc] * wv);
      }
      mag += 1e-3;
      const size_t o = (size_t)t * n + r;
      const double en = fabs(dec(cs.act, y_new[o]) - s) / mag, eo = fabs(dec(cs.act, y_old[o]) - s) / mag;
      if (!(en <= 1e30) || !(eo <= 1e30)) res.nan = true;
      res.err_new = std::max(res.err_new, en);
      res.err_old = std::max(res.err_old, eo);
      res.diff += (y_new[o] != y_old[o]) + (m <= 16 && y_m1[o] != y_old[o]);
    }
  for (size_t o = (size_t)m * n; o < y_new.size(); o++)
    res.guard += (y_new[o] != 0x7fc1) + (y_old[o] != 0x7fc1) + (y_m1[o] != 0x7fc1);
  qq_cuda_wq_free(W);
  emu_cudaFree(wsp);
  free(x);
  free(c.counters);
  return res;
}

int main(int argc, char **argv) {
  std::mt19937_64 R(argc > 1 ? atoll(argv[1]) : 1);
  const char *only = argc > 2 ? argv[2] : NULL;
  std::vector<Case> cs;
  const qq_act_dtype BF = QQ_ACT_BF16, HF = QQ_ACT_F16;
  /* formats at m = 1: bits × group (32, 64, 128, per-channel) × zero points; ragged n and k */
  for (int bits : {4, 8})
    for (int gs : {32, 64, 128, 1 << 20})
      cs.push_back({BF, 40, 320, bits, gs, gs > 64, false, true, 1, 132, 4, 0});
  /* m = 1, 3, 8, 17 on one shape with split-K (few tiles, many SMs), both activation dtypes */
  for (qq_act_dtype a : {BF, HF})
    for (int m : {1, 3, 8, 17}) cs.push_back({a, 48, 1024, 4, 128, false, false, false, m, 132, 4, 0});
  /* act-order (x gathered), 4 and 8 bits */
  cs.push_back({BF, 64, 512, 4, 64, false, true, true, 3, 132, 4, 0});
  cs.push_back({HF, 64, 512, 8, 128, true, true, false, 1, 132, 4, 0});
  /* ragged k: k % 64 != 0 (x read in place, last chunk checked), k % 4 != 0 (x staged) */
  cs.push_back({BF, 33, 300, 4, 128, false, false, true, 8, 132, 4, 0});
  cs.push_back({BF, 33, 258, 4, 128, false, false, true, 5, 132, 4, 0});
  cs.push_back({HF, 50, 200, 8, 64, false, false, false, 2, 1, 6, 0});
  /* groups the m1 kernel does not take (48: not a multiple of the chunk; 16): the old kernel runs */
  cs.push_back({BF, 40, 384, 4, 48, false, false, false, 1, 132, 4, 0});
  cs.push_back({BF, 40, 256, 4, 16, false, false, false, 1, 132, 4, 0});
  /* no split (one SM) and a long k-range per warp (several ring laps, group changes mid-stage) */
  cs.push_back({BF, 64, 2048, 4, 128, false, false, false, 1, 1, 6, 0});
  cs.push_back({BF, 64, 2048, 8, 128, false, false, false, 7, 1, 6, 0});
  cs.push_back({HF, 64, 2048, 4, 64, false, false, false, 4, 1, 6, 0});
  /* R = 2 (n ≥ 16384: 1024 n-tiles) at m = 1 and 8, short k */
  cs.push_back({BF, 16384 + 40, 128, 4, 64, false, false, false, 1, 132, 4, true});
  cs.push_back({BF, 16384, 192, 8, 64, false, false, true, 8, 132, 4, true});
  /* group-change schedules of wq_m1_kernel: GCH 2 in both phases (odd / even first chunk of a split),
   * GCH 1, GCH 0 with changes every other stage and mid-stage; forced split-K factors */
  cs.push_back({BF, 48, 1024, 4, 128, false, false, false, 1, 132, 4, 3});
  cs.push_back({HF, 48, 1024, 4, 128, true, false, true, 8, 132, 4, 5});
  cs.push_back({BF, 48, 1024, 4, 64, false, false, false, 3, 132, 4, 3});
  cs.push_back({BF, 48, 2048, 4, 512, false, false, false, 1, 132, 4, 1});
  cs.push_back({BF, 48, 2048, 4, 512, false, false, true, 6, 132, 4, 3});
  cs.push_back({HF, 40, 1024, 8, 64, false, false, false, 1, 132, 4, 3});
  cs.push_back({BF, 40, 1024, 8, 32, false, false, false, 2, 132, 4, 7});
  cs.push_back({BF, 40, 1024, 8, 256, false, false, false, 1, 132, 4, 2});
  cs.push_back({BF, 16384, 512, 4, 128, false, false, false, 2, 132, 4, 3});
  /* m 9..16 (two n8 token tiles: wq_m1_kernel at NT 2, the old kernel at MT 2): every case above with
   * m ≤ 8 again with m + 8 tokens (1 → 9, 3 → 11, 8 → 16, ...) */
  for (size_t i = 0, n0 = cs.size(); i < n0; i++)
    if (cs[i].m <= 8) {
      Case c = cs[i];
      c.m += 8;
      cs.push_back(c);
    }
  /* m 17..64 (wq_xs_kernel at NT 4 and 8, R 2; the old kernel at MT 4, 8): the m ≤ 8 cases again with
   * m + 24 and m + 56 tokens (1 → 25, 57; 8 → 32, 64) */
  for (size_t i = 0, n0 = cs.size(); i < n0; i++)
    if (cs[i].m <= 8)
      for (int add : {24, 56}) {
        Case c = cs[i];
        c.m += add;
        cs.push_back(c);
      }
  int fails = 0, ran = 0;
  double worst_new = 0, worst_old = 0;
  long total_diff = 0;
  for (size_t i = 0; i < cs.size(); i++) {
    if (only && atoi(only) != (int)i) continue;
    const Case &c = cs[i];
    const Result r = run_case(c, R);
    const double tol = c.act == BF ? 4e-3 : 5e-4;
    const bool ok = !r.nan && r.err_new <= tol && r.err_old <= tol && r.diff == 0 && r.guard == 0;
    fails += !ok;
    ran++;
    worst_new = std::max(worst_new, r.err_new);
    worst_old = std::max(worst_old, r.err_old);
    total_diff += r.diff;
    printf("case %2zu %s n %5d k %4d bits %d g %-5s %s%s m %2d | %-6s %-48s | err %.2e (old %-6s %.2e; %-6s) diff %ld%s %s\n", i,
           c.act == BF ? "bf16" : "fp16", c.n, c.k, c.bits, c.gs >= c.k ? "chan" : std::to_string(c.gs).c_str(),
           c.sym ? "sym " : "zero", c.act_order ? " ao" : "   ", c.m, r.kern, r.plan.c_str(), r.err_new, r.kern_old,
           r.err_old, r.kern_m1, r.diff, r.guard ? " (rows >= m written)" : "", ok ? "ok" : "FAIL");
    fflush(stdout);
  }
  printf("%d/%d ok; max err/Σ|xw|: QQ_WQ_XS=1 %.3e, QQ_WQ_M1=old %.3e; outputs differing bitwise: %ld\n", ran - fails, ran,
         worst_new, worst_old, total_diff);
  return fails ? 1 : 0;
}
