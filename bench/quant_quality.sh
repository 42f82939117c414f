#!/usr/bin/env bash
# quant_quality.sh — the quality table of docs/quality.md: quantize each fixture model with each
# method / bits / group size (`qquant --method ...`, calibration calib-mix.jsonl, 128 x 512 tokens,
# seed 0), then `qquant eval` the result: perplexity on wikitext2 (40 windows of 512) and brown-dev
# (200 windows) with KL divergence against the unquantized model (`--kl-ref`), or, for the classifier,
# accuracy on spam-val.jsonl with the label distributions' KL. One JSON object per (config, corpus)
# line in OUT/quality.jsonl; bench/quant_quality_table.py turns it into the markdown table.
#
#   bench/quant_quality.sh BIN_DIR FIXTURES_DIR OUT_DIR [JOBS] [MODELS...]
# JOBS (default 1) configurations run at once, each with --threads 2 (QQ_THREADS). MODELS default to
# qwen2-tiny-lm qwen3-tiny-lm qwen2-tiny-spam-cls. QQ_QUALITY_FILTER (an extended regex on the
# "model method options" lines) runs a subset. QQ_EVAL_OPTS: options of the evaluations (default
# "--device cpu --dtype fp32").
set -euo pipefail
bin=$(realpath "$1"); fx=$(realpath "$2"); out=$(realpath -m "$3"); jobs=${4:-1}
shift $(( $# < 4 ? $# : 4 ))
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(qwen2-tiny-lm qwen3-tiny-lm qwen2-tiny-spam-cls)
threads=${QQ_THREADS:-2}
# The table's evaluations are fp32 (`qquant eval` would otherwise pick a GPU when there is one, in
# bf16). QQ_EVAL_OPTS replaces these options, e.g. "--device cuda --dtype fp32" to evaluate on a GPU,
# which gives the CPU's fp32 figures to ~1e-6 (bench/results/cuda-h200-2026-12-01) much faster.
eval_opts=${QQ_EVAL_OPTS:---device cpu --dtype fp32}
calib=$fx/corpora/calib-mix.jsonl
mkdir -p "$out/runs"

# name | method | options
configs() {
  local m=$1
  echo "$m fp -"
  if [ "$m" = qwen2-tiny-spam-cls ]; then
    printf '%s\n' "$m rtn --bits 4 --group-size 128 --asym" "$m awq --bits 4 --group-size 128" \
      "$m gptq --bits 4 --group-size 128" "$m smoothquant -"
    return
  fi
  printf '%s\n' \
    "$m rtn --bits 4 --group-size 128 --asym" "$m rtn --bits 4 --group-size 64 --asym" \
    "$m rtn --bits 4 --group-size 32 --asym" "$m rtn --bits 3 --group-size 128 --asym" \
    "$m rtn --bits 8 --group-size -1 --sym" \
    "$m awq --bits 4 --group-size 128" "$m awq --bits 4 --group-size 64" "$m awq --bits 3 --group-size 128" \
    "$m gptq --bits 4 --group-size 128" "$m gptq --bits 4 --group-size 64" "$m gptq --bits 3 --group-size 128" \
    "$m gptq --bits 8 --group-size -1" \
    "$m smoothquant -"
}

run_one() {
  local model=$1 method=$2; shift 2
  local opts=("$@"); [ "${opts[*]}" = "-" ] && opts=()
  local tag; tag=$(echo "$model-$method-${opts[*]}" | tr -c 'A-Za-z0-9\n' '_' | sed 's/__*/_/g; s/_$//')
  local dir=$out/runs/$tag src=$fx/models/$model q=$fx/models/$model
  local qj=null
  mkdir -p "$dir"
  if [ "$method" != fp ]; then
    q=$dir/model
    rm -rf "$q"
    if ! "$bin/qquant" --method "$method" --model "$src" --out "$q" --calib "$calib" --calib-samples 128 \
      --calib-seqlen 512 --seed 0 --threads "$threads" "${opts[@]}" > "$dir.quant.txt" 2> "$dir.quant.err"; then
      echo "FAILED $tag: $(tail -1 "$dir.quant.err")"
      return 0
    fi
    qj=$(cat "$q/qquant_report.json")
  fi
  local line
  if [ "$model" = qwen2-tiny-spam-cls ]; then
    local ej
    ej=$("$bin/qquant" eval --model "$q" --classify "$fx/corpora/spam-val.jsonl" --kl-ref "$src" --threads "$threads" \
      $eval_opts --json --quiet)
    line=$(printf '{"model":"%s","method":"%s","options":"%s","corpus":"spam-val","eval":%s,"report":%s}' \
      "$model" "$method" "${opts[*]}" "$ej" "$qj")
    echo "$line" | tr -d '\n\t' > "$dir.jsonl"; echo >> "$dir.jsonl"
  else
    : > "$dir.jsonl"
    for c in wikitext2-test.txt:40 brown-dev.txt:200; do
      local ej
      ej=$("$bin/qquant" eval --model "$q" --ppl "$fx/corpora/${c%%:*}" --windows "${c##*:}" --kl-ref "$src" \
        --threads "$threads" $eval_opts --json --quiet)
      line=$(printf '{"model":"%s","method":"%s","options":"%s","corpus":"%s","eval":%s,"report":%s}' \
        "$model" "$method" "${opts[*]}" "${c%%:*}" "$ej" "$qj")
      echo "$line" | tr -d '\n\t' >> "$dir.jsonl"; echo >> "$dir.jsonl"
    done
  fi
  [ "$method" = fp ] || rm -rf "$q"   # keep the reports, not the weights
  echo "done $tag"
}
export -f run_one
export bin fx out threads calib

for m in "${models[@]}"; do configs "$m"; done | grep -E -- "${QQ_QUALITY_FILTER:-.}" | xargs -P "$jobs" -L 1 bash -c 'run_one "$@"' _
cat "$out"/runs/*.jsonl > "$out/quality.jsonl"
echo "wrote $out/quality.jsonl ($(wc -l < "$out/quality.jsonl") lines)"
