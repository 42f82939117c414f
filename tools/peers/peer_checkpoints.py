#!/usr/bin/env python3
"""peer_checkpoints.py — quantize the fixture models with the peer tools (AutoAWQ, GPTQModel,
llm-compressor / compressed-tensors) on the CPU, then check that qquant loads what they wrote and
computes the same perplexity as PyTorch does with the peer's own dequantized weights.

For each checkpoint:
  1. the peer tool quantizes a copy of the fixture model (calibration: the first --samples blocks of
     --seqlen tokens of corpora/calib-mix.jsonl, texts tokenized without special tokens and joined
     with the end-of-text id) and saves it with its own save function into OUT/<name>;
  2. the torch reference: the fp32 model whose quantized linears carry the weights dequantized by the
     peer library's own code (AutoAWQ's dequantize_gemm, GPTQModel's TorchQuantLinear.dequantize_weight,
     compressed-tensors' dequantize), every other tensor taken from the checkpoint, perplexity on
     brown-dev (fixtures README protocol: non-overlapping 512-token windows, NLL of positions 1..511,
     first --windows windows) in fp32;
  3. `qquant eval --model OUT/<name> --ppl brown-dev.txt --windows N --device cpu --dtype fp32 --json`,
     and `qquant generate` (greedy, 32 tokens) against torch's greedy decoding of the same model;
  4. everything is written to OUT/results.json (and a table on stdout).

The peer tools run with transformers 4.x, which does not read the fixtures' transformers-5 config
(`rope_parameters`, `dtype`, tokenizer class `TokenizersBackend`): a patched copy of the model folder
is made in OUT/_src/<model> (the fixtures themselves are never written).

Usage (from the repository root, with a venv that has the peer tools; see
bench/results/peer-checkpoints-2026-12-01.md for the versions):
    /path/to/venv/bin/python tools/peers/peer_checkpoints.py OUT [--only NAME,...] [--skip-quantize]
        [--fixtures ../shared/fixtures] [--qquant build/bin/qquant] [--samples 64] [--seqlen 512]
        [--windows 50]
Exit status: 0 when every checkpoint was written, loads in qquant and agrees within --tol (relative
perplexity difference against the reference), and the ones marked expect_refused are refused naming
their layout; 1 otherwise. The 3-bit GPTQ entry runs only when named (--only): no GPTQModel version
that runs here writes a correct 3-bit file.
"""
import argparse
import glob
import json
import math
import os
import shutil
import subprocess
import sys
import time
import traceback

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# model copy for transformers 4.x, calibration, perplexity

