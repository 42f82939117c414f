"""Black-box tests of qquant-serve: every RPC and error code over a real server on 127.0.0.1, with
Debian's python3-grpcio and with the project's C client (qquant-client)."""
import json
import os
import subprocess
import tempfile
import threading
import time
import unittest

import grpc
from google.protobuf import descriptor_pb2

import qqsvc as q

# Classifier logits vs the fixture's golden (HF fp32 on the same bf16 weights). The service passes the
# model's output row through untouched, so the difference is the CPU forward pass's own deviation from
# HF (summation order over 8 layers): measured at most 9.0e-3 over these 64 examples (|logit| <= 6.6).
# 3e-2 is a ~3x margin; the exact label check below still catches a wrong row, token or label order.
CLS_LOGIT_TOL = 3e-2


def code_of(fn):
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


class LanguageModelApi(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = q.Server(q.LM, ["--max-seq-len", "256", "--kv-blocks", "64", "--max-message-bytes", "65536"])
        cls.g = q.golden_lm()

    @classmethod
    def tearDownClass(cls):
        assert cls.s.stop() == 0

    def test_info(self):
        i = self.s.info()
        self.assertEqual(i.architecture, "Qwen2ForCausalLM")
        self.assertEqual(i.task, "causal-lm")
        self.assertEqual(i.quantization_method, "none")
        self.assertEqual(i.context_length, 256)
        self.assertEqual(i.vocab_size, 8192)
        self.assertEqual(i.device, "cpu")
        self.assertEqual(i.kv_blocks, 64)
        self.assertEqual(list(i.labels), [])

    def test_generate_matches_golden_greedy(self):
        for k, prompt in enumerate(self.g["prompts"]):
            rs = self.s.generate(prompt=prompt, max_new_tokens=32, ignore_eos=True)
            text, ids = q.joined(rs)
            self.assertEqual(ids, self.g["greedy_%d" % k], prompt)
            self.assertEqual(text, self.g["greedy_text_%d" % k], prompt)
            self.assertEqual(rs[-1].finish_reason, q.FINISH_LENGTH)
            self.assertEqual(rs[-1].usage.completion_tokens, 32)
            self.assertGreater(rs[-1].usage.prompt_tokens, 0)
            for r in rs[:-1]:
                self.assertEqual(r.finish_reason, 0)
                self.assertFalse(r.HasField("usage"))

    def test_generate_from_token_ids(self):
        ids = q.golden_prompt_ids()
        rs = self.s.generate(prompt_token_ids=ids[1], max_new_tokens=32, ignore_eos=True)
        self.assertEqual(q.joined(rs)[1], self.g["greedy_1"])
        self.assertEqual(rs[-1].usage.prompt_tokens, len(ids[1]))

    def test_stop_string(self):
        full = self.g["greedy_text_0"]
        stop = full[10:18]
        rs = self.s.generate(prompt=self.g["prompts"][0], max_new_tokens=32, ignore_eos=True, stop=[stop, "zzzz"])
        text, _ = q.joined(rs)
        self.assertEqual(text, full[:full.index(stop)])
        self.assertEqual(rs[-1].finish_reason, q.FINISH_STOP)

    def test_streamed_text_is_whole_utf8_characters(self):
        # Near-uniform sampling (temperature 100) over the 8,192-token byte-level vocabulary draws byte
        # tokens that are pieces of multi-byte characters, or no character at all. Every message's text
        # must be valid UTF-8 by itself (python's protobuf refuses to parse anything else), and the deltas
        # joined must equal the offline detokenizer's text for the same ids (`qquant detokenize`, one
        # pass over all ids; an incomplete tail becomes U+FFFD in both).
        rs = self.s.generate(prompt="Once upon a time", max_new_tokens=240, temperature=100, seed=5, ignore_eos=True)
        text, ids = q.joined(rs)
        self.assertEqual(len(ids), 240)
        r = subprocess.run([os.path.join(q.BIN, "qquant"), "detokenize", "--model", q.LM, "--skip-special"],
                           input=" ".join(map(str, ids)).encode(), capture_output=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(text, r.stdout.decode("utf-8", errors="strict"))
        self.assertTrue(any(ord(ch) > 0x7f for ch in text), "no multi-byte character was drawn: pick another seed")

    def test_sampling_is_reproducible_by_seed(self):
        kw = dict(prompt="Once upon a time", max_new_tokens=24, temperature=0.9, top_k=50, top_p=0.95, ignore_eos=True)
        a = q.joined(self.s.generate(seed=11, **kw))[1]
        b = q.joined(self.s.generate(seed=11, **kw))[1]
        c = q.joined(self.s.generate(seed=12, **kw))[1]
        self.assertEqual(a, b)
        self.assertEqual(len(a), 24)
        self.assertNotEqual(a, c)  # 24 draws at T=0.9 from an LM: equal only with negligible probability

    def test_zero_shot_classify(self):
        r = self.s.classify(inputs=["Buy cheap pills now", "The committee met on Tuesday"],
                            candidate_labels=[" spam", " ham", " news"])
        self.assertEqual(len(r.results), 2)
        for c in r.results:
            self.assertEqual([s.label for s in c.scores], [" spam", " ham", " news"])
            self.assertAlmostEqual(sum(s.score for s in c.scores), 1.0, places=5)
            best = max(c.scores, key=lambda s: s.score)
            self.assertEqual(c.label, best.label)
            for s in c.scores:
                self.assertLess(s.logit, 0.0)  # a log-likelihood
        # the shared-prefix batched pass gives the same numbers as one label at a time
        for lab in (" spam", " news"):
            one = self.s.classify(inputs=["Buy cheap pills now"], candidate_labels=[lab])
            both = [s for s in r.results[0].scores if s.label == lab][0]
            self.assertAlmostEqual(one.results[0].scores[0].logit, both.logit, delta=1e-4)

    def test_zero_shot_matches_golden_log_likelihood(self):
        # Independent reference: HF's logits for golden prompt 0 at every position. Split the prompt into a
        # text and a label at a word boundary; the label's log-likelihood is the sum, over its tokens, of
        # log_softmax(logits of the position before)[token]. Same tolerance reasoning as the classifier
        # head (CLS_LOGIT_TOL per logit, times the label's 2 tokens, plus the log-sum-exp of each row).
        import math
        ids = q.golden_prompt_ids()[0]
        rows = q.golden_logits(0)
        text, label = "The jury said that", " the election"
        r = self.s.classify(inputs=[text], candidate_labels=[label, " xyz"])
        m = r.results[0].input_tokens
        self.assertEqual(m, 4)
        want = 0.0
        for j in range(m, len(ids)):
            row = rows[j - 1]
            mx = max(row)
            lse = mx + math.log(sum(math.exp(v - mx) for v in row))
            want += row[ids[j]] - lse
        got = [x.logit for x in r.results[0].scores if x.label == label][0]
        self.assertAlmostEqual(got, want, delta=4 * CLS_LOGIT_TOL)

    def test_errors_invalid_argument(self):
        G = q.GenerateRequest
        cases = {
            "empty prompt": G(),
            "both prompt and ids": G(prompt="a", prompt_token_ids=[1]),
            "id out of vocab": G(prompt_token_ids=[8192]),
            "negative id": G(prompt_token_ids=[-1]),
            "temperature < 0": G(prompt="a", temperature=-1),
            "temperature > 100": G(prompt="a", temperature=1000),
            "top_p > 1": G(prompt="a", top_p=1.5),
            "top_k > vocab": G(prompt="a", top_k=100000),
            "too many new tokens": G(prompt="a", max_new_tokens=300),
            "prompt + new > ctx": G(prompt="word " * 200, max_new_tokens=100),
            "too many tokens": G(prompt_token_ids=[5] * 300),
            "empty stop": G(prompt="a", stop=[""]),
        }
        for name, req in cases.items():
            c, d = code_of(lambda: list(self.s.stream("/qquant.v1.Inference/Generate", req, q.GenerateResponse)))
            self.assertEqual(c, grpc.StatusCode.INVALID_ARGUMENT, name)
            self.assertTrue(d, name)
        C = q.ClassifyRequest
        ccases = {
            "no inputs": C(),
            "empty input": C(inputs=[""], candidate_labels=["a"]),
            "no labels on an LM": C(inputs=["hello"]),
            "empty label": C(inputs=["hello"], candidate_labels=[""]),
            "duplicate label": C(inputs=["hello"], candidate_labels=["a", "a"]),
            "too long, no truncation": C(inputs=["word " * 400], candidate_labels=[" a"]),
            "too many inputs": C(inputs=["x"] * 65, candidate_labels=[" a"]),
        }
        for name, req in ccases.items():
            c, _ = code_of(lambda: self.s.unary("/qquant.v1.Inference/Classify", req, q.ClassifyResponse))
            self.assertEqual(c, grpc.StatusCode.INVALID_ARGUMENT, name)

    def test_invalid_utf8(self):
        # GenerateRequest.prompt (field 1) and ClassifyRequest.inputs (field 1) with bytes that are not UTF-8:
        # python would refuse to build such a message, so the bytes are written by hand.
        for bad in (b"\xff\xfe", b"abc\xc3", b"\xed\xa0\x80", b"\xc0\xaf"):
            body = b"\x0a" + bytes([len(bad)]) + bad
            c, d = code_of(lambda: list(self.s.stream("/qquant.v1.Inference/Generate", body, q.GenerateResponse, raw=True)))
            self.assertEqual(c, grpc.StatusCode.INVALID_ARGUMENT, bad)
            self.assertIn("UTF-8", d)
            c, d = code_of(lambda: self.s.unary("/qquant.v1.Inference/Classify", body + b"\x12\x01a", q.ClassifyResponse, raw=True))
            self.assertEqual(c, grpc.StatusCode.INVALID_ARGUMENT, bad)

    def test_truncation(self):
        long = "word " * 400
        r = self.s.classify(inputs=[long], candidate_labels=[" a"], truncation=2)
        self.assertTrue(r.results[0].truncated)
        self.assertLessEqual(r.results[0].input_tokens, 256)
        r = self.s.classify(inputs=[long], candidate_labels=[" a"], truncation=1, max_input_tokens=50)
        self.assertEqual(r.results[0].input_tokens, 50)
        self.assertTrue(r.results[0].truncated)

    def test_malformed_bytes_and_oversize(self):
        for method, cls in (("/qquant.v1.Inference/Classify", q.ClassifyResponse),
                            ("/qquant.v1.Inference/GetModelInfo", q.ModelInfo),
                            ("/grpc.health.v1.Health/Check", q.HealthCheckResponse)):
            for junk in (b"\xff\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x08"):
                c, _ = code_of(lambda: self.s.unary(method, junk, cls, raw=True))
                self.assertEqual(c, grpc.StatusCode.INVALID_ARGUMENT, (method, junk))
        c, _ = code_of(lambda: list(self.s.stream("/qquant.v1.Inference/Generate", b"\x12\x05\x01", q.GenerateResponse, raw=True)))
        self.assertEqual(c, grpc.StatusCode.INVALID_ARGUMENT)
        c, _ = code_of(lambda: self.s.classify(inputs=["x" * 100000], candidate_labels=["a"]))
        self.assertEqual(c, grpc.StatusCode.RESOURCE_EXHAUSTED)  # over --max-message-bytes 65536
        c, _ = code_of(lambda: self.s.unary("/qquant.v1.Inference/Nope", b"", q.ModelInfo, raw=True))
        self.assertEqual(c, grpc.StatusCode.UNIMPLEMENTED)
        self.assertEqual(self.s.health(), q.SERVING)
        self.assertEqual(self.s.info().vocab_size, 8192)

    def test_kv_exhausted(self):
        # 64 blocks x 16 tokens = 1024 tokens in all; 3 inputs x 3 labels of ~250 tokens need more.
        c, d = code_of(lambda: self.s.classify(inputs=["word " * 240] * 3, candidate_labels=[" a", " b", " c"]))
        self.assertEqual(c, grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("KV", d)

    def test_eos(self):
        # Found by trying prompts: from "Thanks," the fixture model ends the text (token 0) after 144 tokens.
        rs = self.s.generate(prompt="Thanks,", max_new_tokens=200)
        text, ids = q.joined(rs)
        self.assertEqual(rs[-1].finish_reason, q.FINISH_EOS)
        self.assertEqual(ids[-1], 0)
        self.assertNotIn(0, ids[:-1])
        self.assertEqual(rs[-1].usage.completion_tokens, len(ids))
        self.assertLess(len(ids), 200)

    def test_chunked_prefill_gives_the_same_tokens(self):
        # The class server prefills in chunks of 128; this one in chunks of 16 with 48-token steps, so a
        # 150-token prompt takes 10 steps instead of 2. Greedy continuations must agree.
        prompt = " ".join(self.g["prompts"]) * 4
        ref = q.joined(self.s.generate(prompt=prompt, max_new_tokens=16, ignore_eos=True))
        s2 = q.Server(q.LM, ["--kv-blocks", "64", "--max-seq-len", "256", "--prefill-chunk", "16", "--step-tokens", "48"])
        try:
            got = q.joined(s2.generate(prompt=prompt, max_new_tokens=16, ignore_eos=True))
            self.assertGreater(s2.generate(prompt=prompt, max_new_tokens=1)[-1].usage.prompt_tokens, 100)
        finally:
            self.assertEqual(s2.stop(), 0)
        self.assertEqual(got, ref)

    def test_long_prefill_does_not_stall_decoding(self):
        # B's 1,200-token prompt is prefilled in chunks of 64 (19 steps); A, already decoding, gets a token
        # in each of those steps. Unchunked, B would take one long step and A would wait for it.
        s2 = q.Server(q.LM, ["--kv-blocks", "256", "--max-seq-len", "2048", "--prefill-chunk", "64",
                             "--step-tokens", "128"])
        try:
            a_times, b_first = [], []
            a = s2.stream("/qquant.v1.Inference/Generate",
                          q.GenerateRequest(prompt="Once upon a time", max_new_tokens=400, ignore_eos=True),
                          q.GenerateResponse)
            next(a)

            def read_a():
                try:
                    for r in a:
                        a_times.extend([time.time()] * len(r.token_ids))
                except grpc.RpcError:
                    pass
            t = threading.Thread(target=read_a)
            t.start()
            ids = (q.golden_prompt_ids()[0] * 250)[:1200]
            t_b = time.time()
            for r in s2.stream("/qquant.v1.Inference/Generate",
                               q.GenerateRequest(prompt_token_ids=ids, max_new_tokens=1), q.GenerateResponse):
                if r.token_ids and not b_first:
                    b_first.append(time.time())
            a.cancel()
            t.join()
            during = sum(1 for x in a_times if t_b < x < b_first[0])
            self.assertGreaterEqual(during, 10, "A got %d tokens while B's prompt was prefilled" % during)
        finally:
            self.assertEqual(s2.stop(), 0)

    def test_queue_full(self):
        # One sequence at a time and one waiting: a third request is refused at once.
        s2 = q.Server(q.LM, ["--kv-blocks", "512", "--max-seq-len", "2048", "--max-batch", "1", "--max-queue", "1"])
        try:  # 2,000 tokens: the running request outlasts every check below, whatever the machine
            req = q.GenerateRequest(prompt="Once upon a time", max_new_tokens=2000, ignore_eos=True)
            a = s2.stream("/qquant.v1.Inference/Generate", req, q.GenerateResponse)
            next(a)  # running
            b = s2.stream("/qquant.v1.Inference/Generate", req, q.GenerateResponse)
            t = time.time() + 10
            while s2.metric("qquant_queue_depth") != 1 and time.time() < t:
                time.sleep(0.02)
            self.assertEqual(s2.metric("qquant_queue_depth"), 1)
            c, d = code_of(lambda: s2.generate(prompt="hi", max_new_tokens=2))
            self.assertEqual(c, grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("queue", d)
            # a queued request that is cancelled, or whose deadline passes, leaves the queue at once
            b.cancel()
            t = time.time() + 10
            while s2.metric("qquant_queue_depth") != 0 and time.time() < t:
                time.sleep(0.02)
            self.assertEqual((s2.metric("qquant_queue_depth"), s2.metric("qquant_active_sequences")), (0, 1))
            c, _ = code_of(lambda: s2.generate(prompt="hi", max_new_tokens=2, timeout=0.5))
            self.assertEqual(c, grpc.StatusCode.DEADLINE_EXCEEDED)
            t = time.time() + 10
            while s2.metric("qquant_queue_depth") != 0 and time.time() < t:
                time.sleep(0.02)
            self.assertEqual((s2.metric("qquant_queue_depth"), s2.metric("qquant_active_sequences")), (0, 1))
            a.cancel()
            t = time.time() + 10  # the cancelled running request leaves at the next step
            while (s2.metric("qquant_queue_depth"), s2.metric("qquant_active_sequences")) != (0, 0) and time.time() < t:
                time.sleep(0.02)
            self.assertEqual(len(q.joined(s2.generate(prompt="hi", max_new_tokens=2))[1]), 2)  # it recovers
        finally:
            self.assertEqual(s2.stop(), 0)

    def test_cancel_mid_stream_frees_kv(self):
        it = self.s.stream("/qquant.v1.Inference/Generate",
                           q.GenerateRequest(prompt="Once upon a time", max_new_tokens=200, ignore_eos=True), q.GenerateResponse)
        got = [next(it) for _ in range(3)]
        self.assertTrue(all(r.token_ids for r in got))
        it.cancel()
        with self.assertRaises(grpc.RpcError) as e:
            list(it)
        self.assertEqual(e.exception.code(), grpc.StatusCode.CANCELLED)
        self.assertTrue(self._wait_metric("qquant_kv_blocks_used", 0))
        self.assertTrue(self._wait_metric("qquant_requests_total", 1, 'method="Generate",code="CANCELLED"', at_least=True))

    def test_deadline_mid_stream(self):
        # 2,000 tokens cannot be generated within the 1 s deadline (a quiet 2-core machine does ~140 a
        # second for one stream); the class server's 256-token context would allow only ~250.
        s2 = q.Server(q.LM, ["--kv-blocks", "256", "--max-seq-len", "2048"])
        try:
            got = []
            try:
                for r in s2.stream("/qquant.v1.Inference/Generate",
                                   q.GenerateRequest(prompt="Once upon a time", max_new_tokens=2000, ignore_eos=True),
                                   q.GenerateResponse, timeout=1.0):
                    got.append(r)
                self.fail("a 2,000-token generation finished within 1 s")
            except grpc.RpcError as e:
                self.assertEqual(e.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
            self.assertTrue(got)  # it was mid-stream
            t = time.time() + 10
            while s2.metric("qquant_kv_blocks_used") != 0 and time.time() < t:
                time.sleep(0.05)
            self.assertEqual(s2.metric("qquant_kv_blocks_used"), 0)
            # The call's outcome is counted when the server finishes the call, which can come after the
            # engine freed the sequence's blocks: wait for it as for the blocks.
            labels = 'method="Generate",code="DEADLINE_EXCEEDED"'
            while s2.metric("qquant_requests_total", labels) is None and time.time() < t:
                time.sleep(0.05)
            self.assertEqual(s2.metric("qquant_requests_total", labels), 1)
        finally:
            self.assertEqual(s2.stop(), 0)

    def _wait_metric(self, name, value, labels="", at_least=False, timeout=10):
        t = time.time() + timeout
        while time.time() < t:
            v = self.s.metric(name, labels)
            if v is not None and (v >= value if at_least else v == value):
                return True
            time.sleep(0.05)
        return False

    def test_health(self):
        self.assertEqual(self.s.health(""), q.SERVING)
        self.assertEqual(self.s.health("qquant.v1.Inference"), q.SERVING)
        c, _ = code_of(lambda: self.s.health("no.such.Service"))
        self.assertEqual(c, grpc.StatusCode.NOT_FOUND)
        w = self.s.stream("/grpc.health.v1.Health/Watch", q.HealthCheckRequest(service="qquant.v1.Inference"),
                          q.HealthCheckResponse)
        self.assertEqual(next(w).status, q.SERVING)
        w.cancel()
        w = self.s.stream("/grpc.health.v1.Health/Watch", q.HealthCheckRequest(service="other"), q.HealthCheckResponse)
        self.assertEqual(next(w).status, q.SERVICE_UNKNOWN)
        w.cancel()

    def test_reflection(self):
        f = self.s.channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                         request_serializer=lambda m: m.SerializeToString(),
                                         response_deserializer=q.ReflectionResponse.FromString)
        reqs = [q.ReflectionRequest(list_services=""),
                q.ReflectionRequest(file_containing_symbol="qquant.v1.Inference"),
                q.ReflectionRequest(file_containing_symbol="qquant.v1.Inference.Generate"),
                q.ReflectionRequest(file_containing_symbol="qquant.v1.GenerateResponse"),
                q.ReflectionRequest(file_by_filename="grpc/health/v1/health.proto"),
                q.ReflectionRequest(file_containing_symbol="no.such.Thing")]
        rs = list(f(iter(reqs), timeout=30))
        self.assertEqual(len(rs), len(reqs))
        names = sorted(s.name for s in rs[0].list_services_response.service)
        self.assertEqual(names, ["grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection", "qquant.v1.Inference"])
        for r in rs[1:4]:
            fd = descriptor_pb2.FileDescriptorProto.FromString(r.file_descriptor_response.file_descriptor_proto[0])
            self.assertEqual(fd.name, "qquant/v1/inference.proto")
            self.assertEqual([m.name for m in fd.service[0].method], ["Classify", "Generate", "GetModelInfo"])
            self.assertTrue(fd.service[0].method[1].server_streaming)
        fd = descriptor_pb2.FileDescriptorProto.FromString(rs[4].file_descriptor_response.file_descriptor_proto[0])
        self.assertEqual(fd.package, "grpc.health.v1")
        self.assertEqual(rs[5].error_response.error_code, grpc.StatusCode.NOT_FOUND.value[0])

    def test_reflection_client_that_does_not_read(self):
        # A client streams reflection requests and never reads an answer. Each answer to this request is
        # a ~2.1 KB file descriptor; if the server kept reading requests and queueing answers, 20,000 of
        # them would hold >= 42 MB (measured before the fix: +24 MB of server RSS per second, without
        # bound). The server reads the next request only once its answer is written, so HTTP/2 flow
        # control holds the client back and only grpc's transport buffers grow (measured: +3.4 MB after
        # 36,000 requests, flat at +12 MB after 20 s).
        f = self.s.channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                         request_serializer=lambda m: m.SerializeToString(),
                                         response_deserializer=q.ReflectionResponse.FromString)
        sent = [0]

        def requests():
            for _ in range(1000000):
                sent[0] += 1
                yield q.ReflectionRequest(file_containing_symbol="qquant.v1.Inference")
        rss0 = self.s.rss_kib()
        it = f(requests(), timeout=120)
        t = time.time() + 20
        while sent[0] < 20000 and time.time() < t:
            time.sleep(0.1)
        growth = self.s.rss_kib() - rss0
        print("\nreflection requests sent without reading: %d, server RSS %+d KiB" % (sent[0], growth))
        self.assertGreaterEqual(sent[0], 20000, "the client could not send 20,000 requests in 20 s")
        if os.environ.get("QQ_SERVICE_SANITIZED") != "1":  # ASan's quarantine keeps freed memory in RSS
            self.assertLess(growth, 16 * 1024)
        first = next(it)  # the stream still works, in order
        self.assertEqual(descriptor_pb2.FileDescriptorProto.FromString(
            first.file_descriptor_response.file_descriptor_proto[0]).name, "qquant/v1/inference.proto")
        it.cancel()
        self.assertEqual(self.s.health(), q.SERVING)

    def test_metrics_match_the_docs(self):
        # Every metric in docs/service.md's table and docs/deploy.md's "What to watch" is exported with the
        # documented type, and nothing undocumented is exported.
        import re
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
        self.s.generate(prompt="Once upon a time", max_new_tokens=3)
        types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", self.s.metrics(), re.M))
        for doc in ("service.md", "deploy.md"):
            with open(os.path.join(root, "docs", doc), encoding="utf-8") as f:
                rows = [line.split("|")[1:3] for line in f if line.startswith("| `qquant_")]
            documented = {}
            for names, kinds in rows:
                names = re.findall(r"`(qquant_[a-z_]+)", names)
                kinds = [k.strip().rstrip("s") for k in kinds.split(",")]
                for i, n in enumerate(names):
                    documented[n] = kinds[min(i, len(kinds) - 1)]
            self.assertEqual(documented, {n: types.get(n) for n in documented}, doc)
            self.assertEqual(set(types), set(documented), "%s: exported but not documented, or the reverse" % doc)
        # the labels the docs promise
        text = self.s.metrics()
        for series in ('qquant_requests_total{method="Generate",code="OK"}', 'qquant_tokens_total{kind="prompt"}',
                       'qquant_tokens_total{kind="generated"}', 'qquant_request_duration_seconds_count{method="Generate"}'):
            self.assertIn(series, text)

    def test_metrics_endpoint(self):
        self.s.info()
        text = self.s.metrics()
        for name in ("qquant_requests_total{method=\"GetModelInfo\",code=\"OK\"}", "qquant_queue_depth",
                     "qquant_batch_size_bucket", "qquant_time_to_first_token_seconds_bucket",
                     "qquant_time_per_output_token_seconds_bucket", "qquant_generated_tokens_per_second",
                     "qquant_kv_usage_ratio", "qquant_serving 1"):
            self.assertIn(name, text)
        import urllib.error
        import urllib.request
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen("http://127.0.0.1:%d/nope" % self.s.metrics_port, timeout=5)
        self.assertEqual(e.exception.code, 404)

    def test_c_client(self):
        cl = os.path.join(q.BIN, "qquant-client")
        run = lambda *a: subprocess.run([cl, "--addr", self.s.addr, "--timeout", "60"] + list(a), capture_output=True, text=True)
        r = run("info")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("architecture: Qwen2ForCausalLM", r.stdout)
        r = run("health")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "SERVING"))
        r = run("generate", "--max-new-tokens", "32", "--ignore-eos", self.g["prompts"][2])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, self.g["greedy_text_2"])
        self.assertIn("finish=length", r.stderr)
        r = run("classify", "--labels", " spam, ham", "Buy cheap pills now")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout.strip().splitlines()), 1)
        r = run("generate", "--temperature", "-1", "hi")
        self.assertEqual(r.returncode, 10 + grpc.StatusCode.INVALID_ARGUMENT.value[0])
        self.assertIn("INVALID_ARGUMENT", r.stderr)
        r = run("health", "nope")
        self.assertEqual(r.returncode, 10 + grpc.StatusCode.NOT_FOUND.value[0])


