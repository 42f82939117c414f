/* synth.c — synthetic Qwen2 checkpoints with real shapes and random weights (qquant synth).
 *
 * Weights: linear and embedding matrices ~ N(0, 0.02^2) (transformers' initializer_range), RMSNorm
 * weights 1, biases 0. Each element is a pure function of (seed, tensor index, element index)
 * (SplitMix64 + Box-Muller), so the writer can stream any chunk of any tensor in any order and the
 * output is identical whatever the chunking.
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

typedef enum tkind { T_NORMAL, T_ONES, T_ZEROS } tkind;

typedef struct tensor_plan {
  qq_tensor_write *t;
  tkind *kind;
  char (*names)[80];
  size_t n;
  uint64_t bytes;
} tensor_plan;

static void plan_free(tensor_plan *p) {
  free(p->t);
  free(p->kind);
  free(p->names);
}

static void plan_add(tensor_plan *p, qq_dtype dt, tkind k, int64_t d0, int64_t d1, const char *name) {
  size_t i = p->n++;
  snprintf(p->names[i], sizeof p->names[i], "%s", name);
  p->t[i] = (qq_tensor_write){.name = p->names[i], .dtype = dt, .ndim = d1 ? 2 : 1, .shape = {d0, d1}};
  p->kind[i] = k;
  p->bytes += (uint64_t)d0 * (uint64_t)(d1 ? d1 : 1) * qq_dtype_size(dt);
}

static qq_status plan_build(const synth_shape *s, qq_dtype dt, tensor_plan *p) {
  memset(p, 0, sizeof *p);
  size_t cap = 3 + (size_t)s->layers * 12;
  p->t = calloc(cap, sizeof *p->t);
  p->kind = calloc(cap, sizeof *p->kind);
  p->names = calloc(cap, sizeof *p->names);
  if (!p->t || !p->kind || !p->names) {
    plan_free(p);
    return QQ_ERR_NOMEM;
  }
  const int64_t H = s->hidden, I = s->inter, hd = s->hidden / s->heads;
  const int64_t qd = s->heads * hd, kvd = s->kv_heads * hd;
  plan_add(p, dt, T_NORMAL, s->vocab, H, "model.embed_tokens.weight");
  char nm[80];
  for (int l = 0; l < s->layers; l++) {
#define L(leaf) (snprintf(nm, sizeof nm, "model.layers.%d.%s", l, leaf), nm)
    plan_add(p, dt, T_ONES, H, 0, L("input_layernorm.weight"));
    plan_add(p, dt, T_NORMAL, qd, H, L("self_attn.q_proj.weight"));
    plan_add(p, dt, T_ZEROS, qd, 0, L("self_attn.q_proj.bias"));
    plan_add(p, dt, T_NORMAL, kvd, H, L("self_attn.k_proj.weight"));
    plan_add(p, dt, T_ZEROS, kvd, 0, L("self_attn.k_proj.bias"));
    plan_add(p, dt, T_NORMAL, kvd, H, L("self_attn.v_proj.weight"));
    plan_add(p, dt, T_ZEROS, kvd, 0, L("self_attn.v_proj.bias"));
    plan_add(p, dt, T_NORMAL, H, qd, L("self_attn.o_proj.weight"));
    plan_add(p, dt, T_ONES, H, 0, L("post_attention_layernorm.weight"));
    plan_add(p, dt, T_NORMAL, I, H, L("mlp.gate_proj.weight"));
    plan_add(p, dt, T_NORMAL, I, H, L("mlp.up_proj.weight"));
    plan_add(p, dt, T_NORMAL, H, I, L("mlp.down_proj.weight"));
#undef L
  }
  plan_add(p, dt, T_ONES, H, 0, "model.norm.weight");
  if (!s->tied) plan_add(p, dt, T_NORMAL, s->vocab, H, "lm_head.weight");
  return QQ_OK;
}

uint64_t qq_synth_bytes(const char *shape, qq_dtype dtype) {
  const synth_shape *s = find_shape(shape);
  tensor_plan p;
  if (!s || (dtype != QQ_DTYPE_BF16 && dtype != QQ_DTYPE_F32) || plan_build(s, dtype, &p) != QQ_OK) return 0;
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

/* Element e of tensor t: the (e & 1)-th output of Box-Muller on pair e / 2. */
static float normal_at(uint64_t seed, size_t t, uint64_t e) {
  uint64_t h = splitmix64(seed ^ splitmix64(((uint64_t)t << 40) ^ (e >> 1)));
  /* two 32-bit uniforms; u1 in (0, 1] so log is finite */
  float u1 = ((float)(uint32_t)(h >> 32) + 1.0f) * (1.0f / 4294967296.0f);
  float u2 = (float)(uint32_t)h * (1.0f / 4294967296.0f);
  float r = sqrtf(-2.0f * logf(u1));
  float a = 6.28318530717958647692f * u2;
  return r * ((e & 1) ? sinf(a) : cosf(a));
}

