#!/usr/bin/env python3
"""Peer benchmark for bench/bench_tokenizer.c: Hugging Face `tokenizers` encoding wikitext2-test.txt
with the real Qwen2.5 tokenizer on ONE thread, median MB/s of N runs (same text, same call shapes:
one encode of the whole file, and every line with its newline as its own input of one encode_batch
call; no special tokens added).

    pip install tokenizers            # in a venv
    python3 bench/tokenizer_peer.py [RUNS] [FIXTURES_DIR]
"""
import os
import statistics
import sys
import time

# One thread: set before tokenizers is imported (its Rayon pool reads these once).
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["RAYON_RS_NUM_CPUS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import tokenizers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
fx = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("QQ_FIXTURES", "../shared/fixtures")
text_path = f"{fx}/corpora/wikitext2-test.txt"
text = open(text_path, encoding="utf-8").read()
nbytes = len(text.encode("utf-8"))

loads, encs = [], []
for _ in range(runs):
    t0 = time.perf_counter()
    tok = Tokenizer.from_file(f"{fx}/tokenizers/qwen2.5/tokenizer.json")
    loads.append(time.perf_counter() - t0)
n_ids = 0
for _ in range(runs):
    t0 = time.perf_counter()
    enc = tok.encode(text, add_special_tokens=False)
    encs.append(nbytes / (time.perf_counter() - t0) / 1e6)
    n_ids = len(enc.ids)
lines = text.splitlines(keepends=True)
line_encs, n_line_ids = [], 0
for _ in range(runs):
    t0 = time.perf_counter()
    out = tok.encode_batch(lines, add_special_tokens=False)
    line_encs.append(nbytes / (time.perf_counter() - t0) / 1e6)
    n_line_ids = sum(len(e.ids) for e in out)
print(f"HF tokenizers {tokenizers.__version__}, Qwen2.5 tokenizer.json, {text_path} ({nbytes} bytes -> {n_ids} ids), "
      f"{runs} runs, RAYON_NUM_THREADS=1")
print(f"load    median {statistics.median(loads):.3f} s   (min {min(loads):.3f}, max {max(loads):.3f})")
print(f"encode  median {statistics.median(encs):.2f} MB/s (min {min(encs):.2f}, max {max(encs):.2f})")
print(f"encode per line ({len(lines)} inputs -> {n_line_ids} ids)  median {statistics.median(line_encs):.2f} MB/s "
      f"(min {min(line_encs):.2f}, max {max(line_encs):.2f})")
