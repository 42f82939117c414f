/* cmd_detokenize.c — `qquant detokenize`: token ids on stdin -> text on stdout. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: qquant detokenize --model DIR [--skip-special]\n\n"
          "Reads token ids on stdin, as a JSON array ([1, 2, 3]) or separated by white space, and prints\n"
          "the decoded text exactly (no newline is added).\n\n"
          "  --model DIR      model folder holding tokenizer.json, or the tokenizer.json file itself\n"
          "  --skip-special   leave special tokens (BOS, <|im_end|>, ...) out of the text\n");
}

/* Parses "[1, 2]" or "1 2" into ids; prints what is wrong and returns false otherwise. */
static bool parse_ids(char *s, qq_token_ids *ids) {
  char *p = s;
  while (isspace((unsigned char)*p)) p++;
  bool bracket = *p == '[';
  if (bracket) p++;
  bool need_sep = false, closed = false;
  for (;;) {
    while (isspace((unsigned char)*p)) p++;
    if (!*p) break;
    if (bracket && *p == ']') {
      closed = true;
      p++;
      while (isspace((unsigned char)*p)) p++;
      if (*p) {
        fprintf(stderr, "qquant detokenize: unexpected text after ']': '%.20s'\n", p);
        return false;
      }
      break;
    }
    if (bracket && need_sep) {
      if (*p != ',') {
        fprintf(stderr, "qquant detokenize: expected ',' or ']' at '%.20s'\n", p);
        return false;
      }
      p++;
      while (isspace((unsigned char)*p)) p++;
    }
    char *end = NULL;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (end == p || errno || v < 0 || v > INT32_MAX ||
        (*end && !isspace((unsigned char)*end) && *end != ',' && *end != ']')) {
      fprintf(stderr, "qquant detokenize: '%.20s' is not a token id (a whole number >= 0)\n", p);
      return false;
    }
    if (ids->n == ids->cap) {
      ids->cap = ids->cap ? ids->cap * 2 : 256;
      int32_t *q = realloc(ids->ids, ids->cap * sizeof *q);
      if (!q) return false;
      ids->ids = q;
    }
    ids->ids[ids->n++] = (int32_t)v;
    p = end;
    need_sep = true;
  }
  if (bracket && !closed) {
    fprintf(stderr, "qquant detokenize: the JSON array has no closing ']'\n");
    return false;
  }
  return true;
}

static int run(int argc, char **argv) {
  const char *model = NULL;
  bool skip = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--model") && i + 1 < argc) {
      model = argv[++i];
    } else if (!strcmp(a, "--skip-special")) {
      skip = true;
    } else {
      fprintf(stderr, "qquant detokenize: unknown or incomplete option '%s'\n\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!model) {
    fprintf(stderr, "qquant detokenize: --model DIR is required\n\n");
    usage(stderr);
    return 2;
  }
  size_t cap = 1 << 16, n = 0;
  char *in = malloc(cap + 1);
  for (size_t r; in && (r = fread(in + n, 1, cap - n, stdin)) > 0;) {
    n += r;
    if (n == cap) {
      char *q = realloc(in, (cap *= 2) + 1);
      if (!q) {
        free(in);
        in = NULL;
      }
      in = q;
    }
  }
  if (!in) {
    fprintf(stderr, "qquant detokenize: cannot read stdin\n");
    return 1;
  }
  in[n] = '\0';
  if (strlen(in) != n) {
    fprintf(stderr, "qquant detokenize: stdin holds a NUL byte; expected token ids\n");
    free(in);
    return 1;
  }
  qq_token_ids ids = {0};
  if (!parse_ids(in, &ids)) {
    free(in);
    qq_token_ids_free(&ids);
    return 1;
  }
  free(in);
  qq_error err = {0};
  qq_tokenizer *tok = NULL;
  if (qq_tokenizer_load(model, &tok, &err) != QQ_OK) {
    fprintf(stderr, "qquant detokenize: %s\n", err.msg);
    qq_token_ids_free(&ids);
    return 1;
  }
  char *text = NULL;
  size_t len = 0;
  int rc = 0;
  if (qq_tokenizer_decode(tok, ids.ids, ids.n, skip, &text, &len, &err) != QQ_OK) {
    fprintf(stderr, "qquant detokenize: %s\n", err.msg);
    rc = 1;
  } else if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0) {
    rc = 1;
  }
  free(text);
  qq_token_ids_free(&ids);
  qq_tokenizer_free(tok);
  return rc;
}

const qq_command qq_cmd_detokenize = {"detokenize", "token ids on stdin -> text (tokenizer.json of a model)", run};
