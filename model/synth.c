/* synth.c — synthetic Qwen2 checkpoints with real shapes and random weights (qquant synth).
 *
 * Weights: linear and embedding matrices ~ N(0, 0.02^2) (transformers' initializer_range), RMSNorm
 * weights 1, biases 0. Each element is a pure function of (seed, tensor index, element index)
 * (SplitMix64 + ziggurat), so the writer can stream any chunk of any tensor in any order and the
 * output is identical whatever the chunking. The tensor index is the tensor's position in the dense
 * layout, so the dense tensors of a quantized synth (embedding, lm_head) are the bf16 synth's bytes.
 *
 * Quantized linears (qq_synth_options.linears): the decoder-layer linears' ".weight" tensors are
 * replaced by the tensors a module above model/ describes and fills (quantize/synth.c: AutoAWQ,
 * GPTQ, compressed-tensors), and its quantization_config goes into config.json. model/ only
 * plans, shards and writes them, so it does not depend on quantize/.
 *
 * Tokenizer: a byte-level BPE trained at write time on a short built-in English text, pre-tokenized
 * with Qwen2's Split regex: 256 byte tokens, as many merges as fit under vocab_size (at most 2000),
 * then <|endoftext|>, <|im_start|>, <|im_end|> as special added tokens. Its JSON mirrors Qwen2's
 * tokenizer.json (NFC normalizer, Sequence[Split, ByteLevel] pre-tokenizer, ByteLevel decoder).
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "loader_internal.h"
#include "model.h"
#include "name_index.h"

typedef struct synth_shape {
  const char *name;
  int32_t hidden, layers, heads, kv_heads, inter, vocab, max_pos;
  bool tied;
  double rope_theta;
} synth_shape;

/* Qwen2.5 sizes from the published config.json files; "tiny" is small enough for unit tests. */
static const synth_shape shapes[] = {
    {"tiny", 128, 2, 4, 2, 352, 512, 2048, true, 10000.0},
    {"qwen2.5-0.5b", 896, 24, 14, 2, 4864, 151936, 32768, true, 1000000.0},
    {"qwen2.5-1.5b", 1536, 28, 12, 2, 8960, 151936, 32768, true, 1000000.0},
    {"qwen2.5-7b", 3584, 28, 28, 4, 18944, 152064, 32768, false, 1000000.0},
};
static const char *const shape_names[] = {"tiny", "qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-7b", NULL};

const char *const *qq_synth_shapes(void) { return shape_names; }

qq_synth_options qq_synth_options_default(void) {
  return (qq_synth_options){.shape = "tiny", .seed = 0, .dtype = QQ_DTYPE_BF16, .max_shard_bytes = (size_t)2 << 30};
}

static const synth_shape *find_shape(const char *name) {
  for (size_t i = 0; name && i < QQ_ARRAY_LEN(shapes); i++)
    if (!strcmp(shapes[i].name, name)) return &shapes[i];
  return NULL;
}

/* ---- tensor list ---- */

typedef enum tkind { T_NORMAL, T_ONES, T_ZEROS, T_LINEAR } tkind;

/* Where a planned tensor's bytes come from. */
typedef struct tensor_src {
  tkind kind;
  uint32_t rng_index;       /* T_NORMAL: the tensor's index in the dense layout (the random stream) */
  int32_t layer, lin, part; /* T_LINEAR: linear `lin` (qq_linear_id) of `layer`, its tensor `part` */
  int32_t n, k;             /* T_LINEAR: the linear's outputs and inputs */
} tensor_src;

typedef struct tensor_plan {
  qq_tensor_write *t;
  tensor_src *src;
  char (*names)[80];
  size_t n;
  uint32_t n_dense; /* tensors of the dense layout so far (a replaced linear counts once) */
  uint64_t bytes;
} tensor_plan;

static void plan_free(tensor_plan *p) {
  free(p->t);
  free(p->src);
  free(p->names);
  memset(p, 0, sizeof *p);
}

static void plan_add_nd(tensor_plan *p, qq_dtype dt, tensor_src src, int32_t ndim, int64_t d0, int64_t d1,
                        const char *name) {
  size_t i = p->n++;
  snprintf(p->names[i], sizeof p->names[i], "%s", name);
  p->t[i] = (qq_tensor_write){.name = p->names[i], .dtype = dt, .ndim = ndim, .shape = {d0, ndim > 1 ? d1 : 0}};
  p->src[i] = src;
  p->bytes += (uint64_t)d0 * (uint64_t)(ndim > 1 ? d1 : 1) * qq_dtype_size(dt);
}

static void plan_add(tensor_plan *p, qq_dtype dt, tkind k, int64_t d0, int64_t d1, const char *name) {
  plan_add_nd(p, dt, (tensor_src){.kind = k, .rng_index = p->n_dense++}, d1 ? 2 : 1, d0, d1, name);
}

static const char *const lin_module[QQ_LIN_COUNT] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                     "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                                     "mlp.down_proj"};

