#!/usr/bin/env python3
"""Writes tests/tokenizer/hf_vectors.json: what Hugging Face `tokenizers` produces for the inputs the
golden file does not cover. Run from the repository root with the fixtures beside it:

    python3 -m venv /tmp/hf && /tmp/hf/bin/pip install tokenizers==0.23.3
    /tmp/hf/bin/python tests/tokenizer/gen_hf_vectors.py [FIXTURES_DIR]

Contents:
  llama.cases[]   llama-stories260k: text, ids (no special tokens), ids_special (add_special_tokens,
                  i.e. with the TemplateProcessing BOS), decode of ids_special with and without
                  skip_special_tokens.
  llama.decode[]  hand-made id sequences (byte-fallback runs that are incomplete or invalid UTF-8,
                  special tokens mid-text) and HF's decode of them.
  qwen.decode[]   the same for the real Qwen2.5 tokenizer: golden strings decoded (with and without
                  skip_special_tokens) and byte-level ids that split a UTF-8 character.
  spam_cls        ids of the first 8 mails of corpora/spam-val.jsonl under qwen2-tiny-spam-cls
                  (its tokenizer.json truncates to 256 tokens).
  synthetic[]     small tokenizers (added-token flags, split behaviors, Metaspace, truncation,
                  padding, decoders) with HF's ids and decodes for a set of strings.
"""
import json
import sys
import tokenizers
from tokenizers import Tokenizer

fx = sys.argv[1] if len(sys.argv) > 1 else "../shared/fixtures"
out = {"generator": f"tokenizers {tokenizers.__version__}"}

LLAMA_TEXTS = [
    "Once upon a time, there was a little girl named Lily.",
    "Hello, world!",
    "",
    " ",
    "  two leading spaces",
    "trailing space ",
    "line one\nline two\r\n\ttab",
    "caf\u00e9 na\u00efve fa\u00e7ade",
    "\u4f60\u597d\uff0c\u4e16\u754c",
    "Emoji: \U0001F600\U0001F680\U0001F44D\U0001F3FD \U0001F468\u200d\U0001F469\u200d\U0001F467",
    "<s>Lily</s> and <unk> tokens",
    "a<s>b",
    "\u00dcn\u00efc\u00f6d\u00e9 \u00c4\u00d6\u00dc \u00df \u1e9e \u01c5 \ufb01",
    "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "numbers 1234567 3.14159 -42",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "\u2581already has the marker",
    "\x01\x02 control \x7f",
    "Zero-width\u200bjoiner and \u00a0nbsp",
    "The end.\n\n\n",
]

llama = Tokenizer.from_file(f"{fx}/models/llama-stories260k/tokenizer.json")
cases = []
for t in LLAMA_TEXTS:
    ids = llama.encode(t, add_special_tokens=False).ids
    ids_sp = llama.encode(t).ids
    cases.append({
        "text": t,
        "ids": ids,
        "ids_special": ids_sp,
        "decoded_special": llama.decode(ids_sp, skip_special_tokens=False),
        "decoded_skip": llama.decode(ids_sp, skip_special_tokens=True),
    })
b = lambda x: llama.token_to_id("<0x%02X>" % x)
once = llama.encode("Once", add_special_tokens=False).ids
llama_seqs = [
    [b(0xE4), b(0xBD), b(0xA0)],                 # complete run: one character
    [b(0xE4), b(0xBD)],                          # incomplete run at the end
    [b(0xE4), b(0xBD)] + once,                   # incomplete run, then text
    [b(0xFF)] + once + [b(0xC3), b(0xA9)],       # invalid byte, text, valid run
    [b(0xE4), b(0xBD), b(0xA0), b(0xFF)],        # valid character followed by an invalid byte
    [1] + once + [2, 1] + once,                  # BOS/EOS inside
    once + once,
    [0, 0] + once,                               # <unk>
]
out["llama"] = {
    "cases": cases,
    "decode": [{"ids": s, "text": llama.decode(s, skip_special_tokens=False),
                "text_skip": llama.decode(s, skip_special_tokens=True)} for s in llama_seqs],
}

qwen = Tokenizer.from_file(f"{fx}/tokenizers/qwen2.5/tokenizer.json")
golden = json.load(open(f"{fx}/tokenizers/tokenizer_golden.json"))
qdec = []
for ids in golden["qwen_ids"]:
    qdec.append({"ids": ids, "text": qwen.decode(ids, skip_special_tokens=False),
                 "text_skip": qwen.decode(ids, skip_special_tokens=True)})
emoji = qwen.encode("\U0001F600", add_special_tokens=False).ids
qb = lambda ch: qwen.token_to_id(ch)
extra = [
    [qb("\u00f0"), qb("\u0141")],                               # F0 9F: an incomplete 4-byte character
    [qb("\u00f0"), qb("\u0141")] + qwen.encode("ok").ids,       # ... followed by text
    [qb("\u0142")] + qwen.encode("x").ids,                      # a lone continuation byte (0xA0)
    emoji + [151643] + emoji,
    qwen.encode("<think>\nhi\n</think>").ids,
]
for ids in extra:
    qdec.append({"ids": ids, "text": qwen.decode(ids, skip_special_tokens=False),
                 "text_skip": qwen.decode(ids, skip_special_tokens=True)})
out["qwen"] = {"decode": qdec}


# qwen2-tiny-spam-cls: its tokenizer.json truncates to 256 tokens (and pads BatchLongest, a no-op for
# one sequence). Ids of the first 8 mails of corpora/spam-val.jsonl (the test reads the texts there).
spam = Tokenizer.from_file(f"{fx}/models/qwen2-tiny-spam-cls/tokenizer.json")
mails = [json.loads(line)["text"] for line in open(f"{fx}/corpora/spam-val.jsonl", encoding="utf-8")][:8]
out["spam_cls"] = {"first_mails_ids": [spam.encode(t, add_special_tokens=False).ids for t in mails]}

