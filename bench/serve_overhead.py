#!/usr/bin/env python3
"""Service overhead: the same work through gRPC end to end (qquant-serve driven by qquant-bench) and
through the engine alone (bench_serve_engine: the same scheduler in-process, no gRPC), measured side by
side in one run, alternating, several rounds, and compared by medians.

    python3 bench/serve_overhead.py [--build build] [--model DIR] [--concurrency 1,8,32]
        [--requests-per-client 6] [--max-new-tokens 32] [--rounds 5] [--threads N]

Work: greedy Generate of qquant-bench's built-in prompts, ignore_eos, --max-new-tokens each; requests =
concurrency x --requests-per-client. Both sides use the same engine settings (--max-batch 64,
--kv-blocks 1024, --max-seq-len 256, default chunking) and the same CPU threads (--threads, default: the
backend's, all CPUs). Rounds alternate which
side runs first, so slow drifts of a shared machine fall on both. Prints each round, the medians, and
the gRPC / engine ratio of the medians (the figure the service-overhead goal is about), plus CPU seconds
of the server and of the client, the CPU seconds of the busiest thread of each side (the engine thread
with --threads 1: what the service adds to the engine's own work, free of how the OS shares a loaded
machine), and qquant-bench's latency percentiles from the median gRPC round.
Exit status 0 (it measures, it does not judge)."""
import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

ENGINE_FLAGS = ["--max-batch", "64", "--kv-blocks", "1024", "--max-seq-len", "256"]


