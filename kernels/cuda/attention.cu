/* attention.cu — paged causal attention with GQA over a packed, variable-length batch (the CUDA side of
 * qq_op_attention; kernels/cpu/cpu_backend.c cpu_attention / cpu_kv_copy is the specification).
 *
 * What is computed
 *   For each sequence s of the batch (qq_cuda_attn_seq: row, n_new, n_past, block_off):
 *   1. append: the n_new new key/value rows k/v[row + i] go to cache position n_past + i, i.e. block
 *      blocks[block_off + pos / bt], slot pos % bt;
 *   2. attend: query token i (position n_past + i) of query head h attends over positions
 *      0 .. n_past + i of kv head h / G (G = n_heads / n_kv_heads), softmax(scale · q·k) in fp32,
 *      reading every key/value (past and new alike) from the cache through the block table.
 *
 * Layouts (elements of the activation dtype T = ctx->act: fp32, bf16 or fp16; all row-major)
 *   q, out        [total_rows][n_heads][hd]      (the heads of one GQA group are adjacent)
 *   k, v          [total_rows][n_kv_heads][hd]
 *   k/v cache     [n_blocks][bt][n_kv_heads][hd] (one token's kv heads are one contiguous run)
 *   blocks        int32, the sequences' block tables back to back (sequence s from block_off)
 *   ctx->ws       split-K partials, fp32: ml [total_rows·n_heads][n_splits][2] = (max in log2 units,
 *                 sum of exp), then (256-byte aligned) o [total_rows·n_heads][n_splits][hd], unnormalized.
 *
 * Work decomposition (shared by every kernel below)
 *   The rows of a (sequence, kv head) are the pairs (token t, head g of the group), numbered
 *   r = t·G + g: token-major, the order q already has in memory. A CTA takes a tile of BM consecutive
 *   rows of one sequence and one kv head — rows never mix sequences — so all the query heads of a GQA
 *   group share every K/V tile the CTA loads: decode (n_new = 1) reads the cache once per group instead
 *   of once per head and fills the MMA's 16 rows with the G heads instead of padding one row to 16, and
 *   a prefill tile spans BM/G tokens, so its causal diagonal (the masked, half-wasted key tile) is small. A
 *   tile's causal frontier is per row (position n_past + r / G), so masking is an element-wise compare
 *   applied only where a key tile crosses a row's frontier, and key tiles wholly past a warp's last row
 *   are skipped.
 *   The grid is one-dimensional: blockIdx.x = (tile · n_splits + split) · n_kv_heads + kv_head. A CTA
 *   finds its (sequence, tile) by a warp prefix scan over the device sequence records — no work list,
 *   no host-written device memory, and launch geometry computed from seqs_host only (graph-capturable;
 *   CTAs whose tile or split does not exist on the device exit at once). Tiles of a sequence run last
 *   first: they have the most keys under the causal mask, so heavy CTAs start in the first wave.
 *   Split-K: when the tiles × kv heads do not fill the GPU (decode, or a short chunk over a long
 *   context), each tile's key range is cut into chunks of split_len keys (a multiple of the key tile);
 *   every split writes (m, l, o) partials and attn_combine merges them with log-sum-exp. A tile that
 *   needs one split only writes its output directly.
 *
 * Kernels
 *   attn_append      new k/v rows → cache slots (8 tokens per CTA, 16-byte copies when aligned).
 *   attn_mma         bf16/fp16, hd 64/128: FA2-style tensor-core kernel. mma.sync m16n8k16 for S = QKᵀ
 *                    and O = PV with fp32 accumulators; Q fragments held in registers for the whole key
 *                    loop; P goes from the S accumulators straight into A fragments (same lane layout);
 *                    online softmax in the log2 domain (one ex2.approx per score); K/V tiles of 64 keys
 *                    gathered from the paged cache row by row with cp.async (16 B per request, zero-filled
 *                    past the end so masked scores never meet garbage: 0·NaN would poison O) into
 *                    XOR-swizzled shared memory (chunk ^ (row & 7): ldmatrix rows hit 8 distinct bank
 *                    groups) with a 2-3 stage pipeline; block ids for the next tile are fetched one tile
 *                    ahead (as cache offsets in shared memory) so the gather does not stall behind a
 *                    dependent load after each barrier. Two shapes of one template (MmaShape):
 *                      prefill: 4 warps along rows, 32 rows each (two m16 row tiles: every K and V
 *                               fragment read from shared memory feeds two MMAs — the kernel is bound
 *                               by shared-memory reads), BM 128, each warp all 64 keys of a tile, 2 CTAs
 *                               per SM (FlashAttention-2's hd-128 tile);
 *                      decode:  one warp of rows (BM 16: n_new·G ≤ 16) and 4 warps splitting each key
 *                               tile 4 × 16 keys, merged through shared memory at the end (decode is
 *                               memory-bound: the MMA only saves the CUDA cores the dot products).
 *   attn_simt        fp32 (the mode that matches the CPU backend) and any other head_dim ≤ 512, any
 *                    dtype: 16 rows × 32 keys per step on CUDA cores, lane = key for q·k, lane = dims
 *                    for p·v. Same tiling, splits and partials as attn_mma.
 *   attn_combine     log-sum-exp merge of the split partials, one CTA per output row (only rows of tiles
 *                    with > 1 split).
 *   attn_kv_copy     qq_cuda_kv_copy: positions 0..n-1 of one block table to another.
 *
 * Constants (chosen on paper, not yet measured; re-measure on the target GPU and write the numbers here):
 *   prefill BM 128 × BN 64: a 32 KB K/V tile feeds 4.2 MFLOP (hd 128), 128 FLOP per byte moved from L2,
 *   so ~350 TFLOP/s needs ~2.7 TB/s of L2→SMEM traffic (BM 64 would need twice that). Measured (H200,
 *   Qwen2.5-7B heads, 2048 tokens) with 8 warps × 16 rows: 181-191 TFLOP/s, 1 CTA/SM at 235 registers,
 *   stalled on shared-memory reads (~16 FLOP per byte of ldmatrix). Now 4 warps × 32 rows: per 64 keys
 *   and hd 128 a warp issues 32 K + 32 V + 32 Q ldmatrix for 256 MMAs (was 64 for 128): ~26 FLOP per
 *   byte. hd 128 holds O (128 registers) + S of 32 keys at a time (64) and re-reads Q per k-step; 255
 *   registers, ptxas spills only a few values live across the key loop (prologue/epilogue loads, none
 *   inside the loop); 2 CTAs × 96 KB (2 stages). SUB = 64 (S of all 64 keys at once, half the Q reads)
 *   spills ~5 values inside the loop: measure both. Decode: 3 stages of 64
 *   keys keep ≥ 64 KB of K/V in flight per CTA, 2 CTAs per SM; split_len ≥ 256 keys keeps each split's
 *   fixed cost (Q load, epilogue, partial write) small against its loads.
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>

#include <type_traits>

#include "cuda_types.cuh"

using qq::from_f;
using qq::to_f;

namespace {

/* ---- index math shared by host and device (tests mirror it on the CPU) ----------------------------- */

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kAppendTok = 8;   /* tokens per CTA of the append / kv_copy kernels */
constexpr int kSimtBM = 16;     /* rows per CTA of attn_simt */
constexpr int kSimtBN = 32;     /* keys per step of attn_simt (one per lane) */
constexpr int kSimtMaxHD = 512; /* o[] per lane is hd / 32 registers per row */
constexpr int kMinSplitTiles = 4; /* a split covers at least 4 key tiles */

__host__ __device__ __forceinline__ int cdiv(int a, int b) { return (a + b - 1) / b; }

/* Row tiles of one sequence: its n_new·G rows in tiles of bm. */
__host__ __device__ __forceinline__ int seq_tiles(int n_new, int group, int bm) {
  return n_new > 0 ? cdiv(n_new * group, bm) : 0;
}

/* Where one CTA's rows are and which keys they need. Rows r0 .. r0+rows-1 of the (sequence, kv head);
 * kv_len keys in all (the causal frontier of the tile's last row + 1), cut into n_used splits. */
