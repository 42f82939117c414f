/* test_config.c — config.json parsing (all four fixtures, every supported variant, every rejected
 * field) and qq_config_check_weights (fixtures pass; shape, dtype, missing-tensor and quantized-layout
 * errors name the tensor and the config field). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "testutil.h"

static void load_fixture(const char *model, qq_config *cfg, qq_weights **w) {
  char rel[256], dir[4096];
  snprintf(rel, sizeof rel, "models/%s", model);
  snprintf(dir, sizeof dir, "%s", qq_test_fixture(rel));
  qq_error err = {0};
  QQ_ASSERT_OK(qq_config_load(dir, cfg, &err), &err);
  if (w) {
    QQ_ASSERT_OK(qq_weights_open(dir, w, &err), &err);
    QQ_ASSERT_OK(qq_config_check_weights(cfg, *w, &err), &err);
  }
}

static void test_fixture_qwen2(void **state) {
  (void)state;
  qq_config c;
  qq_weights *w;
  load_fixture("qwen2-tiny-lm", &c, &w);
  assert_string_equal(c.architecture, "Qwen2ForCausalLM");
  assert_string_equal(c.model_type, "qwen2");
  assert_int_equal(c.arch, QQ_ARCH_QWEN2);
  assert_int_equal(c.task, QQ_TASK_CAUSAL_LM);
  assert_int_equal(c.hidden_size, 384);
  assert_int_equal(c.intermediate_size, 1024);
  assert_int_equal(c.num_layers, 8);
  assert_int_equal(c.num_heads, 6);
  assert_int_equal(c.num_kv_heads, 2);
  assert_int_equal(c.head_dim, 64);
  assert_int_equal(c.vocab_size, 8192);
  assert_int_equal(c.max_position_embeddings, 2048);
  assert_true(c.rope_theta == 10000.0); /* from rope_parameters: no top-level rope_theta here */
  assert_true(c.rms_norm_eps == 1e-6);
  assert_true(c.tie_word_embeddings);
  assert_true(c.qkv_bias);
  assert_false(c.o_bias);
  assert_false(c.mlp_bias);
  assert_false(c.qk_norm);
  assert_int_equal(c.bos_token_id, 0);
  assert_int_equal(c.n_eos, 1);
  assert_int_equal(c.eos_token_ids[0], 0);
  assert_int_equal(c.pad_token_id, 0);
  assert_string_equal(c.torch_dtype, "bfloat16"); /* transformers 5 spells it "dtype" */
  assert_null(c.id2label);
  assert_int_equal(c.quant.method, QQ_QUANT_NONE);
  qq_weights_close(w);
  qq_config_free(&c);
  qq_config_free(NULL);
}

static void test_fixture_qwen3(void **state) {
  (void)state;
  qq_config c;
  qq_weights *w;
  load_fixture("qwen3-tiny-lm", &c, &w);
  assert_int_equal(c.arch, QQ_ARCH_QWEN3);
  assert_int_equal(c.head_dim, 64);
  assert_int_equal(c.hidden_size, 256);
  assert_true(c.qk_norm);
  assert_false(c.qkv_bias);
  assert_false(c.o_bias);
  qq_weights_close(w);
  qq_config_free(&c);
}

static void test_fixture_llama(void **state) {
  (void)state;
  qq_config c;
  qq_weights *w;
  load_fixture("llama-stories260k", &c, &w);
  assert_int_equal(c.arch, QQ_ARCH_LLAMA);
  assert_int_equal(c.head_dim, 8);
  assert_int_equal(c.num_heads, 8);
  assert_int_equal(c.num_kv_heads, 4);
  assert_int_equal(c.intermediate_size, 172);
  assert_true(c.rope_theta == 10000.0);
  assert_true(c.rms_norm_eps == 1e-5);
  assert_int_equal(c.bos_token_id, 1);
  assert_int_equal(c.eos_token_ids[0], 2);
  assert_int_equal(c.pad_token_id, -1);
  assert_string_equal(c.torch_dtype, "float32");
  assert_false(c.qkv_bias);
  assert_true(c.tie_word_embeddings);
  qq_weights_close(w);
  qq_config_free(&c);
}

static void test_fixture_cls(void **state) {
  (void)state;
  qq_config c;
  qq_weights *w;
  load_fixture("qwen2-tiny-spam-cls", &c, &w);
  assert_int_equal(c.task, QQ_TASK_SEQ_CLS);
  assert_int_equal(c.num_labels, 2);
  assert_string_equal(c.id2label[0], "ham");
  assert_string_equal(c.id2label[1], "spam");
  assert_non_null(qq_weights_find(w, "score.weight"));
  qq_weights_close(w);
  qq_config_free(&c);
}

/* ---- synthetic configs ---- */

#define BASE_QWEN2                                                                                      \
  "\"architectures\":[\"Qwen2ForCausalLM\"],\"model_type\":\"qwen2\",\"hidden_size\":64,"               \
  "\"intermediate_size\":96,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2," \
  "\"vocab_size\":100"
#define BASE_LLAMA                                                                                      \
  "\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"hidden_size\":64,"               \
  "\"intermediate_size\":96,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2," \
  "\"vocab_size\":100"

static qq_status parse(const char *json, qq_config *c, qq_error *err) {
  return qq_config_parse(json, strlen(json), "unit/config.json", c, err);
}

