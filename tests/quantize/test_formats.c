/* test_formats.c — the test vectors of docs/formats.md (AutoAWQ gemm, GPTQ v1 4- and 3-bit,
 * compressed-tensors int8), packing by quantize/ and unpacking by model/qformat back to the canonical
 * form, and malformed tensors rejected with the tensor's name. The packed words are read from the
 * document itself (its "vector ID TENSOR = ..." lines, $QQ_SOURCE_DIR/docs/formats.md), so the page
 * and the code cannot drift apart. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qformat.h"
#include "quantize.h"
#include "testutil.h"

/* Values of the line "vector <id> <tensor> = v0 v1 ..." of docs/formats.md (numbers in C syntax:
 * 0x... or decimal). Fails the test when the document or the line is missing, or when the line does
 * not hold exactly `count` values. */
static void doc_vector(const char *id, const char *tensor, uint32_t *out, int count) {
  const char *src = getenv("QQ_SOURCE_DIR");
  char path[4096];
  snprintf(path, sizeof path, "%s/docs/formats.md", src && *src ? src : ".");
  FILE *f = fopen(path, "r");
  if (!f) fail_msg("cannot open %s (set QQ_SOURCE_DIR to the repository root)", path);
  char key[256], line[4096];
  snprintf(key, sizeof key, "vector %s %s = ", id, tensor);
  int got = -1;
  while (fgets(line, sizeof line, f)) {
    const char *p = line;
    while (*p == ' ') p++;
    if (strncmp(p, key, strlen(key))) continue;
    p += strlen(key);
    got = 0;
    for (;;) {
      char *end;
      unsigned long v = strtoul(p, &end, 0);
      if (end == p) break;
      if (got < count) out[got] = (uint32_t)v;
      got++;
      p = end;
    }
    break;
  }
  fclose(f);
  if (got < 0) fail_msg("%s: no line \"%s...\"", path, key);
  if (got != count) fail_msg("%s: \"%s\" holds %d values, the layout has %d", path, key, got, count);
}

/* A tiny tensor table standing in for a checkpoint. */
typedef struct table {
  qq_tensor_info t[8];
  int n;
} table;
static const qq_tensor_info *table_find(void *ctx, const char *name) {
  table *tb = ctx;
  for (int i = 0; i < tb->n; i++)
    if (!strcmp(tb->t[i].name, name)) return &tb->t[i];
  return NULL;
}
static void table_add(table *tb, const char *name, qq_dtype dt, int ndim, int64_t d0, int64_t d1, const void *data) {
  qq_tensor_info *t = &tb->t[tb->n++];
  memset(t, 0, sizeof *t);
  t->name = name;
  t->dtype = dt;
  t->ndim = ndim;
  t->shape[0] = d0;
  t->shape[1] = d1;
  t->numel = ndim == 1 ? d0 : d0 * d1;
  t->data = data;
  t->nbytes = (size_t)t->numel * qq_dtype_size(dt);
  t->file = "test";
}

/* docs/formats.md, AutoAWQ vector: n = 8 outputs, k = 2 inputs, one group. Output column r holds code
 * r at input 0 and 15 − r at input 1; zero point r + 1; scale 0.5·(r + 1). */
static void make_awq_vector(qq_qweight *q) {
  qq_qparams p = qq_qparams_default();
  p.group_size = -1;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_qweight_alloc(q, 8, 2, &p, false, &err), &err);
  for (int r = 0; r < 8; r++) {
    q->codes[r * 2 + 0] = (uint8_t)r;
    q->codes[r * 2 + 1] = (uint8_t)(15 - r);
    q->zeros[r] = (uint8_t)(r + 1);
    q->scales[r] = 0.5f * (float)(r + 1);
  }
}