struct TileGeom {
  int r0, rows;
  int kv_len;
  int n_used;
};
__host__ __device__ __forceinline__ TileGeom tile_geom(int n_new, int n_past, int group, int bm, int tile,
                                                       int n_splits, int split_len) {
  TileGeom g;
  g.r0 = tile * bm;
  const int R = n_new * group;
  g.rows = R - g.r0 < bm ? R - g.r0 : bm;
  g.kv_len = n_past + (g.r0 + g.rows - 1) / group + 1;
  const int need = cdiv(g.kv_len, split_len);
  g.n_used = need < n_splits ? need : n_splits;
  return g;
}
/* Keys [kb, ke) of split `split` (< n_used); the last split runs to kv_len, so a device sequence
 * longer than the host copy promised is still attended in full. */
__host__ __device__ __forceinline__ void split_keys(const TileGeom &g, int split, int split_len, int *kb, int *ke) {
  *kb = split * split_len;
  *ke = split == g.n_used - 1 ? g.kv_len : *kb + split_len;
}
/* The rows [wr0, wr0 + n) of one warp within its tile: active when any is a real row; causal frontiers
 * (query positions) of its first and last real row. */
struct WarpRows {
  bool active;
  int q_min, q_max;
};
__host__ __device__ __forceinline__ WarpRows warp_rows(const TileGeom &g, int n_past, int group, int w_off, int n) {
  WarpRows w;
  const int wr0 = g.r0 + w_off, wrl = wr0 + n - 1 < g.r0 + g.rows - 1 ? wr0 + n - 1 : g.r0 + g.rows - 1;
  w.active = w_off < g.rows;
  w.q_min = n_past + wr0 / group;
  w.q_max = n_past + wrl / group;
  return w;
}
/* A warp's key slice [kw0, kw0 + n): nothing to do when it starts past the last row's frontier; an
 * element-wise causal compare only when it ends past the first row's. */
__host__ __device__ __forceinline__ bool slice_skipped(const WarpRows &w, int kw0) { return !w.active || kw0 > w.q_max; }
__host__ __device__ __forceinline__ bool slice_masked(const WarpRows &w, int kw0, int n) { return kw0 + n - 1 > w.q_min; }

/* Row r of a (sequence, kv head) → element offset of its query/output row (token-major, head-minor). */
__host__ __device__ __forceinline__ int64_t qo_row(int row_s, int r, int group, int nh, int kvh) {
  const int t = r / group, g = r - t * group;
  return (int64_t)(row_s + t) * nh + (int64_t)kvh * group + g;
}
/* Block-table index and slot of position pos; bt_shift = log2(bt) when bt is a power of two (the usual
 * 16), else -1: a runtime integer division is ~20 instructions, and the gather does two per row per tile. */
__host__ __device__ __forceinline__ int blk_of(int pos, int bt, int bt_shift) {
  return bt_shift >= 0 ? pos >> bt_shift : pos / bt;
}
__host__ __device__ __forceinline__ int slot_of(int pos, int bt, int bt_shift) {
  return bt_shift >= 0 ? pos & (bt - 1) : pos % bt;
}
/* Element offset of (block id bid, slot, kv head kvh) in the cache. */
__host__ __device__ __forceinline__ int64_t cache_off(int bid, int slot, int bt, int nkv, int kvh, int hd) {
  return (((int64_t)bid * bt + slot) * nkv + kvh) * (int64_t)hd;
}
/* Element offset of 16-byte chunk `ch` of row `r` in a shared [rows][HD] 16-bit tile, XOR-swizzled so
 * that the 8 rows an ldmatrix phase reads (same logical chunk) land in 8 different 16-byte bank groups. */
template <int HD> __host__ __device__ __forceinline__ int swz(int r, int ch) { return r * HD + ((ch ^ (r & 7)) << 3); }

/* ldmatrix.x4 source rows. Lane l supplies the address of row (l & 7) of matrix l >> 3.
 * A operand (16×16, row-major, e.g. Q rows × dims): matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7),
 * (rows 0-7, k 8-15), (rows 8-15, k 8-15) = registers a0..a3 of mma.m16n8k16. The same pattern read
 * with .trans from V[key][dim] gives the B fragments of two n8 tiles (b0,b1 of dims 0-7, b0,b1 of
 * dims 8-15). */
__host__ __device__ __forceinline__ int ldsm_a_row(int lane) { return (lane & 7) + (((lane >> 3) & 1) << 3); }
__host__ __device__ __forceinline__ int ldsm_a_chunk(int lane) { return lane >> 4; }
/* B operand from K[key][dim] (no .trans): matrices (keys 0-7, k 0-7), (keys 0-7, k 8-15), (keys 8-15,
 * k 0-7), (keys 8-15, k 8-15) = b0,b1 of key tile 0 and b0,b1 of key tile 1. */
__host__ __device__ __forceinline__ int ldsm_b_row(int lane) { return (lane & 7) + ((lane >> 4) << 3); }
__host__ __device__ __forceinline__ int ldsm_b_chunk(int lane) { return (lane >> 3) & 1; }
/* Accumulator element e (0..3) of lane: row (lane >> 2) + 8·(e >> 1), column 2·(lane & 3) + (e & 1). */
__host__ __device__ __forceinline__ int frag_row(int lane, int e) { return (lane >> 2) + ((e >> 1) << 3); }
__host__ __device__ __forceinline__ int frag_col(int lane, int e) { return ((lane & 3) << 1) + (e & 1); }

__host__ __device__ __forceinline__ float fast_exp2(float x) {
#ifdef __CUDA_ARCH__
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#else
  return exp2f(x);
#endif
}

/* 1/x for the softmax denominators (x >= 1 whenever a row saw a key: its maximum contributes 2^0),
 * rcp.approx refined by one Newton step (≤ 1 ulp) instead of IEEE division, whose slow-path subroutine
 * call makes ptxas spill the values live across it; 0 for x <= 0 (a row that saw nothing). */
__host__ __device__ __forceinline__ float inv_or_zero(float x) {
#ifdef __CUDA_ARCH__
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  r = fmaf(r, fmaf(-x, r, 1.f), r);
  return x > 0.f ? r : 0.f;
#else
  return x > 0.f ? 1.f / x : 0.f;
#endif
}

/* ---- kernel arguments ---------------------------------------------------------------------------------- */

struct AttnArgs {
  const qq_cuda_attn_seq *seqs;
  const int32_t *blocks;
  const void *q;
  const void *kc;
  const void *vc;
  void *out;
  float *part_ml; /* [rows·nh][n_splits][2] */
  float *part_o;  /* [rows·nh][n_splits][hd] */
  int n_seqs, nh, nkv, group, hd, bt;
  int bt_shift;   /* log2(bt) when bt is a power of two, else -1 */
  int bm;         /* rows per tile of the attention kernel launched */
  int n_splits, split_len;
  float scale_log2; /* scale · log2(e): scores live in log2 units */
};

/* ---- device primitives ----------------------------------------------------------------------------------- */

constexpr unsigned kFull = 0xffffffffu;

/* Which (sequence, tile) CTA tile number t is: a prefix scan of seq_tiles over the device records, 32
 * sequences per step. Every lane of the calling warp gets the answer; false when t is past the last
 * tile (the host's count was an upper bound). Tiles of a sequence are handed out last first. */
__device__ __forceinline__ bool locate_tile(const qq_cuda_attn_seq *seqs, int n_seqs, int group, int bm, int t,
                            qq_cuda_attn_seq *out, int *tile) {
  const int lane = threadIdx.x & 31;
  int base = 0;
  for (int s0 = 0; s0 < n_seqs; s0 += 32) {
    qq_cuda_attn_seq rec = {0, 0, 0, 0};
    if (s0 + lane < n_seqs) rec = seqs[s0 + lane];
    const int cnt = seq_tiles(rec.n_new, group, bm);
    int incl = cnt;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int v = __shfl_up_sync(kFull, incl, o);
      if (lane >= o) incl += v;
    }
    const unsigned hit = __ballot_sync(kFull, t < base + incl);
    if (hit) {
      const int src = __ffs(hit) - 1;
      out->row = __shfl_sync(kFull, rec.row, src);
      out->n_new = __shfl_sync(kFull, rec.n_new, src);
      out->n_past = __shfl_sync(kFull, rec.n_past, src);
      out->block_off = __shfl_sync(kFull, rec.block_off, src);
      const int first = base + __shfl_sync(kFull, incl - cnt, src), n = __shfl_sync(kFull, cnt, src);
      *tile = n - 1 - (t - first);
      return true;
    }
    base += __shfl_sync(kFull, incl, 31);
  }
  return false;
}

