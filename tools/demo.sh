#!/usr/bin/env bash
# The main job on a fresh machine (README, first command):
#   install dependencies, build, quantize the default model with AWQ (W4, g128), compare it with the
#   original (perplexity and KL divergence), serve the quantized checkpoint over gRPC, call Generate
#   (streamed) and Classify (zero-shot over candidate labels), then drain the server with SIGTERM.
# Default model: ../shared/fixtures/models/qwen2-tiny-lm when present; otherwise a RANDOM-WEIGHT
# checkpoint written by `qquant synth` (the output says so) quantized with RTN (no calibration data).
# Environment: QQ_DEMO_OUT (default ./demo-out), QQ_DEMO_PORT (default: a free port), QQ_FIXTURES.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bash tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
bin=$root/build/bin
out=${QQ_DEMO_OUT:-$root/demo-out}
mkdir -p "$out"
step() { echo; echo "=== $*"; }

fixtures=${QQ_FIXTURES:-$(realpath -m "$root/../shared/fixtures")}
model=$fixtures/models/qwen2-tiny-lm
calib=$fixtures/corpora/calib-mix.jsonl
corpus=$fixtures/corpora/wikitext2-test.txt
if [ -f "$model/config.json" ] && [ -f "$calib" ]; then
  method=(--method awq --calib "$calib" --calib-samples 32 --calib-seqlen 512)
else
  echo "############################################################################"
  echo "# ../shared/fixtures not found: using a RANDOM-WEIGHT model from qquant synth #"
  echo "# (its output is gibberish by construction; quantized with RTN, no calibration)#"
  echo "############################################################################"
  model=$out/synth-tiny
  [ -f "$model/config.json" ] || "$bin/qquant" synth --shape tiny --out "$model"
  method=(--method rtn)
  corpus=
fi

step "quantize $model (${method[1]}, 4-bit, group 128) -> $out/model-q4"
"$bin/qquant" "${method[@]}" --model "$model" --out "$out/model-q4" --force

if [ -n "$corpus" ]; then
  step "quality: perplexity of the quantized model and KL divergence against the original (8 windows of 512)"
  "$bin/qquant" eval --model "$out/model-q4" --ppl "$corpus" --windows 8 --kl-ref "$model" --quiet
fi

port=${QQ_DEMO_PORT:-$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
step "serve $out/model-q4 on 127.0.0.1:$port"
"$bin/qquant-serve" --model "$out/model-q4" --port "$port" --metrics-port -1 --drain-seconds 10 \
  > "$out/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
export QQ_SERVE_ADDR=127.0.0.1:$port
for i in $(seq 1 100); do
  if "$bin/qquant-client" health >/dev/null 2>&1; then break; fi
  if ! kill -0 $server 2>/dev/null; then cat "$out/serve.log"; echo "qquant-serve exited early" >&2; exit 1; fi
  sleep 0.2
done
"$bin/qquant-client" health
"$bin/qquant-client" info

step "Generate (streamed, greedy, 40 tokens)"
"$bin/qquant-client" generate --max-new-tokens 40 --temperature 0 "Once upon a time"
echo

step "Classify (zero-shot over candidate labels, by label log-likelihood)"
"$bin/qquant-client" classify --labels "sports,politics,cooking" \
  "The senate passed the budget bill after a long debate." \
  "Stir the onions in butter until golden, then add the rice."

step "drain: SIGTERM, the server finishes in-flight work and exits 0"
kill -TERM $server
wait $server
echo "qquant-serve exited with status $?"
trap - EXIT
