/* test_safetensors.c — the .safetensors reader rejects every malformed header with the right status
 * and a message naming the file and tensor; the writer round-trips exactly and is atomic. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"
#include "testutil.h"

/* Builds [u64 len][header][data_len bytes of 0..255 pattern]; heap, caller frees. */
static uint8_t *make_buf(const char *header, size_t data_len, size_t *out_len) {
  size_t hl = strlen(header);
  uint8_t *b = malloc(8 + hl + data_len + 1);
  assert_non_null(b);
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
  memcpy(b + 8, header, hl);
  for (size_t i = 0; i < data_len; i++) b[8 + hl + i] = (uint8_t)i;
  *out_len = 8 + hl + data_len;
  return b;
}

/* Parses header + data; asserts the status and that every needle occurs in the message. */
static void expect_parse(const char *header, size_t data_len, qq_status want, const char *needle1,
                         const char *needle2) {
  size_t len;
  uint8_t *b = make_buf(header, data_len, &len);
  qq_safetensors *st = (qq_safetensors *)1;
  qq_error err = {0};
  qq_status s = qq_safetensors_parse(b, len, "unit.safetensors", &st, &err);
  if (s != want) fail_msg("header %s: got %s (%s), want %s", header, qq_status_name(s), err.msg, qq_status_name(want));
  if (want == QQ_OK) {
    qq_safetensors_close(st);
  } else {
    assert_null(st);
    assert_non_null(strstr(err.msg, "unit.safetensors"));
    if (needle1 && !strstr(err.msg, needle1)) fail_msg("message '%s' lacks '%s'", err.msg, needle1);
    if (needle2 && !strstr(err.msg, needle2)) fail_msg("message '%s' lacks '%s'", err.msg, needle2);
  }
  free(b);
}

static void test_truncated_length(void **state) {
  (void)state;
  uint8_t b[5] = {1, 0, 0, 0, 0};
  qq_safetensors *st;
  qq_error err = {0};
  assert_int_equal(qq_safetensors_parse(b, sizeof b, "unit.safetensors", &st, &err), QQ_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "truncated"));
  assert_int_equal(qq_safetensors_parse(b, 0, "unit.safetensors", &st, &err), QQ_ERR_FORMAT);
}

static void test_header_past_eof(void **state) {
  (void)state;
  size_t len;
  uint8_t *b = make_buf("{}", 0, &len);
  b[0] = 200; /* claims a 200-byte header in a 10-byte buffer */
  qq_safetensors *st;
  qq_error err = {0};
  assert_int_equal(qq_safetensors_parse(b, len, "unit.safetensors", &st, &err), QQ_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "past the end"));
  b[7] = 0x80; /* 2^63 + 200: must not overflow the check */
  assert_int_equal(qq_safetensors_parse(b, len, "unit.safetensors", &st, &err), QQ_ERR_FORMAT);
  free(b);
}

static void test_invalid_json(void **state) {
  (void)state;
  expect_parse("{\"a\": ", 0, QQ_ERR_FORMAT, "not valid JSON", NULL);
  expect_parse("[1, 2]", 0, QQ_ERR_FORMAT, "not an object", NULL);
  expect_parse("{} xx", 0, QQ_ERR_FORMAT, "trailing", NULL);
  expect_parse("{}      ", 0, QQ_OK, NULL, NULL); /* HF pads with spaces */
  expect_parse("{\"a\":1}", 0, QQ_ERR_FORMAT, "tensor a", "not a JSON object");
}