/* The work of one attention CTA: blockIdx.x = (tile · n_splits + split) · n_kv_heads + kv_head (file
 * header). Finds the tile's sequence and its keys [kb, ke); false when the tile or the split does not
 * exist for the device lengths (the CTA exits). Shared by attn_mma and attn_simt. */
struct CtaWork {
  int kvh, split, tile;
  qq_cuda_attn_seq sq;
  TileGeom g;
  int kb, ke;
};
__device__ __forceinline__ bool cta_work(const AttnArgs &a, int bm, CtaWork *w) {
  int idx = blockIdx.x;
  w->kvh = idx % a.nkv;
  idx /= a.nkv;
  w->split = idx % a.n_splits;
  const int t = idx / a.n_splits;
  if (!locate_tile(a.seqs, a.n_seqs, a.group, bm, t, &w->sq, &w->tile)) return false;
  w->g = tile_geom(w->sq.n_new, w->sq.n_past, a.group, bm, w->tile, a.n_splits, a.split_len);
  if (w->split >= w->g.n_used) return false;
  split_keys(w->g, w->split, a.split_len, &w->kb, &w->ke);
  return true;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* 16-byte global→shared copy; valid = false writes zeros and reads nothing. */
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

/* The 16-bit element types of the tensor-core path: MMA instruction and packing of two floats. */
template <typename T> struct Mma16;
template <> struct Mma16<__nv_bfloat16> {
  static __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
  }
};
template <> struct Mma16<__half> {
  static __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
  }
};

/* ---- append: new k/v rows into their cache slots ---------------------------------------------------------- */

/* One token's kv heads are contiguous both in k/v and in a cache slot, so each token is one run of
 * nkv·hd elements, copied in units U (uint4 when every address is 16-byte aligned). */
template <typename U>
__global__ void __launch_bounds__(128) attn_append(const qq_cuda_attn_seq *__restrict__ seqs, int n_seqs,
                                                   const int32_t *__restrict__ blocks, const U *__restrict__ k,
                                                   const U *__restrict__ v, U *__restrict__ kc, U *__restrict__ vc,
                                                   int bt, int units) {
  qq_cuda_attn_seq sq;
  int tile;
  if (!locate_tile(seqs, n_seqs, 1, kAppendTok, blockIdx.x, &sq, &tile)) return;
  const int i0 = tile * kAppendTok, n = min(kAppendTok, sq.n_new - i0);
  for (int e = threadIdx.x; e < n * units; e += blockDim.x) {
    const int i = e / units, u = e - i * units, pos = sq.n_past + i0 + i;
    const int64_t src = (int64_t)(sq.row + i0 + i) * units + u;
    const int64_t dst = ((int64_t)blocks[sq.block_off + pos / bt] * bt + pos % bt) * units + u;
    kc[dst] = k[src];
    vc[dst] = v[src];
  }
}

template <typename U>
__global__ void __launch_bounds__(128) attn_kv_copy(const int32_t *__restrict__ src_blocks,
                                                    const int32_t *__restrict__ dst_blocks, U *kc, U *vc,
                                                    int n_tokens, int bt, int units) {
  const int p0 = blockIdx.x * kAppendTok, n = min(kAppendTok, n_tokens - p0);
  for (int e = threadIdx.x; e < n * units; e += blockDim.x) {
    const int i = e / units, u = e - i * units, pos = p0 + i;
    const int64_t s = ((int64_t)src_blocks[pos / bt] * bt + pos % bt) * units + u;
    const int64_t d = ((int64_t)dst_blocks[pos / bt] * bt + pos % bt) * units + u;
    kc[d] = kc[s];
    vc[d] = vc[s];
  }
}

/* ---- tensor-core attention ------------------------------------------------------------------------------- */

/* NWM warps along rows (MR m16 row tiles = 16·MR rows each), NWN warps along the keys of a tile (BNW
 * keys each). A warp with MR = 2 reuses every K and V fragment it reads from shared memory for two row
 * tiles (two MMAs per ldmatrix instead of one): the tensor-core path is bound by shared-memory reads, so
 * that halves the bytes per FLOP. Q fragments stay in registers when they take ≤ 32 of them (MR·HD ≤
 * 128); else they are re-read from shared memory at each k-step (hd 128 with MR 2: 64 Q registers next
 * to 128 of O and 64 of S would not fit), which still costs fewer reads than K (MR vs BNW/16 per k-step). */
template <int HD_, int NWM_, int NWN_, int BNW_, int STAGES_, int MINB_, int MR_ = 1, int SUB_ = 0> struct MmaShape {
  static constexpr int HD = HD_, NWM = NWM_, NWN = NWN_, BNW = BNW_, STAGES = STAGES_, MINB = MINB_, MR = MR_;
  static constexpr int SUB = SUB_ ? SUB_ : BNW; /* keys whose scores a warp holds at once */
  static constexpr int WROWS = 16 * MR;                   /* rows per warp */
  static constexpr int BM = WROWS * NWM, BN = BNW * NWN, NT = 32 * NWM * NWN, CH = HD / 8;
  static constexpr bool QREG = MR == 1;                  /* Q fragments held in registers */
  static constexpr int RPT = BN * CH / NT;   /* K/V tile rows each thread loads */
  static constexpr int ROW_STEP = NT / CH;   /* ... spaced this far apart */
  static constexpr int RED_STRIDE = HD + 8;  /* fp32 row stride of the cross-warp merge (fewer bank conflicts) */
  static constexpr size_t Q_BYTES = (size_t)BM * HD * 2;
  static constexpr size_t KV_BYTES = (size_t)BN * HD * 2; /* one of K or V, one stage */
  static constexpr size_t RED_BYTES = NWN > 1 ? (size_t)NWN * BM * (RED_STRIDE + 2) * 4 : 0;
  static constexpr size_t SMEM = Q_BYTES + STAGES * 2 * KV_BYTES + 2 * BN * sizeof(int64_t); /* + key offsets */
  static_assert(HD % 16 == 0 && BNW % 16 == 0 && SUB % 16 == 0 && BNW % SUB == 0, "MMA tiles are 16 wide");
  static_assert(MR >= 1 && STAGES >= 2, "shape");
  static_assert(NT % CH == 0 && BN % ROW_STEP == 0 && BN <= NT, "loader mapping");
  static_assert(RED_BYTES <= STAGES * 2 * KV_BYTES, "merge scratch reuses the K/V stages");
};
/* Prefill: 4 warps × 32 rows (BM 128), 64-key tiles, 2 CTAs per SM (FlashAttention-2's hd-128 tile).
 * hd 128: Q re-read from shared memory, ≤ 255 registers (O 128 + S 64 + addressing), shared memory
 * 32 + 2·32 KB = 96 KB per CTA, two stages (a third would not leave room for the second CTA, which
 * overlaps its loads anyway); hd 64: Q in registers, 16 + 3·16 KB = 64 KB, three stages. */
template <int HD> using PrefillShape = MmaShape<HD, 4, 1, 64, HD == 64 ? 3 : 2, 2, 2, HD == 64 ? 64 : 32>;
/* Decode: 16 rows, 4 warps × 16 keys of each 64-key tile, 3 stages. hd 128: 4 + 96 KB, 2 CTAs/SM;
 * hd 64: 2 + 48 KB, 4 CTAs/SM. */
template <int HD> using DecodeShape = MmaShape<HD, 1, 4, 16, 3, HD == 64 ? 4 : 2>;

