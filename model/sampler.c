/* sampler.c — next-token selection: greedy, or temperature -> top-k -> top-p -> draw, in the order
 * Hugging Face's logits warpers apply them. Seeded xoshiro256** makes draws reproducible. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

struct qq_sampler {
  qq_sampling p;
  uint64_t s[4];
  /* scratch grown to the vocabulary size (or the number of candidates) */
  int32_t cap;
  struct vi_pair *pairs;
  double *prob;
  /* a logits row downloaded from backend memory (qq_sampler_pick's full-row path) */
  float *row;
  int32_t row_cap;
};

qq_sampling qq_sampling_default(void) {
  qq_sampling s = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 0};
  return s;
}

qq_status qq_sampling_check(const qq_sampling *s, qq_error *err) {
  if (!(s->temperature >= 0.0f && s->temperature <= 100.0f))
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "temperature %g outside [0, 100]", (double)s->temperature);
  if (s->top_k < 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "top_k %d is negative", s->top_k);
  if (!(s->top_p > 0.0f && s->top_p <= 1.0f))
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "top_p %g outside (0, 1]", (double)s->top_p);
  return QQ_OK;
}

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(qq_sampler *r) {
  uint64_t *s = r->s;
  const uint64_t result = rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double next_unit(qq_sampler *r) { return (double)(next_u64(r) >> 11) * (1.0 / 9007199254740992.0); }

qq_status qq_sampler_create(const qq_sampling *p, qq_sampler **out, qq_error *err) {
  *out = NULL;
  qq_status st = qq_sampling_check(p, err);
  if (st != QQ_OK) return st;
  qq_sampler *s = calloc(1, sizeof *s);
  if (!s) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  s->p = *p;
  uint64_t seed = p->seed;
  for (int i = 0; i < 4; i++) s->s[i] = splitmix64(&seed);
  *out = s;
  return QQ_OK;
}

void qq_sampler_free(qq_sampler *s) {
  if (!s) return;
  free(s->pairs);
  free(s->prob);
  free(s->row);
  free(s);
}

static int32_t argmax(const float *x, int32_t n) {
  int32_t best = 0;
  for (int32_t i = 1; i < n; i++)
    if (x[i] > x[best]) best = i;
  return best;
}

/* (value, id) pairs sorted by value descending, ties by id ascending: no global state, so samplers on
 * different threads never interfere. */
typedef struct vi_pair {
  float v;
  int32_t i;
} vi_pair;
static int cmp_desc(const void *a, const void *b) {
  const vi_pair *x = a, *y = b;
  if (x->v > y->v) return -1;
  if (x->v < y->v) return 1;
  return x->i < y->i ? -1 : x->i > y->i;
}

static bool grow(qq_sampler *s, int32_t n) {
  if (s->cap >= n) return true;
  vi_pair *np = realloc(s->pairs, (size_t)n * sizeof *np);
  if (!np) return false;
  s->pairs = np;
  double *pr = realloc(s->prob, (size_t)n * sizeof(double));
  if (!pr) return false;
  s->prob = pr;
  s->cap = n;
  return true;
}

/* The draw over pairs[0..avail): in id order (no top-k / top-p), or sorted by value descending, ties
 * by id. m: the support before top-p (top_k, or the whole row of n). When avail >= m every number is
 * computed from the pairs, in the order of the full-row computation. When avail < m (candidates of a
 * top-p draw over the whole row), row_total stands for Σ over all n of exp(v − max) and the nucleus
 * is decided from the candidates if it lies within them and no partial sum is so close to top_p that
 * row_total's rounding (a different summation order) could flip the comparison; otherwise -1, with
 * the generator untouched, and the caller draws from the full row. */
static int32_t draw(qq_sampler *s, const vi_pair *pairs, int32_t avail, int32_t m, int32_t n, double row_total) {
  double *prob = s->prob;
  const bool exact = avail >= m;
  const int32_t have = exact ? m : avail;
  double mx = -INFINITY;
  for (int32_t i = 0; i < have; i++) mx = fmax(mx, (double)pairs[i].v);
  double total = 0;
  for (int32_t i = 0; i < have; i++) {
    prob[i] = exp((double)pairs[i].v - mx);
    total += prob[i];
  }
  if (!exact) {
    if (!(s->p.top_p < 1.0f) || !(row_total > 0.0)) return -1;
    total = row_total;
  }
  int32_t keep = have;
  if (s->p.top_p < 1.0f) {
    /* Keep the smallest prefix (in descending order) whose probability reaches top_p; at least one. */
    double cum = 0;
    keep = exact ? m : -1;
    for (int32_t i = 0; i < have; i++) {
      cum += prob[i] / total;
      if (!exact) {
        /* |this cum − the full row's cum| <= (n + i + 8) · 8 · 2^-53 · cum: both totals are sums of the
         * same n terms (exp within 1 ulp) in different orders, and each partial sum rounds on its own */
        const double band = cum * 8.0 * ((double)n + (double)i + 8.0) * 0x1p-53;
        if (fabs(cum - (double)s->p.top_p) <= band) return -1;
      }
      if (cum >= s->p.top_p) {
        keep = i + 1;
        break;
      }
    }
    if (keep < 0) return -1; /* the nucleus reaches beyond the candidates */
    total = 0;
    for (int32_t i = 0; i < keep; i++) total += prob[i];
  }
  double u = next_unit(s) * total, acc = 0;
  int32_t pick = pairs[keep - 1].i;
  for (int32_t i = 0; i < keep; i++) {
    acc += prob[i];
    if (u < acc) {
      pick = pairs[i].i;
      break;
    }
  }
  return pick;
}

static bool uses_top_k(const qq_sampler *s, int32_t n) { return s->p.top_k > 0 && s->p.top_k < n; }

int32_t qq_sampler_sample(qq_sampler *s, const float *logits, int32_t n) {
  if (s->p.temperature <= 0.0f) return argmax(logits, n);
  if (!grow(s, n)) return argmax(logits, n); /* out of memory: degrade to greedy rather than fail */
  vi_pair *pairs = s->pairs;
  const float inv_t = 1.0f / s->p.temperature;
  for (int32_t i = 0; i < n; i++) pairs[i] = (vi_pair){logits[i] * inv_t, i};
  int32_t m = n;
  if (uses_top_k(s, n) || s->p.top_p < 1.0f) {
    qsort(pairs, (size_t)n, sizeof *pairs, cmp_desc);
    if (uses_top_k(s, n)) m = s->p.top_k;
  }
  return draw(s, pairs, n, m, n, 0.0);
}

int32_t qq_sampler_sample_candidates(qq_sampler *s, const float *vals, const int32_t *ids, int32_t c, int32_t n,
                                     double row_total) {
  if (c <= 0 || c > n) return -1;
  if (s->p.temperature <= 0.0f) return ids[0]; /* v = logit · 1: the first candidate is the argmax */
  const bool top_k = uses_top_k(s, n);
  if (!top_k && !(s->p.top_p < 1.0f)) return -1; /* plain temperature: a draw over every logit, in id order */
  if (top_k && c < s->p.top_k) return -1; /* the top-k support must be complete */
  if (!grow(s, c)) return -1;
  for (int32_t i = 0; i < c; i++) s->pairs[i] = (vi_pair){vals[i], ids[i]};
  return draw(s, s->pairs, c, top_k ? s->p.top_k : n, n, row_total);
}

/* Top-p over the whole row: this many candidates are asked for (a nucleus beyond them, rare at usual
 * temperatures, costs a row download). */
#define QQ_SAMPLER_TOPP_CANDIDATES 1024

int32_t qq_sampler_candidates_wanted(const qq_sampler *s, int32_t n, float *scale, bool *want_total) {
  *scale = 1.0f;
  *want_total = false;
  if (s->p.temperature <= 0.0f) return 0;
  const float inv_t = 1.0f / s->p.temperature;
  if (!(inv_t > 0.0f && inv_t <= FLT_MAX)) return -1; /* the op takes finite scales only */
  *scale = inv_t;
  if (uses_top_k(s, n)) return s->p.top_k <= QQ_TOPK_MAX ? s->p.top_k : -1;
  if (!(s->p.top_p < 1.0f)) return -1;
  *want_total = n > QQ_SAMPLER_TOPP_CANDIDATES;
  return QQ_MIN(n, QQ_SAMPLER_TOPP_CANDIDATES);
}

qq_status qq_sampler_pick(qq_backend *be, const void *logits, int32_t n, qq_sampler *const *samplers,
                          const int32_t *rows, int32_t count, int32_t *tokens, qq_error *err) {
  if (count <= 0) return QQ_OK;
  if (n <= 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "sample: rows of %d logits", n);
  /* per entry: 0 greedy, > 0 candidates, -1 full row */
  int32_t *want = malloc((size_t)count * 4 * sizeof(int32_t));
  float *scales = malloc((size_t)count * sizeof(float));
  double *sums = malloc((size_t)count * sizeof(double));
  qq_logits_stats *stats = malloc((size_t)count * sizeof *stats);
  float *vals = NULL;
  int32_t *ids = NULL;
  qq_status st = QQ_OK;
  if (!want || !scales || !sums || !stats) {
    st = qq_error_set(err, QQ_ERR_NOMEM, "sample: out of memory");
    goto done;
  }
  int32_t *g_rows = want + count, *c_rows = g_rows + count, *c_idx = c_rows + count;
  int32_t ng = 0, nc = 0, k = 0;
  bool any_total = false;
  for (int32_t i = 0; i < count; i++) {
    float sc;
    bool wt;
    want[i] = qq_sampler_candidates_wanted(samplers[i], n, &sc, &wt);
    tokens[i] = -1;
    if (want[i] == 0) {
      g_rows[ng++] = rows[i];
    } else if (want[i] > 0) {
      c_rows[nc] = rows[i];
      scales[nc] = sc;
      c_idx[nc++] = i;
      k = QQ_MAX(k, want[i]);
      any_total |= wt;
    }
  }
  /* greedy: the argmax of each row (ties to the lowest id) */
  if (ng > 0) {
    if ((st = qq_op_logits_reduce(be, logits, n, g_rows, NULL, ng, false, stats, err)) != QQ_OK) goto done;
    for (int32_t i = 0, g = 0; i < count; i++)
      if (want[i] == 0) tokens[i] = stats[g++].argmax;
  }
  /* top-k / top-p: the k best candidates of each row, then the sampler's own draw on the host */
  if (nc > 0) {
    vals = malloc((size_t)nc * (size_t)k * sizeof(float));
    ids = malloc((size_t)nc * (size_t)k * sizeof(int32_t));
    if (!vals || !ids) {
      st = qq_error_set(err, QQ_ERR_NOMEM, "sample: out of memory for %d x %d candidates", nc, k);
      goto done;
    }
    st = qq_op_logits_topk(be, logits, n, c_rows, scales, nc, k, vals, ids, any_total ? sums : NULL, err);
    if (st != QQ_OK) goto done;
    for (int32_t j = 0; j < nc; j++) {
      const int32_t i = c_idx[j];
      tokens[i] = qq_sampler_sample_candidates(samplers[i], vals + (size_t)j * k, ids + (size_t)j * k, k, n,
                                               any_total ? sums[j] : 0.0);
    }
  }
  /* the rest (plain temperature, a large top_k, a nucleus beyond the candidates): the whole row */
  const size_t row_bytes = (size_t)n * qq_backend_act_bytes(be);
  for (int32_t i = 0; i < count; i++) {
    if (tokens[i] >= 0) continue;
    qq_sampler *s = samplers[i];
    if (s->row_cap < n) {
      float *r = realloc(s->row, (size_t)n * sizeof(float));
      if (!r) {
        st = qq_error_set(err, QQ_ERR_NOMEM, "sample: out of memory for a row of %d logits", n);
        goto done;
      }
      s->row = r;
      s->row_cap = n;
    }
    st = qq_backend_download_f32(be, (const uint8_t *)logits + (size_t)rows[i] * row_bytes, (size_t)n, s->row, err);
    if (st != QQ_OK) goto done;
    tokens[i] = qq_sampler_sample(s, s->row, n);
  }
done:
  free(want);
  free(scales);
  free(sums);
  free(stats);
  free(vals);
  free(ids);
  return st;
}
