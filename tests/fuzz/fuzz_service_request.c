/* fuzz-libs: qq_service qq_proto */
/* Request decoding and validation of qquant-serve: the first byte picks the method (index into METHODS,
 * modulo its length), the rest are the message bytes as they would arrive off the wire; reflection
 * requests are also answered (symbol lookup in the embedded descriptor set) and serialized. Any input must end in a status, never a crash,
 * leak or sanitizer report. */
#include <stddef.h>
#include <stdint.h>

#include "service.h"

static const char *const METHODS[] = {
    "/qquant.v1.Inference/Classify", "/qquant.v1.Inference/Generate", "/qquant.v1.Inference/GetModelInfo",
    "/grpc.health.v1.Health/Check",  "/grpc.health.v1.Health/Watch",  "/qquant.v1.Inference/Unknown",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  qq_request_limits lim = qq_request_limits_default();
  lim.vocab_size = 8192;
  lim.max_seq_len = 256;
  qq_error err;
  qq_service_check_request(METHODS[data[0] % (sizeof METHODS / sizeof METHODS[0])], data + 1, size - 1, &lim, &err);
  return 0;
}
