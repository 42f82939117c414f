/* test_service_unit.c — the parts of service/ that need no model and no network: flags and
 * environment, UTF-8 checking, request decoding + validation (every rejection path), metrics text. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "service.h"
#include "testutil.h"

static void test_config_defaults(void **state) {
  qq_service_config c;
  qq_service_config_default(&c);
  assert_string_equal(c.host, "127.0.0.1");
  assert_int_equal(c.port, 50051);
  assert_int_equal(c.metrics_port, 9090);
  assert_int_equal(c.drain_seconds, 30);
  assert_int_equal(c.device, QQ_SERVICE_DEVICE_AUTO);
  assert_int_equal(c.rope_freq, QQ_ROPE_FREQ_EXACT);
  assert_false(c.log_json);
}

static void test_config_env_then_flags(void **state) {
  qq_service_config c;
  qq_service_config_default(&c);
  char *env[] = {"QQ_SERVE_PORT=6000", "QQ_SERVE_MODEL=/m/env", "QQ_SERVE_DRAIN_SECONDS=7", "QQ_SERVE_MAX_QUEUE=9",
                 "QQ_SERVE_LOG_FORMAT=json", "QQ_SERVE_DEVICE=cpu", "QQ_SERVE_TLS_CLIENT_CA=", "QQ_SERVE_ROPE_FREQ=bf16", "OTHER=1", NULL};
  char *argv[] = {"qquant-serve", "--port", "7000", "--max-batch=3", "--model", "/m/flag", NULL};
  qq_error err = {0};
  bool help = true;
  QQ_ASSERT_OK(qq_service_config_parse(&c, 6, argv, env, &help, &err), &err);
  assert_false(help);
  assert_int_equal(c.port, 7000);            /* flag over env */
  assert_string_equal(c.model, "/m/flag");   /* flag over env */
  assert_int_equal(c.drain_seconds, 7);      /* env */
  assert_int_equal(c.max_queue, 9);
  assert_int_equal(c.max_batch, 3);
  assert_true(c.log_json);
  assert_int_equal(c.device, QQ_SERVICE_DEVICE_CPU);
  assert_int_equal(c.rope_freq, QQ_ROPE_FREQ_BF16);
}

static void expect_bad(char **argv, int argc, char **env, const char *needle) {
  qq_service_config c;
  qq_service_config_default(&c);
  qq_error err = {0};
  char *noenv[] = {NULL};
  assert_int_equal(qq_service_config_parse(&c, argc, argv, env ? env : noenv, NULL, &err), QQ_ERR_INVALID_ARG);
  if (!strstr(err.msg, needle)) fail_msg("message '%s' does not name '%s'", err.msg, needle);
}

static void test_config_errors(void **state) {
  expect_bad((char *[]){"x", "--port", "65536"}, 3, NULL, "--port");
  expect_bad((char *[]){"x", "--port", "12ab"}, 3, NULL, "not an integer");
  expect_bad((char *[]){"x", "--device", "tpu"}, 3, NULL, "auto, cpu, cuda");
  expect_bad((char *[]){"x", "--log-format", "xml"}, 3, NULL, "json, text");
  expect_bad((char *[]){"x", "--rope-freq", "fp32"}, 3, NULL, "exact, bf16");
  expect_bad((char *[]){"x", "--bogus", "1"}, 3, NULL, "--bogus");
  expect_bad((char *[]){"x", "--port"}, 2, NULL, "needs a value");
  expect_bad((char *[]){"x", "positional"}, 2, NULL, "positional");
  expect_bad((char *[]){"x", "--tls-cert", "a.pem"}, 3, NULL, "--tls-key");
  expect_bad((char *[]){"x", "--tls-client-ca", "ca.pem"}, 3, NULL, "mTLS");
  expect_bad((char *[]){"x"}, 1, (char *[]){"QQ_SERVE_MAX_BATCH=0", NULL}, "QQ_SERVE_MAX_BATCH");
  qq_service_config c;
  qq_service_config_default(&c);
  bool help = false;
  char *noenv[] = {NULL};
  assert_int_equal(qq_service_config_parse(&c, 2, (char *[]){"x", "--help"}, noenv, &help, NULL), QQ_OK);
  assert_true(help);
  assert_non_null(strstr(qq_service_config_usage(), "--drain-seconds"));
}