/* A linear's weight [n, k]: dense T_NORMAL, or the tensors lin describes. */
static qq_status plan_linear(tensor_plan *p, qq_dtype dt, const qq_synth_linears *lin, int32_t layer,
                             qq_linear_id id, int64_t n, int64_t k, qq_error *err) {
  char nm[80];
  if (!lin) {
    snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", layer, lin_module[id]);
    plan_add(p, dt, T_NORMAL, n, k, nm);
    return QQ_OK;
  }
  qq_synth_lin_tensor t[QQ_SYNTH_MAX_LIN_TENSORS];
  memset(t, 0, sizeof t);
  int32_t count = 0;
  qq_status s = lin->describe(lin->user, (int32_t)n, (int32_t)k, t, &count, err);
  if (s != QQ_OK) {
    qq_error_prefix(err, "synth: model.layers.%d.%s [%lld, %lld]", layer, lin_module[id], (long long)n, (long long)k);
    return s;
  }
  if (count < 1 || count > QQ_SYNTH_MAX_LIN_TENSORS)
    return qq_error_set(err, QQ_ERR_INTERNAL, "synth: a linear described as %d tensors", (int)count);
  for (int32_t j = 0; j < count; j++) {
    snprintf(nm, sizeof nm, "model.layers.%d.%s.%s", layer, lin_module[id], t[j].suffix);
    tensor_src src = {.kind = T_LINEAR, .layer = layer, .lin = id, .part = j, .n = (int32_t)n, .k = (int32_t)k};
    plan_add_nd(p, t[j].dtype, src, t[j].ndim, t[j].shape[0], t[j].shape[1], nm);
  }
  p->n_dense++;
  return QQ_OK;
}

static qq_status plan_build(const synth_shape *s, qq_dtype dt, const qq_synth_linears *lin, tensor_plan *p,
                            qq_error *err) {
  memset(p, 0, sizeof *p);
  size_t cap = 3 + (size_t)s->layers * (5 + QQ_LIN_COUNT * QQ_SYNTH_MAX_LIN_TENSORS);
  p->t = calloc(cap, sizeof *p->t);
  p->src = calloc(cap, sizeof *p->src);
  p->names = calloc(cap, sizeof *p->names);
  if (!p->t || !p->src || !p->names) {
    plan_free(p);
    return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  }
  const int64_t H = s->hidden, I = s->inter, hd = s->hidden / s->heads;
  const int64_t qd = s->heads * hd, kvd = s->kv_heads * hd;
  plan_add(p, dt, T_NORMAL, s->vocab, H, "model.embed_tokens.weight");
  char nm[80];
  qq_status st = QQ_OK;
  for (int l = 0; l < s->layers && st == QQ_OK; l++) {
#define L(leaf) (snprintf(nm, sizeof nm, "model.layers.%d.%s", l, leaf), nm)
    plan_add(p, dt, T_ONES, H, 0, L("input_layernorm.weight"));
    if ((st = plan_linear(p, dt, lin, l, QQ_LIN_Q, qd, H, err))) break;
    plan_add(p, dt, T_ZEROS, qd, 0, L("self_attn.q_proj.bias"));
    if ((st = plan_linear(p, dt, lin, l, QQ_LIN_K, kvd, H, err))) break;
    plan_add(p, dt, T_ZEROS, kvd, 0, L("self_attn.k_proj.bias"));
    if ((st = plan_linear(p, dt, lin, l, QQ_LIN_V, kvd, H, err))) break;
    plan_add(p, dt, T_ZEROS, kvd, 0, L("self_attn.v_proj.bias"));
    if ((st = plan_linear(p, dt, lin, l, QQ_LIN_O, H, qd, err))) break;
    plan_add(p, dt, T_ONES, H, 0, L("post_attention_layernorm.weight"));
    if ((st = plan_linear(p, dt, lin, l, QQ_LIN_GATE, I, H, err))) break;
    if ((st = plan_linear(p, dt, lin, l, QQ_LIN_UP, I, H, err))) break;
    st = plan_linear(p, dt, lin, l, QQ_LIN_DOWN, H, I, err);
#undef L
  }
  if (st != QQ_OK) {
    plan_free(p);
    return st;
  }
  plan_add(p, dt, T_ONES, H, 0, "model.norm.weight");
  if (!s->tied) plan_add(p, dt, T_NORMAL, s->vocab, H, "lm_head.weight");
  return QQ_OK;
}

uint64_t qq_synth_bytes(const char *shape, qq_dtype dtype) {
  const synth_shape *s = find_shape(shape);
  tensor_plan p;
  if (!s || (dtype != QQ_DTYPE_BF16 && dtype != QQ_DTYPE_F32) || plan_build(s, dtype, NULL, &p, NULL) != QQ_OK)
    return 0;
  uint64_t b = p.bytes;
  plan_free(&p);
  return b;
}

/* ---- random numbers ---- */

static uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* Standard normals by Marsaglia & Tsang's ziggurat (J. Stat. Softw. 5(8), 2000), 128 layers, R and V
 * from the paper. It replaced Box-Muller (changed): ~98.8 % of draws cost a compare and a multiply
 * instead of logf + sqrtf + sincosf, which limited the writer to ~95 MB/s of bf16. Each 64-bit hash
 * gives two draws, each from its own 32 bits: 7 bits pick the layer and 25 bits (signed) the value,
 * so unlike the paper's RNOR the layer index and the value do not share bits (a known correlation),
 * and the value's 24-bit resolution matches a float's mantissa. The rare rejections draw from a
 * SplitMix64 stream seeded by the element's hash, so every element stays a pure function of (seed,
 * tensor, element). */
