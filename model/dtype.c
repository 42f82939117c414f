/* dtype.c — safetensors dtype names, sizes, and conversion of floating tensors to fp32. */
#include <string.h>

#include "model.h"

static const struct {
  const char *name;
  size_t size;
} dtype_table[QQ_DTYPE_COUNT] = {
    [QQ_DTYPE_F32] = {"F32", 4}, [QQ_DTYPE_F16] = {"F16", 2}, [QQ_DTYPE_BF16] = {"BF16", 2},
    [QQ_DTYPE_F64] = {"F64", 8}, [QQ_DTYPE_I8] = {"I8", 1},   [QQ_DTYPE_U8] = {"U8", 1},
    [QQ_DTYPE_I16] = {"I16", 2}, [QQ_DTYPE_I32] = {"I32", 4}, [QQ_DTYPE_I64] = {"I64", 8},
    [QQ_DTYPE_BOOL] = {"BOOL", 1},
};

size_t qq_dtype_size(qq_dtype dt) { return (unsigned)dt < QQ_DTYPE_COUNT ? dtype_table[dt].size : 0; }

const char *qq_dtype_name(qq_dtype dt) {
  return (unsigned)dt < QQ_DTYPE_COUNT ? dtype_table[dt].name : "?";
}

qq_status qq_dtype_parse(const char *s, qq_dtype *out) {
  for (int i = 0; i < QQ_DTYPE_COUNT; i++) {
    if (!strcmp(s, dtype_table[i].name)) {
      *out = (qq_dtype)i;
      return QQ_OK;
    }
  }
  return QQ_ERR_UNSUPPORTED;
}

qq_status qq_tensor_to_f32(const qq_tensor_info *t, float *out, qq_error *err) {
  const int64_t n = t->numel;
  switch (t->dtype) {
    case QQ_DTYPE_F32:
      memcpy(out, t->data, (size_t)n * sizeof(float));
      return QQ_OK;
    case QQ_DTYPE_BF16: {
      const uint16_t *p = t->data;
      for (int64_t i = 0; i < n; i++) out[i] = qq_bf16_to_f32(p[i]);
      return QQ_OK;
    }
    case QQ_DTYPE_F16: {
      const uint16_t *p = t->data;
      for (int64_t i = 0; i < n; i++) out[i] = qq_f16_to_f32(p[i]);
      return QQ_OK;
    }
    case QQ_DTYPE_F64: {
      const double *p = t->data;
      for (int64_t i = 0; i < n; i++) out[i] = (float)p[i];
      return QQ_OK;
    }
    default:
      return qq_error_set(err, QQ_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s, expected a floating type",
                          t->file ? t->file : "?", t->name, qq_dtype_name(t->dtype));
  }
}