static void expect_fail(const char *json, qq_status want, const char *n1, const char *n2) {
  qq_config c;
  qq_error err = {0};
  qq_status s = parse(json, &c, &err);
  if (s != want) fail_msg("%s: got %s (%s), want %s", json, qq_status_name(s), err.msg, qq_status_name(want));
  assert_non_null(strstr(err.msg, "unit/config.json"));
  if (n1 && !strstr(err.msg, n1)) fail_msg("message '%s' lacks '%s'", err.msg, n1);
  if (n2 && !strstr(err.msg, n2)) fail_msg("message '%s' lacks '%s'", err.msg, n2);
  assert_null(c.id2label);
  assert_null(c.quant.raw_json);
}

static void parse_ok(const char *json, qq_config *c) {
  qq_error err = {0};
  QQ_ASSERT_OK(parse(json, c, &err), &err);
}

static void test_defaults(void **state) {
  (void)state;
  qq_config c;
  parse_ok("{" BASE_QWEN2 "}", &c);
  assert_int_equal(c.head_dim, 16); /* hidden / heads */
  assert_false(c.tie_word_embeddings); /* transformers' default */
  assert_true(c.rope_theta == 10000.0);
  assert_int_equal(c.max_position_embeddings, 32768);
  assert_int_equal(c.bos_token_id, -1);
  assert_int_equal(c.n_eos, 0);
  qq_config_free(&c);
  parse_ok("{" BASE_LLAMA "}", &c);
  assert_int_equal(c.max_position_embeddings, 2048);
  assert_false(c.tie_word_embeddings);
  qq_config_free(&c);
  /* no num_key_value_heads: MHA */
  parse_ok("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":96,"
           "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100,\"num_key_value_heads\":null}", &c);
  assert_int_equal(c.num_kv_heads, 4);
  assert_string_equal(c.model_type, "llama");
  qq_config_free(&c);
  /* Qwen3 without head_dim: Qwen3Config's default 128 */
  parse_ok("{\"architectures\":[\"Qwen3ForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":96,"
           "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}", &c);
  assert_int_equal(c.head_dim, 128);
  qq_config_free(&c);
  /* only model_type: the causal LM */
  parse_ok("{\"model_type\":\"qwen3\",\"hidden_size\":64,\"intermediate_size\":96,"
           "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100,\"head_dim\":32}", &c);
  assert_string_equal(c.architecture, "Qwen3ForCausalLM");
  assert_int_equal(c.head_dim, 32);
  qq_config_free(&c);
}

static void test_rope(void **state) {
  (void)state;
  qq_config c;
  parse_ok("{" BASE_QWEN2 ",\"rope_theta\":1000000.0,\"rope_scaling\":null}", &c);
  assert_true(c.rope_theta == 1e6);
  qq_config_free(&c);
  parse_ok("{" BASE_QWEN2 ",\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":500000}}", &c);
  assert_true(c.rope_theta == 5e5);
  qq_config_free(&c);
  parse_ok("{" BASE_QWEN2 ",\"rope_scaling\":{\"type\":\"default\"}}", &c);
  qq_config_free(&c);
  expect_fail("{" BASE_QWEN2 ",\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4.0}}", QQ_ERR_UNSUPPORTED,
              "rope_scaling.type", "yarn");
  expect_fail("{" BASE_LLAMA ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0}}", QQ_ERR_UNSUPPORTED,
              "rope_scaling.rope_type", "llama3");
  expect_fail("{" BASE_QWEN2 ",\"rope_parameters\":{\"rope_type\":\"dynamic\",\"rope_theta\":10000}}",
              QQ_ERR_UNSUPPORTED, "rope_parameters.rope_type", "dynamic");
  expect_fail("{" BASE_QWEN2 ",\"rope_parameters\":{\"rope_theta\":10000,\"partial_rotary_factor\":0.5}}",
              QQ_ERR_UNSUPPORTED, "partial_rotary_factor", NULL);
  expect_fail("{" BASE_QWEN2 ",\"rope_scaling\":\"linear\"}", QQ_ERR_FORMAT, "rope_scaling", NULL);
  expect_fail("{" BASE_QWEN2 ",\"rope_parameters\":{\"full_attention\":{\"rope_type\":\"default\",\"rope_theta\":1e6}}}",
              QQ_ERR_UNSUPPORTED, "rope_parameters.full_attention", NULL);
  expect_fail("{" BASE_QWEN2 ",\"rope_theta\":-1}", QQ_ERR_RANGE, "rope_theta", NULL);
}

