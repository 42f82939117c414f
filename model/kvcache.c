/* kvcache.c — the paged KV cache: fixed-size blocks per layer, a free list, per-sequence block tables. */
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

/* Fraction of the free device memory (after weights and a 1 GiB reserve) the default KV cache takes. */
#define QQ_KV_MEM_FRACTION 0.90

qq_kv_options qq_kv_options_default(void) {
  qq_kv_options o = {.block_tokens = 16, .n_blocks = 0, .max_seqs = 64, .max_seq_len = 0};
  return o;
}

qq_status qq_kv_cache_create(qq_model *m, const qq_kv_options *opt, qq_kv_cache **out, qq_error *err) {
  *out = NULL;
  qq_kv_options o = opt ? *opt : qq_kv_options_default();
  if (o.block_tokens <= 0) o.block_tokens = 16;
  if (o.max_seqs <= 0) o.max_seqs = 64;
  if (o.max_seq_len <= 0) o.max_seq_len = m->cfg.max_position_embeddings;
  if (o.max_seq_len <= 0) return qq_error_set(err, QQ_ERR_INVALID_ARG, "kv cache: max_seq_len must be positive");
  const int32_t per_seq = (o.max_seq_len + o.block_tokens - 1) / o.block_tokens;
  if (o.n_blocks <= 0) {
    int64_t want = (int64_t)per_seq * o.max_seqs;
    /* On a device that reports its memory (CUDA), the default is capped by what is free after the
     * weights: QQ_KV_MEM_FRACTION of it, less a reserve for activations and scratch. */
    size_t free_b = 0, total_b = 0;
    if (qq_backend_mem_info(m->be, &free_b, &total_b, NULL) == QQ_OK) {
      const size_t block_bytes = 2 * (size_t)o.block_tokens * m->kv_dim * qq_backend_act_bytes(m->be) * m->cfg.num_layers;
      const size_t reserve = (size_t)1 << 30;
      const size_t usable = free_b > reserve ? (size_t)((double)(free_b - reserve) * QQ_KV_MEM_FRACTION) : 0;
      const int64_t fit = block_bytes ? (int64_t)(usable / block_bytes) : want;
      if (fit < want) {
        QQ_LOGI("kv", "KV cache: %lld blocks of %d tokens fit in %.1f GiB of free device memory (%lld asked)",
                (long long)fit, o.block_tokens, (double)usable / (1 << 30), (long long)want);
        want = fit;
      }
      if (want < per_seq)
        return qq_error_set(err, QQ_ERR_NOMEM,
                            "kv cache: only %lld blocks fit in free device memory, fewer than one %d-token sequence "
                            "needs (%d); lower --max-seq-len",
                            (long long)want, o.max_seq_len, per_seq);
    }
    if (want > (1 << 30)) return qq_error_set(err, QQ_ERR_RANGE, "kv cache: %lld blocks is too many", (long long)want);
    o.n_blocks = (int32_t)want;
  }
  qq_kv_cache *kv = calloc(1, sizeof *kv);
  if (!kv) return qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
  kv->m = m;
  kv->opt = o;
  const int32_t nl = m->cfg.num_layers;
  kv->k = calloc((size_t)nl, sizeof(void *));
  kv->v = calloc((size_t)nl, sizeof(void *));
  kv->free_list = malloc((size_t)o.n_blocks * sizeof(int32_t));
  kv->seqs = calloc((size_t)o.max_seqs, sizeof *kv->seqs);
  qq_status st = QQ_OK;
  if (!kv->k || !kv->v || !kv->free_list || !kv->seqs) {
    st = qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    goto fail;
  }
  /* One block more than asked: the padding block of replayable decode steps (model_internal.h). */
  const size_t elems = ((size_t)o.n_blocks + 1) * o.block_tokens * m->kv_dim;
  for (int32_t l = 0; l < nl; l++) {
    if ((st = qq_backend_alloc(m->be, elems, &kv->k[l], err)) != QQ_OK) goto fail;
    if ((st = qq_backend_alloc(m->be, elems, &kv->v[l], err)) != QQ_OK) goto fail;
  }
  static int64_t next_id = 1;
  kv->id = __atomic_fetch_add(&next_id, 1, __ATOMIC_RELAXED);
  kv->pad_block = o.n_blocks;
  kv->pad_table = malloc((size_t)per_seq * sizeof(int32_t));
  if (!kv->pad_table) {
    st = qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
    goto fail;
  }
  for (int32_t i = 0; i < per_seq; i++) kv->pad_table[i] = kv->pad_block;
  /* Free list as a stack, lowest ids handed out first. */
  for (int32_t b = 0; b < o.n_blocks; b++) kv->free_list[b] = o.n_blocks - 1 - b;
  kv->n_free = o.n_blocks;
  for (int32_t s = 0; s < o.max_seqs; s++) {
    kv->seqs[s].cap_blocks = per_seq;
    kv->seqs[s].blocks = malloc((size_t)per_seq * sizeof(int32_t));
    if (!kv->seqs[s].blocks) {
      st = qq_error_set(err, QQ_ERR_NOMEM, "out of memory");
      goto fail;
    }
  }
  *out = kv;
  return QQ_OK;
fail:
  qq_error_prefix(err, "kv cache (%d blocks of %d tokens)", o.n_blocks, o.block_tokens);
  qq_kv_cache_free(kv);
  return st;
}

