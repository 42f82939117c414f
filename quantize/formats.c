/* formats.c — packing the canonical quantized weight into the on-disk layouts of AutoAWQ "gemm" and
 * GPTQ v1 (docs/formats.md has the bit-level description and test vectors). The loading direction
 * lives in model/qformat.c. */
#include <stdlib.h>
#include <string.h>

#include "quantize.h"

/* AutoAWQ's interleaving: nibble i of a packed word holds column 8·word + AWQ_ORDER[i]. */
static const int32_t AWQ_ORDER[8] = {0, 2, 4, 6, 1, 3, 5, 7};

void qq_bits_put(uint32_t *words, int64_t i, int32_t bits, uint32_t v) {
  const int64_t bit = i * bits;
  const int64_t wi = bit >> 5;
  const int32_t sh = (int32_t)(bit & 31);
  const uint32_t mask = (1u << bits) - 1u;
  v &= mask;
  words[wi] = (words[wi] & ~(mask << sh)) | (v << sh);
  if (sh + bits > 32) {
    const int32_t lo = 32 - sh;
    words[wi + 1] = (words[wi + 1] & ~(mask >> lo)) | (v >> lo);
  }
}

uint32_t qq_bits_get(const uint32_t *words, int64_t i, int32_t bits) {
  const int64_t bit = i * bits;
  const int64_t wi = bit >> 5;
  const int32_t sh = (int32_t)(bit & 31);
  const uint32_t mask = (1u << bits) - 1u;
  uint32_t v = words[wi] >> sh;
  if (sh + bits > 32) v |= words[wi + 1] << (32 - sh);
  return v & mask;
}

qq_status qq_awq_pack(const qq_qweight *q, int32_t *qweight, int32_t *qzeros, uint16_t *scales_f16,
                      qq_error *err) {
  if (q->bits != 4)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "AutoAWQ gemm layout holds 4-bit weights only (got %d bits)", q->bits);
  if (q->g_idx)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "AutoAWQ gemm layout has no g_idx (act-order weights need GPTQ)");
  if (q->n % 8)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "AutoAWQ gemm layout: output width %d is not a multiple of 8", q->n);
  const int32_t n = q->n, k = q->k, G = q->n_groups, nw = n / 8;
  for (int32_t c = 0; c < k; c++)
    for (int32_t j = 0; j < nw; j++) {
      uint32_t word = 0;
      for (int32_t i = 0; i < 8; i++) word |= (uint32_t)q->codes[(size_t)(8 * j + AWQ_ORDER[i]) * k + c] << (4 * i);
      qweight[(size_t)c * nw + j] = (int32_t)word;
    }
  for (int32_t g = 0; g < G; g++) {
    for (int32_t j = 0; j < nw; j++) {
      uint32_t word = 0;
      for (int32_t i = 0; i < 8; i++) word |= (uint32_t)q->zeros[(size_t)(8 * j + AWQ_ORDER[i]) * G + g] << (4 * i);
      qzeros[(size_t)g * nw + j] = (int32_t)word;
    }
    for (int32_t col = 0; col < n; col++) scales_f16[(size_t)g * n + col] = qq_f32_to_f16(q->scales[(size_t)col * G + g]);
  }
  return QQ_OK;
}

qq_status qq_gptq_pack(const qq_qweight *q, int32_t *qweight, int32_t *qzeros, uint16_t *scales_f16,
                       int32_t *g_idx, qq_error *err) {
  const int32_t n = q->n, k = q->k, G = q->n_groups, b = q->bits;
  if (b != 2 && b != 3 && b != 4 && b != 8)
    return qq_error_set(err, QQ_ERR_UNSUPPORTED, "GPTQ layout: %d bits (2, 3, 4 or 8 only)", b);
  if (((int64_t)k * b) % 32 || ((int64_t)n * b) % 32)
    return qq_error_set(err, QQ_ERR_INVALID_ARG,
                        "GPTQ layout: %d-bit weight [%d][%d] needs both widths times bits divisible by 32", b, n, k);
  const int32_t kw = (int32_t)((int64_t)k * b / 32), nw = (int32_t)((int64_t)n * b / 32);
  uint32_t *col = calloc((size_t)(kw > nw ? kw : nw), sizeof(uint32_t));
  if (!col) return qq_error_set(err, QQ_ERR_NOMEM, "GPTQ pack: out of memory");
  for (int32_t r = 0; r < n; r++) {
    memset(col, 0, sizeof(uint32_t) * (size_t)kw);
    for (int32_t c = 0; c < k; c++) qq_bits_put(col, c, b, q->codes[(size_t)r * k + c]);
    for (int32_t i = 0; i < kw; i++) qweight[(size_t)i * n + r] = (int32_t)col[i];
  }
  for (int32_t g = 0; g < G; g++) {
    memset(col, 0, sizeof(uint32_t) * (size_t)nw);
    for (int32_t r = 0; r < n; r++) {
      uint8_t z = q->zeros[(size_t)r * G + g];
      if (z == 0) {
        free(col);
        return qq_error_set(err, QQ_ERR_RANGE,
                            "GPTQ v1 stores zero − 1 and cannot hold zero point 0 (row %d, group %d): quantize "
                            "with zero_min = 1", r, g);
      }
      qq_bits_put(col, r, b, (uint32_t)(z - 1));
    }
    memcpy(qzeros + (size_t)g * nw, col, sizeof(uint32_t) * (size_t)nw);
    for (int32_t r = 0; r < n; r++) scales_f16[(size_t)g * n + r] = qq_f32_to_f16(q->scales[(size_t)r * G + g]);
  }
  for (int32_t c = 0; c < k; c++) g_idx[c] = q->g_idx ? q->g_idx[c] : c / q->group_size;
  free(col);
  return QQ_OK;
}
