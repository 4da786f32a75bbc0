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
torch_pin=$(grep -h -o -E '^torch==[^ ;\\]+' services/*/requirements*.in 2>/dev/null | head -n1 || true)
if [ -n "$torch_pin" ] && ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  wheel=$(ls /opt/wheels/torch-"${torch_pin#torch==}"+cpu-*.whl 2>/dev/null | head -n1 || true)
  if [ -n "$wheel" ]; then pip install "$wheel"; else pip install "$torch_pin"; fi
fi

# Every services/*/requirements*.txt (runtime, test, builder, optional engines) in one resolve, so
# conflicting pins fail here; the *nodeps.txt ones go in afterwards with --no-deps. The image locks
# (a .txt next to a .in) have hashes, and pip would then demand hashes for everything in the same
# invocation (the local CPU torch wheel has none): the venv gets their exact versions from hash-free
# copies instead (without the CUDA-only deps of PyPI's torch; scripts/lock-requirements.py host-pins).
pins_dir=$(mktemp -d)
trap 'rm -rf "$pins_dir"' EXIT
"$PYTHON" scripts/lock-requirements.py host-pins "$pins_dir" >/dev/null
reqs=("$pins_dir"/*.txt)
for f in services/*/requirements*.txt; do
  [ -f "${f%.txt}.in" ] || reqs+=("$f")  # locked ones are in $pins_dir already
done
args=(-r requirements-dev.txt)
nodeps=()
for f in "${reqs[@]}"; do
  case "$f" in *nodeps.txt) nodeps+=(-r "$f") ;; *) args+=(-r "$f") ;; esac
done
pip install "${args[@]}"
[ ${#nodeps[@]} -gt 0 ] && pip install --no-deps "${nodeps[@]}"
pip install --no-deps -e shared_protocol
pip install --no-deps -e shared_vision

for extra in scripts/setup-tf-reference.sh; do
  [ -x "$extra" ] && "$extra"
done
echo "dev-setup: $VENV ready ($("$VENV/bin/python" --version))"