static void test_unsupported(void **state) {
  (void)state;
  expect_fail("{\"architectures\":[\"MistralForCausalLM\"],\"hidden_size\":64}", QQ_ERR_UNSUPPORTED, "architectures",
              "MistralForCausalLM");
  expect_fail("{\"model_type\":\"gpt2\"}", QQ_ERR_UNSUPPORTED, "model_type", "gpt2");
  expect_fail("{" BASE_QWEN2 ",\"hidden_act\":\"gelu\"}", QQ_ERR_UNSUPPORTED, "hidden_act", "gelu");
  expect_fail("{" BASE_QWEN2 ",\"use_sliding_window\":true,\"sliding_window\":4096,\"max_window_layers\":1}",
              QQ_ERR_UNSUPPORTED, "use_sliding_window", NULL);
  expect_fail("{" BASE_QWEN2 ",\"layer_types\":[\"full_attention\",\"sliding_attention\"]}", QQ_ERR_UNSUPPORTED,
              "layer_types[1]", "sliding_attention");
  expect_fail("{" BASE_QWEN2 ",\"layer_types\":[\"full_attention\"]}", QQ_ERR_FORMAT, "layer_types", NULL);
  /* use_sliding_window with every layer below max_window_layers uses no window (transformers' rule) */
  qq_config c;
  parse_ok("{" BASE_QWEN2 ",\"use_sliding_window\":true,\"sliding_window\":4096,\"max_window_layers\":28}", &c);
  qq_config_free(&c);
  parse_ok("{" BASE_QWEN2 ",\"hidden_act\":\"silu\",\"use_sliding_window\":false,\"sliding_window\":4096}", &c);
  qq_config_free(&c);
}

static void test_malformed(void **state) {
  (void)state;
  expect_fail("{\"hidden_size\": ", QQ_ERR_FORMAT, "not valid JSON", NULL);
  expect_fail("[]", QQ_ERR_FORMAT, "not a JSON object", NULL);
  expect_fail("{\"architectures\":[\"Qwen2ForCausalLM\"],\"intermediate_size\":96,\"num_hidden_layers\":2,"
              "\"num_attention_heads\":4,\"vocab_size\":100}",
              QQ_ERR_FORMAT, "hidden_size", "missing");
  expect_fail("{" BASE_QWEN2 ",\"model_type\":\"llama\"}", QQ_ERR_FORMAT, "model_type", "twice");
  expect_fail("{\"architectures\":[\"Qwen2ForCausalLM\"],\"model_type\":\"llama\"}", QQ_ERR_FORMAT, "model_type",
              "does not match");
  expect_fail("{\"architectures\":[\"Qwen2ForCausalLM\"],\"hidden_size\":\"64\",\"intermediate_size\":96,"
              "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}",
              QQ_ERR_FORMAT, "hidden_size", "integer");
  expect_fail("{\"architectures\":[\"Qwen2ForCausalLM\"],\"hidden_size\":64.5,\"intermediate_size\":96,"
              "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}",
              QQ_ERR_FORMAT, "hidden_size", "integer");
  expect_fail("{\"architectures\":[\"Qwen2ForCausalLM\"],\"hidden_size\":-64,\"intermediate_size\":96,"
              "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}",
              QQ_ERR_RANGE, "hidden_size", NULL);
  expect_fail("{\"architectures\":[\"Qwen2ForCausalLM\"],\"hidden_size\":1e300,\"intermediate_size\":96,"
              "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}",
              QQ_ERR_RANGE, "hidden_size", NULL);
  expect_fail("{" BASE_QWEN2 ",\"num_key_value_heads\":3}", QQ_ERR_FORMAT, "num_key_value_heads", NULL);
  expect_fail("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":66,\"intermediate_size\":96,"
              "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}",
              QQ_ERR_FORMAT, "head_dim", NULL);
  expect_fail("{" BASE_QWEN2 ",\"head_dim\":15}", QQ_ERR_UNSUPPORTED, "head_dim", NULL);
  expect_fail("{" BASE_QWEN2 ",\"tie_word_embeddings\":1}", QQ_ERR_FORMAT, "tie_word_embeddings", NULL);
  expect_fail("{" BASE_QWEN2 ",\"eos_token_id\":\"x\"}", QQ_ERR_FORMAT, "eos_token_id", NULL);
  expect_fail("{" BASE_QWEN2 ",\"eos_token_id\":[1,2,3,4,5,6,7,8,9]}", QQ_ERR_UNSUPPORTED, "eos_token_id", NULL);
  expect_fail("{" BASE_QWEN2 ",\"eos_token_id\":[1,-2]}", QQ_ERR_FORMAT, "eos_token_id[1]", NULL);
  expect_fail("{" BASE_QWEN2 ",\"rms_norm_eps\":0}", QQ_ERR_RANGE, "rms_norm_eps", NULL);
  expect_fail("{" BASE_QWEN2 ",\"architectures\":\"Qwen2ForCausalLM\"}", QQ_ERR_FORMAT, "architectures", NULL);
}

static void test_variants(void **state) {
  (void)state;
  qq_config c;
  parse_ok("{" BASE_LLAMA ",\"attention_bias\":true,\"mlp_bias\":true,\"eos_token_id\":[128001,128008,128009],"
           "\"bos_token_id\":null,\"torch_dtype\":\"float16\",\"tie_word_embeddings\":true,\"head_dim\":32}", &c);
  assert_true(c.qkv_bias);
  assert_true(c.o_bias);
  assert_true(c.mlp_bias);
  assert_int_equal(c.n_eos, 3);
  assert_int_equal(c.eos_token_ids[2], 128009);
  assert_int_equal(c.bos_token_id, -1);
  assert_int_equal(c.head_dim, 32);
  assert_string_equal(c.torch_dtype, "float16");
  assert_true(c.tie_word_embeddings);
  qq_config_free(&c);
  parse_ok("{\"architectures\":[\"Qwen3ForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":96,"
           "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100,\"head_dim\":16,"
           "\"attention_bias\":true}", &c);
  assert_true(c.qkv_bias && c.o_bias && c.qk_norm);
  qq_config_free(&c);
}