template <typename T, typename S>
__global__ void __launch_bounds__(S::NT, S::MINB) attn_mma(const AttnArgs a) {
  constexpr int HD = S::HD, BM = S::BM, BN = S::BN, BNW = S::BNW, NT = S::NT, CH = S::CH, STAGES = S::STAGES;
  constexpr int MR = S::MR, WROWS = S::WROWS;
  constexpr int SUB = S::SUB, NB8 = SUB / 8, NKK = HD / 16, ND8 = HD / 8;
  extern __shared__ __align__(128) uint8_t smem[];
  T *sq = reinterpret_cast<T *>(smem);
  T *skv = reinterpret_cast<T *>(smem + S::Q_BYTES); /* stage st: K at st·2·BN·HD, V at (st·2+1)·BN·HD */
  int64_t *soff = reinterpret_cast<int64_t *>(smem + S::Q_BYTES + STAGES * 2 * S::KV_BYTES); /* [2][BN] */

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp % S::NWM, wn = warp / S::NWM;
  const int G = a.group;

  CtaWork w;
  if (!cta_work(a, BM, &w)) return;
  const int kvh = w.kvh, split = w.split, kb = w.kb, ke = w.ke;
  const qq_cuda_attn_seq sqr = w.sq;
  const TileGeom g = w.g;
  const int nkt = cdiv(ke - kb, BN);

  const T *q = static_cast<const T *>(a.q);
  const T *kc = static_cast<const T *>(a.kc);
  const T *vc = static_cast<const T *>(a.vc);

  /* Q tile → shared (group 0, with the first K/V tile). Rows past the tile are zeros. */
  for (int c = tid; c < BM * CH; c += NT) {
    const int r = c / CH, ch = c % CH;
    const bool ok = r < g.rows;
    const T *src = ok ? q + qo_row(sqr.row, g.r0 + r, G, a.nh, kvh) * HD + ch * 8 : q;
    cp_async16(smem_u32(sq + swz<HD>(r, ch)), src, ok);
  }

  /* K/V gather: thread tid loads chunk tid % CH of rows tid / CH + i·ROW_STEP of a tile. The cache
   * offsets of a tile's BN keys (-1 past the split's end: zero-filled) are computed once per key, by
   * thread `key`, into shared memory (double-buffered: soff[t & 1] for tile t): the block id of the tile
   * after next is fetched while the current one computes (one register per thread across the
   * iteration) and turned into its offset at the end of the iteration. */
  const int ld_row = tid / CH, ld_ch = tid % CH;
  const int32_t *btab = a.blocks + sqr.block_off;
  const int64_t slot_el = (int64_t)a.nkv * HD; /* elements per cache slot */
  auto fetch_bid = [&](int j) {
    const int pos = kb + j * BN + tid;
    return (tid < BN && j < nkt && pos < ke) ? __ldg(btab + blk_of(pos, a.bt, a.bt_shift)) : -1;
  };
  auto put_off = [&](int j, int bid) {
    if (tid < BN)
      soff[(j & 1) * BN + tid] =
          bid >= 0 ? ((int64_t)bid * a.bt + slot_of(kb + j * BN + tid, a.bt, a.bt_shift)) * slot_el : -1;
  };
  const T *kct = kc + kvh * HD + ld_ch * 8, *vct = vc + kvh * HD + ld_ch * 8;
  auto issue_kv = [&](int j) {
    T *sk = skv + (size_t)(j % STAGES) * 2 * BN * HD, *sv = sk + BN * HD;
    const int64_t *so = soff + (j & 1) * BN;
#pragma unroll
    for (int i = 0; i < S::RPT; ++i) {
      const int r = ld_row + i * S::ROW_STEP;
      const int64_t off = so[r];
      const bool ok = off >= 0;
      cp_async16(smem_u32(sk + swz<HD>(r, ld_ch)), kct + (ok ? off : 0), ok);
      cp_async16(smem_u32(sv + swz<HD>(r, ld_ch)), vct + (ok ? off : 0), ok);
    }
  };
  /* prologue: tiles 0 .. STAGES-2 (writing a buffer again comes after the barrier that follows the
   * issue of the tile that read it, two tiles before) */
#pragma unroll
  for (int st = 0; st < STAGES - 1; ++st) {
    put_off(st, fetch_bid(st));
    __syncthreads();
    if (st < nkt) issue_kv(st);
    cp_async_commit();
  }
  /* in flight: the offsets of tile j + STAGES - 1 are in soff at the top of iteration j */
  put_off(STAGES - 1, fetch_bid(STAGES - 1));

  /* This warp's rows wm·WROWS + [0, WROWS): row tile i, fragment half h holds row
   * wm·WROWS + 16·i + frag_row(lane, 2h). Causal frontiers are query positions (INT_MAX for padding
   * rows, which then see every key — all finite — and are never stored). */
  const WarpRows wr = warp_rows(g, sqr.n_past, G, wm * WROWS, WROWS);
  int qpos[MR][2];
#pragma unroll
  for (int i = 0; i < MR; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = wm * WROWS + 16 * i + frag_row(lane, 2 * h);
      qpos[i][h] = r < g.rows ? sqr.n_past + (g.r0 + r) / G : INT_MAX;
    }
  /* ldmatrix addresses. Every row a lane addresses has row & 7 == lane & 7 (fragments start at multiples
   * of 16 rows), so the swizzled byte offset of chunk 2·kk + c, swz<HD>(r, 2·kk + c)·2 − r·HD·2, is
   * 128·(kk >> 2) (an immediate once unrolled) + xa/xb[kk & 3] (c = ldsm_a_chunk / ldsm_b_chunk): four
   * registers per operand pattern instead of one address register per (row tile, k-step). */
  uint32_t xa[4], xb[4];
#pragma unroll
  for (int k4 = 0; k4 < 4; ++k4) {
    xa[k4] = (uint32_t)(((2 * k4 + ldsm_a_chunk(lane)) ^ (lane & 7)) << 4);
    xb[k4] = (uint32_t)(((2 * k4 + ldsm_b_chunk(lane)) ^ (lane & 7)) << 4);
  }
  const uint32_t q_base = smem_u32(sq) + (uint32_t)((wm * WROWS + ldsm_a_row(lane)) * HD * 2);

  uint32_t qf[S::QREG ? MR : 1][S::QREG ? NKK : 1][4];
  float o[MR][ND8][4];
  float m[MR][2], l[MR][2];
#pragma unroll
  for (int i = 0; i < MR; ++i) {
    m[i][0] = m[i][1] = -INFINITY;
    l[i][0] = l[i][1] = 0.f;
#pragma unroll
    for (int d = 0; d < ND8; ++d) o[i][d][0] = o[i][d][1] = o[i][d][2] = o[i][d][3] = 0.f;
  }

  for (int j = 0; j < nkt; ++j) {
    cp_async_wait<STAGES - 2>();
    __syncthreads(); /* tile j visible; every warp is done with tile j-1, whose stage is refilled next */
    if constexpr (S::QREG) {
      if (j == 0) {
#pragma unroll
        for (int i = 0; i < MR; ++i)
#pragma unroll
          for (int kk = 0; kk < NKK; ++kk)
            ldsm_x4(qf[i][kk], q_base + (16 * i * HD + (kk >> 2) * 64) * 2 + xa[kk & 3]);
      }
    }
    int nbid = -1; /* block id of key tid of tile j + STAGES */
    if (j + STAGES - 1 < nkt) {
      issue_kv(j + STAGES - 1);
      nbid = fetch_bid(j + STAGES);
    }
    cp_async_commit();

    const uint32_t sk_u = smem_u32(skv + (size_t)(j % STAGES) * 2 * BN * HD);
    const uint32_t sv_u = sk_u + BN * HD * 2;
    /* the warp's BNW keys of the tile, SUB at a time (S of SUB keys live at once) */
#pragma unroll
    for (int hs = 0; hs < BNW / SUB; ++hs) {
      const int c0 = wn * BNW + hs * SUB; /* first key of the sub-slice within the tile */
      const int kw0 = kb + j * BN + c0;
      if (slice_skipped(wr, kw0)) break; /* past every row's frontier (or padding only) */

      /* S = Q Kᵀ over the SUB keys; each K fragment feeds the MR row tiles */
      float s[MR][NB8][4];
#pragma unroll
      for (int i = 0; i < MR; ++i)
#pragma unroll
        for (int n = 0; n < NB8; ++n) s[i][n][0] = s[i][n][1] = s[i][n][2] = s[i][n][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < NKK; ++kk) {
        uint32_t qa[MR][4];
#pragma unroll
        for (int i = 0; i < MR; ++i) {
          if constexpr (S::QREG) {
#pragma unroll
            for (int e = 0; e < 4; ++e) qa[i][e] = qf[i][kk][e];
          } else {
            ldsm_x4(qa[i], q_base + (16 * i * HD + (kk >> 2) * 64) * 2 + xa[kk & 3]);
          }
        }
#pragma unroll
        for (int nb = 0; nb < SUB / 16; ++nb) {
          uint32_t b[4];
          ldsm_x4(b, sk_u + ((c0 + nb * 16 + ldsm_b_row(lane)) * HD + (kk >> 2) * 64) * 2 + xb[kk & 3]);
#pragma unroll
          for (int i = 0; i < MR; ++i) {
            Mma16<T>::mma(s[i][2 * nb], qa[i], b[0], b[1]);
            Mma16<T>::mma(s[i][2 * nb + 1], qa[i], b[2], b[3]);
          }
        }
      }

      /* online softmax per row tile, log2 domain; the causal compare only where the slice crosses a frontier */
      const bool mask = slice_masked(wr, kw0, SUB);
#pragma unroll
      for (int i = 0; i < MR; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          float mx = -INFINITY;
#pragma unroll
          for (int n = 0; n < NB8; ++n)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              float x = s[i][n][2 * h + e] * a.scale_log2;
              if (mask && kw0 + n * 8 + frag_col(lane, e) > qpos[i][h]) x = -INFINITY;
              s[i][n][2 * h + e] = x;
              mx = fmaxf(mx, x);
            }
          mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, 1));
          mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, 2));
          const float mnew = fmaxf(m[i][h], mx);
          const float muse = mnew == -INFINITY ? 0.f : mnew; /* a row with nothing visible yet stays all zero */
          const float alpha = fast_exp2(m[i][h] - muse);
          m[i][h] = mnew;
          float sum = 0.f;