#define ZIG_R 3.442619855899
#define ZIG_V 9.91256303526217e-3
#define ZIG_M 16777216.0 /* 2^24: magnitude of the 25-bit signed value */
/* Standard deviation of the random matrices: transformers' initializer_range for Qwen2. */
#define SYNTH_INIT_STD 0.02

typedef struct zig_tables {
  int32_t k[128];  /* |value| below k[i]: inside layer i's rectangle */
  double w[128];   /* value → x */
  double f[128];   /* exp(-x_i^2 / 2) at the layer edges */
  float ws[128];   /* value → SYNTH_INIT_STD · x (the fast path) */
} zig_tables;

static void zig_init(zig_tables *z) {
  double dn = ZIG_R, tn = dn, q = ZIG_V / exp(-0.5 * dn * dn);
  z->k[0] = (int32_t)((dn / q) * ZIG_M);
  z->k[1] = 0;
  z->w[0] = q / ZIG_M;
  z->w[127] = dn / ZIG_M;
  z->f[0] = 1.0;
  z->f[127] = exp(-0.5 * dn * dn);
  for (int i = 126; i >= 1; i--) {
    dn = sqrt(-2.0 * log(ZIG_V / dn + exp(-0.5 * dn * dn)));
    z->k[i + 1] = (int32_t)((dn / tn) * ZIG_M);
    tn = dn;
    z->f[i] = exp(-0.5 * dn * dn);
    z->w[i] = dn / ZIG_M;
  }
  for (int i = 0; i < 128; i++) z->ws[i] = (float)(SYNTH_INIT_STD * z->w[i]);
}

/* Uniform in (0, 1] from the stream *st. */
static double zig_uni(uint64_t *st) {
  *st += 0x9e3779b97f4a7c15ull;
  return (double)((splitmix64(*st) >> 11) + 1) * (1.0 / 9007199254740992.0);
}

/* The slow path: u (32 bits) fell outside its layer's rectangle; st seeds the retries. */
static double zig_slow(const zig_tables *z, uint32_t u, uint64_t st) {
  for (;;) {
    const int32_t hz = (int32_t)(u << 7) >> 7;
    const int iz = (int)(u >> 25);
    const double x = (double)hz * z->w[iz];
    if ((hz < 0 ? -hz : hz) < z->k[iz]) return x;
    if (iz == 0) { /* the base strip's tail beyond R (Marsaglia 1964) */
      double xt, y;
      do {
        xt = -log(zig_uni(&st)) / ZIG_R;
        y = -log(zig_uni(&st));
      } while (y + y < xt * xt);
      return hz > 0 ? ZIG_R + xt : -ZIG_R - xt;
    }
    if (z->f[iz] + (1.0 - zig_uni(&st)) * (z->f[iz - 1] - z->f[iz]) < exp(-0.5 * x * x)) return x;
    st += 0x9e3779b97f4a7c15ull;
    u = (uint32_t)splitmix64(st);
  }
}

/* One N(0, SYNTH_INIT_STD^2) draw from 32 random bits u (st: the retry stream). */
static inline float zig_normal(const zig_tables *z, uint32_t u, uint64_t st) {
  const int32_t hz = (int32_t)(u << 7) >> 7;
  const int iz = (int)(u >> 25);
  if ((hz < 0 ? -hz : hz) < z->k[iz]) return (float)hz * z->ws[iz];
  return (float)(SYNTH_INIT_STD * zig_slow(z, u, st));
}

typedef struct fill_ctx {
  const tensor_plan *p;
  uint64_t seed;
  uint64_t done;
  const qq_synth_options *opt;
  zig_tables zig;
  int n_threads;
} fill_ctx;

/* Elements [e0, e0 + n) of a N(0, SYNTH_INIT_STD^2) tensor in dt (F32 or BF16). */
typedef struct normal_job {
  const zig_tables *zig;
  uint64_t key, e0;
  size_t n;
  qq_dtype dt;
  void *buf;
} normal_job;

/* Element e is the low (e even) or high (e odd) half of hash(key ^ e / 2). */
static void normal_draws(const zig_tables *z, uint64_t key, uint64_t e0, size_t n, float *v) {
  size_t i = 0;
  if (n && (e0 & 1)) {
    const uint64_t h = splitmix64(key ^ (e0 >> 1));
    v[i++] = zig_normal(z, (uint32_t)(h >> 32), h + 1);
  }
  for (; i + 1 < n; i += 2) {
    const uint64_t h = splitmix64(key ^ ((e0 + i) >> 1));
    v[i] = zig_normal(z, (uint32_t)h, h);
    v[i + 1] = zig_normal(z, (uint32_t)(h >> 32), h + 1);
  }
  if (i < n) {
    const uint64_t h = splitmix64(key ^ ((e0 + i) >> 1));
    v[i] = zig_normal(z, (uint32_t)h, h);
  }
}

/* Draws a block of floats, then stores them in dt: two simple loops instead of one with a dtype
 * branch per element. */
#define NORMAL_BLOCK 4096
static void *normal_run(void *arg) {
  const normal_job *j = arg;
  float v[NORMAL_BLOCK];
  for (size_t b = 0; b < j->n; b += NORMAL_BLOCK) {
    const size_t m = QQ_MIN((size_t)NORMAL_BLOCK, j->n - b);
    normal_draws(j->zig, j->key, j->e0 + b, m, v);
    if (j->dt == QQ_DTYPE_F32) {
      memcpy((float *)j->buf + b, v, m * sizeof(float));
    } else {
      uint16_t *o = (uint16_t *)j->buf + b;
      for (size_t i = 0; i < m; i++) o[i] = qq_f32_to_bf16(v[i]);
    }
  }
  return NULL;
}