static void test_labels(void **state) {
  (void)state;
  qq_config c;
  parse_ok("{\"architectures\":[\"LlamaForSequenceClassification\"],\"hidden_size\":64,\"intermediate_size\":96,"
           "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100,"
           "\"id2label\":{\"2\":\"c\",\"0\":\"a\",\"1\":\"b\"}}", &c);
  assert_int_equal(c.task, QQ_TASK_SEQ_CLS);
  assert_int_equal(c.num_labels, 3);
  assert_string_equal(c.id2label[0], "a");
  assert_string_equal(c.id2label[2], "c");
  qq_config_free(&c);
  parse_ok("{\"architectures\":[\"Qwen2ForSequenceClassification\"],\"hidden_size\":64,\"intermediate_size\":96,"
           "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100,\"num_labels\":3}", &c);
  assert_int_equal(c.num_labels, 3);
  assert_string_equal(c.id2label[2], "LABEL_2");
  qq_config_free(&c);
  parse_ok("{\"architectures\":[\"Qwen3ForSequenceClassification\"],\"hidden_size\":64,\"intermediate_size\":96,"
           "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100,\"head_dim\":16}", &c);
  assert_int_equal(c.num_labels, 2); /* transformers' default */
  qq_config_free(&c);
#define CLS "\"architectures\":[\"Qwen2ForSequenceClassification\"],\"hidden_size\":64,\"intermediate_size\":96," \
            "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100"
  expect_fail("{" CLS ",\"id2label\":{\"0\":\"a\",\"1\":\"b\"},\"num_labels\":3}", QQ_ERR_FORMAT, "num_labels", NULL);
  expect_fail("{" CLS ",\"id2label\":{\"0\":\"a\",\"5\":\"b\"}}", QQ_ERR_FORMAT, "id2label", "\"5\"");
  expect_fail("{" CLS ",\"id2label\":{\"0\":\"a\",\"x\":\"b\"}}", QQ_ERR_FORMAT, "id2label", NULL);
  expect_fail("{" CLS ",\"id2label\":{\"0\":\"a\",\"1\":2}}", QQ_ERR_FORMAT, "id2label", NULL);
  expect_fail("{" CLS ",\"id2label\":{}}", QQ_ERR_FORMAT, "label", NULL);
  expect_fail("{" CLS ",\"id2label\":[\"a\"]}", QQ_ERR_FORMAT, "id2label", NULL);
}

