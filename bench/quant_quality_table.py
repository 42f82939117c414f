#!/usr/bin/env python3
"""Markdown tables of docs/quality.md from the JSON lines bench/quant_quality.sh writes.

    python3 bench/quant_quality_table.py quality.jsonl [more.jsonl ...] > table.md

A later line for the same (model, method, options, corpus) replaces an earlier one."""
import json
import math
import sys

rows = {}
for path in sys.argv[1:]:
    for line in open(path, encoding="utf-8"):
        if line.strip():
            r = json.loads(line)
            rows[(r["model"], r["method"], r["options"], r["corpus"])] = r

METHOD_ORDER = {"fp": 0, "rtn": 1, "awq": 2, "gptq": 3, "smoothquant": 4}


def setting(method, opts):
    """'W4 g128 asym' style label from the method's resolved report (or fp)."""
    if method == "fp":
        return "bf16 weights, fp32 compute"
    o = opts.split()
    bits = o[o.index("--bits") + 1] if "--bits" in o else ("8" if method == "smoothquant" else "4")
    g = o[o.index("--group-size") + 1] if "--group-size" in o else ("-1" if method == "smoothquant" else "128")
    if method == "smoothquant":
        return "W8A8 (per-channel weights, dynamic per-token activations), α 0.5"
    sym = "sym" if ("--sym" in o or (method == "gptq" and "--asym" not in o)) else "asym"
    return f"W{bits} {'per-channel' if g == '-1' else 'g' + g} {sym}"


def key(r):
    o = r["options"].split()
    bits = int(o[o.index("--bits") + 1]) if "--bits" in o else 8
    g = int(o[o.index("--group-size") + 1]) if "--group-size" in o else -1
    return (METHOD_ORDER[r["method"]], -bits, -(g if g > 0 else 10**6))


def fmt(v, spec):
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


models = sorted({k[0] for k in rows}, key=lambda m: ("cls" in m, m))
for model in models:
    configs = sorted({(k[1], k[2]) for k in rows if k[0] == model},
                     key=lambda c: key({"method": c[0], "options": c[1]}))
    print(f"### {model}\n")
    if "cls" in model:
        print("| method | setting | spam-val accuracy | correct / 920 | KL(fp ‖ q) of the labels | label agreement |")
        print("| --- | --- | --- | --- | --- | --- |")
        for m, o in configs:
            r = rows.get((model, m, o, "spam-val"))
            if not r:
                continue
            e = r["eval"]
            print(f"| {m} | {setting(m, o)} | {100 * e['accuracy']:.2f} % | {e['correct']:.0f} | "
                  f"{fmt(e.get('kl_mean'), '.6f')} | {fmt(100 * e.get('label_agreement', 1), '.2f')} % |")
        print()
        continue
    print("| method | setting | wikitext2 ppl | KL | top-1 | brown-dev ppl | KL | top-1 | mean rel. err |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for m, o in configs:
        w = rows.get((model, m, o, "wikitext2-test.txt"))
        b = rows.get((model, m, o, "brown-dev.txt"))
        cells = []
        for r in (w, b):
            if r:
                e = r["eval"]
                cells += [fmt(e["ppl"], ".2f"), fmt(e.get("kl_mean"), ".5f"), fmt(100 * e.get("top1_agreement", 1), ".2f") + " %"]
            else:
                cells += ["–", "–", "–"]
        rep = (w or b)["report"] or {}
        cells += [fmt(rep.get("mean_rel_err"), ".4f")]
        print(f"| {m} | {setting(m, o)} | " + " | ".join(cells) + " |")
    print()
