#!/bin/sh
# test_cli_tokenize.sh QQUANT FIXTURES — `qquant tokenize` / `qquant detokenize` end to end: ids
# (plain and --json) against HF's for a golden string, the round trip, Llama's BOS with
# --add-special, --no-special, and the error paths (missing tokenizer, bad ids, invalid UTF-8).
set -u
Q=$1
FX=$2
fail() { echo "FAIL: $*" >&2; exit 1; }

# The real Qwen2.5 tokenizer once (ids from tokenizer_golden.json); the small fixture tokenizer
# (qwen2-tiny-lm, a model directory) for the rest, which keeps the test fast under sanitizers.
out=$(printf 'Hello, world!' | "$Q" tokenize --model "$FX/tokenizers/qwen2.5/tokenizer.json") || fail "tokenize exited $?"
[ "$out" = "9707 11 1879 0" ] || fail "tokenize (Qwen2.5): got '$out'"
QWEN="$FX/models/qwen2-tiny-lm"
out=$(printf 'Hello, world!' | "$Q" tokenize --model "$QWEN") || fail "tokenize exited $?"
[ "$out" = "53 5928 25 922 14" ] || fail "tokenize: got '$out'"
out=$(printf 'Hello, world!' | "$Q" tokenize --model "$QWEN" --json) || fail "tokenize --json exited $?"
[ "$out" = "[53, 5928, 25, 922, 14]" ] || fail "tokenize --json: got '$out'"
out=$(printf '[53, 5928, 25, 922, 14]' | "$Q" detokenize --model "$QWEN") || fail "detokenize exited $?"
[ "$out" = "Hello, world!" ] || fail "detokenize: got '$out'"
out=$(printf '53 5928\n25\t922 14\n' | "$Q" detokenize --model "$QWEN") || fail "detokenize (spaces) exited $?"
[ "$out" = "Hello, world!" ] || fail "detokenize (spaces): got '$out'"

# Special tokens: parsed by default, plain text with --no-special, skipped with --skip-special.
out=$(printf '<|im_start|>hi' | "$Q" tokenize --model "$QWEN") || fail "tokenize special exited $?"
[ "$out" = "1 2904" ] || fail "tokenize special: got '$out'"
out=$(printf '<|im_start|>hi' | "$Q" tokenize --model "$QWEN" --no-special) || fail "--no-special exited $?"
case " $out " in *" 1 "*) fail "--no-special still matched the special token: '$out'" ;; esac
out=$(printf '1 2904' | "$Q" detokenize --model "$QWEN" --skip-special) || fail "--skip-special exited $?"
[ "$out" = "hi" ] || fail "--skip-special: got '$out'"

# A model directory works, and Llama's BOS comes from --add-special.
LLAMA="$FX/models/llama-stories260k"
out=$(printf 'Once upon a time' | "$Q" tokenize --model "$LLAMA" --add-special) || fail "llama tokenize exited $?"
[ "$out" = "1 403 407 261 378" ] || fail "llama --add-special: got '$out'"
out=$(printf '1 403 407 261 378' | "$Q" detokenize --model "$LLAMA" --skip-special) || fail "llama detokenize exited $?"
[ "$out" = "Once upon a time" ] || fail "llama detokenize: got '$out'"

# Errors: clear message, non-zero exit.
err=$(printf 'x' | "$Q" tokenize --model /nonexistent 2>&1 >/dev/null) && fail "missing model accepted"
case "$err" in *"/nonexistent"*) ;; *) fail "missing model message: '$err'" ;; esac
err=$(printf '\377abc' | "$Q" tokenize --model "$QWEN" 2>&1 >/dev/null) && fail "invalid UTF-8 accepted"
case "$err" in *"not valid UTF-8"*) ;; *) fail "invalid UTF-8 message: '$err'" ;; esac
err=$(printf '1 two 3' | "$Q" detokenize --model "$QWEN" 2>&1 >/dev/null) && fail "bad id accepted"
case "$err" in *"'two 3' is not a token id"*) ;; *) fail "bad id message: '$err'" ;; esac
err=$(printf '[1, 8192]' | "$Q" detokenize --model "$QWEN" 2>&1 >/dev/null) && fail "out-of-range id accepted"
case "$err" in *"ids[1] = 8192"*) ;; *) fail "out-of-range message: '$err'" ;; esac
err=$(printf '[1, 2' | "$Q" detokenize --model "$QWEN" 2>&1 >/dev/null) && fail "unclosed array accepted"
"$Q" tokenize 2>/dev/null </dev/null; [ $? -eq 2 ] || fail "tokenize without --model should exit 2"
echo "qquant tokenize/detokenize: all checks passed"