static void test_utf8(void **state) {
  static const struct {
    const char *s;
    size_t len;
    bool ok;
  } cases[] = {
      {"", 0, true},           {"plain", 5, true},         {"caf\xc3\xa9", 5, true},   {"\xe2\x82\xac", 3, true},
      {"\xf0\x9f\x98\x80", 4, true}, {"\xc3", 1, false},   {"\xc0\xaf", 2, false},     {"\xe0\x80\xaf", 3, false},
      {"\xed\xa0\x80", 3, false}, {"\xf4\x90\x80\x80", 4, false}, {"\xff", 1, false},   {"a\x80", 2, false},
      {"\xe2\x82", 2, false},  {"\xf0\x9f\x98", 3, false},
  };
  for (size_t i = 0; i < QQ_ARRAY_LEN(cases); i++) {
    size_t at = 99;
    if (qq_utf8_valid(cases[i].s, cases[i].len, &at) != cases[i].ok) fail_msg("case %zu", i);
  }
  size_t at = 0;
  assert_false(qq_utf8_valid("ab\xff", 3, &at));
  assert_int_equal(at, 2);
  /* Why the server checks: protobuf-c decodes a proto3 `string` field holding invalid UTF-8 without
   * complaint (GenerateRequest.prompt = "\xff\xfe"). */
  static const uint8_t wire[] = {0x0a, 0x02, 0xff, 0xfe};
  Qquant__V1__GenerateRequest *r = qquant__v1__generate_request__unpack(NULL, sizeof wire, wire);
  assert_non_null(r);
  assert_memory_equal(r->prompt, "\xff\xfe", 3);
  qquant__v1__generate_request__free_unpacked(r, NULL);
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *n) {
  *n = protobuf_c_message_get_packed_size(m);
  uint8_t *b = malloc(*n + 1);
  protobuf_c_message_pack(m, b);
  return b;
}

static void check_req(const char *method, const ProtobufCMessage *m, qq_status want, const char *needle) {
  size_t n;
  uint8_t *b = pack(m, &n);
  qq_request_limits lim = qq_request_limits_default();
  lim.vocab_size = 100;
  lim.max_seq_len = 64;
  qq_error err = {0};
  qq_status st = qq_service_check_request(method, b, n, &lim, &err);
  free(b);
  if (st != want) fail_msg("%s: got %s (%s), want %s", needle, qq_status_name(st), err.msg, qq_status_name(want));
  if (want && !strstr(err.msg, needle)) fail_msg("message '%s' does not name '%s'", err.msg, needle);
}

#define GEN "/qquant.v1.Inference/Generate"
#define CLS "/qquant.v1.Inference/Classify"

static void test_check_generate(void **state) {
  Qquant__V1__GenerateRequest r = QQUANT__V1__GENERATE_REQUEST__INIT;
  r.prompt = "hello";
  check_req(GEN, &r.base, QQ_OK, "");
  r.prompt = "";
  check_req(GEN, &r.base, QQ_ERR_INVALID_ARG, "prompt");
  int32_t ids[3] = {1, 2, 100};
  r.prompt_token_ids = ids;
  r.n_prompt_token_ids = 2;
  check_req(GEN, &r.base, QQ_OK, "");
  r.n_prompt_token_ids = 3;
  check_req(GEN, &r.base, QQ_ERR_INVALID_ARG, "prompt_token_ids[2]");
  r.prompt = "x";
  r.n_prompt_token_ids = 1;
  check_req(GEN, &r.base, QQ_ERR_INVALID_ARG, "both");
  r.n_prompt_token_ids = 0;
  r.prompt = "ok\xff";
  check_req(GEN, &r.base, QQ_ERR_INVALID_ARG, "UTF-8");
  r.prompt = "ok";
  r.temperature = -0.5f;
  check_req(GEN, &r.base, QQ_ERR_INVALID_ARG, "temperature");
  r.temperature = 0;
  r.top_p = 1.01f;
  check_req(GEN, &r.base, QQ_ERR_INVALID_ARG, "top_p");
  r.top_p = 0;
  r.top_k = 101;
  check_req(GEN, &r.base, QQ_ERR_INVALID_ARG, "top_k");
  r.top_k = 0;
  r.max_new_tokens = 65;
  check_req(GEN, &r.base, QQ_ERR_INVALID_ARG, "max_new_tokens");
  r.max_new_tokens = 8;
  char *stops[17];
  for (int i = 0; i < 17; i++) stops[i] = "s";
  r.stop = stops;
  r.n_stop = 17;
  check_req(GEN, &r.base, QQ_ERR_INVALID_ARG, "stop");
  r.n_stop = 1;
  stops[0] = "";
  check_req(GEN, &r.base, QQ_ERR_INVALID_ARG, "stop[0]");
}

static void test_check_classify(void **state) {
  Qquant__V1__ClassifyRequest r = QQUANT__V1__CLASSIFY_REQUEST__INIT;
  check_req(CLS, &r.base, QQ_ERR_INVALID_ARG, "inputs");
  char *in[2] = {"a text", "\xe2\x82"};
  r.inputs = in;
  r.n_inputs = 1;
  check_req(CLS, &r.base, QQ_OK, "");
  r.n_inputs = 2;
  check_req(CLS, &r.base, QQ_ERR_INVALID_ARG, "inputs[1]");
  r.n_inputs = 1;
  char *labels[2] = {"x", "x"};
  r.candidate_labels = labels;
  r.n_candidate_labels = 2;
  check_req(CLS, &r.base, QQ_ERR_INVALID_ARG, "duplicate");
  labels[1] = "";
  check_req(CLS, &r.base, QQ_ERR_INVALID_ARG, "candidate_labels[1]");
  labels[1] = "y";
  r.truncation = (Qquant__V1__Truncation)7;
  check_req(CLS, &r.base, QQ_ERR_INVALID_ARG, "truncation");
  r.truncation = QQUANT__V1__TRUNCATION__TRUNCATION_LEFT;
  r.max_input_tokens = 65;
  check_req(CLS, &r.base, QQ_ERR_INVALID_ARG, "max_input_tokens");
  r.max_input_tokens = 0;
  r.n_candidate_labels = 0;
  r.label_prefix = " is";
  check_req(CLS, &r.base, QQ_ERR_INVALID_ARG, "label_prefix");
}

