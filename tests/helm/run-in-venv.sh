#!/bin/sh
# Runs a tests/helm check with the Python of the virtual environment that tools/install-deps.sh fills
# from tests/helm/requirements.txt (QQ_VENV, default ~/.cache/qquant-venv). Without it the check is
# skipped (exit 77, which ctest reports as "Skipped"), never failed.
venv=${QQ_VENV:-${HOME:-/nonexistent}/.cache/qquant-venv}
if [ ! -x "$venv/bin/python" ]; then
  echo "SKIP: no Python virtual environment at $venv: run tools/install-deps.sh (it installs tests/helm/requirements.txt there)"
  exit 77
fi
exec "$venv/bin/python" "$@"
