/* harness_q8.cpp — elementwise.cu's per-row int8 quantization (transformed by transform_q8.py) on the
 * fiber emulator: the register kernel k_quantize_rows_i8_reg, through the launcher the backend uses,
 * against the simple kernel k_quantize_rows_i8 byte for byte (codes) and bit for bit (scales), for
 * fp32 / bf16 / fp16 rows, dynamic and static scales, k from 8 to 70000 (every NV variant and the
 * fallbacks: k not a multiple of the vector width, rows past 8 vectors per thread), zero rows.
 *   bash tools/cuda-emu/build_q8.sh && /tmp/cuda-emu/harness_q8 [seed] */
#include "cuda_types.cuh"
#include "emu.h"
#include "emu_kernel.h"

#include <math.h>

using namespace qq;
#include "q8_t.cc"

template <typename T> static T from_float(float v);
template <> float from_float<float>(float v) { return v; }
template <> __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <> __half from_float<__half>(float v) { return __float2half_rn(v); }

static int fails = 0, cases = 0;

template <typename T> static void run_case(const char *tn, int m, int k, float act_scale, bool zero_row, std::mt19937 &g) {
  /* 16-byte aligned rows (as the activation buffers are), 64 bytes of slack */
  std::vector<uint8_t> xb((size_t)m * k * sizeof(T) + 64);
  T *x = reinterpret_cast<T *>(((uintptr_t)xb.data() + 15) & ~(uintptr_t)15);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (size_t i = 0; i < (size_t)m * k; i++) x[i] = from_float<T>(zero_row && i < (size_t)k ? 0.0f : nd(g) * 3.0f);
  std::vector<uint8_t> qa((size_t)m * k + 32, 0xAB), qb((size_t)m * k + 32, 0xCD);
  int8_t *q_ref = reinterpret_cast<int8_t *>(((uintptr_t)qa.data() + 15) & ~(uintptr_t)15);
  int8_t *q_new = reinterpret_cast<int8_t *>(((uintptr_t)qb.data() + 15) & ~(uintptr_t)15);
  std::vector<float> s_ref(m, -1.0f), s_new(m, -2.0f);
  emu_launch([&] { k_quantize_rows_i8<T>(x, k, act_scale, q_ref, s_ref.data()); }, m, row_threads(k), 128);
  launch_quantize_rows_i8<T>(0, x, m, k, act_scale, q_new, s_new.data());
  size_t bad = 0;
  for (size_t i = 0; i < (size_t)m * k; i++) bad += q_ref[i] != q_new[i];
  int bad_s = 0;
  for (int r = 0; r < m; r++) bad_s += memcmp(&s_ref[r], &s_new[r], 4) != 0;
  constexpr int E = 16 / (int)sizeof(T);
  const int nvec = k / E, threads = nvec >= 1024 ? 1024 : (nvec + 31) / 32 * 32;
  const int per = threads ? (nvec + threads - 1) / threads : 0;
  const char *path = k % E || per > 8 || nvec == 0 ? "simple" : per <= 1 ? "reg NV1" : per <= 2 ? "reg NV2" : per <= 4 ? "reg NV4" : "reg NV8";
  cases++;
  const bool ok = bad == 0 && bad_s == 0;
  if (!ok) fails++;
  printf("%-5s m %d k %6d %-7s scale %-6s%s: %zu codes and %d scales differ%s\n", tn, m, k, path,
         act_scale > 0 ? "static" : "dyn", zero_row ? " zero row 0" : "", bad, bad_s, ok ? "" : "  FAIL");
}

int main(int argc, char **argv) {
  std::mt19937 g(argc > 1 ? atoi(argv[1]) : 1);
  const int ks[] = {8, 80, 84, 1000, 3584, 8200, 18944, 40000, 70000};
  for (int k : ks)
    for (int m : {1, 3})
      for (float as : {0.0f, 0.02f}) {
        const bool zr = m == 3 && as == 0.0f;
        if (k >= 40000 && m == 3) continue; /* the big rows once is enough (emulation is slow) */
        run_case<float>("fp32", m, k, as, zr, g);
        run_case<__nv_bfloat16>("bf16", m, k, as, zr, g);
        run_case<__half>("fp16", m, k, as, zr, g);
      }
  printf("%d/%d ok\n", cases - fails, cases);
  return fails ? 1 : 0;
}
