#!/usr/bin/env bash
# Runs on the GPU machine from the unpacked bundle (tests/gpu/pack.sh), inside one device call:
#   bash tests/gpu/device_run.sh STAGE[,STAGE...] [BUDGET_S]
# Stages: smi, kernels (the three kernel tests; a test that crashes is re-run under compute-sanitizer
# memcheck), golden (test_golden on cuda fp32), eval (qwen2-tiny-lm ppl / generate on cuda vs cpu),
# serve (qquant-serve on the GPU and on the CPU, Generate + Classify through qquant-client; needs both
# programs in the bundle), suite (gpu_suite.py), bench (bench_kernels_cuda + the peers in the same
# call), ncu / ncusrc / densecmp / wqtune / wq / wqm1 / w8a8tune / m1skb (kernel measurements), quantspeed (the quantizer's
# end-to-end time on the host CPUs, 2 threads per run, each run pinned to its own pair of cores; GPTQ
# and SmoothQuant three times each, side by side with build-gpu/bin/qquant-old when the bundle has it),
# quality (rows of the quantization quality table on the host CPUs), attrib (bench/golden_attrib.py:
# the golden logits against fp64 and the GPU's fp32 arithmetics). QQ_SUITE_SKIP: gpu_suite.py --skip.
# Every stage has its own timeout and the whole run stops starting stages when less than a stage's
# timeout is left of BUDGET_S (default 560). Logs go to $OUT/log.txt, the summary to stdout and
# $OUT/summary.txt; JSON results to $OUT.
set -u
stages=",${1:-smi,kernels,golden,eval,bench},"
budget=${2:-560}
t0=$(date +%s)
B=build-gpu/bin
FX=shared/fixtures
export QQ_FIXTURES=$FX
OUT=${OUT:-/tmp/qq-out}
mkdir -p "$OUT"
log=$OUT/log.txt
sum=$OUT/summary.txt
left() { echo $((budget - ($(date +%s) - t0))); }
# step NAME TIMEOUT CMD...: runs CMD with a timeout, output appended to the log under a header.
step() {
  local name=$1 t=$2; shift 2
  local l; l=$(left)
  if [ "$l" -lt 20 ]; then echo "SKIP $name (budget)" | tee -a "$sum"; return 99; fi
  [ "$t" -gt "$l" ] && t=$l
  echo "===== $name: $* (timeout $t s)" >>"$log"
  local s; s=$(date +%s)
  timeout -k 5 "$t" "$@" >>"$log" 2>&1
  local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s )) s" | tee -a "$sum"
  return $rc
}
# lastsec: the output of the last step, on one line.
lastsec() { awk '/^===== /{b=""; next} {b=b $0 " "} END{print b}' "$log" | tr -s ' ' | cut -c1-${1:-400}; }
has() { [[ "$stages" == *",$1,"* ]]; }

if has smi; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv | tee -a "$sum"
fi

if has kernels; then
  for t in test_cuda_ops test_cuda_wq test_cuda_attention; do
    step "$t" 150 "$B/$t"
    rc=$?
    if [ $rc -ne 0 ] && [ $rc -ne 99 ] && [ $rc -ne 77 ]; then
      grep -m 40 -E "FAIL|error|mismatch|CUDA" "$log" | tail -n 40 | sed "s/^/  $t: /" | tee -a "$sum" >/dev/null
      step "$t-memcheck" 150 compute-sanitizer --tool memcheck --show-backtrace device --print-limit 20 "$B/$t"
    fi
  done
fi

if has golden; then
  QQ_TEST_DEVICE=cuda QQ_TEST_DTYPE=fp32 step golden-cuda-fp32 180 "$B/test_golden" all
  grep -E "^# |FAILED|PASSED" <(sed -n "/===== golden-cuda-fp32/,\$p" "$log") | tee -a "$sum"
fi

if has eval; then
  m=$FX/models/qwen2-tiny-lm
  for d in "cpu fp32" "cuda fp32" "cuda bf16" "cuda fp16"; do
    set -- $d
    step "ppl-$1-$2" 60 "$B/qquant" eval --model $m --ppl $FX/corpora/wikitext2-test.txt --windows 40 \
      --device $1 --dtype $2 --json --quiet
    lastsec 300 | tee -a "$sum"
  done
  p="The history of the city"
  for d in "cpu fp32 1" "cuda fp32 1" "cuda bf16 1" "cuda bf16 0"; do
    set -- $d
    QQ_CUDA_GRAPHS=$3 step "gen-$1-$2-graphs$3" 60 "$B/qquant" generate --model $m --prompt "$p" \
      --max-new-tokens 48 --temperature 0 --device $1 --dtype $2 --json
    lastsec 500 | tee -a "$sum"
  done
