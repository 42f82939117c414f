/* cmd_tokenize.c — `qquant tokenize`: text on stdin -> token ids on stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: qquant tokenize --model DIR [--json] [--no-special] [--add-special]\n\n"
          "Reads UTF-8 text on stdin (all of it, byte for byte: `echo` adds a newline, `printf` does not)\n"
          "and prints its token ids, separated by spaces, on one line.\n\n"
          "  --model DIR     model folder holding tokenizer.json, or the tokenizer.json file itself\n"
          "  --json          print a JSON array instead\n"
          "  --no-special    treat special-token text such as <|im_start|> as plain text\n"
          "  --add-special   apply the tokenizer's post-processor (e.g. Llama's BOS)\n");
}

/* Reads all of a stream into a heap buffer. */
static char *read_all(FILE *f, size_t *len) {
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  if (!buf) return NULL;
  for (;;) {
    if (n == cap) {
      char *p = realloc(buf, cap *= 2);
      if (!p) {
        free(buf);
        return NULL;
      }
      buf = p;
    }
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (r == 0) break;
  }
  if (ferror(f)) {
    free(buf);
    return NULL;
  }
  *len = n;
  return buf;
}

static int run(int argc, char **argv) {
  const char *model = NULL;
  bool json = false;
  qq_encode_options o = qq_encode_options_default();
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--model") && i + 1 < argc) {
      model = argv[++i];
    } else if (!strcmp(a, "--json")) {
      json = true;
    } else if (!strcmp(a, "--no-special")) {
      o.parse_special = false;
    } else if (!strcmp(a, "--add-special")) {
      o.add_special = true;
    } else {
      fprintf(stderr, "qquant tokenize: unknown or incomplete option '%s'\n\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!model) {
    fprintf(stderr, "qquant tokenize: --model DIR is required\n\n");
    usage(stderr);
    return 2;
  }
  qq_error err = {0};
  qq_tokenizer *tok = NULL;
  if (qq_tokenizer_load(model, &tok, &err) != QQ_OK) {
    fprintf(stderr, "qquant tokenize: %s\n", err.msg);
    return 1;
  }
  size_t len = 0;
  char *text = read_all(stdin, &len);
  if (!text) {
    fprintf(stderr, "qquant tokenize: cannot read stdin\n");
    qq_tokenizer_free(tok);
    return 1;
  }
  qq_token_ids ids = {0};
  int rc = 0;
  if (qq_tokenizer_encode(tok, text, len, &o, &ids, &err) != QQ_OK) {
    fprintf(stderr, "qquant tokenize: %s\n", err.msg);
    rc = 1;
  } else {
    if (json) putchar('[');
    for (size_t i = 0; i < ids.n; i++) printf(i ? (json ? ", %d" : " %d") : "%d", ids.ids[i]);
    puts(json ? "]" : "");
  }
  qq_token_ids_free(&ids);
  free(text);
  qq_tokenizer_free(tok);
  if (fflush(stdout) != 0) rc = 1;
  return rc;
}

const qq_command qq_cmd_tokenize = {"tokenize", "text on stdin -> token ids (tokenizer.json of a model)", run};
