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

#endif