static void test_dtype(void **state) {
  (void)state;
  expect_parse("{\"w\":{\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, QQ_ERR_FORMAT, "tensor w",
               "unknown dtype");
  expect_parse("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, QQ_ERR_UNSUPPORTED,
               "tensor w", "F8_E4M3");
  expect_parse("{\"w\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,1]}}", 1, QQ_ERR_FORMAT, "tensor w", "dtype");
  expect_parse("{\"w\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, QQ_ERR_FORMAT, "tensor w", "dtype");
}

static void test_shape_malformed(void **state) {
  (void)state;
  expect_parse("{\"w\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", 1, QQ_ERR_FORMAT, "tensor w",
               "shape[0]");
  expect_parse("{\"w\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}", 1, QQ_ERR_FORMAT, "tensor w",
               "shape[0]");
  expect_parse("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,\"2\"],\"data_offsets\":[0,2]}}", 2, QQ_ERR_FORMAT, "tensor w",
               "shape[1]");
  expect_parse("{\"w\":{\"dtype\":\"U8\",\"shape\":3,\"data_offsets\":[0,3]}}", 3, QQ_ERR_FORMAT, "tensor w", "shape");
  expect_parse("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
               QQ_ERR_UNSUPPORTED, "tensor w", "dimensions");
  /* 2^32 * 2^32 overflows int64; 2^40 * 2^20 * 4 bytes overflows the byte count checks too. */
  expect_parse("{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,1]}}", 1,
               QQ_ERR_RANGE, "tensor w", "overflow");
  expect_parse("{\"w\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1048576,4],\"data_offsets\":[0,1]}}", 1,
               QQ_ERR_RANGE, "tensor w", "overflow");
  /* A zero dimension makes the rest harmless. */
  expect_parse("{\"w\":{\"dtype\":\"F32\",\"shape\":[0,4294967296,4294967296],\"data_offsets\":[0,0]}}", 0, QQ_OK,
               NULL, NULL);
}

static void test_offsets(void **state) {
  (void)state;
  expect_parse("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1, QQ_ERR_FORMAT, "tensor w",
               "data_offsets");
  expect_parse("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,1]}}", 4, QQ_ERR_FORMAT, "tensor w",
               "end before");
  expect_parse("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 4, QQ_ERR_FORMAT, "tensor w",
               "data_offsets");
  /* out of bounds of the data section */
  expect_parse("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 4, QQ_ERR_RANGE, "tensor w",
               "past the data section");
  expect_parse("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[9007199254740000,9007199254740004]}}", 4,
               QQ_ERR_RANGE, "tensor w", NULL);
  /* byte size != numel * dtype size */
  expect_parse("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, QQ_ERR_FORMAT, "tensor w",
               "needs 8");
}

static void test_overlap(void **state) {
  (void)state;
  expect_parse("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[3,7]}}",
               8, QQ_ERR_FORMAT, "tensors a", "overlap");
  /* same overlap, listed in the other order */
  expect_parse("{\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[3,7]},"
               "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
               8, QQ_ERR_FORMAT, "and b", "overlap");
  /* one inside another */
  expect_parse("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
               "\"c\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[7,8]},"
               "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}",
               8, QQ_ERR_FORMAT, "overlap", NULL);
  /* adjacent and empty tensors do not overlap */
  expect_parse("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
               "\"e\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,2]},"
               "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
               8, QQ_OK, NULL, NULL);
  expect_parse("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
               8, QQ_ERR_FORMAT, "tensor a", "twice");
}

static void test_metadata(void **state) {
  (void)state;
  expect_parse("{\"__metadata__\":{\"format\":1}}", 0, QQ_ERR_FORMAT, "__metadata__", "format");
  expect_parse("{\"__metadata__\":[]}", 0, QQ_ERR_FORMAT, "__metadata__", NULL);
  size_t len;
  uint8_t *b = make_buf("{\"__metadata__\":{\"format\":\"pt\",\"x\":\"y\"},"
                        "\"w\":{\"dtype\":\"I16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}",
                        8, &len);
  qq_safetensors *st;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_safetensors_parse(b, len, "unit.safetensors", &st, &err), &err);
  assert_string_equal(qq_safetensors_metadata(st, "format"), "pt");
  assert_string_equal(qq_safetensors_metadata(st, "x"), "y");
  assert_null(qq_safetensors_metadata(st, "nope"));
  assert_int_equal(qq_safetensors_count(st), 1);
  const qq_tensor_info *t = qq_safetensors_find(st, "w");
  assert_non_null(t);
  assert_ptr_equal(t, qq_safetensors_at(st, 0));
  assert_null(qq_safetensors_at(st, 1));
  assert_null(qq_safetensors_find(st, "__metadata__"));
  assert_int_equal(t->dtype, QQ_DTYPE_I16);
  assert_int_equal(t->ndim, 2);
  assert_int_equal(t->numel, 4);
  assert_int_equal(t->nbytes, 8);
  assert_ptr_equal(t->data, b + len - 8);
  assert_string_equal(t->file, "unit.safetensors");
  qq_safetensors_close(st);
  qq_safetensors_close(NULL);
  free(b);
}

