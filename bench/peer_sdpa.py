#!/usr/bin/env python3
"""PyTorch SDPA (flash backend) on the attention shapes bench_kernels_cuda measures: Qwen2.5-7B heads
(28 query / 4 key-value heads, head_dim 128), bf16, causal prefill of 2048 tokens at batch 1 and 4.
The key/value heads are expanded to 28 as Hugging Face does (repeat_kv) before calling SDPA; only the
SDPA call is timed (median of CUDA-event timings), like bench_kernels_cuda. Run it in the same device
call as the benchmark and compare the ratio.

  python3 bench/peer_sdpa.py [--out FILE]
"""
import argparse, json, os
import torch
from torch.nn.attention import sdpa_kernel, SDPBackend


def timed(fn, iters=50, warm=5):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "/tmp"), "peer_sdpa.json"))
    a = ap.parse_args()
    res = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0), "prefill": []}
    H, KV, D, L = 28, 4, 128, 2048
    for B in (1, 4):
        q = torch.randn(B, H, L, D, dtype=torch.bfloat16, device="cuda")
        k = torch.randn(B, KV, L, D, dtype=torch.bfloat16, device="cuda").repeat_interleave(H // KV, dim=1)
        v = torch.randn(B, KV, L, D, dtype=torch.bfloat16, device="cuda").repeat_interleave(H // KV, dim=1)
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            ms = timed(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True))
        flops = 4 * D * H * L * L / 2 * B
        r = {"batch": B, "len": L, "us": round(ms * 1e3, 1), "TFLOPs": round(flops / ms / 1e9, 1)}
        res["prefill"].append(r)
        print("sdpa flash", r, flush=True)
    json.dump(res, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
