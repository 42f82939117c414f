/* status.c — status names, error objects, small file and hashing helpers. */
#include "qq_common.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *qq_status_name(qq_status st) {
  switch (st) {
    case QQ_OK: return "OK";
    case QQ_ERR_INVALID_ARG: return "INVALID_ARG";
    case QQ_ERR_IO: return "IO";
    case QQ_ERR_FORMAT: return "FORMAT";
    case QQ_ERR_UNSUPPORTED: return "UNSUPPORTED";
    case QQ_ERR_NOMEM: return "NOMEM";
    case QQ_ERR_NOT_FOUND: return "NOT_FOUND";
    case QQ_ERR_RANGE: return "RANGE";
    case QQ_ERR_CUDA: return "CUDA";
    case QQ_ERR_INTERNAL: return "INTERNAL";
    case QQ_ERR_CANCELLED: return "CANCELLED";
    case QQ_ERR_EXHAUSTED: return "EXHAUSTED";
    case QQ_ERR_EXISTS: return "EXISTS";
  }
  return "UNKNOWN";
}

qq_status qq_error_setv(qq_error *err, qq_status st, const char *fmt, va_list ap) {
  if (err) {
    err->status = st;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  }
  return st;
}

qq_status qq_error_set(qq_error *err, qq_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  qq_error_setv(err, st, fmt, ap);
  va_end(ap);
  return st;
}

qq_status qq_error_prefix(qq_error *err, const char *fmt, ...) {
  if (!err) return QQ_OK;
  char prefix[QQ_ERROR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  char old[QQ_ERROR_MSG_MAX];
  memcpy(old, err->msg, sizeof old);
  snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
  return err->status;
}

void qq_error_clear(qq_error *err) {
  if (err) {
    err->status = QQ_OK;
    err->msg[0] = '\0';
  }
}

qq_status qq_read_file(const char *path, char **out, size_t *len, qq_error *err) {
  *out = NULL;
  if (len) *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return qq_error_set(err, QQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  qq_status st = QQ_OK;
  char *buf = NULL;
  if (fseek(f, 0, SEEK_END) != 0) {
    st = qq_error_set(err, QQ_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
    goto done;
  }
  long size = ftell(f);
  if (size < 0) {
    st = qq_error_set(err, QQ_ERR_IO, "%s: cannot tell size: %s", path, strerror(errno));
    goto done;
  }
  rewind(f);
  buf = malloc((size_t)size + 1);
  if (!buf) {
    st = qq_error_set(err, QQ_ERR_NOMEM, "%s: cannot allocate %ld bytes", path, size);
    goto done;
  }
  if (size > 0 && fread(buf, 1, (size_t)size, f) != (size_t)size) {
    st = qq_error_set(err, QQ_ERR_IO, "%s: short read", path);
    free(buf);
    buf = NULL;
    goto done;
  }
  buf[size] = '\0';
  *out = buf;
  if (len) *len = (size_t)size;
done:
  fclose(f);
  return st;
}

void qq_sha256_hex(const void *data, size_t len, char out[65]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
  static const char hex[] = "0123456789abcdef";
  for (unsigned i = 0; i < 32; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[64] = '\0';
}

/* IEEE half <-> float, round to nearest even (matches numpy / PyTorch). */
float qq_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else { /* subnormal: normalise */
      exp = 127 - 15 + 1;
      while (!(man & 0x400u)) {
        man <<= 1;
        exp--;
      }
      man &= 0x3ffu;
      bits = sign | (exp << 23) | (man << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  union { uint32_t u; float f; } v;
  v.u = bits;
  return v.f;
}

uint16_t qq_f32_to_f16(float f) {
  union { uint32_t u; float f; } v;
  v.f = f;
  uint32_t x = v.u;
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  uint32_t absx = x & 0x7fffffffu;
  if (absx > 0x7f800000u) return (uint16_t)(sign | 0x7e00u); /* NaN */
  if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  /* overflow (>= 65520) -> inf */
  if (absx < 0x38800000u) {                                    /* below smallest normal: subnormal */
    if (absx < 0x33000000u) return sign;                       /* < 2^-25 rounds to 0 */
    uint32_t exp = absx >> 23;
    uint32_t man = (absx & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - exp; /* value = man * 2^(exp-150); half subnormal unit is 2^-24 */
    uint32_t half = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1u);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t half = ((absx >> 13) - ((127 - 15) << 10));
  uint32_t rem = absx & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) half++;
  return (uint16_t)(sign | half);
}
