#!/usr/bin/env python3
"""CI check of helm/qquant.

Renders the chart with Helm's own template engine (helm-python-sdk binds Helm v4's Go SDK through
ctypes; no helm binary, no cluster, no network), lints it, validates every rendered object against the
Kubernetes OpenAPI schemas of several Kubernetes versions (kubernetes-validate, strict: unknown fields
are errors), and asserts what a working deployment depends on: the GPU request, probes on the gRPC
port and the health service names, the drain time against the grace period, the ConfigMap's
QQ_SERVE_* names, selectors, volumes and the security context. Values that must be refused (by
values.schema.json or by the templates' own checks) are tried too. With a build (QQ_BINARY_DIR) and
the fixtures (QQ_FIXTURES), the ConfigMap's variables are checked against `qquant-serve --help` and the
quantize init container's rendered script runs the real `qquant` on a fixture model.

Exit codes: 0 all checks passed, 1 a check failed, 77 the Python packages are missing (ctest SKIP).
Usage: check_chart.py [CHART_DIR]   (default: helm/qquant beside this repository's tests/)
"""
import copy
import os
import re
import subprocess
import sys
import tempfile

SKIP = 77
try:
    import helm_python as helm
    import kubernetes_validate
    import yaml
except ImportError as exc:  # only a missing package may skip; everything after this fails loudly
    print(f"SKIP: {exc}. tools/install-deps.sh installs the pinned packages "
          "(tests/helm/requirements.txt) into ~/.cache/qquant-venv.")
    sys.exit(SKIP)

# The chart's kubeVersion floor (Chart.yaml), a pinned reference version, and the newest schema set
# kubernetes-validate 1.37.0 ships.
KUBE_VERSIONS = ("1.27.0", "1.30.0", "1.37.0")
# Kinds kubernetes-validate has no schema for (custom resources): checked field by field below.
CRD_KINDS = {"ServiceMonitor"}
# qquant-serve's flags (its --help; QQ_SERVE_<FLAG> each).
SERVE_ENV = {f"QQ_SERVE_{n}" for n in (
    "MODEL", "PORT", "HOST", "METRICS_PORT", "DEVICE", "DRAIN_SECONDS", "MAX_QUEUE", "MAX_BATCH",
    "MAX_SEQ_LEN", "KV_BLOCKS", "TLS_CERT", "TLS_KEY", "TLS_CLIENT_CA", "LOG_FORMAT")}
HEALTH_OVERALL = ""
HEALTH_INFERENCE = "qquant.v1.Inference"
EXIT_MARGIN_SECONDS = 10  # templates/_helpers.tpl: grace = preStop + drain + this, when not set
RELEASE, NAMESPACE = "rel", "serving"


class Checker:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL: {what}")
        return cond


C = Checker()


def deep_merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def render(chart, values):
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objs, notes = [], ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc["__template"] = path
                objs.append(doc)
    return objs, notes


def validate_schemas(name, objs):
    for o in objs:
        body = {k: v for k, v in o.items() if k != "__template"}
        what = f"{name}: {o['kind']}/{o['metadata']['name']} ({o['__template']})"
        for ver in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(body, ver, strict=True)
                C.check(True, "")
            except kubernetes_validate.SchemaNotFoundError:
                C.check(o["kind"] in CRD_KINDS, f"{what}: no Kubernetes {ver} schema for this kind")
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                C.check(False, f"{what}: invalid for Kubernetes {ver}: {path}: {e.message}")


