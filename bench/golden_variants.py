#!/usr/bin/env python3
"""Which arithmetic produced golden_logits.safetensors? (issue 2, docs/correctness.md "The golden logits
against an fp64 evaluation".)

A standalone numpy implementation of the Qwen2 / Qwen3 causal LM forward pass in float64, read from a
fixture's config.json + safetensors (BF16 stored weights; GQA; q/k/v bias for qwen2, q_norm/k_norm for
qwen3; RMSNorm; SwiGLU; tied head), with switches that inject one reduced-precision step at a time
(bf16 / fp16 / fp32 RoPE tables, bf16 / fp16 / TF32 roundings elsewhere). Every variant is evaluated on
the golden prompts (ids_i of golden_logits.safetensors, logits for every prompt position) and reported
as ‖Δ‖/‖ref‖ against the golden and against exact fp64; plus, per variant, the teacher-forced greedy
argmax of qwen3-tiny-lm prompt 0 at step 15 (golden: 272, fp64: 335) and how many of the 4x32 golden
greedy tokens per model the variant's argmax reproduces.

Everything but the injected rounding is float64, so a variant that matches the golden to ~1e-6 (the
size of fp32 noise) names the golden's cause.

Finding (bench/results/golden-variants-2026-12-07/README.md): variant (a), RoPE inv_freq computed in
fp32 as HF does and then rounded to bf16 (round-to-nearest-even, as a model-wide .to(bfloat16) of the
non-persistent buffer followed by .float() would do), brings every golden logits file to 1.7e-7…4.0e-7
(fp32 noise; plain fp64 is 3.4e-5…1.45e-4 away). It also reproduces all 4x32 greedy tokens of both
models (272 at qwen3 prompt 0 step 15), the wikitext2 mean NLLs (to <= 7e-8) and the classifier's
first-64 logits (4e-7).

  python3 bench/golden_variants.py FIXTURES_DIR [--only NAME,...] [--out FILE.json] [--no-greedy] [--cls]

--cls also evaluates qwen2-tiny-spam-cls's golden first-64 validation logits (needs the `tokenizers`
package; text truncated to 256 tokens, no special tokens, logits of the last token) for the variants.
--ppl also recomputes golden.json's ppl_wikitext2_fp32 mean NLL (40 windows of 512 tokens; positions up
to 511, where RoPE errors are largest) for the selected variants of each model (needs `tokenizers`).
"""
import argparse, json, os, struct, sys, time
import numpy as np

F64 = np.float64


# ---------------------------------------------------------------- roundings (to a narrower float, back to f64)
def r_f32(x):
    return np.asarray(x, dtype=np.float32).astype(F64)


def r_bf16(x):
    """round-to-nearest-even to bf16 (via fp32, as torch's fp32 -> bf16 cast)."""
    u = np.ascontiguousarray(np.asarray(x, dtype=np.float32)).view(np.uint32).copy()
    u += np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))
    u &= np.uint32(0xFFFF0000)
    return u.view(np.float32).astype(F64)


def r_bf16_trunc(x):
    """bf16 by truncation (round toward zero), to tell it from torch's round-to-nearest-even cast."""
    u = np.ascontiguousarray(np.asarray(x, dtype=np.float32)).view(np.uint32) & np.uint32(0xFFFF0000)
    return u.view(np.float32).astype(F64)


