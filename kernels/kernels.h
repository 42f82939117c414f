/* kernels.h — the one public header of kernels/: the compute backend interface that the model's
 * forward pass runs on. The CPU backend (kernels/cpu: plain C reference + OpenBLAS) implements every
 * op; the CUDA backend (kernels/cuda) implements the same table. The plain C reference of each op is
 * its specification: fast paths are tested against it.
 *
 */
#ifndef QQ_KERNELS_H
#define QQ_KERNELS_H

#include "qq_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qq_device_kind {
  QQ_DEVICE_AUTO = 0, /* CUDA when built with it and a GPU is present, else CPU */
  QQ_DEVICE_CPU = 1,
  QQ_DEVICE_CUDA = 2,
} qq_device_kind;

typedef struct qq_backend qq_backend;

/* Activation (and KV cache) element type of a backend. The CPU backend computes in fp32 only; the CUDA
 * backend defaults to bf16 and can run fp32 end to end (CUBLAS_COMPUTE_32F, no TF32) to match the CPU
 * backend, or fp16. Append only. */
typedef enum qq_act_dtype {
  QQ_ACT_AUTO = 0, /* the backend's default: fp32 on the CPU, bf16 on CUDA */
  QQ_ACT_F32 = 1,
  QQ_ACT_BF16 = 2,
  QQ_ACT_F16 = 3,
} qq_act_dtype;
/* "auto", "fp32", "bf16", "fp16" */
const char *qq_act_dtype_name(qq_act_dtype a);
/* Parses "fp32"/"f32", "bf16", "fp16"/"f16", "auto"; returns false for anything else. */
bool qq_act_dtype_parse(const char *s, qq_act_dtype *out);

/* How qq_op_rope computes its frequencies inv_freq_j, j = 0 .. head_dim/2 - 1. Append only.
 * - EXACT (the default): theta^(-2j/head_dim) evaluated in double, rounded once; angles and cos/sin in
 *   double. Within fp32 rounding of an fp64 evaluation of the model.
 * - BF16: inv_freq computed in fp32 as Hugging Face does, 1.0f / powf((float)theta, (float)(2j) /
 *   (float)head_dim), then rounded to bf16 (round to nearest even); angles and cos/sin as in EXACT.
 *   This is what transformers computes after a model's buffers went through bf16 (model.to(
 *   torch.bfloat16) rounds the non-persistent inv_freq buffer; a later .float() does not restore it).
 *   The fixtures' goldens were made that way (docs/correctness.md). The frequencies differ from EXACT
 *   by up to 0.4 % (relative), so the angles drift apart with position. */
typedef enum qq_rope_freq {
  QQ_ROPE_FREQ_EXACT = 0,
  QQ_ROPE_FREQ_BF16 = 1,
} qq_rope_freq;
/* "exact", "bf16" */
const char *qq_rope_freq_name(qq_rope_freq f);
/* Parses "exact" or "bf16"; returns false for anything else. */
bool qq_rope_freq_parse(const char *s, qq_rope_freq *out);

typedef struct qq_backend_options {
  qq_device_kind kind;
  int32_t n_threads;  /* CPU threads; 0 = qq_cpu_default_threads() */
  qq_act_dtype act;
} qq_backend_options;
qq_backend_options qq_backend_options_default(void);

/* ---- process setup ----------------------------------------------------------------------------------
 * OpenBLAS picks its kernels in a library constructor that runs before main(). On some VMs it
 * misdetects the CPU as an old core ("Prescott") and runs sgemm about 4.4x slower. Tools call this
 * first thing in main(): when OPENBLAS_CORETYPE is unset and OpenBLAS reports a core without AVX while
 * /proc/cpuinfo shows AVX/AVX2/AVX-512, it exports OPENBLAS_CORETYPE (SANDYBRIDGE / HASWELL /
 * SKYLAKEX) and re-executes the program once (/proc/self/exe, same argv) so the constructor sees it.
 * A correct detection (e.g. "Cooperlake", measured faster here than a forced SKYLAKEX: 144 vs 122
 * GFLOP/s sgemm 1024^3) is left alone. Returns the core name in force. Without OpenBLAS: NULL. */
const char *qq_kernels_setup_openblas(char **argv);

/* ---- backends -------------------------------------------------------------------------------------
 * A backend owns its memory space and streams. Activation buffers are backend memory: host memory
 * holding fp32 for the CPU backend; device memory in the backend's activation dtype for CUDA. Move
 * data in and out only through upload/download. */