static void test_awq_vector(void **state) {
  (void)state;
  qq_qweight q;
  make_awq_vector(&q);
  int32_t qweight[2], qzeros[1];
  uint16_t scales[8];
  qq_error err = {0};
  QQ_ASSERT_OK(qq_awq_pack(&q, qweight, qzeros, scales, &err), &err);
  /* Nibble i (bits 4i..4i+3) holds column AWQ_ORDER[i] = 0,2,4,6,1,3,5,7. */
  uint32_t dw[2], dz[1], ds[8];
  doc_vector("awq-gemm", "qweight", dw, 2);
  doc_vector("awq-gemm", "qzeros", dz, 1);
  doc_vector("awq-gemm", "scales", ds, 8);
  for (int i = 0; i < 2; i++) assert_int_equal((uint32_t)qweight[i], dw[i]);
  assert_int_equal((uint32_t)qzeros[0], dz[0]);
  for (int i = 0; i < 8; i++) assert_int_equal(scales[i], ds[i]);
  /* The document's words back through the loader. */
  for (int i = 0; i < 2; i++) qweight[i] = (int32_t)dw[i];
  qzeros[0] = (int32_t)dz[0];
  for (int i = 0; i < 8; i++) scales[i] = (uint16_t)ds[i];
  table tb = {.n = 0};
  table_add(&tb, "m.qweight", QQ_DTYPE_I32, 2, 2, 1, qweight);
  table_add(&tb, "m.qzeros", QQ_DTYPE_I32, 2, 1, 1, qzeros);
  table_add(&tb, "m.scales", QQ_DTYPE_F16, 2, 1, 8, scales);
  qq_quant_config qc = {.method = QQ_QUANT_AWQ, .bits = 4, .group_size = -1};
  qq_linear_desc d;
  void *owned = NULL;
  QQ_ASSERT_OK(qq_qformat_unpack_linear(&qc, "m", table_find, &tb, 8, 2, &d, &owned, &err), &err);
  assert_int_equal(d.format, QQ_WFMT_QINT);
  assert_int_equal(d.n_groups, 1);
  assert_int_equal(d.group_size, 2);
  assert_memory_equal(d.w, q.codes, 16);
  assert_memory_equal(d.zeros, q.zeros, 8);
  assert_memory_equal(d.scales, q.scales, 8 * sizeof(float));
  assert_null(d.g_idx);
  qq_qformat_free_owned(owned);
  /* Malformed: qweight with the wrong width names the tensor. */
  tb.t[0].shape[1] = 2;
  assert_int_equal(qq_qformat_unpack_linear(&qc, "m", table_find, &tb, 8, 2, &d, &owned, &err), QQ_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "m.qweight"));
  tb.t[0].shape[1] = 1;
  tb.t[1].dtype = QQ_DTYPE_F32;
  assert_int_equal(qq_qformat_unpack_linear(&qc, "m", table_find, &tb, 8, 2, &d, &owned, &err), QQ_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "m.qzeros"));
  tb.n = 1;
  assert_int_equal(qq_qformat_unpack_linear(&qc, "m", table_find, &tb, 8, 2, &d, &owned, &err), QQ_ERR_NOT_FOUND);
  assert_non_null(strstr(err.msg, "m.qzeros"));
  qc.bits = 3;
  assert_int_equal(qq_qformat_unpack_linear(&qc, "m", table_find, &tb, 8, 2, &d, &owned, &err), QQ_ERR_UNSUPPORTED);
  /* Packing refuses what the layout cannot hold. */
  q.bits = 3;
  assert_int_equal(qq_awq_pack(&q, qweight, qzeros, scales, &err), QQ_ERR_UNSUPPORTED);
  qq_qweight_free(&q);
}

