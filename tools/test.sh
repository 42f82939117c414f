#!/usr/bin/env bash
# Runs the whole CPU test suite, as CI does (README: "the tests").
#   1. installs the Debian dependencies (tools/install-deps.sh);
#   2. Release build with -Werror (CUDA code compiled too when nvcc is present), all ctest tests;
#   3. ASan + UBSan build of the same code, the unit and golden tests under the sanitizers;
#   4. libFuzzer targets (clang-14), a few seconds each as a smoke test.
# Environment: QQ_JOBS (parallel build jobs, default nproc), QQ_TEST_STAGES (default "release asan fuzz"),
# QQ_BUILD_PREFIX (build folders PREFIX, PREFIX-asan, PREFIX-fuzz; default "build").
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=${QQ_JOBS:-$(nproc)}
stages=${QQ_TEST_STAGES:-"release asan fuzz"}
b=${QQ_BUILD_PREFIX:-build}
export QQ_FIXTURES=${QQ_FIXTURES:-$(realpath -m "$root/../shared/fixtures")}
if [ ! -d "$QQ_FIXTURES" ]; then
  echo "test.sh: fixtures not found at $QQ_FIXTURES (set QQ_FIXTURES); golden tests will fail" >&2
fi

bash tools/install-deps.sh

t0=$(date +%s)
stage() { echo; echo "=== $1 ($(( $(date +%s) - t0 )) s elapsed)"; }

for s in $stages; do
  case "$s" in
    release)
      stage "release build (-Werror)"
      cmake -S . -B "$b" -DCMAKE_BUILD_TYPE=Release -DQQ_WERROR=ON -DQQ_FIXTURES_DIR="$QQ_FIXTURES" >/dev/null
      cmake --build "$b" -j"$jobs"
      stage "release tests"
      (cd "$b" && ctest --output-on-failure -j"$jobs")  # gpu-labelled tests skip (exit 77) without a GPU
      ;;
    asan)
      stage "ASan+UBSan build"
      cmake -S . -B "$b-asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQQ_WERROR=ON -DQQ_SANITIZE=ON -DQQ_CUDA=OFF \
        -DQQ_FIXTURES_DIR="$QQ_FIXTURES" >/dev/null
      cmake --build "$b-asan" -j"$jobs"
      stage "ASan+UBSan tests"
      (cd "$b-asan" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --output-on-failure -j"$jobs" -LE 'gpu|slow|bench')
      ;;
    fuzz)
      stage "libFuzzer smoke build (clang-14)"
      CC=clang-14 cmake -S . -B "$b-fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQQ_FUZZ=ON -DQQ_CUDA=OFF \
        -DQQ_FIXTURES_DIR="$QQ_FIXTURES" >/dev/null
      cmake --build "$b-fuzz" -j"$jobs"
      stage "libFuzzer smoke runs"
      (cd "$b-fuzz" && ctest --output-on-failure -L fuzz-smoke) || exit 1
      ;;
    *) echo "test.sh: unknown stage $s" >&2; exit 2 ;;
  esac
done
stage "done"