/* Splits a chunk over the threads (each writes its own slice of buf). Falls back to fewer threads
 * when one cannot be started: the bytes do not depend on the split. */
#define SYNTH_MAX_THREADS 64
static void fill_normal(const fill_ctx *c, uint64_t t, qq_dtype dt, uint64_t e0, size_t n, void *buf) {
  const uint64_t key = splitmix64(c->seed ^ splitmix64(t << 40));
  size_t esz = qq_dtype_size(dt);
  int nt = (int)QQ_MIN((size_t)c->n_threads, n / 65536 + 1);
  normal_job jobs[SYNTH_MAX_THREADS];
  pthread_t th[SYNTH_MAX_THREADS];
  bool started[SYNTH_MAX_THREADS] = {false};
  size_t per = n / (size_t)nt, b = 0;
  for (int i = 0; i < nt; i++) {
    size_t len = i == nt - 1 ? n - b : per;
    jobs[i] = (normal_job){.zig = &c->zig, .key = key, .e0 = e0 + b, .n = len, .dt = dt,
                           .buf = (uint8_t *)buf + b * esz};
    b += len;
    if (i > 0) started[i] = pthread_create(&th[i], NULL, normal_run, &jobs[i]) == 0;
  }
  normal_run(&jobs[0]);
  for (int i = 1; i < nt; i++) {
    if (started[i])
      pthread_join(th[i], NULL);
    else
      normal_run(&jobs[i]);
  }
}

static qq_status synth_fill(void *user, size_t index, size_t offset, void *buf, size_t nbytes, qq_error *err) {
  fill_ctx *c = user;
  const qq_tensor_write *t = &c->p->t[index];
  const tensor_src *src = &c->p->src[index];
  if (src->kind == T_LINEAR) {
    const qq_synth_linears *lin = c->opt->linears;
    qq_status s = lin->fill(lin->user, src->layer, src->lin, src->n, src->k, src->part, offset, buf, nbytes, err);
    if (s != QQ_OK) {
      qq_error_prefix(err, "synth: %s", t->name);
      return s;
    }
  } else {
    size_t esz = qq_dtype_size(t->dtype), n = nbytes / esz;
    if (src->kind == T_NORMAL) {
      fill_normal(c, src->rng_index, t->dtype, offset / esz, n, buf);
    } else {
      const float v = src->kind == T_ONES ? 1.0f : 0.0f;
      for (size_t i = 0; i < n; i++) {
        if (t->dtype == QQ_DTYPE_F32)
          memcpy((uint8_t *)buf + i * 4, &v, 4);
        else
          ((uint16_t *)buf)[i] = qq_f32_to_bf16(v);
      }
    }
  }
  c->done += nbytes;
  if (c->opt->progress) c->opt->progress(c->opt->user, t->name, c->done, c->p->bytes);
  return QQ_OK;
}

/* ---- small files ---- */

