/* synth.c — `qquant synth --format awq|gptq|w8a8`: synthetic checkpoints whose decoder linears hold
 * RANDOM codes in exactly the on-disk layouts qquant's quantizer writes.
 *
 * Each linear's codes, scales and zero points are pure functions of (seed, layer, linear, element)
 * (SplitMix64 hashes), packed by the quantizer's own qq_awq_pack / qq_gptq_pack (compressed-tensors
 * int8 needs no packing: writer.c stores the codes as they are) and handed to model/'s synth writer
 * through qq_synth_options.linears, one linear at a time, so memory holds one linear and never the
 * model. config.json gets writer.c's quantization_config for the same options.
 *
 * Why here: the code needs the packers and quantization_config of quantize/ and the shapes, tokenizer
 * and sharded writer of model/synth.c; model/ must not depend on quantize/, and tools stay thin.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quantize_internal.h"

/* ---- element functions ---- */

#define GOLDEN 0x9e3779b97f4a7c15ull

static uint64_t mix64(uint64_t x) {
  x += GOLDEN;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

enum { KEY_CODES = 1, KEY_SCALES = 2, KEY_ZEROS = 3 };

static uint64_t lin_key(uint64_t seed, int32_t layer, int32_t lin, int what) {
  return mix64(seed ^ mix64(((uint64_t)0x5157u << 48) ^ ((uint64_t)(uint32_t)layer << 16) ^ ((uint64_t)lin << 4) ^
                            (uint64_t)what));
}

/* Random bits of a linear: block b of a stream is mix64(key + b·GOLDEN). */
static uint64_t stream_block(uint64_t key, uint64_t b) { return mix64(key + b * GOLDEN); }
/* Element e of a stream as a uniform in [0, 1) (24 bits). */
static double stream_uniform(uint64_t key, uint64_t e) {
  return (double)(stream_block(key, e) >> 40) * (1.0 / 16777216.0);
}

/* Codes of a linear's row-major [n][k] codes, by flat index e. bits ≤ 4: one block gives 16 codes,
 * code e % 16 = j being nibble 2j (j < 8) or 2(j − 8) + 1 of the block, so that the two halves come
 * from two masks; 8 bits: one block gives 8 codes, byte e % 8. A code is the low `bits` bits. */
static uint32_t code_at(uint64_t key, int32_t bits, uint64_t e) {
  if (bits > 4) return (uint32_t)(stream_block(key, e >> 3) >> (8 * (e & 7))) & ((1u << bits) - 1u);
  const uint32_t j = (uint32_t)(e & 15), nib = j < 8 ? 2 * j : 2 * (j - 8) + 1;
  return (uint32_t)(stream_block(key, e >> 4) >> (4 * nib)) & ((1u << bits) - 1u);
}

/* Codes [e0, e0 + n) into out, whole blocks at a time where aligned. */
static void gen_codes(uint64_t key, int32_t bits, uint64_t e0, size_t n, uint8_t *out) {
  const uint32_t per = bits > 4 ? 8 : 16;
  const uint64_t m = 0x0101010101010101ull * ((1u << bits) - 1u);
  size_t i = 0;
  for (; i < n && (e0 + i) % per; i++) out[i] = (uint8_t)code_at(key, bits, e0 + i);
  /* Byte b of a word stored with memcpy is bits 8b.. on a little-endian host, which qquant assumes
   * throughout (safetensors data is read in place). Whole-word stores: GCC turned the byte-by-byte
   * version into stack stores and a 16-byte reload that stalled on store forwarding (a third of the
   * generator's time on the 2-core VM). */
  if (per == 16) {
    for (; i + 16 <= n; i += 16) {
      const uint64_t h = stream_block(key, (e0 + i) >> 4), lo = h & m, hi = (h >> 4) & m;
      memcpy(out + i, &lo, 8);
      memcpy(out + i + 8, &hi, 8);
    }
  } else {
    for (; i + 8 <= n; i += 8) {
      const uint64_t h = stream_block(key, (e0 + i) >> 3) & m;
      memcpy(out + i, &h, 8);
    }
  }
  for (; i < n; i++) out[i] = (uint8_t)code_at(key, bits, e0 + i);
}

/* W8A8 codes: the 8-bit stream's byte mod 255, minus 127: uniform in [−127, 127] (−128 never
 * occurs, as in qq_w8a8_quantize; 0 is twice as likely as the others, which does not matter here). */
static void gen_codes_i8(uint64_t key, uint64_t e0, size_t n, int8_t *out) {
  uint8_t *u = (uint8_t *)out;
  gen_codes(key, 8, e0, n, u);
  for (size_t i = 0; i < n; i++) out[i] = (int8_t)((int32_t)(u[i] % 255u) - 127);
}

/* Target standard deviation of the dequantized weights (transformers' initializer_range, as the
 * dense synth). Each group's scale is a base times a factor f uniform in [0.75, 1.25), so that scales
 * differ (a mix-up of groups in a layout shows); the base makes E[((code − zero) · scale)^2] = 0.02^2:
 * base = 0.02 / sqrt(E[(code − zero)^2] · E[f^2]), E[f^2] = 0.75^2 + 0.75 · 0.5 + 0.5^2 / 3. */
#define SYNTH_STD 0.02
static double base_scale(double code_sq) { return SYNTH_STD / sqrt(code_sq * (0.5625 + 0.375 + 0.25 / 3.0)); }
/* E[(code − zero)^2] for codes uniform over 2^b values (variance (4^b − 1) / 12, mean 2^(b−1) − 1/2)
 * and the zero points below: 2^(b−1), or uniform over 2^(b−1) − 2 .. 2^(b−1) + 1. */
static double qint_code_sq(int32_t bits, bool sym) { return (ldexp(1.0, 2 * bits) - 1.0) / 12.0 + (sym ? 0.25 : 1.25); }
static float group_scale(uint64_t key, uint64_t idx, double base, qq_scale_dtype dt) {
  return qq_scale_round((float)(base * (0.75 + 0.5 * stream_uniform(key, idx))), dt);
}

/* Columns [c0, c0 + q->k) of linear (layer, lin) with k inputs and G groups in total, into q (its n,
 * k, group_size, n_groups and arrays set by the caller; q->n_groups groups start at group c0 /
 * group_size). Zero points: 2^(b−1) when symmetric, else uniform in [2^(b−1) − 2, 2^(b−1) + 1]. */
static void gen_slice(uint64_t seed, int32_t layer, int32_t lin, int32_t k, int32_t G, int32_t c0, qq_qweight *q) {
  const uint64_t kc = lin_key(seed, layer, lin, KEY_CODES), ks = lin_key(seed, layer, lin, KEY_SCALES),
                 kz = lin_key(seed, layer, lin, KEY_ZEROS);
  const int32_t g0 = c0 / q->group_size, mid = 1 << (q->bits - 1);
  const double base = base_scale(qint_code_sq(q->bits, q->sym));
  for (int32_t r = 0; r < q->n; r++) {
    gen_codes(kc, q->bits, (uint64_t)r * (uint64_t)k + (uint64_t)c0, (size_t)q->k, q->codes + (size_t)r * q->k);
    for (int32_t g = 0; g < q->n_groups; g++) {
      const uint64_t idx = (uint64_t)r * (uint64_t)G + (uint64_t)(g0 + g);
      q->scales[(size_t)r * q->n_groups + g] = group_scale(ks, idx, base, QQ_SCALE_F16);
      q->zeros[(size_t)r * q->n_groups + g] = (uint8_t)(q->sym ? mid : mid - 2 + (int32_t)(stream_block(kz, idx) & 3u));
    }
  }
}

static int32_t groups_of(const qq_qparams *p, int32_t k) { return p->group_size == -1 ? 1 : k / p->group_size; }

qq_status qq_synth_qweight(uint64_t seed, int32_t layer, qq_linear_id id, int32_t n, int32_t k, const qq_qparams *p,
                           qq_qweight *q, qq_error *err) {
  qq_status st = qq_qweight_alloc(q, n, k, p, false, err);
  if (st) return st;
  gen_slice(seed, layer, (int32_t)id, k, q->n_groups, 0, q);
  return QQ_OK;
}

static void w8a8_scales(uint64_t seed, int32_t layer, int32_t lin, int32_t r0, int32_t nr, qq_scale_dtype dt,
                        float *scales) {
  const uint64_t ks = lin_key(seed, layer, lin, KEY_SCALES);
  const double base = base_scale((255.0 * 255.0 - 1.0) / 12.0); /* codes uniform over [−127, 127] */
  for (int32_t r = 0; r < nr; r++) scales[r] = group_scale(ks, (uint64_t)(r0 + r), base, dt);
}

void qq_synth_w8a8(uint64_t seed, int32_t layer, qq_linear_id id, int32_t n, int32_t k, qq_scale_dtype scale_dtype,
                   int8_t *codes, float *scales) {
  gen_codes_i8(lin_key(seed, layer, (int32_t)id, KEY_CODES), 0, (size_t)n * (size_t)k, codes);
  w8a8_scales(seed, layer, (int32_t)id, 0, n, scale_dtype, scales);
}

/* ---- threads ---- */

#define SQ_MAX_THREADS 64

/* Runs fn over jobs[0..n) (job_size bytes each), job 0 on the calling thread. A thread that cannot be
 * started runs inline: the output does not depend on the split. */
static void run_jobs(void *(*fn)(void *), void *jobs, size_t job_size, int n) {
  pthread_t th[SQ_MAX_THREADS];
  bool started[SQ_MAX_THREADS] = {false};
  for (int i = 1; i < n; i++) started[i] = pthread_create(&th[i], NULL, fn, (char *)jobs + (size_t)i * job_size) == 0;
  fn(jobs);
  for (int i = 1; i < n; i++) {
    if (started[i])
      pthread_join(th[i], NULL);
    else
      fn((char *)jobs + (size_t)i * job_size);
  }
}

/* ---- the writer's callbacks ---- */

/* One thread's slice of a linear in canonical form (reused from linear to linear). */
typedef struct scratch {
  uint8_t *codes, *zeros;
  float *scales;
  size_t cap_codes, cap_scales, cap_zeros;
} scratch;

typedef struct synth_q {
  qq_synth_quant q;   /* resolved */
  qq_qparams qp;      /* AWQ / GPTQ */
  qq_dtype dense_dt;  /* compressed-tensors weight_scale: the model dtype, as writer.c */
  uint64_t seed;
  int n_threads;
  /* The AWQ / GPTQ linear whose packed tensors are in part[]: tensors are written one after the
   * other, so each linear is generated and packed once, when its first tensor is asked for. */
  int32_t cur_layer, cur_lin;
  void *part[QQ_SYNTH_MAX_LIN_TENSORS];
  size_t cap[QQ_SYNTH_MAX_LIN_TENSORS];
  scratch sc[SQ_MAX_THREADS];
} synth_q;

static qq_status describe(void *user, int32_t n, int32_t k, qq_synth_lin_tensor *t, int32_t *count, qq_error *err) {
  const synth_q *s = user;
  if (s->q.format == QQ_OUT_CT) {
    t[0] = (qq_synth_lin_tensor){"weight", QQ_DTYPE_I8, 2, {n, k}};
    t[1] = (qq_synth_lin_tensor){"weight_scale", s->dense_dt, 2, {n, 1}};
    *count = 2;
    return QQ_OK;
  }
  qq_status st = qq_qparams_check(&s->qp, k, err);
  if (st) return st;
  const int32_t G = groups_of(&s->qp, k), b = s->qp.bits;
  if (s->q.format == QQ_OUT_AWQ) {
    if (n % 8) return qq_error_set(err, QQ_ERR_INVALID_ARG, "AutoAWQ gemm layout: %d outputs, not a multiple of 8", n);
    t[0] = (qq_synth_lin_tensor){"qweight", QQ_DTYPE_I32, 2, {k, n / 8}};
    t[1] = (qq_synth_lin_tensor){"qzeros", QQ_DTYPE_I32, 2, {G, n / 8}};
    t[2] = (qq_synth_lin_tensor){"scales", QQ_DTYPE_F16, 2, {G, n}};
    *count = 3;
    return QQ_OK;
  }
  if (((int64_t)k * b) % 32 || ((int64_t)n * b) % 32)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "GPTQ layout: %d bits over [%d, %d] do not fill 32-bit words", b,
                        n, k);
  t[0] = (qq_synth_lin_tensor){"qweight", QQ_DTYPE_I32, 2, {(int64_t)k * b / 32, n}};
  t[1] = (qq_synth_lin_tensor){"qzeros", QQ_DTYPE_I32, 2, {G, (int64_t)n * b / 32}};
  t[2] = (qq_synth_lin_tensor){"scales", QQ_DTYPE_F16, 2, {G, n}};
  t[3] = (qq_synth_lin_tensor){"g_idx", QQ_DTYPE_I32, 1, {k, 0}};
  *count = 4;
  return QQ_OK;
}