static char *join(const char *a, const char *b) {
  char *p = malloc(strlen(a) + strlen(b) + 2);
  sprintf(p, "%s/%s", a, b);
  return p;
}

static int count_files(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d))) n += de->d_name[0] != '.';
  closedir(d);
  return n;
}

static void test_write_roundtrip(void **state) {
  (void)state;
  char *dir = qq_test_tmpdir("st");
  char *path = join(dir, "t.safetensors");
  float a[6] = {1, 2, 3, 4, 5, 6.5f};
  uint16_t b[3] = {0x3f80, 0xc000, 0x7fc0};
  int8_t c[5] = {-128, -1, 0, 1, 127};
  qq_tensor_write tw[] = {
      {.name = "a", .dtype = QQ_DTYPE_F32, .ndim = 2, .shape = {2, 3}, .data = a},
      {.name = "b.weird \"name\"", .dtype = QQ_DTYPE_BF16, .ndim = 1, .shape = {3}, .data = b},
      {.name = "scalar", .dtype = QQ_DTYPE_I8, .ndim = 0, .data = c},
      {.name = "c", .dtype = QQ_DTYPE_I8, .ndim = 1, .shape = {5}, .data = c},
      {.name = "empty", .dtype = QQ_DTYPE_F32, .ndim = 2, .shape = {0, 7}, .data = NULL},
  };
  const char *mk[] = {"format", "qquant"}, *mv[] = {"pt", "test"};
  qq_error err = {0};
  QQ_ASSERT_OK(qq_safetensors_write(path, tw, 5, mk, mv, 2, &err), &err);
  assert_int_equal(count_files(dir), 1); /* no temp file left */
  qq_safetensors *st;
  QQ_ASSERT_OK(qq_safetensors_open(path, &st, &err), &err);
  assert_int_equal(qq_safetensors_count(st), 5);
  assert_string_equal(qq_safetensors_metadata(st, "qquant"), "test");
  for (size_t i = 0; i < 5; i++) {
    const qq_tensor_info *t = qq_safetensors_find(st, tw[i].name);
    assert_non_null(t);
    assert_int_equal(t->dtype, tw[i].dtype);
    assert_int_equal(t->ndim, tw[i].ndim);
    for (int d = 0; d < t->ndim; d++) assert_int_equal(t->shape[d], tw[i].shape[d]);
    if (t->nbytes) assert_memory_equal(t->data, tw[i].data, t->nbytes);
    /* the writer pads the header so the data section is 8-byte aligned */
    if (i == 0) assert_int_equal(((uintptr_t)t->data) % 8, 0);
  }
  assert_int_equal(qq_safetensors_at(st, 2)->numel, 1);
  float f[6];
  QQ_ASSERT_OK(qq_tensor_to_f32(qq_safetensors_find(st, "a"), f, &err), &err);
  assert_memory_equal(f, a, sizeof a);
  qq_safetensors_close(st);

  /* The header is a multiple of 8 bytes and the tensors are contiguous: file size is exact. */
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  FILE *fp = fopen(path, "rb");
  uint8_t lb[8];
  assert_int_equal(fread(lb, 1, 8, fp), 8);
  fclose(fp);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = (hl << 8) | lb[i];
  assert_int_equal(hl % 8, 0);
  assert_int_equal((uint64_t)sb.st_size, 8 + hl + sizeof a + sizeof b + 1 + sizeof c);

  /* Invalid input: nothing is written and the old file stays. */
  qq_tensor_write dup[] = {tw[0], tw[0]};
  assert_int_equal(qq_safetensors_write(path, dup, 2, NULL, NULL, 0, &err), QQ_ERR_INVALID_ARG);
  assert_non_null(strstr(err.msg, "twice"));
  qq_tensor_write bad = tw[0];
  bad.dtype = (qq_dtype)99;
  assert_int_equal(qq_safetensors_write(path, &bad, 1, NULL, NULL, 0, &err), QQ_ERR_INVALID_ARG);
  bad = tw[0];
  bad.shape[0] = -2;
  assert_int_equal(qq_safetensors_write(path, &bad, 1, NULL, NULL, 0, &err), QQ_ERR_INVALID_ARG);
  bad = tw[0];
  bad.name = "__metadata__";
  assert_int_equal(qq_safetensors_write(path, &bad, 1, NULL, NULL, 0, &err), QQ_ERR_INVALID_ARG);
  bad = tw[0];
  bad.data = NULL;
  assert_int_equal(qq_safetensors_write(path, &bad, 1, NULL, NULL, 0, &err), QQ_ERR_INVALID_ARG);
  assert_int_equal(count_files(dir), 1);
  QQ_ASSERT_OK(qq_safetensors_open(path, &st, &err), &err);
  assert_int_equal(qq_safetensors_count(st), 5);
  qq_safetensors_close(st);
  /* Unwritable destination. */
  char *nodir = join(dir, "missing/x.safetensors");
  assert_int_equal(qq_safetensors_write(nodir, tw, 1, NULL, NULL, 0, &err), QQ_ERR_IO);
  free(nodir);
  qq_test_rmtree(dir);
  free(path);
  free(dir);
}