static qq_status write_text(const char *dir, const char *file, const char *text, qq_error *err) {
  size_t n = strlen(dir) + strlen(file) + 2;
  char *path = malloc(n), *tmp = malloc(n + 16);
  qq_status s = QQ_OK;
  if (!path || !tmp) {
    s = qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    goto done;
  }
  snprintf(path, n, "%s/%s", dir, file);
  snprintf(tmp, n + 16, "%s.tmp.XXXXXX", path);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    s = qq_error_set(err, QQ_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    goto done;
  }
  FILE *f = fdopen(fd, "w");
  if (!f) {
    close(fd);
    unlink(tmp);
    s = qq_error_set(err, QQ_ERR_IO, "%s: %s", tmp, strerror(errno));
    goto done;
  }
  size_t len = strlen(text);
  bool ok = fchmod(fd, 0644) == 0 && fwrite(text, 1, len, f) == len && fputc('\n', f) != EOF;
  ok = fclose(f) == 0 && ok;
  if (!ok || rename(tmp, path) != 0) {
    s = qq_error_set(err, QQ_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    unlink(tmp);
  }
done:
  free(path);
  free(tmp);
  return s;
}

static qq_status write_json(const char *dir, const char *file, cJSON *root, qq_error *err) {
  char *txt = root ? cJSON_Print(root) : NULL;
  qq_status s = txt ? write_text(dir, file, txt, err) : qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  free(txt);
  cJSON_Delete(root);
  return s;
}

/* ---- tokenizer ---- */

/* Original text written for this tool: plain English with numbers and punctuation, so that the merges
 * cover common words, spaces and digits. */
static const char synth_corpus[] =
    "The quick brown fox jumps over the lazy dog. A small model can still learn a lot about the world "
    "when the data is clean and the training is long enough. In the morning the town was quiet, and the "
    "river ran slowly under the old stone bridge. People walked to the market, where they bought bread, "
    "apples, cheese and fresh fish. The children played in the park while their parents talked about the "
    "weather, the price of food and the news from the city.\n"
    "Numbers appear in many texts: 1, 2, 3, 10, 42, 100, 2024 and 3.14 are all common. Dates such as "
    "12 March 1998 or 2001-09-11 and times like 10:30 are written in many ways. Prices are often written "
    "as $5, $19.99 or 250 dollars.\n"
    "To quantize a model is to store its weights with fewer bits. The weights of each linear layer are "
    "split into groups, and each group gets a scale and a zero point. The quantized model is smaller and "
    "faster, and if the method is good, its answers are almost the same as those of the original model. "
    "We measure the quality with perplexity on held out text, and we compare the tokens that the two "
    "models generate for the same prompts.\n"
    "She said that she would come back in the evening. He thought about it for a long time and then "
    "answered that he was not sure. They were walking along the road when the rain started. It was the "
    "first time that they had seen the sea, and they stood there for an hour, watching the waves.\n"
    "def main():\n    for i in range(10):\n        print(i, i * i)\n    return 0\n"
    "The server answers requests over the network. Each request carries a prompt, and the server streams "
    "the generated text back token by token. When the queue is full, new requests are refused with a clear "
    "error, and the clients try again later. The service reports its health, its queue depth and the time "
    "it takes to produce the first token.\n"
    "Once upon a time there was a little girl who loved to read. Every night her mother told her a story "
    "about a dragon, a king and a brave young knight. The girl listened and then fell asleep, dreaming of "
    "castles, forests and the open sky. In the morning she wrote the story down in her book, and the book "
    "grew thicker every week.\n";

/* The Qwen2 / Qwen2.5 pre-tokenizer regex, as written in its tokenizer.json. */
static const char qwen_split_regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";

static const char *const synth_specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
#define SYNTH_MAX_MERGES 2000

/* GPT-2's reversible byte -> printable code point map: bytes that are printable Latin-1 map to
 * themselves, the other 68 to U+0100 onwards in byte order. */
static void byte_char(int b, char out[3]) {
  bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  int cp = b;
  if (!keep) {
    int k = 0;
    for (int x = 0; x < b; x++) k += !((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255));
    cp = 256 + k;
  }
  if (cp < 0x80) {
    out[0] = (char)cp;
    out[1] = 0;
  } else {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    out[2] = 0;
  }
}

typedef struct bpe_word {
  int32_t *ids;
  int32_t n;
  int32_t count;
} bpe_word;

typedef struct bpe {
  char **tok;          /* vocab strings by id */
  int32_t n_tok;
  int32_t (*merges)[2];
  int32_t n_merges;
  bpe_word *words;
  int32_t n_words;
} bpe;

static void bpe_free(bpe *b) {
  for (int32_t i = 0; i < b->n_tok; i++) free(b->tok[i]);
  free(b->tok);
  free(b->merges);
  for (int32_t i = 0; i < b->n_words; i++) free(b->words[i].ids);
  free(b->words);
}

static int32_t bpe_find(const bpe *b, const char *s) {
  for (int32_t i = 0; i < b->n_tok; i++)
    if (!strcmp(b->tok[i], s)) return i;
  return -1;
}

/* Pre-tokenizes the corpus with the Qwen regex into distinct words of byte ids, with counts. */
static qq_status bpe_words(bpe *b, qq_error *err) {
  int ec;
  PCRE2_SIZE eo;
  pcre2_code *re = pcre2_compile((PCRE2_SPTR)qwen_split_regex, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec,
                                 &eo, NULL);
  if (!re) return qq_error_set(err, QQ_ERR_INTERNAL, "synth: the Qwen pre-tokenizer regex does not compile");
  pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
  size_t len = strlen(synth_corpus), pos = 0;
  b->words = calloc(len, sizeof *b->words);
  qq_status s = QQ_OK;
  if (!md || !b->words) {
    s = qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    goto done;
  }
  while (pos < len && pcre2_match(re, (PCRE2_SPTR)synth_corpus, len, pos, 0, md, NULL) > 0) {
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    size_t a = ov[0], e = ov[1];
    if (e <= a) break;
    pos = e;
    int32_t w = 0;
    for (; w < b->n_words; w++) {
      bpe_word *x = &b->words[w];
      if (x->n != (int32_t)(e - a)) continue;
      int32_t k = 0;
      while (k < x->n && x->ids[k] == (unsigned char)synth_corpus[a + k]) k++;
      if (k == x->n) break;
    }
    if (w < b->n_words) {
      b->words[w].count++;
      continue;
    }
    bpe_word *x = &b->words[b->n_words++];
    if (!(x->ids = malloc((e - a) * sizeof *x->ids))) {
      s = qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
      goto done;
    }
    for (size_t k = a; k < e; k++) x->ids[k - a] = (unsigned char)synth_corpus[k];
    x->n = (int32_t)(e - a);
    x->count = 1;
  }
done:
  pcre2_match_data_free(md);
  pcre2_code_free(re);
  return s;
}

typedef struct pair_count {
  int32_t a, b, count;
} pair_count;

static int pair_cmp(const void *x, const void *y) {
  const pair_count *p = x, *q = y;
  if (p->a != q->a) return p->a < q->a ? -1 : 1;
  return p->b < q->b ? -1 : p->b > q->b;
}

/* Trains up to max_merges merges; each step merges the most frequent adjacent pair (ties: lowest ids). */
static qq_status bpe_train(bpe *b, int32_t max_merges, qq_error *err) {
  b->tok = calloc(256 + (size_t)max_merges, sizeof *b->tok);
  b->merges = calloc((size_t)max_merges + 1, sizeof *b->merges);
  if (!b->tok || !b->merges) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  for (int i = 0; i < 256; i++) {
    char c[3];
    byte_char(i, c);
    if (!(b->tok[b->n_tok++] = strdup(c))) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  }
  qq_status s = bpe_words(b, err);
  if (s != QQ_OK) return s;
  size_t cap = 0;
  for (int32_t w = 0; w < b->n_words; w++) cap += (size_t)b->words[w].n;
  pair_count *pc = malloc((cap ? cap : 1) * sizeof *pc);
  if (!pc) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  while (b->n_merges < max_merges) {
    size_t np = 0;
    for (int32_t w = 0; w < b->n_words; w++)
      for (int32_t k = 0; k + 1 < b->words[w].n; k++)
        pc[np++] = (pair_count){b->words[w].ids[k], b->words[w].ids[k + 1], b->words[w].count};
    qsort(pc, np, sizeof *pc, pair_cmp);
    pair_count best = {-1, -1, 1};
    for (size_t i = 0; i < np;) {
      size_t j = i;
      int32_t c = 0;
      while (j < np && pc[j].a == pc[i].a && pc[j].b == pc[i].b) c += pc[j++].count;
      if (c > best.count) best = (pair_count){pc[i].a, pc[i].b, c};
      i = j;
    }
    if (best.a < 0) break; /* every pair is unique: more merges would not generalise */
    size_t la = strlen(b->tok[best.a]), lb = strlen(b->tok[best.b]);
    char *m = malloc(la + lb + 1);
    if (!m) {
      free(pc);
      return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    }
    memcpy(m, b->tok[best.a], la);
    memcpy(m + la, b->tok[best.b], lb + 1);
    int32_t id = bpe_find(b, m);
    if (id < 0) {
      id = b->n_tok;
      b->tok[b->n_tok++] = m;
    } else {
      free(m); /* another pair already produced this string: the merge maps to the same token */
    }
    b->merges[b->n_merges][0] = best.a;
    b->merges[b->n_merges][1] = best.b;
    b->n_merges++;
    for (int32_t w = 0; w < b->n_words; w++) {
      bpe_word *x = &b->words[w];
      int32_t o = 0;
      for (int32_t k = 0; k < x->n; k++) {
        if (k + 1 < x->n && x->ids[k] == best.a && x->ids[k + 1] == best.b) {
          x->ids[o++] = id;
          k++;
        } else {
          x->ids[o++] = x->ids[k];
        }
      }
      x->n = o;
    }
  }
  free(pc);
  return QQ_OK;
}

static cJSON *bytelevel(const char *type) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "type", type);
  cJSON_AddBoolToObject(o, "add_prefix_space", false);
  cJSON_AddBoolToObject(o, "trim_offsets", false);
  cJSON_AddBoolToObject(o, "use_regex", false);
  return o;
}

