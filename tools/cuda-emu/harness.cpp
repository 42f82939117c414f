/* harness.cpp — attention.cu (transformed by transform.py) run on the fiber emulator against an fp64
 * reference: qq_cuda_attention end to end (plan, append, attention, combine) on host memory. */
#include "cuda_types.cuh"
#include "emu.h"
#include "emu_kernel.h"
#include "attn_t.cc"

#include <math.h>

#include <string>

extern "C" qq_status qq_cuda_fail(qq_error *err, cudaError_t e, const char *stmt, const char *file, int line) {
  return qq_error_set(err, QQ_ERR_CUDA, "cuda: %s failed (%s:%d)", stmt, file, line);
}

struct Case {
  qq_act_dtype act;
  int hd, nkv, G, bt, sm_count;
  std::vector<std::pair<int, int>> seqs; /* (n_new, n_past) */
};

static uint16_t enc(qq_act_dtype a, float x) { return a == QQ_ACT_BF16 ? qq_f32_to_bf16(x) : qq_f32_to_f16(x); }
static float dec(qq_act_dtype a, uint16_t h) { return a == QQ_ACT_BF16 ? qq_bf16_to_f32(h) : qq_f16_to_f32(h); }

static void *amalloc(size_t n) {
  n = (n + 63) & ~(size_t)63;
  void *p = aligned_alloc(64, n ? n : 64);
  return p;
}