static void test_gptq_vector_4bit(void **state) {
  (void)state;
  /* n = 8, k = 8, one group: column r, input c holds (r + c) mod 16; zero r + 1 (stored r). */
  qq_qparams p = qq_qparams_default();
  p.group_size = -1;
  qq_qweight q;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_qweight_alloc(&q, 8, 8, &p, false, &err), &err);
  for (int r = 0; r < 8; r++) {
    for (int c = 0; c < 8; c++) q.codes[r * 8 + c] = (uint8_t)((r + c) % 16);
    q.zeros[r] = (uint8_t)(r + 1);
    q.scales[r] = 1.0f;
  }
  int32_t qweight[8], qzeros[1], g_idx[8];
  uint16_t scales[8];
  QQ_ASSERT_OK(qq_gptq_pack(&q, qweight, qzeros, scales, g_idx, &err), &err);
  /* column r: inputs 0..7, input c at bits 4c; qzeros: zero − 1 per column */
  uint32_t dw[8], dz[1], ds[8], dg[8];
  doc_vector("gptq-4bit", "qweight", dw, 8);
  doc_vector("gptq-4bit", "qzeros", dz, 1);
  doc_vector("gptq-4bit", "scales", ds, 8);
  doc_vector("gptq-4bit", "g_idx", dg, 8);
  for (int i = 0; i < 8; i++) {
    assert_int_equal((uint32_t)qweight[i], dw[i]);
    assert_int_equal(scales[i], ds[i]);
    assert_int_equal((uint32_t)g_idx[i], dg[i]);
    qweight[i] = (int32_t)dw[i];
    scales[i] = (uint16_t)ds[i];
    g_idx[i] = (int32_t)dg[i];
  }
  assert_int_equal((uint32_t)qzeros[0], dz[0]);
  qzeros[0] = (int32_t)dz[0];
  table tb = {.n = 0};
  table_add(&tb, "l.qweight", QQ_DTYPE_I32, 2, 1, 8, qweight);
  table_add(&tb, "l.qzeros", QQ_DTYPE_I32, 2, 1, 1, qzeros);
  table_add(&tb, "l.scales", QQ_DTYPE_F16, 2, 1, 8, scales);
  table_add(&tb, "l.g_idx", QQ_DTYPE_I32, 1, 8, 0, g_idx);
  qq_quant_config qc = {.method = QQ_QUANT_GPTQ, .bits = 4, .group_size = -1};
  qq_linear_desc d;
  void *owned = NULL;
  QQ_ASSERT_OK(qq_qformat_unpack_linear(&qc, "l", table_find, &tb, 8, 8, &d, &owned, &err), &err);
  assert_memory_equal(d.w, q.codes, 64);
  assert_memory_equal(d.zeros, q.zeros, 8);
  assert_null(d.g_idx); /* trivial g_idx is dropped */
  qq_qformat_free_owned(owned);
  /* v1 cannot store zero 0 (it would read back as 16). */
  q.zeros[3] = 0;
  assert_int_equal(qq_gptq_pack(&q, qweight, qzeros, scales, g_idx, &err), QQ_ERR_RANGE);
  /* g_idx out of range is rejected by the loader. */
  g_idx[5] = 1;
  assert_int_equal(qq_qformat_unpack_linear(&qc, "l", table_find, &tb, 8, 8, &d, &owned, &err), QQ_ERR_RANGE);
  assert_non_null(strstr(err.msg, "l.g_idx"));
  qq_qweight_free(&q);
}

static void test_gptq_vector_3bit(void **state) {
  (void)state;
  /* n = 32, k = 32, 3 bits: column 0 holds c mod 8 at input c. The 32 values form one 96-bit little-
   * endian stream (value c at bit 3c): octal 76543210 repeated = 0xFAC688 per 8 values. */
  qq_qparams p = qq_qparams_default();
  p.bits = 3;
  p.group_size = 16;
  qq_qweight q;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_qweight_alloc(&q, 32, 32, &p, true, &err), &err);
  for (int r = 0; r < 32; r++) {
    for (int c = 0; c < 32; c++) q.codes[r * 32 + c] = (uint8_t)((c + r) % 8);
    for (int g = 0; g < 2; g++) {
      q.zeros[r * 2 + g] = (uint8_t)(1 + (r + g) % 7);
      q.scales[r * 2 + g] = 0.25f * (float)(g + 1);
    }
  }
  for (int c = 0; c < 32; c++) q.g_idx[c] = (c * 7) % 2; /* act-order style, non-monotonic */
  int32_t qweight[3 * 32], qzeros[2 * 3], g_idx[32];
  uint16_t scales[2 * 32];
  QQ_ASSERT_OK(qq_gptq_pack(&q, qweight, qzeros, scales, g_idx, &err), &err);
  uint32_t dv[32];
  for (int col = 0; col < 2; col++) {
    char name[32];
    snprintf(name, sizeof name, "qweight[:,%d]", col);
    doc_vector("gptq-3bit", name, dv, 3);
    for (int i = 0; i < 3; i++) assert_int_equal((uint32_t)qweight[i * 32 + col], dv[i]);
  }
  for (int g = 0; g < 2; g++) {
    char name[32];
    snprintf(name, sizeof name, "qzeros[%d]", g);
    doc_vector("gptq-3bit", name, dv, 3);
    for (int i = 0; i < 3; i++) assert_int_equal((uint32_t)qzeros[g * 3 + i], dv[i]);
  }
  doc_vector("gptq-3bit", "scales[:,0]", dv, 2);
  assert_int_equal(scales[0], dv[0]);
  assert_int_equal(scales[32], dv[1]);
  doc_vector("gptq-3bit", "g_idx", dv, 32);
  for (int c = 0; c < 32; c++) assert_int_equal((uint32_t)g_idx[c], dv[c]);
  table tb = {.n = 0};
  table_add(&tb, "x.qweight", QQ_DTYPE_I32, 2, 3, 32, qweight);
  table_add(&tb, "x.qzeros", QQ_DTYPE_I32, 2, 2, 3, qzeros);
  table_add(&tb, "x.scales", QQ_DTYPE_F16, 2, 2, 32, scales);
  table_add(&tb, "x.g_idx", QQ_DTYPE_I32, 1, 32, 0, g_idx);
  qq_quant_config qc = {.method = QQ_QUANT_GPTQ, .bits = 3, .group_size = 16, .desc_act = true};
  qq_linear_desc d;
  void *owned = NULL;
  QQ_ASSERT_OK(qq_qformat_unpack_linear(&qc, "x", table_find, &tb, 32, 32, &d, &owned, &err), &err);
  assert_memory_equal(d.w, q.codes, 32 * 32);
  assert_memory_equal(d.zeros, q.zeros, 64);
  assert_memory_equal(d.scales, q.scales, 64 * sizeof(float));
  assert_non_null(d.g_idx);
  assert_memory_equal(d.g_idx, q.g_idx, 32 * sizeof(int32_t));
  qq_qformat_free_owned(owned);
  qq_qweight_free(&q);
}

