/* bench-libs: qq_model */
/* bench_tokenizer.c — single-threaded encode throughput of the real Qwen2.5 tokenizer on
 * wikitext2-test.txt (1.29 MB), median of N runs; also the tokenizer load time and decode throughput.
 * Two call shapes: the whole file in one encode call, and each line (with its newline) in its own call,
 * as a program encoding many short documents does.
 * Compare with bench/tokenizer_peer.py (Hugging Face `tokenizers`, one thread) on the same machine.
 *
 *   build/bin/bench_tokenizer [RUNS]        (fixtures from $QQ_FIXTURES or ../shared/fixtures) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  int runs = argc > 1 ? atoi(argv[1]) : 5;
  if (runs < 1 || runs > 1000) runs = 5;
  const char *root = getenv("QQ_FIXTURES");
  if (!root || !*root) root = "../shared/fixtures";
  char tok_path[4096], text_path[4096];
  snprintf(tok_path, sizeof tok_path, "%s/tokenizers/qwen2.5/tokenizer.json", root);
  snprintf(text_path, sizeof text_path, "%s/corpora/wikitext2-test.txt", root);
  qq_error err = {0};
  char *text = NULL;
  size_t len = 0;
  if (qq_read_file(text_path, &text, &len, &err) != QQ_OK) {
    fprintf(stderr, "bench_tokenizer: %s (set QQ_FIXTURES)\n", err.msg);
    return 1;
  }
  double *load = calloc((size_t)runs, sizeof *load), *enc = calloc((size_t)runs, sizeof *enc),
         *dec = calloc((size_t)runs, sizeof *dec), *enc_lines = calloc((size_t)runs, sizeof *enc_lines);
  qq_tokenizer *tok = NULL;
  for (int r = 0; r < runs; r++) {
    qq_tokenizer_free(tok);
    double t0 = qq_now_sec();
    if (qq_tokenizer_load(tok_path, &tok, &err) != QQ_OK) {
      fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
      return 1;
    }
    load[r] = qq_now_sec() - t0;
  }
  qq_encode_options o = qq_encode_options_default();
  size_t n_ids = 0;
  for (int r = 0; r < runs; r++) {
    qq_token_ids ids = {0};
    double t0 = qq_now_sec();
    if (qq_tokenizer_encode(tok, text, len, &o, &ids, &err) != QQ_OK) {
      fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
      return 1;
    }
    enc[r] = (double)len / (qq_now_sec() - t0) / 1e6;
    n_ids = ids.n;
    char *out = NULL;
    size_t out_len = 0;
    t0 = qq_now_sec();
    if (qq_tokenizer_decode(tok, ids.ids, ids.n, false, &out, &out_len, &err) != QQ_OK) {
      fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
      return 1;
    }
    dec[r] = (double)out_len / (qq_now_sec() - t0) / 1e6;
    if (out_len != len || memcmp(out, text, len)) fprintf(stderr, "bench_tokenizer: WARNING decode differs from the text\n");
    free(out);
    qq_token_ids_free(&ids);
  }
  /* Line by line: every line including its '\n' (so the bytes are the same as the whole file's). */
  size_t n_line_ids = 0, n_lines = 0;
  for (int r = 0; r < runs; r++) {
    qq_token_ids ids = {0};
    size_t total = 0;
    n_lines = 0;
    double t0 = qq_now_sec();
    for (size_t a = 0; a < len;) {
      const char *nl = memchr(text + a, '\n', len - a);
      size_t b = nl ? (size_t)(nl - text) + 1 : len;
      ids.n = 0;
      if (qq_tokenizer_encode(tok, text + a, b - a, &o, &ids, &err) != QQ_OK) {
        fprintf(stderr, "bench_tokenizer: line at byte %zu: %s\n", a, err.msg);
        return 1;
      }
      total += ids.n;
      n_lines++;
      a = b;
    }
    enc_lines[r] = (double)len / (qq_now_sec() - t0) / 1e6;
    n_line_ids = total;
    qq_token_ids_free(&ids);
  }
  qsort(enc_lines, (size_t)runs, sizeof *enc_lines, cmp_double);
  qsort(load, (size_t)runs, sizeof *load, cmp_double);
  qsort(enc, (size_t)runs, sizeof *enc, cmp_double);
  qsort(dec, (size_t)runs, sizeof *dec, cmp_double);
  printf("qquant tokenizer, Qwen2.5 tokenizer.json, %s (%zu bytes -> %zu ids), %d runs, 1 thread\n", text_path, len,
         n_ids, runs);
  printf("load    median %.3f s   (min %.3f, max %.3f)\n", load[runs / 2], load[0], load[runs - 1]);
  printf("encode  median %.2f MB/s (min %.2f, max %.2f)\n", enc[runs / 2], enc[0], enc[runs - 1]);
  printf("decode  median %.2f MB/s (min %.2f, max %.2f)\n", dec[runs / 2], dec[0], dec[runs - 1]);
  printf("encode per line (%zu calls -> %zu ids)  median %.2f MB/s (min %.2f, max %.2f)\n", n_lines, n_line_ids,
         enc_lines[runs / 2], enc_lines[0], enc_lines[runs - 1]);
  qq_tokenizer_free(tok);
  free(text);
  free(load);
  free(enc);
  free(dec);
  free(enc_lines);
  return 0;
}
