/* qformat.h — private to model/: turns the quantized linear tensors of AutoAWQ "gemm", GPTQ (v1, and
 * gptqmodel's v2 zero convention) and compressed-tensors "int-quantized" checkpoints into the canonical
 * qq_linear_desc of kernels.h. The bit layouts are documented in docs/formats.md; quantize/formats.c
 * writes them. */
#ifndef QQ_QFORMAT_H
#define QQ_QFORMAT_H

#include "model.h"

/* Looks a tensor up by name (NULL when absent). */
typedef const qq_tensor_info *(*qq_qformat_find_fn)(void *ctx, const char *name);

/* Unpacks the linear whose tensors are named "<prefix>.qweight" etc. (prefix e.g.
 * "model.layers.3.self_attn.q_proj") into *out, expecting n outputs and k inputs. Everything *out
 * points to lives in one heap block returned in *owned (free with qq_qformat_free_owned once the
 * descriptor has been consumed: qq_linear_create copies). The bias is not loaded (out->bias = NULL).
 * Layout by tensor present: qweight (I32) → AWQ or GPTQ per q->method; weight I8 → compressed-tensors
 * (W8A8 when q->method is QQ_QUANT_W8A8, else 8-bit weight-only QINT with zero 128).
 * Errors name the tensor: wrong dtype or shape (QQ_ERR_FORMAT), missing tensor (QQ_ERR_NOT_FOUND),
 * bits / layouts qquant does not read (QQ_ERR_UNSUPPORTED), g_idx out of range (QQ_ERR_RANGE). */
qq_status qq_qformat_unpack_linear(const qq_quant_config *q, const char *prefix, qq_qformat_find_fn find,
                                   void *ctx, int32_t n, int32_t k, qq_linear_desc *out, void **owned,
                                   qq_error *err);

/* The same for layer `layer`'s linear `id` of an open checkpoint, with n and k from the config. */
qq_status qq_qformat_load_linear(const qq_config *cfg, const qq_weights *w, int32_t layer, qq_linear_id id,
                                 qq_linear_desc *out, void **owned, qq_error *err);
void qq_qformat_free_owned(void *owned);

#endif