/* GPTQModel's "checkpoint_format": "gptq_v2" (what GPTQModel 1.7.4 writes with format=FORMAT.GPTQ_V2):
 * the same qweight / scales / g_idx as v1, but qzeros hold the zero points as they are, so 0 and 15 are
 * both storable. n = 8, k = 8, 4 bits, one group, asymmetric: zero of column r is 15 − 2r (15, 13, ..., 1),
 * then column 3 set to 0; qzeros is one word, column r at bits 4r. The loader reads checkpoint_format
 * from the raw quantization_config that config.c keeps. */
static void test_gptq_v2_zeros(void **state) {
  (void)state;
  int32_t qweight[8]; /* [k·4/32, n] = [1, 8]: word r is column r, input c at bits 4c; code (r + c) mod 16 */
  for (int r = 0; r < 8; r++) {
    uint32_t w = 0;
    for (int c = 0; c < 8; c++) w |= (uint32_t)((r + c) % 16) << (4 * c);
    qweight[r] = (int32_t)w;
  }
  uint8_t zeros[8];
  uint32_t zw = 0;
  for (int r = 0; r < 8; r++) {
    zeros[r] = (uint8_t)((15 - 2 * r) & 15);
    if (r == 3) zeros[r] = 0;
    zw |= (uint32_t)zeros[r] << (4 * r);
  }
  int32_t qzeros[1] = {(int32_t)zw};
  uint16_t scales[8];
  for (int r = 0; r < 8; r++) scales[r] = 0x3C00; /* 1.0 */
  int32_t g_idx[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  table tb = {.n = 0};
  table_add(&tb, "v.qweight", QQ_DTYPE_I32, 2, 1, 8, qweight);
  table_add(&tb, "v.qzeros", QQ_DTYPE_I32, 2, 1, 1, qzeros);
  table_add(&tb, "v.scales", QQ_DTYPE_F16, 2, 1, 8, scales);
  table_add(&tb, "v.g_idx", QQ_DTYPE_I32, 1, 8, 0, g_idx);
  char raw[] = "{\"bits\":4,\"checkpoint_format\":\"gptq_v2\",\"desc_act\":false,\"dynamic\":null,"
               "\"group_size\":128,\"lm_head\":false,\"quant_method\":\"gptq\",\"sym\":false}";
  qq_quant_config qc = {.method = QQ_QUANT_GPTQ, .bits = 4, .group_size = -1, .raw_json = raw};
  qq_linear_desc d;
  void *owned = NULL;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_qformat_unpack_linear(&qc, "v", table_find, &tb, 8, 8, &d, &owned, &err), &err);
  assert_memory_equal(d.zeros, zeros, 8); /* as stored: no +1 */
  for (int r = 0; r < 8; r++)
    for (int c = 0; c < 8; c++) assert_int_equal(((const uint8_t *)d.w)[r * 8 + c], (r + c) % 16);
  qq_qformat_free_owned(owned);
  /* The same words read as v1 mean zero + 1: 15 + 1 does not fit 4 bits and is refused, naming the tensor. */
  qc.raw_json = NULL;
  assert_int_equal(qq_qformat_unpack_linear(&qc, "v", table_find, &tb, 8, 8, &d, &owned, &err), QQ_ERR_UNSUPPORTED);
  assert_non_null(strstr(err.msg, "v.qzeros"));
  assert_non_null(strstr(err.msg, "gptq_v2"));
  /* Without column 0's 15, v1 reads every zero one higher than v2. */
  qzeros[0] = (int32_t)(zw & ~15u);
  QQ_ASSERT_OK(qq_qformat_unpack_linear(&qc, "v", table_find, &tb, 8, 8, &d, &owned, &err), &err);
  assert_int_equal(d.zeros[0], 1);
  assert_int_equal(d.zeros[1], 14);
  assert_int_equal(d.zeros[3], 1);
  qq_qformat_free_owned(owned);
}

