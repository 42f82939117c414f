/* quantize.h — the one public header of quantize/: weight quantization math on fp32 matrices (RTN,
 * GPTQ, AWQ scale / clip search, SmoothQuant scales) and the on-disk packings of AutoAWQ "gemm",
 * GPTQ v1 and compressed-tensors "int-quantized" (docs/formats.md documents every bit).
 *
 * Conventions: a weight W is float [n][k] row-major, rows are output features (nn.Linear). A
 * Hessian H is the input second moment XᵀX (double [k][k], any positive scale: the algorithms are
 * invariant to it). Every function that can fail returns qq_status and fills the optional qq_error.
 * Pointer parameters are borrowed for the call unless marked otherwise.
 */
#ifndef QQ_QUANTIZE_H
#define QQ_QUANTIZE_H

#include "calibration.h"
#include "kernels.h"
#include "model.h"
#include "qq_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ================================ quantized weights ================================ */

/* Precision the stored scales are rounded to before codes are computed, so that the codes are
 * optimal for the scales the checkpoint actually holds (AWQ / GPTQ store F16, compressed-tensors
 * stores the model dtype). */
typedef enum qq_scale_dtype { QQ_SCALE_F32 = 0, QQ_SCALE_F16 = 1, QQ_SCALE_BF16 = 2 } qq_scale_dtype;
float qq_scale_round(float s, qq_scale_dtype dt);

typedef struct qq_qparams {
  int32_t bits;              /* 2..8 */
  int32_t group_size;        /* input channels per group; -1 = one group per row (per channel) */
  bool sym;                  /* symmetric: zero fixed at 2^(bits-1), scale = 2·max|w| / (2^bits − 1) */
  qq_scale_dtype scale_dtype;
  int32_t zero_min;          /* asym: smallest zero point allowed (GPTQ v1 cannot store 0: use 1) */
} qq_qparams;
/* {bits 4, group 128, asym, F32 scales, zero_min 0}. */
qq_qparams qq_qparams_default(void);
/* Checks bits in 2..8 and that group_size is -1 or a positive divisor of k (names the values). */
qq_status qq_qparams_check(const qq_qparams *p, int32_t k, qq_error *err);

/* An owned weight in the canonical QINT form of kernels.h:
 * W[r][c] = (codes[r][c] − zeros[r][g]) · scales[r][g], g = g_idx ? g_idx[c] : c / group_size. */
typedef struct qq_qweight {
  int32_t n, k, bits, group_size, n_groups;
  bool sym;
  uint8_t *codes;   /* [n][k] */
  float *scales;    /* [n][n_groups] */
  uint8_t *zeros;   /* [n][n_groups], filled for symmetric weights too (2^(bits-1)) */
  int32_t *g_idx;   /* [k], or NULL for c / group_size */
} qq_qweight;
/* Allocates the arrays (g_idx only when with_g_idx); frees nothing on failure it did not allocate. */
qq_status qq_qweight_alloc(qq_qweight *q, int32_t n, int32_t k, const qq_qparams *p, bool with_g_idx,
                           qq_error *err);
void qq_qweight_free(qq_qweight *q); /* frees the members; the struct itself is the caller's */
/* Dequantizes into w [n][k]. */
void qq_qweight_dequant(const qq_qweight *q, float *w);
/* Points a kernels.h descriptor at q (borrowed: q must outlive the descriptor). */
void qq_qweight_desc(const qq_qweight *q, const float *bias, qq_linear_desc *out);

/* ================================ RTN ================================ */

/* Scale and zero of one group of values. Asymmetric: the range [min(lo, 0), max(hi, 0)] is split into
 * 2^bits − 1 steps; zero = round(−lo / scale) clamped to [zero_min, 2^bits − 1]. Symmetric: scale =
 * 2·max|x| / (2^bits − 1), zero = 2^(bits−1). A group of zeros gets scale 1. The scale is rounded to
 * p->scale_dtype. */
void qq_rtn_group_params(const qq_qparams *p, const float *x, int32_t len, int32_t stride, float *scale,
                         uint8_t *zero);
/* Range search of a group's grid (the reference GPTQ Quantizer's mse=True): the range [lo, hi] of the
 * group is shrunk to p·[lo, hi] for p = 1 − i/grid, i = 0 .. max_shrink·grid − 1, and the grid of the p
 * with the least Σ |Q(x) − x|^norm is kept (the first on ties, i.e. the widest). */
