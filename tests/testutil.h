/* testutil.h — helpers shared by the cmocka tests: fixture paths, temp dirs, numeric comparison. */
#ifndef QQ_TESTUTIL_H
#define QQ_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs the headers above first. */
#include <cmocka.h>

#include "qq_common.h"

/* Path under the shared fixtures ("models/qwen2-tiny-lm"). Fails the test, naming the folder it
 * looked in, when the fixtures are missing. The string is static: copy it before the next call. */
const char *qq_test_fixture(const char *rel);
/* Creates a fresh empty temporary directory (under $TMPDIR or /tmp); the path is heap-allocated. */
char *qq_test_tmpdir(const char *tag);
/* Removes a directory tree (for test cleanup). */
void qq_test_rmtree(const char *path);
/* Writes len bytes to path; fails the test on error. */
void qq_test_write_file(const char *path, const void *data, size_t len);
/* ||a - b|| / ||b|| in double. */
double qq_test_rel_err(const float *a, const float *b, size_t n);
/* Asserts that a status is QQ_OK, printing the error message otherwise. */
#define QQ_ASSERT_OK(expr, errp)                                                               \
  do {                                                                                         \
    qq_status st_ = (expr);                                                                    \
    if (st_ != QQ_OK) fail_msg("%s -> %s: %s", #expr, qq_status_name(st_), (errp)->msg);       \
  } while (0)

#endif