def cpu_seconds(pid):
    """utime + stime of a live process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid):
    """{tid: utime + stime seconds} of a live process's threads."""
    out = {}
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, t)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        out[t] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_engine(bindir, model, conc, requests, max_new, threads):
    c0 = children_cpu()
    p = subprocess.Popen([os.path.join(bindir, "bench_serve_engine"), "--model", model, "--concurrency", str(conc),
                          "--requests", str(requests), "--max-new-tokens", str(max_new), "--threads", str(threads)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    busiest = 0.0
    while p.poll() is None:  # the busiest thread's CPU, read until the process ends
        try:
            busiest = max([busiest] + list(thread_cpu(p.pid).values()))
        except FileNotFoundError:
            break
        time.sleep(0.05)
    out, err = p.communicate()
    if p.returncode != 0:
        sys.exit("bench_serve_engine failed:\n" + out + err)
    cpu = children_cpu() - c0
    m = re.search(r"failed (\d+), wall ([\d.]+) s, [\d.]+ requests/s, (\d+) tokens, ([\d.]+) tokens/s", out)
    if not m or m.group(1) != "0" or int(m.group(3)) != requests * max_new:
        sys.exit("bench_serve_engine: unexpected output:\n" + out)
    return {"tokens_per_s": float(m.group(4)), "wall_s": float(m.group(2)), "cpu_s": cpu, "busiest_s": busiest}


def run_grpc(bindir, server, addr, conc, requests, max_new):
    s0, c0, t0 = cpu_seconds(server.pid), children_cpu(), thread_cpu(server.pid)
    out = subprocess.run([os.path.join(bindir, "qquant-bench"), "--addr", addr, "--concurrency", str(conc),
                          "--requests", str(requests), "--max-new-tokens", str(max_new), "--json"],
                         capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    if r["ok"] != requests or r["generated_tokens"] != requests * max_new:
        sys.exit("qquant-bench: unexpected result: " + out)
    r["server_cpu_s"] = cpu_seconds(server.pid) - s0
    t1 = thread_cpu(server.pid)
    r["busiest_s"] = max(v - t0.get(k, 0.0) for k, v in t1.items())
    r["client_cpu_s"] = children_cpu() - c0
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--model", default=os.path.join(os.environ.get("QQ_FIXTURES", "../shared/fixtures"), "models",
                                                    "qwen2-tiny-lm"))
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--requests-per-client", type=int, default=6)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="CPU backend threads of both sides (0: default)")
    a = ap.parse_args()
    bindir = os.path.join(a.build, "bin")
    server = subprocess.Popen([os.path.join(bindir, "qquant-serve"), "--model", a.model, "--port", "0",
                               "--metrics-port", "-1", "--threads", str(a.threads)] + ENGINE_FLAGS,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    m = re.search(r"listening on ([\d.]+:\d+)", server.stdout.readline())
    if not m:
        sys.exit("qquant-serve did not start")
    addr = m.group(1)
    with open("/proc/cpuinfo") as f:
        cpu_model = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    print("# serve_overhead: %s, %d CPUs (%s), load average at start %s" %
          (a.model, os.cpu_count(), cpu_model, " ".join("%.1f" % x for x in os.getloadavg())))
    print("# server: qquant-serve %s --threads %d; engine alone: bench_serve_engine (same settings); 0 threads: "
          "the backend's default" % (" ".join(ENGINE_FLAGS), a.threads))
    summary = []
    try:
        for conc in [int(x) for x in a.concurrency.split(",")]:
            n = conc * a.requests_per_client
            run_grpc(bindir, server, addr, conc, conc, 4)  # warm-up: connections, allocator, pages
            eng, grpc_ = [], []
            print("\n## concurrency %d, %d requests x %d tokens\n" % (conc, n, a.max_new_tokens))
            print("| round | order | engine tokens/s | gRPC tokens/s | gRPC / engine | engine CPU s | server CPU s "
                  "| client CPU s | busiest thread CPU s, engine / server | load avg |")
            print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
            for r in range(a.rounds):
                if r % 2 == 0:
                    e = run_engine(bindir, a.model, conc, n, a.max_new_tokens, a.threads)
                    g = run_grpc(bindir, server, addr, conc, n, a.max_new_tokens)
                else:
                    g = run_grpc(bindir, server, addr, conc, n, a.max_new_tokens)
                    e = run_engine(bindir, a.model, conc, n, a.max_new_tokens, a.threads)
                eng.append(e)
                grpc_.append(g)
                print("| %d | %s | %.1f | %.1f | %.3f | %.2f | %.2f | %.2f | %.2f / %.2f | %.1f |" % (
                    r + 1, "engine, gRPC" if r % 2 == 0 else "gRPC, engine", e["tokens_per_s"], g["tokens_per_s"],
                    g["tokens_per_s"] / e["tokens_per_s"], e["cpu_s"], g["server_cpu_s"], g["client_cpu_s"],
                    e["busiest_s"], g["busiest_s"], os.getloadavg()[0]), flush=True)
            me = statistics.median(x["tokens_per_s"] for x in eng)
            mg = statistics.median(x["tokens_per_s"] for x in grpc_)
            mr = statistics.median(g["tokens_per_s"] / e["tokens_per_s"] for e, g in zip(eng, grpc_))
            mid = sorted(grpc_, key=lambda x: x["tokens_per_s"])[len(grpc_) // 2]
            print("\nmedians: engine %.1f tokens/s, gRPC %.1f tokens/s; gRPC / engine = %.3f (median of the "
                  "rounds' ratios %.3f); CPU s: engine %.2f, server %.2f, client %.2f; busiest thread: engine %.2f, "
                  "server %.2f" % (
                      me, mg, mg / me, mr, statistics.median(x["cpu_s"] for x in eng),
                      statistics.median(x["server_cpu_s"] for x in grpc_),
                      statistics.median(x["client_cpu_s"] for x in grpc_),
                      statistics.median(x["busiest_s"] for x in eng), statistics.median(x["busiest_s"] for x in grpc_)))
            print("median gRPC round (qquant-bench): TTFT p50/p90/p99 %s s, time per output token p50/p90/p99 %s s, "
                  "request latency p50/p90/p99 %s s" % tuple("/".join("%.4f" % v for v in mid[k])
                                                             for k in ("ttft_s", "tpot_s", "latency_s")))
            summary.append((conc, n, me, mg, mg / me, mr, statistics.median(x["busiest_s"] for x in eng),
                            statistics.median(x["busiest_s"] for x in grpc_)))
    finally:
        server.terminate()
        server.wait(timeout=60)
    print("\n## summary\n")
    print("| concurrency | requests | engine tokens/s (median) | gRPC tokens/s (median) | gRPC / engine "
          "| median of round ratios | busiest thread CPU s, engine / server (medians) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for conc, n, me, mg, ratio, mr, be, bg in summary:
        print("| %d | %d | %.1f | %.1f | %.3f | %.3f | %.2f / %.2f |" % (conc, n, me, mg, ratio, mr, be, bg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
