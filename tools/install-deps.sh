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
  libssl-dev curl
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