qq_status qq_backend_create(qq_device_kind kind, int32_t n_threads, qq_backend **out, qq_error *err);
/* As qq_backend_create with every option; QQ_ERR_UNSUPPORTED when the device cannot run `act`. */
qq_status qq_backend_create_opts(const qq_backend_options *opt, qq_backend **out, qq_error *err);
qq_act_dtype qq_backend_act(const qq_backend *be);
void qq_backend_free(qq_backend *be);
qq_device_kind qq_backend_kind(const qq_backend *be);
/* "cpu (OpenBLAS SKYLAKEX, 2 threads)", "cuda (NVIDIA H100 80GB HBM3, sm_90)". */
const char *qq_backend_description(const qq_backend *be);
/* Bytes of one activation element (4 on the CPU; 4 or 2 on CUDA). */
size_t qq_backend_act_bytes(const qq_backend *be);

/* Allocates n_elems activation elements (or raw bytes with _bytes) of backend memory. */
qq_status qq_backend_alloc(qq_backend *be, size_t n_elems, void **out, qq_error *err);
qq_status qq_backend_alloc_bytes(qq_backend *be, size_t bytes, void **out, qq_error *err);
void qq_backend_release(qq_backend *be, void *p);
qq_status qq_backend_upload_f32(qq_backend *be, const float *host, size_t n, void *dst, qq_error *err);
qq_status qq_backend_download_f32(qq_backend *be, const void *src, size_t n, float *host, qq_error *err);
/* Free and total bytes of the backend's memory (CUDA: the device's; CPU: QQ_ERR_UNSUPPORTED — host
 * memory is not budgeted here). */
qq_status qq_backend_mem_info(qq_backend *be, size_t *free_bytes, size_t *total_bytes, qq_error *err);
/* Waits for queued work (a no-op on the CPU). */
qq_status qq_backend_sync(qq_backend *be, qq_error *err);

/* ---- steps and CUDA Graphs --------------------------------------------------------------------------
 * A forward step is bracketed by qq_backend_step_begin / _end. Between them the host arrays given to
 * ops (token ids, positions, row indices, attention sequences and their block tables) must stay valid
 * and unchanged: the backend may upload each only once per step.
 *
 * graph_key != 0 declares a replayable step: every step begun with the same key issues the same ops on
 * the same buffers with the same shapes, and its attention calls describe each sequence with a block
 * table of exactly graph_blocks_per_seq entries (padded) and contexts of at most graph_max_len tokens.
 * The CUDA backend runs the first such step eagerly (warm-up: workspaces grow, plans are made),
 * captures the second into a CUDA graph and replays the graph for every later one, re-staging only the
 * host arrays. Backends without graphs ignore the key. Freeing or reallocating a buffer that a
 * captured step used requires qq_backend_graphs_clear first. */
typedef struct qq_step_desc {
  int64_t graph_key;            /* 0: an ordinary (eager) step */
  int32_t graph_max_len;        /* replayable steps: upper bound on n_past + n_new of every sequence */
  int32_t graph_blocks_per_seq; /* replayable steps: entries in every sequence's block table */
} qq_step_desc;
qq_status qq_backend_step_begin(qq_backend *be, const qq_step_desc *d, qq_error *err);
/* commit = false abandons the step after a failed op (a capture in progress is dropped). */
qq_status qq_backend_step_end(qq_backend *be, bool commit, qq_error *err);
/* Drops every captured graph (no-op without graphs). */
void qq_backend_graphs_clear(qq_backend *be);
/* Whether this backend captures replayable steps (CUDA, unless QQ_CUDA_GRAPHS=0). */
bool qq_backend_has_graphs(const qq_backend *be);

/* ---- linear weights ---------------------------------------------------------------------------------
 * y[m][n] = x[m][k] · W[n][k]ᵀ (+ bias[n]). W follows Hugging Face's nn.Linear: rows are output
 * features. Quantized weights arrive in one canonical form whatever the checkpoint format (AWQ, GPTQ,
 * compressed-tensors are unpacked to it by model/); each backend repacks once, at create time, into
 * the layout its kernels read best. Append only. */
