/* calibration.h — the one public header of calibration/: calibration text (jsonl with a "text" field,
 * or plain text), reproducible token windows, and the layer-by-layer statistics the quantizers need
 * (per-channel max |x| and mean |x|, second moment H = XᵀX of each linear's input).
 *
 * Sampling protocol: every document is tokenized without special tokens and the
 * documents are concatenated in file order, each followed by the separator token when one is given
 * (the model's EOS). n_samples windows of seqlen tokens start at offsets drawn uniformly from
 * [0, total − seqlen] by a splitmix64 generator seeded with `seed` (windows may overlap when the data
 * is short, as in AutoGPTQ's random-window sampling). The sha256 of the file's bytes identifies the
 * data in reports.
 */
#ifndef QQ_CALIBRATION_H
#define QQ_CALIBRATION_H

#include "model.h"
#include "qq_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qq_calib_data {
  int32_t n_samples;
  int32_t seqlen;
  int32_t *tokens;        /* [n_samples][seqlen] */
  int64_t total_tokens;   /* length of the concatenated stream */
  int32_t n_documents;
  char sha256[65];        /* of the file's bytes */
} qq_calib_data;

/* Reads path (".jsonl": one JSON object with a string "text" per non-empty line; anything else: plain
 * text, one document), tokenizes and samples. Errors: unreadable file (QQ_ERR_IO), a jsonl line that
 * is not an object with a string "text" (QQ_ERR_FORMAT naming the line), no text at all or fewer
 * tokens than one window (QQ_ERR_INVALID_ARG saying how many there are). *out is transferred. */
qq_status qq_calib_load(const char *path, const qq_tokenizer *tok, int32_t separator, int32_t n_samples,
                        int32_t seqlen, uint64_t seed, qq_calib_data **out, qq_error *err);
void qq_calib_free(qq_calib_data *d);

/* ---- activations and statistics --------------------------------------------------------------- */

/* The four inputs of a decoder layer's linears: q/k/v share one, gate/up share one. */
typedef enum qq_calib_input {
  QQ_CIN_QKV = 0,   /* input of q_proj, k_proj, v_proj (after input_layernorm) */
  QQ_CIN_O = 1,     /* input of o_proj (attention output) */
  QQ_CIN_GATEUP = 2,/* input of gate_proj, up_proj (after post_attention_layernorm) */
  QQ_CIN_DOWN = 3,  /* input of down_proj (silu(gate)·up) */
  QQ_CIN_COUNT = 4
} qq_calib_input;
qq_calib_input qq_calib_input_of(qq_linear_id id);

/* Statistics of one input, accumulated over all calibration tokens. */
typedef struct qq_calib_stats {
  int32_t k;
  int64_t tokens;
  double *h;          /* [k][k] XᵀX (NULL when not requested) */
  float *abs_max;     /* [k] max |x_j| */
  float *abs_mean;    /* [k] mean |x_j| */
} qq_calib_stats;

/* Hidden states of every sample at the current layer: x [n_samples][seqlen][hidden]. */
typedef struct qq_calib_acts qq_calib_acts;
/* Embeds every sample (the input of layer 0). */
qq_status qq_calib_acts_create(qq_model *m, const qq_calib_data *d, qq_calib_acts **out, qq_error *err);
void qq_calib_acts_free(qq_calib_acts *a);
size_t qq_calib_acts_bytes(const qq_calib_acts *a);

/* Runs decoder layer `layer` over every sample without changing the stored activations, accumulating
 * the statistics of the inputs whose bit (1 << qq_calib_input) is set in `inputs` into stats[input]
 * (allocated here; free with qq_calib_stats_free). with_h: also accumulate XᵀX (double, from per-sample
 * ssyrk). */
qq_status qq_calib_layer_stats(qq_model *m, int32_t layer, const qq_calib_acts *a, uint32_t inputs, bool with_h,
                               qq_calib_stats stats[QQ_CIN_COUNT], qq_error *err);
/* Replaces the stored activations by layer `layer`'s outputs (with the weights the model holds now). */
qq_status qq_calib_layer_advance(qq_model *m, int32_t layer, qq_calib_acts *a, qq_error *err);
void qq_calib_stats_free(qq_calib_stats stats[QQ_CIN_COUNT]);

/* Peak resident set size of this process so far (getrusage), bytes. */
size_t qq_calib_peak_rss(void);

#ifdef __cplusplus
}
#endif
#endif /* QQ_CALIBRATION_H */
