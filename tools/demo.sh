#!/usr/bin/env bash
# The main job on a fresh machine: install dependencies, build, then run the default model end to end.
# Default model: ../shared/fixtures/models/qwen2-tiny-lm when present, else a random-weight checkpoint
# written by `qquant synth` (the output says so).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bash tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
bin=$root/build/bin
out=${QQ_DEMO_OUT:-$root/demo-out}
mkdir -p "$out"

fixtures=${QQ_FIXTURES:-$(realpath -m "$root/../shared/fixtures")}
model=$fixtures/models/qwen2-tiny-lm
if [ ! -f "$model/config.json" ]; then
  echo "############################################################################"
  echo "# ../shared/fixtures not found: using a RANDOM-WEIGHT model from qquant synth #"
  echo "# (its output is gibberish by construction)                                  #"
  echo "############################################################################"
  model=$out/synth-tiny
  [ -f "$model/config.json" ] || "$bin/qquant" synth --shape tiny --out "$model"
fi
echo "== model: $model"
"$bin/qquant" generate --model "$model" --prompt "Once upon a time" --max-new-tokens 32 --temperature 0
