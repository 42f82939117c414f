"""SIGTERM drain: health turns NOT_SERVING (Watch streams of python3-grpcio and of qquant-client see it,
Check answers it), new work gets UNAVAILABLE, each of 32 open streams either completes or ends with
UNAVAILABLE, and the process exits 0."""
import os
import subprocess
import threading
import time
import unittest

import grpc

import qqsvc as q


class Drain(unittest.TestCase):
    def run_streams(self, s, n, max_new, results):
        """n Generate streams; stream k asks for max_new(k) tokens. results[k] = (code, messages, end time)."""
        def one(k):
            got = []
            try:
                for r in s.stream("/qquant.v1.Inference/Generate",
                                  q.GenerateRequest(prompt=q.golden_lm()["prompts"][k % 4], max_new_tokens=max_new(k),
                                                    ignore_eos=True), q.GenerateResponse, timeout=120):
                    got.append(r)
                results[k] = ("OK", got, time.time())
            except grpc.RpcError as e:
                results[k] = (e.code().name, got, time.time())
        ts = [threading.Thread(target=one, args=(k,)) for k in range(n)]
        for t in ts:
            t.start()
        return ts

    def test_sigterm_with_32_open_streams(self):
        # 16 short streams (24 tokens) and 16 long ones (1,500 tokens) in one batch. SIGTERM comes once the
        # server has generated about 18 tokens for each sequence (they advance together, one token per
        # step): the short ones finish during the 8 s grace period (6 more steps), the long ones cannot
        # (they would need ~1,480 steps of under 5.4 ms each; measured here: tens of ms per step).
        SHORT, LONG, GRACE = 24, 1500, 8
        s = q.Server(q.LM, ["--kv-blocks", "2048", "--max-seq-len", "2048", "--drain-seconds", str(GRACE)])
        watch = s.stream("/grpc.health.v1.Health/Watch", q.HealthCheckRequest(service=""), q.HealthCheckResponse)
        self.assertEqual(next(watch).status, q.SERVING)
        # the C client's Watch prints each status as it arrives
        cwatch = subprocess.Popen([os.path.join(q.BIN, "qquant-client"), "--addr", s.addr, "health",
                                   "qquant.v1.Inference", "--watch"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.assertEqual(cwatch.stdout.readline().strip(), "SERVING")
        results = {}
        lengths = lambda k: LONG if k % 2 == 0 else SHORT
        ts = self.run_streams(s, 32, lengths, results)
        deadline = time.time() + 120
        while (s.metric("qquant_tokens_total", 'kind="generated"') or 0) < 32 * (SHORT - 6) and time.time() < deadline:
            time.sleep(0.02)
        self.assertEqual(s.metric("qquant_active_sequences"), 32)
        self.assertEqual(s.metric("qquant_requests_total", 'method="Generate",code="OK"'), 0)  # none done yet
        t0 = time.time()
        s.proc.send_signal(15)
        self.assertEqual(next(watch).status, q.NOT_SERVING)
        self.assertEqual(cwatch.stdout.readline().strip(), "NOT_SERVING")
        self.assertEqual((s.health(""), s.health("qquant.v1.Inference")), (q.NOT_SERVING, q.NOT_SERVING))
        # new work of every Inference method while draining is refused
        for call in (s.info, lambda: s.generate(prompt="hi", max_new_tokens=2),
                     lambda: s.classify(inputs=["hi"], candidate_labels=[" a"])):
            try:
                call()
                refused = None
            except grpc.RpcError as e:
                refused = e.code()
            self.assertEqual(refused, grpc.StatusCode.UNAVAILABLE)
        rc = s.stop(timeout=60)
        elapsed = time.time() - t0
        # the watch ends with the server: UNAVAILABLE, exit status 10 + 14
        out, err = cwatch.communicate(timeout=30)
        self.assertEqual((cwatch.returncode, out), (10 + grpc.StatusCode.UNAVAILABLE.value[0], ""), err)
        for t in ts:
            t.join(timeout=60)
        self.assertEqual(rc, 0)
        self.assertLess(elapsed, GRACE + 10)
        self.assertEqual(len(results), 32)
        codes = {}
        for k, (code, got, t_end) in results.items():
            codes[code] = codes.get(code, 0) + 1
            n = sum(len(r.token_ids) for r in got)
            if k % 2:  # short: completes during the drain
                self.assertEqual((code, n, got[-1].finish_reason), ("OK", SHORT, q.FINISH_LENGTH), k)
            else:      # long: still running when the grace period ends
                self.assertEqual(code, "UNAVAILABLE", k)
                self.assertLess(n, LONG, k)
        print("drain outcome:", codes, "process exit %.1f s after SIGTERM" % elapsed)

    def test_sigterm_lets_short_work_finish(self):
        s = q.Server(q.LM, ["--kv-blocks", "256", "--drain-seconds", "30"])
        results = {}
        ts = self.run_streams(s, 8, lambda k: 16, results)
        deadline = time.time() + 30
        while (s.metric("qquant_active_sequences") or 0) < 1 and time.time() < deadline:
            time.sleep(0.01)
        self.assertEqual(s.stop(), 0)
        for t in ts:
            t.join(timeout=60)
        # streams already admitted finish; any that had not reached the server see UNAVAILABLE
        for code, got, _ in results.values():
            self.assertIn(code, ("OK", "UNAVAILABLE"))
            if code == "OK":
                self.assertEqual(sum(len(r.token_ids) for r in got), 16)
        self.assertGreater(sum(1 for c, _, _ in results.values() if c == "OK"), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
