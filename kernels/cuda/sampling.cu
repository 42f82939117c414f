/* sampling.cu — reductions over logit rows on the GPU, so that perplexity, label scoring, greedy
 * decoding and top-k / top-p sampling download a few numbers per row instead of whole rows (a
 * 151,936-entry vocabulary is 600 KB of fp32 per row):
 *
 *  - logits_reduce: one block per entry; pass 1 max and argmax (ties to the lowest id, NaN never
 *    wins), pass 2 (optional) Σ expf(x − max) in fp32 terms accumulated in double, then
 *    lse = max + log(sum), and the entry's target logit. Out: qq_logits_stats per entry.
 *  - logits_topk: one block per entry; the k largest v = x · scale (one fp32 multiply: qq_sampler's
 *    logit / temperature) in the order (v descending, id ascending). v is mapped to an order-preserving
 *    32-bit key (-0.0 as +0.0); a 4-pass 8-bit radix select finds the key τ of the k-th candidate and
 *    how many of the k lie strictly above it; one pass in index order collects those (atomics) and
 *    the lowest ids among the keys equal to τ (a block-wide rank, only in chunks that hold one); a
 *    bitonic sort of the ≤ QQ_TOPK_MAX 64-bit (key, ~id) pairs in shared memory orders them. With sums
 *    requested, a last pass adds exp((double)v − v_max) in double (exp and sum in double: the host
 *    decides top-p nuclei with it, see model/sampler.c).
 *
 * Both ops read the host arrays (rows, targets, scales) through the metadata ring, write their results
 * to ctx->ws, copy them to the host and synchronize: they run between steps, never inside a captured
 * one. Rows are read from global memory (L2) once per pass; the passes are cheap next to the head
 * matmul that produced the rows. */
#include <limits.h>
#include <math_constants.h>

#include "cuda_types.cuh"

using namespace qq;

namespace {

constexpr unsigned kFull = 0xffffffffu;

/* (v, i) comes before (bv, bi): larger value, then lower id; NaN never does. */
__device__ __forceinline__ bool ahead(float v, int32_t i, float bv, int32_t bi) {
  return v > bv || (v == bv && i < bi);
}

/* Block-wide argmax; every thread gets the result. sv/si: 32 entries. */
__device__ void block_argmax(float &v, int32_t &i, float *sv, int32_t *si) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(kFull, v, o);
    const int32_t oi = __shfl_xor_sync(kFull, i, o);
    if (ahead(ov, oi, v, i)) v = ov, i = oi;
  }
  __syncthreads();
  if (lane == 0) sv[wid] = v, si[wid] = i;
  __syncthreads();
  v = lane < nw ? sv[lane] : -CUDART_INF_F;
  i = lane < nw ? si[lane] : INT_MAX;
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(kFull, v, o);
    const int32_t oi = __shfl_xor_sync(kFull, i, o);
    if (ahead(ov, oi, v, i)) v = ov, i = oi;
  }
}

/* Block-wide sum in double; every thread gets the result. sh: 32 entries. */
__device__ double block_sum(double v, double *sh) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  __syncthreads();
  if (lane == 0) sh[wid] = v;
  __syncthreads();
  v = lane < nw ? sh[lane] : 0.0;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}

template <typename T>
__global__ void __launch_bounds__(1024) k_logits_reduce(const T *__restrict__ x, int32_t n,
                                                        const int32_t *__restrict__ rows,
                                                        const int32_t *__restrict__ targets, int want_lse,
                                                        qq_logits_stats *__restrict__ out) {
  __shared__ float sv[32];
  __shared__ int32_t si[32];
  __shared__ double sd[32];
  const int32_t e = blockIdx.x;
  const T *xr = x + (size_t)(rows ? rows[e] : e) * n;
  float bv = -CUDART_INF_F;
  int32_t bi = INT_MAX;
  for (int32_t j = threadIdx.x; j < n; j += blockDim.x) {
    const float v = to_f(xr[j]);
    if (ahead(v, j, bv, bi)) bv = v, bi = j;
  }
  block_argmax(bv, bi, sv, si);
  double lse = CUDART_NAN;
  if (want_lse) {
    double s = 0.0;
    for (int32_t j = threadIdx.x; j < n; j += blockDim.x) s += (double)expf(to_f(xr[j]) - bv);
    s = block_sum(s, sd);
    lse = (double)bv + log(s);
  }
  if (threadIdx.x == 0) {
    const float x0 = to_f(xr[0]);
    qq_logits_stats r;
    r.lse = lse;
    r.max = bv;
    r.target = targets && targets[e] >= 0 ? to_f(xr[targets[e]]) : 0.0f;
    /* a NaN first element stays the argmax, as in the CPU scan (x[j] > x[best] never holds then) */
    r.argmax = x0 != x0 || bi == INT_MAX ? 0 : bi;
    r.pad_ = 0;
    out[e] = r;
  }
}

