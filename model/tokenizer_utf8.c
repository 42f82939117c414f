/* tokenizer_utf8.c — UTF-8 validation and lossy decoding with Rust's exact rules (what Hugging Face
 * `tokenizers` uses), the character classes the added-token matcher needs, Unicode normalization
 * through utf8proc, and the GPT-2 bytes-to-unicode map. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer_internal.h"

/* Width of the sequence a lead byte starts (0: not a lead byte), as Rust's utf8_char_width. */
static inline int lead_width(uint8_t b) {
  if (b < 0x80) return 1;
  if (b < 0xc2) return 0;
  if (b < 0xe0) return 2;
  if (b < 0xf0) return 3;
  if (b < 0xf5) return 4;
  return 0;
}

/* Valid range of the second byte after lead byte b (the first continuation is restricted for
 * E0/ED/F0/F4 to exclude overlongs, surrogates and code points above U+10FFFF). */
static inline void second_range(uint8_t b, uint8_t *lo, uint8_t *hi) {
  *lo = 0x80;
  *hi = 0xbf;
  if (b == 0xe0) *lo = 0xa0;
  else if (b == 0xed) *hi = 0x9f;
  else if (b == 0xf0) *lo = 0x90;
  else if (b == 0xf4) *hi = 0x8f;
}

/* Length of the valid sequence at s[0..n): > 0 when complete and valid; otherwise -(bytes that form
 * a valid but incomplete prefix or the invalid subpart, at least 1); *incomplete is set when the
 * sequence is a valid prefix cut short by the end of the input. */
static inline int seq_len(const uint8_t *s, size_t n, bool *incomplete) {
  *incomplete = false;
  int w = lead_width(s[0]);
  if (w == 1) return 1;
  if (w == 0) return -1;
  uint8_t lo, hi;
  second_range(s[0], &lo, &hi);
  for (int k = 1; k < w; k++) {
    if ((size_t)k >= n) {
      *incomplete = true;
      return -k;
    }
    uint8_t c = s[k];
    bool ok = k == 1 ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xbf);
    if (!ok) return -k;
  }
  return w;
}

size_t qq_tok_utf8_valid_prefix(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    /* ASCII fast path, 8 bytes at a time. */
    while (i + 8 <= n) {
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (w & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= n) break;
    if (s[i] < 0x80) {
      i++;
      continue;
    }
    bool inc;
    int l = seq_len(s + i, n - i, &inc);
    if (l <= 0) return i;
    i += (size_t)l;
  }
  return n;
}

int32_t qq_tok_utf8_decode(const uint8_t *s, size_t n, size_t *len) {
  uint8_t b = s[0];
  if (b < 0x80 || n < 2) {
    *len = 1;
    return b;
  }
  if (b < 0xe0) {
    *len = 2;
    return ((b & 0x1f) << 6) | (s[1] & 0x3f);
  }
  if (b < 0xf0 || n < 4) {
    *len = 3;
    return ((b & 0x0f) << 12) | ((s[1] & 0x3f) << 6) | (s[2] & 0x3f);
  }
  *len = 4;
  return ((b & 0x07) << 18) | ((s[1] & 0x3f) << 12) | ((s[2] & 0x3f) << 6) | (s[3] & 0x3f);
}

size_t qq_tok_utf8_encode(int32_t cp, char out[4]) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xe0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  out[0] = (char)(0xf0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
  out[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

static const char REPLACEMENT[3] = {(char)0xef, (char)0xbf, (char)0xbd}; /* U+FFFD */

size_t qq_tok_utf8_lossy(const uint8_t *s, size_t n, bool final, qq_tok_buf *out, bool *ok) {
  *ok = true;
  size_t i = 0, run = 0; /* run: start of the pending valid stretch */
  while (i < n) {
    if (s[i] < 0x80) {
      i++;
      continue;
    }
    bool inc;
    int l = seq_len(s + i, n - i, &inc);
    if (l > 0) {
      i += (size_t)l;
      continue;
    }
    if (inc && !final) break; /* wait for the rest of the character */
    if (!qq_tok_buf_append(out, s + run, i - run) || !qq_tok_buf_append(out, REPLACEMENT, 3)) {
      *ok = false;
      return 0;
    }
    i += (size_t)(-l);
    run = i;
  }
  if (!qq_tok_buf_append(out, s + run, i - run)) *ok = false;
  return i;
}

bool qq_tok_is_whitespace(int32_t c) {
  return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
         c == 0x3000;
}

bool qq_tok_is_word(int32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  if (c == 0x200c || c == 0x200d) return true;
  switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

/* Lead bytes from which a form can change text. NFC: every code point below U+0300 is NFC_QC=Yes
 * with combining class 0 and is never the second half of a canonical composition, so text whose
 * bytes are all < 0xCC (U+0300 encodes as CC 80) is already NFC. The other forms: ASCII only. */
static bool may_change(qq_tok_unorm form, const uint8_t *s, size_t n) {
  uint8_t limit = form == QQ_TOK_NFC ? 0xcc : 0x80;
  for (size_t i = 0; i < n; i++)
    if (s[i] >= limit) return true;
  return false;
}

qq_status qq_tok_unicode_normalize(qq_tok_unorm form, const char *s, size_t n, qq_tok_buf *out) {
  if (!may_change(form, (const uint8_t *)s, n)) return qq_tok_buf_append(out, s, n) ? QQ_OK : QQ_ERR_NOMEM;
  int flags = UTF8PROC_STABLE;
  switch (form) {
    case QQ_TOK_NFC: flags |= UTF8PROC_COMPOSE; break;
    case QQ_TOK_NFD: flags |= UTF8PROC_DECOMPOSE; break;
    case QQ_TOK_NFKC: flags |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case QQ_TOK_NFKD: flags |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
  }
  utf8proc_uint8_t *dst = NULL;
  utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, (utf8proc_option_t)flags);
  if (r < 0) {
    free(dst);
    return r == UTF8PROC_ERROR_NOMEM ? QQ_ERR_NOMEM : QQ_ERR_INVALID_ARG;
  }
  bool ok = qq_tok_buf_append(out, dst, (size_t)r);
  free(dst);
  return ok ? QQ_OK : QQ_ERR_NOMEM;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes to
 * U+0100 + k in byte order. */
static inline bool byte_is_self(int b) {
  return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

/* The 68 other bytes, in order: 0x00-0x20 (33), 0x7F-0xA0 (34), 0xAD (1). */
int32_t qq_tok_byte_to_cp(uint8_t b) {
  if (byte_is_self(b)) return b;
  if (b <= 0x20) return 0x100 + b;
  if (b >= 0x7f && b <= 0xa0) return 0x100 + 33 + (b - 0x7f);
  return 0x100 + 67; /* 0xAD */
}

int qq_tok_cp_to_byte(int32_t cp) {
  if (cp < 0x100) return cp >= 0 && byte_is_self(cp) ? cp : -1;
  int k = cp - 0x100;
  if (k < 33) return k;
  if (k < 67) return 0x7f + (k - 33);
  if (k == 67) return 0xad;
  return -1;
}