static void test_quant_config(void **state) {
  (void)state;
  qq_config c;
  parse_ok("{" BASE_QWEN2 ",\"quantization_config\":{\"quant_method\":\"awq\",\"bits\":4,\"group_size\":128,"
           "\"zero_point\":true,\"version\":\"gemm\",\"modules_to_not_convert\":null}}", &c);
  assert_int_equal(c.quant.method, QQ_QUANT_AWQ);
  assert_int_equal(c.quant.bits, 4);
  assert_int_equal(c.quant.group_size, 128);
  assert_false(c.quant.sym);
  assert_string_equal(c.quant.format, "gemm");
  assert_non_null(strstr(c.quant.raw_json, "\"zero_point\":true"));
  assert_true(qq_config_linear_is_quantized(&c, "model.layers.0.mlp.up_proj"));
  assert_false(qq_config_linear_is_quantized(&c, "lm_head"));
  qq_config_free(&c);
  parse_ok("{" BASE_QWEN2 ",\"quantization_config\":{\"quant_method\":\"gptq\",\"bits\":8,\"group_size\":-1,"
           "\"desc_act\":true,\"sym\":false,\"damp_percent\":0.01,\"true_sequential\":true,"
           "\"checkpoint_format\":\"gptq\"}}", &c);
  assert_int_equal(c.quant.method, QQ_QUANT_GPTQ);
  assert_int_equal(c.quant.bits, 8);
  assert_int_equal(c.quant.group_size, -1);
  assert_true(c.quant.desc_act);
  assert_false(c.quant.sym);
  assert_string_equal(c.quant.format, "gptq");
  assert_false(qq_config_linear_is_quantized(&c, "lm_head"));
  qq_config_free(&c);
  parse_ok("{" BASE_QWEN2 ",\"quantization_config\":{\"quant_method\":\"compressed-tensors\",\"format\":"
           "\"int-quantized\",\"config_groups\":{\"group_0\":{\"weights\":{\"num_bits\":8,\"type\":\"int\","
           "\"symmetric\":true,\"strategy\":\"channel\",\"dynamic\":false,\"group_size\":null},"
           "\"input_activations\":{\"num_bits\":8,\"type\":\"int\",\"symmetric\":true,\"dynamic\":true,"
           "\"strategy\":\"token\"},\"targets\":[\"Linear\"]}},\"ignore\":[\"lm_head\",\"re:.*layers\\\\.1\\\\.mlp.*\"],"
           "\"quantization_status\":\"compressed\"}}", &c);
  assert_int_equal(c.quant.method, QQ_QUANT_W8A8);
  assert_int_equal(c.quant.bits, 8);
  assert_int_equal(c.quant.group_size, -1);
  assert_true(c.quant.sym);
  assert_true(c.quant.act_dynamic);
  assert_string_equal(c.quant.format, "int-quantized");
  assert_false(qq_config_linear_is_quantized(&c, "lm_head"));
  assert_true(qq_config_linear_is_quantized(&c, "model.layers.0.mlp.up_proj"));
  assert_false(qq_config_linear_is_quantized(&c, "model.layers.1.mlp.up_proj"));
  qq_config_free(&c);
  /* The quantization_config GPTQModel 1.7.4 writes with format=FORMAT.GPTQ_V2 (asymmetric, no act-order),
   * "meta" and a null "dynamic" included. */
  parse_ok("{" BASE_QWEN2 ",\"quantization_config\":{\"bits\":4,\"checkpoint_format\":\"gptq_v2\",\"desc_act\":false,"
           "\"dynamic\":null,\"group_size\":128,\"lm_head\":false,\"meta\":{\"damp_auto_increment\":0.0025,"
           "\"damp_percent\":0.01,\"mse\":0.0,\"quantizer\":[\"gptqmodel:1.7.4\"],\"static_groups\":false,"
           "\"true_sequential\":true,\"uri\":\"https://github.com/modelcloud/gptqmodel\"},\"quant_method\":\"gptq\","
           "\"sym\":false}}", &c);
  assert_int_equal(c.quant.method, QQ_QUANT_GPTQ);
  assert_int_equal(c.quant.bits, 4);
  assert_int_equal(c.quant.group_size, 128);
  assert_false(c.quant.sym);
  assert_false(c.quant.desc_act);
  assert_string_equal(c.quant.format, "gptq_v2");
  assert_non_null(strstr(c.quant.raw_json, "\"checkpoint_format\":\"gptq_v2\""));
  assert_false(qq_config_linear_is_quantized(&c, "lm_head"));
  qq_config_free(&c);
  parse_ok("{" BASE_QWEN2 ",\"quantization_config\":{\"quant_method\":\"gptq\",\"bits\":4,\"group_size\":128,"
           "\"dynamic\":{}}}", &c);
  assert_string_equal(c.quant.format, "gptq");
  qq_config_free(&c);
  parse_ok("{" BASE_QWEN2 ",\"quantization_config\":{\"quant_method\":\"compressed-tensors\",\"format\":"
           "\"int-quantized\",\"config_groups\":{\"g\":{\"weights\":{\"num_bits\":8,\"type\":\"int\","
           "\"symmetric\":true,\"strategy\":\"channel\"},\"targets\":[\"Linear\"]}},\"ignore\":[\"lm_head\"]}}", &c);
  assert_int_equal(c.quant.method, QQ_QUANT_W8A16);
  qq_config_free(&c);
  parse_ok("{" BASE_QWEN2 ",\"quantization_config\":{\"quant_method\":\"compressed-tensors\",\"format\":"
           "\"int-quantized\",\"config_groups\":{\"g\":{\"weights\":{\"num_bits\":8,\"strategy\":\"channel\"},"
           "\"input_activations\":{\"num_bits\":8,\"dynamic\":false,\"strategy\":\"tensor\"},"
           "\"targets\":[\"Linear\"]}}}}", &c);
  assert_int_equal(c.quant.method, QQ_QUANT_W8A8);
  assert_false(c.quant.act_dynamic);
  qq_config_free(&c);

  expect_fail("{" BASE_QWEN2 ",\"quantization_config\":{\"quant_method\":\"bitsandbytes\"}}", QQ_ERR_UNSUPPORTED,
              "quantization_config.quant_method", "bitsandbytes");
  expect_fail("{" BASE_QWEN2 ",\"quantization_config\":{\"bits\":4}}", QQ_ERR_FORMAT, "quant_method", NULL);
  expect_fail("{" BASE_QWEN2 ",\"quantization_config\":{\"quant_method\":\"awq\",\"bits\":4,\"group_size\":128,"
              "\"version\":\"gemv\"}}", QQ_ERR_UNSUPPORTED, "quantization_config.version", "gemv");
  expect_fail("{" BASE_QWEN2 ",\"quantization_config\":{\"quant_method\":\"awq\",\"bits\":3,\"group_size\":128}}",
              QQ_ERR_UNSUPPORTED, "bits", NULL);
  expect_fail("{" BASE_QWEN2 ",\"quantization_config\":{\"quant_method\":\"gptq\",\"bits\":2,\"group_size\":128}}",
              QQ_ERR_UNSUPPORTED, "quantization_config.bits", NULL);
  expect_fail("{" BASE_QWEN2 ",\"quantization_config\":{\"quant_method\":\"gptq\",\"bits\":4,\"group_size\":128,"
              "\"checkpoint_format\":\"marlin\"}}", QQ_ERR_UNSUPPORTED, "checkpoint_format", "marlin");
  /* GPTQModel's per-module overrides would change bits / group size of some linears: refused. */
  expect_fail("{" BASE_QWEN2 ",\"quantization_config\":{\"quant_method\":\"gptq\",\"bits\":4,\"group_size\":128,"
              "\"dynamic\":{\"-:.*down_proj\":{}}}}", QQ_ERR_UNSUPPORTED, "quantization_config.dynamic", NULL);
  expect_fail("{" BASE_QWEN2 ",\"quantization_config\":{\"quant_method\":\"compressed-tensors\",\"format\":"
              "\"pack-quantized\",\"config_groups\":{}}}", QQ_ERR_UNSUPPORTED, "quantization_config.format",
              "pack-quantized");
  expect_fail("{" BASE_QWEN2 ",\"quantization_config\":{\"quant_method\":\"compressed-tensors\",\"format\":"
              "\"int-quantized\",\"config_groups\":{\"g\":{\"weights\":{\"num_bits\":8,\"strategy\":\"tensor\"},"
              "\"targets\":[\"Linear\"]}}}}", QQ_ERR_UNSUPPORTED, "weights.strategy", NULL);
  expect_fail("{" BASE_QWEN2 ",\"quantization_config\":{\"quant_method\":\"compressed-tensors\",\"format\":"
              "\"int-quantized\",\"config_groups\":{\"g\":{\"weights\":{\"num_bits\":8,\"strategy\":\"channel\","
              "\"symmetric\":false},\"targets\":[\"Linear\"]}}}}", QQ_ERR_UNSUPPORTED, "symmetric", NULL);
  expect_fail("{" BASE_QWEN2 ",\"quantization_config\":{\"quant_method\":\"compressed-tensors\",\"format\":"
              "\"int-quantized\",\"config_groups\":{\"g\":{\"weights\":{\"num_bits\":4,\"strategy\":\"channel\"},"
              "\"targets\":[\"Linear\"]}}}}", QQ_ERR_UNSUPPORTED, "num_bits", NULL);
  expect_fail("{" BASE_QWEN2 ",\"quantization_config\":{\"quant_method\":\"compressed-tensors\",\"format\":"
              "\"int-quantized\",\"config_groups\":{\"g\":{\"weights\":{\"num_bits\":8,\"strategy\":\"channel\"},"
              "\"input_activations\":{\"num_bits\":8,\"dynamic\":true,\"strategy\":\"tensor\"},"
              "\"targets\":[\"Linear\"]}}}}", QQ_ERR_UNSUPPORTED, "input_activations.strategy", NULL);
  expect_fail("{" BASE_QWEN2 ",\"quantization_config\":{\"quant_method\":\"compressed-tensors\",\"format\":"
              "\"int-quantized\",\"config_groups\":{\"g\":{\"weights\":{\"num_bits\":8,\"strategy\":\"channel\"},"
              "\"targets\":[\"Embedding\"]}}}}", QQ_ERR_UNSUPPORTED, "targets", NULL);
  expect_fail("{" BASE_QWEN2 ",\"quantization_config\":[]}", QQ_ERR_FORMAT, "quantization_config", NULL);
}

