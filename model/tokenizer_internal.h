/* tokenizer_internal.h — private declarations shared by the tokenizer sources of model/:
 *   tokenizer_hash.c    open-addressing hash tables (token string -> id, merge pair -> rank)
 *   tokenizer_utf8.c    UTF-8 validation, lossy decoding, character classes, NFC/NFKC
 *   tokenizer_load.c    tokenizer.json -> qq_tokenizer (every supported field, clear errors)
 *   tokenizer_pretok.c  added-token matching, normalizers, pre-tokenizers
 *   tokenizer_bpe.c     the BPE model (merge loop, byte fallback, unk) and the encode pipeline
 *   tokenizer_decode.c  decoders as streaming stages: full decode and qq_detokenizer
 *
 * The pipeline mirrors Hugging Face `tokenizers` (TokenizerImpl::encode):
 *   raw text -> split on added tokens (normalized=false) -> normalizer per piece -> split on added
 *   tokens (normalized=true) -> pre-tokenizer -> BPE per word -> truncation -> post-processor ->
 *   padding.
 */
#ifndef QQ_TOKENIZER_INTERNAL_H
#define QQ_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* Largest token id accepted in a tokenizer.json (the id -> token table is dense). Real vocabularies
 * are below 2^18; 2^24 keeps a hostile file from asking for gigabytes. */
#define QQ_TOK_MAX_ID (1 << 24)

/* ---- hash tables (tokenizer_hash.c) ------------------------------------------------------------ */

uint64_t qq_tok_hash_bytes(const void *p, size_t n);

/* String -> int32 map. Keys are (offset, length) pairs into a byte pool the caller passes to every
 * call, so one table works over the tokenizer's string pool or over a per-call arena. */
typedef struct qq_tok_smap {
  uint32_t *hash; /* per slot; 0 = empty (stored hashes are forced non-zero) */
  uint32_t *koff;
  uint32_t *klen;
  int32_t *val;
  uint32_t mask;  /* capacity - 1 (capacity is a power of two) */
  uint32_t count;
} qq_tok_smap;

bool qq_tok_smap_init(qq_tok_smap *m, size_t expected);
void qq_tok_smap_free(qq_tok_smap *m);
/* Value of key s[0..n), or -1. */
int32_t qq_tok_smap_get(const qq_tok_smap *m, const char *pool, const char *s, size_t n);
/* Inserts or overwrites. The key bytes must already be at pool[off..off+n). False when full
 * (the table never grows past 50 % load: callers size it up front). */
bool qq_tok_smap_put(qq_tok_smap *m, const char *pool, uint32_t off, uint32_t n, int32_t val);

/* Merge pair (left id, right id) -> (rank, merged id). */
typedef struct qq_tok_merge_val {
  int32_t rank;
  int32_t id;
} qq_tok_merge_val;

typedef struct qq_tok_mmap {
  uint64_t *key; /* UINT64_MAX = empty */
  qq_tok_merge_val *val;
  uint32_t mask;
  uint32_t count;
} qq_tok_mmap;

bool qq_tok_mmap_init(qq_tok_mmap *m, size_t expected);
void qq_tok_mmap_free(qq_tok_mmap *m);
void qq_tok_mmap_put(qq_tok_mmap *m, int32_t a, int32_t b, qq_tok_merge_val v); /* overwrites */

static inline uint64_t qq_tok_pair_key(int32_t a, int32_t b) {
  return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}
static inline uint64_t qq_tok_mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}
/* Looks up a pair; NULL if the pair never merges. Inline: it is the inner loop of BPE. */
static inline const qq_tok_merge_val *qq_tok_mmap_get(const qq_tok_mmap *m, int32_t a, int32_t b) {
  uint64_t k = qq_tok_pair_key(a, b);
  uint32_t i = (uint32_t)qq_tok_mix64(k) & m->mask;
  for (;;) {
    uint64_t s = m->key[i];
    if (s == k) return &m->val[i];
    if (s == UINT64_MAX) return NULL;
    i = (i + 1) & m->mask;
  }
}