typedef struct qq_range_search {
  int32_t grid;       /* shrink steps (default 100) */
  double max_shrink;  /* p goes down to 1 − max_shrink (exclusive) (default 0.8: 80 candidates) */
  double norm;        /* exponent of the error (default 2.4) */
} qq_range_search;
qq_range_search qq_range_search_default(void);
/* qq_rtn_group_params with the range search, for len contiguous values (|x|^norm evaluated to ~1e-4
 * relative, in single precision: the search only ranks candidates). grid 0 is qq_rtn_group_params. */
void qq_mse_group_params(const qq_qparams *p, const qq_range_search *rs, const float *x, int32_t len, float *scale,
                         uint8_t *zero);
/* code = clamp(round(x / scale) + zero, 0, 2^bits − 1) (round half to even, as torch.round). */
uint8_t qq_rtn_code(float x, float scale, uint8_t zero, int32_t bits);
/* Round-to-nearest quantization of w [n][k] into q (allocated here; free with qq_qweight_free). */
qq_status qq_rtn_quantize(const float *w, int32_t n, int32_t k, const qq_qparams *p, qq_qweight *q,
                          qq_error *err);

/* W8A8 weights: symmetric int8 per output channel, scale = max|w_r| / 127 rounded to scale_dtype,
 * codes = clamp(round(w / scale), −127, 127). codes [n][k], scales [n]. */
qq_status qq_w8a8_quantize(const float *w, int32_t n, int32_t k, qq_scale_dtype scale_dtype, int8_t *codes,
                           float *scales, qq_error *err);

/* ================================ GPTQ ================================ */

typedef struct qq_gptq_options {
  double damp_percent;  /* λ = damp_percent · mean(diag H) added to the diagonal (default 0.05) */
  int32_t block_size;   /* lazy-batch block of columns (default 128) */
  bool act_order;       /* process columns by decreasing diag(H); writes g_idx when grouped (default true;
                         * the AutoAWQ layout has no g_idx: turn it off to write GPTQ weights there) */
  bool static_groups;   /* group scales from the unmodified W before any update (default false) */
  bool mse;             /* each group's grid by the range search (qq_mse_group_params with `range`) wherever
                         * GPTQ fixes it, instead of the group's min / max (default true) */
  qq_range_search range;/* qq_range_search_default() */
  int32_t refine_sweeps;/* passes of the least-squares refit of each group's scale (and zero, asym) after
                         * the pass, GPTQ's codes kept, against the row's output error through the
                         * undamped H (qq_refine_grid, quantize_internal.h) (default 1; 0 off) */
} qq_gptq_options;
qq_gptq_options qq_gptq_options_default(void);

/* GPTQ (Frantar et al. 2022) of w [n][k] given H [k][k] (XᵀX of the layer's inputs, double, not
 * modified). Columns whose diagonal is zero (dead inputs) are quantized as zero. q is allocated here.
 * With act_order and without static_groups q->g_idx holds each column's group. QQ_ERR_RANGE when H
 * is not positive definite even after raising the damping 100-fold. */
qq_status qq_gptq_quantize(const float *w, int32_t n, int32_t k, const double *h, const qq_qparams *p,
                           const qq_gptq_options *o, qq_qweight *q, qq_error *err);

/* Output error of replacing w by wq for inputs with second moment H: tr((W−Ŵ) H (W−Ŵ)ᵀ), and the
 * reference energy tr(W H Wᵀ) in *ref (may be NULL): ‖XWᵀ − XŴᵀ‖² and ‖XWᵀ‖² exactly. */
double qq_quant_output_error(const float *w, const float *wq, int32_t n, int32_t k, const double *h,
                             double *ref);

/* ================================ AWQ ================================ */

typedef struct qq_awq_options {
  int32_t n_grid;        /* α = i / n_grid, i = 0..n_grid−1 (default 20) */
  bool clip;             /* run the clipping search after scaling (default true) */
  int32_t clip_grid;     /* shrink steps (default 20) */
  double max_shrink;     /* clip max|w| down to at most (1 − max_shrink) (default 0.5) */
  int32_t refine_sweeps; /* passes of qq_awq_refine_grid after clipping, every linear (default 2; 0 off) */
} qq_awq_options;
qq_awq_options qq_awq_options_default(void);

