#!/usr/bin/env python3
"""Where the golden logits' residual comes from (issue 2, docs/correctness.md). For each Qwen fixture
and golden prompt, computes the logits with Hugging Face transformers in several arithmetics and prints
each one's ‖Δ‖/‖ref‖ against an fp64 evaluation of the same weights (the exact value to ~1e-15) and
against golden_logits.safetensors:
  cpu fp64 eager (the reference), cpu fp32 eager / sdpa, and on a GPU: cuda fp32 eager, sdpa (default
  backend choice), sdpa restricted to the math / memory-efficient backends, and cuda fp32 with TF32
  matmuls allowed.
qquant's own logits agree with the golden to the figures test_golden prints; the fp64 column says which
side of the difference carries the error. Also: the greedy continuations in fp64 (teacher-forced on
the golden tokens: where the exact argmax differs from the golden token, and by how much), and the
classifier's first-64 validation logits in fp64 against the golden's.

  python3 bench/golden_attrib.py FIXTURES_DIR [--out FILE.json] [--save-fp64 DIR]
  QQ_REF_LOGITS_DIR=DIR build/bin/test_golden   # qquant's logits against the fp64 ones
"""
import argparse, json, os, shutil, tempfile
import torch
from safetensors.torch import load_file


def model_dir(src, tmp):
    """transformers < 5 reads rope_theta at the top level; the fixtures use rope_parameters."""
    c = json.load(open(os.path.join(src, "config.json")))
    if "rope_theta" in c:
        return src
    dst = os.path.join(tmp, os.path.basename(src))
    if os.path.exists(dst):
        return dst
    shutil.copytree(src, dst)
    c["rope_theta"] = (c.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    json.dump(c, open(os.path.join(dst, "config.json"), "w"))
    return dst


def kwname():
    import transformers
    return "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fixtures")
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "/tmp"), "golden_attrib.json"))
    ap.add_argument("--save-fp64", metavar="DIR", help="write DIR/<model>.safetensors: ids_i, logits_i of the fp64 "
                    "evaluation (stored as F32), for test_golden's QQ_REF_LOGITS_DIR")
    a = ap.parse_args()
    import transformers
    from transformers import AutoModelForCausalLM
    res = {"torch": torch.__version__, "transformers": transformers.__version__,
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "rows": []}
    print(f"torch {res['torch']}, transformers {res['transformers']}, gpu {res['gpu']}")
    tmp = tempfile.mkdtemp()
    variants = [("cpu", torch.float64, "eager", None, False), ("cpu", torch.float32, "eager", None, False),
                ("cpu", torch.float32, "sdpa", None, False)]
    if torch.cuda.is_available():
        from torch.nn.attention import SDPBackend
        variants += [("cuda", torch.float32, "eager", None, False), ("cuda", torch.float32, "sdpa", None, False),
                     ("cuda", torch.float32, "sdpa", SDPBackend.MATH, False),
                     ("cuda", torch.float32, "sdpa", SDPBackend.EFFICIENT_ATTENTION, False),
                     ("cuda", torch.float32, "sdpa", None, True)]
    for name in ("qwen2-tiny-lm", "qwen3-tiny-lm"):
        src = os.path.join(a.fixtures, "models", name)
        g = load_file(os.path.join(src, "golden_logits.safetensors"))
        n = sum(1 for k in g if k.startswith("ids_"))
        try:
            d = model_dir(src, tmp)
            out = {}
            for dev, dt, impl, backend, tf32 in variants:
                tag = f"{dev} {str(dt)[6:]} {impl}" + (f" {backend.name.lower()}" if backend else "") + (" tf32" if tf32 else "")
                kw = {"dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype": dt}
                m = AutoModelForCausalLM.from_pretrained(d, attn_implementation=impl, **kw).to(dev).eval()
                torch.backends.cuda.matmul.allow_tf32 = tf32
                try:
                    for i in range(n):
                        ids = g[f"ids_{i}"].long()[None].to(dev)
                        with torch.no_grad():
                            if backend is not None:
                                from torch.nn.attention import sdpa_kernel
                                with sdpa_kernel(backend):
                                    lg = m(ids).logits
                            else:
                                lg = m(ids).logits
                        out[(tag, i)] = lg[0].double().cpu()
                except RuntimeError as e:  # a backend that cannot run these shapes (GQA, fp32)
                    print(f"{name}: {tag}: not run ({str(e)[:120]})")
                    for i in range(n):
                        out.pop((tag, i), None)
                torch.backends.cuda.matmul.allow_tf32 = False
                del m
        except Exception as e:  # an architecture this transformers does not know, say
            print(f"{name}: skipped ({type(e).__name__}: {str(e)[:200]})")
            continue
        if a.save_fp64:
            from safetensors.torch import save_file
            os.makedirs(a.save_fp64, exist_ok=True)
            t = {}
            for i in range(n):
                t[f"ids_{i}"] = g[f"ids_{i}"].contiguous()
                t[f"logits_{i}"] = out[("cpu float64 eager", i)].float().contiguous()
            save_file(t, os.path.join(a.save_fp64, f"{name}.safetensors"))
        tags = list(dict.fromkeys(t for t, _ in out))
        for i in range(n):
            ref = out[("cpu float64 eager", i)]
            gold = g[f"logits_{i}"].double()
            rel = lambda x, r: ((x - r).norm() / r.norm()).item()
            row = {"model": name, "prompt": i, "golden_vs_fp64": rel(gold, ref)}
            for t in tags:
                row[t] = {"vs_fp64": rel(out[(t, i)], ref), "vs_golden": rel(out[(t, i)], gold)}
            res["rows"].append(row)
            print(f"{name} prompt {i}: golden vs fp64 {row['golden_vs_fp64']:.3e}")
            for t in tags:
                print(f"    {t:32s} vs fp64 {row[t]['vs_fp64']:.3e}   vs golden {row[t]['vs_golden']:.3e}")
    # Greedy continuations in fp64 (argmax of the exact logits) against the golden ones.
    for name in ("qwen2-tiny-lm", "qwen3-tiny-lm"):
        src = os.path.join(a.fixtures, "models", name)
        gj = json.load(open(os.path.join(src, "golden.json")))
        g = load_file(os.path.join(src, "golden_logits.safetensors"))
        try:
            m = AutoModelForCausalLM.from_pretrained(model_dir(src, tmp), attn_implementation="eager",
                                                     **{kwname(): torch.float64}).eval()
        except Exception as e:
            print(f"{name}: greedy skipped ({type(e).__name__})")
            continue
        for i in range(len(gj["prompts"])):
            ids = g[f"ids_{i}"].long()[None]
            want = gj[f"greedy_{i}"]
            diffs = []
            for t in range(len(want)):
                with torch.no_grad():
                    lg = m(ids).logits[0, -1]
                best = int(lg.argmax())
                if best != want[t]:
                    diffs.append({"step": t, "fp64_argmax": best, "golden": want[t],
                                  "fp64_margin": float(lg[best] - lg[want[t]])})
                ids = torch.cat([ids, torch.tensor([[want[t]]])], 1)  # teacher forcing: the golden token
            res.setdefault("greedy", []).append({"model": name, "prompt": i, "steps": len(want), "differs": diffs})
            print(f"{name} prompt {i}: fp64 greedy (teacher-forced on the golden tokens) differs from the golden at "
                  f"{[(d['step'], d['fp64_argmax'], d['golden'], round(d['fp64_margin'], 6)) for d in diffs]}")
    # The classifier's first 64 validation logits in fp64 against the golden's.
    src = os.path.join(a.fixtures, "models", "qwen2-tiny-spam-cls")
    try:
        from transformers import AutoModelForSequenceClassification
        from tokenizers import Tokenizer
        gj = json.load(open(os.path.join(src, "golden.json")))
        tok = Tokenizer.from_file(os.path.join(src, "tokenizer.json"))
        texts = {}
        for line in open(os.path.join(a.fixtures, "corpora", "spam-val.jsonl")):
            o = json.loads(line)
            texts[o["id"]] = o["text"]
        m = AutoModelForSequenceClassification.from_pretrained(model_dir(src, tmp), attn_implementation="eager",
                                                               **{kwname(): torch.float64}).eval()
        rows = []
        for vid in gj["val_first64_ids"]:
            ids = tok.encode(texts[vid], add_special_tokens=False).ids[:256]
            with torch.no_grad():
                rows.append(m(torch.tensor([ids])).logits[0])
        f64 = torch.stack(rows)
        gold = torch.tensor(gj["val_first64_logits"], dtype=torch.float64)
        rel = ((gold - f64).norm() / f64.norm()).item()
        res["classifier_first64_golden_vs_fp64"] = rel
        print(f"qwen2-tiny-spam-cls first-64 logits: golden vs fp64 {rel:.3e}")
        if a.save_fp64:
            from safetensors.torch import save_file
            save_file({"logits_first64": f64.float().contiguous()},
                      os.path.join(a.save_fp64, "qwen2-tiny-spam-cls.safetensors"))
    except Exception as e:
        print(f"qwen2-tiny-spam-cls: skipped ({type(e).__name__}: {str(e)[:200]})")
    json.dump(res, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