fi

if has serve; then
  # qquant-serve on the GPU (the default --device auto picks it), Generate and Classify through
  # qquant-client, greedy Generate compared with the same prompt served from the CPU backend.
  m=$FX/models/qwen2-tiny-lm
  for cfg in "cuda bf16" "cuda fp32" "cpu fp32"; do
    set -- $cfg
    dev=$1-$2
    port=$((50600 + RANDOM % 1000))
    "$B/qquant-serve" --model $m --device $1 --dtype $2 --port $port --metrics-port -1 --drain-seconds 5 \
      > "$OUT/serve-$dev.log" 2>&1 &
    srv=$!
    export QQ_SERVE_ADDR=127.0.0.1:$port
    for i in $(seq 1 150); do
      "$B/qquant-client" health >/dev/null 2>&1 && break
      kill -0 $srv 2>/dev/null || { tail -n 3 "$OUT/serve-$dev.log" | tee -a "$sum"; break; }
      sleep 0.2
    done
    step "serve-$dev-info" 20 "$B/qquant-client" info
    lastsec 300 | tee -a "$sum"
    step "serve-$dev-generate" 30 "$B/qquant-client" generate --max-new-tokens 32 --temperature 0 --show-ids "The history of the city"
    lastsec 400 | tee -a "$sum"
    lastsec 100000 > "$OUT/serve-$dev-generate.txt"
    step "serve-$dev-classify" 30 "$B/qquant-client" classify --labels "sports,politics,cooking" \
      "The senate passed the budget bill after a long debate." "Stir the onions in butter until golden."
    lastsec 400 | tee -a "$sum"
    kill -TERM $srv 2>/dev/null; wait $srv; echo "serve-$dev exit $?" | tee -a "$sum"
  done
  if cmp -s "$OUT/serve-cuda-fp32-generate.txt" "$OUT/serve-cpu-fp32-generate.txt"; then
    echo "serve: greedy Generate on cuda fp32 equals cpu" | tee -a "$sum"
  else echo "serve: greedy Generate on cuda fp32 DIFFERS from cpu" | tee -a "$sum"; fi
fi

if has suite; then
  step gpu-suite 420 python3 tests/gpu/gpu_suite.py --bin $B --fixtures $FX --out "$OUT" ${QQ_SUITE_SKIP:+--skip $QQ_SUITE_SKIP}
  grep -E "^(PASS|FAIL)" "$log" | tail -n 30 | tee -a "$sum"
fi

if has attrib; then
  # issue 2: the golden logits against fp64 and against the GPU's fp32 arithmetics (bench/golden_attrib.py)
  step golden-attrib 240 python3 bench/golden_attrib.py $FX --out "$OUT/golden_attrib.json"
  sed -n '/===== golden-attrib/,$p' "$log" | grep -E "prompt|vs fp64|skipped|torch " | grep -v Loading | tee -a "$sum"
fi

if has ncu; then
  # One launch of each hot kernel with Nsight Compute (cache flushed before it: a cold launch).
  sec="--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis --section SchedulerStats"
  for sh in "gate_up 1" "qkv 1" "gate_up 16"; do
    set -- $sh
    step "ncu-wq-$1-m$2" 120 ncu --clock-control none --kernel-name "regex:wq_(gemm|m1|xs)_kernel" --launch-skip 2 --launch-count 1 $sec \
      "$B/bench_kernels_cuda" --skip-ceilings --skip-attention --shapes $1 --rows $2 --iters 2
  done
  step ncu-attn-prefill 150 ncu --clock-control none --kernel-name regex:attn_mma --launch-skip 6 --launch-count 1 $sec \
    "$B/bench_kernels_cuda" --skip-ceilings --shapes none --iters 2
fi

if has wq; then
  step test_cuda_wq 120 "$B/test_cuda_wq"
  tail -n 2 "$log" | tee -a "$sum"
fi