static qq_status grow(void **p, size_t *cap, size_t need) {
  if (need <= *cap) return QQ_OK;
  free(*p);
  *cap = 0;
  if (!(*p = malloc(need))) return QQ_ERR_NOMEM;
  *cap = need;
  return QQ_OK;
}

/* Columns per slice: whole groups, about SLICE_BYTES of codes, so that a slice's codes are still in
 * cache when the packer reads them back column by column (measured on the 2-core VM, 0.5b awq: with
 * whole-linear slices the code stores and the packer's strided reads missed to memory). */
#define SLICE_BYTES ((size_t)1 << 20)

/* One thread's share of packing a linear: groups [g0, g0 + ng), a slice of whole groups at a time. */
typedef struct pack_job {
  synth_q *s;
  int32_t layer, lin, n, k, G, g0, ng, slice_groups;
  scratch *sc;
  qq_status st;
  qq_error err;
} pack_job;

static void *pack_run(void *arg) {
  pack_job *j = arg;
  synth_q *s = j->s;
  const int32_t gs = s->qp.group_size == -1 ? j->k : s->qp.group_size, b = s->qp.bits;
  int32_t *qweight = s->part[0], *qzeros = s->part[1];
  uint16_t *scales = s->part[2];
  for (int32_t g0 = j->g0; g0 < j->g0 + j->ng && !j->st; g0 += j->slice_groups) {
    const int32_t ng = QQ_MIN(j->slice_groups, j->g0 + j->ng - g0), c0 = g0 * gs, kb = ng * gs;
    qq_qweight q = {.n = j->n, .k = kb, .bits = b, .group_size = gs, .n_groups = ng, .sym = s->qp.sym,
                    .codes = j->sc->codes, .scales = j->sc->scales, .zeros = j->sc->zeros};
    gen_slice(s->seed, j->layer, j->lin, j->k, j->G, c0, &q);
    /* The slice's tensors are contiguous row ranges of the whole linear's: AWQ qweight rows c0..,
     * GPTQ qweight rows c0·b/32.. (c0·b is a multiple of 32 since gs is); qzeros and scales rows g0... */
    if (s->q.format == QQ_OUT_AWQ) {
      const size_t nw = (size_t)j->n / 8;
      j->st = qq_awq_pack(&q, qweight + (size_t)c0 * nw, qzeros + (size_t)g0 * nw, scales + (size_t)g0 * j->n, &j->err);
    } else {
      const size_t nw = (size_t)j->n * b / 32;
      int32_t *g_idx = (int32_t *)s->part[3] + c0;
      j->st = qq_gptq_pack(&q, qweight + (size_t)c0 * b / 32 * j->n, qzeros + (size_t)g0 * nw,
                           scales + (size_t)g0 * j->n, g_idx, &j->err);
      for (int32_t c = 0; c < kb; c++) g_idx[c] += g0; /* the packer numbers the slice's groups from 0 */
    }
  }
  return NULL;
}