static void test_check_bytes(void **state) {
  qq_request_limits lim = qq_request_limits_default();
  qq_error err = {0};
  static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
  const char *methods[] = {GEN, CLS, "/qquant.v1.Inference/GetModelInfo", "/grpc.health.v1.Health/Check",
                           "/grpc.health.v1.Health/Watch"};
  for (size_t i = 0; i < QQ_ARRAY_LEN(methods); i++)
    assert_int_equal(qq_service_check_request(methods[i], junk, sizeof junk, &lim, &err), QQ_ERR_INVALID_ARG);
  assert_int_equal(qq_service_check_request("/x.Y/Z", junk, 0, &lim, &err), QQ_ERR_NOT_FOUND);
  /* health: an empty message is a valid request for service "" */
  assert_int_equal(qq_service_check_request("/grpc.health.v1.Health/Check", junk, 0, &lim, &err), QQ_OK);
  static const uint8_t bad_service[] = {0x0a, 0x01, 0xff};
  assert_int_equal(qq_service_check_request("/grpc.health.v1.Health/Check", bad_service, 3, &lim, &err),
                   QQ_ERR_INVALID_ARG);
}

#define REFL "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"

static void test_check_reflection(void **state) {
  Grpc__Reflection__V1alpha__ServerReflectionRequest r = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
  r.message_request_case = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
  r.list_services = "";
  check_req(REFL, &r.base, QQ_OK, "");
  r.message_request_case = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
  r.file_containing_symbol = "qquant.v1.Inference.Generate";
  check_req(REFL, &r.base, QQ_OK, "");
  r.file_containing_symbol = "no.such.Symbol"; /* answered with an error response: still a valid request */
  check_req(REFL, &r.base, QQ_OK, "");
  r.file_containing_symbol = "bad\xc3";
  check_req(REFL, &r.base, QQ_ERR_INVALID_ARG, "UTF-8");
  r.message_request_case = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
  r.file_by_filename = "grpc/health/v1/health.proto";
  check_req(REFL, &r.base, QQ_OK, "");
  qq_request_limits lim = qq_request_limits_default();
  qq_error err = {0};
  static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
  assert_int_equal(qq_service_check_request(REFL, junk, sizeof junk, &lim, &err), QQ_ERR_INVALID_ARG);
  assert_non_null(strstr(err.msg, "ServerReflectionRequest"));
}

static void test_metrics_text(void **state) {
  qq_metrics *m = NULL;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_metrics_create(&m, &err), &err);
  qq_metrics_request(m, QQ_M_GENERATE, 0, 0.5);
  qq_metrics_request(m, QQ_M_GENERATE, 8, 0.001);
  qq_metrics_request(m, QQ_M_CLASSIFY, 3, 0.002);
  qq_metrics_ttft(m, 0.03);
  qq_metrics_step(m, 5, 40, 0.01);
  qq_metrics_gauges(m, 2, 5, 10, 40);
  char *text = NULL;
  size_t len = 0;
  QQ_ASSERT_OK(qq_metrics_render(m, &text, &len, &err), &err);
  assert_int_equal(strlen(text), len);
  assert_non_null(strstr(text, "qquant_requests_total{method=\"Generate\",code=\"OK\"} 1\n"));
  assert_non_null(strstr(text, "qquant_requests_total{method=\"Generate\",code=\"RESOURCE_EXHAUSTED\"} 1\n"));
  assert_non_null(strstr(text, "qquant_requests_total{method=\"Classify\",code=\"INVALID_ARGUMENT\"} 1\n"));
  assert_non_null(strstr(text, "qquant_time_to_first_token_seconds_bucket{le=\"0.05\"} 1\n"));
  assert_non_null(strstr(text, "qquant_time_to_first_token_seconds_bucket{le=\"0.025\"} 0\n"));
  assert_non_null(strstr(text, "qquant_batch_size_bucket{le=\"8\"} 1\n"));
  assert_non_null(strstr(text, "qquant_queue_depth 2\n"));
  assert_non_null(strstr(text, "qquant_kv_usage_ratio 0.2500\n"));
  free(text);
  qq_metrics_free(m);
  qq_metrics_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_defaults), cmocka_unit_test(test_config_env_then_flags),
      cmocka_unit_test(test_config_errors),   cmocka_unit_test(test_utf8),
      cmocka_unit_test(test_check_generate),  cmocka_unit_test(test_check_classify),
      cmocka_unit_test(test_check_bytes),     cmocka_unit_test(test_check_reflection),
      cmocka_unit_test(test_metrics_text),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
