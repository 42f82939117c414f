/* gemm_w8a8.cu — W8A8 (SmoothQuant / compressed-tensors int8) matmul:
 *   y[m][n] = (Σ_k qx[m][k] · qw[n][k]) · s_x[m] · s_w[n] (+ bias[n])
 * 1. qx, s_x: the per-token int8 quantization of x — taken from the fused RMSNorm when it quantized
 *    this very buffer (ctx->q8_src == x, dynamic scales only), else quantize_rows_i8 into the scratch;
 * 2. the int8 product, exact in int32 (qq_cuda_gemm_i8: cuBLASLt IMMA);
 * 3. the epilogue below applies both scales and the bias in fp32 and writes the activation dtype.
 * The float operations follow qq_ref_matmul_w8a8 in order ((acc · s_x) · s_w + b, no contraction into
 * FMA) so fp32 mode agrees with the CPU backend bit for bit up to the int32 sum, which is exact.
 * Scratch layout in ctx->ws: int32 acc [m][n] | int8 qx [m][k] | fp32 s_x [m], each 256-byte aligned. */
#include "cuda_types.cuh"

static size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

extern "C" size_t qq_cuda_w8a8_ws_bytes(int32_t m, int32_t n, int32_t k) {
  return align256((size_t)m * n * sizeof(int32_t)) + align256((size_t)m * k) + align256((size_t)m * sizeof(float));
}

/* One row of y per blockIdx.y (grid-stride over rows), columns across blockIdx.x/threads; with VEC
 * four columns per thread (int4 load of acc, float4 of s_w and bias, one 4-element store). Indexing in
 * two dimensions: the former flat loop spent most of its time in 64-bit i / n and i % n (H200, gate_up
 * m = 256: 134 µs for the W8A8 matmul of which 84 µs the IMMA product). */
template <typename T> struct vec4_of;
template <> struct vec4_of<float> { using type = float4; };
template <> struct vec4_of<__nv_bfloat16> { struct alignas(8) type { __nv_bfloat16 v[4]; }; };
template <> struct vec4_of<__half> { struct alignas(8) type { __half v[4]; }; };

template <typename T> __device__ __forceinline__ void store4(T *y, float a, float b, float c, float d) {
  typename vec4_of<T>::type o;
  T *e = reinterpret_cast<T *>(&o);
  e[0] = qq::from_f<T>(a);
  e[1] = qq::from_f<T>(b);
  e[2] = qq::from_f<T>(c);
  e[3] = qq::from_f<T>(d);
  *reinterpret_cast<typename vec4_of<T>::type *>(y) = o;
}

__device__ __forceinline__ float w8a8_out(int32_t a, float sx, float sw, const float *bias, int32_t j) {
  float v = __fmul_rn(__fmul_rn((float)a, sx), sw);
  return bias ? __fadd_rn(v, bias[j]) : v;
}

template <typename T, bool VEC>
__global__ void k_w8a8_epilogue(const int32_t *__restrict__ acc, const float *__restrict__ sx,
                                const float *__restrict__ sw, const float *__restrict__ bias, int32_t m, int32_t n, T *y) {
  const int32_t stride = (int32_t)(gridDim.x * blockDim.x);
  for (int32_t r = (int32_t)blockIdx.y; r < m; r += (int32_t)gridDim.y) {
    const int32_t *ar = acc + (size_t)r * n;
    T *yr = y + (size_t)r * n;
    const float s = sx[r];
    if (VEC) {
      for (int32_t j = 4 * (int32_t)(blockIdx.x * blockDim.x + threadIdx.x); j < n; j += 4 * stride) {
        const int4 a = *reinterpret_cast<const int4 *>(ar + j);
        const float4 w = *reinterpret_cast<const float4 *>(sw + j);
        store4<T>(yr + j, w8a8_out(a.x, s, w.x, bias, j), w8a8_out(a.y, s, w.y, bias, j + 1),
                  w8a8_out(a.z, s, w.z, bias, j + 2), w8a8_out(a.w, s, w.w, bias, j + 3));
      }
    } else {
      for (int32_t j = (int32_t)(blockIdx.x * blockDim.x + threadIdx.x); j < n; j += stride)
        yr[j] = qq::from_f<T>(w8a8_out(ar[j], s, sw[j], bias, j));
    }
  }
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

template <typename T>
static void launch_w8a8_epilogue(cudaStream_t st, const int32_t *acc, const float *sx, const float *sw,
                                 const float *bias, int32_t m, int32_t n, T *y) {
  /* acc rows stay 16-byte aligned when n % 4 == 0 (the scratch is 256-byte aligned); y rows then are
   * 4·sizeof(T)-aligned if y is. */
  const bool vec = n % 4 == 0 && aligned16(sw) && ((uintptr_t)y % (4 * sizeof(T))) == 0;
  const int32_t per_row = vec ? n / 4 : n;
  const unsigned threads = 256;
  unsigned bx = (unsigned)((per_row + threads - 1) / threads);
  const unsigned by = (unsigned)(m < 65535 ? m : 65535);
  if (bx > 1024) bx = 1024;
  const dim3 grid(bx, by);
  if (vec)
    k_w8a8_epilogue<T, true><<<grid, threads, 0, st>>>(acc, sx, sw, bias, m, n, y);
  else
    k_w8a8_epilogue<T, false><<<grid, threads, 0, st>>>(acc, sx, sw, bias, m, n, y);
}

extern "C" qq_status qq_cuda_w8a8_matmul(qq_cuda_ctx *c, const int8_t *wq, const float *w_scales, float act_scale,
                                         const float *bias, int32_t n, int32_t k, const void *x, int32_t m, void *y,
                                         qq_error *err) {
  if (m <= 0 || n <= 0 || k <= 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "w8a8: shape m=%d n=%d k=%d", m, n, k);
  if (c->ws_bytes < qq_cuda_w8a8_ws_bytes(m, n, k))
    return qq_error_set(err, QQ_ERR_INTERNAL, "w8a8: scratch of %zu bytes is too small", c->ws_bytes);
  uint8_t *ws = (uint8_t *)c->ws;
  int32_t *acc = (int32_t *)ws;
  int8_t *qx = (int8_t *)(ws + align256((size_t)m * n * sizeof(int32_t)));
  float *sx = (float *)((uint8_t *)qx + align256((size_t)m * k));
  const int8_t *use_q = qx;
  const float *use_s = sx;
  if (act_scale == 0.0f && c->q8_src == x && c->q8_rows == m && c->q8_cols == k) {
    use_q = c->q8; /* quantized by the RMSNorm that wrote x */
    use_s = c->q8_scales;
  } else {
    qq_status st = qq_cuda_quantize_rows_i8(c, x, m, k, act_scale, qx, sx, err);
    if (st != QQ_OK) return st;
  }
  qq_status st = qq_cuda_gemm_i8(c, wq, n, k, use_q, m, acc, err);
  if (st != QQ_OK) return st;
  QQ_CUDA_DISPATCH_ACT(c->act, (launch_w8a8_epilogue<T>(c->stream, acc, use_s, w_scales, bias, m, n, (T *)y)));
  QQ_CUDA_LAUNCHED(err, "w8a8_epilogue");
  return QQ_OK;
}
