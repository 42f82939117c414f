/* quantize_internal.h — private to quantize/: the result of a whole-model run, shared by the pipeline
 * (pipeline.c) and the checkpoint writer (writer.c). */
#ifndef QQ_QUANTIZE_INTERNAL_H
#define QQ_QUANTIZE_INTERNAL_H

#include <cjson/cJSON.h>

#include "quantize.h"

/* One quantized linear: QINT codes (q) or W8A8 codes (codes8 / scales8), and its bias after folding. */
typedef struct qq_qlinear {
  bool w8a8;
  qq_qweight q;
  int8_t *codes8;   /* [n][k] */
  float *scales8;   /* [n] */
  float act_scale;  /* static activation scale (0 = dynamic) */
  float *bias;      /* [n] or NULL */
  int32_t n, k;
} qq_qlinear;

struct qq_quantized {
  qq_quantize_options opt;  /* calib / progress / cancel pointers cleared */
  qq_out_format format;     /* resolved */
  struct {
    int32_t n_layers, hidden, intermediate, q_dim, kv_dim;
    qq_task task;
  } cfg;
  char calib_sha256[65];
  int32_t calib_samples, calib_seqlen;
  qq_qlinear (*lin)[QQ_LIN_COUNT];  /* [n_layers][7] */
  float **norm_in, **norm_post;     /* [n_layers] changed norm weights, or NULL entries */
  qq_layer_report *rep;             /* [n_layers] */
  size_t peak_rss;
  double seconds;
};

/* config.json's "quantization_config" for options o written in the resolved format (writer.c; also
 * used by synth.c so that synthetic checkpoints carry exactly what the quantizer writes). NULL when out
 * of memory. */
cJSON *qq_quant_config_json(const qq_quantize_options *o, qq_out_format format, qq_task task);

/* Least-squares grid refinement of q (groups contiguous, no g_idx) against w [n][k] and H (same space):
 * per row, each group's scale (and zero by ±1 when asymmetric) is re-fitted in turn against the whole
 * row's output error (w − ŵ) H (w − ŵ)ᵀ, the other groups' errors included; a change is kept only when
 * that error goes down; sweeps passes over the groups. keep_codes false (AWQ, qq_awq_refine_grid): the
 * group's codes are re-rounded to nearest on each new grid (two least-squares rounds). keep_codes true
 * (GPTQ): the codes stay as they are and only the grid is fitted to them. Scales are rounded to
 * p->scale_dtype; zeros stay in [p->zero_min, 2^bits − 1]. awq.c. */
qq_status qq_refine_grid(const float *w, const double *h, const qq_qparams *p, int32_t sweeps, bool keep_codes,
                         qq_qweight *q, qq_error *err);

#endif
