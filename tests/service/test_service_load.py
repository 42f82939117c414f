"""Concurrency: 64 clients (one channel each) send a mix of Generate, zero-shot Classify,
GetModelInfo and Health requests to one server. Every request gets exactly one complete answer; every
greedy generation equals the offline engine's (`qquant generate`, one sequence alone) and the fixture's
golden greedy ids (computed by HF), and every classification equals the same request run alone; the
server's memory stays flat."""
import json
import os
import subprocess
import threading
import time
import unittest

import grpc

import qqsvc as q

# Zero-shot log-likelihoods of one request alone vs batched with others: the forward pass's GEMMs see a
# different number of rows, which can change the last bits of fp32 sums (measured: ~1e-7 relative).
# Greedy token ids are compared exactly.
LL_TOL = 1e-3
TEXTS = ["Buy cheap pills now, limited offer", "The committee met on Tuesday to discuss the budget",
         "Dear friend, I am a prince and need your help", "Once upon a time there was a cat"]
LABELS = [" spam", " ham"]
GEN_TOKENS = 8
# Memory stable: after the first 10 % of the requests (allocator and grpc pools warmed up) the server's
# RSS may grow by at most this much over the remaining 90 % (1,800 requests at full scale): a leak of
# 4.6 KiB or more per request would exceed it. Measured growth: 1.2 MiB (bench/results/serve-cpu.md).
RSS_GROWTH_LIMIT_KIB = 8 * 1024


def offline_greedy(prompt, n):
    """`qquant generate`: the offline engine, one sequence, no server."""
    r = subprocess.run([os.path.join(q.BIN, "qquant"), "generate", "--model", q.LM, "--prompt", prompt,
                        "--max-new-tokens", str(n), "--ignore-eos", "--device", "cpu", "--json"],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError("qquant generate failed: " + r.stderr)
    return json.loads(r.stdout)["token_ids"]


class Load(unittest.TestCase):
    def test_64_clients_mixed(self):
        n_req = max(200, int(2000 * q.SCALE))
        s = q.Server(q.LM, ["--max-batch", "64", "--kv-blocks", "1024", "--max-seq-len", "256",
                            "--max-queue", "4096"])
        try:
            g = q.golden_lm()
            offline = [offline_greedy(p, GEN_TOKENS) for p in g["prompts"][:4]]
            for k in range(4):  # the offline engine agrees with HF on these prompts
                self.assertEqual(offline[k], g["greedy_%d" % k][:GEN_TOKENS], k)
            ref_cls = [[x.logit for x in s.classify(inputs=[t], candidate_labels=LABELS).results[0].scores]
                       for t in TEXTS]
            channels = [grpc.insecure_channel(s.addr) for _ in range(64)]
            results = {}
            lock = threading.Lock()
            counter = iter(range(n_req))
            rss = {}

            def check(i, kind, ok, detail):
                with lock:
                    self.assertNotIn(i, results, "request %d answered twice" % i)
                    results[i] = (kind, ok, detail)

            def worker(w):
                ch = channels[w]
                while True:
                    with lock:
                        i = next(counter, None)
                        if i is not None and i % (n_req // 10) == 0:
                            rss[i] = s.rss_kib()
                    if i is None:
                        return
                    kind = ("gen", "gen", "cls", "gen", "info", "gen", "cls", "health")[i % 8]
                    try:
                        if kind == "gen":
                            k = i % 4
                            rs = list(s.stream("/qquant.v1.Inference/Generate",
                                               q.GenerateRequest(prompt=g["prompts"][k], max_new_tokens=GEN_TOKENS,
                                                                 ignore_eos=True), q.GenerateResponse, channel=ch,
                                               timeout=300))
                            ids = [t for r in rs for t in r.token_ids]
                            finals = [r for r in rs if r.finish_reason]
                            ok = ids == offline[k] and len(finals) == 1 and rs[-1] is finals[0]
                            check(i, kind, ok, ids)
                        elif kind == "cls":
                            k = i % 4
                            r = s.unary("/qquant.v1.Inference/Classify",
                                        q.ClassifyRequest(inputs=[TEXTS[k]], candidate_labels=LABELS),
                                        q.ClassifyResponse, channel=ch, timeout=300)
                            got = [x.logit for x in r.results[0].scores]
                            ok = len(r.results) == 1 and all(abs(a - b) <= LL_TOL for a, b in zip(got, ref_cls[k]))
                            check(i, kind, ok, got)
                        elif kind == "info":
                            r = s.unary("/qquant.v1.Inference/GetModelInfo", q.GetModelInfoRequest(), q.ModelInfo,
                                        channel=ch, timeout=300)
                            check(i, kind, r.vocab_size == 8192, None)
                        else:
                            r = s.unary("/grpc.health.v1.Health/Check", q.HealthCheckRequest(), q.HealthCheckResponse,
                                        channel=ch, timeout=300)
                            check(i, kind, r.status == q.SERVING, None)
                    except grpc.RpcError as e:
                        check(i, kind, False, "%s: %s" % (e.code(), e.details()))

            t0 = time.time()
            ts = [threading.Thread(target=worker, args=(w,)) for w in range(64)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            wall = time.time() - t0
            rss["end"] = s.rss_kib()
            for ch in channels:
                ch.close()
            self.assertEqual(sorted(results), list(range(n_req)), "lost requests")
            bad = {i: r for i, r in results.items() if not r[1]}
            self.assertEqual(bad, {}, "wrong answers: %s" % list(bad.items())[:5])
            early = rss[n_req // 10]
            growth = rss["end"] - early
            print("\n%d requests from 64 clients in %.1f s; server RSS (KiB) at each 10 %%: %s; %+d KiB after "
                  "the first 10 %%; engine steps: %s" % (n_req, wall, " ".join(str(rss[k]) for k in sorted(
                      x for x in rss if x != "end")) + " " + str(rss["end"]), growth,
                      s.metric("qquant_engine_steps_total")))
            # Under ASan the allocator's quarantine holds freed memory by design, so RSS says nothing there;
            # LeakSanitizer checks the server at exit instead (a leak makes its exit status nonzero).
            if os.environ.get("QQ_SERVICE_SANITIZED") != "1":
                self.assertLess(growth, RSS_GROWTH_LIMIT_KIB)
            self.assertEqual(s.metric("qquant_kv_blocks_used"), 0)
        finally:
            self.assertEqual(s.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