/* Order-preserving key of a float (larger float, larger key; -0.0 as +0.0) and back. */
__device__ __forceinline__ uint32_t order_key(float v) {
  const uint32_t u = __float_as_uint(v == 0.0f ? 0.0f : v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float key_value(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}
/* Sort key of a candidate: larger value first, then lower id. Never 0 (the padding). */
__device__ __forceinline__ unsigned long long cand_key(uint32_t key, int32_t j) {
  return ((unsigned long long)key << 32) | (unsigned long long)(0xffffffffu - (uint32_t)j);
}

template <typename T> __device__ __forceinline__ uint32_t scaled_key(const T *xr, int32_t j, float scale) {
  return order_key(__fmul_rn(to_f(xr[j]), scale));
}

/* Dynamic shared memory: kp (a power of two >= k) 64-bit candidate keys. */
template <typename T>
__global__ void __launch_bounds__(1024) k_logits_topk(const T *__restrict__ x, int32_t n, const int32_t *__restrict__ rows,
                                                      const float *__restrict__ scales, int32_t k, int32_t kp,
                                                      float *__restrict__ vals, int32_t *__restrict__ ids,
                                                      double *__restrict__ sums) {
  extern __shared__ unsigned long long cand[];
  __shared__ uint32_t hist[256];
  __shared__ uint32_t sel[2];
  __shared__ uint32_t wcount[32];
  __shared__ int32_t n_above;
  __shared__ double sd[32];
  const int32_t e = blockIdx.x;
  const int tid = threadIdx.x, lane = tid & 31, wid = tid >> 5, nw = blockDim.x >> 5;
  const T *xr = x + (size_t)(rows ? rows[e] : e) * n;
  const float scale = scales ? scales[e] : 1.0f;

  /* 1. radix select, most significant byte first: tau = key of the k-th candidate; `remaining` of
   * the keys equal to tau belong to the k, every key above tau does. */
  uint32_t prefix = 0, mask = 0, remaining = (uint32_t)k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = tid; b < 256; b += blockDim.x) hist[b] = 0;
    __syncthreads();
    for (int32_t base = 0; base < n; base += blockDim.x) {
      const int32_t j = base + tid;
      uint32_t bin = 256;
      if (j < n) {
        const uint32_t key = scaled_key(xr, j, scale);
        if ((key & mask) == prefix) bin = (key >> shift) & 255u;
      }
      const unsigned peers = __match_any_sync(kFull, bin); /* one atomic per distinct bin in the warp */
      if (bin != 256 && lane == __ffs(peers) - 1) atomicAdd(&hist[bin], (uint32_t)__popc(peers));
    }
    __syncthreads();
    if (wid == 0) {
      /* lane l holds bins 255 - 8l down to 248 - 8l: find the bin where the count from the top
       * reaches `remaining` */
      uint32_t own = 0;
      for (int q = 0; q < 8; q++) own += hist[255 - 8 * lane - q];
      uint32_t incl = own;
      for (int o = 1; o < 32; o <<= 1) {
        const uint32_t t = __shfl_up_sync(kFull, incl, o);
        if (lane >= o) incl += t;
      }
      const unsigned hit = __ballot_sync(kFull, incl >= remaining);
      const int w = hit ? __ffs(hit) - 1 : 31; /* always hit: the keys under the prefix are >= remaining */
      if (lane == w) {
        uint32_t cum = incl - own;
        int b = 255 - 8 * lane;
        for (int q = 0; q < 7 && cum + hist[b] < remaining; q++) cum += hist[b--];
        sel[0] = (uint32_t)b;
        sel[1] = remaining - cum;
      }
    }
    __syncthreads();
    prefix |= sel[0] << shift;
    mask |= 255u << shift;
    remaining = sel[1];
  }
  const uint32_t tau = prefix;
  const int32_t above = k - (int32_t)remaining;

  /* 2. collect: keys above tau anywhere in [0, above); the first `remaining` keys equal to tau in
   * index order after them. */
  for (int32_t i = tid; i < kp; i += blockDim.x) cand[i] = 0ull;
  if (tid == 0) n_above = 0;
  __syncthreads();
  uint32_t eq_base = 0; /* keys equal to tau seen in earlier chunks (the same in every thread) */
  for (int32_t base = 0; base < n; base += blockDim.x) {
    const int32_t j = base + tid;
    uint32_t key = 0;
    bool eq = false;
    if (j < n) {
      key = scaled_key(xr, j, scale);
      if (key > tau) cand[atomicAdd(&n_above, 1)] = cand_key(key, j);
      eq = key == tau;
    }
    if (!__syncthreads_or(eq && eq_base < remaining)) continue;
    const unsigned bal = __ballot_sync(kFull, eq);
    if (lane == 0) wcount[wid] = (uint32_t)__popc(bal);
    __syncthreads();
    uint32_t before = 0, total = 0;
    for (int w = 0; w < nw; w++) {
      const uint32_t c = wcount[w];
      before += w < wid ? c : 0;
      total += c;
    }
    const uint32_t rank = eq_base + before + (uint32_t)__popc(bal & ((1u << lane) - 1u));
    if (eq && rank < remaining) cand[above + (int32_t)rank] = cand_key(key, j);
    eq_base += total;
    __syncthreads(); /* wcount is rewritten by the next chunk */
  }
  __syncthreads();

  /* 3. bitonic sort, descending (padding zeros sink to the end) */
  for (int32_t size = 2; size <= kp; size <<= 1)
    for (int32_t stride = size >> 1; stride > 0; stride >>= 1) {
      for (int32_t t = tid; t < kp / 2; t += blockDim.x) {
        const int32_t i = 2 * t - (t & (stride - 1)), jj = i + stride;
        const unsigned long long a = cand[i], b = cand[jj];
        if ((a < b) == ((i & size) == 0)) cand[i] = b, cand[jj] = a;
      }
      __syncthreads();
    }

  for (int32_t i = tid; i < k; i += blockDim.x) {
    const unsigned long long c = cand[i];
    vals[(size_t)e * k + i] = key_value((uint32_t)(c >> 32));
    ids[(size_t)e * k + i] = (int32_t)(0xffffffffu - (uint32_t)c);
  }
  if (!sums) return;
  /* 4. Σ exp(v − v_max) over the row, in double */
  const double vmax = (double)key_value((uint32_t)(cand[0] >> 32));
  double s = 0.0;
  for (int32_t j = tid; j < n; j += blockDim.x) s += exp((double)__fmul_rn(to_f(xr[j]), scale) - vmax);
  s = block_sum(s, sd);
  if (tid == 0) sums[e] = s;
}