static int32_t max_merges(const synth_shape *sh) {
  return QQ_MIN(SYNTH_MAX_MERGES, sh->vocab - 256 - (int32_t)QQ_ARRAY_LEN(synth_specials));
}

/* The id of <|endoftext|>: the first id after the trained vocabulary. */
static qq_status tokenizer_eos(const synth_shape *sh, int32_t *eos_id, qq_error *err) {
  bpe b = {0};
  qq_status s = bpe_train(&b, max_merges(sh), err);
  *eos_id = b.n_tok;
  bpe_free(&b);
  return s;
}

static qq_status write_tokenizer(const char *dir, const synth_shape *sh, int32_t *eos_id, qq_error *err) {
  bpe b = {0};
  qq_status s = bpe_train(&b, max_merges(sh), err);
  if (s != QQ_OK) {
    bpe_free(&b);
    return s;
  }
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "version", "1.0");
  cJSON_AddNullToObject(root, "truncation");
  cJSON_AddNullToObject(root, "padding");
  cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
  for (size_t i = 0; i < QQ_ARRAY_LEN(synth_specials); i++) {
    cJSON *t = cJSON_CreateObject();
    cJSON_AddNumberToObject(t, "id", b.n_tok + (int32_t)i);
    cJSON_AddStringToObject(t, "content", synth_specials[i]);
    cJSON_AddBoolToObject(t, "single_word", false);
    cJSON_AddBoolToObject(t, "lstrip", false);
    cJSON_AddBoolToObject(t, "rstrip", false);
    cJSON_AddBoolToObject(t, "normalized", false);
    cJSON_AddBoolToObject(t, "special", true);
    cJSON_AddItemToArray(added, t);
  }
  cJSON *norm = cJSON_AddObjectToObject(root, "normalizer");
  cJSON_AddStringToObject(norm, "type", "NFC");
  cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
  cJSON_AddStringToObject(pre, "type", "Sequence");
  cJSON *pres = cJSON_AddArrayToObject(pre, "pretokenizers");
  cJSON *split = cJSON_CreateObject();
  cJSON_AddStringToObject(split, "type", "Split");
  cJSON_AddStringToObject(cJSON_AddObjectToObject(split, "pattern"), "Regex", qwen_split_regex);
  cJSON_AddStringToObject(split, "behavior", "Isolated");
  cJSON_AddBoolToObject(split, "invert", false);
  cJSON_AddItemToArray(pres, split);
  cJSON_AddItemToArray(pres, bytelevel("ByteLevel"));
  cJSON_AddItemToObject(root, "post_processor", bytelevel("ByteLevel"));
  cJSON_AddItemToObject(root, "decoder", bytelevel("ByteLevel"));
  cJSON *model = cJSON_AddObjectToObject(root, "model");
  cJSON_AddStringToObject(model, "type", "BPE");
  cJSON_AddNullToObject(model, "dropout");
  cJSON_AddNullToObject(model, "unk_token");
  cJSON_AddStringToObject(model, "continuing_subword_prefix", "");
  cJSON_AddStringToObject(model, "end_of_word_suffix", "");
  cJSON_AddBoolToObject(model, "fuse_unk", false);
  cJSON_AddBoolToObject(model, "byte_fallback", false);
  cJSON_AddBoolToObject(model, "ignore_merges", false);
  cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
  for (int32_t i = 0; i < b.n_tok; i++) cJSON_AddNumberToObject(vocab, b.tok[i], i);
  cJSON *merges = cJSON_AddArrayToObject(model, "merges");
  for (int32_t i = 0; i < b.n_merges; i++) {
    cJSON *pair = cJSON_CreateArray();
    cJSON_AddItemToArray(pair, cJSON_CreateString(b.tok[b.merges[i][0]]));
    cJSON_AddItemToArray(pair, cJSON_CreateString(b.tok[b.merges[i][1]]));
    cJSON_AddItemToArray(merges, pair);
  }
  *eos_id = b.n_tok;
  bpe_free(&b);
  if ((s = write_json(dir, "tokenizer.json", root, err)) != QQ_OK) return s;

  cJSON *tc = cJSON_CreateObject();
  cJSON_AddStringToObject(tc, "tokenizer_class", "Qwen2Tokenizer");
  cJSON_AddNullToObject(tc, "bos_token");
  cJSON_AddStringToObject(tc, "eos_token", synth_specials[0]);
  cJSON_AddStringToObject(tc, "pad_token", synth_specials[0]);
  cJSON_AddNullToObject(tc, "unk_token");
  cJSON_AddNumberToObject(tc, "model_max_length", sh->max_pos);
  cJSON_AddBoolToObject(tc, "add_prefix_space", false);
  cJSON_AddBoolToObject(tc, "clean_up_tokenization_spaces", false);
  cJSON_AddStringToObject(tc, "errors", "replace");
  return write_json(dir, "tokenizer_config.json", tc, err);
}

