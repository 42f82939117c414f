#!/usr/bin/env bash
# Builds the GPU binaries here (Release, sm_90a) and packs them with the fixtures the GPU suite needs
# into .device-carry/bundle.tar.xz for the device tool (../shared/device/README.md). On the GPU machine:
#   mkdir -p /tmp/qq && tar xJf .device-carry/bundle.tar.xz -C /tmp/qq && cd /tmp/qq &&
#   export LD_LIBRARY_PATH=/tmp/qq/lib:/usr/local/cuda/lib64 &&
#   python3 tests/gpu/gpu_suite.py --bin build-gpu/bin --fixtures shared/fixtures --out $OUT
# Environment: QQ_GPU_MODELS (fixture models to carry; default all four), QQ_GPU_TARGETS (programs to
# carry; default all), QQ_GPU_EXTRA (programs built elsewhere, NAME=PATH), QQ_JOBS. The bundle must stay under the device tool's 64 MiB: with every model
# it does not, so pack the kernel tests/benchmarks and the model-level suite separately, e.g.
#   QQ_GPU_MODELS=qwen2-tiny-lm QQ_GPU_TARGETS="test_cuda_ops test_cuda_wq test_cuda_attention bench_kernels_cuda"
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
jobs=${QQ_JOBS:-$(nproc)}
fx=$(realpath ../shared/fixtures)
models=${QQ_GPU_MODELS:-"qwen2-tiny-lm qwen3-tiny-lm qwen2-tiny-spam-cls llama-stories260k"}
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DQQ_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DQQ_FIXTURES_DIR="$fx" >/dev/null
targets=${QQ_GPU_TARGETS:-"qquant qquant-serve qquant-client test_cuda_ops test_golden bench_kernels_cuda test_cuda_wq test_cuda_attention"}
cmake --build build-gpu -j"$jobs" --target $targets
grep -q '^/.device-carry/' .git/info/exclude 2>/dev/null || echo /.device-carry/ >> .git/info/exclude
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/build-gpu/bin" "$stage/tests" "$stage/bench" "$stage/shared/bench" "$stage/shared/fixtures/models" \
  "$stage/shared/fixtures/corpora"
for t in $targets; do strip -o "$stage/build-gpu/bin/$t" build-gpu/bin/$t; done
# QQ_GPU_EXTRA="NAME=PATH ...": more programs built elsewhere, carried as build-gpu/bin/NAME (e.g. an
# older qquant to time side by side: qquant-old=/path/to/qquant).
for e in ${QQ_GPU_EXTRA:-}; do strip -o "$stage/build-gpu/bin/${e%%=*}" "${e#*=}"; done
cp -r tests/gpu "$stage/tests/"
cp bench/peer_*.py bench/cuda_report.py "$stage/bench/"
cp ../shared/bench/peers_torch.py "$stage/shared/bench/"
for m in $models; do cp -r "$fx/models/$m" "$stage/shared/fixtures/models/"; done
for f in wikitext2-test.txt brown-dev.txt spam-val.jsonl calib-mix.jsonl; do cp "$fx/corpora/$f" "$stage/shared/fixtures/corpora/"; done
mkdir -p .device-carry
rm -f .device-carry/bundle.tar.xz
(cd "$stage" && "$root/../shared/device/pack-bundle.sh" "$root/.device-carry/bundle.tar.xz" build-gpu tests bench shared)
ls -la .device-carry/bundle.tar.xz