/* One AWQ scaling group: n_lin linears that read the same input (e.g. q, k, v), their weights
 * w[i] [n[i]][k], the input's mean |x| per channel [k] and second moment H [k][k]. Searches α over the
 * grid for s = mean|x|^α (normalised by sqrt(max s · min s)) minimising Σ_i ‖X Wᵢᵀ − (X/s) Q(Wᵢ·s)ᵀ‖²
 * and writes the best s [k] (1 for α = 0) and its α. The caller folds 1/s into the op in front. */
qq_status qq_awq_search_scale(const float *const *w, const int32_t *n, int32_t n_lin, int32_t k,
                              const float *x_mean_abs, const double *h, const qq_qparams *p,
                              const qq_awq_options *o, float *s_out, double *alpha_out, qq_error *err);
/* Weight clipping search (per output row and group): max|w| of the group is clipped to
 * (1 − i/clip_grid)·max, i = 0..max_shrink·clip_grid, choosing the value with least output error
 * Δ H_gg Δᵀ over the group's diagonal block of H; w [n][k] is clipped in place. */
qq_status qq_awq_clip(float *w, int32_t n, int32_t k, const double *h, const qq_qparams *p,
                      const qq_awq_options *o, qq_error *err);

/* Refines the grid of an RTN result q of w [n][k] (same space as h): per row, each group's scale (and
 * zero, by ±1) is re-fitted in turn by least squares against the row's output error
 * (w − ŵ) H (w − ŵ)ᵀ over the whole row (the other groups' errors included), the group's codes
 * re-rounded to the new grid; a change is kept only when that error goes down. sweeps passes. */
qq_status qq_awq_refine_grid(const float *w, const double *h, const qq_qparams *p, int32_t sweeps, qq_qweight *q,
                             qq_error *err);

/* ================================ SmoothQuant ================================ */

/* s_j = max|X_j|^α / max|W_j|^(1−α) over the n_lin weights reading input channel j (clamped to
 * [1e-5, 1e5]; s_j = 1 where either maximum is 0). */
qq_status qq_smoothquant_scales(const float *const *w, const int32_t *n, int32_t n_lin, int32_t k,
                                const float *x_abs_max, double alpha, float *s_out, qq_error *err);

/* Folding helpers. The op in front divides by s, the following linears multiply columns by s.
 * When the norm weight is stored in a lower precision (dtype F16/BF16), the new norm weight is rounded
 * first and s replaced by the exact ratio old/new, so the product stays exact in storage. */
void qq_fold_scale_into_norm(float *norm_w, int32_t k, float *s, qq_dtype norm_dtype);
void qq_fold_scale_into_columns(float *w, int32_t n, int32_t k, const float *s); /* w[:, j] *= s_j */
void qq_fold_scale_into_rows(float *w, float *bias, int32_t n, int32_t k, const float *s); /* w[r] /= s_r */
/* The second moment of x / s: h_ij /= s_i s_j (in place). */
void qq_hessian_scale(double *h, int32_t k, const float *s);

/* ================================ on-disk formats ================================ */

/* AutoAWQ "gemm" (4 bits): qweight I32 [k][n/8], qzeros I32 [k/g][n/8] with nibble i of word j holding
 * output column 8j + AWQ_ORDER[i], AWQ_ORDER = {0,2,4,6,1,3,5,7}; scales F16 [k/g][n]. q must be
 * 4-bit, without g_idx, n % 8 == 0. Outputs are caller-allocated. */
qq_status qq_awq_pack(const qq_qweight *q, int32_t *qweight, int32_t *qzeros, uint16_t *scales_f16,
                      qq_error *err);
/* GPTQ v1: qweight I32 [k·bits/32][n] (values packed along the input as one little-endian bit stream
 * per column, value c at bit c·bits); qzeros I32 [G][n·bits/32] (zero − 1, packed along the output the
 * same way); scales F16 [G][n]; g_idx I32 [k]. bits 2, 3, 4 or 8; k·bits and n·bits multiples of 32.
 * Zero points must be ≥ 1 (use zero_min = 1). */
qq_status qq_gptq_pack(const qq_qweight *q, int32_t *qweight, int32_t *qzeros, uint16_t *scales_f16,
                       int32_t *g_idx, qq_error *err);
/* Bit-stream helpers shared with the loader's tests: value i of width bits at bit i·bits of words. */
void qq_bits_put(uint32_t *words, int64_t i, int32_t bits, uint32_t v);
uint32_t qq_bits_get(const uint32_t *words, int64_t i, int32_t bits);

