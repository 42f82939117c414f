/* fuzz-libs: qq_model */
/* fuzz_tokenizer_load.c — arbitrary bytes as a tokenizer.json. Loading must either fail with a status
 * and a message or produce a tokenizer that can encode and decode without memory errors; a loaded
 * tokenizer must give ids inside its vocabulary and a streamed decode equal to the full decode. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static const char SAMPLE[] = "Hello world, <s> caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd  x\n\t[UNK]<|endoftext|>\xf0\x9f\x98\x80 123";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  qq_error err = {0};
  qq_tokenizer *tok = NULL;
  qq_status st = qq_tokenizer_load_json((const char *)data, size, "fuzz.json", &tok, &err);
  if (st != QQ_OK) {
    if (tok || err.status != st || !err.msg[0]) abort(); /* failures leave nothing behind and explain */
    return 0;
  }
  qq_token_ids ids = {0};
  qq_encode_options o = qq_encode_options_default();
  o.add_special = true;
  if (qq_tokenizer_encode(tok, SAMPLE, sizeof SAMPLE - 1, &o, &ids, &err) == QQ_OK) {
    int32_t v = qq_tokenizer_vocab_size(tok);
    for (size_t i = 0; i < ids.n; i++)
      if (ids.ids[i] < 0 || ids.ids[i] >= v || !qq_tokenizer_id_to_token(tok, ids.ids[i])) abort();
    char *full = NULL;
    size_t full_len = 0;
    if (qq_tokenizer_decode(tok, ids.ids, ids.n, false, &full, &full_len, &err) != QQ_OK) abort();
    qq_detokenizer *d = NULL;
    if (qq_detokenizer_create(tok, false, &d, &err) != QQ_OK) abort();
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (size_t i = 0; i < ids.n; i++)
      if (qq_detokenizer_push(d, ids.ids[i], &buf, &len, &cap, &err) != QQ_OK) abort();
    if (qq_detokenizer_finish(d, &buf, &len, &cap, &err) != QQ_OK) abort();
    if (len != full_len || (len && memcmp(buf, full, len))) abort();
    qq_detokenizer_free(d);
    free(buf);
    free(full);
  }
  qq_token_ids_free(&ids);
  qq_tokenizer_free(tok);
  return 0;
}
