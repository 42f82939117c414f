/* cpu.c — CPU feature detection for OpenBLAS core selection, default thread count. */
#include "qq_common.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool has_flag(const char *flags, const char *name) {
  size_t n = strlen(name);
  for (const char *p = flags; (p = strstr(p, name)) != NULL; p += n) {
    bool start_ok = (p == flags) || p[-1] == ' ' || p[-1] == '\t';
    bool end_ok = p[n] == ' ' || p[n] == '\n' || p[n] == '\0';
    if (start_ok && end_ok) return true;
  }
  return false;
}

const char *qq_cpu_openblas_coretype_for_cpu(void) {
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return NULL;
  char line[8192];
  const char *choice = NULL;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "flags", 5) != 0) continue;
    const char *colon = strchr(line, ':');
    if (!colon) break;
    const char *flags = colon + 1;
    if (has_flag(flags, "avx512f") && has_flag(flags, "avx512bw") && has_flag(flags, "avx512vl") &&
        has_flag(flags, "avx512dq"))
      choice = "SKYLAKEX";
    else if (has_flag(flags, "avx2") && has_flag(flags, "fma"))
      choice = "HASWELL";
    else if (has_flag(flags, "avx"))
      choice = "SANDYBRIDGE";
    break;
  }
  fclose(f);
  return choice;
}

int qq_cpu_default_threads(void) {
  const char *env = getenv("QQ_THREADS");
  if (env && *env) {
    int n = atoi(env);
    if (n > 0) return n;
  }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}