def prepare_model(src, dst):
    """Copies the fixture model folder to dst with a config / tokenizer_config transformers 4.47 reads."""
    if os.path.isdir(dst):
        shutil.rmtree(dst)
    os.makedirs(dst)
    for f in os.listdir(src):
        if f.startswith("golden"):
            continue
        shutil.copyfile(os.path.join(src, f), os.path.join(dst, f))
    with open(os.path.join(dst, "config.json")) as fh:
        cfg = json.load(fh)
    rp = cfg.get("rope_parameters") or {}
    # transformers-4 spelling only, so that the peers write the config a transformers-4 user has
    if rp.get("rope_type", "default") != "default":
        raise SystemExit(f"{src}: rope_type {rp.get('rope_type')} needs rope_scaling for transformers 4")
    if "rope_theta" not in cfg and "rope_theta" in rp:
        cfg["rope_theta"] = rp["rope_theta"]
    cfg.pop("rope_parameters", None)
    if "dtype" in cfg:
        cfg.setdefault("torch_dtype", cfg.pop("dtype"))
    with open(os.path.join(dst, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)
    tcp = os.path.join(dst, "tokenizer_config.json")
    if os.path.exists(tcp):
        with open(tcp) as fh:
            tc = json.load(fh)
        if tc.get("tokenizer_class") == "TokenizersBackend":
            tc["tokenizer_class"] = "PreTrainedTokenizerFast"
        tc.pop("backend", None)
        if isinstance(tc.get("extra_special_tokens"), list):
            tc["additional_special_tokens"] = tc.pop("extra_special_tokens")
        with open(tcp, "w") as fh:
            json.dump(tc, fh, indent=2)
    return cfg


def calibration_blocks(tok, path, samples, seqlen):
    ids = []
    eos = tok.eos_token_id if tok.eos_token_id is not None else 0
    with open(path) as fh:
        for line in fh:
            ids += tok.encode(json.loads(line)["text"], add_special_tokens=False) + [eos]
    n = len(ids) // seqlen
    if n < samples:
        raise SystemExit(f"{path}: {len(ids)} tokens make only {n} blocks of {seqlen}")
    return [ids[i * seqlen:(i + 1) * seqlen] for i in range(samples)]


def ppl_ids(tok, path, window, windows):
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    ids = tok.encode(text, add_special_tokens=False)
    n = len(ids) // window
    if windows:
        n = min(n, windows)
    return torch.tensor(ids[:n * window], dtype=torch.long).view(n, window)


@torch.no_grad()
def perplexity(model, windows):
    nll, count = 0.0, 0
    for w in windows:
        logits = model(w[None, :]).logits[0].double()
        lp = torch.log_softmax(logits[:-1], dim=-1)
        nll -= lp.gather(1, w[1:, None]).sum().item()
        count += w.numel() - 1
    mean = nll / count
    return {"ppl": math.exp(mean), "mean_nll": mean, "tokens": count,
            "windows": len(windows)}


@torch.no_grad()
def greedy(model, prompt_ids, n):
    ids = torch.tensor([prompt_ids])
    out = []
    for _ in range(n):
        t = int(model(ids).logits[0, -1].argmax())
        out.append(t)
        ids = torch.cat([ids, torch.tensor([[t]])], dim=1)
    return out


# ---------------------------------------------------------------------------------------------
# reading a checkpoint back

def load_state(ckpt):
    from safetensors.torch import load_file
    files = sorted(glob.glob(os.path.join(ckpt, "*.safetensors")))
    if not files:
        raise RuntimeError(f"{ckpt}: no safetensors files")
    sd = {}
    for f in files:
        sd.update(load_file(f))
    return sd, [os.path.basename(f) for f in files]


def reference_model(src, sd, weights, act_div=None):
    """fp32 model of src's architecture: every tensor of the checkpoint state sd that the model has
    is copied in (cast to fp32), the dict weights {module prefix: fp32 [n, k]} gives the quantized
    linears. act_div: fake-quantize the inputs of those linears per token, int8, scale absmax/act_div."""
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(src, torch_dtype=torch.float32)
    model.eval()
    params = dict(model.named_parameters())
    params.update(dict(model.named_buffers()))
    loaded = set()
    for name, t in sd.items():
        if name in params and t.dtype.is_floating_point:
            if tuple(params[name].shape) != tuple(t.shape):
                raise RuntimeError(f"{name}: checkpoint shape {tuple(t.shape)}, model {tuple(params[name].shape)}")
            params[name].data.copy_(t.float())
            loaded.add(name)
    for prefix, w in weights.items():
        name = prefix + ".weight"
        if tuple(params[name].shape) != tuple(w.shape):
            raise RuntimeError(f"{name}: dequantized shape {tuple(w.shape)}, model {tuple(params[name].shape)}")
        params[name].data.copy_(w.float())
        loaded.add(name)
    missing = [n for n, _ in model.named_parameters() if n not in loaded
               and not (n == "lm_head.weight" and model.config.tie_word_embeddings)]
    if missing:
        raise RuntimeError(f"checkpoint lacks {missing[:5]}")
    if act_div is not None:
        def hook(mod, args):
            x = args[0]
            s = x.abs().amax(dim=-1, keepdim=True) / act_div
            s = torch.where(s == 0, torch.ones_like(s), s)
            return (torch.clamp(torch.round(x / s), -128 if act_div == 127.5 else -127, 127) * s,)
        for prefix in weights:
            model.get_submodule(prefix).register_forward_pre_hook(hook)
    return model


def linear_prefixes(cfg):
    return [f"model.layers.{i}.{l}" for i in range(cfg["num_hidden_layers"]) for l in LINEARS]


def dequant_awq(ckpt, sd, cfg):
    """AutoAWQ's own unpacking (awq.utils.packing_utils.dequantize_gemm), scales upcast to fp32 first
    so the product is not rounded to fp16."""
    from awq.utils.packing_utils import dequantize_gemm
    qc = cfg["quantization_config"]
    out = {}
    for p in linear_prefixes(cfg):
        if p + ".qweight" not in sd:
            continue
        w = dequantize_gemm(sd[p + ".qweight"], sd[p + ".qzeros"], sd[p + ".scales"].float(), qc["bits"],
                            qc["group_size"])
        out[p] = w.t().contiguous()
    return out, "awq.utils.packing_utils.dequantize_gemm (scales cast to fp32)"


def dequant_gptq(ckpt, sd, cfg):
    """GPTQModel loads the checkpoint itself (its v1 -> v2 zero conversion included) with the pure-torch
    kernel; TorchQuantLinear.dequantize_weight() with the scales cast to fp32 gives the weights."""
    from gptqmodel import BACKEND, GPTQModel
    from gptqmodel.nn_modules.qlinear.torch import TorchQuantLinear
    # torch_dtype float16: with the default ("auto", i.e. the config's bfloat16 here) GPTQModel casts
    # the stored fp16 scales to bf16 on load, which rounds them
    m = GPTQModel.load(ckpt, device="cpu", backend=BACKEND.TORCH, torch_dtype=torch.float16)
    out = {}
    for name, mod in m.model.named_modules():
        if isinstance(mod, TorchQuantLinear):
            mod.scales = mod.scales.float()
            out[name] = mod.dequantize_weight().t().contiguous().float()
    del m
    return out, ("gptqmodel GPTQModel.load(backend=TORCH, torch_dtype=float16) + "
                 "TorchQuantLinear.dequantize_weight (scales cast to fp32)")


def dequant_ct(ckpt, sd, cfg):
    """compressed-tensors' own dequantize() on the int8 weight and its scale, both upcast to fp32."""
    from compressed_tensors.quantization import QuantizationArgs
    from compressed_tensors.quantization.lifecycle.forward import dequantize
    out = {}
    qc = cfg["quantization_config"]
    group = next(iter(qc["config_groups"].values()))
    args = QuantizationArgs(**group["weights"])
    for p in linear_prefixes(cfg):
        w = sd.get(p + ".weight")
        if w is None or w.dtype != torch.int8:
            continue
        zp = sd.get(p + ".weight_zero_point")
        out[p] = dequantize(w.float(), sd[p + ".weight_scale"].float(),
                            zp.float() if zp is not None else None, args, dtype=torch.float32)
    return out, "compressed_tensors.quantization.lifecycle.forward.dequantize (int8 and scale cast to fp32)"


def w8a8_integer_model(src, sd, weights):
    """The W8A8 arithmetic of vLLM's and qquant's int8 kernels on the stored codes: each row of the input
    quantized to int8 with s = absmax / 127 (q = round(x · (1/s)), clamped to ±127), the dot products with
    the int8 weight codes summed exactly (float64 holds them exactly), then · s · weight_scale + bias."""
    model = reference_model(src, sd, weights)
    for p in weights:
        mod = model.get_submodule(p)
        codes = sd[p + ".weight"].double().t().contiguous()
        sc = sd[p + ".weight_scale"].float().reshape(-1)

        def fwd(x, codes=codes, sc=sc, b=mod.bias):
            s = x.abs().amax(dim=-1, keepdim=True) / 127.0
            s = torch.where(s == 0, torch.ones_like(s), s)
            q = torch.clamp(torch.round(x * (1.0 / s)), -127, 127)
            y = ((q.double() @ codes).float() * s) * sc
            return y + b if b is not None else y
        mod.forward = fwd
    return model


def ct_fake_quant_model(src, ckpt):
    """compressed-tensors' own view: ModelCompressor decompresses the checkpoint into an fp32 model
    that keeps its quantization schemes, so its forward fake-quantizes the activations as
    compressed-tensors does (per token, absmax / 127.5, range [-128, 127])."""
    from compressed_tensors.compressors import ModelCompressor
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(src, torch_dtype=torch.float32)
    comp = ModelCompressor.from_pretrained(ckpt)
    comp.decompress(model_path=ckpt, model=model)
    sd, _ = load_state(ckpt)
    params = dict(model.named_parameters())
    for name, t in sd.items():  # the float tensors (norms changed by SmoothQuant); int8 weights are skipped
        if name in params and t.dtype.is_floating_point and params[name].shape == t.shape:
            params[name].data.copy_(t.float())
    model.float().eval()
    return model


# ---------------------------------------------------------------------------------------------
# the peer quantizers

def q_autoawq(spec, src, tok, blocks, out):
    from awq import AutoAWQForCausalLM
    model = AutoAWQForCausalLM.from_pretrained(src, torch_dtype=spec.get("dtype", torch.float16),
                                               safetensors=True, device_map=None)
    qcfg = {"zero_point": spec.get("zero_point", True), "q_group_size": spec.get("group_size", 128),
            "w_bit": 4, "version": "GEMM"}
    model.quantize(tok, quant_config=qcfg, calib_data=blocks, max_calib_samples=len(blocks),
                   max_calib_seq_len=len(blocks[0]))
    model.save_quantized(out)
    tok.save_pretrained(out)
    return {"quant_config": qcfg}


def q_gptqmodel(spec, src, tok, blocks, out):
    from gptqmodel import GPTQModel, QuantizeConfig
    from gptqmodel.quantization import FORMAT
    kw = dict(bits=spec["bits"], group_size=spec.get("group_size", 128), desc_act=spec.get("desc_act", False),
              sym=spec.get("sym", True), device="cpu")
    if spec.get("v2"):
        kw["format"] = FORMAT.GPTQ_V2
    qc = QuantizeConfig(**kw)
    model = GPTQModel.load(src, qc)
    data = [{"input_ids": b, "attention_mask": [1] * len(b)} for b in blocks]
    model.quantize(data, batch_size=1)
    model.save(out)
    tok.save_pretrained(out)
    return {"quantize_config": {k: (str(v) if k == "format" else v) for k, v in kw.items()}}


def q_llmcompressor(spec, src, tok, blocks, out):
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier
    from llmcompressor.modifiers.smoothquant import SmoothQuantModifier
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(src, torch_dtype=spec.get("dtype", "auto"))
    ds = Dataset.from_dict({"input_ids": blocks, "attention_mask": [[1] * len(b) for b in blocks]})
    if spec["recipe"] == "smoothquant+gptq-w8a8":
        recipe = [SmoothQuantModifier(smoothing_strength=0.8),
                  GPTQModifier(targets="Linear", scheme="W8A8", ignore=["lm_head"])]
    elif spec["recipe"] == "w8a16":
        recipe = [QuantizationModifier(targets="Linear", scheme="W8A16", ignore=["lm_head"])]
    elif spec["recipe"] == "gptq-w8a16":
        recipe = [GPTQModifier(targets="Linear", scheme="W8A16", ignore=["lm_head"])]
    else:
        raise ValueError(spec["recipe"])
    oneshot(model=model, dataset=ds, recipe=recipe, max_seq_length=len(blocks[0]),
            num_calibration_samples=len(blocks),
            log_dir=os.path.join(os.path.dirname(os.path.abspath(out)), "_llmcompressor_logs"))
    kw = {"save_compressed": True}
    if spec.get("format"):
        kw["quantization_format"] = spec["format"]
    model.save_pretrained(out, **kw)
    tok.save_pretrained(out)
    return {"recipe": [repr(r) for r in recipe], "save_pretrained": kw}


def q_none(spec, src, tok, blocks, out):
    shutil.copytree(src, out)
    return {"copy": "unquantized fixture (transformers-4 config), the harness's own check"}


def dequant_none(ckpt, sd, cfg):
    return {}, "none (unquantized)"


# name -> spec. "ref" says which dequantizer gives the reference weights.
CHECKPOINTS = {
    "qwen2-unquantized": dict(model="qwen2-tiny-lm", tool="none", quant=q_none, ref=dequant_none),
    "qwen2-awq-w4-g128": dict(model="qwen2-tiny-lm", tool="autoawq", quant=q_autoawq, ref=dequant_awq,
                              group_size=128, zero_point=True),
    "qwen2-gptq-w4-g128-sym": dict(model="qwen2-tiny-lm", tool="gptqmodel", quant=q_gptqmodel, ref=dequant_gptq,
                                   bits=4, group_size=128, sym=True, desc_act=False),
    "qwen2-gptq-w4-g128-asym-actorder": dict(model="qwen2-tiny-lm", tool="gptqmodel", quant=q_gptqmodel,
                                             ref=dequant_gptq, bits=4, group_size=128, sym=False, desc_act=True),
    "qwen2-gptq-w8-g128-sym": dict(model="qwen2-tiny-lm", tool="gptqmodel", quant=q_gptqmodel, ref=dequant_gptq,
                                   bits=8, group_size=128, sym=True, desc_act=False),
    # 3 bits: GPTQModel 1.7.4's CPU packer fails (IndexError in TorchQuantLinear.pack); 1.8.1 (needs
    # transformers >= 4.48.3) packs only the first 32 columns' zero points, so its own dequantization of
    # the file is broken too (bench/results/peer-checkpoints-2026-12-01.md).
    "qwen2-gptq-w3-g128-sym-actorder": dict(model="qwen2-tiny-lm", tool="gptqmodel", quant=q_gptqmodel,
                                            ref=dequant_gptq, bits=3, group_size=128, sym=True, desc_act=True,
                                            default=False),
    "qwen2-gptq-v2-w4-g128-asym": dict(model="qwen2-tiny-lm", tool="gptqmodel", quant=q_gptqmodel,
                                       ref=dequant_gptq, bits=4, group_size=128, sym=False, desc_act=False,
                                       v2=True),
    "qwen2-ct-w8a8-smoothquant-gptq": dict(model="qwen2-tiny-lm", tool="llmcompressor", quant=q_llmcompressor,
                                           ref=dequant_ct, recipe="smoothquant+gptq-w8a8", w8a8=True),
    "qwen2-ct-w8a16-int": dict(model="qwen2-tiny-lm", tool="llmcompressor", quant=q_llmcompressor, ref=dequant_ct,
                               recipe="w8a16", format="int-quantized"),
    # llm-compressor's default format for weight-only int8 is pack-quantized, which qquant refuses.
    "qwen2-ct-w8a16-default": dict(model="qwen2-tiny-lm", tool="llmcompressor", quant=q_llmcompressor,
                                   ref=None, recipe="w8a16", expect_refused="pack-quantized"),
}


# ---------------------------------------------------------------------------------------------

def run_qquant(qq, args, timeout=1800):
    p = subprocess.run([qq] + args, capture_output=True, text=True, timeout=timeout)
    res = {"rc": p.returncode, "stderr_tail": p.stderr.strip().splitlines()[-3:]}
    if p.returncode == 0:
        try:
            res["json"] = json.loads(p.stdout)
        except ValueError:
            res["stdout"] = p.stdout[-2000:]
    return res


def versions():
    import importlib.metadata as md
    out = {"python": sys.version.split()[0]}
    for d in ("torch", "transformers", "tokenizers", "safetensors", "accelerate", "autoawq", "gptqmodel",
              "llmcompressor", "compressed-tensors", "datasets", "numpy"):
        try:
            out[d] = md.version(d)
        except md.PackageNotFoundError:
            pass
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="folder for the checkpoints and results.json")
    ap.add_argument("--fixtures", default=os.environ.get("QQ_FIXTURES", os.path.join(REPO, "..", "shared", "fixtures")))
    ap.add_argument("--qquant", default=os.path.join(REPO, "build", "bin", "qquant"))
    ap.add_argument("--only", default="", help="comma-separated checkpoint names (default: all)")
    ap.add_argument("--skip-quantize", action="store_true", help="reuse checkpoints already in OUT")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--windows", type=int, default=50)
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tol", type=float, default=1e-4, help="relative perplexity tolerance")
    ap.add_argument("--list", action="store_true", help="list the checkpoint names and exit")
    a = ap.parse_args()
    if a.list:
        for n, s in CHECKPOINTS.items():
            print(n, s["tool"], s["model"], "" if s.get("default", True) else "(only with --only)")
        return 0
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    names = [n for n in a.only.split(",") if n] or [n for n, s in CHECKPOINTS.items() if s.get("default", True)]
    for n in names:
        if n not in CHECKPOINTS:
            raise SystemExit(f"unknown checkpoint {n} (--list)")
    os.makedirs(a.out, exist_ok=True)
    res_path = os.path.join(a.out, "results.json")
    results = {}
    if os.path.exists(res_path):
        with open(res_path) as fh:
            results = json.load(fh).get("checkpoints", {})
    from transformers import AutoTokenizer
    corpus = os.path.join(a.fixtures, "corpora", "brown-dev.txt")
    calib = os.path.join(a.fixtures, "corpora", "calib-mix.jsonl")
    golden_cache = {}
    ok = True
    for name in names:
        spec = CHECKPOINTS[name]
        src_fixture = os.path.join(a.fixtures, "models", spec["model"])
        src = os.path.join(a.out, "_src", spec["model"])
        if not os.path.isdir(src) or not a.skip_quantize:
            prepare_model(src_fixture, src)
        tok = AutoTokenizer.from_pretrained(src)
        ckpt = os.path.join(a.out, name)
        r = {"model": spec["model"], "tool": spec["tool"], "dir": ckpt}
        if a.skip_quantize:  # keep what the run that quantized recorded
            r.update({k: v for k, v in results.get(name, {}).items()
                      if k in ("quantize_args", "quantize_seconds", "calibration", "quantize_versions")})
        log(f"=== {name} ({spec['tool']})")
        try:
            if not a.skip_quantize:
                if os.path.isdir(ckpt):
                    shutil.rmtree(ckpt)
                blocks = calibration_blocks(tok, calib, a.samples, a.seqlen)
                t0 = time.time()
                r["quantize_args"] = spec["quant"](spec, src, tok, blocks, ckpt)
                r["quantize_seconds"] = round(time.time() - t0, 1)
                r["calibration"] = {"samples": a.samples, "seqlen": a.seqlen}
                r["quantize_versions"] = versions()
            with open(os.path.join(ckpt, "config.json")) as fh:
                cfg = json.load(fh)
            r["quantization_config"] = cfg.get("quantization_config")
            sd, files = load_state(ckpt)
            r["files"] = sorted(os.listdir(ckpt))
            r["tensors"] = {k: [str(v.dtype).replace("torch.", ""), list(v.shape)] for k, v in sd.items()
                            if k.startswith("model.layers.0.self_attn.q_proj") or not k.startswith("model.layers.")}
        except Exception as e:  # a peer tool that fails is reported, the others go on
            traceback.print_exc()
            r["error"] = f"{type(e).__name__}: {e}"
            results[name] = r
            ok = False
            continue

        if spec["model"] not in golden_cache:
            with open(os.path.join(src_fixture, "golden.json")) as fh:
                golden_cache[spec["model"]] = json.load(fh)
        prompts = golden_cache[spec["model"]]["prompts"][:2]
        windows = ppl_ids(tok, corpus, a.seqlen, a.windows)

        # torch references
        if spec["ref"] is not None:
            try:
                w, how = spec["ref"](ckpt, sd, cfg)
                r["reference_dequant"] = how
                r["quantized_linears"] = len(w)
                if spec.get("w8a8"):
                    model = w8a8_integer_model(src, sd, w)
                else:
                    model = reference_model(src, sd, w)
                r["torch"] = perplexity(model, windows)
                if spec.get("w8a8"):
                    r["torch"]["activations"] = ("int8 per token, s = absmax/127, integer dot products with the "
                                                 "stored codes (vLLM's and qquant's arithmetic)")
                r["torch_greedy"] = [greedy(model, tok.encode(p, add_special_tokens=False), a.gen_tokens)
                                     for p in prompts]
                del model
                if spec.get("w8a8"):
                    # the same scheme as fake quantization on the compressed-tensors-dequantized weights in fp32
                    m2 = reference_model(src, sd, w, act_div=127.0)
                    r["torch_fakequant127"] = perplexity(m2, windows)
                    del m2
                    # float64 of that model: how far fp32 rounding alone moves a W8A8 perplexity
                    m2 = reference_model(src, sd, w, act_div=127.0).double()
                    r["torch_fakequant127_fp64"] = perplexity(m2, windows)
                    del m2
                    m2 = ct_fake_quant_model(src, ckpt)
                    r["torch_ct_fakequant"] = perplexity(m2, windows)
                    r["torch_ct_fakequant"]["activations"] = "compressed-tensors forward: absmax/127.5, [-128, 127]"
                    del m2
            except Exception as e:
                traceback.print_exc()
                r["reference_error"] = f"{type(e).__name__}: {e}"
                ok = False

        # qquant
        q = run_qquant(a.qquant, ["eval", "--model", ckpt, "--ppl", corpus, "--windows", str(a.windows),
                                  "--device", "cpu", "--dtype", "fp32", "--threads", str(a.threads), "--json",
                                  "--quiet"])
        r["qquant_eval"] = q
        if spec.get("expect_refused"):  # a layout qquant does not read: it must say so, naming it
            r["expected_refusal"] = q["rc"] != 0 and any(spec["expect_refused"] in l for l in q["stderr_tail"])
            ok = ok and r["expected_refusal"]
        elif q["rc"] != 0 or "json" not in q:
            ok = False
        elif "torch" in r:
            rel = abs(q["json"]["ppl"] - r["torch"]["ppl"]) / r["torch"]["ppl"]
            r["rel_diff"] = rel
            r["tokens_match"] = q["json"]["tokens"] == r["torch"]["tokens"]
            if "torch_ct_fakequant" in r:
                r["rel_diff_ct_fakequant"] = abs(q["json"]["ppl"] - r["torch_ct_fakequant"]["ppl"]) / \
                    r["torch_ct_fakequant"]["ppl"]
            if rel > a.tol or not r["tokens_match"]:
                ok = False
            gens = []
            for p in prompts:
                g = run_qquant(a.qquant, ["generate", "--model", ckpt, "--prompt", p, "--max-new-tokens",
                                          str(a.gen_tokens), "--ignore-eos", "--device", "cpu", "--dtype", "fp32",
                                          "--threads", str(a.threads), "--json"])
                gens.append(g.get("json", {}).get("token_ids"))
            r["qquant_greedy"] = gens
            same = [sum(x == y for x, y in zip(gq or [], gt)) for gq, gt in zip(gens, r["torch_greedy"])]
            r["greedy_tokens_equal"] = same
        results[name] = r
        with open(res_path, "w") as fh:
            json.dump({"versions": versions(), "windows": a.windows, "checkpoints": results}, fh, indent=1)
        log(f"    torch {r.get('torch', {}).get('ppl')}  qquant {q.get('json', {}).get('ppl')}  "
            f"rel {r.get('rel_diff')}  rc {q['rc']} {q['stderr_tail'] if q['rc'] else ''}")

    with open(res_path, "w") as fh:
        json.dump({"versions": versions(), "windows": a.windows, "checkpoints": results}, fh, indent=1)
    print(f"{'checkpoint':40s} {'torch ppl':>12s} {'qquant ppl':>12s} {'rel diff':>10s}  greedy")
    for name in names:
        r = results.get(name, {})
        qp = r.get("qquant_eval", {}).get("json", {}).get("ppl")
        tp = r.get("torch", {}).get("ppl")
        print(f"{name:40s} {tp if tp else float('nan'):12.5f} {qp if qp else float('nan'):12.5f} "
              f"{r.get('rel_diff', float('nan')):10.2e}  {r.get('greedy_tokens_equal', '')} "
              f"{r.get('error', '') or ('' if r.get('qquant_eval', {}).get('rc', 1) == 0 else r.get('qquant_eval', {}).get('stderr_tail'))}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