if has wqm1; then
  # The m <= 64 kernels (default: wq_m1_kernel at m <= 16) against wq_xs_kernel (QQ_WQ_XS=1), the old
  # wq_gemm_kernel (QQ_WQ_M1=old) and dequantize + cuBLASLt, same process, m = 1, 8, 16, 32, 64.
  step wq-m1-ab 200 "$B/test_cuda_wq" --bench --m1-ab
  grep -E "^BENCH shape=.* m=(1|8|16|32|64) kind=w[48]a16(-old|-xs|-dense)? " <(sed -n '/===== wq-m1-ab:/,$p' "$log") \
    | sed -E 's/.*shape=([a-z_]+).* m=([0-9]+) kind=([a-z0-9-]+) .*us_warm=([0-9.]+) us_cold=([0-9.]+).*bw_frac_cold=([0-9.]+).*x_bf16_cold=([0-9.]+) plan=(.*)/  \1 m=\2 \3 warm \4 cold \5 us bw \6 xbf16 \7 \8/' | tee -a "$sum"
fi

if has ncusrc; then
  # Instruction mix and per-SASS-line stall samples of the W4A16 m = 1 kernel (gate_up).
  step ncu-wq-instr 120 ncu --clock-control none --kernel-name "regex:wq_(gemm|m1|xs)_kernel" --launch-skip 2 --launch-count 1 \
    --section InstructionStats --section WarpStateStats --section SpeedOfLight \
    "$B/bench_kernels_cuda" --skip-ceilings --skip-attention --shapes gate_up --rows 1 --iters 2
  timeout 150 ncu --clock-control none --kernel-name "regex:wq_(gemm|m1|xs)_kernel" --launch-skip 2 --launch-count 1 \
    --section SourceCounters --section WarpStateStats --page source --print-source sass --csv \
    "$B/bench_kernels_cuda" --skip-ceilings --skip-attention --shapes gate_up --rows 1 --iters 2 > "$OUT/ncu_wq_source.csv" 2>&1
  echo "ncu source rc=$? $(wc -c < "$OUT/ncu_wq_source.csv") bytes" | tee -a "$sum"
fi

if has densecmp; then
  QQ_WQ_SKINNY_MAX_M=0 step bench-dense 120 "$B/bench_kernels_cuda" --skip-ceilings --skip-attention --rows 8,16,32,64
  sed -n '/===== bench-dense/,$p' "$log" | grep -v '^JSON' | tee -a "$sum"
fi

# wq_bench_lines STEP PREFIX: the W4A16 m = 1 and 16 lines of a `test_cuda_wq --bench` step, summarized
wq_bench_lines() {
  grep -E "^BENCH shape=.* m=(1|16) kind=w4a16 " <(sed -n "/===== $1:/,\$p" "$log") \
    | sed -E "s/.*shape=([a-z_]+).* m=([0-9]+) .*us_cold=([0-9.]+).*plan=(.*)/  $2\\1 m=\\2 cold \\3 us \\4/" | tee -a "$sum"
}

if has wqtune; then
  # Split-K depth of the skinny W4A16 kernel: fewer, longer k-ranges per warp vs more blocks.
  for mc in 4 14 28 56; do
    step "wq-bench-minchunks-$mc" 90 "$B/test_cuda_wq" --bench --min-chunks $mc
    wq_bench_lines "wq-bench-minchunks-$mc" ""
  done
fi

if has m1skb; then
  # Split-K factor of wq_m1_kernel forced (QQ_WQ_M1_SKB, read at weight creation): does NT 2's lower
  # occupancy (gate_up m = 16: 592 blocks for 528 resident slots at the default) cost a second wave?
  for sk in 1 2 3 4 5 6 8; do
    QQ_WQ_M1_SKB=$sk step "wq-m1-skb-$sk" 90 "$B/test_cuda_wq" --bench
    wq_bench_lines "wq-m1-skb-$sk" "skb $sk: "
  done
fi

