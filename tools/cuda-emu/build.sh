#!/usr/bin/env bash
# CPU emulation of kernels/cuda/attention.cu, for checking the kernels' index math without a GPU:
# transform.py turns attention.cu into host C++ (asm primitives removed, shared memory and launches
# redirected), emu.h runs every CUDA thread as a fiber with shuffles, ldmatrix, mma.m16n8k16 and
# cp.async emulated from the PTX ISA fragment tables (written independently of the kernel's helpers),
# cp.async landing at a random point before its wait, thread order shuffled at every switch, shared
# memory / cache slots / outputs initialised to NaN; harness.cpp runs qq_cuda_attention end to end
# (plan, append, attention, combine) on random cases against an fp64 reference.
#   bash tools/cuda-emu/build.sh [attention.cu] && /tmp/cuda-emu/harness
set -euo pipefail
D=$(cd "$(dirname "$0")" && pwd)
R=$(cd "$D/../.." && pwd)
O=${QQ_EMU_OUT:-/tmp/cuda-emu}
mkdir -p "$O"
python3 "$D/transform.py" "${1:-$R/kernels/cuda/attention.cu}" "$O/attn_t.cc"
g++ -std=c++17 -O2 -g -w -I"$O" -I"$D" -I"$R/kernels" -I"$R/kernels/cuda" -I"$R/common" -I/usr/local/cuda/include \
  -x c++ "$D/harness.cpp" -x c "$R/common/status.c" -o "$O/harness" -L/usr/local/cuda/lib64 -lcudart -lcrypto
echo "built $O/harness"