def by_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def one(objs, kind, name):
    found = by_kind(objs, kind)
    C.check(len(found) == 1, f"{name}: expected one {kind}, found {len(found)}")
    return found[0] if found else {}


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_release(name, values, objs, notes):
    """The properties every rendering must have; `values` are the merged values used."""
    s, gpu, m = values["server"], values["gpu"], values["model"]
    dep = one(objs, "Deployment", name)
    cm = one(objs, "ConfigMap", name)
    pod = dep["spec"]["template"]
    spec = pod["spec"]
    pod_labels = pod["metadata"]["labels"]
    containers = {c["name"]: c for c in spec["containers"]}
    inits = {c["name"]: c for c in spec.get("initContainers", [])}
    srv = containers.get("qquant-serve")
    if not C.check(srv is not None, f"{name}: no qquant-serve container"):
        return
    ports = {p["name"]: p["containerPort"] for p in srv["ports"]}

    # Every object belongs to the release and has a DNS-label name.
    for o in objs:
        md = o["metadata"]
        C.check(md.get("labels", {}).get("app.kubernetes.io/instance") == RELEASE,
                f"{name}: {o['kind']}/{md['name']} lacks the instance label")
        C.check(len(md["name"]) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", md["name"]),
                f"{name}: {o['kind']} name {md['name']!r} is not a DNS label")

    # ConfigMap: only the server's real variables; the values the probes and the grace period rely on.
    data = cm.get("data", {})
    C.check(set(data) <= SERVE_ENV, f"{name}: ConfigMap has unknown keys {sorted(set(data) - SERVE_ENV)}")
    C.check(data.get("QQ_SERVE_PORT") == str(s["port"]), f"{name}: QQ_SERVE_PORT != server.port")
    C.check(data.get("QQ_SERVE_METRICS_PORT") == str(s["metricsPort"]), f"{name}: metrics port")
    C.check(data.get("QQ_SERVE_HOST") == "0.0.0.0", f"{name}: the server must listen on 0.0.0.0 in a pod")
    C.check(data.get("QQ_SERVE_DRAIN_SECONDS") == str(s["drainSeconds"]), f"{name}: QQ_SERVE_DRAIN_SECONDS")
    device = s["device"] or ("cuda" if gpu["enabled"] else "cpu")
    C.check(data.get("QQ_SERVE_DEVICE") == device, f"{name}: QQ_SERVE_DEVICE {data.get('QQ_SERVE_DEVICE')} != {device}")
    for key, env in (("maxQueue", "MAX_QUEUE"), ("maxBatch", "MAX_BATCH"), ("maxSeqLen", "MAX_SEQ_LEN"),
                     ("kvBlocks", "KV_BLOCKS")):
        want = None if s[key] is None else str(s[key])
        C.check(data.get(f"QQ_SERVE_{env}") == want, f"{name}: QQ_SERVE_{env} {data.get(f'QQ_SERVE_{env}')} != {want}")
    C.check(("QQ_SERVE_TLS_CERT" in data) == s["tls"]["enabled"], f"{name}: TLS variables vs server.tls.enabled")
    C.check(("QQ_SERVE_TLS_CLIENT_CA" in data) == (s["tls"]["enabled"] and s["tls"]["clientAuth"]),
            f"{name}: QQ_SERVE_TLS_CLIENT_CA vs server.tls.clientAuth")
    C.check(srv.get("envFrom") == [{"configMapRef": {"name": cm["metadata"]["name"]}}],
            f"{name}: the server does not take its environment from the ConfigMap")
    C.check("checksum/config" in pod["metadata"].get("annotations", {}), f"{name}: no config checksum")
    C.check(spec.get("enableServiceLinks") is False, f"{name}: service links could override QQ_SERVE_*")

    # Ports and probes: native gRPC health on the gRPC port (TCP when the server itself speaks TLS).
    C.check(ports.get("grpc") == s["port"] and ports.get("metrics") == s["metricsPort"],
            f"{name}: container ports {ports}")
    for probe, service in (("startupProbe", HEALTH_OVERALL), ("livenessProbe", HEALTH_OVERALL),
                           ("readinessProbe", HEALTH_INFERENCE)):
        p = srv.get(probe, {})
        if s["tls"]["enabled"]:
            C.check(p.get("tcpSocket", {}).get("port") == "grpc" and "grpc" not in p,
                    f"{name}: {probe} must be a TCP check with TLS on: {p}")
        else:
            C.check(p.get("grpc") == {"port": s["port"], "service": service},
                    f"{name}: {probe} must be gRPC health {service!r} on port {s['port']}: {p}")
    sp = srv.get("startupProbe", {})
    budget = sp.get("periodSeconds", 0) * sp.get("failureThreshold", 0)
    want = values["probes"]["startup"]["periodSeconds"] * values["probes"]["startup"]["failureThreshold"]
    C.check(budget == want, f"{name}: startup probe allows {budget} s, values say {want} s")
    lp = srv.get("livenessProbe", {})
    C.check(budget > lp.get("periodSeconds", 0) * lp.get("failureThreshold", 0),
            f"{name}: the startup probe must allow longer than the liveness probe (model loading)")

    # Drain: preStop sleep, then SIGTERM; the grace period covers both.
    grace = spec.get("terminationGracePeriodSeconds")
    floor = s["preStopSleepSeconds"] + s["drainSeconds"]
    C.check(isinstance(grace, int) and grace >= floor, f"{name}: grace {grace} < preStop + drain {floor}")
    if values["terminationGracePeriodSeconds"] is None:
        C.check(grace == floor + EXIT_MARGIN_SECONDS, f"{name}: default grace {grace} != {floor + EXIT_MARGIN_SECONDS}")
    else:
        C.check(grace == values["terminationGracePeriodSeconds"], f"{name}: grace override ignored")
    pre = srv.get("lifecycle", {}).get("preStop")
    if s["preStopSleepSeconds"] > 0:
        C.check(pre == {"exec": {"command": ["sleep", str(s["preStopSleepSeconds"])]}}, f"{name}: preStop {pre}")
    else:
        C.check(pre is None, f"{name}: preStop present with preStopSleepSeconds 0")
    C.check(str(floor) in notes or str(grace) in notes, f"{name}: NOTES.txt does not state the grace period")

    # GPUs: requests == limits == gpu.count on the server and on the quantize init container.
    rn = gpu["resourceName"]
    for c in [srv] + list(inits.values()):
        res = c.get("resources", {})
        if gpu["enabled"]:
            C.check(str(res.get("limits", {}).get(rn)) == str(gpu["count"]) and
                    str(res.get("requests", {}).get(rn)) == str(gpu["count"]),
                    f"{name}: {c['name']} must request and limit {gpu['count']} {rn}: {res}")
        else:
            C.check(rn not in str(res), f"{name}: {c['name']} asks for GPUs with gpu.enabled false")
    user_res = values["resources"]
    for kind in ("requests", "limits"):
        for k, v in user_res.get(kind, {}).items():
            if k != rn:
                C.check(str(srv["resources"].get(kind, {}).get(k)) == str(v),
                        f"{name}: resources.{kind}.{k} {v} became {srv['resources'].get(kind, {}).get(k)}")
    tolerations = spec.get("tolerations", [])
    gpu_tol = {"key": rn, "operator": "Exists", "effect": "NoSchedule"}
    C.check((gpu_tol in tolerations) == (gpu["enabled"] and gpu["tolerateGpuTaint"]),
            f"{name}: GPU taint toleration {tolerations}")
    for t in values["tolerations"]:
        C.check(t in tolerations, f"{name}: user toleration {t} lost")
    if gpu["enabled"] and gpu["products"]:
        terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        cond = {"key": "nvidia.com/gpu.product", "operator": "In", "values": gpu["products"]}
        C.check(terms and all(cond in t.get("matchExpressions", []) for t in terms),
                f"{name}: every node selector term must require the GPU model: {terms}")
        user_terms = (values["affinity"].get("nodeAffinity", {})
                      .get("requiredDuringSchedulingIgnoredDuringExecution", {}).get("nodeSelectorTerms", []))
        C.check(len(terms) == max(1, len(user_terms)), f"{name}: node selector terms {len(terms)} != {len(user_terms)}")
    for k, v in values["nodeSelector"].items():
        C.check(spec.get("nodeSelector", {}).get(k) == v, f"{name}: nodeSelector {k} lost")

    # Security context on every container; the only writable paths are volumes.
    psc = spec.get("securityContext", {})
    C.check(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) != 0, f"{name}: pod may run as root")
    C.check(spec.get("automountServiceAccountToken") is False, f"{name}: service account token mounted")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for c in [srv] + list(inits.values()):
        sc = c.get("securityContext", {})
        C.check(sc.get("readOnlyRootFilesystem") is True, f"{name}: {c['name']} root filesystem writable")
        C.check(sc.get("allowPrivilegeEscalation") is False, f"{name}: {c['name']} privilege escalation")
        C.check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: {c['name']} keeps capabilities")
        mounts = {vm["mountPath"]: vm for vm in c.get("volumeMounts", [])}
        C.check("/tmp" in mounts, f"{name}: {c['name']} has no writable /tmp")
        for vm in c.get("volumeMounts", []):
            C.check(vm["name"] in volumes, f"{name}: {c['name']} mounts undefined volume {vm['name']}")

    # The model: QQ_SERVE_MODEL points into the right volume (or into the image).
    model_path = data.get("QQ_SERVE_MODEL", "")
    srv_mounts = {vm["mountPath"]: vm for vm in srv.get("volumeMounts", [])}
    src = m["source"]
    if src == "image":
        C.check(model_path == m["image"]["path"] and "/models" not in srv_mounts, f"{name}: image model {model_path}")
    else:
        mnt = srv_mounts.get("/models")
        C.check(mnt is not None and mnt.get("readOnly") is True and model_path.startswith("/models"),
                f"{name}: model not mounted read-only at /models: {mnt}, QQ_SERVE_MODEL={model_path}")
        vol = volumes.get("model", {})
        if src == "pvc":
            C.check(vol.get("persistentVolumeClaim", {}).get("claimName") == m["pvc"]["claimName"],
                    f"{name}: model PVC {vol}")
            C.check(model_path == ("/models/" + m["pvc"]["path"].strip("/")).rstrip("/"), f"{name}: {model_path}")
        elif src == "hostPath":
            C.check(vol.get("hostPath", {}).get("path") == m["hostPath"]["path"], f"{name}: model hostPath {vol}")
    q = inits.get("quantize")
    C.check((q is not None) == (src == "quantize"), f"{name}: quantize init container vs model.source={src}")
    if q is not None:
        qv = m["quantize"]
        env = {e["name"]: e.get("value") for e in q["env"]}
        C.check(env["QQ_OUT"] == model_path, f"{name}: init writes {env['QQ_OUT']}, server reads {model_path}")
        C.check(env["QQ_METHOD"] == qv["method"] and env["QQ_BITS"] == str(qv["bits"]) and
                env["QQ_GROUP_SIZE"] == str(qv["groupSize"]), f"{name}: quantize parameters {env}")
        C.check(env["QQ_SRC"].startswith("/source") and (env["QQ_CALIB"] == "") == (qv["calib"] == ""),
                f"{name}: quantize source/calib {env}")
        script = q["args"][0]
        for flag in ("--method", "--model", "--out", "--bits", "--group-size", "--calib", "mv -T"):
            C.check(flag in script, f"{name}: quantize script lacks {flag}")
        qm = {vm["mountPath"]: vm for vm in q["volumeMounts"]}
        C.check(qm["/source"].get("readOnly") is True and not qm["/models"].get("readOnly"),
                f"{name}: init container mounts {qm}")
        out_vol = volumes.get("model", {})
        if qv["output"]["pvcClaimName"]:
            C.check(out_vol.get("persistentVolumeClaim", {}).get("claimName") == qv["output"]["pvcClaimName"],
                    f"{name}: quantize output volume {out_vol}")
        else:
            C.check("emptyDir" in out_vol, f"{name}: quantize output volume {out_vol}")
        check_quantize_script(name, q)

    # Services select the pods and point at named container ports.
    svcs = by_kind(objs, "Service")
    C.check(len(svcs) == (2 if values["service"]["headless"] else 1), f"{name}: {len(svcs)} Services")
    for svc in svcs:
        C.check(selects(svc["spec"]["selector"], pod_labels), f"{name}: Service {svc['metadata']['name']} selects no pod")
        for p in svc["spec"]["ports"]:
            C.check(p["targetPort"] in ports, f"{name}: Service port {p['name']} targets unknown {p['targetPort']}")
            if p["name"] == "grpc":
                C.check(p["port"] == s["port"] and p.get("appProtocol") == "grpc", f"{name}: Service gRPC port {p}")
    headless = [x for x in svcs if x["spec"].get("clusterIP") == "None"]
    C.check(len(headless) == (1 if values["service"]["headless"] else 0), f"{name}: headless Service")

    # Scaling and disruptions.
    hpa = by_kind(objs, "HorizontalPodAutoscaler")
    if values["autoscaling"]["enabled"]:
        C.check(len(hpa) == 1 and "replicas" not in dep["spec"], f"{name}: HPA on, but replicas pinned")
        if hpa:
            C.check(hpa[0]["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                         "name": dep["metadata"]["name"]}, f"{name}: HPA target")
    else:
        C.check(not hpa and dep["spec"].get("replicas") == values["replicaCount"], f"{name}: replicas")
    pdb = by_kind(objs, "PodDisruptionBudget")
    C.check(len(pdb) == (1 if values["podDisruptionBudget"]["enabled"] else 0), f"{name}: PDB count")
    for p in pdb:
        C.check(selects(p["spec"]["selector"]["matchLabels"], pod_labels), f"{name}: PDB selects no pod")

    # Optional objects.
    sms = by_kind(objs, "ServiceMonitor")
    C.check(len(sms) == (1 if values["metrics"]["serviceMonitor"]["enabled"] else 0), f"{name}: ServiceMonitor count")
    for sm in sms:
        C.check(sm.get("apiVersion") == "monitoring.coreos.com/v1", f"{name}: ServiceMonitor apiVersion")
        svc_ports = {p["name"] for x in svcs for p in x["spec"]["ports"]}
        eps = sm["spec"]["endpoints"]
        C.check(all(e["port"] in svc_ports and e["path"] == "/metrics" for e in eps), f"{name}: ServiceMonitor endpoints {eps}")
        C.check(any(selects(sm["spec"]["selector"]["matchLabels"], x["metadata"]["labels"]) for x in svcs),
                f"{name}: ServiceMonitor selects no Service")
    nps = by_kind(objs, "NetworkPolicy")
    C.check(len(nps) == (1 if values["networkPolicy"]["enabled"] else 0), f"{name}: NetworkPolicy count")
    for np in nps:
        C.check(selects(np["spec"]["podSelector"]["matchLabels"], pod_labels), f"{name}: NetworkPolicy selects no pod")
        allowed = {p["port"] for r in np["spec"]["ingress"] for p in r["ports"]}
        C.check(allowed == {"grpc", "metrics"}, f"{name}: NetworkPolicy ports {allowed}")
        C.check(np["spec"]["egress"] == values["networkPolicy"]["egress"], f"{name}: NetworkPolicy egress")
    sas = by_kind(objs, "ServiceAccount")
    if values["serviceAccount"]["create"]:
        C.check(len(sas) == 1 and sas[0]["metadata"]["name"] == spec["serviceAccountName"], f"{name}: ServiceAccount")
    else:
        C.check(not sas and spec["serviceAccountName"] == (values["serviceAccount"]["name"] or "default"),
                f"{name}: external ServiceAccount")


# A stand-in for the qquant binary, for the init container's shell logic only (skip, temporary
# folder, rename): it records its arguments and writes a config.json into --out, or fails on demand.
FAKE_QQUANT = """#!/bin/sh
echo "$*" >> "$QQ_TEST_LOG"
[ -z "${QQ_TEST_FAIL:-}" ] || exit 3
while [ $# -gt 0 ]; do [ "$1" = --out ] && out=$2; shift; done
mkdir -p "$out" && echo '{"run": "'"$QQ_TEST_RUN"'"}' > "$out/config.json"
"""


def serve_env_from_help(bindir):
    """QQ_SERVE_<FLAG> for every flag `qquant-serve --help` lists."""
    r = subprocess.run([os.path.join(bindir, "qquant-serve"), "--help"], capture_output=True, text=True, timeout=60)
    flags = re.findall(r"^  --([a-z][a-z-]*)", r.stdout, re.M)
    return {"QQ_SERVE_" + f.upper().replace("-", "_") for f in flags}


def run_quantize_script_for_real(name, init, bindir, fixtures):
    """The rendered init container script with the real qquant: the rendered /source paths are made to
    point at a fixture model and corpus, and the result must be a checkpoint with the chart's settings."""
    import json
    script = init["args"][0]
    env_list = {e["name"]: e["value"] for e in init["env"]}
    with tempfile.TemporaryDirectory() as d:
        src = d + env_list["QQ_SRC"]
        os.makedirs(os.path.dirname(src), exist_ok=True)
        os.symlink(os.path.join(fixtures, "models", "qwen2-tiny-lm"), src)
        env = dict(env_list, QQ_SRC=src, QQ_OUT=d + env_list["QQ_OUT"], HOSTNAME="pod-a", HOME=d,
                   PATH=f"{bindir}:/usr/bin:/bin")
        if env_list["QQ_CALIB"]:
            env["QQ_CALIB"] = d + env_list["QQ_CALIB"]
            os.makedirs(os.path.dirname(env["QQ_CALIB"]), exist_ok=True)
            os.symlink(os.path.join(fixtures, "corpora", "calib-mix.jsonl"), env["QQ_CALIB"])
        os.makedirs(os.path.dirname(env["QQ_OUT"]), exist_ok=True)
        r = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=600)
        if not C.check(r.returncode == 0, f"{name}: the init script with the real qquant failed: {r.stdout}{r.stderr}"):
            return
        with open(os.path.join(env["QQ_OUT"], "config.json")) as f:
            qc = json.load(f).get("quantization_config", {})
        want = (int(env_list["QQ_BITS"]), int(env_list["QQ_GROUP_SIZE"]))
        C.check((qc.get("bits"), qc.get("group_size")) == want,
                f"{name}: qquant wrote bits/group_size {(qc.get('bits'), qc.get('group_size'))}, the chart asked {want}")
        print(f"scenario {name}: init container script ran the real qquant ({r.stdout.strip().splitlines()[0]})")


def check_quantize_script(name, init):
    """Runs the rendered init container script with the rendered environment, in a scratch folder."""
    script = init["args"][0]
    env_list = {e["name"]: e["value"] for e in init["env"]}
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "bin"))
        os.makedirs(os.path.join(d, "models"))
        fake = os.path.join(d, "bin", "qquant")
        with open(fake, "w") as f:
            f.write(FAKE_QQUANT)
        os.chmod(fake, 0o755)
        out = d + env_list["QQ_OUT"]  # /models/... below the scratch folder
        log = os.path.join(d, "log")
        base = dict(env_list, QQ_OUT=out, PATH=f"{d}/bin:/usr/bin:/bin", HOSTNAME="pod-a", QQ_TEST_LOG=log)

        def run(run_id, **extra):
            env = dict(base, QQ_TEST_RUN=run_id, **extra)
            return subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=30)

        def calls():
            return open(log).read().splitlines() if os.path.exists(log) else []

        r = run("1")
        C.check(r.returncode == 0, f"{name}: quantize script failed: {r.stderr}")
        got = calls()
        want = (f"--method {env_list['QQ_METHOD']} --model {env_list['QQ_SRC']} --out {d}/models/.partial-pod-a "
                f"--bits {env_list['QQ_BITS']} --group-size {env_list['QQ_GROUP_SIZE']}")
        if env_list["QQ_CALIB"]:
            want += f" --calib {env_list['QQ_CALIB']}"
        C.check(got == [want], f"{name}: qquant called as {got}, expected [{want!r}]")
        C.check(os.path.exists(os.path.join(out, "config.json")), f"{name}: no checkpoint at QQ_OUT")
        C.check(sorted(os.listdir(os.path.join(d, "models"))) == [os.path.basename(out)],
                f"{name}: leftovers {os.listdir(os.path.join(d, 'models'))}")
        r = run("2")
        C.check(r.returncode == 0 and len(calls()) == 1 and "not quantizing again" in r.stdout,
                f"{name}: an existing result was not reused: {r.stdout} {r.stderr}")
        r = run("3", QQ_FORCE="true", HOSTNAME="pod-b")
        cfg = open(os.path.join(out, "config.json")).read()
        C.check(r.returncode == 0 and len(calls()) == 2 and '"3"' in cfg, f"{name}: force did not replace: {cfg}")
        C.check(sorted(os.listdir(os.path.join(d, "models"))) == [os.path.basename(out)],
                f"{name}: leftovers after force {os.listdir(os.path.join(d, 'models'))}")
        r = run("4", QQ_FORCE="true", QQ_TEST_FAIL="1")
        cfg = open(os.path.join(out, "config.json")).read()
        C.check(r.returncode != 0 and '"3"' in cfg, f"{name}: a failed qquant must fail the init container "
                f"and keep the previous result (rc {r.returncode}, {cfg})")