/* config.json of the shape; quant is the quantization_config object (NULL for dense weights, taken over). */
static cJSON *config_json(const synth_shape *sh, qq_dtype dt, uint64_t seed, int32_t eos, cJSON *quant) {
  cJSON *c = cJSON_CreateObject();
  if (!c) {
    cJSON_Delete(quant);
    return NULL;
  }
  cJSON *a = cJSON_AddArrayToObject(c, "architectures");
  cJSON_AddItemToArray(a, cJSON_CreateString("Qwen2ForCausalLM"));
  cJSON_AddStringToObject(c, "model_type", "qwen2");
  cJSON_AddNumberToObject(c, "hidden_size", sh->hidden);
  cJSON_AddNumberToObject(c, "intermediate_size", sh->inter);
  cJSON_AddNumberToObject(c, "num_hidden_layers", sh->layers);
  cJSON_AddNumberToObject(c, "num_attention_heads", sh->heads);
  cJSON_AddNumberToObject(c, "num_key_value_heads", sh->kv_heads);
  cJSON_AddNumberToObject(c, "vocab_size", sh->vocab);
  cJSON_AddNumberToObject(c, "max_position_embeddings", sh->max_pos);
  cJSON_AddNumberToObject(c, "max_window_layers", sh->layers);
  cJSON_AddNumberToObject(c, "rms_norm_eps", 1e-6);
  cJSON_AddNumberToObject(c, "rope_theta", sh->rope_theta);
  cJSON_AddNullToObject(c, "rope_scaling");
  cJSON_AddStringToObject(c, "hidden_act", "silu");
  cJSON_AddBoolToObject(c, "tie_word_embeddings", sh->tied);
  cJSON_AddBoolToObject(c, "use_sliding_window", false);
  cJSON_AddNullToObject(c, "sliding_window");
  cJSON_AddNumberToObject(c, "attention_dropout", 0.0);
  cJSON_AddNumberToObject(c, "initializer_range", 0.02); /* = SYNTH_INIT_STD */
  cJSON_AddNumberToObject(c, "bos_token_id", eos);
  cJSON_AddNumberToObject(c, "eos_token_id", eos);
  cJSON_AddStringToObject(c, "torch_dtype", dt == QQ_DTYPE_F32 ? "float32" : "bfloat16");
  cJSON_AddBoolToObject(c, "use_cache", true);
  char note[160];
  snprintf(note, sizeof note, "RANDOM WEIGHTS: written by qquant synth (shape %s, seed %llu); outputs are meaningless",
           sh->name, (unsigned long long)seed);
  cJSON_AddStringToObject(c, "qquant_synthetic", note);
  if (quant) cJSON_AddItemToObject(c, "quantization_config", quant);
  return c;
}

