#!/usr/bin/env bash
# Make .venv with everything the host tests need: dev tools, every service's pinned runtime and
# test requirements, shared_protocol (editable) and, if a service needs one, its reference env.
# Idempotent: a second run only checks. Usage: scripts/dev-setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }

# torch: prefer a CPU wheel already on disk (this machine kind ships one); otherwise PyPI's.
torch_pin=$(grep -h -E '^torch==' services/*/requirements*.txt 2>/dev/null | head -n1 || true)
if [ -n "$torch_pin" ] && ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  wheel=$(ls /opt/wheels/torch-"${torch_pin#torch==}"+cpu-*.whl 2>/dev/null | head -n1 || true)
  if [ -n "$wheel" ]; then pip install "$wheel"; else pip install "$torch_pin"; fi
fi

# Every services/*/requirements*.txt (runtime, test, builder, optional engines) in one resolve, so
# conflicting pins fail here; the *nodeps.txt ones go in afterwards with --no-deps.
args=(-r requirements-dev.txt)
for f in services/*/requirements*.txt; do
  case "$f" in *nodeps.txt) continue ;; esac
  args+=(-r "$f")
done
pip install "${args[@]}"
nodeps=()
for f in services/*/requirements-*nodeps.txt; do
  [ -f "$f" ] && nodeps+=(-r "$f")
done
[ ${#nodeps[@]} -gt 0 ] && pip install --no-deps "${nodeps[@]}"
pip install --no-deps -e shared_protocol

for extra in scripts/setup-tf-reference.sh; do
  [ -x "$extra" ] && "$extra"
done
echo "dev-setup: $VENV ready ($("$VENV/bin/python" --version))"