unsigned row_threads(int32_t n) { return n >= 32768 ? 1024 : n >= 4096 ? 512 : n >= 512 ? 256 : 64; }

size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

/* Common preamble: the calling thread's device, no capture, host arrays through the ring. */
qq_status prepare(qq_cuda_ctx *c, const char *op, qq_error *err) {
  if (c->mode == QQ_CUDA_CAPTURE || c->mode == QQ_CUDA_REPLAY)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "cuda: %s inside a replayable step (end the step first)", op);
  int cur = -1;
  if (cudaGetDevice(&cur) != cudaSuccess || cur != c->device) QQ_CUDA_TRY(err, cudaSetDevice(c->device));
  return QQ_OK;
}

qq_status push_opt(qq_cuda_ctx *c, const void *host, size_t bytes, const void **dev, qq_error *err) {
  *dev = NULL;
  return host ? qq_cuda_meta_push(c, host, bytes, dev, err) : QQ_OK;
}

}  // namespace

extern "C" qq_status qq_cuda_logits_reduce(qq_backend *be, const void *x, int32_t n, const int32_t *rows,
                                           const int32_t *targets, int32_t count, bool want_lse, qq_logits_stats *out,
                                           qq_error *err) {
  qq_cuda_ctx *c = qq_cuda_ctx_of(be);
  qq_status st = prepare(c, "logits_reduce", err);
  if (st != QQ_OK || count <= 0) return st;
  const size_t bytes = (size_t)count * sizeof(qq_logits_stats);
  if ((st = qq_cuda_ws_reserve(c, bytes, err)) != QQ_OK) return st;
  const void *rows_dev, *targets_dev;
  if ((st = push_opt(c, rows, (size_t)count * sizeof(int32_t), &rows_dev, err)) != QQ_OK) return st;
  if ((st = push_opt(c, targets, (size_t)count * sizeof(int32_t), &targets_dev, err)) != QQ_OK) return st;
  qq_logits_stats *dout = (qq_logits_stats *)c->ws;
  const unsigned th = row_threads(n);
  QQ_CUDA_DISPATCH_ACT(c->act, (k_logits_reduce<T><<<(unsigned)count, th, 0, c->stream>>>(
                                   (const T *)x, n, (const int32_t *)rows_dev, (const int32_t *)targets_dev,
                                   want_lse ? 1 : 0, dout)));
  QQ_CUDA_LAUNCHED(err, "logits_reduce");
  QQ_CUDA_TRY(err, cudaMemcpyAsync(out, dout, bytes, cudaMemcpyDeviceToHost, c->stream));
  QQ_CUDA_TRY(err, cudaStreamSynchronize(c->stream));
  return QQ_OK;
}