/* ---- check_weights on synthetic checkpoints ---- */

/* Writes zero tensors for cfg (full precision unless quant says otherwise) into dir. Layout per
 * docs/checkpoints.md; kinds: 0 = float linear, 1 = AWQ, 2 = GPTQ, 3 = compressed-tensors W8A8 static. */
typedef struct tw_list {
  qq_tensor_write t[256];
  char names[256][96];
  size_t n;
} tw_list;

static void add(tw_list *l, const char *name, qq_dtype dt, int nd, int64_t d0, int64_t d1) {
  assert_true(l->n < 256);
  snprintf(l->names[l->n], sizeof l->names[0], "%s", name);
  l->t[l->n] = (qq_tensor_write){.name = l->names[l->n], .dtype = dt, .ndim = nd, .shape = {d0, d1}};
  l->n++;
}

static void add_linear(tw_list *l, const char *mod, int64_t out, int64_t in, int kind, bool bias) {
  char n[96];
#define N(suffix) (snprintf(n, sizeof n, "%s.%s", mod, suffix), n)
  if (bias) add(l, N("bias"), QQ_DTYPE_F16, 1, out, 0);
  switch (kind) {
    case 0: add(l, N("weight"), QQ_DTYPE_BF16, 2, out, in); break;
    case 1: /* AWQ 4-bit g=32 */
      add(l, N("qweight"), QQ_DTYPE_I32, 2, in, out / 8);
      add(l, N("qzeros"), QQ_DTYPE_I32, 2, in / 32, out / 8);
      add(l, N("scales"), QQ_DTYPE_F16, 2, in / 32, out);
      break;
    case 2: /* GPTQ 4-bit g=32 */
      add(l, N("qweight"), QQ_DTYPE_I32, 2, in / 8, out);
      add(l, N("qzeros"), QQ_DTYPE_I32, 2, in / 32, out / 8);
      add(l, N("scales"), QQ_DTYPE_F16, 2, in / 32, out);
      add(l, N("g_idx"), QQ_DTYPE_I32, 1, in, 0);
      break;
    case 3: /* compressed-tensors W8A8, per-channel weights, static activations */
      add(l, N("weight"), QQ_DTYPE_I8, 2, out, in);
      add(l, N("weight_scale"), QQ_DTYPE_BF16, 2, out, 1);
      add(l, N("input_scale"), QQ_DTYPE_F32, 1, 1, 0);
      break;
  }
#undef N
}