void qq_kv_cache_free(qq_kv_cache *kv) {
  if (!kv) return;
  /* Captured steps refer to this cache's buffers. */
  qq_backend_graphs_clear(kv->m->be);
  free(kv->pad_table);
  for (int32_t l = 0; l < kv->m->cfg.num_layers; l++) {
    if (kv->k) qq_backend_release(kv->m->be, kv->k[l]);
    if (kv->v) qq_backend_release(kv->m->be, kv->v[l]);
  }
  if (kv->seqs)
    for (int32_t s = 0; s < kv->opt.max_seqs; s++) free(kv->seqs[s].blocks);
  free(kv->k);
  free(kv->v);
  free(kv->free_list);
  free(kv->seqs);
  free(kv);
}

qq_status qq_kv_seq_open(qq_kv_cache *kv, int32_t *seq, qq_error *err) {
  for (int32_t s = 0; s < kv->opt.max_seqs; s++) {
    if (!kv->seqs[s].live) {
      kv->seqs[s].live = true;
      kv->seqs[s].len = 0;
      kv->seqs[s].n_blocks = 0;
      *seq = s;
      return QQ_OK;
    }
  }
  return qq_error_set(err, QQ_ERR_EXHAUSTED, "kv cache: all %d sequence slots are in use", kv->opt.max_seqs);
}

void qq_kv_seq_close(qq_kv_cache *kv, int32_t seq) {
  if (seq < 0 || seq >= kv->opt.max_seqs || !kv->seqs[seq].live) return;
  struct qq_kv_seq_state *sq = &kv->seqs[seq];
  while (sq->n_blocks > 0) kv->free_list[kv->n_free++] = sq->blocks[--sq->n_blocks];
  sq->live = false;
  sq->len = 0;
}

qq_status qq_kv_seq_fork(qq_kv_cache *kv, int32_t src, int32_t n_tokens, int32_t *seq, qq_error *err) {
  if (src < 0 || src >= kv->opt.max_seqs || !kv->seqs[src].live)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "kv fork: sequence %d is not open", src);
  if (n_tokens < 0 || n_tokens > kv->seqs[src].len)
    return qq_error_set(err, QQ_ERR_INVALID_ARG, "kv fork: %d tokens requested, sequence %d holds %d", n_tokens, src,
                        kv->seqs[src].len);
  const int32_t bt = kv->opt.block_tokens, need = (n_tokens + bt - 1) / bt;
  if (need > kv->n_free)
    return qq_error_set(err, QQ_ERR_EXHAUSTED, "kv fork: %d blocks needed, %d free", need, kv->n_free);
  qq_status st = qq_kv_seq_open(kv, seq, err);
  if (st != QQ_OK) return st;
  struct qq_kv_seq_state *d = &kv->seqs[*seq];
  while (d->n_blocks < need) d->blocks[d->n_blocks++] = kv->free_list[--kv->n_free];
  const qq_config *c = &kv->m->cfg;
  qq_attn_params p = {.n_heads = c->num_heads, .n_kv_heads = c->num_kv_heads, .head_dim = c->head_dim,
                      .block_tokens = bt, .scale = 1.0f};
  for (int32_t l = 0; l < c->num_layers && n_tokens > 0; l++) {
    st = qq_op_kv_copy(kv->m->be, &p, kv->k[l], kv->v[l], kv->seqs[src].blocks, d->blocks, n_tokens, err);
    if (st != QQ_OK) {
      qq_kv_seq_close(kv, *seq);
      return st;
    }
  }
  d->len = n_tokens;
  return QQ_OK;
}

int32_t qq_kv_seq_len(const qq_kv_cache *kv, int32_t seq) {
  if (seq < 0 || seq >= kv->opt.max_seqs || !kv->seqs[seq].live) return -1;
  return kv->seqs[seq].len;
}
int32_t qq_kv_free_blocks(const qq_kv_cache *kv) { return kv->n_free; }
int32_t qq_kv_total_blocks(const qq_kv_cache *kv) { return kv->opt.n_blocks; }
int32_t qq_kv_block_tokens(const qq_kv_cache *kv) { return kv->opt.block_tokens; }