static double run_case(const Case &cs, std::mt19937_64 &R, int *path_out, int *splits_out, int *bm_out) {
  const int hd = cs.hd, nkv = cs.nkv, nh = nkv * cs.G, bt = cs.bt;
  const qq_act_dtype act = cs.act;
  const int ns = (int)cs.seqs.size();
  std::normal_distribution<float> N(0.f, 1.f);
  /* rows in shuffled sequence order; blocks shuffled */
  std::vector<int> order(ns);
  for (int i = 0; i < ns; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), R);
  std::vector<qq_cuda_attn_seq> seqs(ns);
  int rows = 0, nblk_total = 0, max_new = 0, max_len = 0;
  for (int i : order) {
    seqs[i].row = rows;
    rows += cs.seqs[i].first;
  }
  std::vector<int> nblk(ns);
  for (int i = 0; i < ns; ++i) {
    seqs[i].n_new = cs.seqs[i].first;
    seqs[i].n_past = cs.seqs[i].second;
    const int len = seqs[i].n_new + seqs[i].n_past;
    nblk[i] = cdiv(len, bt) + 1; /* one spare block each: never read */
    seqs[i].block_off = nblk_total;
    nblk_total += nblk[i];
    max_new = std::max(max_new, seqs[i].n_new);
    max_len = std::max(max_len, len);
  }
  const int n_blocks = nblk_total + 3;
  std::vector<int32_t> ids(n_blocks);
  for (int i = 0; i < n_blocks; ++i) ids[i] = i;
  std::shuffle(ids.begin(), ids.end(), R);
  std::vector<int32_t> blocks(ids.begin(), ids.begin() + nblk_total);

  const size_t cache_el = (size_t)n_blocks * bt * nkv * hd;
  uint16_t *kc = (uint16_t *)amalloc(cache_el * 2), *vc = (uint16_t *)amalloc(cache_el * 2);
  for (size_t i = 0; i < cache_el; ++i) kc[i] = vc[i] = 0x7fc1; /* NaN (bf16 and fp16) */
  /* host-side logical K/V: [seq][pos][kvh][hd] floats */
  std::vector<std::vector<float>> K(ns), V(ns);
  uint16_t *q = (uint16_t *)amalloc((size_t)rows * nh * hd * 2), *k = (uint16_t *)amalloc((size_t)rows * nkv * hd * 2),
           *v = (uint16_t *)amalloc((size_t)rows * nkv * hd * 2), *out = (uint16_t *)amalloc((size_t)rows * nh * hd * 2);
  for (size_t i = 0; i < (size_t)rows * nh * hd; ++i) out[i] = 0x7fc1;
  std::vector<float> Qf((size_t)rows * nh * hd);
  for (size_t i = 0; i < Qf.size(); ++i) {
    q[i] = enc(act, N(R));
    Qf[i] = dec(act, q[i]);
  }
  for (int s = 0; s < ns; ++s) {
    const int len = seqs[s].n_new + seqs[s].n_past;
    K[s].resize((size_t)len * nkv * hd);
    V[s].resize((size_t)len * nkv * hd);
    for (int pos = 0; pos < len; ++pos)
      for (int h = 0; h < nkv; ++h)
        for (int d = 0; d < hd; ++d) {
          const uint16_t kk = enc(act, N(R)), vv = enc(act, N(R));
          const size_t li = ((size_t)pos * nkv + h) * hd + d;
          K[s][li] = dec(act, kk);
          V[s][li] = dec(act, vv);
          if (pos < seqs[s].n_past) {
            const size_t ci = (((size_t)blocks[seqs[s].block_off + pos / bt] * bt + pos % bt) * nkv + h) * hd + d;
            kc[ci] = kk;
            vc[ci] = vv;
          } else {
            const size_t ri = ((size_t)(seqs[s].row + pos - seqs[s].n_past) * nkv + h) * hd + d;
            k[ri] = kk;
            v[ri] = vv;
          }
        }
  }
  emu::ranges.clear();
  emu::reg(kc, cache_el * 2);
  emu::reg(vc, cache_el * 2);
  emu::reg(q, (size_t)rows * nh * hd * 2);
  emu::reg(blocks.data(), blocks.size() * 4);
  emu::reg(seqs.data(), seqs.size() * sizeof(qq_cuda_attn_seq));

  qq_cuda_ctx c;
  memset(&c, 0, sizeof c);
  c.act = act;
  c.sm_count = cs.sm_count;
  c.smem_optin = 227 * 1024;
  qq_attn_params p = {nh, nkv, hd, bt, (float)(1.0 / sqrt((double)hd))};
  qq_cuda_attn_batch b = {seqs.data(), blocks.data(), seqs.data(), ns, rows, max_new, max_len};
  const size_t ws = qq_cuda_attention_ws_bytes(&c, &p, &b);
  c.ws = ws ? amalloc(ws) : NULL;
  c.ws_bytes = ws;
  if (ws) memset(c.ws, 0xff, ws);
  AttnPlan pl;
  if (attn_plan(&c, &p, &b, true, &pl, NULL) != QQ_OK) emu::die("plan");
  *path_out = pl.path;
  *splits_out = pl.n_splits;
  *bm_out = pl.bm;
  qq_error err;
  memset(&err, 0, sizeof err);
  if (qq_cuda_attention(&c, &p, &b, q, k, v, kc, vc, out, &err) != QQ_OK) {
    fprintf(stderr, "attention failed: %s\n", err.msg);
    exit(1);
  }
  /* cache check: every valid position holds its value */
  for (int s = 0; s < ns; ++s)
    for (int pos = 0; pos < seqs[s].n_new + seqs[s].n_past; ++pos)
      for (int h = 0; h < nkv; ++h)
        for (int d = 0; d < hd; ++d) {
          const size_t ci = (((size_t)blocks[seqs[s].block_off + pos / bt] * bt + pos % bt) * nkv + h) * hd + d;
          const size_t li = ((size_t)pos * nkv + h) * hd + d;
          if (dec(act, kc[ci]) != K[s][li] || dec(act, vc[ci]) != V[s][li]) emu::die("cache content");
        }
  /* reference */
  double maxerr = 0, maxv = 0;
  for (int s = 0; s < ns; ++s) {
    for (float x : V[s]) maxv = std::max(maxv, (double)fabsf(x));
    for (int i = 0; i < seqs[s].n_new; ++i)
      for (int h = 0; h < nh; ++h) {
        const int kvh = h / cs.G, L = seqs[s].n_past + i + 1;
        const float *qr = &Qf[((size_t)(seqs[s].row + i) * nh + h) * hd];
        std::vector<double> sc(L);
        double mx = -1e300;
        for (int j = 0; j < L; ++j) {
          double d = 0;
          for (int e = 0; e < hd; ++e) d += (double)qr[e] * K[s][((size_t)j * nkv + kvh) * hd + e];
          sc[j] = d * p.scale;
          mx = std::max(mx, sc[j]);
        }
        double sum = 0;
        for (int j = 0; j < L; ++j) sum += (sc[j] = exp(sc[j] - mx));
        for (int e = 0; e < hd; ++e) {
          double o = 0;
          for (int j = 0; j < L; ++j) o += sc[j] * V[s][((size_t)j * nkv + kvh) * hd + e];
          o /= sum;
          const float got = dec(act, out[((size_t)(seqs[s].row + i) * nh + h) * hd + e]);
          const double err = fabs(got - o);
          if (!(err <= 1e30)) return INFINITY; /* NaN: unwritten or poisoned */
          maxerr = std::max(maxerr, err);
        }
      }
  }
  free(kc), free(vc), free(q), free(k), free(v), free(out), free(c.ws);
  return maxerr / maxv;
}