#pragma unroll
          for (int n = 0; n < NB8; ++n)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const float p = fast_exp2(s[i][n][2 * h + e] - muse);
              s[i][n][2 * h + e] = p;
              sum += p;
            }
          l[i][h] = l[i][h] * alpha + sum; /* per-lane partial: the quad's lanes share alpha; summed at the end */
#pragma unroll
          for (int d = 0; d < ND8; ++d) {
            o[i][d][2 * h] *= alpha;
            o[i][d][2 * h + 1] *= alpha;
          }
        }

      /* O += P V: the S accumulators of key tiles 2k, 2k+1 are the A fragment of k-step k; each V
       * fragment feeds the MR row tiles */
#pragma unroll
      for (int kk = 0; kk < SUB / 16; ++kk) {
        uint32_t pa[MR][4];
#pragma unroll
        for (int i = 0; i < MR; ++i) {
          pa[i][0] = Mma16<T>::pack(s[i][2 * kk][0], s[i][2 * kk][1]);
          pa[i][1] = Mma16<T>::pack(s[i][2 * kk][2], s[i][2 * kk][3]);
          pa[i][2] = Mma16<T>::pack(s[i][2 * kk + 1][0], s[i][2 * kk + 1][1]);
          pa[i][3] = Mma16<T>::pack(s[i][2 * kk + 1][2], s[i][2 * kk + 1][3]);
        }
#pragma unroll
        for (int dn = 0; dn < HD / 16; ++dn) {
          uint32_t b[4];
          ldsm_x4_t(b, sv_u + ((c0 + kk * 16 + ldsm_a_row(lane)) * HD + (dn >> 2) * 64) * 2 + xa[dn & 3]);
#pragma unroll
          for (int i = 0; i < MR; ++i) {
            Mma16<T>::mma(o[i][2 * dn], pa[i], b[0], b[1]);
            Mma16<T>::mma(o[i][2 * dn + 1], pa[i], b[2], b[3]);
          }
        }
      }
    }
    /* read at iteration j+1, after its barrier; the other buffer is being read now */
    put_off(j + STAGES, nbid);
  }

#pragma unroll
  for (int i = 0; i < MR; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      l[i][h] += __shfl_xor_sync(kFull, l[i][h], 1);
      l[i][h] += __shfl_xor_sync(kFull, l[i][h], 2);
    }
  const bool direct = g.n_used == 1;
  T *out = static_cast<T *>(a.out);

  if constexpr (S::NWN == 1) {
    if (!wr.active) return;
#pragma unroll
    for (int i = 0; i < MR; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = wm * WROWS + 16 * i + frag_row(lane, 2 * h);
        if (r >= g.rows) continue;
        const int64_t orow = qo_row(sqr.row, g.r0 + r, G, a.nh, kvh);
        if (direct) {
          const float inv = inv_or_zero(l[i][h]);
#pragma unroll
          for (int d = 0; d < ND8; ++d)
            *reinterpret_cast<uint32_t *>(out + orow * HD + d * 8 + frag_col(lane, 0)) =
                Mma16<T>::pack(o[i][d][2 * h] * inv, o[i][d][2 * h + 1] * inv);
        } else {
          const int64_t pi = orow * a.n_splits + split;
#pragma unroll
          for (int d = 0; d < ND8; ++d)
            *reinterpret_cast<float2 *>(a.part_o + pi * HD + d * 8 + frag_col(lane, 0)) =
                make_float2(o[i][d][2 * h], o[i][d][2 * h + 1]);
          if ((lane & 3) == 0) *reinterpret_cast<float2 *>(a.part_ml + pi * 2) = make_float2(m[i][h], l[i][h]);
        }
      }
  } else {
    /* Merge the NWN key slices of the same rows: each warp parks (m, l, o) in shared memory (over the
     * K/V stages, now idle), then all threads combine them element-wise and store coalesced. */
    constexpr int RS = S::RED_STRIDE;
    cp_async_wait<0>();
    __syncthreads();
    float *red_o = reinterpret_cast<float *>(smem + S::Q_BYTES); /* [NWN][BM][RS] */
    float *red_ml = red_o + S::NWN * BM * RS;                       /* [NWN][BM][2] */
#pragma unroll
    for (int i = 0; i < MR; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = wm * WROWS + 16 * i + frag_row(lane, 2 * h);
        float *ro = red_o + (wn * BM + r) * RS;
#pragma unroll
        for (int d = 0; d < ND8; ++d)
          *reinterpret_cast<float2 *>(ro + d * 8 + frag_col(lane, 0)) = make_float2(o[i][d][2 * h], o[i][d][2 * h + 1]);
        if ((lane & 3) == 0) {
          red_ml[(wn * BM + r) * 2] = m[i][h];
          red_ml[(wn * BM + r) * 2 + 1] = l[i][h];
        }
      }
    __syncthreads();
    for (int e = tid; e < BM * HD; e += NT) {
      const int r = e / HD, col = e % HD;
      if (r >= g.rows) continue;
      float M = -INFINITY;
#pragma unroll
      for (int w = 0; w < S::NWN; ++w) M = fmaxf(M, red_ml[(w * BM + r) * 2]);
      const float Muse = M == -INFINITY ? 0.f : M;
      float L = 0.f, acc = 0.f;
#pragma unroll
      for (int w = 0; w < S::NWN; ++w) {
        const float f = fast_exp2(red_ml[(w * BM + r) * 2] - Muse);
        L += f * red_ml[(w * BM + r) * 2 + 1];
        acc += f * red_o[(w * BM + r) * RS + col];
      }
      const int64_t orow = qo_row(sqr.row, g.r0 + r, G, a.nh, kvh);
      if (direct) {
        out[orow * HD + col] = from_f<T>(acc * inv_or_zero(L));
      } else {
        const int64_t pi = orow * a.n_splits + split;
        a.part_o[pi * HD + col] = acc;
        if (col == 0) {
          a.part_ml[pi * 2] = M;
          a.part_ml[pi * 2 + 1] = L;
        }
      }
    }
  }
}

/* ---- CUDA-core attention (fp32, any head_dim) -------------------------------------------------------------- */

/* Shared memory of attn_simt for head_dim hd: q [16][hd], k [32][hd|1] (odd stride: lane = key reads
 * k[lane][d] from 32 different banks), v [32][hd] (lane = dim), then 32 int64 cache offsets. */
__host__ __device__ __forceinline__ int simt_kstride(int hd) { return hd | 1; }
__host__ __device__ __forceinline__ size_t simt_smem_floats(int hd) {
  const size_t f = (size_t)kSimtBM * hd + (size_t)kSimtBN * simt_kstride(hd) + (size_t)kSimtBN * hd;
  return (f + 1) & ~(size_t)1; /* 8-byte alignment for the offsets */
}
__host__ __device__ __forceinline__ size_t simt_smem_bytes(int hd) {
  return simt_smem_floats(hd) * 4 + kSimtBN * sizeof(int64_t);
}