static qq_status pack_linear(synth_q *s, int32_t layer, int32_t lin, int32_t n, int32_t k, qq_error *err) {
  qq_synth_lin_tensor t[QQ_SYNTH_MAX_LIN_TENSORS];
  int32_t count = 0;
  qq_status st = describe(s, n, k, t, &count, err);
  if (st) return st;
  for (int32_t i = 0; i < count; i++) {
    size_t bytes = (size_t)t[i].shape[0] * (size_t)(t[i].ndim > 1 ? t[i].shape[1] : 1) * qq_dtype_size(t[i].dtype);
    if (grow(&s->part[i], &s->cap[i], bytes))
      return qq_error_set(err, QQ_ERR_NOMEM, "out of memory (%zu bytes)", bytes);
  }
  const int32_t G = groups_of(&s->qp, k), gs = s->qp.group_size == -1 ? k : s->qp.group_size;
  const int32_t slice_groups = (int32_t)QQ_MAX((size_t)1, SLICE_BYTES / ((size_t)n * (size_t)gs));
  const int nt = (int)QQ_MIN(s->n_threads, G);
  pack_job jobs[SQ_MAX_THREADS];
  for (int i = 0, g = 0; i < nt; i++) {
    const int32_t ng = G / nt + (i < G % nt), sg = QQ_MIN(slice_groups, ng);
    scratch *sc = &s->sc[i];
    if (grow((void **)&sc->codes, &sc->cap_codes, (size_t)n * (size_t)sg * (size_t)gs) ||
        grow((void **)&sc->scales, &sc->cap_scales, (size_t)n * (size_t)sg * sizeof(float)) ||
        grow((void **)&sc->zeros, &sc->cap_zeros, (size_t)n * (size_t)sg))
      return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    jobs[i] = (pack_job){.s = s, .layer = layer, .lin = lin, .n = n, .k = k, .G = G, .g0 = g, .ng = ng,
                         .slice_groups = sg, .sc = sc};
    g += ng;
  }
  run_jobs(pack_run, jobs, sizeof jobs[0], nt);
  for (int i = 0; i < nt; i++)
    if (jobs[i].st) return qq_error_set(err, jobs[i].st, "%s", jobs[i].err.msg);
  s->cur_layer = layer;
  s->cur_lin = lin;
  return QQ_OK;
}

