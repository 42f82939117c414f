#!/bin/sh
# test_cli_quantize.sh QQUANT FIXTURES — `qquant --method ...` from the command line: every bad input
# of issue 3's list is refused with exit status 2 and a message naming the problem before any work
# (no output folder appears); Ctrl-C (SIGINT) in the middle of a GPTQ run stops it with status 130,
# says so and writes nothing; a small GPTQ run writes the checkpoint, the summary table and
# qquant_report.json, and the result loads in `qquant eval`.
set -u
Q=$1
FX=$2
fail() { echo "FAIL: $*" >&2; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
M=$FX/models/qwen3-tiny-lm
C=$FX/corpora/calib-mix.jsonl

# refused EXPECTED-TEXT QQUANT-ARGS...: exit 2, the text in stderr, no $T/out (unless it was there)
refused() {
  want=$1
  shift
  "$Q" "$@" > "$T/stdout" 2> "$T/stderr"
  rc=$?
  [ $rc -eq 2 ] || fail "qquant $*: exit $rc, expected 2 ($(cat "$T/stderr"))"
  grep -q -- "$want" "$T/stderr" || fail "qquant $*: stderr lacks '$want': $(cat "$T/stderr")"
  [ -n "${keep_out:-}" ] || [ ! -e "$T/out" ] || fail "qquant $*: created $T/out"
}
: > "$T/empty.jsonl"
printf '{"text": "tiny"}\n' > "$T/short.jsonl"
printf 'not json\n' > "$T/bad.jsonl"
refused "unknown method 'foo'" --method foo --model "$M" --out "$T/out"
refused "8 bits is not an AWQ setting" --method awq --bits 8 --model "$M" --out "$T/out" --calib "$C"
refused "smoothquant is W8A8" --method smoothquant --bits 4 --model "$M" --out "$T/out" --calib "$C"
refused "group-size 96 (128, 64, 32 or -1" --method gptq --group-size 96 --model "$M" --out "$T/out" --calib "$C"
refused "does not divide the input width 64 of q_proj" --method awq --model "$FX/models/llama-stories260k" \
  --out "$T/out" --calib "$C"
refused "awq needs calibration data" --method awq --model "$M" --out "$T/out"
refused "no calibration text" --method gptq --model "$M" --out "$T/out" --calib "$T/empty.jsonl"
refused "fewer than one window of 512" --method gptq --model "$M" --out "$T/out" --calib "$T/short.jsonl"
refused "bad.jsonl" --method gptq --model "$M" --out "$T/out" --calib "$T/bad.jsonl"
refused "are GPTQ options" --method awq --no-act-order --model "$M" --out "$T/out" --calib "$C"
refused "--device 'gpu': expected cpu or cuda" --method gptq --device gpu --model "$M" --out "$T/out" --calib "$C"
# --device cuda where there is no GPU (CI): a clear error naming CUDA, nothing written
if ! command -v nvidia-smi > /dev/null 2>&1; then
  "$Q" --method gptq --device cuda --calib-samples 2 --model "$M" --out "$T/out" --calib "$C" > /dev/null 2> "$T/stderr" &&
    fail "qquant --device cuda without a GPU succeeded"
  grep -qi "cuda" "$T/stderr" || fail "qquant --device cuda without a GPU: stderr lacks 'cuda': $(cat "$T/stderr")"
  [ ! -e "$T/out" ] || fail "qquant --device cuda without a GPU created $T/out"
fi
refused "are GPTQ options" --method awq --gptq-mse --model "$M" --out "$T/out" --calib "$C"
refused "are GPTQ options" --method rtn --gptq-refine 1 --model "$M" --out "$T/out"
refused "gptq-refine" --method gptq --gptq-refine -1 --model "$M" --out "$T/out" --calib "$C"
# act-order is GPTQ's default, but only asked for explicitly is it refused with the AutoAWQ layout
refused "act-order needs g_idx" --method gptq --format awq --act-order --model "$M" --out "$T/out" --calib "$C"
mkdir "$T/out"
keep_out=1 refused "already exists (use --force" --method rtn --model "$M" --out "$T/out"
[ -z "$(ls -A "$T/out")" ] || fail "the existing folder was written into"
rmdir "$T/out"

# SIGINT after the first layer has started: status 130, "nothing was written", no folder.
"$Q" --method gptq --model "$M" --out "$T/out" --calib "$C" --calib-samples 16 --calib-seqlen 256 --threads 2 \
  > "$T/stdout" 2> "$T/stderr" &
pid=$!
i=0
while ! grep -q "layer 1/" "$T/stderr" 2>/dev/null; do
  i=$((i + 1))
  [ $i -lt 600 ] || { kill $pid; fail "no progress line within 60 s"; }
  sleep 0.1
done
kill -INT $pid
wait $pid
rc=$?
[ $rc -eq 130 ] || fail "SIGINT: exit $rc, expected 130 ($(tail -2 "$T/stderr"))"
grep -q "interrupted" "$T/stderr" || fail "SIGINT: no 'interrupted' message: $(tail -2 "$T/stderr")"
grep -q "nothing was written" "$T/stderr" || fail "SIGINT: does not say what was written"
[ ! -e "$T/out" ] || fail "SIGINT: $T/out was created"

# A real run: progress with ETA, the summary table, the report, a checkpoint that loads.
"$Q" --method gptq --model "$M" --out "$T/gptq" --calib "$C" --calib-samples 16 --calib-seqlen 256 --threads 2 \
  > "$T/stdout" 2> "$T/stderr" || fail "gptq run: exit $? ($(tail -2 "$T/stderr"))"
grep -q "layer 4/4 .*ETA" "$T/stderr" || fail "no per-layer progress with ETA: $(cat "$T/stderr")"
grep -q "^    3  0\.[0-9]" "$T/stdout" || fail "no summary table row for layer 3: $(cat "$T/stdout")"
grep -q "peak memory" "$T/stdout" || fail "no peak memory in the summary"
for key in '"layers"' '"rel_err"' '"peak_rss_bytes"' '"seconds"' '"sha256"'; do
  grep -q "$key" "$T/gptq/qquant_report.json" || fail "qquant_report.json lacks $key"
done
grep -q '"quant_method":[[:space:]]*"gptq"' "$T/gptq/config.json" || fail "config.json lacks quant_method gptq"
[ -f "$T/gptq/tokenizer.json" ] || fail "tokenizer.json not copied"
grep -q '"desc_act":[[:space:]]*true' "$T/gptq/config.json" || fail "GPTQ's default is act-order (desc_act true)"
# GPTQ's defaults: damping 5 %, the range search, one refit pass (qquant metadata and quantization_config)
for kv in '"damp_percent":[[:space:]]*0.05' '"mse":[[:space:]]*true' '"mse_grid":[[:space:]]*100' \
  '"refine_sweeps":[[:space:]]*1'; do
  grep -q "$kv" "$T/gptq/config.json" || fail "GPTQ's defaults: config.json lacks $kv"
done
# ... and the options that turn them off
"$Q" --method gptq --no-gptq-mse --gptq-refine 0 --damp 0.01 --model "$M" --out "$T/gptq-plain" --calib "$C" \
  --calib-samples 2 --calib-seqlen 64 --threads 2 > /dev/null 2> "$T/stderr" || fail "plain gptq: exit $?"
for kv in '"damp_percent":[[:space:]]*0.01' '"mse":[[:space:]]*false' '"refine_sweeps":[[:space:]]*0'; do
  grep -q "$kv" "$T/gptq-plain/config.json" || fail "--no-gptq-mse --gptq-refine 0 --damp 0.01: config.json lacks $kv"
done
# GPTQ into the AutoAWQ layout (no g_idx): act-order is off by default there, and the run works.
"$Q" --method gptq --format awq --asym --model "$M" --out "$T/gptq-awq" --calib "$C" --calib-samples 2 \
  --calib-seqlen 64 --threads 2 > /dev/null 2> "$T/stderr" || fail "gptq --format awq: exit $? ($(tail -2 "$T/stderr"))"
grep -q '"desc_act":[[:space:]]*true' "$T/gptq-awq/config.json" && fail "gptq --format awq wrote desc_act true"
out=$("$Q" eval --model "$T/gptq" --ppl "$FX/corpora/wikitext2-test.txt" --windows 2 --json --quiet) \
  || fail "eval of the GPTQ checkpoint: exit $?"
echo "$out" | grep -q '"ppl"' || fail "eval output: $out"
echo "quantize CLI: all checks passed"
