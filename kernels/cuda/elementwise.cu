/* elementwise.cu — the small ops of the forward pass on the GPU: dtype conversion, RMSNorm (with the
 * per-token int8 quantization of W8A8 fused in), residual add, SiLU·up, RoPE, row gather and per-row
 * int8 quantization. Each is the CPU reference's arithmetic (kernels/cpu) with fp32 math on elements
 * of the activation dtype T; loops are grid-stride so any size works with a bounded grid.
 * These ops are memory-bound and tiny next to the GEMMs; they favour simplicity over the last %. */
#include <math.h>

#include "cuda_types.cuh"

using namespace qq;

/* ---- conversions ---- */

template <typename S, typename D> __device__ __forceinline__ D conv(S v) { return from_f<D>(to_f<S>(v)); }
template <> __device__ __forceinline__ float conv<float, float>(float v) { return v; }

template <typename S, typename D> __global__ void k_convert(const S *__restrict__ src, D *__restrict__ dst, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    dst[i] = conv<S, D>(src[i]);
}

template <typename S, typename D>
static qq_status launch_convert(qq_cuda_ctx *c, const void *src, void *dst, size_t n, qq_error *err) {
  if (!n) return QQ_OK;
  k_convert<S, D><<<qq_cuda_blocks(n, 256), 256, 0, c->stream>>>((const S *)src, (D *)dst, n);
  QQ_CUDA_LAUNCHED(err, "convert");
  return QQ_OK;
}

extern "C" qq_status qq_cuda_f32_to_act(qq_cuda_ctx *c, const float *src, void *dst, size_t n, qq_error *err) {
  qq_status st = QQ_ERR_INVALID_ARG;
  QQ_CUDA_DISPATCH_ACT(c->act, st = (launch_convert<float, T>(c, src, dst, n, err)));
  return st;
}

extern "C" qq_status qq_cuda_act_to_f32(qq_cuda_ctx *c, const void *src, float *dst, size_t n, qq_error *err) {
  qq_status st = QQ_ERR_INVALID_ARG;
  QQ_CUDA_DISPATCH_ACT(c->act, st = (launch_convert<T, float>(c, src, dst, n, err)));
  return st;
}

extern "C" qq_status qq_cuda_convert(qq_cuda_ctx *c, qq_weight_format src_fmt, const void *src, qq_act_dtype dst_dtype,
                                     void *dst, size_t n, qq_error *err) {
  qq_status st = qq_error_set(err, QQ_ERR_INVALID_ARG, "convert: weight format %d to %s is not a dense conversion",
                              (int)src_fmt, qq_act_dtype_name(dst_dtype));
  switch (src_fmt) {
    case QQ_WFMT_F32: QQ_CUDA_DISPATCH_ACT(dst_dtype, st = (launch_convert<float, T>(c, src, dst, n, err))); break;
    case QQ_WFMT_BF16:
      QQ_CUDA_DISPATCH_ACT(dst_dtype, st = (launch_convert<__nv_bfloat16, T>(c, src, dst, n, err)));
      break;
    case QQ_WFMT_F16: QQ_CUDA_DISPATCH_ACT(dst_dtype, st = (launch_convert<__half, T>(c, src, dst, n, err))); break;
    default: break;
  }
  return st;
}

/* ---- block reductions ---- */

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
/* Sum (or max) over the block; every thread gets the result. `sh` holds 32 floats. */
template <bool MAX> __device__ float block_reduce(float v, float *sh) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = MAX ? warp_max(v) : warp_sum(v);
  __syncthreads(); /* sh may still be read from a previous reduction */
  if (lane == 0) sh[wid] = v;
  __syncthreads();
  float r = lane < nw ? sh[lane] : (MAX ? 0.0f : 0.0f);
  r = MAX ? warp_max(r) : warp_sum(r);
  return r;
}

