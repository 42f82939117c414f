/* gpu_timing.cuh — the two kernels the GPU benchmarks time around (bench/bench_kernels_cuda.cu,
 * tests/gpu/test_cuda_wq.cu --bench; bench/peer_gemm.py does the same with torch.cuda._sleep):
 *  - qq_bench_spin: spins for ns nanoseconds of GPU time. Queued before each timed launch it keeps the
 *    GPU busy while the host queues the launch, so the events time the kernels, not the host's
 *    enqueue (a decode step replays its kernels from a CUDA Graph, where host overhead does not exist).
 *  - qq_bench_flush: reads a buffer larger than the L2 (clean lines replace the weights in L2; a memset
 *    would leave 50 MB of dirty lines whose write-back the timed kernel would pay for). */
#pragma once
#include <stdint.h>

__global__ void qq_bench_spin(long long ns) {
  long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    __nanosleep(1000);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
}

__global__ void qq_bench_flush(const uint4 *p, size_t n, int *sink) {
  uint32_t acc = 0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const uint4 v = __ldcg(p + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9e3779b9u) *sink = 1; /* never in practice; keeps the loads */
}