class ClassifierApi(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = q.Server(q.CLS, ["--max-seq-len", "512", "--log-format", "json"],
                         env={"QQ_SERVE_MAX_SEQ_LEN": "64", "QQ_SERVE_KV_BLOCKS": "1024"})
        with open(os.path.join(q.CLS, "golden.json")) as f:
            cls.g = json.load(f)
        cls.val = {}
        with open(os.path.join(q.FIXTURES, "corpora", "spam-val.jsonl")) as f:
            for line in f:
                o = json.loads(line)
                cls.val[o["id"]] = o

    @classmethod
    def tearDownClass(cls):
        assert cls.s.stop() == 0
        for line in cls.s.stderr_lines:  # --log-format json: every log line is one JSON object
            o = json.loads(line)
            assert {"ts", "level", "component", "msg"} <= set(o), line

    def test_flags_override_env(self):
        i = self.s.info()
        self.assertEqual(i.context_length, 512)  # flag 512 over QQ_SERVE_MAX_SEQ_LEN=64
        self.assertEqual(i.kv_blocks, 1024)      # from QQ_SERVE_KV_BLOCKS
        self.assertEqual(i.task, "sequence-classification")
        self.assertEqual(list(i.labels), ["ham", "spam"])

    def test_head_matches_golden_logits(self):
        ids = self.g["val_first64_ids"]
        texts = [self.val[i]["text"] for i in ids]
        r = self.s.classify(inputs=texts[:32], truncation=2, max_input_tokens=256)
        r2 = self.s.classify(inputs=texts[32:], truncation=2, max_input_tokens=256)
        results = list(r.results) + list(r2.results)
        self.assertEqual(len(results), 64)
        for k, (res, want) in enumerate(zip(results, self.g["val_first64_logits"])):
            got = [s.logit for s in res.scores]
            self.assertEqual([s.label for s in res.scores], ["ham", "spam"])
            for a, b in zip(got, want):
                self.assertAlmostEqual(a, b, delta=CLS_LOGIT_TOL, msg="example %d" % k)
            self.assertEqual(res.label, "spam" if want[1] > want[0] else "ham")
        self.assertEqual(r.usage.prompt_tokens, sum(x.input_tokens for x in r.results))

    def test_label_subset_and_unknown_label(self):
        r = self.s.classify(inputs=["hello there"], candidate_labels=["spam"])
        self.assertEqual(r.results[0].label, "spam")
        self.assertAlmostEqual(r.results[0].score, 1.0, places=6)
        c, d = code_of(lambda: self.s.classify(inputs=["hello"], candidate_labels=["eggs"]))
        self.assertEqual(c, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("unknown label", d)


class Operations(unittest.TestCase):
    def test_second_server_on_same_port_fails(self):
        a = q.Server(q.LM, ["--kv-blocks", "16"])
        try:
            b = q.Server(q.LM, ["--kv-blocks", "16", "--metrics-port", "0", "--port", str(a.port)], expect_fail=True)
            self.assertIsNone(b.port)
            self.assertNotEqual(b.proc.returncode, 0)
            self.assertIn("cannot listen", "".join(b.stderr_lines))
            self.assertEqual(a.health(), q.SERVING)
        finally:
            self.assertEqual(a.stop(), 0)

    def test_max_streams_per_connection(self):
        # --max-streams 1: while one Generate streams, a second call on the same connection waits for a
        # stream slot (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS) until its deadline; on another connection
        # it is answered at once.
        s = q.Server(q.LM, ["--kv-blocks", "256", "--max-seq-len", "2048", "--max-streams", "1"])
        try:
            a = s.stream("/qquant.v1.Inference/Generate",  # far longer than 1 s; cancelled below
                         q.GenerateRequest(prompt="Once upon a time", max_new_tokens=2000, ignore_eos=True),
                         q.GenerateResponse)
            next(a)
            c, _ = code_of(lambda: s.unary("/qquant.v1.Inference/GetModelInfo", q.GetModelInfoRequest(), q.ModelInfo,
                                           timeout=1.0))
            self.assertEqual(c, grpc.StatusCode.DEADLINE_EXCEEDED)
            ch = grpc.insecure_channel(s.addr)
            self.assertEqual(s.unary("/qquant.v1.Inference/GetModelInfo", q.GetModelInfoRequest(), q.ModelInfo,
                                     channel=ch, timeout=10).vocab_size, 8192)
            ch.close()
            a.cancel()
            self.assertEqual(s.info().vocab_size, 8192)  # the slot is free again
        finally:
            self.assertEqual(s.stop(), 0)

    def test_bad_flags(self):
        for args in (["--port", "70000"], ["--device", "tpu"], ["--nope", "1"], ["--tls-cert", "x"]):
            r = subprocess.run([os.path.join(q.BIN, "qquant-serve"), "--model", q.LM] + args, capture_output=True, text=True)
            self.assertEqual(r.returncode, 2, args)
        r = subprocess.run([os.path.join(q.BIN, "qquant-serve"), "--model", "/nonexistent", "--port", "0",
                            "--metrics-port", "-1"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent", r.stderr)

    def test_quantized_checkpoint_matches_offline_engine(self):
        # qquant writes an AutoAWQ int4 checkpoint (RTN); qquant-serve loads it; greedy output over gRPC
        # equals `qquant generate` (the offline engine) token for token.
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "q4")
            r = subprocess.run([os.path.join(q.BIN, "qquant"), "--method", "rtn", "--model", q.LM, "--out", out],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            prompt = "Once upon a time"
            r = subprocess.run([os.path.join(q.BIN, "qquant"), "generate", "--model", out, "--prompt", prompt,
                                "--max-new-tokens", "24", "--ignore-eos", "--device", "cpu", "--json"],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            offline = json.loads(r.stdout)
            s = q.Server(out, ["--kv-blocks", "32", "--device", "cpu"])
            try:
                i = s.info()
                self.assertEqual((i.quantization_method, i.quantization_format, i.bits, i.group_size), ("awq", "gemm", 4, 128))
                text, ids = q.joined(s.generate(prompt=prompt, max_new_tokens=24, ignore_eos=True))
                self.assertEqual(ids, offline["token_ids"])
                self.assertEqual(text, offline["text"])
            finally:
                self.assertEqual(s.stop(), 0)

    def test_tls_and_mtls(self):
        with tempfile.TemporaryDirectory() as d:
            def ossl(*a):
                subprocess.run(["openssl"] + list(a), cwd=d, check=True, capture_output=True)
            ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                 "-subj", "/CN=qquant-test-ca")
            for name in ("server", "client"):
                ext = os.path.join(d, name + ".ext")
                with open(ext, "w") as f:
                    f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
                ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out", name + ".csr", "-subj",
                     "/CN=" + name)
                ossl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                     "-out", name + ".pem", "-days", "2", "-extfile", ext)
            rd = lambda n: open(os.path.join(d, n), "rb").read()
            p = lambda n: os.path.join(d, n)
            s = q.Server(q.LM, ["--kv-blocks", "16", "--tls-cert", p("server.pem"), "--tls-key", p("server.key")])
            try:
                ch = grpc.secure_channel(s.addr, grpc.ssl_channel_credentials(rd("ca.pem")))
                self.assertEqual(s.unary("/qquant.v1.Inference/GetModelInfo", q.GetModelInfoRequest(), q.ModelInfo,
                                         channel=ch).vocab_size, 8192)
                ch.close()
                c, _ = code_of(lambda: s.info())  # plaintext client against a TLS server
                self.assertEqual(c, grpc.StatusCode.UNAVAILABLE)
                cl = subprocess.run([os.path.join(q.BIN, "qquant-client"), "--addr", s.addr, "--tls-ca", p("ca.pem"),
                                     "health"], capture_output=True, text=True)
                self.assertEqual((cl.returncode, cl.stdout.strip()), (0, "SERVING"), cl.stderr)
            finally:
                self.assertEqual(s.stop(), 0)
            s = q.Server(q.LM, ["--kv-blocks", "16", "--tls-cert", p("server.pem"), "--tls-key", p("server.key"),
                                "--tls-client-ca", p("ca.pem")])
            try:
                ch = grpc.secure_channel(s.addr, grpc.ssl_channel_credentials(rd("ca.pem"), rd("client.key"), rd("client.pem")))
                self.assertEqual(s.unary("/grpc.health.v1.Health/Check", q.HealthCheckRequest(), q.HealthCheckResponse,
                                         channel=ch).status, q.SERVING)
                ch.close()
                ch = grpc.secure_channel(s.addr, grpc.ssl_channel_credentials(rd("ca.pem")))  # no client certificate
                c, _ = code_of(lambda: s.unary("/grpc.health.v1.Health/Check", q.HealthCheckRequest(),
                                               q.HealthCheckResponse, channel=ch, timeout=10))
                self.assertEqual(c, grpc.StatusCode.UNAVAILABLE)
                ch.close()
                cl = subprocess.run([os.path.join(q.BIN, "qquant-client"), "--addr", s.addr, "--tls-ca", p("ca.pem"),
                                     "--tls-cert", p("client.pem"), "--tls-key", p("client.key"), "health"],
                                    capture_output=True, text=True)
                self.assertEqual((cl.returncode, cl.stdout.strip()), (0, "SERVING"), cl.stderr)
            finally:
                self.assertEqual(s.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