/* ---- growable byte buffer ---------------------------------------------------------------------- */

typedef struct qq_tok_buf {
  char *p;
  size_t n;
  size_t cap;
} qq_tok_buf;

bool qq_tok_buf_reserve(qq_tok_buf *b, size_t extra);
bool qq_tok_buf_append(qq_tok_buf *b, const void *s, size_t n);
void qq_tok_buf_free(qq_tok_buf *b);

/* ---- UTF-8 and Unicode helpers (tokenizer_utf8.c) ---------------------------------------------- */

/* Length of the valid UTF-8 prefix of s (strict: no overlongs, surrogates or > U+10FFFF). */
size_t qq_tok_utf8_valid_prefix(const uint8_t *s, size_t n);
static inline bool qq_tok_utf8_valid(const void *s, size_t n) {
  return qq_tok_utf8_valid_prefix((const uint8_t *)s, n) == n;
}
/* Decodes one code point of valid UTF-8 at s; *len receives its byte length. */
int32_t qq_tok_utf8_decode(const uint8_t *s, size_t n, size_t *len);
/* Encodes cp; returns the byte count (1..4). */
size_t qq_tok_utf8_encode(int32_t cp, char out[4]);
/* Appends the lossy decoding of s (Rust String::from_utf8_lossy: each maximal invalid subpart becomes
 * U+FFFD). When final is false an incomplete but so-far valid sequence at the end is left undecoded;
 * returns the number of input bytes consumed. */
size_t qq_tok_utf8_lossy(const uint8_t *s, size_t n, bool final, qq_tok_buf *out, bool *ok);
bool qq_tok_is_whitespace(int32_t cp); /* Unicode White_Space (Rust char::is_whitespace) */
bool qq_tok_is_word(int32_t cp);       /* regex \w: alphabetic, marks, decimal digits, Pc, joiners */

typedef enum qq_tok_unorm { QQ_TOK_NFC, QQ_TOK_NFD, QQ_TOK_NFKC, QQ_TOK_NFKD } qq_tok_unorm;
/* Appends the normalization form of s to out (utf8proc). */
qq_status qq_tok_unicode_normalize(qq_tok_unorm form, const char *s, size_t n, qq_tok_buf *out);

/* ---- tokenizer model ---------------------------------------------------------------------------- */

typedef struct qq_tok_added {
  char *content;
  size_t len;
  char *norm;     /* content after the normalizer (normalized tokens only) */
  size_t norm_len;
  int32_t id;
  bool single_word, lstrip, rstrip, normalized, special;
} qq_tok_added;

/* A set of added tokens matched leftmost-longest, like Aho-Corasick MatchKind::LeftmostLongest. */
typedef struct qq_tok_matcher {
  int32_t *idx;          /* indices into tok->added, grouped by first byte, longest first */
  uint32_t start[257];   /* idx[start[b] .. start[b+1]) begin with byte b */
  bool use_norm;         /* match the normalized content */
  size_t n;
} qq_tok_matcher;

typedef enum qq_tok_norm_kind {
  QQ_NORM_UNICODE, /* NFC / NFD / NFKC / NFKD */
  QQ_NORM_PREPEND,
  QQ_NORM_REPLACE,
  QQ_NORM_STRIP,
} qq_tok_norm_kind;

typedef struct qq_tok_norm {
  qq_tok_norm_kind kind;
  qq_tok_unorm form;
  char *a; /* Prepend: the prefix; Replace: the literal pattern (NULL when re is set) */
  size_t a_len;
  char *b; /* Replace: the content */
  size_t b_len;
  pcre2_code *re;
  bool left, right; /* Strip */
} qq_tok_norm;

typedef enum qq_tok_split_behavior {
  QQ_SPLIT_REMOVED,
  QQ_SPLIT_ISOLATED,
  QQ_SPLIT_MERGED_WITH_PREVIOUS,
  QQ_SPLIT_MERGED_WITH_NEXT,
  QQ_SPLIT_CONTIGUOUS,
} qq_tok_split_behavior;