/* ---- RMSNorm (+ fused per-token int8 quantization) ----
 * One block per row. The mean of squares is accumulated in fp32 per thread and reduced in fp32 (the
 * CPU reference uses double; for dim ≤ 16k the difference is far below bf16 rounding and ~1e-7
 * relative in fp32 mode). out may alias x: each thread reads its elements before writing them.
 * With q8 != NULL the row's output, as stored in T, is also quantized exactly as
 * qq_ref_quantize_rows_i8 (dynamic per-token scale), so a W8A8 matmul can skip its own pass. */
template <typename T>
__global__ void k_rmsnorm(const T *__restrict__ x, const T *__restrict__ w, int32_t dim, float eps, T *out, int8_t *q8,
                          float *q8_scales) {
  __shared__ float sh[32];
  const size_t row = blockIdx.x;
  const T *xr = x + row * dim;
  T *o = out + row * dim;
  float ss = 0.0f;
  for (int32_t i = threadIdx.x; i < dim; i += blockDim.x) {
    float v = to_f(xr[i]);
    ss += v * v;
  }
  ss = block_reduce<false>(ss, sh);
  const float inv = rsqrtf(ss / (float)dim + eps);
  float amax = 0.0f;
  for (int32_t i = threadIdx.x; i < dim; i += blockDim.x) {
    T r = from_f<T>(to_f(w[i]) * (to_f(xr[i]) * inv));
    o[i] = r;
    amax = fmaxf(amax, fabsf(to_f(r)));
  }
  if (!q8) return;
  amax = block_reduce<true>(amax, sh);
  const float scale = amax > 0.0f ? amax / 127.0f : 1.0f;
  const float qinv = 1.0f / scale;
  if (threadIdx.x == 0) q8_scales[row] = scale;
  int8_t *qr = q8 + row * dim;
  for (int32_t i = threadIdx.x; i < dim; i += blockDim.x) {
    float v = rintf(to_f(o[i]) * qinv);
    qr[i] = (int8_t)fminf(127.0f, fmaxf(-127.0f, v));
  }
}

static unsigned row_threads(int32_t dim) { return dim >= 2048 ? 512 : dim >= 512 ? 256 : 128; }

/* The fused quantization is used when the context asks for it (a dynamic W8A8 linear exists) and the
 * quantized copy's buffer is large enough; growing it synchronizes, which happens on the first steps
 * only. */
static qq_status q8_reserve(qq_cuda_ctx *c, int32_t rows, int32_t cols, qq_error *err) {
  const size_t need = (size_t)rows * cols;
  if (need <= c->q8_cap && rows <= c->q8_cap_rows) return QQ_OK;
  if (c->mode == QQ_CUDA_CAPTURE)
    return qq_error_set(err, QQ_ERR_INTERNAL, "cuda: the int8 activation buffer would grow inside a captured step");
  QQ_CUDA_TRY(err, cudaStreamSynchronize(c->stream));
  qq_cuda_graphs_invalidate(c);
  cudaFree(c->q8);
  cudaFree(c->q8_scales);
  c->q8 = NULL;
  c->q8_scales = NULL;
  c->q8_cap = 0;
  c->q8_cap_rows = 0;
  c->q8_src = NULL;
  const size_t cap = need * 2;
  const int32_t cap_rows = rows * 2;
  QQ_CUDA_TRY(err, cudaMalloc((void **)&c->q8, cap));
  QQ_CUDA_TRY(err, cudaMalloc((void **)&c->q8_scales, (size_t)cap_rows * sizeof(float)));
  c->q8_cap = cap;
  c->q8_cap_rows = cap_rows;
  return QQ_OK;
}

extern "C" qq_status qq_cuda_rmsnorm(qq_cuda_ctx *c, const void *x, const void *w, int32_t rows, int32_t dim, float eps,
                                     void *out, qq_error *err) {
  if (rows <= 0 || dim <= 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "rmsnorm: %d rows of %d", rows, dim);
  int8_t *q8 = NULL;
  float *q8s = NULL;
  if (c->fuse_act_quant) {
    qq_status st = q8_reserve(c, rows, dim, err);
    if (st != QQ_OK) return st;
    q8 = c->q8;
    q8s = c->q8_scales;
  }
  const unsigned th = row_threads(dim);
  QQ_CUDA_DISPATCH_ACT(c->act, (k_rmsnorm<T><<<rows, th, 0, c->stream>>>((const T *)x, (const T *)w, dim, eps, (T *)out,
                                                                          q8, q8s)));
  QQ_CUDA_LAUNCHED(err, "rmsnorm");
  if (q8) {
    c->q8_src = out;
    c->q8_rows = rows;
    c->q8_cols = dim;
  }
  return QQ_OK;
}

