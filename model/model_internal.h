/* model_internal.h — private to model/: the model and KV cache structs shared by forward.c,
 * kvcache.c and layer.c. */
#ifndef QQ_MODEL_INTERNAL_H
#define QQ_MODEL_INTERNAL_H

#include "model.h"

typedef struct qq_layer {
  qq_linear *lin[QQ_LIN_COUNT];
  void *norm_in;    /* backend [hidden] */
  void *norm_post;  /* backend [hidden] */
  void *q_norm;     /* backend [head_dim] (Qwen3) */
  void *k_norm;
  float *host_norm_in;   /* host copies (get_norm) */
  float *host_norm_post;
} qq_layer;

/* Scratch activations for one forward step of up to cap_tokens tokens (backend memory). */
typedef struct qq_scratch {
  int32_t cap_tokens;
  int32_t cap_rows;   /* output rows */
  void *x, *xn, *q, *k, *v, *attn, *o, *gate, *up, *rows, *rows_n, *logits;
} qq_scratch;

struct qq_model {
  qq_config cfg;
  qq_weights *weights;   /* kept open: the backend may reference nothing in it, but layer access
                            (calibration) reads original tensors */
  qq_tokenizer *tok;
  qq_backend *be;
  qq_linear *embed;      /* [vocab][hidden] */
  qq_linear *head;       /* lm_head / score; NULL when tied to embed */
  void *final_norm;
  qq_layer *layers;
  int32_t out_dim;
  int32_t q_dim, kv_dim; /* heads * head_dim, kv_heads * head_dim */
  qq_rope_freq rope_freq; /* qq_model_options.rope_freq */
  qq_scratch sc;
  int64_t scratch_gen;   /* increments when the scratch buffers are reallocated (graph keys) */
};

struct qq_kv_seq_state {
  bool live;
  int32_t len;
  int32_t n_blocks;
  int32_t cap_blocks;
  int32_t *blocks;
};

struct qq_kv_cache {
  qq_model *m;
  qq_kv_options opt;
  void **k;              /* per layer: backend [n_blocks][block_tokens][kv_heads][head_dim] */
  void **v;
  int32_t *free_list;    /* stack of free block ids */
  int32_t n_free;
  struct qq_kv_seq_state *seqs;
  /* Replayable decode steps pad the batch to a bucket size with dummy one-token sequences whose
   * keys/values land in this extra block (never handed out; its contents are never read for a real
   * sequence). pad_table: cap_blocks entries, all pad_block. */
  int32_t pad_block;
  int32_t *pad_table;
  int64_t id;            /* distinguishes caches in graph keys */
};

void qq_model_scratch_free(qq_model *m);
/* Ensures scratch room for n tokens and r output rows. */
qq_status qq_model_scratch_reserve(qq_model *m, int32_t n_tokens, int32_t n_rows, qq_error *err);
/* One decoder layer over the rows in m->sc.x (n tokens of the sequences in seqs), using the given
 * per-layer caches. cap: optional capture of linear inputs (host fp32: CPU backend only). */
qq_status qq_model_layer_step(qq_model *m, int32_t layer, int32_t n, const int32_t *pos, const qq_attn_seq *seqs,
                              int32_t n_seqs, int32_t block_tokens, void *k_cache, void *v_cache,
                              qq_capture_fn cap, void *user, qq_error *err);
/* One part of layer l on the scratch buffers (ATTN: s->x -> s->attn over the one sequence seq; O: s->x +=
 * s->attn·Wo; MLP_ACT: s->x -> s->gate; DOWN: s->x += s->gate·Wd). */
qq_status qq_model_layer_part_step(qq_model *m, int32_t l, qq_layer_part part, int32_t n, const int32_t *pos,
                                   const qq_attn_seq *seq, void *k_cache, void *v_cache, qq_error *err);

#endif