static void test_open_errors(void **state) {
  (void)state;
  char *dir = qq_test_tmpdir("st");
  char *path = join(dir, "t.safetensors");
  qq_safetensors *st;
  qq_error err = {0};
  assert_int_equal(qq_safetensors_open(path, &st, &err), QQ_ERR_NOT_FOUND);
  assert_non_null(strstr(err.msg, "t.safetensors"));
  assert_int_equal(qq_safetensors_open(dir, &st, &err), QQ_ERR_IO); /* a folder */
  /* A file cut short inside the data section: the last tensor runs past the end. */
  float a[64] = {0};
  qq_tensor_write tw[] = {{.name = "x", .dtype = QQ_DTYPE_F32, .ndim = 1, .shape = {32}, .data = a},
                          {.name = "y", .dtype = QQ_DTYPE_F32, .ndim = 1, .shape = {32}, .data = a + 32}};
  QQ_ASSERT_OK(qq_safetensors_write(path, tw, 2, NULL, NULL, 0, &err), &err);
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(truncate(path, sb.st_size - 10), 0);
  assert_int_equal(qq_safetensors_open(path, &st, &err), QQ_ERR_RANGE);
  assert_non_null(strstr(err.msg, "tensor y"));
  assert_non_null(strstr(err.msg, path));
  /* Cut inside the header. */
  assert_int_equal(truncate(path, 20), 0);
  assert_int_equal(qq_safetensors_open(path, &st, &err), QQ_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "past the end"));
  /* Empty file. */
  assert_int_equal(truncate(path, 0), 0);
  assert_int_equal(qq_safetensors_open(path, &st, &err), QQ_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "truncated"));
  qq_test_rmtree(dir);
  free(path);
  free(dir);
}

static void test_fixture(void **state) {
  (void)state;
  char path[4096];
  snprintf(path, sizeof path, "%s", qq_test_fixture("models/qwen3-tiny-lm/model.safetensors"));
  qq_safetensors *st;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_safetensors_open(path, &st, &err), &err);
  assert_int_equal(qq_safetensors_count(st), 46);
  assert_string_equal(qq_safetensors_metadata(st, "format"), "pt");
  const qq_tensor_info *t = qq_safetensors_find(st, "model.embed_tokens.weight");
  assert_non_null(t);
  assert_int_equal(t->dtype, QQ_DTYPE_BF16);
  assert_int_equal(t->shape[0], 8192);
  assert_int_equal(t->shape[1], 256);
  t = qq_safetensors_find(st, "model.layers.3.self_attn.k_norm.weight");
  assert_non_null(t);
  assert_int_equal(t->shape[0], 64);
  qq_safetensors_close(st);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_truncated_length), cmocka_unit_test(test_header_past_eof),
      cmocka_unit_test(test_invalid_json),     cmocka_unit_test(test_dtype),
      cmocka_unit_test(test_shape_malformed),  cmocka_unit_test(test_offsets),
      cmocka_unit_test(test_overlap),          cmocka_unit_test(test_metadata),
      cmocka_unit_test(test_write_roundtrip),  cmocka_unit_test(test_open_errors),
      cmocka_unit_test(test_fixture),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
