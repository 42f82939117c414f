#!/usr/bin/env bash
# CPU emulation of kernels/cuda/gemm_wq.cu's skinny path (see harness_wq.cpp):
#   bash tools/cuda-emu/build_wq.sh [--inject N] && /tmp/cuda-emu/harness_wq [seed] [case]
# --inject N builds a deliberately broken kernel (transform_wq.py: 1 GCH-2 change parity, 2 cp.async wait,
# 3 split-K range, 4 GCH-0 group counter, 5 dummy first group, 6 NT-2 x row of the second token tile,
# 7 NT-2 split-K slot of the second token tile, 8 tokens past m stored, 9 xs: no barrier per stage,
# 10 xs: x columns past kx copied) into /tmp/cuda-emu/harness_wq_bugN,
# to check that the harness reports it.
set -euo pipefail
D=$(cd "$(dirname "$0")" && pwd)
R=$(cd "$D/../.." && pwd)
O=${QQ_EMU_OUT:-/tmp/cuda-emu}
mkdir -p "$O"
INJ=0
if [ "${1:-}" = "--inject" ]; then INJ=$2; shift 2; fi
SRC=${1:-$R/kernels/cuda/gemm_wq.cu}
OUTB="$O/harness_wq"; [ "$INJ" != 0 ] && OUTB="$O/harness_wq_bug$INJ"
mkdir -p "$O/wq$INJ"
python3 "$D/transform_wq.py" "$SRC" "$O/wq$INJ/wq_t.cc" --inject "$INJ"
g++ -std=c++17 -O2 -g -w -I"$O/wq$INJ" -I"$D" -I"$R/kernels" -I"$R/kernels/cuda" -I"$R/common" -I/usr/local/cuda/include \
  -x c++ "$D/harness_wq.cpp" -x c "$R/common/status.c" -o "$OUTB" -L/usr/local/cuda/lib64 -lcudart -lcrypto
echo "built $OUTB"