static void test_bits_stream(void **state) {
  (void)state;
  uint32_t words[6] = {0};
  for (int b = 2; b <= 8; b++) {
    memset(words, 0, sizeof words);
    int count = 6 * 32 / b;
    for (int i = 0; i < count; i++) qq_bits_put(words, i, b, (uint32_t)(i * 2654435761u >> 7));
    for (int i = 0; i < count; i++) assert_int_equal(qq_bits_get(words, i, b), (i * 2654435761u >> 7) & ((1u << b) - 1));
  }
}

static void test_compressed_tensors(void **state) {
  (void)state;
  /* W8A8: weight I8 [2][4], weight_scale BF16 [2][1], from the document's bytes. */
  const int8_t expect_w[8] = {-127, 0, 5, 127, 1, -2, 3, -4};
  uint32_t dw[8], ds[2];
  doc_vector("ct-int8", "weight", dw, 8);
  doc_vector("ct-int8", "weight_scale", ds, 2);
  int8_t w[8];
  for (int i = 0; i < 8; i++) {
    w[i] = (int8_t)(uint8_t)dw[i];
    assert_int_equal(w[i], expect_w[i]);
  }
  const uint16_t ws[2] = {(uint16_t)ds[0], (uint16_t)ds[1]};
  assert_true(qq_bf16_to_f32(ws[0]) == 1.0f && qq_bf16_to_f32(ws[1]) == 0.5f);
  table tb = {.n = 0};
  table_add(&tb, "c.weight", QQ_DTYPE_I8, 2, 2, 4, w);
  table_add(&tb, "c.weight_scale", QQ_DTYPE_BF16, 2, 2, 1, ws);
  qq_quant_config qc = {.method = QQ_QUANT_W8A8, .bits = 8, .group_size = -1, .sym = true, .act_dynamic = true};
  qq_linear_desc d;
  void *owned = NULL;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_qformat_unpack_linear(&qc, "c", table_find, &tb, 2, 4, &d, &owned, &err), &err);
  assert_int_equal(d.format, QQ_WFMT_W8A8);
  assert_memory_equal(d.w, w, 8);
  assert_true(d.scales[0] == 1.0f && d.scales[1] == 0.5f);
  assert_true(d.act_scale == 0.0f);
  qq_qformat_free_owned(owned);
  /* Static activations need input_scale. */
  qc.act_dynamic = false;
  assert_int_equal(qq_qformat_unpack_linear(&qc, "c", table_find, &tb, 2, 4, &d, &owned, &err), QQ_ERR_NOT_FOUND);
  assert_non_null(strstr(err.msg, "c.input_scale"));
  const float is = 0.02f;
  table_add(&tb, "c.input_scale", QQ_DTYPE_F32, 1, 1, 0, &is);
  QQ_ASSERT_OK(qq_qformat_unpack_linear(&qc, "c", table_find, &tb, 2, 4, &d, &owned, &err), &err);
  assert_true(d.act_scale == 0.02f);
  qq_qformat_free_owned(owned);
  /* W8A16: codes + 128, zero 128. */
  qc.method = QQ_QUANT_W8A16;
  QQ_ASSERT_OK(qq_qformat_unpack_linear(&qc, "c", table_find, &tb, 2, 4, &d, &owned, &err), &err);
  assert_int_equal(d.format, QQ_WFMT_QINT);
  const uint8_t *codes = d.w;
  assert_int_equal(codes[0], 1);
  assert_int_equal(codes[3], 255);
  assert_int_equal(d.zeros[1], 128);
  assert_int_equal(d.n_groups, 1);
  qq_qformat_free_owned(owned);
  /* Asymmetric zero points are refused, naming the tensor. */
  const int8_t zp[2] = {0, 3};
  table_add(&tb, "c.weight_zero_point", QQ_DTYPE_I8, 2, 2, 1, zp);
  assert_int_equal(qq_qformat_unpack_linear(&qc, "c", table_find, &tb, 2, 4, &d, &owned, &err), QQ_ERR_UNSUPPORTED);
  assert_non_null(strstr(err.msg, "c.weight_zero_point"));
  /* Wrong weight shape. */
  assert_int_equal(qq_qformat_unpack_linear(&qc, "c", table_find, &tb, 4, 2, &d, &owned, &err), QQ_ERR_FORMAT);
  assert_non_null(strstr(err.msg, "c.weight"));
}