/* 4 warps; warp w owns rows w, w+4, w+8, w+12 of the tile; ND = ceil(hd / 32) output dims per lane. */
template <typename T, int ND>
__global__ void __launch_bounds__(128) attn_simt(const AttnArgs a) {
  extern __shared__ __align__(16) float fsm[];
  const int hd = a.hd, kst = simt_kstride(hd);
  float *sq = fsm, *sk = sq + kSimtBM * hd, *sv = sk + kSimtBN * kst;
  int64_t *roff = reinterpret_cast<int64_t *>(fsm + simt_smem_floats(hd));
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int G = a.group;

  CtaWork w;
  if (!cta_work(a, kSimtBM, &w)) return;
  const int kvh = w.kvh, split = w.split, kb = w.kb, ke = w.ke;
  const qq_cuda_attn_seq sqr = w.sq;
  const TileGeom g = w.g;

  const T *q = static_cast<const T *>(a.q);
  const T *kc = static_cast<const T *>(a.kc);
  const T *vc = static_cast<const T *>(a.vc);
  for (int e = tid; e < kSimtBM * hd; e += blockDim.x) {
    const int r = e / hd, d = e - r * hd;
    sq[e] = r < g.rows ? to_f<T>(q[qo_row(sqr.row, g.r0 + r, G, a.nh, kvh) * hd + d]) : 0.f;
  }

  float m[4], l[4], o[4][ND];
  int qp[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.f;
    const int r = warp + 4 * i;
    qp[i] = r < g.rows ? sqr.n_past + (g.r0 + r) / G : -1;
#pragma unroll
    for (int k = 0; k < ND; ++k) o[i][k] = 0.f;
  }

  for (int kv0 = kb; kv0 < ke; kv0 += kSimtBN) {
    __syncthreads(); /* the previous keys are consumed (and q is visible the first time) */
    if (tid < kSimtBN) {
      const int pos = kv0 + tid;
      roff[tid] = pos < ke ? cache_off(a.blocks[sqr.block_off + blk_of(pos, a.bt, a.bt_shift)],
                                       slot_of(pos, a.bt, a.bt_shift), a.bt, a.nkv, kvh, hd)
                           : -1;
    }
    __syncthreads();
    for (int e = tid; e < kSimtBN * hd; e += blockDim.x) {
      const int j = e / hd, d = e - j * hd;
      const int64_t off = roff[j];
      sk[j * kst + d] = off >= 0 ? to_f<T>(kc[off + d]) : 0.f;
      sv[j * hd + d] = off >= 0 ? to_f<T>(vc[off + d]) : 0.f;
    }
    __syncthreads();
    const int key = kv0 + lane;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = warp + 4 * i;
      if (qp[i] < kv0) continue; /* padding row, or nothing of this step visible (warp-uniform) */
      const float *qr = sq + r * hd, *kr = sk + lane * kst;
      float s = 0.f;
      for (int d = 0; d < hd; ++d) s = fmaf(qr[d], kr[d], s);
      s = (key < ke && key <= qp[i]) ? s * a.scale_log2 : -INFINITY;
      const float mnew = fmaxf(m[i], warp_max(s));
      const float alpha = fast_exp2(m[i] - mnew); /* key kv0 <= qp is visible: mnew is finite */
      const float p = fast_exp2(s - mnew);
      m[i] = mnew;
      l[i] = l[i] * alpha + p;
#pragma unroll
      for (int k = 0; k < ND; ++k) o[i][k] *= alpha;
      for (int jj = 0; jj < kSimtBN; ++jj) {
        const float pj = __shfl_sync(kFull, p, jj);
        const float *vr = sv + jj * hd;
#pragma unroll
        for (int k = 0; k < ND; ++k)
          if (lane + 32 * k < hd) o[i][k] = fmaf(pj, vr[lane + 32 * k], o[i][k]);
      }
    }
  }

  T *out = static_cast<T *>(a.out);
  const bool direct = g.n_used == 1;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = warp + 4 * i;
    if (r >= g.rows) continue;
    const float L = warp_sum(l[i]), inv = inv_or_zero(L);
    const int64_t orow = qo_row(sqr.row, g.r0 + r, G, a.nh, kvh);
    const int64_t pi = orow * a.n_splits + split;
#pragma unroll
    for (int k = 0; k < ND; ++k) {
      const int d = lane + 32 * k;
      if (d >= hd) continue;
      if (direct)
        out[orow * hd + d] = from_f<T>(o[i][k] * inv);
      else
        a.part_o[pi * hd + d] = o[i][k];
    }
    if (!direct && lane == 0) {
      a.part_ml[pi * 2] = m[i];
      a.part_ml[pi * 2 + 1] = L;
    }
  }
}

/* ---- split-K merge ----------------------------------------------------------------------------------------- */

/* One CTA per output row: blockIdx.x = ((tile · n_kv_heads + kv_head) · bm + row). Decode at batch 1
 * has only G·n_kv_heads rows, each with up to ~100 splits of hd floats: rows must spread over SMs and
 * each thread must keep several loads in flight (one per split, unrolled), or the merge costs more than
 * the attention. M = max m_s, w_s = 2^(m_s - M) (kept in shared memory), out = Σ w_s o_s / Σ w_s l_s. */
constexpr int kCombineThreads = 128;
__host__ __device__ __forceinline__ size_t combine_smem_bytes(int n_splits) { return (size_t)(n_splits + 32) * 4; }

template <typename T>
__global__ void __launch_bounds__(kCombineThreads) attn_combine(const AttnArgs a) {
  extern __shared__ float csm[]; /* w [n_splits], then 32 floats of reduction scratch */
  float *w = csm, *red = csm + a.n_splits;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int r = blockIdx.x % a.bm, rest = blockIdx.x / a.bm;
  const int kvh = rest % a.nkv, t = rest / a.nkv;
  qq_cuda_attn_seq sqr;
  int tile;
  if (!locate_tile(a.seqs, a.n_seqs, a.group, a.bm, t, &sqr, &tile)) return;
  const TileGeom g = tile_geom(sqr.n_new, sqr.n_past, a.group, a.bm, tile, a.n_splits, a.split_len);
  if (g.n_used <= 1 || r >= g.rows) return; /* one split: written by the attention kernel */
  const int hd = a.hd, ns = g.n_used;
  const int64_t orow = qo_row(sqr.row, g.r0 + r, a.group, a.nh, kvh);
  const float *ml = a.part_ml + orow * a.n_splits * 2;
  const float *po = a.part_o + orow * a.n_splits * hd;

  float M = -INFINITY;
  for (int sp = tid; sp < ns; sp += kCombineThreads) M = fmaxf(M, ml[sp * 2]);
  M = warp_max(M);
  if (lane == 0) red[warp] = M;
  __syncthreads();
  M = red[0];
#pragma unroll
  for (int i = 1; i < kCombineThreads / 32; ++i) M = fmaxf(M, red[i]);
  if (M == -INFINITY) M = 0.f;
  float L = 0.f;
  for (int sp = tid; sp < ns; sp += kCombineThreads) {
    const float ws = fast_exp2(ml[sp * 2] - M);
    w[sp] = ws;
    L += ws * ml[sp * 2 + 1];
  }
  L = warp_sum(L);
  __syncthreads(); /* everyone has read red[] for M; w[] complete */
  if (lane == 0) red[warp] = L;
  __syncthreads();
  L = 0.f;
#pragma unroll
  for (int i = 0; i < kCombineThreads / 32; ++i) L += red[i];
  const float inv = inv_or_zero(L);
  T *out = static_cast<T *>(a.out);
  for (int d = tid; d < hd; d += kCombineThreads) {
    float acc = 0.f;
#pragma unroll 8
    for (int sp = 0; sp < ns; ++sp) acc = fmaf(w[sp], po[(int64_t)sp * hd + d], acc);
    out[orow * hd + d] = from_f<T>(acc * inv);
  }
}

/* ---- host side ---------------------------------------------------------------------------------------------- */

enum AttnPath { PATH_SIMT = 0, PATH_MMA_PREFILL = 1, PATH_MMA_DECODE = 2 };

/* Launch plan: a function of (device, params, host sequence records) only, so qq_cuda_attention_ws_bytes
 * and qq_cuda_attention agree on it. */
struct AttnPlan {
  AttnPath path;
  int bm, bn;
  int64_t n_tiles; /* row tiles over the batch */
  int n_splits, split_len;
  size_t smem;
  size_t ml_bytes; /* partial (m, l) region of ctx->ws; o follows */
  size_t ws_bytes;
};

static bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* Tile sizes, shared memory and CTAs per SM (for the split count) of a tensor-core shape. */
template <typename S> static void mma_plan(AttnPlan *pl, int *per_sm) {
  pl->bm = S::BM;
  pl->bn = S::BN;
  pl->smem = S::SMEM;
  *per_sm = S::MINB;
}

/* Validates the call and picks path, tiles and splits. `ptrs_aligned`: q, k_cache, v_cache 16-byte
 * aligned (the tensor-core gather issues 16-byte copies); pass true to plan for ws sizing. */