typedef struct i8_job {
  uint64_t key, e0;
  size_t n;
  int8_t *out;
} i8_job;
static void *i8_run(void *arg) {
  i8_job *j = arg;
  gen_codes_i8(j->key, j->e0, j->n, j->out);
  return NULL;
}

static qq_status fill(void *user, int32_t layer, int32_t lin, int32_t n, int32_t k, int32_t part, size_t offset,
                      void *buf, size_t nbytes, qq_error *err) {
  synth_q *s = user;
  if (s->q.format == QQ_OUT_CT) {
    if (part == 0) { /* weight I8 [n, k]: element offset + i */
      const int nt = (int)QQ_MIN((size_t)s->n_threads, nbytes / 65536 + 1);
      i8_job jobs[SQ_MAX_THREADS];
      const uint64_t key = lin_key(s->seed, layer, lin, KEY_CODES);
      for (int i = 0; i < nt; i++) {
        size_t b = nbytes / (size_t)nt * (size_t)i, e = i == nt - 1 ? nbytes : nbytes / (size_t)nt * (size_t)(i + 1);
        jobs[i] = (i8_job){.key = key, .e0 = offset + b, .n = e - b, .out = (int8_t *)buf + b};
      }
      run_jobs(i8_run, jobs, sizeof jobs[0], nt);
      return QQ_OK;
    }
    /* weight_scale [n, 1] in the model dtype */
    const size_t esz = qq_dtype_size(s->dense_dt);
    const int32_t r0 = (int32_t)(offset / esz), nr = (int32_t)(nbytes / esz);
    const qq_scale_dtype sd = s->dense_dt == QQ_DTYPE_F32 ? QQ_SCALE_F32 : QQ_SCALE_BF16;
    float *f = malloc(sizeof(float) * (size_t)(nr ? nr : 1));
    if (!f) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    w8a8_scales(s->seed, layer, lin, r0, nr, sd, f);
    for (int32_t i = 0; i < nr; i++) {
      if (s->dense_dt == QQ_DTYPE_F32)
        memcpy((uint8_t *)buf + (size_t)i * 4, &f[i], 4);
      else
        ((uint16_t *)buf)[i] = qq_f32_to_bf16(f[i]);
    }
    free(f);
    return QQ_OK;
  }
  if (layer != s->cur_layer || lin != s->cur_lin) {
    qq_status st = pack_linear(s, layer, lin, n, k, err);
    if (st) return st;
  }
  memcpy(buf, (const uint8_t *)s->part[part] + offset, nbytes);
  return QQ_OK;
}