typedef enum qq_weight_format {
  QQ_WFMT_F32 = 0,  /* w: float [n][k] */
  QQ_WFMT_BF16 = 1, /* w: uint16_t bf16 [n][k] */
  QQ_WFMT_F16 = 2,  /* w: uint16_t fp16 [n][k] */
  /* Weight-only integer (W4A16, W3A16, W8A16): codes uint8_t [n][k], each in [0, 2^bits);
   * W[r][c] = (codes[r][c] - zero[r][g]) * scales[r][g] with g = g_idx ? g_idx[c] : c / group_size.
   * The reference dequantizes in fp32; CUDA kernels do the same integer subtraction then one fp
   * multiply. */
  QQ_WFMT_QINT = 3,
  /* W8A8: codes int8_t [n][k] (symmetric), scales [n] (one per output channel). Activations are
   * quantized to int8 per token (dynamic: s_x = max|x_row| / 127) or per tensor (static act_scale),
   * y = (Σ qx·qw) · s_x · s_w computed exactly in int32 then scaled. */
  QQ_WFMT_W8A8 = 4,
} qq_weight_format;

typedef struct qq_linear_desc {
  qq_weight_format format;
  int32_t n;             /* output features */
  int32_t k;             /* input features */
  const void *w;         /* F32/BF16/F16: weights; QINT: uint8 codes; W8A8: int8 codes */
  int32_t bits;          /* QINT: 2..8 */
  int32_t group_size;    /* QINT: input channels per group (k for per-channel) */
  int32_t n_groups;      /* QINT: columns of scales/zeros (ceil(k / group_size), or max g_idx + 1) */
  const float *scales;   /* QINT: [n][n_groups]; W8A8: [n] */
  const uint8_t *zeros;  /* QINT: [n][n_groups]; NULL = symmetric, zero 2^(bits-1) */
  const int32_t *g_idx;  /* QINT: [k] or NULL */
  float act_scale;       /* W8A8: static per-tensor activation scale; 0 = dynamic per token */
  const float *bias;     /* [n] or NULL */
} qq_linear_desc;

typedef struct qq_linear qq_linear;
/* Validates the descriptor (shapes, code ranges, g_idx range) and copies/repacks everything it points
 * to: the caller may free its buffers afterwards. */
qq_status qq_linear_create(qq_backend *be, const qq_linear_desc *desc, qq_linear **out, qq_error *err);
void qq_linear_free(qq_linear *lin);
int32_t qq_linear_n(const qq_linear *lin);
int32_t qq_linear_k(const qq_linear *lin);
qq_weight_format qq_linear_format(const qq_linear *lin);
/* Bytes the backend holds for this weight. */
size_t qq_linear_bytes(const qq_linear *lin);
/* The weight as fp32 [n][k] on the host (dequantized when quantized), bias [n] (NULL: not wanted;
 * zeros when the weight has none). */
qq_status qq_linear_to_f32(const qq_linear *lin, float *w_host, float *bias_host, qq_error *err);

/* ---- ops --------------------------------------------------------------------------------------------
 * Buffers are backend memory, row-major. Host arrays are marked _host. Each returns QQ_ERR_INVALID_ARG
 * for shapes it cannot do. */

/* y[m][n] = x[m][k] · Wᵀ + b */
qq_status qq_op_matmul(qq_backend *be, const qq_linear *w, const void *x, int32_t m, void *y, qq_error *err);
/* out[i][:] = row tokens_host[i] of table (a [vocab][hidden] linear: embedding gather / dequantize). */
qq_status qq_op_embed(qq_backend *be, const qq_linear *table, const int32_t *tokens_host, int32_t n,
                      void *out, qq_error *err);
/* out[r][:] = x[r][:] / sqrt(mean(x[r]^2) + eps) * w[:]   (w: backend memory, dim elements; out may be x) */
qq_status qq_op_rmsnorm(qq_backend *be, const void *x, const void *w, int32_t rows, int32_t dim, float eps,
                        void *out, qq_error *err);
/* acc[i] += x[i] */
qq_status qq_op_add(qq_backend *be, void *acc, const void *x, size_t n, qq_error *err);
/* out[i] = silu(gate[i]) * up[i] for n elements (out may alias gate) */
qq_status qq_op_silu_mul(qq_backend *be, const void *gate, const void *up, size_t n, void *out, qq_error *err);
/* Rotary embedding (the "rotate half" form of HF Llama/Qwen) in place on x [t][heads][head_dim]:
 * pairs (j, j + head_dim/2) rotated by pos * inv_freq_j, inv_freq_j = theta^(-2j/head_dim) computed as
 * `freq` says (qq_rope_freq; QQ_ERR_INVALID_ARG for a value outside the enum). */
qq_status qq_op_rope(qq_backend *be, void *x, const int32_t *pos_host, int32_t t, int32_t heads,
                     int32_t head_dim, float theta, qq_rope_freq freq, qq_error *err);
/* Copies rows: out[i][:] = x[rows_host[i]][:] (width elements each). */
qq_status qq_op_gather_rows(qq_backend *be, const void *x, const int32_t *rows_host, int32_t n_rows,
                            int32_t width, void *out, qq_error *err);