int main(int argc, char **argv) {
  std::mt19937_64 R(argc > 1 ? atoll(argv[1]) : 1);
  const char *only = argc > 2 ? argv[2] : NULL;
  std::vector<Case> cases;
  for (qq_act_dtype act : {QQ_ACT_BF16, QQ_ACT_F16})
    for (int hd : {64, 128}) {
      /* prefill: several sequences, different lengths, n_past > 0, GQA 1/4/7, odd block sizes */
      cases.push_back({act, hd, 2, 4, 16, 1, {{70, 0}, {33, 20}, {1, 5}}});
      cases.push_back({act, hd, 1, 7, 5, 1, {{40, 13}, {19, 0}}});
      cases.push_back({act, hd, 2, 1, 3, 1, {{150, 0}, {9, 77}}});
      /* prefill with split-K (few tiles, long context, many SMs) */
      cases.push_back({act, hd, 1, 4, 16, 132, {{45, 530}}});
      /* decode (n_new·G ≤ 16) with and without splits */
      cases.push_back({act, hd, 2, 4, 16, 132, {{1, 600}, {1, 37}, {2, 300}}});
      cases.push_back({act, hd, 1, 7, 3, 1, {{1, 90}, {2, 10}}});
    }
  /* larger prefill: many tiles per sequence, a chunk after a long past, Qwen-like GQA 7 */
  cases.push_back({QQ_ACT_BF16, 128, 2, 7, 16, 1, {{200, 0}, {130, 300}, {1, 64}}});
  cases.push_back({QQ_ACT_F16, 64, 1, 7, 7, 132, {{150, 260}}});
  int fails = 0, n = 0;
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const Case &cs = cases[ci];
    if (only && atoi(only) != (int)ci) continue;
    int path, splits, bm;
    const long c0 = emu::n_collectives;
    const double e = run_case(cs, R, &path, &splits, &bm);
    const double tol = cs.act == QQ_ACT_BF16 ? 2e-2 : 4e-3;
    const bool ok = e <= tol;
    fails += !ok;
    ++n;
    std::string sq;
    for (auto &s : cs.seqs) sq += " (" + std::to_string(s.first) + "," + std::to_string(s.second) + ")";
    printf("case %2zu %s hd %3d nkv %d G %d bt %2d sms %3d path %d bm %3d splits %2d seqs%s: err/max|v| %.2e %s "
           "[%ld collectives]\n",
           ci, cs.act == QQ_ACT_BF16 ? "bf16" : "fp16", cs.hd, cs.nkv, cs.G, cs.bt, cs.sm_count, path, bm, splits,
           sq.c_str(), e, ok ? "ok" : "FAIL", emu::n_collectives - c0);
    fflush(stdout);
  }
  printf("%d/%d ok, barriers completed by exits: %ld\n", n - fails, n, emu::early_exit_barriers);
  return fails ? 1 : 0;
}
