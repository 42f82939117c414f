/* emu.h — runs CUDA kernels of attention.cu on the host: every CUDA thread of a CTA is a fiber
 * (ucontext), __syncthreads is a CTA barrier, warp-wide operations (shuffles, ballot, ldmatrix, mma)
 * are collectives that wait for all 32 lanes and are computed by the last one to arrive, from the
 * PTX ISA fragment tables (written here independently of the kernel's own index helpers).
 * cp.async copies land at a random moment between issue and the wait that covers them; shared memory
 * starts as NaN bytes; a deadlock (divergent collective, barrier never reached) aborts. */
#pragma once
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <algorithm>
#include <functional>
#include <random>
#include <vector>

#include "qq_common.h"

namespace emu {

[[noreturn]] inline void die(const char *m) {
  fprintf(stderr, "EMU ERROR: %s\n", m);
  abort();
}

struct Copy {
  uint32_t dst;
  const void *src;
  bool valid;
};
enum { RUN = 0, WAIT_BAR = 1, WAIT_WARP = 2, DONE = 3 };
struct Thread {
  ucontext_t ctx;
  int tid, state;
  uint64_t wait_gen;
  std::vector<std::vector<Copy>> groups;
  std::vector<Copy> open;
};
struct Warp {
  int arrived = 0, op = -1;
  uint64_t gen = 0;
  uint8_t in[32][64];
  uint8_t out[32][64];
};
struct Range {
  const uint8_t *lo;
  size_t n;
};

inline std::mt19937_64 rng(12345);
inline std::vector<Range> ranges;
inline uint8_t *smem = nullptr;
inline size_t smem_size = 0;
constexpr size_t kGuard = 256;
inline int nt = 0, bar_arrived = 0, exited = 0;
inline uint64_t bar_gen = 0;
inline long early_exit_barriers = 0;
inline Thread *threads = nullptr, *cur = nullptr;
inline Warp warps[32];
inline ucontext_t sched;
inline std::function<void()> *body = nullptr;
inline dim3 cur_tidx, cur_bidx, cur_bdim, cur_gdim;
inline long n_collectives = 0;

inline void reg(const void *p, size_t n) { ranges.push_back({(const uint8_t *)p, n}); }
inline void check_global(const void *p, size_t n) {
  const uint8_t *q = (const uint8_t *)p;
  for (const Range &r : ranges)
    if (q >= r.lo && q + n <= r.lo + r.n) return;
  die("global read outside every registered buffer");
}
inline void check_smem(uint32_t a, size_t n, size_t align) {
  if (a % align) die("misaligned shared address");
  if (a + n > smem_size) die("shared address past the dynamic shared memory");
}

inline void yield() {
  swapcontext(&cur->ctx, &sched);
}
inline void syncthreads() {
  const uint64_t g = bar_gen;
  if (++bar_arrived + exited == nt) {
    bar_arrived = 0;
    ++bar_gen;
    return;
  }
  cur->state = WAIT_BAR;
  cur->wait_gen = g;
  yield();
}

template <class F> inline void collective(int op, const void *in, size_t n, void *out, size_t m, F f) {
  ++n_collectives;
  Warp &w = warps[cur->tid / 32];
  const int lane = cur->tid % 32;
  if (w.arrived == 0)
    w.op = op;
  else if (w.op != op)
    die("lanes of a warp in different collectives");
  memcpy(w.in[lane], in, n);
  const uint64_t g = w.gen;
  if (++w.arrived == 32) {
    f(w);
    w.arrived = 0;
    ++w.gen;
  } else {
    cur->state = WAIT_WARP;
    cur->wait_gen = g;
    yield();
  }
  memcpy(out, w.out[lane], m);
}

inline void do_copy(const Copy &c) {
  if (c.valid)
    memcpy(smem + c.dst, c.src, 16);
  else
    memset(smem + c.dst, 0, 16);
}

inline void entry() {
  (*body)();
  cur->state = DONE;
  ++exited;
  if (bar_arrived > 0 && bar_arrived + exited == nt) {
    ++early_exit_barriers;
    bar_arrived = 0;
    ++bar_gen;
  }
  swapcontext(&cur->ctx, &sched);
}

inline std::vector<std::vector<uint8_t>> stacks;

/* Runs body for every thread of every CTA (CTAs one at a time, in random order). */
inline void launch(std::function<void()> f, dim3 grid, dim3 block, size_t dyn) {
  body = &f;
  nt = block.x * block.y * block.z;
  if (nt % 32 || nt > 1024) die("block size");
  std::vector<Thread> th(nt);
  threads = th.data();
  if ((int)stacks.size() < nt) stacks.resize(nt, std::vector<uint8_t>(1 << 17));
  std::vector<uint8_t> sm(dyn + kGuard);
  smem = sm.data();
  smem_size = dyn;
  cur_bdim = block;
  cur_gdim = grid;
  const unsigned n_cta = grid.x * grid.y * grid.z; /* 3-D grids: CTA i is (i % x, i / x % y, i / (x·y)) */
  std::vector<unsigned> order(n_cta);
  for (unsigned i = 0; i < n_cta; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<int> perm(nt);
  for (unsigned bi : order) {
    memset(sm.data(), 0xff, sm.size());
    cur_bidx = dim3(bi % grid.x, bi / grid.x % grid.y, bi / (grid.x * grid.y));
    bar_arrived = exited = 0;
    for (int w = 0; w < nt / 32; ++w) warps[w].arrived = 0;
    for (int t = 0; t < nt; ++t) {
      Thread &T = th[t];
      T.tid = t;
      T.state = RUN;
      T.groups.clear();
      T.open.clear();
      getcontext(&T.ctx);
      T.ctx.uc_stack.ss_sp = stacks[t].data();
      T.ctx.uc_stack.ss_size = stacks[t].size();
      T.ctx.uc_link = nullptr;
      makecontext(&T.ctx, entry, 0);
      perm[t] = t;
    }
    int done = 0;
    while (done < nt) {
      bool progress = false;
      std::shuffle(perm.begin(), perm.end(), rng);
      for (int t : perm) {
        Thread &T = th[t];
        bool go = false;
        if (T.state == RUN) go = true;
        else if (T.state == WAIT_BAR && bar_gen != T.wait_gen) go = true;
        else if (T.state == WAIT_WARP && warps[t / 32].gen != T.wait_gen) go = true;
        if (!go) continue;
        T.state = RUN;
        cur = &T;
        cur_tidx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
        swapcontext(&sched, &T.ctx);
        progress = true;
        if (T.state == DONE) ++done;
      }
      if (!progress) {
        fprintf(stderr, "deadlock in CTA %u:", bi);
        for (int t = 0; t < nt; ++t) fprintf(stderr, " %d", th[t].state);
        die("deadlock");
      }
    }
    for (size_t i = dyn; i < dyn + kGuard; ++i)
      if (sm[i] != 0xff) die("shared memory written past its size");
  }
  cur = nullptr;
}

inline float bf(uint16_t h) { return qq_bf16_to_f32(h); }
inline float hf(uint16_t h) { return qq_f16_to_f32(h); }

}  // namespace emu

/* ---- the CUDA device API the kernels use ---- */
#undef threadIdx
#undef blockIdx
#undef blockDim
#undef gridDim
#define threadIdx (emu::cur_tidx)
#define blockIdx (emu::cur_bidx)
#define blockDim (emu::cur_bdim)
#define gridDim (emu::cur_gdim)

inline void __syncthreads() { emu::syncthreads(); }
inline int __ffs(unsigned x) { return __builtin_ffs((int)x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
template <class T> inline T __ldg(const T *p) {
  emu::check_global(p, sizeof(T));
  return *p;
}

enum { OP_SHFL = 1, OP_XOR, OP_UP, OP_BALLOT, OP_LDSM, OP_LDSM_T, OP_MMA_BF16, OP_MMA_F16 };
template <class V> inline V emu_shfl(int op, unsigned mask, V v, int arg) {
  static_assert(sizeof(V) == 4, "32-bit shuffles only");
  if (mask != 0xffffffffu) emu::die("partial shuffle mask");
  struct In {
    uint32_t v;
    int arg;
  } in;
  memcpy(&in.v, &v, 4);
  in.arg = arg;
  uint32_t r;
  emu::collective(op, &in, sizeof in, &r, 4, [op](emu::Warp &w) {
    for (int l = 0; l < 32; ++l) {
      In x;
      memcpy(&x, w.in[l], sizeof x);
      int src = l;
      if (op == OP_SHFL) src = x.arg & 31;
      else if (op == OP_XOR) src = l ^ (x.arg & 31);
      else if (op == OP_UP) src = l >= x.arg ? l - x.arg : l;
      memcpy(w.out[l], w.in[src], 4);
    }
  });
  V o;
  memcpy(&o, &r, 4);
  return o;
}
template <class V> inline V __shfl_sync(unsigned m, V v, int s) { return emu_shfl(OP_SHFL, m, v, s); }
template <class V> inline V __shfl_xor_sync(unsigned m, V v, int s) { return emu_shfl(OP_XOR, m, v, s); }
template <class V> inline V __shfl_up_sync(unsigned m, V v, unsigned s) { return emu_shfl(OP_UP, m, v, (int)s); }
inline unsigned __ballot_sync(unsigned mask, int p) {
  if (mask != 0xffffffffu) emu::die("partial ballot mask");
  int in = p != 0;
  unsigned r;
  emu::collective(OP_BALLOT, &in, 4, &r, 4, [](emu::Warp &w) {
    unsigned b = 0;
    for (int l = 0; l < 32; ++l) {
      int x;
      memcpy(&x, w.in[l], 4);
      if (x) b |= 1u << l;
    }
    for (int l = 0; l < 32; ++l) memcpy(w.out[l], &b, 4);
  });
  return r;
}

inline void *emu_dyn_smem() { return emu::smem; }
inline uint32_t smem_u32(const void *p) {
  const uint8_t *q = (const uint8_t *)p;
  if (q < emu::smem || q > emu::smem + emu::smem_size) emu::die("smem_u32 of a non-shared pointer");
  return (uint32_t)(q - emu::smem);
}
inline void cp_async16(uint32_t dst, const void *src, bool valid) {
  emu::check_smem(dst, 16, 16);
  if (valid) {
    if ((uintptr_t)src % 16) emu::die("misaligned cp.async source");
    emu::check_global(src, 16);
  }
  emu::Copy c{dst, src, valid};
  if (emu::rng() & 1) emu::do_copy(c);
  else emu::cur->open.push_back(c);
}
inline void cp_async_commit() {
  emu::cur->groups.push_back(std::move(emu::cur->open));
  emu::cur->open.clear();
}
template <int N> inline void cp_async_wait() {
  auto &g = emu::cur->groups;
  while ((int)g.size() > N) {
    for (const emu::Copy &c : g.front()) emu::do_copy(c);
    g.erase(g.begin());
  }
}

/* ldmatrix .x4: lane l gives the address of row l%8 of matrix l/8. Without .trans thread t receives
 * (row t/4, columns 2(t%4), 2(t%4)+1) of each matrix; with .trans (rows 2(t%4), 2(t%4)+1, column t/4). */
inline void emu_ldsm(int op, uint32_t r[4], uint32_t addr) {
  emu::check_smem(addr, 16, 16);
  emu::collective(op, &addr, 4, r, 16, [op](emu::Warp &w) {
    uint32_t a[32];
    for (int l = 0; l < 32; ++l) memcpy(&a[l], w.in[l], 4);
    auto el = [&](int mat, int row, int col) {
      uint16_t h;
      memcpy(&h, emu::smem + a[mat * 8 + row] + 2 * col, 2);
      return (uint32_t)h;
    };
    for (int t = 0; t < 32; ++t) {
      uint32_t o[4];
      for (int i = 0; i < 4; ++i) {
        if (op == OP_LDSM)
          o[i] = el(i, t / 4, 2 * (t % 4)) | el(i, t / 4, 2 * (t % 4) + 1) << 16;
        else
          o[i] = el(i, 2 * (t % 4), t / 4) | el(i, 2 * (t % 4) + 1, t / 4) << 16;
      }
      memcpy(w.out[t], o, 16);
    }
  });
}
inline void ldsm_x4(uint32_t r[4], uint32_t addr) { emu_ldsm(OP_LDSM, r, addr); }
inline void ldsm_x4_t(uint32_t r[4], uint32_t addr) { emu_ldsm(OP_LDSM_T, r, addr); }

/* mma.m16n8k16 (PTX ISA "Matrix Fragments for mma.m16n8k16 with floating point type"):
 *   A: a0,a1 (g, 2c+{0,1}), a2,a3 (g+8, 2c+{0,1}), a4,a5 (g, 2c+8+{0,1}), a6,a7 (g+8, 2c+8+{0,1})
 *   B: b0,b1 (k 2c+{0,1}, n g), b2,b3 (k 2c+8+{0,1}, n g)
 *   C: c0,c1 (g, 2c+{0,1}), c2,c3 (g+8, 2c+{0,1})        with g = lane/4, c = lane%4. */
inline void emu_mma(int op, float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  struct In {
    uint32_t a[4], b[2];
    float c[4];
  } in;
  memcpy(in.a, a, 16);
  in.b[0] = b0;
  in.b[1] = b1;
  memcpy(in.c, c, 16);
  emu::collective(op, &in, sizeof in, c, 16, [op](emu::Warp &w) {
    In x[32];
    for (int l = 0; l < 32; ++l) memcpy(&x[l], w.in[l], sizeof(In));
    auto cv = [op](uint32_t reg, int half) {
      const uint16_t h = (uint16_t)(reg >> (16 * half));
      return op == OP_MMA_BF16 ? emu::bf(h) : emu::hf(h);
    };
    auto A = [&](int r, int k) { return cv(x[(r % 8) * 4 + (k % 8) / 2].a[(r >= 8) + 2 * (k >= 8)], k % 2); };
    auto B = [&](int k, int n) { return cv(x[n * 4 + (k % 8) / 2].b[k >= 8], k % 2); };
    float D[16][8];
    for (int r = 0; r < 16; ++r)
      for (int n = 0; n < 8; ++n) {
        double s = x[(r % 8) * 4 + n / 2].c[2 * (r >= 8) + n % 2];
        for (int k = 0; k < 16; ++k) s += (double)A(r, k) * B(k, n);
        D[r][n] = (float)s;
      }
    for (int l = 0; l < 32; ++l) {
      float o[4];
      for (int e = 0; e < 4; ++e) o[e] = D[l / 4 + 8 * (e / 2)][2 * (l % 4) + e % 2];
      memcpy(w.out[l], o, 16);
    }
  });
}
template <typename T> struct Mma16;
template <> struct Mma16<__nv_bfloat16> {
  static void mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) { emu_mma(OP_MMA_BF16, c, a, b0, b1); }
  static uint32_t pack(float lo, float hi) { return (uint32_t)qq_f32_to_bf16(lo) | (uint32_t)qq_f32_to_bf16(hi) << 16; }
};
template <> struct Mma16<__half> {
  static void mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) { emu_mma(OP_MMA_F16, c, a, b0, b1); }
  static uint32_t pack(float lo, float hi) { return (uint32_t)qq_f32_to_f16(lo) | (uint32_t)qq_f32_to_f16(hi) << 16; }
};

inline cudaError_t emu_cudaFuncSetAttribute(...) { return cudaSuccess; }
template <class F> inline void emu_launch(F f, dim3 grid, dim3 block, size_t smem = 0, cudaStream_t = 0) {
  emu::launch(std::function<void()>(f), grid, block, smem);
}
