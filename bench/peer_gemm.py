#!/usr/bin/env python3
"""The PyTorch GEMM peers timed as bench_kernels_cuda times its own kernels: GPU time per launch, each
launch queued behind a 50 us GPU sleep (torch.cuda._sleep) so that Python's enqueue time is not counted,
L2-warm and L2-cold (256 MB read before each timed launch). Same Qwen2.5-7B linear shapes and rows.
../shared/bench/peers_torch.py times the same kernels including the host's enqueue; this script exists
so that the kernel-to-kernel ratios compare like with like. Run it in the same device call.
"graph" (as bench_kernels_cuda's graph mode, tests/gpu/gpu_timing.cuh): 64+ launches back to back in one
CUDA Graph over distinct weight copies (≥ 256 MB per rotation, so every launch reads HBM), graph time
divided by the launches.

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


def copies_for(nbytes):
    return max(2, min(64, -(-(256 << 20) // nbytes)))


def graph_timed(fns, flush, iters=20):
    """Median per-launch time of the fns (one per weight copy) replayed back to back from one graph."""
    reps = -(-64 // len(fns))
    for f in fns:
        f()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(reps):
            for f in fns:
                f()
    g.replay()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(100000)
        flush()
        a.record(); g.replay(); b.record(); torch.cuda.synchronize()
        ts.append(a.elapsed_time(b) * 1e3 / (reps * len(fns)))
    ts.sort()
    del g
    return ts[len(ts) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="1,16,64,256")
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "/tmp"), "peer_gemm.json"))
    ap.add_argument("--skip-graph", action="store_true")
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
        Ws = w4s = None
        if not a.skip_graph:
            Ws = [W] + [W.clone() for _ in range(copies_for(W.numel() * 2) - 1)]
            w4s = [w4] + [w4.clone() for _ in range(copies_for(N * K // 2) - 1)]
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
            if Ws is not None:
                r["bf16_graph_us"] = round(graph_timed([(lambda Wc=Wc: X @ Wc.t()) for Wc in Ws], flush), 3)
                r["tinygemm_graph_us"] = round(graph_timed(
                    [(lambda wc=wc: torch._weight_int4pack_mm(X, wc, 128, sz)) for wc in w4s], flush), 3)
                r["copies"] = [len(Ws), len(w4s)]
            res["gemm"].append(r)
            print(json.dumps(r), flush=True)
        del W, wq, w4, Wi, Ws, w4s
    json.dump(res, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
