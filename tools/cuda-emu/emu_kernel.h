/* emu_kernel.h — included after emu.h by every harness, before the transformed kernel source: the CUDA
 * function qualifiers become plain host C++ (kernels run as fiber bodies, device functions as inline
 * host functions) and the backend's launch check is a no-op. */
#pragma once
#undef __launch_bounds__
#define __launch_bounds__(...)
#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __host__
#define __host__
#undef __forceinline__
#define __forceinline__ inline
#undef QQ_CUDA_LAUNCHED
#define QQ_CUDA_LAUNCHED(err, name) (void)0