# Small synthetic tokenizers for the rules the real files do not exercise: added-token flags
# (lstrip, rstrip, single_word, normalized), every Split behavior and invert, Metaspace, truncation,
# padding, Bert-style post-processing, merges written as pairs, unk fusing.
def synthetic(pre, extra=None, decoder=None):
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<unk>": 0, "[CLS]": 1, "[SEP]": 2, "[PAD]": 3}
    for ch in letters + " .,!\u2581\u0120":
        vocab[ch] = len(vocab)
    merges = [["a", "b"], ["ab", "c"], ["t", "h"], ["th", "e"], ["h", "e"], ["\u2581", "t"], ["\u2581t", "he"], ["e", "r"], ["\u0120", "t"], ["\u0120t", "he"]]
    for a, b2 in merges:
        vocab.setdefault(a + b2, len(vocab))
    added = []
    for content, flags in [("[L]", {"lstrip": True}), ("[R]", {"rstrip": True}), ("[W]", {"single_word": True}),
                           ("xyz", {"normalized": True, "special": False}), ("[LR]", {"lstrip": True, "rstrip": True}),
                           ("[S]", {"special": True})]:
        tok = {"id": len(vocab) + len(added), "content": content, "single_word": False, "lstrip": False,
               "rstrip": False, "normalized": False, "special": True}
        tok.update(flags)
        added.append(tok)
    j = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Replace", "pattern": {"String": "Q"}, "content": "x"},
        "pre_tokenizer": pre,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [1], "tokens": ["[CLS]"]},
                                              "[SEP]": {"id": "[SEP]", "ids": [2], "tokens": ["[SEP]"]}}},
        "decoder": decoder,
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
    if extra:
        j.update(extra)
    return j

SYN_TEXTS = [
    "abc the theabc", "  [L]  x", "x  [R]  y", "a [W] b", "a[W]b", "[W]", "the xyz Qyz QYZ", "a  [LR]  b", "[S]abc[S]",
    "the. end!", "a , b", "  leading", "trailing  ", "", "x", "abcabcabc thethe", "\u00e9\u00e8 unknown \u4f60 chars",
    "[L][R][W]", "a\u2581b the",
]
syn_defs = {
    "split_isolated": ({"type": "Split", "pattern": {"String": " "}, "behavior": "Isolated", "invert": False}, None),
    "split_removed": ({"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed", "invert": False}, None),
    "split_prev": ({"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": False}, None),
    "split_next": ({"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithNext", "invert": False}, None),
    "split_contiguous": ({"type": "Split", "pattern": {"Regex": "[ .,!]"}, "behavior": "Contiguous", "invert": False}, None),
    "split_invert": ({"type": "Split", "pattern": {"Regex": "[a-z]+"}, "behavior": "Isolated", "invert": True}, None),
    "metaspace_always": ({"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}, None,
                         {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}),
    "metaspace_first": ({"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}, None,
                        {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                                                          {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 2}]}),
    "bytelevel_regex_prefix": ({"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}, None,
                               {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}),
    "strip_per_token": ({"type": "Split", "pattern": {"String": " "}, "behavior": "Isolated", "invert": False}, None,
                        {"type": "Sequence", "decoders": [{"type": "Strip", "content": "a", "start": 1, "stop": 1},
                                                          {"type": "Replace", "pattern": {"String": "th"}, "content": "TH"}]}),
    "none_trunc_pad": (None, {"truncation": {"direction": "Right", "max_length": 6, "strategy": "LongestFirst", "stride": 0},
                              "padding": {"strategy": {"Fixed": 8}, "direction": "Right", "pad_to_multiple_of": None,
                                          "pad_id": 3, "pad_type_id": 0, "pad_token": "[PAD]"}}),
    "trunc_left_pad_multiple": (None, {"truncation": {"direction": "Left", "max_length": 5, "strategy": "LongestFirst", "stride": 0},
                                       "padding": {"strategy": "BatchLongest", "direction": "Left", "pad_to_multiple_of": 4,
                                                   "pad_id": 3, "pad_type_id": 0, "pad_token": "[PAD]"}}),
}
def hf_decode(tk, ids, skip):
    """HF's Strip decoder panics (Rust slice index) when start and stop overlap; record null then."""
    try:
        return tk.decode(ids, skip_special_tokens=skip)
    except BaseException:  # pyo3_runtime.PanicException derives from BaseException
        return None


syn = []
for name, spec in syn_defs.items():
    pre, extra = spec[0], spec[1]
    j = synthetic(pre, extra, spec[2] if len(spec) > 2 else None)
    tk = Tokenizer.from_str(json.dumps(j))
    cases = []
    for t in SYN_TEXTS:
        c = {"text": t, "ids": tk.encode(t, add_special_tokens=False).ids, "ids_special": tk.encode(t).ids}
        tk.encode_special_tokens = True  # special tokens are not matched: parse_special = false
        c["ids_no_parse"] = tk.encode(t, add_special_tokens=False).ids
        tk.encode_special_tokens = False
        c["decoded"] = hf_decode(tk, c["ids_special"], False)
        c["decoded_skip"] = hf_decode(tk, c["ids_special"], True)
        cases.append(c)
    syn.append({"name": name, "tokenizer": j, "cases": cases})
out["synthetic"] = syn

json.dump(out, open("tests/tokenizer/hf_vectors.json", "w"), ensure_ascii=True, separators=(",", ":"))
print("wrote tests/tokenizer/hf_vectors.json")
