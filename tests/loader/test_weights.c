/* test_weights.c — checkpoint folders: single file, index + shards, every broken-index case, the
 * name lookup table, and qq_weights_write_dir(_fill) round trips (one file and sharded). */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"
#include "testutil.h"

static char *join(const char *a, const char *b) {
  char *p = malloc(strlen(a) + strlen(b) + 2);
  sprintf(p, "%s/%s", a, b);
  return p;
}

static bool exists(const char *dir, const char *file) {
  char *p = join(dir, file);
  struct stat sb;
  bool e = stat(p, &sb) == 0;
  free(p);
  return e;
}

static int count_files(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d))) n += de->d_name[0] != '.';
  closedir(d);
  return n;
}

static void write_text(const char *dir, const char *file, const char *text) {
  char *p = join(dir, file);
  qq_test_write_file(p, text, strlen(text));
  free(p);
}

static void test_fixture_sharded(void **state) {
  (void)state;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", qq_test_fixture("models/qwen2-tiny-lm"));
  qq_weights *w;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_weights_open(dir, &w, &err), &err);
  assert_int_equal(qq_weights_count(w), 98); /* entries of the fixture's weight_map */
  const qq_tensor_info *t = qq_weights_find(w, "model.layers.7.self_attn.q_proj.bias");
  assert_non_null(t);
  assert_int_equal(t->shape[0], 384);
  assert_non_null(strstr(t->file, "model-0000"));
  for (size_t i = 0; i < qq_weights_count(w); i++)
    assert_ptr_equal(qq_weights_find(w, qq_weights_at(w, i)->name), qq_weights_at(w, i));
  assert_null(qq_weights_find(w, "lm_head.weight"));
  assert_int_equal(qq_weights_get(w, "lm_head.weight", &t, &err), QQ_ERR_NOT_FOUND);
  assert_null(t);
  assert_non_null(strstr(err.msg, "lm_head.weight"));
  assert_non_null(strstr(err.msg, dir));
  qq_weights_close(w);
  qq_weights_close(NULL);
}

static void test_fixture_single(void **state) {
  (void)state;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", qq_test_fixture("models/llama-stories260k"));
  qq_weights *w;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_weights_open(dir, &w, &err), &err);
  assert_int_equal(qq_weights_count(w), 47);
  const qq_tensor_info *t;
  QQ_ASSERT_OK(qq_weights_get(w, "model.layers.4.self_attn.k_proj.weight", &t, &err), &err);
  assert_int_equal(t->dtype, QQ_DTYPE_F32);
  assert_int_equal(t->shape[0], 32);
  assert_int_equal(t->shape[1], 64);
  qq_weights_close(w);
}

/* Writes two small shards and an index; the index text is the caller's. */
static char *make_sharded(const char *index_json) {
  char *dir = qq_test_tmpdir("wt");
  static float a[4] = {1, 2, 3, 4}, b[2] = {5, 6};
  qq_tensor_write t1 = {.name = "a", .dtype = QQ_DTYPE_F32, .ndim = 1, .shape = {4}, .data = a};
  qq_tensor_write t2 = {.name = "b", .dtype = QQ_DTYPE_F32, .ndim = 1, .shape = {2}, .data = b};
  qq_error err = {0};
  char *p1 = join(dir, "s1.safetensors"), *p2 = join(dir, "s2.safetensors");
  QQ_ASSERT_OK(qq_safetensors_write(p1, &t1, 1, NULL, NULL, 0, &err), &err);
  QQ_ASSERT_OK(qq_safetensors_write(p2, &t2, 1, NULL, NULL, 0, &err), &err);
  free(p1);
  free(p2);
  write_text(dir, "model.safetensors.index.json", index_json);
  return dir;
}

static void expect_open(const char *index_json, qq_status want, const char *n1, const char *n2, const char *n3) {
  char *dir = make_sharded(index_json);
  qq_weights *w = NULL;
  qq_error err = {0};
  qq_status s = qq_weights_open(dir, &w, &err);
  if (s != want) fail_msg("index %s: got %s (%s)", index_json, qq_status_name(s), err.msg);
  if (s == QQ_OK) {
    qq_weights_close(w);
  } else {
    assert_null(w);
    const char *needles[] = {n1, n2, n3};
    for (int i = 0; i < 3; i++)
      if (needles[i] && !strstr(err.msg, needles[i])) fail_msg("message '%s' lacks '%s'", err.msg, needles[i]);
  }
  qq_test_rmtree(dir);
  free(dir);
}

