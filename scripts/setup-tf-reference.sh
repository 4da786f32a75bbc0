#!/usr/bin/env bash
# Create the TensorFlow reference venv (.venv-tf) used by tests/emotion/test_parity_tf.py: the
# original Keras mini-Xception (fer's emotion_model.hdf5) runs there, in TensorFlow, and its
# probabilities are compared with the PyTorch port. Test-only; no service image contains TF.
#
#   scripts/setup-tf-reference.sh            # creates/refreshes /path/to/repo/.venv-tf
#
# Env: VIGIL_TF_VENV (default <repo>/.venv-tf), VIGIL_TF_PYTHON (default python3.11, else python3;
# must be Python 3.11). Idempotent: a venv whose pins match is left alone (a few seconds).
# Keras 3 (bundled with TF 2.21) loads the legacy Keras 2.0.5 h5 with `compile=False`, so
# tf_keras is not needed. h5py is capped below 3.15 by tensorflow-cpu 2.21.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VIGIL_TF_VENV:-$ROOT/.venv-tf}"
PYTHON="${VIGIL_TF_PYTHON:-$(command -v python3.11 || command -v python3)}"

log() { echo "[setup-tf-reference] $*" >&2; }

# Every package pinned (the full resolved set), so the reference cannot drift between runs.
read -r -d '' PINS <<'PINS_EOF' || true
tensorflow-cpu==2.21.0
keras==3.15.1
h5py==3.14.0
numpy==2.4.6
absl-py==2.5.1
astunparse==1.6.3
certifi==2026.10.19.post1
charset-normalizer==3.5.3
flatbuffers==25.12.19
gast==0.7.0
google-pasta==0.2.0
grpcio==1.85.3
idna==3.20
libclang==18.1.1
markdown-it-py==4.3.0
mdurl==0.1.2
ml-dtypes==0.6.0
namex==0.1.0
opt-einsum==3.4.0
optree==0.20.0
packaging==26.4
protobuf==7.36.2
pygments==2.21.0
requests==2.34.2
rich==15.0.0
six==1.17.0
termcolor==3.3.0
typing-extensions==4.16.0
urllib3==2.8.0
wheel==0.48.0
wrapt==2.5.2
PINS_EOF

version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ "$version" = "3.11" ] || { log "need Python 3.11 (got $version from $PYTHON); set VIGIL_TF_PYTHON"; exit 1; }

marker="$VENV/.vigil-pins"
if [ -x "$VENV/bin/python" ] && [ -f "$marker" ] && [ "$(cat "$marker")" = "$PINS" ]; then
    log "$VENV is up to date"
else
    log "creating $VENV with $PYTHON"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    reqs="$(mktemp)"
    trap 'rm -f "$reqs"' EXIT
    printf '%s\n' "$PINS" >"$reqs"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$reqs"
    printf '%s' "$PINS" >"$marker"
fi

# Smoke check: TensorFlow imports and Keras can build a model.
TF_CPP_MIN_LOG_LEVEL=2 "$VENV/bin/python" -c '
import keras, tensorflow as tf
keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
print("tensorflow", tf.__version__, "keras", keras.__version__)
' >&2
log "ready: $VENV/bin/python"