/* ================================ whole-model pipeline ================================ */

typedef enum qq_method { QQ_METHOD_RTN = 0, QQ_METHOD_GPTQ = 1, QQ_METHOD_AWQ = 2, QQ_METHOD_SMOOTHQUANT = 3 } qq_method;
const char *qq_method_name(qq_method m);              /* "rtn", "gptq", "awq", "smoothquant" */
qq_status qq_method_parse(const char *s, qq_method *out, qq_error *err);

/* On-disk layout of the result. AUTO: AWQ → AutoAWQ gemm (GPTQ layout for 3 bits), GPTQ → GPTQ,
 * SmoothQuant → compressed-tensors W8A8, RTN → compressed-tensors W8A16 for symmetric per-channel
 * 8 bits, AutoAWQ gemm for 4-bit asymmetric grouped, GPTQ otherwise. */
typedef enum qq_out_format { QQ_OUT_AUTO = 0, QQ_OUT_AWQ = 1, QQ_OUT_GPTQ = 2, QQ_OUT_CT = 3 } qq_out_format;
const char *qq_out_format_name(qq_out_format f);      /* "auto", "awq-gemm", "gptq", "compressed-tensors" */

/* Called at the start of each phase of each layer ("stats", "quantize", "forward"). */
typedef void (*qq_progress_fn)(void *user, int32_t layer, int32_t n_layers, const char *phase);

typedef struct qq_quantize_options {
  qq_method method;
  int32_t bits;             /* weight bits */
  int32_t group_size;       /* -1 = per output channel */
  bool sym;
  qq_out_format format;
  qq_gptq_options gptq;
  bool true_sequential;     /* GPTQ: q/k/v, then o, then gate/up, then down, each on inputs produced by the
                             * already quantized ones (default true); the layer runs once, group by group
                             * (qq_calib_staged in calibration.h), as it does for SmoothQuant */
  size_t stage_bytes;       /* staged methods: keep down_proj's inputs between stages when they take at most
                             * this many bytes, recompute them otherwise (0: four times the activations) */
  qq_awq_options awq;
  double sq_alpha;          /* SmoothQuant migration strength (default 0.5) */
  bool sq_static_act;       /* SmoothQuant: static per-tensor activation scales from calibration */
  const qq_calib_data *calib; /* borrowed; required by GPTQ, AWQ and SmoothQuant, optional for RTN */
  qq_progress_fn progress;
  void *progress_user;
  volatile int *cancel;     /* checked between phases: non-zero stops with QQ_ERR_CANCELLED */
} qq_quantize_options;
/* Defaults of the method: AWQ 4-bit g128 asym; GPTQ 4-bit g128 sym (qq_gptq_options_default: act-order,
 * damping 5 %, range search, one refit pass); SmoothQuant W8A8 α 0.5; RTN 4-bit g128 asym. */
qq_quantize_options qq_quantize_options_default(qq_method m);
/* Checks everything that can be checked before work starts: bits and group size the method and format
 * can do, group size dividing every linear's input width, calibration data present when needed. */
qq_status qq_quantize_check(const qq_quantize_options *o, const qq_config *cfg, qq_error *err);
/* The format AUTO resolves to (or the one asked for). */
qq_out_format qq_quantize_resolve_format(const qq_quantize_options *o);

/* SmoothQuant takes XᵀX (needed only for the report's output errors) from the first samples: XᵀX of
 * down_proj's input alone is ~70 GFLOP per layer at 128 × 512 tokens. */
#define QQ_SQ_ERROR_SAMPLES 16

typedef struct qq_layer_report {
  double rel_err[QQ_LIN_COUNT];  /* ‖XWᵀ − XŴᵀ‖ / ‖XWᵀ‖ on the calibration inputs (NaN without calibration) */
  int64_t err_tokens;            /* calibration tokens rel_err was measured on (SmoothQuant: those of the
                                  * first QQ_SQ_ERROR_SAMPLES samples; 0 without calibration) */
  double awq_alpha[QQ_CIN_COUNT];/* AWQ: chosen α per scaled input (NaN where not scaled) */
  double t_stats, t_quant, t_forward; /* seconds */
} qq_layer_report;

typedef struct qq_quantized qq_quantized;
/* Quantizes every decoder layer of m (loaded on the CPU backend) layer by layer; m's weights and norms
 * are replaced by the quantized ones as it goes. *out is transferred. */