static void test_index_errors(void **state) {
  (void)state;
  expect_open("{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}", QQ_OK, NULL, NULL, NULL);
  /* missing shard: names the index, the tensor and the shard */
  expect_open("{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"model-00004-of-00003.safetensors\"}}",
              QQ_ERR_NOT_FOUND, "model.safetensors.index.json", "tensor b", "model-00004-of-00003.safetensors");
  /* tensor listed in a shard that does not hold it */
  expect_open("{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\"}}", QQ_ERR_NOT_FOUND,
              "model.safetensors.index.json", "tensor b", "s1.safetensors");
  expect_open("{\"weight_map\":{\"a\":\"s1.safetensors\",\"a\":\"s1.safetensors\"}}", QQ_ERR_FORMAT, "tensor a",
              "twice", NULL);
  expect_open("{\"metadata\":{}}", QQ_ERR_FORMAT, "weight_map", NULL, NULL);
  expect_open("[]", QQ_ERR_FORMAT, "model.safetensors.index.json", NULL, NULL);
  expect_open("{\"weight_map\":", QQ_ERR_FORMAT, "model.safetensors.index.json", NULL, NULL);
  expect_open("{\"weight_map\":{\"a\":3}}", QQ_ERR_FORMAT, "tensor a", NULL, NULL);
  expect_open("{\"weight_map\":{\"a\":\"../s1.safetensors\"}}", QQ_ERR_FORMAT, "tensor a", "file name", NULL);
  /* a broken shard: its own error, naming the shard file */
  char *dir = make_sharded("{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}");
  char *p2 = join(dir, "s2.safetensors");
  assert_int_equal(truncate(p2, 4), 0);
  qq_weights *w;
  qq_error err = {0};
  assert_int_equal(qq_weights_open(dir, &w, &err), QQ_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "s2.safetensors"));
  free(p2);
  qq_test_rmtree(dir);
  free(dir);
}

static void test_missing_dir(void **state) {
  (void)state;
  char *dir = qq_test_tmpdir("wt");
  qq_weights *w;
  qq_error err = {0};
  assert_int_equal(qq_weights_open(dir, &w, &err), QQ_ERR_NOT_FOUND);
  assert_non_null(strstr(err.msg, "model.safetensors"));
  char *sub = join(dir, "nope");
  assert_int_equal(qq_weights_open(sub, &w, &err), QQ_ERR_NOT_FOUND);
  assert_non_null(strstr(err.msg, "does not exist"));
  free(sub);
  qq_test_rmtree(dir);
  free(dir);
}

/* 300 tensors of distinct sizes; data is a per-tensor byte pattern. */
#define NT 300
typedef struct many {
  qq_tensor_write t[NT];
  char names[NT][48];
  uint8_t *data[NT];
} many;

static uint8_t pattern(size_t i, size_t off) { return (uint8_t)(i * 31 + off * 7 + (off >> 8)); }

static many *make_many(void) {
  many *m = calloc(1, sizeof *m);
  for (size_t i = 0; i < NT; i++) {
    snprintf(m->names[i], sizeof m->names[i], "model.layers.%zu.x.weight", i);
    size_t n = 16 + (i % 17) * 8;
    m->data[i] = malloc(n * 2);
    for (size_t k = 0; k < n * 2; k++) m->data[i][k] = pattern(i, k);
    m->t[i] = (qq_tensor_write){.name = m->names[i], .dtype = QQ_DTYPE_BF16, .ndim = 2, .shape = {(int64_t)n / 8, 8},
                                .data = m->data[i]};
  }
  return m;
}

static void free_many(many *m) {
  for (size_t i = 0; i < NT; i++) free(m->data[i]);
  free(m);
}

static void check_many(const char *dir, const many *m) {
  qq_weights *w;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_weights_open(dir, &w, &err), &err);
  assert_int_equal(qq_weights_count(w), NT);
  for (size_t i = 0; i < NT; i++) {
    const qq_tensor_info *t = qq_weights_find(w, m->names[i]);
    assert_non_null(t);
    assert_int_equal(t->shape[0], m->t[i].shape[0]);
    assert_int_equal(t->nbytes, (size_t)m->t[i].shape[0] * 16);
    assert_memory_equal(t->data, m->data[i], t->nbytes);
  }
  qq_weights_close(w);
}