static qq_status attn_plan(const qq_cuda_ctx *c, const qq_attn_params *p, const qq_cuda_attn_batch *b,
                           bool ptrs_aligned, AttnPlan *pl, qq_error *err) {
  if (!c || !p || !b) return qq_error_set(err, QQ_ERR_INVALID_ARG, "attention: NULL context, params or batch");
  if (p->n_heads <= 0 || p->n_kv_heads <= 0 || p->n_heads % p->n_kv_heads || p->head_dim <= 0 || p->block_tokens <= 0)
    return qq_error_set(err, QQ_ERR_INVALID_ARG,
                        "attention: bad params (n_heads %d, n_kv_heads %d, head_dim %d, block_tokens %d): heads must "
                        "be positive with n_heads a multiple of n_kv_heads",
                        p->n_heads, p->n_kv_heads, p->head_dim, p->block_tokens);
  if (p->head_dim > kSimtMaxHD)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "attention: head_dim %d is above the %d this backend supports",
                        p->head_dim, kSimtMaxHD);
  if (!isfinite(p->scale)) return qq_error_set(err, QQ_ERR_INVALID_ARG, "attention: scale is not finite");
  if (c->act != QQ_ACT_F32 && c->act != QQ_ACT_BF16 && c->act != QQ_ACT_F16)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "attention: activation dtype %d", (int)c->act);
  if (b->n_seqs < 0 || b->total_rows < 0)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "attention: %d sequences, %d rows", b->n_seqs, b->total_rows);
  if (b->n_seqs > 0 && !b->seqs_host)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "attention: the batch has no host copy of its sequences");

  const int G = p->n_heads / p->n_kv_heads;
  int64_t rows = 0;
  int max_new = 0, max_len = 0;
  for (int s = 0; s < b->n_seqs; ++s) {
    const qq_cuda_attn_seq *q = &b->seqs_host[s];
    if (q->n_new < 0 || q->n_past < 0 || q->row < 0 || q->block_off < 0 ||
        (int64_t)q->row + q->n_new > b->total_rows || (int64_t)q->n_past + q->n_new > INT32_MAX / 2 ||
        (int64_t)q->n_new * G > INT32_MAX / 2)
      return qq_error_set(err, QQ_ERR_INVALID_ARG,
                          "attention: sequence %d (row %d, n_new %d, n_past %d, block_off %d) does not fit a batch of "
                          "%d rows",
                          s, q->row, q->n_new, q->n_past, q->block_off, b->total_rows);
    rows += q->n_new;
    max_new = q->n_new > max_new ? q->n_new : max_new;
    max_len = q->n_past + q->n_new > max_len ? q->n_past + q->n_new : max_len;
  }
  /* b->max_len may exceed every sequence's length: a replayable step (CUDA Graphs) sizes the split
   * geometry from its bound so that every replay launches the same grid; splits past a sequence's end
   * exit at once and the combine uses only the splits the device lengths need (tile_geom). */
  if (rows != b->total_rows || max_new != b->max_new || max_len > b->max_len)
    return qq_error_set(err, QQ_ERR_INVALID_ARG,
                        "attention: batch totals (rows %d, max_new %d, max_len bound %d) disagree with its sequences (rows "
                        "%lld, max_new %d, max_len %d)",
                        b->total_rows, b->max_new, b->max_len, (long long)rows, max_new, max_len);

  const int hd = p->head_dim;
  const bool mma = c->act != QQ_ACT_F32 && (hd == 64 || hd == 128) && ptrs_aligned;
  const bool decode = mma && (int64_t)max_new * G <= 16;
  int per_sm;
  if (!mma) {
    pl->path = PATH_SIMT;
    pl->bm = kSimtBM;
    pl->bn = kSimtBN;
    pl->smem = simt_smem_bytes(hd);
    per_sm = 4;
  } else if (decode) {
    pl->path = PATH_MMA_DECODE;
    if (hd == 64) mma_plan<DecodeShape<64>>(pl, &per_sm);
    else mma_plan<DecodeShape<128>>(pl, &per_sm);
  } else {
    pl->path = PATH_MMA_PREFILL;
    if (hd == 64) mma_plan<PrefillShape<64>>(pl, &per_sm);
    else mma_plan<PrefillShape<128>>(pl, &per_sm);
  }
  if (pl->smem > c->smem_optin)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED,
                        "attention: head_dim %d needs %zu bytes of shared memory per block, the device allows %zu", hd,
                        pl->smem, c->smem_optin);

  pl->n_tiles = 0;
  for (int s = 0; s < b->n_seqs; ++s) pl->n_tiles += seq_tiles(b->seqs_host[s].n_new, G, pl->bm);

  /* Split-K only when the CTAs do not fill the GPU: as many splits as fit the free slots, each at least
   * kMinSplitTiles key tiles, split_len a multiple of the key tile. */
  const int64_t base = pl->n_tiles * p->n_kv_heads;
  const int64_t slots = (int64_t)(c->sm_count > 0 ? c->sm_count : 1) * per_sm;
  int64_t ns = base > 0 && base < slots ? slots / base : 1;
  max_len = b->max_len; /* the bound (see above) */
  const int64_t max_useful = cdiv(max_len > 0 ? max_len : 1, kMinSplitTiles * pl->bn);
  if (ns > max_useful) ns = max_useful;
  if (ns < 1) ns = 1;
  const int L = max_len > 0 ? max_len : 1;
  pl->split_len = cdiv(cdiv(L, (int)ns), pl->bn) * pl->bn;
  pl->n_splits = cdiv(L, pl->split_len);
  if (base * (pl->n_splits > pl->bm ? pl->n_splits : pl->bm) > INT32_MAX ||
      combine_smem_bytes(pl->n_splits) > c->smem_optin)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "attention: batch too large (%lld row tiles)", (long long)pl->n_tiles);

  pl->ml_bytes = 0;
  pl->ws_bytes = 0;
  if (pl->n_splits > 1) {
    const size_t n = (size_t)b->total_rows * p->n_heads * pl->n_splits;
    pl->ml_bytes = (n * 2 * sizeof(float) + 255) & ~(size_t)255;
    pl->ws_bytes = pl->ml_bytes + n * hd * sizeof(float);
  }
  return QQ_OK;
}

/* Largest copy unit dividing a token's run of nkv·hd elements and every base address. */
static int copy_unit(size_t run_bytes, const void *const *ptrs, int n) {
  uintptr_t acc = run_bytes;
  for (int i = 0; i < n; ++i) acc |= (uintptr_t)ptrs[i];
  return (acc & 15u) == 0 ? 16 : (acc & 7u) == 0 ? 8 : (acc & 3u) == 0 ? 4 : 2;
}

template <typename U>
static qq_status launch_append(qq_cuda_ctx *c, const qq_cuda_attn_batch *b, int64_t n_ctas, const void *k,
                               const void *v, void *kc, void *vc, int bt, size_t run_bytes, qq_error *err) {
  attn_append<U><<<(unsigned)n_ctas, 128, 0, c->stream>>>(b->seqs_dev, b->n_seqs, b->blocks_dev, (const U *)k,
                                                          (const U *)v, (U *)kc, (U *)vc, bt,
                                                          (int)(run_bytes / sizeof(U)));
  QQ_CUDA_LAUNCHED(err, "attn_append");
  return QQ_OK;
}

template <typename T, typename S>
static qq_status launch_mma(qq_cuda_ctx *c, const AttnArgs &a, unsigned grid, qq_error *err) {
  QQ_CUDA_TRY(err, cudaFuncSetAttribute(attn_mma<T, S>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)S::SMEM));
  attn_mma<T, S><<<grid, S::NT, S::SMEM, c->stream>>>(a);
  QQ_CUDA_LAUNCHED(err, "attn_mma");
  return QQ_OK;
}