def r_f16(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(F64)


def r_tf32(x):
    """round-to-nearest-even to a 10-bit mantissa (TF32 inputs of a tensor-core matmul)."""
    u = np.ascontiguousarray(np.asarray(x, dtype=np.float32)).view(np.uint32).copy()
    u += np.uint32(0xFFF) + ((u >> np.uint32(13)) & np.uint32(1))
    u &= np.uint32(0xFFFFE000)
    return u.view(np.float32).astype(F64)


ROUND = {None: lambda x: x, "f64": lambda x: x, "f32": r_f32, "bf16": r_bf16, "bf16t": r_bf16_trunc, "f16": r_f16, "tf32": r_tf32}


# ---------------------------------------------------------------- safetensors (BF16/F32/F16/I32) without torch
def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out, dtypes = {}, {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        raw = data[a:b]
        dt = v["dtype"]
        if dt == "BF16":
            t = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)
        elif dt == "F32":
            t = np.frombuffer(raw, dtype=np.float32)
        elif dt == "F16":
            t = np.frombuffer(raw, dtype=np.float16)
        elif dt == "I32":
            t = np.frombuffer(raw, dtype=np.int32)
        elif dt == "I64":
            t = np.frombuffer(raw, dtype=np.int64)
        else:
            raise ValueError(f"{path}: {k}: dtype {dt}")
        out[k] = t.reshape(v["shape"])
        dtypes[k] = dt
    return out, dtypes


def load_model(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    idx = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
    W, dts = {}, {}
    for fn in files:
        w, t = read_safetensors(os.path.join(d, fn))
        W.update(w)
        dts.update(t)
    W = {k: v.astype(F64) for k, v in W.items()}
    return cfg, W, dts


# ---------------------------------------------------------------- the model
def rope_theta(cfg, how="config"):
    rp = cfg.get("rope_parameters") or {}
    if how == "config":
        return float(cfg.get("rope_theta", rp.get("rope_theta", 10000.0)))
    return float(how)


def inv_freq(cfg, v):
    hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    base = rope_theta(cfg, v.get("theta", "config"))
    mode = v.get("inv_freq", "f64")
    if mode == "f64":
        return 1.0 / base ** (np.arange(0, hd, 2, dtype=F64) / hd)
    # HF: 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)), all in fp32
    e = np.arange(0, hd, 2).astype(np.float32) / np.float32(hd)
    f = (np.float32(1.0) / np.power(np.float32(base), e, dtype=np.float32)).astype(np.float32)
    f = f.astype(F64)
    if mode == "hf32":
        return f
    return ROUND[mode](f)           # hf32 then cast to bf16 / fp16 and back (model.to(dtype) then .float())


def rope_tables(cfg, T, v):
    f = inv_freq(cfg, v)
    pos = np.arange(T, dtype=F64)
    ang = pos[:, None] * f[None, :]
    if v.get("freq_prod") == "f32":           # HF: inv_freq.float() @ position_ids.float() in fp32
        ang = r_f32(ang)
    emb = np.concatenate([ang, ang], axis=-1)
    cos, sin = np.cos(emb), np.sin(emb)
    rc = ROUND[v.get("cossin")]
    return rc(cos), rc(sin)


def rms_norm(x, w, eps, v, where):
    var = np.mean(x * x, axis=-1, keepdims=True)
    y = x / np.sqrt(var + eps)
    r = v.get("norm_out")                      # rounding of the normalized activations before * weight
    if r and where in v.get("norm_where", ("input", "post", "final", "qk")):
        y = ROUND[r](y)
    return y * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def linear(x, W, b, v, group):
    r = v.get("mm_in") if group in v.get("mm_groups", ()) else None
    if r:
        x, W = ROUND[r](x), ROUND[r](W)
    y = x @ W.T
    if b is not None:
        y = y + b
    return y


def forward(cfg, W, ids, v, head_name=None):
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = cfg["hidden_size"]
    hd = cfg.get("head_dim") or D // H
    eps = cfg["rms_norm_eps"]
    T = len(ids)
    cos, sin = rope_tables(cfg, T, v)
    x = W["model.embed_tokens.weight"][ids]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    qk_norm = "model.layers.0.self_attn.q_norm.weight" in W
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps, v, "input")
        q = linear(h, W[p + "self_attn.q_proj.weight"], W.get(p + "self_attn.q_proj.bias"), v, "qkv")
        k = linear(h, W[p + "self_attn.k_proj.weight"], W.get(p + "self_attn.k_proj.bias"), v, "qkv")
        vv = linear(h, W[p + "self_attn.v_proj.weight"], W.get(p + "self_attn.v_proj.bias"), v, "qkv")
        q = q.reshape(T, H, hd).transpose(1, 0, 2)
        k = k.reshape(T, KV, hd).transpose(1, 0, 2)
        vv = vv.reshape(T, KV, hd).transpose(1, 0, 2)
        if qk_norm:
            q = rms_norm(q, W[p + "self_attn.q_norm.weight"], eps, v, "qk")
            k = rms_norm(k, W[p + "self_attn.k_norm.weight"], eps, v, "qk")
        if v.get("qk_pre_rope"):
            q, k = ROUND[v["qk_pre_rope"]](q), ROUND[v["qk_pre_rope"]](k)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if v.get("qk_post_rope"):
            q, k = ROUND[v["qk_post_rope"]](q), ROUND[v["qk_post_rope"]](k)
        rep = H // KV
        k = np.repeat(k, rep, axis=0)
        vv = np.repeat(vv, rep, axis=0)
        if v.get("attn_mm"):                  # TF32/bf16/fp16 inputs to QK^T and PV
            q, k, vv = ROUND[v["attn_mm"]](q), ROUND[v["attn_mm"]](k), ROUND[v["attn_mm"]](vv)
        s = (q @ k.transpose(0, 2, 1)) * (hd ** -0.5)
        if v.get("scores"):
            s = ROUND[v["scores"]](s)
        s = s + mask
        s = s - s.max(-1, keepdims=True)
        pr = np.exp(s)
        pr = pr / pr.sum(-1, keepdims=True)
        if v.get("probs"):
            pr = ROUND[v["probs"]](pr)
        if v.get("attn_mm"):
            pr = ROUND[v["attn_mm"]](pr)
        o = (pr @ vv).transpose(1, 0, 2).reshape(T, H * hd)
        if v.get("attn_out"):
            o = ROUND[v["attn_out"]](o)
        x = x + linear(o, W[p + "self_attn.o_proj.weight"], None, v, "o")
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps, v, "post")
        g = linear(h, W[p + "mlp.gate_proj.weight"], None, v, "mlp")
        u = linear(h, W[p + "mlp.up_proj.weight"], None, v, "mlp")
        a = g / (1.0 + np.exp(-g)) * u
        x = x + linear(a, W[p + "mlp.down_proj.weight"], None, v, "mlp")
        if v.get("resid"):
            x = ROUND[v["resid"]](x)
    x = rms_norm(x, W["model.norm.weight"], eps, v, "final")
    if head_name:  # a sequence classifier's score head, on the last position only
        return linear(x[-1:], W[head_name], None, v, "head")[0]
    head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    return linear(x, head, None, v, "head")