static void build(tw_list *l, const qq_config *c, int kind) {
  l->n = 0;
  int64_t H = c->hidden_size, I = c->intermediate_size, hd = c->head_dim, q = c->num_heads * hd,
          kv = c->num_kv_heads * hd;
  add(l, "model.embed_tokens.weight", QQ_DTYPE_BF16, 2, c->vocab_size, H);
  add(l, "model.norm.weight", QQ_DTYPE_BF16, 1, H, 0);
  for (int i = 0; i < c->num_layers; i++) {
    char p[96];
#define P(s) (snprintf(p, sizeof p, "model.layers.%d.%s", i, s), p)
    add(l, P("input_layernorm.weight"), QQ_DTYPE_BF16, 1, H, 0);
    add(l, P("post_attention_layernorm.weight"), QQ_DTYPE_BF16, 1, H, 0);
    add_linear(l, P("self_attn.q_proj"), q, H, kind, c->qkv_bias);
    add_linear(l, P("self_attn.k_proj"), kv, H, kind, c->qkv_bias);
    add_linear(l, P("self_attn.v_proj"), kv, H, kind, c->qkv_bias);
    add_linear(l, P("self_attn.o_proj"), H, q, kind, c->o_bias);
    add_linear(l, P("mlp.gate_proj"), I, H, kind, c->mlp_bias);
    add_linear(l, P("mlp.up_proj"), I, H, kind, c->mlp_bias);
    add_linear(l, P("mlp.down_proj"), H, I, kind, c->mlp_bias);
    if (c->qk_norm) {
      add(l, P("self_attn.q_norm.weight"), QQ_DTYPE_BF16, 1, hd, 0);
      add(l, P("self_attn.k_norm.weight"), QQ_DTYPE_BF16, 1, hd, 0);
    }
#undef P
  }
  if (c->task == QQ_TASK_SEQ_CLS) add(l, "score.weight", QQ_DTYPE_BF16, 2, c->num_labels, H);
  else if (!c->tie_word_embeddings) add(l, "lm_head.weight", QQ_DTYPE_BF16, 2, c->vocab_size, H);
}

static qq_status fill_zero(void *user, size_t index, size_t offset, void *buf, size_t nbytes, qq_error *err) {
  memset(buf, 0, nbytes);
  return QQ_OK;
}

/* Writes l into a fresh dir and runs check_weights; returns its status (message in err). */
static qq_status check_list(const qq_config *c, const tw_list *l, qq_error *err) {
  char *dir = qq_test_tmpdir("cfg");
  qq_error e2 = {0};
  QQ_ASSERT_OK(qq_weights_write_dir_fill(dir, l->t, l->n, 0, NULL, NULL, 0, fill_zero, NULL, &e2), &e2);
  qq_weights *w;
  QQ_ASSERT_OK(qq_weights_open(dir, &w, &e2), &e2);
  qq_status s = qq_config_check_weights(c, w, err);
  qq_weights_close(w);
  qq_test_rmtree(dir);
  free(dir);
  return s;
}

static tw_list L;

static void expect_weights(const qq_config *c, qq_status want, const char *n1, const char *n2, const char *n3) {
  qq_error err = {0};
  qq_status s = check_list(c, &L, &err);
  if (s != want) fail_msg("check_weights: got %s (%s), want %s", qq_status_name(s), err.msg, qq_status_name(want));
  const char *nd[] = {n1, n2, n3};
  for (int i = 0; i < 3; i++)
    if (nd[i] && !strstr(err.msg, nd[i])) fail_msg("message '%s' lacks '%s'", err.msg, nd[i]);
}

static void test_check_weights_errors(void **state) {
  (void)state;
  qq_config c;
  parse_ok("{" BASE_QWEN2 "}", &c); /* untied: needs lm_head */
  build(&L, &c, 0);
  expect_weights(&c, QQ_OK, NULL, NULL, NULL);
  /* missing tensor */
  L.n--; /* drops lm_head.weight */
  expect_weights(&c, QQ_ERR_NOT_FOUND, "lm_head.weight", "tie_word_embeddings", NULL);
  /* shape disagreeing with the config */
  build(&L, &c, 0);
  for (size_t i = 0; i < L.n; i++)
    if (!strcmp(L.names[i], "model.layers.1.mlp.gate_proj.weight")) L.t[i].shape[0] = 95;
  expect_weights(&c, QQ_ERR_FORMAT, "model.layers.1.mlp.gate_proj.weight", "[95, 64]", "intermediate_size");
  build(&L, &c, 0);
  for (size_t i = 0; i < L.n; i++)
    if (!strcmp(L.names[i], "model.layers.0.self_attn.k_proj.weight")) L.t[i].shape[0] = 64;
  expect_weights(&c, QQ_ERR_FORMAT, "k_proj.weight", "[32, 64]", "num_key_value_heads");
  /* dtype qquant cannot use */
  build(&L, &c, 0);
  L.t[1].dtype = QQ_DTYPE_I16; /* model.norm.weight */
  expect_weights(&c, QQ_ERR_UNSUPPORTED, "model.norm.weight", "I16", NULL);
  /* missing bias (Qwen2 q/k/v carry one) */
  build(&L, &c, 0);
  for (size_t i = 0; i < L.n; i++)
    if (!strcmp(L.names[i], "model.layers.1.self_attn.v_proj.bias")) L.names[i][0] = 'X';
  expect_weights(&c, QQ_ERR_NOT_FOUND, "model.layers.1.self_attn.v_proj.bias", NULL, NULL);
  /* the config says more layers than the checkpoint has */
  build(&L, &c, 0);
  c.num_layers = 3;
  expect_weights(&c, QQ_ERR_NOT_FOUND, "model.layers.2.", "num_hidden_layers", NULL);
  qq_config_free(&c);

  /* classifier head */
  parse_ok("{" CLS ",\"id2label\":{\"0\":\"a\",\"1\":\"b\",\"2\":\"c\"}}", &c);
  build(&L, &c, 0);
  expect_weights(&c, QQ_OK, NULL, NULL, NULL);
  L.t[L.n - 1].shape[0] = 2;
  expect_weights(&c, QQ_ERR_FORMAT, "score.weight", "num_labels", NULL);
  qq_config_free(&c);
  /* Qwen3 q/k norms and Llama biases */
  parse_ok("{\"architectures\":[\"Qwen3ForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":96,"
           "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"vocab_size\":100,"
           "\"head_dim\":32,\"tie_word_embeddings\":true}", &c);
  build(&L, &c, 0);
  expect_weights(&c, QQ_OK, NULL, NULL, NULL);
  for (size_t i = 0; i < L.n; i++)
    if (strstr(L.names[i], "layers.1.self_attn.k_norm")) L.t[i].shape[0] = 16;
  expect_weights(&c, QQ_ERR_FORMAT, "k_norm.weight", "head_dim", NULL);
  qq_config_free(&c);
  parse_ok("{" BASE_LLAMA ",\"attention_bias\":true,\"mlp_bias\":true,\"tie_word_embeddings\":true}", &c);
  build(&L, &c, 0);
  expect_weights(&c, QQ_OK, NULL, NULL, NULL);
  qq_config_free(&c);
}

