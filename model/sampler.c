/* sampler.c — next-token selection: greedy, or temperature -> top-k -> top-p -> draw, in the order
 * Hugging Face's logits warpers apply them. Seeded xoshiro256** makes draws reproducible. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

struct qq_sampler {
  qq_sampling p;
  uint64_t s[4];
  /* scratch grown to the vocabulary size */
  int32_t cap;
  struct vi_pair *pairs;
  double *prob;
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

int32_t qq_sampler_sample(qq_sampler *s, const float *logits, int32_t n) {
  if (s->p.temperature <= 0.0f) return argmax(logits, n);
  if (s->cap < n) {
    vi_pair *np = realloc(s->pairs, (size_t)n * sizeof *np);
    if (!np) return argmax(logits, n); /* out of memory: degrade to greedy rather than fail */
    s->pairs = np;
    double *pr = realloc(s->prob, (size_t)n * sizeof(double));
    if (!pr) return argmax(logits, n);
    s->prob = pr;
    s->cap = n;
  }
  vi_pair *pairs = s->pairs;
  double *prob = s->prob;
  const float inv_t = 1.0f / s->p.temperature;
  for (int32_t i = 0; i < n; i++) pairs[i] = (vi_pair){logits[i] * inv_t, i};
  int32_t m = n;
  if ((s->p.top_k > 0 && s->p.top_k < n) || s->p.top_p < 1.0f) {
    qsort(pairs, (size_t)n, sizeof *pairs, cmp_desc);
    if (s->p.top_k > 0 && s->p.top_k < m) m = s->p.top_k;
  }
  double mx = -INFINITY;
  for (int32_t i = 0; i < m; i++) mx = fmax(mx, (double)pairs[i].v);
  double total = 0;
  for (int32_t i = 0; i < m; i++) {
    prob[i] = exp((double)pairs[i].v - mx);
    total += prob[i];
  }
  if (s->p.top_p < 1.0f) {
    /* Keep the smallest prefix (in descending order) whose probability reaches top_p; at least one. */
    double cum = 0;
    int32_t keep = m;
    for (int32_t i = 0; i < m; i++) {
      cum += prob[i] / total;
      if (cum >= s->p.top_p) {
        keep = i + 1;
        break;
      }
    }
    m = keep;
    total = 0;
    for (int32_t i = 0; i < m; i++) total += prob[i];
  }
  double u = next_unit(s) * total, acc = 0;
  int32_t pick = pairs[m - 1].i;
  for (int32_t i = 0; i < m; i++) {
    acc += prob[i];
    if (u < acc) {
      pick = pairs[i].i;
      break;
    }
  }
  return pick;
}