typedef enum qq_tok_pre_kind { QQ_PRE_SPLIT, QQ_PRE_BYTELEVEL, QQ_PRE_METASPACE } qq_tok_pre_kind;

typedef enum qq_tok_prepend { QQ_PREPEND_ALWAYS, QQ_PREPEND_FIRST, QQ_PREPEND_NEVER } qq_tok_prepend;

typedef struct qq_tok_pre {
  qq_tok_pre_kind kind;
  /* Split (and ByteLevel use_regex, with the GPT-2 pattern) */
  pcre2_code *re;
  char *lit; /* literal pattern when re is NULL */
  size_t lit_len;
  qq_tok_split_behavior behavior;
  bool invert;
  /* ByteLevel */
  bool add_prefix_space;
  /* Metaspace */
  char repl[8];
  size_t repl_len;
  qq_tok_prepend prepend;
  bool split;
} qq_tok_pre;

typedef enum qq_tok_dec_kind {
  QQ_DEC_BYTELEVEL,
  QQ_DEC_REPLACE,
  QQ_DEC_BYTEFALLBACK,
  QQ_DEC_FUSE,
  QQ_DEC_STRIP,
  QQ_DEC_METASPACE,
  QQ_DEC_JOIN_SPACE, /* no decoder: HF joins the tokens with " " */
} qq_tok_dec_kind;

typedef struct qq_tok_dec {
  qq_tok_dec_kind kind;
  bool fused_input; /* the stage sees pieces of one fused string rather than whole tokens */
  char *a;          /* Replace pattern / Strip content / Metaspace replacement */
  size_t a_len;
  char *b; /* Replace content */
  size_t b_len;
  int32_t start, stop; /* Strip */
  bool strip_first;    /* Metaspace: the first token loses its replacement characters */
} qq_tok_dec;

struct qq_tokenizer {
  char *name;

  /* Token strings: id -> pool[tok_off[id] .. + tok_len[id]); tok_len == UINT32_MAX for holes. */
  char *pool;
  size_t pool_len;
  uint32_t *tok_off;
  uint32_t *tok_len;
  uint8_t *flags; /* per id: QQ_TOK_F_* */
  int32_t n_ids;  /* max id + 1 */

  /* BPE model */
  qq_tok_smap vocab; /* model vocab (not added tokens) */
  int32_t vocab_len;
  qq_tok_mmap merges;
  int32_t unk_id; /* -1 if none */
  bool fuse_unk, byte_fallback, ignore_merges;
  int32_t byte_fallback_id[256]; /* "<0xXX>" ids, -1 if absent */
  bool byte_level;               /* words go through the GPT-2 bytes-to-unicode map before BPE */
  int32_t byte_sym[256];         /* byte-level: vocab id of the mapped character of each byte */

  /* Added tokens */
  qq_tok_added *added;
  size_t n_added;
  qq_tok_smap added_map; /* content -> id */
  qq_tok_matcher match_raw, match_norm;

  /* Pipeline */
  qq_tok_norm *norm;
  size_t n_norm;
  qq_tok_pre *pre;
  size_t n_pre;
  qq_tok_dec *dec;
  size_t n_dec;

  /* Post-processor: ids around the sequence when add_special is set. */
  int32_t *post_before, *post_after;
  size_t n_post_before, n_post_after;

  /* Truncation / padding (single sequence). */
  int64_t trunc_max; /* -1: none */
  bool trunc_left;
  int64_t pad_fixed; /* -1: BatchLongest (no padding for one sequence) */
  int64_t pad_multiple;
  bool pad_enabled, pad_left;
  int32_t pad_id;
};

#define QQ_TOK_F_ADDED 1u
#define QQ_TOK_F_SPECIAL 2u