/* Paged causal attention with GQA over a batch of sequences, each adding n_new tokens after n_past
 * cached ones. K/V cache of one layer: [n_blocks][block_tokens][n_kv_heads][head_dim] each. The op
 * first writes the new k/v rows into the cache slots given by the block table, then for each new
 * token i of a sequence attends over positions 0 .. n_past + i. */
typedef struct qq_attn_seq {
  int32_t row;            /* first row of this sequence in q/k/v/out */
  int32_t n_new;
  int32_t n_past;
  const int32_t *blocks;  /* host: block ids, ceil((n_past + n_new) / block_tokens) of them */
} qq_attn_seq;
typedef struct qq_attn_params {
  int32_t n_heads;
  int32_t n_kv_heads;
  int32_t head_dim;
  int32_t block_tokens;
  float scale;            /* usually 1/sqrt(head_dim) */
} qq_attn_params;
/* q [T][n_heads][hd], k/v [T][n_kv][hd], out [T][n_heads][hd]. */
qq_status qq_op_attention(qq_backend *be, const qq_attn_params *p, const qq_attn_seq *seqs, int32_t n_seqs,
                          const void *q, const void *k, const void *v, void *k_cache, void *v_cache,
                          void *out, qq_error *err);
/* Copies n_tokens cached positions of one sequence's blocks into another's (prefix sharing). */
qq_status qq_op_kv_copy(qq_backend *be, const qq_attn_params *p, void *k_cache, void *v_cache,
                        const int32_t *src_blocks, const int32_t *dst_blocks, int32_t n_tokens, qq_error *err);

/* ---- reductions over logit rows (perplexity, label scoring, greedy decoding, sampling) ----------------
 * x: backend memory holding rows of n logits (the head matmul's output, in the activation dtype).
 * The ops read `count` rows: rows_host[i] for entry i (a row may be named several times; the caller
 * keeps every index within the buffer), or rows 0..count-1 when rows_host is NULL. Results land in
 * host arrays; both ops wait for the device (not allowed inside a replayable step: call them after
 * qq_backend_step_end). count 0 does nothing. */

/* Per entry of qq_op_logits_reduce. */
typedef struct qq_logits_stats {
  double lse;      /* log Σ_j exp(x[j]) = max + log Σ_j exp(x[j] − max); NaN when want_lse is false */
  float max;       /* max_j x[j] (NaN elements ignored) */
  float target;    /* x[target] of the entry; 0 when it has none */
  int32_t argmax;  /* the lowest j with x[j] == max: greedy decoding's tie rule (qq_sampler) */
  int32_t pad_;
} qq_logits_stats;
/* targets_host: one id per entry in [-1, n) (-1: none), or NULL for none. NLL of the target =
 * lse − target. want_lse = false skips the exponentials (argmax and max only: one pass).
 * CPU reference: the sum of exp((double)x[j] − max) in double in index order, lse = max + log(sum)
 * (the arithmetic of qq_eval_perplexity's log-softmax; consecutive entries naming the same row share
 * one computation). CUDA: expf of x[j] − max in fp32, summed in double (lse within ~1e-7 relative of
 * the reference). */
qq_status qq_op_logits_reduce(qq_backend *be, const void *x, int32_t n, const int32_t *rows_host,
                              const int32_t *targets_host, int32_t count, bool want_lse, qq_logits_stats *out_host,
                              qq_error *err);

/* Most candidates qq_op_logits_topk returns per row. */
#define QQ_TOPK_MAX 4096
/* The k largest scaled logits of each entry's row: v[j] = x[j] * scale (one fp32 multiply, as
 * qq_sampler applies 1/temperature), sorted by v descending, ties by the lower id (qq_sampler's order).
 * vals_host, ids_host: [count][k]. scales_host: one scale per entry (> 0, finite) or NULL for 1.
 * sums_host ([count] or NULL): Σ_j exp((double)v[j] − v_max) over the whole row, exp and sum in double
 * (the order of the sum is unspecified: within a few n·2^-53 relative of any other order).
 * 1 <= k <= min(n, QQ_TOPK_MAX). -0.0 counts as +0.0. */
qq_status qq_op_logits_topk(qq_backend *be, const void *x, int32_t n, const int32_t *rows_host,
                            const float *scales_host, int32_t count, int32_t k, float *vals_host, int32_t *ids_host,
                            double *sums_host, qq_error *err);

#ifdef __cplusplus
}
#endif
#endif /* QQ_KERNELS_H */
