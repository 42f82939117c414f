/* gpu_timing.cuh — how the GPU benchmarks time a launch (bench/bench_kernels_cuda.cu, tests/gpu/
 * test_cuda_wq.cu --bench; bench/peer_gemm.py does the same with torch.cuda._sleep): qq_bench_time_us
 * returns the median GPU time of fn over the timer's iterations, with two kernels around each launch:
 *  - qq_bench_spin: spins for ns nanoseconds of GPU time. Queued before each timed launch it keeps the
 *    GPU busy while the host queues the launch, so the events time the kernels, not the host's
 *    enqueue (a decode step replays its kernels from a CUDA Graph, where host overhead does not exist).
 *  - qq_bench_flush: reads a buffer larger than the L2 (clean lines replace the weights in L2; a memset
 *    would leave 50 MB of dirty lines whose write-back the timed kernel would pay for). */
#pragma once
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include <algorithm>
#include <chrono>
#include <vector>

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

struct qq_bench_timer {
  cudaStream_t stream;
  int iters, warm;     /* timed launches, untimed ones first */
  void *flush;         /* 256 MiB read before each cold launch */
  size_t flush_bytes;
  double host_us;      /* median host time of one call of fn (its enqueue), from the last qq_bench_time_us */
};

static cudaError_t qq_bench_timer_init(qq_bench_timer *t, cudaStream_t stream, int iters, int warm) {
  t->stream = stream;
  t->iters = iters > 0 ? iters : 1;
  t->warm = warm;
  t->flush_bytes = (size_t)256 << 20;
  t->host_us = 0;
  cudaError_t e = cudaMalloc(&t->flush, t->flush_bytes);
  return e != cudaSuccess ? e : cudaMemset(t->flush, 0x5a, t->flush_bytes);
}
static void qq_bench_timer_free(qq_bench_timer *t) { cudaFree(t->flush); }

/* One timed launch behind the spin (and, if flush, the L2 flush): GPU time of fn between two events, in
 * *ms; *host_us (if not NULL) the host time of the call of fn. */
template <typename F>
static cudaError_t qq_bench_timed(qq_bench_timer *t, cudaEvent_t a, cudaEvent_t b, bool flush, F fn, float *ms,
                                  double *host_us) {
  qq_bench_spin<<<1, 1, 0, t->stream>>>(50000);
  if (flush) qq_bench_flush<<<1024, 256, 0, t->stream>>>((const uint4 *)t->flush, t->flush_bytes / 16, (int *)t->flush);
  cudaError_t e = cudaEventRecord(a, t->stream);
  if (e != cudaSuccess) return e;
  const auto h0 = std::chrono::steady_clock::now();
  fn();
  if (host_us) *host_us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - h0).count();
  if ((e = cudaEventRecord(b, t->stream)) != cudaSuccess || (e = cudaEventSynchronize(b)) != cudaSuccess) return e;
  return cudaEventElapsedTime(ms, a, b);
}

/* Median GPU time of fn in microseconds (NAN after a CUDA error, which is printed). cold: L2 flushed. */
template <typename F> static double qq_bench_time_us(qq_bench_timer *t, F fn, bool cold) {
  cudaEvent_t a = NULL, b = NULL;
  std::vector<float> g;
  std::vector<double> h;
  cudaError_t e = cudaEventCreate(&a);
  if (e == cudaSuccess) e = cudaEventCreate(&b);
  for (int i = 0; i < t->warm && e == cudaSuccess; i++) fn();
  if (e == cudaSuccess) e = cudaStreamSynchronize(t->stream);
  for (int i = 0; i < t->iters && e == cudaSuccess; i++) {
    float ms = 0;
    double hu = 0;
    if ((e = qq_bench_timed(t, a, b, cold, fn, &ms, &hu)) != cudaSuccess) break;
    h.push_back(hu);
    g.push_back(ms);
  }
  if (a) cudaEventDestroy(a);
  if (b) cudaEventDestroy(b);
  if (e != cudaSuccess || g.empty()) {
    fprintf(stderr, "qq_bench_time_us: %s\n", cudaGetErrorString(e));
    return NAN;
  }
  std::sort(g.begin(), g.end());
  std::sort(h.begin(), h.end());
  t->host_us = h[h.size() / 2];
  return g[g.size() / 2] * 1e3;
}

