/* testutil.c — see testutil.h. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *qq_test_fixture(const char *rel) {
  static char path[4096];
  const char *root = getenv("QQ_FIXTURES");
  if (!root || !*root) root = "../shared/fixtures";
  snprintf(path, sizeof path, "%s/%s", root, rel);
  struct stat sb;
  if (stat(path, &sb) != 0) fail_msg("fixture %s not found (looked in %s; set QQ_FIXTURES)", rel, root);
  return path;
}

char *qq_test_tmpdir(const char *tag) {
  const char *base = getenv("TMPDIR");
  if (!base || !*base) base = "/tmp";
  char tmpl[4096];
  snprintf(tmpl, sizeof tmpl, "%s/qqtest-%s-XXXXXX", base, tag);
  char *d = mkdtemp(tmpl);
  if (!d) fail_msg("mkdtemp(%s) failed", tmpl);
  return strdup(d);
}

void qq_test_rmtree(const char *path) {
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
  if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", path);
}

void qq_test_write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f) fail_msg("cannot write %s", path);
  if (len && fwrite(data, 1, len, f) != len) fail_msg("short write to %s", path);
  fclose(f);
}

double qq_test_rel_err(const float *a, const float *b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)a[i] - (double)b[i];
    num += d * d;
    den += (double)b[i] * (double)b[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}
