/* test_common.c — status names, error formatting, half-precision conversions, CPU setup helpers. */
#include <math.h>
#include <string.h>

#include "testutil.h"

static void test_error_set_and_prefix(void **state) {
  (void)state;
  qq_error err = {0};
  qq_status st = qq_error_set(&err, QQ_ERR_FORMAT, "%s: bad header", "x.safetensors");
  assert_int_equal(st, QQ_ERR_FORMAT);
  assert_string_equal(err.msg, "x.safetensors: bad header");
  qq_error_prefix(&err, "loading %s", "dir");
  assert_string_equal(err.msg, "loading dir: x.safetensors: bad header");
  assert_string_equal(qq_status_name(QQ_ERR_NOT_FOUND), "NOT_FOUND");
  /* A NULL error object is allowed everywhere. */
  assert_int_equal(qq_error_set(NULL, QQ_ERR_IO, "ignored"), QQ_ERR_IO);
}

static void test_bf16_round_trip(void **state) {
  (void)state;
  /* bf16 -> f32 -> bf16 is the identity for every non-NaN bit pattern. */
  for (uint32_t h = 0; h < 65536; h++) {
    float f = qq_bf16_to_f32((uint16_t)h);
    if (isnan(f)) continue;
    assert_int_equal(qq_f32_to_bf16(f), h);
  }
  /* Round to nearest even: 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125 -> 1.0. */
  assert_int_equal(qq_f32_to_bf16(1.00390625f), 0x3f80);
  assert_int_equal(qq_f32_to_bf16(1.01171875f), 0x3f82); /* halfway, odd below -> rounds up */
}

static void test_f16_round_trip(void **state) {
  (void)state;
  for (uint32_t h = 0; h < 65536; h++) {
    float f = qq_f16_to_f32((uint16_t)h);
    if (isnan(f)) continue;
    assert_int_equal(qq_f32_to_f16(f), h);
  }
  assert_true(qq_f16_to_f32(0x3c00) == 1.0f);
  assert_true(qq_f16_to_f32(0x0001) == ldexpf(1.0f, -24)); /* smallest subnormal */
  assert_int_equal(qq_f32_to_f16(65520.0f), 0x7c00);       /* rounds to inf */
  assert_int_equal(qq_f32_to_f16(ldexpf(1.0f, -25)), 0x0000); /* halfway to the smallest: even (0) */
  assert_int_equal(qq_f32_to_f16(ldexpf(1.5f, -25)), 0x0001);
}

static void test_sha256(void **state) {
  (void)state;
  char hex[65];
  qq_sha256_hex("abc", 3, hex);
  assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_coretype_choice(void **state) {
  (void)state;
  const char *c = qq_cpu_openblas_coretype_for_cpu();
  /* Every x86-64 machine this project runs on has AVX; the choice must be one of the three. */
  if (c) assert_true(!strcmp(c, "SKYLAKEX") || !strcmp(c, "HASWELL") || !strcmp(c, "SANDYBRIDGE"));
  assert_true(qq_cpu_default_threads() >= 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_error_set_and_prefix), cmocka_unit_test(test_bf16_round_trip),
      cmocka_unit_test(test_f16_round_trip),       cmocka_unit_test(test_sha256),
      cmocka_unit_test(test_coretype_choice),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