static void test_check_weights_quantized(void **state) {
  (void)state;
  qq_config c;
  parse_ok("{" BASE_QWEN2 ",\"tie_word_embeddings\":true,\"quantization_config\":{\"quant_method\":\"awq\","
           "\"bits\":4,\"group_size\":32,\"zero_point\":true,\"version\":\"gemm\"}}", &c);
  build(&L, &c, 1);
  expect_weights(&c, QQ_OK, NULL, NULL, NULL);
  for (size_t i = 0; i < L.n; i++)
    if (!strcmp(L.names[i], "model.layers.0.mlp.down_proj.qzeros")) L.t[i].shape[0] = 96;
  expect_weights(&c, QQ_ERR_FORMAT, "down_proj.qzeros", "[96, 8]", "group_size");
  build(&L, &c, 2); /* GPTQ layout under an AWQ config */
  expect_weights(&c, QQ_ERR_FORMAT, "q_proj.qweight", "bits = 4", NULL);
  qq_config_free(&c);

  parse_ok("{" BASE_QWEN2 ",\"tie_word_embeddings\":true,\"quantization_config\":{\"quant_method\":\"gptq\","
           "\"bits\":4,\"group_size\":32,\"desc_act\":true,\"sym\":true}}", &c);
  build(&L, &c, 2);
  expect_weights(&c, QQ_OK, NULL, NULL, NULL);
  for (size_t i = 0; i < L.n; i++)
    if (!strcmp(L.names[i], "model.layers.1.self_attn.o_proj.g_idx")) L.names[i][0] = 'X';
  expect_weights(&c, QQ_ERR_NOT_FOUND, "o_proj.g_idx", NULL, NULL);
  build(&L, &c, 2);
  for (size_t i = 0; i < L.n; i++)
    if (!strcmp(L.names[i], "model.layers.1.self_attn.o_proj.qweight")) L.t[i].dtype = QQ_DTYPE_F32;
  expect_weights(&c, QQ_ERR_UNSUPPORTED, "o_proj.qweight", "I32", NULL);
  qq_config_free(&c);

  parse_ok("{" BASE_QWEN2 ",\"quantization_config\":{\"quant_method\":\"compressed-tensors\",\"format\":"
           "\"int-quantized\",\"config_groups\":{\"g\":{\"weights\":{\"num_bits\":8,\"strategy\":\"channel\"},"
           "\"input_activations\":{\"num_bits\":8,\"dynamic\":false,\"strategy\":\"tensor\"},"
           "\"targets\":[\"Linear\"]}},\"ignore\":[\"lm_head\"]}}", &c);
  build(&L, &c, 3);
  expect_weights(&c, QQ_OK, NULL, NULL, NULL); /* lm_head stays bf16: ignored */
  for (size_t i = 0; i < L.n; i++)
    if (!strcmp(L.names[i], "model.layers.0.mlp.up_proj.weight_scale")) L.t[i].shape[1] = 64;
  expect_weights(&c, QQ_ERR_FORMAT, "up_proj.weight_scale", "[96, 64]", NULL);
  build(&L, &c, 3);
  for (size_t i = 0; i < L.n; i++)
    if (!strcmp(L.names[i], "model.layers.0.mlp.up_proj.input_scale")) L.names[i][0] = 'X';
  expect_weights(&c, QQ_ERR_NOT_FOUND, "up_proj.input_scale", "dynamic", NULL);
  qq_config_free(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fixture_qwen2),        cmocka_unit_test(test_fixture_qwen3),
      cmocka_unit_test(test_fixture_llama),        cmocka_unit_test(test_fixture_cls),
      cmocka_unit_test(test_defaults),             cmocka_unit_test(test_rope),
      cmocka_unit_test(test_unsupported),          cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_variants),             cmocka_unit_test(test_labels),
      cmocka_unit_test(test_quant_config),         cmocka_unit_test(test_check_weights_errors),
      cmocka_unit_test(test_check_weights_quantized),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