/* ---- residual add, SiLU·up ---- */

template <typename T> __global__ void k_add(T *acc, const T *__restrict__ x, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    acc[i] = from_f<T>(to_f(acc[i]) + to_f(x[i]));
}

extern "C" qq_status qq_cuda_add(qq_cuda_ctx *c, void *acc, const void *x, size_t n, qq_error *err) {
  if (!n) return QQ_OK;
  QQ_CUDA_DISPATCH_ACT(c->act, (k_add<T><<<qq_cuda_blocks(n, 256), 256, 0, c->stream>>>((T *)acc, (const T *)x, n)));
  QQ_CUDA_LAUNCHED(err, "add");
  return QQ_OK;
}

/* silu(g)·u = g / (1 + e^-g) · u, fp32 as the CPU reference (expf; __expf differs by a few ulp). */
template <typename T> __global__ void k_silu_mul(const T *gate, const T *up, size_t n, T *out) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const float g = to_f(gate[i]);
    out[i] = from_f<T>(g / (1.0f + expf(-g)) * to_f(up[i]));
  }
}

extern "C" qq_status qq_cuda_silu_mul(qq_cuda_ctx *c, const void *gate, const void *up, size_t n, void *out,
                                      qq_error *err) {
  if (!n) return QQ_OK;
  QQ_CUDA_DISPATCH_ACT(c->act, (k_silu_mul<T><<<qq_cuda_blocks(n, 256), 256, 0, c->stream>>>(
                                   (const T *)gate, (const T *)up, n, (T *)out)));
  QQ_CUDA_LAUNCHED(err, "silu_mul");
  return QQ_OK;
}

/* ---- RoPE ("rotate half", HF Llama/Qwen) ----
 * Block per token; the angle pos · inv_freq_j and its cos/sin are computed in double as the CPU
 * reference does (hd/2 values per token: negligible next to the rest), then applied to every head.
 * inv_freq_j = theta^(-2j/hd): EXACT in double; BF16 (qq_rope_freq) HF's fp32 1 / theta^(2j/hd) rounded
 * to bf16 (RNE). The fp32 power is taken as pow in double rounded to float: correctly rounded except in
 * rare double-rounding cases, where the device's powf may be off by a few ulp. On the host, that
 * expression rounded to bf16 equals glibc powf's (the CPU backend) for 10 thetas from 1e4 to 1.2e6 and
 * every even head_dim up to 512; test_cuda_ops compares the two backends in this mode. */
template <typename T>
__global__ void k_rope(T *x, const int32_t *__restrict__ pos, int32_t heads, int32_t hd, float theta, int32_t freq) {
  extern __shared__ float cs[]; /* cos[half], sin[half] */
  const int32_t half = hd / 2, tok = blockIdx.x;
  for (int32_t j = threadIdx.x; j < half; j += blockDim.x) {
    double inv_freq;
    if (freq == QQ_ROPE_FREQ_BF16) {
      const float p = (float)pow((double)theta, (double)((float)(2 * j) / (float)hd));
      uint32_t u = __float_as_uint(1.0f / p); /* positive and finite: RNE to bf16 */
      u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
      inv_freq = (double)__uint_as_float(u);
    } else {
      inv_freq = pow((double)theta, -2.0 * j / hd);
    }
    const double ang = (double)pos[tok] * inv_freq;
    double s, co;
    sincos(ang, &s, &co);
    cs[j] = (float)co;
    cs[half + j] = (float)s;
  }
  __syncthreads();
  T *xt = x + (size_t)tok * heads * hd;
  for (int32_t e = threadIdx.x; e < heads * half; e += blockDim.x) {
    const int32_t h = e / half, j = e % half;
    T *v = xt + (size_t)h * hd;
    const float a = to_f(v[j]), b = to_f(v[j + half]);
    v[j] = from_f<T>(a * cs[j] - b * cs[half + j]);
    v[j + half] = from_f<T>(b * cs[j] + a * cs[half + j]);
  }
}

