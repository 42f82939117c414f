/* cuda_internal.h — private to kernels/cuda: the CUDA backend's context, its one error path, and the
 * entry points of each kernel family (one .cu per family). Included by .cu files only (C++ via nvcc);
 * everything here has C linkage so that the families can be linked and tested separately.
 *
 * Conventions
 *  - Every function returns qq_status and fills the optional qq_error; no function aborts or exits.
 *  - All work is queued on ctx->stream. Nothing here synchronizes except where a comment says so
 *    (downloads, workspace growth), so decode steps can be captured into CUDA Graphs.
 *  - Activations are device arrays of ctx->act (fp32, bf16 or fp16), row-major. Shapes are checked
 *    before launch; a shape a kernel cannot do returns QQ_ERR_UNSUPPORTED / QQ_ERR_INVALID_ARG.
 *  - Host arrays (token ids, positions, block tables) reach kernels through the metadata ring
 *    (qq_cuda_meta_push): a pinned host ring mirrored in device memory. */
#ifndef QQ_CUDA_INTERNAL_H
#define QQ_CUDA_INTERNAL_H

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "backend_internal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the one error path: CUDA / cuBLASLt failures become QQ_ERR_CUDA with the statement's text ---- */
qq_status qq_cuda_fail(qq_error *err, cudaError_t e, const char *stmt, const char *file, int line);
qq_status qq_cublas_fail(qq_error *err, cublasStatus_t s, const char *stmt, const char *file, int line);
#define QQ_CUDA_TRY(err, stmt)                                                      \
  do {                                                                              \
    cudaError_t qq_e_ = (stmt);                                                     \
    if (qq_e_ != cudaSuccess) return qq_cuda_fail((err), qq_e_, #stmt, __FILE__, __LINE__); \
  } while (0)
#define QQ_CUBLAS_TRY(err, stmt)                                                     \
  do {                                                                               \
    cublasStatus_t qq_s_ = (stmt);                                                   \
    if (qq_s_ != CUBLAS_STATUS_SUCCESS) return qq_cublas_fail((err), qq_s_, #stmt, __FILE__, __LINE__); \
  } while (0)
/* After every kernel launch: QQ_CUDA_LAUNCHED(err, "kernel name"). */
#define QQ_CUDA_LAUNCHED(err, name) QQ_CUDA_TRY(err, cudaPeekAtLastError())

/* Attention metadata (attention.cu; built by backend.cu from the host qq_attn_seq array). */
typedef struct qq_cuda_attn_seq {
  int32_t row;       /* first row of the sequence in q/k/v/out */
  int32_t n_new;
  int32_t n_past;
  int32_t block_off; /* offset of the sequence's block ids in the flattened block table */
} qq_cuda_attn_seq;
typedef struct qq_cuda_attn_batch {
  const qq_cuda_attn_seq *seqs_dev; /* [n_seqs] */
  const int32_t *blocks_dev;        /* flattened block tables */
  const qq_cuda_attn_seq *seqs_host; /* the same, on the host (launch configuration only) */
  int32_t n_seqs;
  int32_t total_rows;               /* sum of n_new */
  int32_t max_new;                  /* max n_new */
  int32_t max_len;                  /* max n_past + n_new */
} qq_cuda_attn_batch;

/* ---- the context (be->impl) ---------------------------------------------------------------------- */
typedef struct qq_cuda_matmul_plan qq_cuda_matmul_plan; /* gemm_lt.cu: cached cuBLASLt descriptors */

typedef struct qq_cuda_ctx {
  int device;
  int sm_count;
  int cc_major, cc_minor;
  size_t smem_optin;        /* cudaDevAttrMaxSharedMemoryPerBlockOptin */
  qq_act_dtype act;         /* activation dtype of every buffer the model sees */
  cudaStream_t stream;
  cublasLtHandle_t lt;
  void *lt_ws;              /* cuBLASLt workspace (QQ_CUDA_LT_WS_BYTES) */

  /* Grow-only scratch for one op at a time (ops run in stream order, so each op may use it from
   * offset 0). Growing synchronizes the stream; reserve once before capturing graphs. */
  void *ws;
  size_t ws_bytes;

  /* Zeroed int32 counters for kernels that need a grid-wide "last block" semaphore; a kernel that
   * uses them leaves them zero again when it finishes (so graphs can replay it). */
  int32_t *counters;
  int32_t n_counters;

  /* Metadata ring: host arrays copied to pinned memory, then to the device mirror (H2D in stream
   * order). Wrapping around synchronizes the stream once, so a slot is never overwritten while a
   * queued copy still reads it. */
  uint8_t *meta_host;       /* pinned */
  uint8_t *meta_dev;
  size_t meta_bytes, meta_off;

  /* Steps and graphs (backend.cu, kernels.h qq_backend_step_begin). In QQ_CUDA_REPLAY mode the ops
   * only re-stage their host arrays into the metadata ring (same offsets as at capture: the ring
   * restarts at 0 with every replayable step) and launch nothing; step_end launches the graph. */
  int mode;                 /* qq_cuda_mode */
  qq_step_desc step;
  uint64_t step_epoch;      /* increments at every step_begin */
  bool in_step;
  struct qq_cuda_graph *graphs;
  int32_t n_graphs, cap_graphs;
  bool graphs_enabled;      /* QQ_CUDA_GRAPHS != "0" */
  /* Attention metadata uploaded once per step (every layer passes the same sequences). */
  uint64_t attn_epoch;
  const void *attn_key;     /* the host qq_attn_seq array of that upload */
  int32_t attn_key_n;
  qq_cuda_attn_batch attn_batch;
  struct qq_cuda_attn_seq *attn_host; /* host copy of the records (seqs_host) */
  /* RoPE positions, likewise uploaded once per step. */
  uint64_t pos_epoch;
  const void *pos_key;
  int32_t pos_key_n;
  const void *pos_dev;
  int32_t *attn_blocks_host;
  size_t attn_host_cap, attn_blocks_cap;

  /* Cached cuBLASLt plans (gemm_lt.cu). */
  qq_cuda_matmul_plan *plans;
  int32_t n_plans, cap_plans;

  /* W8A8: when set, rmsnorm also writes int8 codes + per-row scales of its output (fused per-token
   * quantization) and remembers for which buffer; a W8A8 matmul reading that buffer uses them. */
  bool fuse_act_quant;
  const void *q8_src;       /* the activation buffer q8 holds a quantized copy of (NULL: none) */
  int32_t q8_rows, q8_cols;
  int8_t *q8;               /* [q8_cap_rows][q8_cols] */
  float *q8_scales;         /* [rows] */
  size_t q8_cap;            /* bytes of q8 */
  int32_t q8_cap_rows;
} qq_cuda_ctx;

enum qq_cuda_mode { QQ_CUDA_EAGER = 0, QQ_CUDA_WARMUP = 1, QQ_CUDA_CAPTURE = 2, QQ_CUDA_REPLAY = 3 };

#define QQ_CUDA_LT_WS_BYTES ((size_t)32 << 20)
#define QQ_CUDA_COUNTERS 65536
#define QQ_CUDA_META_BYTES ((size_t)8 << 20)

static inline qq_cuda_ctx *qq_cuda_ctx_of(qq_backend *be) { return (qq_cuda_ctx *)be->impl; }

/* Drops every captured graph: called whenever a buffer a graph may use (ws, the int8 activation copy) is
 * reallocated. */
void qq_cuda_graphs_invalidate(qq_cuda_ctx *c);
/* Ensures ctx->ws holds at least `bytes` (synchronizes and reallocates when it must grow; captured
 * graphs are dropped then, since they hold the old address). */
qq_status qq_cuda_ws_reserve(qq_cuda_ctx *c, size_t bytes, qq_error *err);
/* Copies n bytes of host data through the metadata ring; *dev receives the device copy (valid for
 * work queued after this call, until the ring wraps past it). 16-byte aligned. */
qq_status qq_cuda_meta_push(qq_cuda_ctx *c, const void *host, size_t n, const void **dev, qq_error *err);

/* Element size of an activation dtype. */
static inline size_t qq_cuda_act_size(qq_act_dtype a) { return a == QQ_ACT_F32 ? 4 : 2; }

/* ---- elementwise.cu: small fused ops (templated over the activation dtype) ------------------------ */
qq_status qq_cuda_f32_to_act(qq_cuda_ctx *c, const float *src, void *dst, size_t n, qq_error *err);
qq_status qq_cuda_act_to_f32(qq_cuda_ctx *c, const void *src, float *dst, size_t n, qq_error *err);
/* Converts a host weight/vector buffer of `src_dtype` elements (QQ_WFMT_F32/BF16/F16) already on the device
 * into dst of dtype `dst` (any of f32/bf16/f16). */
qq_status qq_cuda_convert(qq_cuda_ctx *c, qq_weight_format src_fmt, const void *src, qq_act_dtype dst_dtype, void *dst,
                          size_t n, qq_error *err);
qq_status qq_cuda_rmsnorm(qq_cuda_ctx *c, const void *x, const void *w, int32_t rows, int32_t dim, float eps, void *out,
                          qq_error *err);
qq_status qq_cuda_add(qq_cuda_ctx *c, void *acc, const void *x, size_t n, qq_error *err);
qq_status qq_cuda_silu_mul(qq_cuda_ctx *c, const void *gate, const void *up, size_t n, void *out, qq_error *err);
/* pos_dev: device int32 [t]. */
qq_status qq_cuda_rope(qq_cuda_ctx *c, void *x, const int32_t *pos_dev, int32_t t, int32_t heads, int32_t hd,
                       float theta, qq_rope_freq freq, qq_error *err);
/* out[i][:] = x[rows_dev[i]][:] for tables/activations of dtype `dt` (width elements per row). */
qq_status qq_cuda_gather_rows(qq_cuda_ctx *c, qq_act_dtype dt, const void *x, const int32_t *rows_dev, int32_t n_rows,
                              int32_t width, void *out, qq_error *err);
/* Per-row int8 quantization of activations (dynamic: s = max|x|/127; static: act_scale > 0), the
 * arithmetic of qq_ref_quantize_rows_i8. */
qq_status qq_cuda_quantize_rows_i8(qq_cuda_ctx *c, const void *x, int32_t m, int32_t k, float act_scale, int8_t *q,
                                   float *s, qq_error *err);

/* ---- gemm_lt.cu: dense GEMM through cuBLASLt ---------------------------------------------------
 * y[m][n] = x[m][k] · W[n][k]ᵀ (+ bias[n], device fp32) with W in the activation dtype. fp32 uses
 * CUBLAS_COMPUTE_32F (no TF32) so that it matches the CPU backend; bf16/fp16 accumulate in fp32.
 * Plans (descriptors + heuristic algorithm) are cached per (m, n, k, dtype). */
qq_status qq_cuda_gemm_dense(qq_cuda_ctx *c, const void *w, const float *bias, int32_t m, int32_t n, int32_t k,
                             const void *x, void *y, qq_error *err);
void qq_cuda_plans_free(qq_cuda_ctx *c);

/* ---- gemm_w8a8.cu ---------------------------------------------------------------------------------
 * y[m][n] = (Σ_k qx[m][k]·qw[n][k]) · s_x[m] · s_w[n] (+ bias[n]): qx the per-token (act_scale 0) or
 * static int8 quantization of x (reused from the fused RMSNorm when ctx->q8_src == x), the int8
 * product exact in int32 through cuBLASLt (IMMA), the scales in an epilogue kernel; the arithmetic of
 * qq_ref_matmul_w8a8. wq: device int8 [n][k]; w_scales, bias: device fp32 [n] (bias may be NULL). */
qq_status qq_cuda_w8a8_matmul(qq_cuda_ctx *c, const int8_t *wq, const float *w_scales, float act_scale,
                              const float *bias, int32_t n, int32_t k, const void *x, int32_t m, void *y,
                              qq_error *err);
size_t qq_cuda_w8a8_ws_bytes(int32_t m, int32_t n, int32_t k);
/* int32 acc[m][n] = xq[m][k] · wq[n][k]ᵀ exactly (cuBLASLt IMMA when the shape allows it, else a plain
 * int32 kernel). */
qq_status qq_cuda_gemm_i8(qq_cuda_ctx *c, const int8_t *wq, int32_t n, int32_t k, const int8_t *xq, int32_t m,
                          int32_t *acc, qq_error *err);

/* ---- gemm_wq.cu: weight-only integer GEMM (W4A16 / W8A16 and other bit widths) --------------------
 * Activations bf16 or fp16 (ctx->act); fp32 activations are served elsewhere (backend.c dequantizes
 * at load). The weight arrives as a validated QQ_WFMT_QINT descriptor (codes uint8 [n][k], scales
 * fp32 [n][n_groups], zeros uint8 [n][n_groups] or NULL = 2^(bits-1), optional g_idx [k]) and is
 * repacked once at create time into the layout the kernels read. */
typedef struct qq_cuda_wq qq_cuda_wq;
qq_status qq_cuda_wq_create(qq_cuda_ctx *c, const qq_linear_desc *d, qq_cuda_wq **out, size_t *device_bytes,
                            qq_error *err);
void qq_cuda_wq_free(qq_cuda_wq *w);
/* y[m][n] = x[m][k] · Wᵀ + bias; bias: device fp32 [n] or NULL. May use ctx->ws and ctx->counters.
 * Never allocates, never synchronizes once ctx->ws is large enough (qq_cuda_wq_ws_bytes). */
qq_status qq_cuda_wq_matmul(qq_cuda_ctx *c, const qq_cuda_wq *w, const void *x, int32_t m, const float *bias, void *y,
                            qq_error *err);
/* Scratch bytes qq_cuda_wq_matmul needs for m rows. */
size_t qq_cuda_wq_ws_bytes(const qq_cuda_wq *w, int32_t m);
/* The weight dequantized to fp32 [n][k] on the host (tests, to_f32). */
qq_status qq_cuda_wq_to_f32(const qq_cuda_wq *w, float *host, qq_error *err);

/* ---- attention.cu: paged KV cache attention -------------------------------------------------------
 * Same semantics as the CPU reference (kernels.h, qq_op_attention): first the new k/v rows are written
 * to their cache slots (slot of position p: block blocks[p / block_tokens], offset p % block_tokens;
 * cache layout [n_blocks][block_tokens][n_kv_heads][head_dim] in the activation dtype), then each new
 * token i of a sequence attends causally over positions 0 .. n_past + i with softmax in fp32.
 * Metadata arrives in device memory (qq_cuda_attn_seq / qq_cuda_attn_batch, defined above the context). */
qq_status qq_cuda_attention(qq_cuda_ctx *c, const qq_attn_params *p, const qq_cuda_attn_batch *b, const void *q,
                            const void *k, const void *v, void *k_cache, void *v_cache, void *out, qq_error *err);
/* Scratch bytes qq_cuda_attention needs for this batch (split-K partials). */
size_t qq_cuda_attention_ws_bytes(const qq_cuda_ctx *c, const qq_attn_params *p, const qq_cuda_attn_batch *b);
/* Copies n_tokens cached positions from src block table to dst (device block tables). */
qq_status qq_cuda_kv_copy(qq_cuda_ctx *c, const qq_attn_params *p, void *k_cache, void *v_cache,
                          const int32_t *src_blocks_dev, const int32_t *dst_blocks_dev, int32_t n_tokens,
                          qq_error *err);

/* ---- sampling.cu: reductions over logit rows (kernels.h qq_op_logits_reduce / qq_op_logits_topk) ---
 * The op table's entries themselves (arguments checked by backend.c): host arrays through the metadata
 * ring, results through ctx->ws, copied to the host; they synchronize, so never inside a captured step. */
qq_status qq_cuda_logits_reduce(qq_backend *be, const void *x, int32_t n, const int32_t *rows, const int32_t *targets,
                                int32_t count, bool want_lse, qq_logits_stats *out, qq_error *err);
qq_status qq_cuda_logits_topk(qq_backend *be, const void *x, int32_t n, const int32_t *rows, const float *scales,
                              int32_t count, int32_t k, float *vals, int32_t *ids, double *sums, qq_error *err);

#ifdef __cplusplus
}
#endif
#endif