# ---------------------------------------------------------------- the variants
TF_ALL = ("qkv", "o", "mlp", "head")
VARIANTS = [
    ("fp64", {}),
    ("fp32 rope as HF (inv_freq fp32, ang fp32, cos/sin fp32)", {"inv_freq": "hf32", "freq_prod": "f32", "cossin": "f32"}),
    ("(a) inv_freq bf16", {"inv_freq": "bf16"}),
    ("(a') inv_freq bf16 + HF fp32 rest of rope", {"inv_freq": "bf16", "freq_prod": "f32", "cossin": "f32"}),
    ("(a'') inv_freq fp16", {"inv_freq": "f16"}),
    ("(a3) inv_freq bf16 by truncation", {"inv_freq": "bf16t"}),
    ("(b) cos/sin bf16", {"cossin": "bf16"}),
    ("(b') cos/sin fp16", {"cossin": "f16"}),
    ("(b'') inv_freq bf16 + cos/sin bf16", {"inv_freq": "bf16", "cossin": "bf16"}),
    ("(c) inv_freq HF fp32 only", {"inv_freq": "hf32"}),
    ("(c') inv_freq HF fp32 + ang fp32", {"inv_freq": "hf32", "freq_prod": "f32"}),
    ("(c'') rope_theta 1e6", {"theta": "1000000"}),
    ("(c''') rope_theta 500000", {"theta": "500000"}),
    ("(e1) q,k after rope bf16", {"qk_post_rope": "bf16"}),
    ("(e2) attn scores bf16", {"scores": "bf16"}),
    ("(e3) attn scores fp16", {"scores": "f16"}),
    ("(e4) attn probs bf16", {"probs": "bf16"}),
    ("(e5) attn probs fp16", {"probs": "f16"}),
    ("(e6) attn QK/PV inputs tf32", {"attn_mm": "tf32"}),
    ("(e7) attn QK/PV inputs fp16", {"attn_mm": "f16"}),
    ("(e8) attn output bf16", {"attn_out": "bf16"}),
    ("(e9) linear inputs tf32 (all)", {"mm_in": "tf32", "mm_groups": TF_ALL}),
    ("(e10) linear inputs tf32 (qkv,o,mlp; not head)", {"mm_in": "tf32", "mm_groups": ("qkv", "o", "mlp")}),
    ("(e11) lm_head input tf32 only", {"mm_in": "tf32", "mm_groups": ("head",)}),
    ("(e12) qkv inputs tf32 only", {"mm_in": "tf32", "mm_groups": ("qkv",)}),
    ("(e13) mlp inputs tf32 only", {"mm_in": "tf32", "mm_groups": ("mlp",)}),
    ("(e14) o_proj inputs tf32 only", {"mm_in": "tf32", "mm_groups": ("o",)}),
    ("(e15) linear inputs bf16 (all)", {"mm_in": "bf16", "mm_groups": TF_ALL}),
    ("(e16) norm output bf16 (before *w)", {"norm_out": "bf16"}),
    ("(e17) residual stream bf16 per layer", {"resid": "bf16"}),
    ("(e18) linear inputs fp16 (all)", {"mm_in": "f16", "mm_groups": TF_ALL}),
]