extern "C" qq_status qq_cuda_rope(qq_cuda_ctx *c, void *x, const int32_t *pos_dev, int32_t t, int32_t heads, int32_t hd,
                                  float theta, qq_rope_freq freq, qq_error *err) {
  if (t <= 0) return QQ_OK;
  if (hd % 2 || hd <= 0 || heads <= 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "rope: heads %d head_dim %d", heads, hd);
  const size_t smem = (size_t)hd * sizeof(float);
  QQ_CUDA_DISPATCH_ACT(c->act, (k_rope<T><<<t, 128, smem, c->stream>>>((T *)x, pos_dev, heads, hd, theta, (int32_t)freq)));
  QQ_CUDA_LAUNCHED(err, "rope");
  return QQ_OK;
}

/* ---- row gather (embedding lookup, last-token rows) ---- */

template <typename T>
__global__ void k_gather_rows(const T *__restrict__ x, const int32_t *__restrict__ rows, int32_t width, T *out) {
  const T *src = x + (size_t)rows[blockIdx.x] * width;
  T *dst = out + (size_t)blockIdx.x * width;
  for (int32_t i = threadIdx.x; i < width; i += blockDim.x) dst[i] = src[i];
}

extern "C" qq_status qq_cuda_gather_rows(qq_cuda_ctx *c, qq_act_dtype dt, const void *x, const int32_t *rows_dev,
                                         int32_t n_rows, int32_t width, void *out, qq_error *err) {
  if (n_rows <= 0) return QQ_OK;
  if (width <= 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "gather_rows: width %d", width);
  QQ_CUDA_DISPATCH_ACT(dt, (k_gather_rows<T><<<n_rows, 256, 0, c->stream>>>((const T *)x, rows_dev, width, (T *)out)));
  QQ_CUDA_LAUNCHED(err, "gather_rows");
  return QQ_OK;
}

/* ---- per-row int8 quantization (W8A8 activations when the RMSNorm did not already do it) ---- */

template <typename T>
__global__ void k_quantize_rows_i8(const T *__restrict__ x, int32_t k, float act_scale, int8_t *q, float *s) {
  __shared__ float sh[32];
  const size_t row = blockIdx.x;
  const T *xr = x + row * k;
  float scale = act_scale;
  if (scale <= 0.0f) {
    float amax = 0.0f;
    for (int32_t i = threadIdx.x; i < k; i += blockDim.x) amax = fmaxf(amax, fabsf(to_f(xr[i])));
    amax = block_reduce<true>(amax, sh);
    scale = amax > 0.0f ? amax / 127.0f : 1.0f;
  }
  if (threadIdx.x == 0) s[row] = scale;
  const float inv = 1.0f / scale;
  int8_t *qr = q + row * k;
  for (int32_t i = threadIdx.x; i < k; i += blockDim.x) {
    float v = rintf(to_f(xr[i]) * inv);
    qr[i] = (int8_t)fminf(127.0f, fmaxf(-127.0f, v));
  }
}

/* The same quantization with the row held in registers: NV 16-byte vectors per thread, all loaded
 * before the first is used, so the maximum and the rounding read x once and a long row costs one
 * memory latency instead of one per loop trip (H100, W8A8 down projection at m = 1, k = 18944: the
 * quantization and epilogue took ~20 µs of the 52 µs matmul). Same arithmetic per element as
 * k_quantize_rows_i8, so the same bytes and scales. Needs k % (16 / sizeof(T)) == 0 and 16-byte rows. */
template <typename T> struct i8_pack;
template <> struct i8_pack<float> { using type = uint32_t; };           /* 4 elements per vector */
template <> struct i8_pack<__nv_bfloat16> { using type = uint2; };      /* 8 */
template <> struct i8_pack<__half> { using type = uint2; };             /* 8 */

