/* fuzz-libs: qq_model */
/* fuzz_safetensors.c — arbitrary bytes into qq_safetensors_parse. On success every tensor's bytes are
 * read (so ASan catches a range that escaped validation) and lookups are exercised. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* Copy so the tensors point into a buffer of exactly `size` bytes. */
  uint8_t *buf = size ? malloc(size) : NULL;
  if (size && !buf) return 0;
  if (size) memcpy(buf, data, size);
  qq_safetensors *st = NULL;
  qq_error err = {0};
  if (qq_safetensors_parse(buf, size, "fuzz.safetensors", &st, &err) == QQ_OK) {
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < qq_safetensors_count(st); i++) {
      const qq_tensor_info *t = qq_safetensors_at(st, i);
      if (qq_safetensors_find(st, t->name) != t) __builtin_trap();
      if (t->nbytes) sink ^= ((const uint8_t *)t->data)[0] ^ ((const uint8_t *)t->data)[t->nbytes - 1];
      if ((size_t)t->numel * qq_dtype_size(t->dtype) != t->nbytes) __builtin_trap();
    }
    (void)qq_safetensors_metadata(st, "format");
    (void)sink;
    qq_safetensors_close(st);
  } else if (st != NULL || err.msg[0] == '\0') {
    __builtin_trap(); /* a failure must leave no handle and say why */
  }
  free(buf);
  return 0;
}