def rel(x, r):
    return float(np.linalg.norm(x - r) / np.linalg.norm(r))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fixtures")
    ap.add_argument("--only", help="comma-separated substrings of variant names")
    ap.add_argument("--out")
    ap.add_argument("--no-greedy", action="store_true")
    ap.add_argument("--models", default="qwen2-tiny-lm,qwen3-tiny-lm")
    ap.add_argument("--cls", action="store_true", help="also the classifier's first-64 golden logits")
    ap.add_argument("--ppl", action="store_true", help="also golden.json's ppl_wikitext2_fp32 mean NLL")
    a = ap.parse_args()
    variants = VARIANTS
    if a.only:
        keys = a.only.split(",")
        variants = [VARIANTS[0]] + [x for x in VARIANTS[1:] if any(s in x[0] for s in keys)]
    res = {"rows": []}
    for name in a.models.split(","):
        d = os.path.join(a.fixtures, "models", name)
        cfg, W, dts = load_model(d)
        kinds = sorted(set(dts.values()))
        print(f"{name}: stored weight dtypes {kinds}; rope {cfg.get('rope_parameters')} rope_theta(top) "
              f"{cfg.get('rope_theta')} head_dim {cfg.get('head_dim')} eps {cfg['rms_norm_eps']}", flush=True)
        gl, _ = read_safetensors(os.path.join(d, "golden_logits.safetensors"))
        gj = json.load(open(os.path.join(d, "golden.json")))
        n = sum(1 for k in gl if k.startswith("ids_"))
        ids = [gl[f"ids_{i}"].astype(np.int64) for i in range(n)]
        gold = [gl[f"logits_{i}"].astype(F64) for i in range(n)]
        seqs = [np.concatenate([ids[i], np.array(gj[f"greedy_{i}"], dtype=np.int64)]) for i in range(n)]
        ref = None
        for vname, v in variants:
            t0 = time.time()
            if a.no_greedy:
                lg = [forward(cfg, W, ids[i], v) for i in range(n)]
                full = None
            else:  # one causal pass over prompt + the 32 golden tokens: its first len(prompt) rows are the prompt logits
                full = [forward(cfg, W, seqs[i], v) for i in range(n)]
                lg = [full[i][:len(ids[i])] for i in range(n)]
            if ref is None:
                ref = lg
                ref_full = full
            row = {"model": name, "variant": vname,
                   "vs_golden": [rel(lg[i], gold[i]) for i in range(n)],
                   "vs_fp64": [rel(lg[i], ref[i]) for i in range(n)]}
            if full is not None:
                hit, tot, s15 = 0, 0, None
                for i in range(n):
                    L = len(ids[i])
                    want = gj[f"greedy_{i}"]
                    am = full[i][L - 1:L - 1 + len(want)].argmax(-1)
                    hit += int((am == np.array(want)).sum())
                    tot += len(want)
                    if i == 0:
                        s15 = int(am[15])
                        m15 = float(full[i][L - 1 + 15][272] - full[i][L - 1 + 15][335])
                row["greedy_match"] = f"{hit}/{tot}"
                row["p0_step15_argmax"] = s15
                row["p0_step15_logit272_minus_335"] = m15
            res["rows"].append(row)
            g = " ".join(f"{x:.2e}" for x in row["vs_golden"])
            f = " ".join(f"{x:.2e}" for x in row["vs_fp64"])
            extra = (f"  greedy {row['greedy_match']} p0s15 {row['p0_step15_argmax']} "
                     f"(l272-l335 {row['p0_step15_logit272_minus_335']:+.2e})") if full is not None else ""
            print(f"  {vname:52s} vs golden [{g}]  vs fp64 [{f}]{extra}  ({time.time() - t0:.1f}s)", flush=True)
        # per-position error of the golden against fp64 (row 0 is immune to any attention/RoPE error)
        for i in range(n):
            pr = [rel(gold[i][t], ref[i][t]) for t in range(len(ids[i]))]
            res.setdefault("golden_per_position", {}).setdefault(name, []).append(pr)
            print(f"  golden vs fp64 per position, prompt {i}: " + " ".join(f"{x:.1e}" for x in pr))
    if a.ppl:
        for name in a.models.split(","):
            perplexity(a.fixtures, name, variants, res)
    if a.cls:
        classifier(a.fixtures, variants, res)
    if a.out:
        json.dump(res, open(a.out, "w"), indent=1)