static void test_roundtrip_random(void **state) {
  (void)state;
  /* Quantize a random matrix, pack to both layouts, unpack, compare with the canonical form. */
  enum { NN = 64, KK = 256 };
  float *w = malloc(sizeof(float) * NN * KK);
  uint64_t s = 99;
  for (int i = 0; i < NN * KK; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    w[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5);
  }
  qq_qparams p = qq_qparams_default();
  p.scale_dtype = QQ_SCALE_F16;
  p.zero_min = 1;
  qq_qweight q;
  qq_error err = {0};
  QQ_ASSERT_OK(qq_rtn_quantize(w, NN, KK, &p, &q, &err), &err);
  int32_t *qw = malloc(sizeof(int32_t) * KK * NN / 8), *qz = malloc(sizeof(int32_t) * 2 * NN / 8), gi[KK];
  uint16_t *sc = malloc(sizeof(uint16_t) * 2 * NN);
  const qq_quant_method methods[2] = {QQ_QUANT_AWQ, QQ_QUANT_GPTQ};
  for (int m = 0; m < 2; m++) {
    table tb = {.n = 0};
    if (m == 0) {
      QQ_ASSERT_OK(qq_awq_pack(&q, qw, qz, sc, &err), &err);
      table_add(&tb, "r.qweight", QQ_DTYPE_I32, 2, KK, NN / 8, qw);
    } else {
      QQ_ASSERT_OK(qq_gptq_pack(&q, qw, qz, sc, gi, &err), &err);
      table_add(&tb, "r.qweight", QQ_DTYPE_I32, 2, KK / 8, NN, qw);
      table_add(&tb, "r.g_idx", QQ_DTYPE_I32, 1, KK, 0, gi);
    }
    table_add(&tb, "r.qzeros", QQ_DTYPE_I32, 2, 2, NN / 8, qz);
    table_add(&tb, "r.scales", QQ_DTYPE_F16, 2, 2, NN, sc);
    qq_quant_config qc = {.method = methods[m], .bits = 4, .group_size = 128};
    qq_linear_desc d;
    void *owned = NULL;
    QQ_ASSERT_OK(qq_qformat_unpack_linear(&qc, "r", table_find, &tb, NN, KK, &d, &owned, &err), &err);
    assert_memory_equal(d.w, q.codes, NN * KK);
    assert_memory_equal(d.zeros, q.zeros, NN * 2);
    /* scales were rounded to fp16 at quantization time: exact round trip */
    assert_memory_equal(d.scales, q.scales, NN * 2 * sizeof(float));
    assert_int_equal(d.group_size, 128);
    qq_qformat_free_owned(owned);
  }
  qq_qweight_free(&q);
  free(w);
  free(qw);
  free(qz);
  free(sc);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_awq_vector),         cmocka_unit_test(test_gptq_vector_4bit),
      cmocka_unit_test(test_gptq_vector_3bit),   cmocka_unit_test(test_bits_stream),
      cmocka_unit_test(test_compressed_tensors), cmocka_unit_test(test_roundtrip_random),
      cmocka_unit_test(test_gptq_v2_zeros),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
