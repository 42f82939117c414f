/* fuzz-libs: qq_model */
/* fuzz_config.c — arbitrary bytes into qq_config_parse; on success the derived fields must be
 * consistent and the quantized-module rules must run on the stored quantization_config. */
#include <stddef.h>
#include <stdint.h>

#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  qq_config c;
  qq_error err = {0};
  if (qq_config_parse((const char *)data, size, "fuzz/config.json", &c, &err) == QQ_OK) {
    if (c.hidden_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 || c.num_kv_heads <= 0 || c.head_dim <= 0 ||
        c.num_heads % c.num_kv_heads != 0 || c.n_eos < 0 || c.n_eos > QQ_MAX_EOS)
      __builtin_trap();
    if (c.task == QQ_TASK_SEQ_CLS) {
      if (c.num_labels <= 0 || !c.id2label) __builtin_trap();
      for (int32_t i = 0; i < c.num_labels; i++)
        if (!c.id2label[i]) __builtin_trap();
    }
    (void)qq_config_linear_is_quantized(&c, "model.layers.0.self_attn.q_proj");
    (void)qq_config_linear_is_quantized(&c, "lm_head");
    qq_config_free(&c);
  } else if (err.msg[0] == '\0') {
    __builtin_trap();
  }
  return 0;
}
