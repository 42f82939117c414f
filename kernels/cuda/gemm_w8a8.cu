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

template <typename T>
__global__ void k_w8a8_epilogue(const int32_t *__restrict__ acc, const float *__restrict__ sx,
                                const float *__restrict__ sw, const float *__restrict__ bias, int32_t m, int32_t n, T *y) {
  const size_t total = (size_t)m * n;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const int32_t r = (int32_t)(i / n), j = (int32_t)(i % n);
    float v = __fmul_rn(__fmul_rn((float)acc[i], sx[r]), sw[j]);
    if (bias) v = __fadd_rn(v, bias[j]);
    y[i] = qq::from_f<T>(v);
  }
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
  const size_t total = (size_t)m * n;
  QQ_CUDA_DISPATCH_ACT(c->act, (k_w8a8_epilogue<T><<<qq_cuda_blocks(total, 256), 256, 0, c->stream>>>(
                                   acc, use_s, w_scales, bias, m, n, (T *)y)));
  QQ_CUDA_LAUNCHED(err, "w8a8_epilogue");
  return QQ_OK;
}