template <typename T, int NV>
__global__ void k_quantize_rows_i8_reg(const T *__restrict__ x, int32_t k, float act_scale, int8_t *q, float *s) {
  constexpr int E = 16 / (int)sizeof(T);
  __shared__ float sh[32];
  const size_t row = blockIdx.x;
  const uint4 *xr = reinterpret_cast<const uint4 *>(x + row * k);
  const int32_t nvec = k / E;
  uint4 v[NV];
#pragma unroll
  for (int j = 0; j < NV; j++) {
    const int32_t i = (int32_t)threadIdx.x + j * (int32_t)blockDim.x;
    if (i < nvec) v[j] = xr[i];
  }
  float scale = act_scale;
  if (scale <= 0.0f) {
    float amax = 0.0f;
#pragma unroll
    for (int j = 0; j < NV; j++) {
      if ((int32_t)threadIdx.x + j * (int32_t)blockDim.x >= nvec) continue;
      const T *e = reinterpret_cast<const T *>(&v[j]);
#pragma unroll
      for (int t = 0; t < E; t++) amax = fmaxf(amax, fabsf(to_f(e[t])));
    }
    amax = block_reduce<true>(amax, sh);
    scale = amax > 0.0f ? amax / 127.0f : 1.0f;
  }
  if (threadIdx.x == 0) s[row] = scale;
  const float inv = 1.0f / scale;
  typename i8_pack<T>::type *qr = reinterpret_cast<typename i8_pack<T>::type *>(q + row * k);
#pragma unroll
  for (int j = 0; j < NV; j++) {
    const int32_t i = (int32_t)threadIdx.x + j * (int32_t)blockDim.x;
    if (i >= nvec) continue;
    const T *e = reinterpret_cast<const T *>(&v[j]);
    typename i8_pack<T>::type o;
    int8_t *ob = reinterpret_cast<int8_t *>(&o);
#pragma unroll
    for (int t = 0; t < E; t++) ob[t] = (int8_t)fminf(127.0f, fmaxf(-127.0f, rintf(to_f(e[t]) * inv)));
    qr[i] = o;
  }
}

template <typename T>
static void launch_quantize_rows_i8(cudaStream_t st, const T *x, int32_t m, int32_t k, float act_scale, int8_t *q,
                                    float *s) {
  constexpr int E = 16 / (int)sizeof(T);
  const int32_t nvec = k / E;
  const unsigned threads = nvec >= 1024 ? 1024u : (unsigned)((nvec + 31) / 32 * 32);
  const int32_t per = (int32_t)((nvec + (int32_t)threads - 1) / (int32_t)threads);
  const bool vec = k % E == 0 && ((uintptr_t)x & 15) == 0 && ((uintptr_t)q % E) == 0 && per <= 8;
  if (!vec) {
    k_quantize_rows_i8<T><<<m, row_threads(k), 0, st>>>(x, k, act_scale, q, s);
    return;
  }
  if (per <= 1) k_quantize_rows_i8_reg<T, 1><<<m, threads, 0, st>>>(x, k, act_scale, q, s);
  else if (per <= 2) k_quantize_rows_i8_reg<T, 2><<<m, threads, 0, st>>>(x, k, act_scale, q, s);
  else if (per <= 4) k_quantize_rows_i8_reg<T, 4><<<m, threads, 0, st>>>(x, k, act_scale, q, s);
  else k_quantize_rows_i8_reg<T, 8><<<m, threads, 0, st>>>(x, k, act_scale, q, s);
}

extern "C" qq_status qq_cuda_quantize_rows_i8(qq_cuda_ctx *c, const void *x, int32_t m, int32_t k, float act_scale,
                                              int8_t *q, float *s, qq_error *err) {
  if (m <= 0 || k <= 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "quantize_rows_i8: %d rows of %d", m, k);
  QQ_CUDA_DISPATCH_ACT(c->act, (launch_quantize_rows_i8<T>(c->stream, (const T *)x, m, k, act_scale, q, s)));
  QQ_CUDA_LAUNCHED(err, "quantize_rows_i8");
  return QQ_OK;
}