if has quantspeed; then
  m=$FX/models/qwen2-tiny-lm
  cal="--calib $FX/corpora/calib-mix.jsonl --calib-samples 128 --calib-seqlen 512 --threads 2"
  runs="gptq:qquant:1 gptq:qquant:2 gptq:qquant:3 smoothquant:qquant:1 smoothquant:qquant:2 smoothquant:qquant:3"
  [ -x "$B/qquant-old" ] && runs="$runs gptq:qquant-old:1 smoothquant:qquant-old:1"
  runs=${QQ_QS_RUNS:-$runs} # METHOD:PROGRAM:RUN ..., at most 8 (one core pair each)
  lscpu | grep -E "^Model name|^CPU\(s\)" | tr -s ' ' | tee -a "$sum"
  core=0
  for r in $runs; do
    IFS=: read -r meth bin i <<< "$r"
    d=$OUT/qs-$meth-$bin-$i
    ( taskset -c $core,$((core + 1)) /usr/bin/time -f "%e %M" -o "$d.time" "$B/$bin" --method $meth --model $m \
        --out "$d" $cal > "$d.log" 2>&1; echo "rc=$?" >> "$d.time" ) &
    core=$((core + 2))
  done
  wait
  for r in $runs; do
    IFS=: read -r meth bin i <<< "$r"
    d=$OUT/qs-$meth-$bin-$i
    echo "quantspeed $meth $bin run $i: wall $(head -1 "$d.time" | awk '{printf "%.1f s, max RSS %.0f MiB", $1, $2/1024}') $(tail -1 "$d.time") | $(grep -E '^seconds:' "$d.log")" | tee -a "$sum"
    cp "$d/qquant_report.json" "$d.report.json" 2>/dev/null
    rm -rf "$d"
  done
fi

if has quality; then
  # The quality table's configurations (bench/quant_quality.sh, 8 at once with 2 threads each) on the
  # host CPUs; QQ_QUALITY_FILTER / QQ_QUALITY_MODELS choose rows. Needs bench/quant_quality.sh and
  # quant_quality_table.py next to this script's bundle (copy them from the repository).
  q=/tmp/qq-quality
  rm -rf $q
  step quality 560 bash bench/quant_quality.sh $B $FX $q 8 ${QQ_QUALITY_MODELS:-qwen2-tiny-lm qwen3-tiny-lm}
  cp $q/quality.jsonl "$OUT/" 2>/dev/null
  mkdir -p "$OUT/quality-runs" && cp $q/runs/*.txt $q/runs/*.err "$OUT/quality-runs/" 2>/dev/null
  python3 bench/quant_quality_table.py $q/quality.jsonl >> "$sum" 2>&1
fi

if has w8a8tune; then
  # int8 cuBLASLt configurations that would fuse the W8A8 epilogue (bf16 output, OUTER_VEC_32F scales)
  step lt-probe 90 "$B/bench_kernels_cuda" --lt-probe
  grep -E "^lt-probe" <(sed -n '/===== lt-probe/,$p' "$log") | tee -a "$sum"
  # cuBLASLt int8 algorithm: the heuristic's first (QQ_LT_I8_TUNE=0) against the fastest of its
  # candidates timed at the first call (default), same call, m = 1 and 256.
  QQ_LT_I8_TUNE=0 step bench-i8-heuristic 150 "$B/bench_kernels_cuda" --skip-attention --skip-ceilings --rows 1,64,256
  sed -n '/===== bench-i8-heuristic/,$p' "$log" | grep -v '^JSON' | grep -E "^(qkv|o|gate_up|down) " | sed 's/^/  heuristic: /' | tee -a "$sum"
  QQ_LT_I8_TUNE_LOG=1 step bench-i8-tuned 150 "$B/bench_kernels_cuda" --skip-attention --skip-ceilings --rows 1,64,256
  sed -n '/===== bench-i8-tuned/,$p' "$log" | grep -v '^JSON' | grep -E "^(qkv|o|gate_up|down) |^gemm_i8" | sed 's/^/  tuned: /' | tee -a "$sum"
fi

if has bench; then
  # Our kernels, then in the same call the shared peer script (PyTorch, times include the host enqueue),
  # the peers timed as we time ours (GPU time only), SDPA, and the joined ratio tables.
  step bench-kernels 200 "$B/bench_kernels_cuda"
  sed -n '/===== bench-kernels/,$p' "$log" | grep -v '^JSON' | tee -a "$sum"
  step peers-torch 150 python3 shared/bench/peers_torch.py --shapes qwen2.5-7b --skip generate,classify --out "$OUT/peers.json"
  step peer-gemm 200 python3 bench/peer_gemm.py --rows 1,8,16,32,64,256 --out "$OUT/peer_gemm.json"
  step peer-sdpa 60 python3 bench/peer_sdpa.py --out "$OUT/peer_sdpa.json"
  python3 bench/cuda_report.py "$log" "$OUT/peer_gemm.json" "$OUT/peer_sdpa.json" > "$OUT/report.md" 2>&1
  cat "$OUT/report.md" >> "$sum"
fi
echo "total $(( $(date +%s) - t0 )) s" | tee -a "$sum"