qq_status qq_quantize_model(qq_model *m, const qq_quantize_options *o, qq_quantized **out, qq_error *err);
void qq_quantized_free(qq_quantized *q);
int32_t qq_quantized_layers(const qq_quantized *q);
const qq_layer_report *qq_quantized_layer_report(const qq_quantized *q, int32_t layer);
size_t qq_quantized_peak_rss(const qq_quantized *q);  /* bytes, getrusage at the end of the last layer */

/* Writes the checkpoint into out_dir (created; must not exist unless overwrite): every tensor of the
 * source checkpoint src_dir, with the quantized linears in the resolved layout, changed norms / biases
 * in the source dtype; config.json with quantization_config and "qquant" (method, options, calibration
 * sha256, per-layer errors); report_json (NULL or a JSON object text) as qquant_report.json; every
 * other file of src_dir (tokenizer, generation config) copied. Shards of at most max_shard_bytes (0:
 * one file). */
qq_status qq_quantized_write(const qq_quantized *q, const char *src_dir, const char *out_dir, bool overwrite,
                             size_t max_shard_bytes, const char *report_json, qq_error *err);

/* ================================ synthetic checkpoints ================================
 * (added) `qquant synth --format awq|gptq|w8a8` (synth.c): a qq_synth_write checkpoint (model.h) whose
 * decoder linears hold RANDOM codes in the layouts above, packed by the functions above, with the
 * quantization_config qq_quantized_write writes for the matching method (AWQ, GPTQ, SmoothQuant).
 * Embeddings, lm_head, norms and biases are dense, as in real checkpoints. No calibration and no fp32
 * weights: each linear is generated and packed while it is written (memory: one linear). */
typedef struct qq_synth_quant {
  qq_out_format format;  /* QQ_OUT_AWQ, QQ_OUT_GPTQ, or QQ_OUT_CT = W8A8 (int8 per-channel weights,
                          * dynamic per-token int8 activations) */
  int32_t bits;          /* 0: the format's (4; W8A8 8). AWQ 4; GPTQ 3, 4 or 8; W8A8 8 */
  int32_t group_size;    /* 0: 128, or 64 / 32 when 128 does not divide every linear's input width (tiny:
                          * 32); else 128, 64, 32 or -1 (per channel). W8A8: per channel only */
  bool sym;              /* zero points fixed at 2^(bits-1) (AWQ: zero_point false). W8A8: must be true */
} qq_synth_quant;
/* AWQ: asymmetric; GPTQ and W8A8: symmetric; default bits and group size. */
qq_synth_quant qq_synth_quant_default(qq_out_format f);
/* Fills in the defaults for o's shape and checks the combination (QQ_ERR_INVALID_ARG naming the option). */
qq_status qq_synth_quant_resolve(const qq_synth_options *o, const qq_synth_quant *in, qq_synth_quant *out,
                                 qq_error *err);
/* Writes the checkpoint (qq_synth_write with o->linears replaced). Shapes a layout cannot hold fail
 * before the folder is touched, naming the linear. */
qq_status qq_synth_quant_write(const char *dir, const qq_synth_options *o, const qq_synth_quant *q, qq_error *err);
/* The canonical weight qq_synth_quant_write packs for linear id of layer (n outputs, k inputs) under
 * seed and p (resolved bits, group size, sym): codes uniform in [0, 2^bits), zero points 2^(bits-1)
 * (sym) or uniform in [2^(bits-1) - 2, 2^(bits-1) + 1], F16-exact scales making the dequantized
 * weights' std about 0.02. q is allocated here (qq_qweight_free). */
qq_status qq_synth_qweight(uint64_t seed, int32_t layer, qq_linear_id id, int32_t n, int32_t k, const qq_qparams *p,
                           qq_qweight *q, qq_error *err);
/* The W8A8 weight it writes: codes [n][k] uniform in [-127, 127], scales [n] (std about 0.02) rounded to
 * scale_dtype (the model dtype). Arrays are the caller's. */
void qq_synth_w8a8(uint64_t seed, int32_t layer, qq_linear_id id, int32_t n, int32_t k, qq_scale_dtype scale_dtype,
                   int8_t *codes, float *scales);

#ifdef __cplusplus
}
#endif
#endif /* QQ_QUANTIZE_H */