SCENARIOS = {
    "defaults": {},
    "production": {
        "replicaCount": 3,
        "image": {"repository": "registry.example.com/ml/qquant", "tag": "0.1.0-cuda13"},
        "imagePullSecrets": [{"name": "regcred"}],
        "server": {"drainSeconds": 120, "preStopSleepSeconds": 10, "maxQueue": 256, "maxBatch": 32,
                   "maxSeqLen": 8192, "kvBlocks": 4096, "logFormat": "text", "port": 8443,
                   "tls": {"enabled": True, "secretName": "qquant-tls", "clientAuth": True},
                   "extraArgs": ["--max-batch", "32"],
                   "extraEnv": [{"name": "OPENBLAS_NUM_THREADS", "value": "4"}]},
        "probes": {"startup": {"periodSeconds": 15, "failureThreshold": 120, "timeoutSeconds": 5}},
        "gpu": {"count": 2, "products": ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H200"]},
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["inference"]}]},
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["batch"]}]}]}}},
        "nodeSelector": {"kubernetes.io/arch": "amd64"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                       "whenUnsatisfiable": "ScheduleAnyway",
                                       "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "qquant"}}}],
        "priorityClassName": "inference-high",
        "runtimeClassName": "nvidia",
        "model": {"source": "quantize", "quantize": {
            "method": "gptq", "bits": 4, "groupSize": 128, "calib": "calib/pile-128.jsonl",
            "source": {"pvc": {"claimName": "hf-checkpoints", "path": "Qwen2.5-7B-Instruct"}},
            "output": {"pvcClaimName": "qquant-quantized"},
            "resources": {"limits": {"memory": "64Gi"}, "requests": {"cpu": "4", "memory": "48Gi"}}}},
        "resources": {"requests": {"cpu": "8", "memory": "48Gi"}, "limits": {"memory": "64Gi"}},
        "service": {"type": "LoadBalancer", "annotations": {"example.com/lb": "internal"}},
        "serviceAccount": {"create": True, "name": "qquant-sa", "annotations": {"example.com/role": "x"}},
        "podAnnotations": {"example.com/team": "ml"},
        "podLabels": {"team": "ml"},
        "extraVolumes": [{"name": "cache", "emptyDir": {}}],
        "extraVolumeMounts": [{"name": "cache", "mountPath": "/cache"}],
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 8, "metrics": [
            {"type": "Pods", "pods": {"metric": {"name": "qquant_queue_depth"},
                                      "target": {"type": "AverageValue", "averageValue": "8"}}}]},
        "podDisruptionBudget": {"maxUnavailable": None, "minAvailable": "50%"},
        "metrics": {"serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}}},
        "networkPolicy": {"enabled": True,
                          "grpcFrom": [{"namespaceSelector": {"matchLabels": {"qquant-client": "true"}}}],
                          "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]},
    },
    "cpu": {
        "image": {"repository": "qquant", "tag": "0.1.0-cpu"},
        "gpu": {"enabled": False},
        "server": {"preStopSleepSeconds": 0, "drainSeconds": 20},
        "terminationGracePeriodSeconds": 25,
        "model": {"source": "hostPath", "hostPath": {"path": "/srv/models/qwen2-0.5b-int4"}},
        "resources": {"requests": {"cpu": "4", "memory": "4Gi"}, "limits": {"memory": "8Gi"}},
        "podDisruptionBudget": {"enabled": False},
        "service": {"headless": False},
        "serviceAccount": {"create": False, "name": ""},
        "networkPolicy": {"enabled": True, "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]},
    },
    "baked-image-and-quantize-emptydir": {
        "model": {"source": "quantize", "quantize": {
            "method": "rtn", "bits": 8, "groupSize": 64,
            "source": {"hostPath": {"path": "/data/Llama-3.2-1B"}}, "output": {"sizeLimit": "10Gi"}}},
        "gpu": {"tolerateGpuTaint": False, "resourceName": "nvidia.com/mig-3g.40gb"},
        "fullnameOverride": "qq-serve",
    },
    "baked-image": {"model": {"source": "image", "image": {"path": "/opt/qquant/model"}}},
    # Small enough for the real qquant (RTN on the fixture model takes about a second): see REAL_QUANTIZE.
    "quantize-rtn-with-calib": {
        "model": {"source": "quantize", "quantize": {
            "method": "rtn", "bits": 4, "groupSize": 32, "calib": "/corpora/calib-mix.jsonl",
            "source": {"pvc": {"claimName": "hf", "path": "models/qwen2-tiny-lm"}}}},
    },
}
# Scenarios whose init container script also runs with the real qquant binary.
REAL_QUANTIZE = ("baked-image-and-quantize-emptydir", "quantize-rtn-with-calib")

# Values that must be refused, with a fragment of the message the operator sees.
REFUSED = {
    "grace shorter than drain": ({"terminationGracePeriodSeconds": 20}, "shorter than"),
    "unknown model source": ({"model": {"source": "s3"}}, "must be one of"),
    "pvc without claim": ({"model": {"pvc": {"claimName": ""}}}, "claimName"),
    "relative hostPath": ({"model": {"source": "hostPath", "hostPath": {"path": "models"}}}, "pattern"),
    "quantize without source": ({"model": {"source": "quantize"}}, "model.quantize.source"),
    "unknown quantize method": ({"model": {"quantize": {"method": "hqq"}}}, "must be one of"),
    "both PDB bounds": ({"podDisruptionBudget": {"minAvailable": 1}}, "exactly one"),
    "no PDB bound": ({"podDisruptionBudget": {"maxUnavailable": None}}, "exactly one"),
    "HPA min above max": ({"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}, "maxReplicas"),
    "TLS without secret": ({"server": {"tls": {"enabled": True}}}, "secretName"),
    "typo in a key": ({"server": {"drainSecond": 10}}, "additional properties"),
    "negative drain": ({"server": {"drainSeconds": -1}}, "minimum"),
    "zero GPUs": ({"gpu": {"count": 0}}, "minimum"),
    "port out of range": ({"server": {"port": 70000}}, "maximum"),
    "bad log format": ({"server": {"logFormat": "xml"}}, "must be one of"),
    # What qquant itself refuses (measured with qquant --method ...): refused at render time instead.
    "awq without calibration": ({"model": {"source": "quantize", "quantize": {
        "source": {"pvc": {"claimName": "hf"}}}}}, "model.quantize.calib"),
    "gptq without calibration": ({"model": {"source": "quantize", "quantize": {
        "method": "gptq", "source": {"hostPath": {"path": "/data/m"}}}}}, "needs calibration data"),
    "awq at 8 bits": ({"model": {"source": "quantize", "quantize": {
        "bits": 8, "calib": "c.jsonl", "source": {"pvc": {"claimName": "hf"}}}}}, "4 or 3 bits"),
    "smoothquant at 4 bits": ({"model": {"source": "quantize", "quantize": {
        "method": "smoothquant", "calib": "c.jsonl", "source": {"pvc": {"claimName": "hf"}}}}}, "W8A8"),
    "2-bit weights": ({"model": {"quantize": {"bits": 2}}}, "must be one of"),
    "group size 100": ({"model": {"quantize": {"groupSize": 100}}}, "must be one of"),
}


def leaf_paths(d, prefix=""):
    for k, v in d.items():
        p = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and v:
            yield from leaf_paths(v, p)
        else:
            yield p


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    chart_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "helm", "qquant")
    print(f"helm-c {helm.helm_c_version()}, Helm SDK {helm.helm_sdk_version()}, "
          f"kubernetes-validate {kubernetes_validate.__version__ if hasattr(kubernetes_validate, '__version__') else '?'}, "
          f"Kubernetes schemas {', '.join(KUBE_VERSIONS)}")
    bindir = os.path.join(os.environ["QQ_BINARY_DIR"], "bin") if os.environ.get("QQ_BINARY_DIR") else ""
    fixtures = os.environ.get("QQ_FIXTURES", "")
    have_serve = bindir and os.access(os.path.join(bindir, "qquant-serve"), os.X_OK)
    have_qquant = bindir and os.access(os.path.join(bindir, "qquant"), os.X_OK) and os.path.isdir(fixtures)
    if have_serve:
        flags = serve_env_from_help(bindir)
        C.check(SERVE_ENV <= flags, f"qquant-serve --help lacks {sorted(SERVE_ENV - flags)}")
    else:
        print("note: no qquant-serve built (QQ_BINARY_DIR): ConfigMap names checked against the list in this file only")
    if not have_qquant:
        print("note: no qquant built or no fixtures (QQ_BINARY_DIR, QQ_FIXTURES): init script run with a stand-in only")
    with helm.Chart.load(chart_dir) as chart:
        defaults = chart.values
        floor = re.fullmatch(r">=\s*(\d+\.\d+)\.\d+(-0)?", chart.metadata.get("kubeVersion", ""))
        C.check(floor is not None and KUBE_VERSIONS[0].startswith(floor.group(1) + "."),
                f"Chart.yaml kubeVersion {chart.metadata.get('kubeVersion')!r} is not the oldest version "
                f"validated ({KUBE_VERSIONS[0]})")
        C.check(chart.schema is not None, "the chart has no values.schema.json")

        for ver in KUBE_VERSIONS:
            report = helm.lint(chart_dir, strict=True, kube_version=f"v{ver}")
            bad = [x for x in report["messages"] if x["severity"] >= 2] + [{"error": e} for e in report["errors"]]
            C.check(not bad, f"helm lint (Kubernetes {ver}): {bad}")

        for name, over in SCENARIOS.items():
            values = deep_merge(defaults, over)
            try:
                chart.validate_schema(over)
                objs, notes = render(chart, over)
            except helm.HelmError as e:
                C.check(False, f"{name}: refused: {e}")
                continue
            validate_schemas(name, objs)
            check_release(name, values, objs, notes)
            if name in REAL_QUANTIZE and have_qquant:
                inits = [c for o in by_kind(objs, "Deployment") for c in o["spec"]["template"]["spec"]["initContainers"]]
                run_quantize_script_for_real(name, inits[0], bindir, fixtures)
            kinds = sorted(o["kind"] for o in objs)
            print(f"scenario {name}: {len(objs)} objects ({', '.join(kinds)})")
            report = helm.lint(chart_dir, over, strict=True, kube_version=f"v{KUBE_VERSIONS[1]}")
            bad = [x for x in report["messages"] if x["severity"] >= 2] + [{"error": e} for e in report["errors"]]
            C.check(not bad, f"{name}: helm lint: {bad}")

        for name, (over, fragment) in REFUSED.items():
            try:
                render(chart, over)
                C.check(False, f"refused values accepted: {name}: {over}")
            except helm.HelmError as e:
                C.check(fragment in str(e), f"{name}: refused, but the message lacks {fragment!r}: {e}")

        # Every value is documented in the chart README.
        readme = open(os.path.join(chart_dir, "README.md"), encoding="utf-8").read()
        for p in leaf_paths(defaults):
            C.check(f"`{p}`" in readme, f"README.md does not document `{p}`")

    print(f"{C.passed} passed, {C.failed} failed")
    return 1 if C.failed else 0


if __name__ == "__main__":
    sys.exit(main())
