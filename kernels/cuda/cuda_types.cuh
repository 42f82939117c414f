/* cuda_types.cuh — private to kernels/cuda: the activation element types (fp32, bf16, fp16) as one
 * template parameter, their conversions, and the dispatch from qq_act_dtype to a template instance.
 * Every kernel family is written once over T and instantiated through QQ_CUDA_DISPATCH_ACT. */
#ifndef QQ_CUDA_TYPES_CUH
#define QQ_CUDA_TYPES_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda_internal.h"

namespace qq {

template <typename T> __device__ __forceinline__ float to_f(T v);
template <> __device__ __forceinline__ float to_f<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <> __device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }

template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
/* Round to nearest even, as the CPU side's qq_f32_to_bf16 and PyTorch's .to(bfloat16). */
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }

}  // namespace qq

/* Calls BODY with `T` bound to the element type of dtype `act` (a qq_act_dtype). */
#define QQ_CUDA_DISPATCH_ACT(act, ...)             \
  do {                                             \
    switch (act) {                                 \
      case QQ_ACT_F32: {                           \
        typedef float T;                           \
        __VA_ARGS__;                               \
      } break;                                     \
      case QQ_ACT_BF16: {                          \
        typedef __nv_bfloat16 T;                   \
        __VA_ARGS__;                               \
      } break;                                     \
      case QQ_ACT_F16: {                           \
        typedef __half T;                          \
        __VA_ARGS__;                               \
      } break;                                     \
      default: break;                              \
    }                                              \
  } while (0)

static inline unsigned qq_cuda_blocks(size_t n, unsigned threads) {
  size_t b = (n + threads - 1) / threads;
  return (unsigned)(b > 65535u * 32u ? 65535u * 32u : (b ? b : 1));
}

#endif
