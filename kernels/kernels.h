/* kernels.h — the one public header of kernels/: the compute backend interface that the model's
 * forward pass runs on. The CPU backend (kernels/cpu: plain C reference + OpenBLAS) implements every
 * op; the CUDA backend (kernels/cuda) implements the same table. The plain C reference of each op is
 * its specification: fast paths are tested against it.
 *
 * (The op table is filled in by the forward-pass work; see docs/DESIGN.md.)
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

#ifdef __cplusplus
}
#endif
#endif /* QQ_KERNELS_H */
