#!/usr/bin/env bash
# CPU emulation of elementwise.cu's per-row int8 quantization (see harness_q8.cpp):
#   bash tools/cuda-emu/build_q8.sh [--inject N] && /tmp/cuda-emu/harness_q8 [seed]
# --inject N builds a deliberately broken register kernel (transform_q8.py: 1 a thread's last vector
# not stored, 2 the maximum skips an element per vector, 3 truncation instead of rounding) into
# /tmp/cuda-emu/harness_q8_bugN, to check that the harness reports it.
set -euo pipefail
D=$(cd "$(dirname "$0")" && pwd)
R=$(cd "$D/../.." && pwd)
O=${QQ_EMU_OUT:-/tmp/cuda-emu}
INJ=0
if [ "${1:-}" = "--inject" ]; then INJ=$2; shift 2; fi
OUTB="$O/harness_q8"; [ "$INJ" != 0 ] && OUTB="$O/harness_q8_bug$INJ"
mkdir -p "$O/q8$INJ"
python3 "$D/transform_q8.py" "$R/kernels/cuda/elementwise.cu" "$O/q8$INJ/q8_t.cc" --inject "$INJ"
g++ -std=c++17 -O2 -g -w -I"$O/q8$INJ" -I"$D" -I"$R/kernels" -I"$R/kernels/cuda" -I"$R/common" -I/usr/local/cuda/include \
  -x c++ "$D/harness_q8.cpp" -x c "$R/common/status.c" -o "$OUTB" -L/usr/local/cuda/lib64 -lcudart -lcrypto
echo "built $OUTB"