typedef struct fill_ctx {
  const tensor_plan *p;
  uint64_t seed;
  uint64_t done;
  const qq_synth_options *opt;
} fill_ctx;

/* Standard deviation of the random matrices: transformers' initializer_range for Qwen2. */
#define SYNTH_INIT_STD 0.02f

static qq_status synth_fill(void *user, size_t index, size_t offset, void *buf, size_t nbytes, qq_error *err) {
  fill_ctx *c = user;
  const qq_tensor_write *t = &c->p->t[index];
  size_t esz = qq_dtype_size(t->dtype), n = nbytes / esz;
  uint64_t e0 = offset / esz;
  tkind k = c->p->kind[index];
  for (size_t i = 0; i < n; i++) {
    float v = k == T_ONES ? 1.0f : k == T_ZEROS ? 0.0f : SYNTH_INIT_STD * normal_at(c->seed, index, e0 + i);
    if (t->dtype == QQ_DTYPE_F32)
      memcpy((uint8_t *)buf + i * 4, &v, 4);
    else
      ((uint16_t *)buf)[i] = qq_f32_to_bf16(v);
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

static qq_status write_tokenizer(const char *dir, const synth_shape *sh, int32_t *eos_id, qq_error *err) {
  bpe b = {0};
  int32_t max_merges = QQ_MIN(SYNTH_MAX_MERGES, sh->vocab - 256 - (int32_t)QQ_ARRAY_LEN(synth_specials));
  qq_status s = bpe_train(&b, max_merges, err);
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

static qq_status write_config(const char *dir, const synth_shape *sh, qq_dtype dt, uint64_t seed, int32_t eos,
                              qq_error *err) {
  cJSON *c = cJSON_CreateObject();
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
  return write_json(dir, "config.json", c, err);
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

qq_status qq_synth_write(const char *dir, const qq_synth_options *opt, qq_error *err) {
  qq_synth_options o = opt ? *opt : qq_synth_options_default();
  if (!dir || !*dir) return qq_error_set(err, QQ_ERR_INVALID_ARG, "synth: no output folder");
  const synth_shape *sh = find_shape(o.shape);
  if (!sh)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "synth: unknown shape '%s' (tiny, qwen2.5-0.5b, qwen2.5-1.5b, "
                        "qwen2.5-7b)", o.shape ? o.shape : "(null)");
  if (o.dtype != QQ_DTYPE_BF16 && o.dtype != QQ_DTYPE_F32)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "synth: dtype %s: choose BF16 or F32", qq_dtype_name(o.dtype));
  if (!o.force && dir_has_entries(dir))
    return qq_error_set(err, QQ_ERR_EXISTS, "%s: folder is not empty (use --force to write over it)", dir);
  if (mkdir(dir, 0755) != 0 && errno != EEXIST)
    return qq_error_set(err, QQ_ERR_IO, "%s: cannot create folder: %s", dir, strerror(errno));
  /* config.json goes last: a folder left by an interrupted run does not load as a checkpoint. */
  char *cfg = malloc(strlen(dir) + sizeof "/config.json");
  if (!cfg) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  sprintf(cfg, "%s/config.json", dir);
  unlink(cfg);
  free(cfg);

  tensor_plan p;
  if (plan_build(sh, o.dtype, &p) != QQ_OK) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  char seed_s[32];
  snprintf(seed_s, sizeof seed_s, "%llu", (unsigned long long)o.seed);
  const char *mk[] = {"format", "qquant_synthetic", "qquant_seed"};
  const char *mv[] = {"pt", "random weights", seed_s};
  fill_ctx fc = {.p = &p, .seed = o.seed, .opt = &o};
  qq_status s = qq_weights_write_dir_fill(dir, p.t, p.n, o.max_shard_bytes, mk, mv, 3, synth_fill, &fc, err);
  plan_free(&p);
  if (s != QQ_OK) return s;
  int32_t eos = -1;
  if ((s = write_tokenizer(dir, sh, &eos, err)) != QQ_OK) return s;
  cJSON *gc = cJSON_CreateObject();
  cJSON_AddNumberToObject(gc, "bos_token_id", eos);
  cJSON_AddNumberToObject(gc, "eos_token_id", eos);
  cJSON_AddBoolToObject(gc, "do_sample", false);
  if ((s = write_json(dir, "generation_config.json", gc, err)) != QQ_OK) return s;
  return write_config(dir, sh, o.dtype, o.seed, eos, err);
}