static inline bool qq_tok_has_id(const qq_tokenizer *t, int32_t id) {
  return id >= 0 && id < t->n_ids && t->tok_len[id] != UINT32_MAX;
}
static inline const char *qq_tok_str(const qq_tokenizer *t, int32_t id, size_t *len) {
  *len = t->tok_len[id];
  return t->pool + t->tok_off[id];
}

/* The GPT-2 bytes-to-unicode table: code point of byte b. */
int32_t qq_tok_byte_to_cp(uint8_t b);
/* Inverse: byte of code point cp, or -1. */
int qq_tok_cp_to_byte(int32_t cp);

/* ---- encode pipeline pieces (tokenizer_pretok.c / tokenizer_bpe.c) ------------------------------ */

/* A piece of a split: [s, e) and whether the pattern matched it. */
typedef struct qq_tok_span {
  size_t s, e;
  bool match;
} qq_tok_span;

typedef struct qq_tok_level {
  qq_tok_buf text; /* text produced by this pre-tokenizer (prefix space, Metaspace replacement) */
  qq_tok_span *spans;
  size_t n_spans, cap_spans;
} qq_tok_level;

typedef struct qq_tok_sym {
  int32_t id;
  int32_t prev, next;
  bool dead;
} qq_tok_sym;

typedef struct qq_tok_heap_item {
  int32_t rank;
  int32_t pos;
  int32_t id;
} qq_tok_heap_item;

/* Per-call scratch state of one encode (thread-safe: nothing is shared between calls). */
typedef struct qq_tok_ctx {
  pcre2_match_data *md;
  qq_tok_level *lvl; /* one per pre-tokenizer */
  size_t n_lvl;
  qq_tok_buf norm;   /* normalized piece */
  qq_tok_buf tmp;    /* mapped word for ignore_merges / missing characters */
  qq_tok_sym *sym;
  size_t cap_sym;
  qq_tok_heap_item *heap;
  size_t cap_heap;
  int32_t *ranks;
  /* Word cache: word bytes -> ids, for the words of this call. */
  bool use_cache;
  qq_tok_smap cache;
  qq_tok_buf cache_keys;
  qq_token_ids cache_ids;
} qq_tok_ctx;

qq_tok_ctx *qq_tok_ctx_create(const qq_tokenizer *tok, size_t text_len);
void qq_tok_ctx_free(qq_tok_ctx *c);

/* Splits [s, s+n) on the tokens of m. Calls on_piece(user, s, n, id, at_origin) for every piece in
 * order (id = -1 for text between added tokens). at_origin: the piece starts the original text. */
typedef qq_status (*qq_tok_piece_fn)(void *user, const char *s, size_t n, int32_t id, bool at_origin);
qq_status qq_tok_split_added(const qq_tokenizer *tok, const qq_tok_matcher *m, bool parse_special,
                             const char *s, size_t n, bool at_origin, qq_tok_piece_fn fn, void *user);

/* Applies the normalizer sequence to s and appends the result to out. */
qq_status qq_tok_normalize(const qq_tokenizer *tok, const char *s, size_t n, qq_tok_buf *out);

/* Runs the pre-tokenizers over one normalized piece and BPE over every word; appends ids. */
qq_status qq_tok_pretokenize_and_bpe(const qq_tokenizer *tok, qq_tok_ctx *c, const char *s, size_t n,
                                     bool at_origin, qq_token_ids *out, qq_error *err);

/* BPE of one word (bytes before the byte-level mapping); appends ids. */
qq_status qq_tok_bpe_word(const qq_tokenizer *tok, qq_tok_ctx *c, const char *w, size_t n,
                          qq_token_ids *out, qq_error *err);

bool qq_tok_ids_push(qq_token_ids *ids, int32_t id);

/* PCRE2 helpers: compile with UTF|UCP and JIT; match with a JIT-stack fallback. */
pcre2_code *qq_tok_regex_compile(const char *pattern, size_t len, char *errbuf, size_t errlen);
int qq_tok_regex_match(const pcre2_code *re, const char *s, size_t n, size_t start,
                       pcre2_match_data *md);

#endif /* QQ_TOKENIZER_INTERNAL_H */
