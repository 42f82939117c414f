#!/usr/bin/env python3
"""Markdown report of one GPU benchmark call: bench_kernels_cuda's JSON lines (its stdout, or the
bench-kernels section of a tests/gpu/device_run.sh log) joined with bench/peer_gemm.py and bench/peer_sdpa.py from the SAME device call. Prints,
per 7B linear shape and row count, GPU times (L2 cold: weights from HBM, as in decode) and the ratios
the CUDA issue asks for: W4A16 vs cuBLASLt bf16 and vs PyTorch's int4 kernel (tinygemm), W4A16 as a
fraction of the measured copy bandwidth, W8A8 vs bf16; and prefill attention vs PyTorch SDPA (flash).

  python3 bench/cuda_report.py LOG peer_gemm.json peer_sdpa.json > report.md   (peer_sdpa.json may be "-")
"""
import json, sys


def main():
    log, pg, ps = sys.argv[1:4]
    lines = open(log).read().splitlines()
    if any(l.startswith("===== bench-kernels:") for l in lines):  # a tests/gpu/device_run.sh log: that section only
        i = next(k for k, l in enumerate(lines) if l.startswith("===== bench-kernels:"))
        j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("===== ")), len(lines))
        lines = lines[i:j]
    ours = [json.loads(l[5:]) for l in lines if l.startswith("JSON ")]
    ceil = next(o for o in ours if o["kind"] == "ceilings")
    peer = {(r["shape"], r["m"]): r for r in json.load(open(pg))["gemm"]}
    sdpa = json.load(open(ps)) if ps != "-" else {}  # "-": no SDPA figures
    print(f"ceilings (same run): copy {ceil['copy_GBps']:.0f} GB/s, bf16 GEMM {ceil['bf16_gemm_TFLOPs']:.0f} TFLOP/s\n")
    print("| shape | M | bf16 us | W4A16 us | × bf16 | × tinygemm | % copy BW | W8A16 × bf16 | W8A8 us | W8A8 × bf16 | tinygemm us |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    seen = set()
    for o in ours:
        if o["kind"] != "gemm" or (o["shape"], o["m"]) in seen:
            continue
        seen.add((o["shape"], o["m"]))
        p = peer.get((o["shape"], o["m"]))
        tg = p["tinygemm_cold_us"] if p else float("nan")
        print(f"| {o['shape']} | {o['m']} | {o['bf16_cold_us']:.1f} | {o['w4a16_cold_us']:.1f} | "
              f"{o['bf16_cold_us'] / o['w4a16_cold_us']:.2f} | {tg / o['w4a16_cold_us']:.2f} | "
              f"{100 * o['w4a16_weight_bw_frac_cold']:.0f} | {o['bf16_cold_us'] / o['w8a16_cold_us']:.2f} | "
              f"{o['w8a8_cold_us']:.1f} | {o['bf16_cold_us'] / o['w8a8_cold_us']:.2f} | {tg:.1f} |")
    graphs = [o for o in ours if o["kind"] == "gemm_graph"]
    if graphs:
        print("\nCUDA Graph, back to back over rotated weight copies (as a decode step replays them; no per-launch "
              "event cost):\n")
        print("| shape | M | bf16 us | W4A16 us | × bf16 | × tinygemm | % copy BW | W8A16 × bf16 | W8A8 us | W8A8 × bf16 | tinygemm us |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for o in graphs:
            p = peer.get((o["shape"], o["m"]))
            tg = p.get("tinygemm_graph_us", float("nan")) if p else float("nan")
            wb = o["n"] * o["k"] / 2 + o["n"] * (o["k"] // 128) * 5
            print(f"| {o['shape']} | {o['m']} | {o['bf16_us']:.2f} | {o['w4a16_us']:.2f} | "
                  f"{o['bf16_us'] / o['w4a16_us']:.2f} | {tg / o['w4a16_us']:.2f} | "
                  f"{100 * wb / (o['w4a16_us'] * 1e3) / ceil['copy_GBps']:.0f} | {o['bf16_us'] / o['w8a16_us']:.2f} | "
                  f"{o['w8a8_us']:.2f} | {o['bf16_us'] / o['w8a8_us']:.2f} | {tg:.2f} |")
        pb = [(k, r) for k, r in peer.items() if "bf16_graph_us" in r]
        if pb:
            print("\nPyTorch bf16 (X @ Wᵀ) in the same graph mode, for reference: " +
                  ", ".join(f"{k[0]} M={k[1]} {r['bf16_graph_us']:.2f} us" for k, r in pb))
    print("\n| attention | batch | len | ours us | TFLOP/s | % bf16 GEMM rate | SDPA flash us | × SDPA |")
    print("|---|---|---|---|---|---|---|---|")
    sd = {r["batch"]: r for r in sdpa.get("prefill", [])}
    for o in ours:
        if o["kind"] != "attention":
            continue
        if o["case"] == "prefill":
            s = sd.get(o["batch"])
            print(f"| prefill | {o['batch']} | {o['len']} | {o['us']:.1f} | {o['TFLOPs']:.0f} | "
                  f"{100 * o['TFLOPs'] / ceil['bf16_gemm_TFLOPs']:.0f} | {s['us'] if s else float('nan'):.1f} | "
                  f"{(s['us'] / o['us']) if s else float('nan'):.2f} |")
        else:
            print(f"| decode | {o['batch']} | {o['len']} | {o['us']:.1f} | {o['GBps']:.0f} GB/s of KV | "
                  f"{100 * o['GBps'] / ceil['copy_GBps']:.0f} % of copy | | |")


if __name__ == "__main__":
    main()