static void test_write_dir_single_and_sharded(void **state) {
  (void)state;
  many *m = make_many();
  char *dir = qq_test_tmpdir("wt");
  const char *mk[] = {"format"}, *mv[] = {"pt"};
  qq_error err = {0};
  size_t total = 0;
  for (size_t i = 0; i < NT; i++) total += (size_t)m->t[i].shape[0] * 16;

  QQ_ASSERT_OK(qq_weights_write_dir(dir, m->t, NT, 0, mk, mv, 1, &err), &err);
  assert_true(exists(dir, "model.safetensors"));
  assert_int_equal(count_files(dir), 1);
  check_many(dir, m);

  /* About total/4 per shard: greedy packing gives 4 or 5 shards; the old single file goes away. */
  size_t max = total / 4 + 1;
  QQ_ASSERT_OK(qq_weights_write_dir(dir, m->t, NT, max, mk, mv, 1, &err), &err);
  assert_false(exists(dir, "model.safetensors"));
  assert_true(exists(dir, "model.safetensors.index.json"));
  int files = count_files(dir);
  assert_true(files == 5 || files == 6);
  char shard[64];
  snprintf(shard, sizeof shard, "model-00001-of-%05d.safetensors", files - 1);
  assert_true(exists(dir, shard));
  check_many(dir, m);
  /* every shard holds at most max bytes of tensor data; the index has total_size and a sorted map */
  char *ip = join(dir, "model.safetensors.index.json");
  char *text;
  size_t len;
  QQ_ASSERT_OK(qq_read_file(ip, &text, &len, &err), &err);
  cJSON *root = cJSON_Parse(text);
  assert_non_null(root);
  const cJSON *ts = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "metadata"), "total_size");
  assert_true(cJSON_IsNumber(ts));
  assert_int_equal((size_t)ts->valuedouble, total);
  const cJSON *map = cJSON_GetObjectItem(root, "weight_map");
  assert_int_equal(cJSON_GetArraySize(map), NT);
  for (const cJSON *e = map->child; e && e->next; e = e->next) assert_true(strcmp(e->string, e->next->string) < 0);
  for (int k = 1; k < files; k++) {
    snprintf(shard, sizeof shard, "model-%05d-of-%05d.safetensors", k, files - 1);
    char *sp = join(dir, shard);
    qq_safetensors *st;
    QQ_ASSERT_OK(qq_safetensors_open(sp, &st, &err), &err);
    assert_string_equal(qq_safetensors_metadata(st, "format"), "pt");
    size_t bytes = 0;
    for (size_t i = 0; i < qq_safetensors_count(st); i++) bytes += qq_safetensors_at(st, i)->nbytes;
    assert_true(bytes <= max);
    qq_safetensors_close(st);
    free(sp);
  }
  cJSON_Delete(root);
  free(text);
  free(ip);

  /* Back to one file: index and shards are removed. */
  QQ_ASSERT_OK(qq_weights_write_dir(dir, m->t, NT, 0, NULL, NULL, 0, &err), &err);
  assert_int_equal(count_files(dir), 1);
  check_many(dir, m);

  /* A tensor bigger than the limit gets a shard of its own. */
  QQ_ASSERT_OK(qq_weights_write_dir(dir, m->t, 3, 8, NULL, NULL, 0, &err), &err);
  assert_true(exists(dir, "model-00003-of-00003.safetensors"));
  assert_int_equal(count_files(dir), 4);

  /* Writing into a folder that does not exist yet creates it. */
  char *sub = join(dir, "new");
  QQ_ASSERT_OK(qq_weights_write_dir(sub, m->t, 2, 0, NULL, NULL, 0, &err), &err);
  assert_true(exists(sub, "model.safetensors"));
  free(sub);
  qq_test_rmtree(dir);
  free(dir);
  free_many(m);
}

static qq_status fill_pattern(void *user, size_t index, size_t offset, void *buf, size_t nbytes, qq_error *err) {
  int *calls = user;
  (*calls)++;
  for (size_t k = 0; k < nbytes; k++) ((uint8_t *)buf)[k] = pattern(index, offset + k);
  return QQ_OK;
}

static qq_status fill_fail(void *user, size_t index, size_t offset, void *buf, size_t nbytes, qq_error *err) {
  if (index == 2) return qq_error_set(err, QQ_ERR_CANCELLED, "stop at tensor %zu", index);
  return fill_pattern(user, index, offset, buf, nbytes, err);
}

static void test_write_dir_fill(void **state) {
  (void)state;
  many *m = make_many();
  char *dir = qq_test_tmpdir("wt");
  qq_tensor_write t[NT];
  memcpy(t, m->t, sizeof t);
  for (size_t i = 0; i < NT; i++) t[i].data = NULL;
  int calls = 0;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_weights_write_dir_fill(dir, t, NT, 2000, NULL, NULL, 0, fill_pattern, &calls, &err), &err);
  assert_int_equal(calls, NT);
  check_many(dir, m);
  /* A failing fill aborts; no temp file is left behind and the earlier checkpoint is still whole. */
  char *sub = join(dir, "b");
  assert_int_equal(qq_weights_write_dir_fill(sub, t, NT, 0, NULL, NULL, 0, fill_fail, &calls, &err), QQ_ERR_CANCELLED);
  assert_non_null(strstr(err.msg, "stop at tensor 2"));
  assert_int_equal(count_files(sub), 0);
  check_many(dir, m);
  assert_int_equal(qq_weights_write_dir_fill(sub, t, NT, 0, NULL, NULL, 0, NULL, NULL, &err), QQ_ERR_INVALID_ARG);
  free(sub);
  qq_test_rmtree(dir);
  free(dir);
  free_many(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fixture_sharded), cmocka_unit_test(test_fixture_single),
      cmocka_unit_test(test_index_errors),    cmocka_unit_test(test_missing_dir),
      cmocka_unit_test(test_write_dir_single_and_sharded), cmocka_unit_test(test_write_dir_fill),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
