/* loader_internal.h — private to model/: helpers shared between the safetensors reader/writer, the
 * checkpoint directory code and config.c. Not part of the public API (model.h). */
#ifndef QQ_LOADER_INTERNAL_H
#define QQ_LOADER_INTERNAL_H

#include "model.h"

/* Name given at open/parse time (path for files). */
const char *qq_safetensors_name(const qq_safetensors *st);

/* Validates a tensor to write (name, dtype, ndim, dims) and returns its byte size. */
qq_status qq_st_tensor_bytes(const qq_tensor_write *t, size_t *out, qq_error *err);

/* Writes tensors[0..n) to path atomically (temp file in the same folder + rename). With fill, the
 * bytes come from fill(user, index_base + i, ...) in chunks; else from tensors[i].data. */
qq_status qq_st_write_file(const char *path, const qq_tensor_write *tensors, size_t n, size_t index_base,
                           const char *const *meta_keys, const char *const *meta_values, size_t n_meta,
                           qq_tensor_fill_fn fill, void *user, qq_error *err);

#endif