/* The quantization_config object of the options' linears (*out NULL for dense weights). */
static qq_status quant_json(const qq_synth_options *o, cJSON **out, qq_error *err) {
  *out = NULL;
  if (!o->linears) return QQ_OK;
  const qq_synth_linears *l = o->linears;
  if (!l->describe || !l->fill || !l->quantization_config)
    return qq_error_set(err, QQ_ERR_INVALID_ARG,
                        "synth: quantized linears need describe, fill and quantization_config");
  cJSON *q = cJSON_Parse(l->quantization_config);
  if (!cJSON_IsObject(q)) {
    cJSON_Delete(q);
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "synth: quantization_config is not a JSON object");
  }
  *out = q;
  return QQ_OK;
}


/* ---- entry ---- */

static bool dir_has_entries(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return false;
  struct dirent *de;
  bool any = false;
  while (!any && (de = readdir(d))) any = strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
  closedir(d);
  return any;
}

/* Checks what does not depend on the folder: shape, dtype, and the quantized linears' config. */
static qq_status check_options(const qq_synth_options *o, const synth_shape **sh, cJSON **quant, qq_error *err) {
  *sh = find_shape(o->shape);
  if (!*sh)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "synth: unknown shape '%s' (tiny, qwen2.5-0.5b, qwen2.5-1.5b, "
                        "qwen2.5-7b)", o->shape ? o->shape : "(null)");
  if (o->dtype != QQ_DTYPE_BF16 && o->dtype != QQ_DTYPE_F32)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "synth: dtype %s: choose BF16 or F32", qq_dtype_name(o->dtype));
  return quant_json(o, quant, err);
}

qq_status qq_synth_config(const qq_synth_options *opt, qq_config *out, qq_error *err) {
  qq_synth_options o = opt ? *opt : qq_synth_options_default();
  const synth_shape *sh;
  cJSON *quant;
  qq_status s = check_options(&o, &sh, &quant, err);
  if (s != QQ_OK) return s;
  int32_t eos = -1;
  if ((s = tokenizer_eos(sh, &eos, err)) != QQ_OK) {
    cJSON_Delete(quant);
    return s;
  }
  cJSON *c = config_json(sh, o.dtype, o.seed, eos, quant);
  char *txt = c ? cJSON_PrintUnformatted(c) : NULL;
  cJSON_Delete(c);
  if (!txt) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  char name[64];
  snprintf(name, sizeof name, "synth-%s/config.json", sh->name);
  s = qq_config_parse(txt, strlen(txt), name, out, err);
  free(txt);
  return s;
}

qq_status qq_synth_write(const char *dir, const qq_synth_options *opt, qq_error *err) {
  qq_synth_options o = opt ? *opt : qq_synth_options_default();
  if (!dir || !*dir) return qq_error_set(err, QQ_ERR_INVALID_ARG, "synth: no output folder");
  const synth_shape *sh;
  cJSON *quant = NULL;
  tensor_plan p = {0};
  qq_status s = check_options(&o, &sh, &quant, err);
  if (s != QQ_OK) return s;
  /* Every linear is described before anything is written: a format that cannot hold a shape fails
   * with the folder untouched. */
  if ((s = plan_build(sh, o.dtype, o.linears, &p, err)) != QQ_OK) goto done;
  if (!o.force && dir_has_entries(dir)) {
    s = qq_error_set(err, QQ_ERR_EXISTS, "%s: folder is not empty (use --force to write over it)", dir);
    goto done;
  }
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
    s = qq_error_set(err, QQ_ERR_IO, "%s: cannot create folder: %s", dir, strerror(errno));
    goto done;
  }
  /* config.json goes last: a folder left by an interrupted run does not load as a checkpoint. */
  char *cfg = malloc(strlen(dir) + sizeof "/config.json");
  if (!cfg) {
    s = qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    goto done;
  }
  sprintf(cfg, "%s/config.json", dir);
  unlink(cfg);
  free(cfg);

  char seed_s[32];
  snprintf(seed_s, sizeof seed_s, "%llu", (unsigned long long)o.seed);
  const char *mk[] = {"format", "qquant_synthetic", "qquant_seed"};
  const char *mv[] = {"pt", "random weights", seed_s};
  fill_ctx *fc = malloc(sizeof *fc);
  if (!fc) {
    s = qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    goto done;
  }
  *fc = (fill_ctx){.p = &p, .seed = o.seed, .opt = &o,
                   .n_threads = QQ_MIN(o.n_threads > 0 ? o.n_threads : qq_cpu_default_threads(), SYNTH_MAX_THREADS)};
  zig_init(&fc->zig);
  s = qq_weights_write_dir_fill(dir, p.t, p.n, o.max_shard_bytes, mk, mv, 3, synth_fill, fc, err);
  free(fc);
  if (s != QQ_OK) goto done;
  int32_t eos = -1;
  if ((s = write_tokenizer(dir, sh, &eos, err)) != QQ_OK) goto done;
  cJSON *gc = cJSON_CreateObject();
  cJSON_AddNumberToObject(gc, "bos_token_id", eos);
  cJSON_AddNumberToObject(gc, "eos_token_id", eos);
  cJSON_AddBoolToObject(gc, "do_sample", false);
  if ((s = write_json(dir, "generation_config.json", gc, err)) != QQ_OK) goto done;
  s = write_json(dir, "config.json", config_json(sh, o.dtype, o.seed, eos, quant), err);
  quant = NULL; /* taken over by config_json */
done:
  cJSON_Delete(quant);
  plan_free(&p);
  return s;
}