template <typename T, int ND>
static qq_status launch_simt_nd(qq_cuda_ctx *c, const AttnArgs &a, unsigned grid, size_t smem, qq_error *err) {
  QQ_CUDA_TRY(err, cudaFuncSetAttribute(attn_simt<T, ND>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  attn_simt<T, ND><<<grid, 128, smem, c->stream>>>(a);
  QQ_CUDA_LAUNCHED(err, "attn_simt");
  return QQ_OK;
}

template <typename T>
static qq_status launch_attention(qq_cuda_ctx *c, const AttnPlan &pl, const AttnArgs &a, qq_error *err) {
  const unsigned grid = (unsigned)(pl.n_tiles * pl.n_splits * a.nkv);
  qq_status st = QQ_ERR_INTERNAL;
  if (pl.path == PATH_SIMT) {
    const int nd = cdiv(a.hd, 32);
    st = nd <= 1   ? launch_simt_nd<T, 1>(c, a, grid, pl.smem, err)
         : nd <= 2 ? launch_simt_nd<T, 2>(c, a, grid, pl.smem, err)
         : nd <= 4 ? launch_simt_nd<T, 4>(c, a, grid, pl.smem, err)
         : nd <= 8 ? launch_simt_nd<T, 8>(c, a, grid, pl.smem, err)
                   : launch_simt_nd<T, 16>(c, a, grid, pl.smem, err);
  } else if constexpr (!std::is_same<T, float>::value) {
    const bool dec = pl.path == PATH_MMA_DECODE;
    if (a.hd == 64)
      st = dec ? launch_mma<T, DecodeShape<64>>(c, a, grid, err) : launch_mma<T, PrefillShape<64>>(c, a, grid, err);
    else
      st = dec ? launch_mma<T, DecodeShape<128>>(c, a, grid, err) : launch_mma<T, PrefillShape<128>>(c, a, grid, err);
  }
  if (st != QQ_OK || pl.n_splits == 1) return st;
  const size_t smem = combine_smem_bytes(pl.n_splits);
  if (smem > 48 * 1024)
    QQ_CUDA_TRY(err, cudaFuncSetAttribute(attn_combine<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  attn_combine<T><<<(unsigned)(pl.n_tiles * a.nkv * pl.bm), kCombineThreads, smem, c->stream>>>(a);
  QQ_CUDA_LAUNCHED(err, "attn_combine");
  return QQ_OK;
}

}  // namespace

extern "C" size_t qq_cuda_attention_ws_bytes(const qq_cuda_ctx *c, const qq_attn_params *p,
                                             const qq_cuda_attn_batch *b) {
  AttnPlan pl = {};
  /* Plan as if aligned: the misaligned fallback (attn_simt, bm 16) may only need more tiles, so also
   * take the larger of the two. */
  size_t bytes = 0;
  if (attn_plan(c, p, b, true, &pl, NULL) == QQ_OK) bytes = pl.ws_bytes;
  if (attn_plan(c, p, b, false, &pl, NULL) == QQ_OK && pl.ws_bytes > bytes) bytes = pl.ws_bytes;
  return bytes;
}

extern "C" qq_status qq_cuda_attention(qq_cuda_ctx *c, const qq_attn_params *p, const qq_cuda_attn_batch *b,
                                       const void *q, const void *k, const void *v, void *k_cache, void *v_cache,
                                       void *out, qq_error *err) {
  const bool aligned = aligned16(q) && aligned16(k_cache) && aligned16(v_cache) && ((uintptr_t)out & 3u) == 0;
  AttnPlan pl = {};
  qq_status st = attn_plan(c, p, b, aligned, &pl, err);
  if (st != QQ_OK) return st;
  if (b->total_rows == 0) return QQ_OK;
  if (!q || !k || !v || !k_cache || !v_cache || !out || !b->seqs_dev || !b->blocks_dev)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "attention: NULL tensor or metadata pointer");
  if (pl.ws_bytes > c->ws_bytes || (pl.ws_bytes && !c->ws))
    return qq_error_set(err, QQ_ERR_INVALID_ARG,
                        "attention: workspace holds %zu bytes, this batch needs %zu (reserve "
                        "qq_cuda_attention_ws_bytes() before the call)",
                        c->ws_bytes, pl.ws_bytes);

  /* 1. append */
  const int G = p->n_heads / p->n_kv_heads;
  const size_t es = qq_cuda_act_size(c->act);
  const size_t run = (size_t)p->n_kv_heads * p->head_dim * es;
  int64_t app = 0;
  for (int s = 0; s < b->n_seqs; ++s) app += seq_tiles(b->seqs_host[s].n_new, 1, kAppendTok);
  const void *ptrs[4] = {k, v, k_cache, v_cache};
  switch (copy_unit(run, ptrs, 4)) {
    case 16: st = launch_append<uint4>(c, b, app, k, v, k_cache, v_cache, p->block_tokens, run, err); break;
    case 8: st = launch_append<uint2>(c, b, app, k, v, k_cache, v_cache, p->block_tokens, run, err); break;
    case 4: st = launch_append<uint32_t>(c, b, app, k, v, k_cache, v_cache, p->block_tokens, run, err); break;
    default: st = launch_append<uint16_t>(c, b, app, k, v, k_cache, v_cache, p->block_tokens, run, err); break;
  }
  if (st != QQ_OK) return st;

  /* 2. attend */
  AttnArgs a;
  a.seqs = b->seqs_dev;
  a.blocks = b->blocks_dev;
  a.q = q;
  a.kc = k_cache;
  a.vc = v_cache;
  a.out = out;
  a.part_ml = pl.n_splits > 1 ? (float *)c->ws : NULL;
  a.part_o = pl.n_splits > 1 ? (float *)((uint8_t *)c->ws + pl.ml_bytes) : NULL;
  a.n_seqs = b->n_seqs;
  a.nh = p->n_heads;
  a.nkv = p->n_kv_heads;
  a.group = G;
  a.hd = p->head_dim;
  a.bt = p->block_tokens;
  a.bt_shift = (p->block_tokens & (p->block_tokens - 1)) ? -1 : __builtin_ctz((unsigned)p->block_tokens);
  a.bm = pl.bm;
  a.n_splits = pl.n_splits;
  a.split_len = pl.split_len;
  a.scale_log2 = p->scale * kLog2e;
  st = QQ_ERR_INTERNAL;
  QQ_CUDA_DISPATCH_ACT(c->act, st = launch_attention<T>(c, pl, a, err));
  return st;
}

extern "C" qq_status qq_cuda_kv_copy(qq_cuda_ctx *c, const qq_attn_params *p, void *k_cache, void *v_cache,
                                     const int32_t *src_blocks_dev, const int32_t *dst_blocks_dev, int32_t n_tokens,
                                     qq_error *err) {
  if (!c || !p) return qq_error_set(err, QQ_ERR_INVALID_ARG, "kv_copy: NULL context or params");
  if (p->n_kv_heads <= 0 || p->head_dim <= 0 || p->block_tokens <= 0 || n_tokens < 0)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "kv_copy: bad params (n_kv_heads %d, head_dim %d, block_tokens %d, "
                        "n_tokens %d)", p->n_kv_heads, p->head_dim, p->block_tokens, n_tokens);
  if (n_tokens == 0) return QQ_OK;
  if (!k_cache || !v_cache || !src_blocks_dev || !dst_blocks_dev)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "kv_copy: NULL cache or block table");
  const size_t run = (size_t)p->n_kv_heads * p->head_dim * qq_cuda_act_size(c->act);
  const void *ptrs[2] = {k_cache, v_cache};
  const unsigned grid = (unsigned)cdiv(n_tokens, kAppendTok);
  const int bt = p->block_tokens;
  switch (copy_unit(run, ptrs, 2)) {
    case 16:
      attn_kv_copy<uint4><<<grid, 128, 0, c->stream>>>(src_blocks_dev, dst_blocks_dev, (uint4 *)k_cache,
                                                       (uint4 *)v_cache, n_tokens, bt, (int)(run / 16));
      break;
    case 8:
      attn_kv_copy<uint2><<<grid, 128, 0, c->stream>>>(src_blocks_dev, dst_blocks_dev, (uint2 *)k_cache,
                                                       (uint2 *)v_cache, n_tokens, bt, (int)(run / 8));
      break;
    case 4:
      attn_kv_copy<uint32_t><<<grid, 128, 0, c->stream>>>(src_blocks_dev, dst_blocks_dev, (uint32_t *)k_cache,
                                                          (uint32_t *)v_cache, n_tokens, bt, (int)(run / 4));
      break;
    default:
      attn_kv_copy<uint16_t><<<grid, 128, 0, c->stream>>>(src_blocks_dev, dst_blocks_dev, (uint16_t *)k_cache,
                                                          (uint16_t *)v_cache, n_tokens, bt, (int)(run / 2));
      break;
  }
  QQ_CUDA_LAUNCHED(err, "attn_kv_copy");
  return QQ_OK;
}
