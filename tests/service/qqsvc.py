"""Helpers for the black-box service tests: start a real qquant-serve on 127.0.0.1, build message
classes from the descriptor set the build embeds (python3-protobuf's descriptor_pool, so no generated
Python is needed), and call it with Debian's python3-grpcio."""
import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

BIN = os.path.join(os.environ.get("QQ_BINARY_DIR", "build"), "bin")
FIXTURES = os.environ.get("QQ_FIXTURES", "../shared/fixtures")
DESCRIPTORS = os.environ.get("QQ_SERVICE_DESCRIPTORS", os.path.join(os.environ.get("QQ_BINARY_DIR", "build"),
                                                                    "proto", "gen", "qquant_descriptors.pb"))
LM = os.path.join(FIXTURES, "models", "qwen2-tiny-lm")
CLS = os.path.join(FIXTURES, "models", "qwen2-tiny-spam-cls")
# Scale of the load tests: 1 in the release build, smaller under the sanitizers (set by CMake).
SCALE = float(os.environ.get("QQ_SERVICE_TEST_SCALE", "1"))

for need in (LM, CLS):
    if not os.path.isdir(need):
        sys.exit(f"fixture model not found: {need} (set QQ_FIXTURES)")

_pool = descriptor_pool.DescriptorPool()
_fds = descriptor_pb2.FileDescriptorSet()
with open(DESCRIPTORS, "rb") as f:
    _fds.ParseFromString(f.read())
for _fd in _fds.file:
    _pool.Add(_fd)
_factory = message_factory.MessageFactory(_pool)


def msg(full_name):
    d = _pool.FindMessageTypeByName(full_name)
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(d)
    return _factory.GetPrototype(d)


ClassifyRequest = msg("qquant.v1.ClassifyRequest")
ClassifyResponse = msg("qquant.v1.ClassifyResponse")
GenerateRequest = msg("qquant.v1.GenerateRequest")
GenerateResponse = msg("qquant.v1.GenerateResponse")
GetModelInfoRequest = msg("qquant.v1.GetModelInfoRequest")
ModelInfo = msg("qquant.v1.ModelInfo")
HealthCheckRequest = msg("grpc.health.v1.HealthCheckRequest")
HealthCheckResponse = msg("grpc.health.v1.HealthCheckResponse")
ReflectionRequest = msg("grpc.reflection.v1alpha.ServerReflectionRequest")
ReflectionResponse = msg("grpc.reflection.v1alpha.ServerReflectionResponse")

FINISH_LENGTH, FINISH_STOP, FINISH_EOS = 1, 2, 3
SERVING, NOT_SERVING, SERVICE_UNKNOWN = 1, 2, 3


def golden_lm():
    with open(os.path.join(LM, "golden.json")) as f:
        return json.load(f)


def _golden_tensors():
    path = os.path.join(LM, "golden_logits.safetensors")
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    return head, data


def golden_prompt_ids():
    """ids_i tensors of golden_logits.safetensors (I32), read with the safetensors layout by hand."""
    head, data = _golden_tensors()
    out = {}
    for name, t in head.items():
        if name.startswith("ids_"):
            a, b = t["data_offsets"]
            out[int(name[4:])] = list(struct.unpack("<%di" % ((b - a) // 4), data[a:b]))
    return out


def golden_logits(k):
    """logits_k (F32 [len, vocab]) as a list of rows."""
    head, data = _golden_tensors()
    t = head["logits_%d" % k]
    a, b = t["data_offsets"]
    rows, vocab = t["shape"]
    flat = struct.unpack("<%df" % (rows * vocab), data[a:b])
    return [flat[r * vocab:(r + 1) * vocab] for r in range(rows)]


class Server:
    """A qquant-serve process on 127.0.0.1 with free ports."""

    def __init__(self, model=LM, args=(), env=None, binary=None, expect_fail=False):
        self.cmd = [binary or os.path.join(BIN, "qquant-serve"), "--model", model, "--port", "0",
                    "--metrics-port", "0"] + list(args)
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, text=True)
        self.stderr_lines = []
        self._t = threading.Thread(target=self._drain_stderr, daemon=True)
        self._t.start()
        line = self.proc.stdout.readline()
        m = re.search(r"listening on ([\d.]+):(\d+), metrics on port (-?\d+)", line)
        if not m:
            self.proc.wait(timeout=30)
            self._t.join(timeout=5)
            self.proc.stdout.close()
            self.proc.stderr.close()
            if expect_fail:
                self.port = None
                return
            raise RuntimeError("server did not start: %s\n%s" % (line, "".join(self.stderr_lines)))
        self.port = int(m.group(2))
        self.metrics_port = int(m.group(3))
        self.addr = "127.0.0.1:%d" % self.port
        self.channel = grpc.insecure_channel(self.addr, options=[("grpc.enable_retries", 0)])

    def _drain_stderr(self):
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def unary(self, method, req, resp_cls, timeout=60, raw=False, channel=None):
        ch = channel or self.channel
        f = ch.unary_unary(method, request_serializer=(lambda b: b) if raw else (lambda m: m.SerializeToString()),
                           response_deserializer=resp_cls.FromString)
        return f(req, timeout=timeout)

    def stream(self, method, req, resp_cls, timeout=None, raw=False, channel=None):
        ch = channel or self.channel
        f = ch.unary_stream(method, request_serializer=(lambda b: b) if raw else (lambda m: m.SerializeToString()),
                            response_deserializer=resp_cls.FromString)
        return f(req, timeout=timeout)

    def classify(self, timeout=60, **kw):
        return self.unary("/qquant.v1.Inference/Classify", ClassifyRequest(**kw), ClassifyResponse, timeout)

    def generate(self, timeout=None, **kw):
        return list(self.stream("/qquant.v1.Inference/Generate", GenerateRequest(**kw), GenerateResponse, timeout))

    def info(self):
        return self.unary("/qquant.v1.Inference/GetModelInfo", GetModelInfoRequest(), ModelInfo)

    def health(self, service=""):
        return self.unary("/grpc.health.v1.Health/Check", HealthCheckRequest(service=service), HealthCheckResponse).status

    def metrics(self):
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port, timeout=10) as r:
            return r.read().decode()

    def metric(self, name, labels=""):
        pat = re.compile(r"^%s%s (\S+)$" % (re.escape(name), re.escape("{%s}" % labels) if labels else ""), re.M)
        m = pat.search(self.metrics())
        return float(m.group(1)) if m else None

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            raise AssertionError("server did not exit within %d s after signal %d" % (timeout, sig))
        self._t.join(timeout=5)
        if hasattr(self, "channel"):
            self.channel.close()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc


def joined(responses):
    return "".join(r.text for r in responses), [t for r in responses for t in r.token_ids]
