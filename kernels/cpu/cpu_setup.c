/* cpu_setup.c — correct OpenBLAS's CPU detection when it picked a core without AVX (see kernels.h). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cpu_internal.h"

#ifdef QQ_HAVE_OPENBLAS
#include <cblas.h>

/* Core names (as openblas_get_corename() prints them) whose kernels use AVX or better. */
static bool core_has_avx(const char *name) {
  static const char *const good[] = {"sandybridge", "haswell", "skylakex", "cooperlake", "sapphirerapids",
                                     "zen", "excavator", "steamroller", "piledriver", "bulldozer"};
  for (size_t i = 0; i < QQ_ARRAY_LEN(good); i++)
    if (!strcasecmp(name, good[i])) return true;
  return false;
}

const char *qq_kernels_setup_openblas(char **argv) {
  const char *set = getenv("OPENBLAS_CORETYPE");
  const char *detected = openblas_get_corename();
  if ((set && *set) || !detected || core_has_avx(detected)) return detected;
  const char *choice = qq_cpu_openblas_coretype_for_cpu();
  if (!choice) return detected;
  if (setenv("OPENBLAS_CORETYPE", choice, 1) != 0) return detected;
  if (argv && argv[0]) execv("/proc/self/exe", argv); /* returns only on failure: keep going */
  return detected;
}
#else
const char *qq_kernels_setup_openblas(char **argv) {
  (void)argv;
  return NULL;
}
#endif