/* ---- options ---- */

qq_synth_quant qq_synth_quant_default(qq_out_format f) {
  return (qq_synth_quant){.format = f, .bits = 0, .group_size = 0, .sym = f != QQ_OUT_AWQ};
}

static const char *fmt_name(qq_out_format f) {
  return f == QQ_OUT_AWQ ? "awq" : f == QQ_OUT_GPTQ ? "gptq" : f == QQ_OUT_CT ? "w8a8" : "?";
}

qq_status qq_synth_quant_resolve(const qq_synth_options *o, const qq_synth_quant *in, qq_synth_quant *out,
                                 qq_error *err) {
  qq_synth_quant q = *in;
  const char *fn = fmt_name(q.format);
  switch (q.format) {
    case QQ_OUT_AWQ:
      if (!q.bits) q.bits = 4;
      if (q.bits != 4)
        return qq_error_set(err, QQ_ERR_INVALID_ARG, "synth: awq: --bits %d (the AutoAWQ gemm layout holds 4-bit "
                            "weights only; use gptq for 3 or 8 bits)", q.bits);
      break;
    case QQ_OUT_GPTQ:
      if (!q.bits) q.bits = 4;
      if (q.bits != 3 && q.bits != 4 && q.bits != 8)
        return qq_error_set(err, QQ_ERR_INVALID_ARG, "synth: gptq: --bits %d (3, 4 or 8)", q.bits);
      break;
    case QQ_OUT_CT:
      if (!q.bits) q.bits = 8;
      if (q.bits != 8)
        return qq_error_set(err, QQ_ERR_INVALID_ARG, "synth: w8a8: --bits %d (W8A8 weights are 8-bit)", q.bits);
      if (!q.sym)
        return qq_error_set(err, QQ_ERR_INVALID_ARG, "synth: w8a8: weights are symmetric int8 (no zero points)");
      if (q.group_size != 0 && q.group_size != -1)
        return qq_error_set(err, QQ_ERR_INVALID_ARG, "synth: w8a8: --group-size %d (W8A8 weights have one scale per "
                            "output channel)", q.group_size);
      q.group_size = -1;
      *out = q;
      return QQ_OK;
    default:
      return qq_error_set(err, QQ_ERR_INVALID_ARG, "synth: output format %d (awq, gptq or w8a8)", (int)q.format);
  }
  if (q.group_size != 0 && q.group_size != -1 && q.group_size != 32 && q.group_size != 64 && q.group_size != 128)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "synth: %s: --group-size %d (128, 64, 32 or -1 for per channel, as "
                        "the quantizer)", fn, q.group_size);
  if (q.group_size == 0) {
    /* 128, or the largest of 64 and 32 that divides every linear's input width */
    qq_config c;
    qq_synth_options d = *o;
    d.linears = NULL;
    qq_status st = qq_synth_config(&d, &c, err);
    if (st) return st;
    const int32_t widths[3] = {c.hidden_size, c.num_heads * c.head_dim, c.intermediate_size};
    qq_config_free(&c);
    for (int32_t g = 128; g >= 32 && !q.group_size; g /= 2) {
      bool ok = true;
      for (int i = 0; i < 3; i++) ok = ok && widths[i] % g == 0;
      if (ok) q.group_size = g;
    }
    if (!q.group_size)
      return qq_error_set(err, QQ_ERR_INVALID_ARG, "synth: %s: no group size of 128, 64 or 32 divides the input widths "
                          "%d, %d and %d of shape %s (use --group-size -1)", fn, widths[0], widths[1], widths[2],
                          o->shape);
  }
  *out = q;
  return QQ_OK;
}

