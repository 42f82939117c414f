/* backend_internal.h — private to kernels/: the op table each backend fills in. kernels/backend.c
 * implements the public qq_backend_* / qq_linear_* / qq_op_* functions of kernels.h by checking
 * arguments once and calling through this table. */
#ifndef QQ_BACKEND_INTERNAL_H
#define QQ_BACKEND_INTERNAL_H

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qq_backend_vtable {
  const char *name;
  /* Sets be->impl, be->description, be->act (resolving QQ_ACT_AUTO) and be->act_bytes; fails with
   * QQ_ERR_UNSUPPORTED for an activation dtype the backend cannot run. */
  qq_status (*init)(qq_backend *be, const qq_backend_options *opt, qq_error *err);
  void (*destroy)(qq_backend *be);
  qq_status (*alloc_bytes)(qq_backend *be, size_t bytes, void **out, qq_error *err);
  void (*release)(qq_backend *be, void *p);
  qq_status (*upload_f32)(qq_backend *be, const float *host, size_t n, void *dst, qq_error *err);
  qq_status (*download_f32)(qq_backend *be, const void *src, size_t n, float *host, qq_error *err);
  qq_status (*sync)(qq_backend *be, qq_error *err);
  qq_status (*mem_info)(qq_backend *be, size_t *free_bytes, size_t *total_bytes, qq_error *err); /* NULL: unsupported */
  /* Steps and graphs (kernels.h); NULL: nothing to do. */
  qq_status (*step_begin)(qq_backend *be, const qq_step_desc *d, qq_error *err);
  qq_status (*step_end)(qq_backend *be, bool commit, qq_error *err);
  void (*graphs_clear)(qq_backend *be);
  bool (*has_graphs)(const qq_backend *be);

  /* Creates the backend's representation of a validated descriptor into lin->impl. */
  qq_status (*linear_create)(qq_backend *be, const qq_linear_desc *d, qq_linear *lin, qq_error *err);
  void (*linear_destroy)(qq_backend *be, qq_linear *lin);
  qq_status (*linear_to_f32)(const qq_linear *lin, float *w, float *bias, qq_error *err);

  qq_status (*matmul)(qq_backend *be, const qq_linear *w, const void *x, int32_t m, void *y, qq_error *err);
  qq_status (*embed)(qq_backend *be, const qq_linear *t, const int32_t *tok, int32_t n, void *out, qq_error *err);
  qq_status (*rmsnorm)(qq_backend *be, const void *x, const void *w, int32_t rows, int32_t dim, float eps,
                       void *out, qq_error *err);
  qq_status (*add)(qq_backend *be, void *acc, const void *x, size_t n, qq_error *err);
  qq_status (*silu_mul)(qq_backend *be, const void *gate, const void *up, size_t n, void *out, qq_error *err);
  qq_status (*rope)(qq_backend *be, void *x, const int32_t *pos, int32_t t, int32_t heads, int32_t hd,
                    float theta, qq_rope_freq freq, qq_error *err);
  qq_status (*gather_rows)(qq_backend *be, const void *x, const int32_t *rows, int32_t n_rows, int32_t width,
                           void *out, qq_error *err);
  qq_status (*attention)(qq_backend *be, const qq_attn_params *p, const qq_attn_seq *seqs, int32_t n_seqs,
                         const void *q, const void *k, const void *v, void *kc, void *vc, void *out,
                         qq_error *err);
  qq_status (*kv_copy)(qq_backend *be, const qq_attn_params *p, void *kc, void *vc, const int32_t *src,
                       const int32_t *dst, int32_t n_tokens, qq_error *err);
  /* Logit-row reductions (kernels.h); arguments checked by backend.c. */
  qq_status (*logits_reduce)(qq_backend *be, const void *x, int32_t n, const int32_t *rows, const int32_t *targets,
                             int32_t count, bool want_lse, qq_logits_stats *out, qq_error *err);
  qq_status (*logits_topk)(qq_backend *be, const void *x, int32_t n, const int32_t *rows, const float *scales,
                           int32_t count, int32_t k, float *vals, int32_t *ids, double *sums, qq_error *err);
} qq_backend_vtable;

struct qq_backend {
  const qq_backend_vtable *vt;
  qq_device_kind kind;
  qq_act_dtype act;
  size_t act_bytes;
  void *impl;
  char description[256];
};

struct qq_linear {
  qq_backend *be;
  qq_weight_format format;
  int32_t n, k;
  bool has_bias;
  size_t bytes;
  void *impl;
};

extern const qq_backend_vtable qq_cpu_vtable;
#ifdef QQ_HAVE_CUDA
extern const qq_backend_vtable qq_cuda_vtable;
/* Number of CUDA devices visible (0 when none or no driver). */
int qq_cuda_device_count(void);
#endif

#ifdef __cplusplus
}
#endif
#endif
