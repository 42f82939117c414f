#!/usr/bin/env python3
"""The PyTorch GEMM peers timed as bench_kernels_cuda times its own kernels: GPU time per launch, each
launch queued behind a 50 us GPU sleep (torch.cuda._sleep) so that Python's enqueue time is not counted,
L2-warm and L2-cold (256 MB read before each timed launch). Same Qwen2.5-7B linear shapes and rows.
../shared/bench/peers_torch.py times the same kernels including the host's enqueue; this script exists
so that the kernel-to-kernel ratios compare like with like. Run it in the same device call.

  python3 bench/peer_gemm.py [--rows 1,16,64,256] [--out FILE]
"""
import argparse, json, os
import torch


def timed(fn, flush=None, iters=50, warm=3):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    cycles = 100000  # ~50 us at the H200's ~2 GHz SM clock
    ts = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(cycles)
        if flush is not None:
            flush()
        a.record(); fn(); b.record(); torch.cuda.synchronize()
        ts.append(a.elapsed_time(b) * 1e3)
    ts.sort()
    return ts[len(ts) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="1,16,64,256")
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "/tmp"), "peer_gemm.json"))
    a = ap.parse_args()
    rows = [int(r) for r in a.rows.split(",")]
    fb = torch.ones(64 << 20, dtype=torch.float32, device="cuda")  # 256 MB
    flush = lambda: fb.sum()
    res = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0), "gemm": []}
    shapes = {"qkv": (3584, 4608), "o": (3584, 3584), "gate_up": (3584, 37888), "down": (18944, 3584)}
    for name, (K, N) in shapes.items():
        W = torch.randn(N, K, dtype=torch.bfloat16, device="cuda")
        wq = torch.randint(0, 16, (N, K), dtype=torch.int32, device="cuda")
        w4 = torch._convert_weight_to_int4pack(((wq[:, ::2] << 4) | wq[:, 1::2]).to(torch.uint8), 8)
        sz = torch.randn(K // 128, N, 2, dtype=torch.bfloat16, device="cuda")
        Wi = torch.randint(-127, 127, (K, N), dtype=torch.int8, device="cuda")
        for M in rows:
            X = torch.randn(M, K, dtype=torch.bfloat16, device="cuda")
            r = {"shape": name, "k": K, "n": N, "m": M}
            for tag, f in (("bf16", lambda: X @ W.t()), ("tinygemm", lambda: torch._weight_int4pack_mm(X, w4, 128, sz))):
                r[f"{tag}_us"] = round(timed(f), 2)
                r[f"{tag}_cold_us"] = round(timed(f, flush), 2)
            if M > 16:
                Xi = torch.randint(-127, 127, (M, K), dtype=torch.int8, device="cuda")
                f = lambda: torch._int_mm(Xi, Wi)
                r["int_mm_us"] = round(timed(f), 2)
                r["int_mm_cold_us"] = round(timed(f, flush), 2)
            res["gemm"].append(r)
            print(json.dumps(r), flush=True)
        del W, wq, w4, Wi
    json.dump(res, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