static qq_quantize_options config_options(const qq_synth_quant *q) {
  /* The method whose checkpoints this format imitates: it decides writer.c's quantization_config
   * (GPTQ's desc_act / true_sequential, compressed-tensors' dynamic per-token input_activations). */
  qq_method m = q->format == QQ_OUT_AWQ    ? QQ_METHOD_AWQ
                : q->format == QQ_OUT_GPTQ ? QQ_METHOD_GPTQ
                                           : QQ_METHOD_SMOOTHQUANT;
  qq_quantize_options o = qq_quantize_options_default(m);
  o.format = q->format;
  o.bits = q->bits;
  o.group_size = q->group_size;
  o.sym = q->sym;
  o.gptq.act_order = false; /* random codes in natural column order: no g_idx */
  return o;
}

qq_status qq_synth_quant_write(const char *dir, const qq_synth_options *opt, const qq_synth_quant *quant,
                               qq_error *err) {
  qq_synth_options o = opt ? *opt : qq_synth_options_default();
  if (!quant) return qq_error_set(err, QQ_ERR_INVALID_ARG, "synth: no quantized format given");
  synth_q *s = calloc(1, sizeof *s);
  if (!s) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  char *qc_text = NULL;
  qq_status st = qq_synth_quant_resolve(&o, quant, &s->q, err);
  if (st) goto done;
  s->qp = (qq_qparams){.bits = s->q.bits, .group_size = s->q.group_size, .sym = s->q.sym, .scale_dtype = QQ_SCALE_F16,
                       .zero_min = s->q.format == QQ_OUT_GPTQ ? 1 : 0};
  s->dense_dt = o.dtype;
  s->seed = o.seed;
  s->n_threads = (int)QQ_MIN(o.n_threads > 0 ? o.n_threads : qq_cpu_default_threads(), SQ_MAX_THREADS);
  s->cur_layer = s->cur_lin = -1;
  qq_quantize_options qo = config_options(&s->q);
  cJSON *qc = qq_quant_config_json(&qo, s->q.format, QQ_TASK_CAUSAL_LM);
  qc_text = qc ? cJSON_PrintUnformatted(qc) : NULL;
  cJSON_Delete(qc);
  if (!qc_text) {
    st = qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    goto done;
  }
  qq_synth_linears lin = {.describe = describe, .fill = fill, .quantization_config = qc_text, .user = s};
  o.linears = &lin;
  st = qq_synth_write(dir, &o, err);
done:
  free(qc_text);
  for (int i = 0; i < QQ_SYNTH_MAX_LIN_TENSORS; i++) free(s->part[i]);
  for (int i = 0; i < SQ_MAX_THREADS; i++) {
    free(s->sc[i].codes);
    free(s->sc[i].scales);
    free(s->sc[i].zeros);
  }
  free(s);
  return st;
}