def perplexity(fixtures, name, variants, res):
    from tokenizers import Tokenizer
    d = os.path.join(fixtures, "models", name)
    cfg, W, _ = load_model(d)
    g = json.load(open(os.path.join(d, "golden.json")))["ppl_wikitext2_fp32"]
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    text = open(os.path.join(fixtures, "corpora", "wikitext2-test.txt"), encoding="utf-8").read()
    ids = np.array(tok.encode(text, add_special_tokens=False).ids, dtype=np.int64)
    w, nw = g["window"], g["windows"]
    print(f"{name}: wikitext2 ppl, {nw} windows of {w}; golden mean_nll {g['mean_nll']:.9f}", flush=True)
    for vname, v in variants:
        t0 = time.time()
        tot, cnt = 0.0, 0
        for k in range(nw):
            x = ids[k * w:(k + 1) * w]
            lg = forward(cfg, W, x, v)[:-1]
            m = lg.max(-1, keepdims=True)
            lse = (m[:, 0] + np.log(np.exp(lg - m).sum(-1)))
            tot += float((lse - lg[np.arange(len(x) - 1), x[1:]]).sum())
            cnt += len(x) - 1
        nll = tot / cnt
        row = {"model": name, "variant": vname, "ppl_wikitext2_mean_nll": nll, "tokens": cnt,
               "golden_mean_nll": g["mean_nll"], "delta_vs_golden": nll - g["mean_nll"]}
        res["rows"].append(row)
        print(f"  {vname:52s} mean_nll {nll:.9f}  minus golden {nll - g['mean_nll']:+.2e}  ({cnt} tokens, "
              f"{time.time() - t0:.1f}s)", flush=True)


def classifier(fixtures, variants, res):
    from tokenizers import Tokenizer
    d = os.path.join(fixtures, "models", "qwen2-tiny-spam-cls")
    cfg, W, _ = load_model(d)
    gj = json.load(open(os.path.join(d, "golden.json")))
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    texts = {}
    for line in open(os.path.join(fixtures, "corpora", "spam-val.jsonl")):
        o = json.loads(line)
        texts[o["id"]] = o["text"]
    seqs = [np.array(tok.encode(texts[i], add_special_tokens=False).ids[:256], dtype=np.int64)
            for i in gj["val_first64_ids"]]
    gold = np.array(gj["val_first64_logits"], dtype=F64)
    print(f"qwen2-tiny-spam-cls: first 64 validation mails, {sum(map(len, seqs))} tokens", flush=True)
    ref = None
    for vname, v in variants:
        t0 = time.time()
        lg = np.stack([forward(cfg, W, s, v, head_name="score.weight") for s in seqs])
        if ref is None:
            ref = lg
        row = {"model": "qwen2-tiny-spam-cls", "variant": vname, "vs_golden": rel(lg, gold), "vs_fp64": rel(lg, ref)}
        res["rows"].append(row)
        print(f"  {vname:52s} vs golden {row['vs_golden']:.2e}  vs fp64 {row['vs_fp64']:.2e}  ({time.time() - t0:.1f}s)",
              flush=True)


if __name__ == "__main__":
    main()