extern "C" qq_status qq_cuda_logits_topk(qq_backend *be, const void *x, int32_t n, const int32_t *rows,
                                         const float *scales, int32_t count, int32_t k, float *vals, int32_t *ids,
                                         double *sums, qq_error *err) {
  qq_cuda_ctx *c = qq_cuda_ctx_of(be);
  qq_status st = prepare(c, "logits_topk", err);
  if (st != QQ_OK || count <= 0) return st;
  if (k < 1 || k > n || k > QQ_TOPK_MAX)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "logits_topk: k = %d outside [1, min(%d, %d)]", k, n, QQ_TOPK_MAX);
  int32_t kp = 1;
  while (kp < k) kp <<= 1;
  const size_t ck = (size_t)count * (size_t)k;
  const size_t off_ids = align256(ck * sizeof(float)), off_sums = off_ids + align256(ck * sizeof(int32_t));
  const size_t bytes = off_sums + (size_t)count * sizeof(double);
  if ((st = qq_cuda_ws_reserve(c, bytes, err)) != QQ_OK) return st;
  const void *rows_dev, *scales_dev;
  if ((st = push_opt(c, rows, (size_t)count * sizeof(int32_t), &rows_dev, err)) != QQ_OK) return st;
  if ((st = push_opt(c, scales, (size_t)count * sizeof(float), &scales_dev, err)) != QQ_OK) return st;
  uint8_t *ws = (uint8_t *)c->ws;
  float *dvals = (float *)ws;
  int32_t *dids = (int32_t *)(ws + off_ids);
  double *dsums = sums ? (double *)(ws + off_sums) : NULL;
  const unsigned th = row_threads(n);
  const size_t smem = (size_t)kp * sizeof(unsigned long long);
  QQ_CUDA_DISPATCH_ACT(c->act, (k_logits_topk<T><<<(unsigned)count, th, smem, c->stream>>>(
                                   (const T *)x, n, (const int32_t *)rows_dev, (const float *)scales_dev, k, kp, dvals,
                                   dids, dsums)));
  QQ_CUDA_LAUNCHED(err, "logits_topk");
  QQ_CUDA_TRY(err, cudaMemcpyAsync(vals, dvals, ck * sizeof(float), cudaMemcpyDeviceToHost, c->stream));
  QQ_CUDA_TRY(err, cudaMemcpyAsync(ids, dids, ck * sizeof(int32_t), cudaMemcpyDeviceToHost, c->stream));
  if (sums)
    QQ_CUDA_TRY(err, cudaMemcpyAsync(sums, dsums, (size_t)count * sizeof(double), cudaMemcpyDeviceToHost, c->stream));
  QQ_CUDA_TRY(err, cudaStreamSynchronize(c->stream));
  return QQ_OK;
}