/* Copies of a weight such that one pass over all of them reads at least 256 MiB (5× the H200's L2): in
 * a rotation over the copies each launch finds its weights evicted, as in a decode step, where every
 * layer's weights are read once. At least 2, at most 64. */
static int qq_bench_copies(size_t weight_bytes) {
  const size_t want = (size_t)256 << 20;
  size_t c = (want + weight_bytes - 1) / (weight_bytes ? weight_bytes : 1);
  return (int)std::min<size_t>(64, std::max<size_t>(2, c));
}

/* Per-launch GPU time in a CUDA Graph: fn(i) for i = 0..copies-1 over distinct weight copies, repeated
 * until at least 64 launches, captured once into one graph (back to back, as a decode step's replay
 * runs them: no host enqueue, no event between launches, no flush kernel — the rotation keeps the
 * weights out of L2). Returns the median over the timer's iterations of (graph time / launches), in
 * microseconds; NAN after a CUDA error (printed). fn must be capturable (no allocation, no sync): call
 * it once per copy before (the warm-up here does) so that plans and scratch exist. */
template <typename F> static double qq_bench_graph_us(qq_bench_timer *t, F fn, int copies) {
  const int reps = (64 + copies - 1) / copies, launches = reps * copies;
  cudaGraph_t graph = NULL;
  cudaGraphExec_t exec = NULL;
  cudaEvent_t a = NULL, b = NULL;
  std::vector<float> g;
  cudaError_t e = cudaSuccess;
  for (int i = 0; i < copies; i++) fn(i); /* warm: plans, scratch, lazy module loading */
  e = cudaStreamSynchronize(t->stream);
  if (e == cudaSuccess) e = cudaStreamBeginCapture(t->stream, cudaStreamCaptureModeThreadLocal);
  if (e == cudaSuccess) {
    for (int r = 0; r < reps; r++)
      for (int i = 0; i < copies; i++) fn(i);
    e = cudaStreamEndCapture(t->stream, &graph);
  }
  if (e == cudaSuccess) e = cudaGraphInstantiate(&exec, graph, 0);
  if (e == cudaSuccess) e = cudaEventCreate(&a);
  if (e == cudaSuccess) e = cudaEventCreate(&b);
  if (e == cudaSuccess) e = cudaGraphLaunch(exec, t->stream); /* warm replay */
  if (e == cudaSuccess) e = cudaStreamSynchronize(t->stream);
  for (int i = 0; i < t->iters && e == cudaSuccess; i++) {
    /* a flush first, so that the first launches of the replay also find their weights out of L2 */
    float ms = 0;
    cudaError_t le = cudaSuccess;
    if ((e = qq_bench_timed(t, a, b, true, [&] { le = cudaGraphLaunch(exec, t->stream); }, &ms, NULL)) != cudaSuccess ||
        (e = le) != cudaSuccess)
      break;
    g.push_back(ms);
  }
  if (e != cudaSuccess) {
    cudaStreamCaptureStatus cs;
    if (cudaStreamIsCapturing(t->stream, &cs) == cudaSuccess && cs != cudaStreamCaptureStatusNone) {
      cudaGraph_t junk = NULL;
      cudaStreamEndCapture(t->stream, &junk);
      if (junk) cudaGraphDestroy(junk);
    }
    cudaGetLastError();
  }
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  if (a) cudaEventDestroy(a);
  if (b) cudaEventDestroy(b);
  if (e != cudaSuccess || g.empty()) {
    fprintf(stderr, "qq_bench_graph_us: %s\n", cudaGetErrorString(e));
    return NAN;
  }
  std::sort(g.begin(), g.end());
  return g[g.size() / 2] * 1e3 / launches;
}
